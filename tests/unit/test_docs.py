"""The README is the front page and the docs site holds the rest: what each must keep saying.

``make docs`` (and ``make test``) builds the site with ``mkdocs build --strict``, which fails on a
broken link or anchor inside ``docs/``. These tests cover what that build cannot: the README's
links into ``docs/`` and the configuration reference, generated from ``platemask.config``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

from platemask.config import VARIABLES
from scripts.config_reference import MARKER, PAGE, render, split_default

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: What an operator must reach in one click from the README: a link to a section of the docs.
COMMON_TASKS = {
    "Restore one car": "docs/operations/restore.md#restore-one-car",
    "Rerun a failed car": "docs/operations/daily-runs.md#rerun-a-failed-car",
    "Change the mask style": "docs/operations/masking.md#change-the-mask-style",
    "Add a worker": "docs/operations/capacity.md#add-a-worker",
}

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs (and GitHub) give the headings of ``page``, fenced blocks left out."""
    anchors, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6} (.+)", line)):
            text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", heading[1]).replace("`", "")
            anchors.add(slugify(text, "-"))
    return anchors


def _readme_links() -> dict[str, str]:
    """Link text → target of every link in the README."""
    return dict(_LINK.findall(README.read_text(encoding="utf-8")))


def test_readme_is_a_front_page():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


@pytest.mark.parametrize(("task", "target"), [pytest.param(t, u, id=t) for t, u in COMMON_TASKS.items()])
def test_readme_links_each_common_task_to_its_section(task, target):
    assert _readme_links().get(task) == target
    page, anchor = target.split("#")
    assert anchor in _anchors(ROOT / page)


def test_readme_links_into_the_docs_resolve():
    broken = []
    for target in _readme_links().values():
        if "://" in target:
            continue
        page, _, anchor = target.partition("#")
        if not (ROOT / page).is_file() or (anchor and anchor not in _anchors(ROOT / page)):
            broken.append(target)
    assert broken == []


def test_configuration_reference_is_generated_from_the_variables_table():
    page = PAGE.read_text(encoding="utf-8")
    assert page.count(MARKER) == 1
    built = render(page)
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", built, re.MULTILINE)}
    assert list(rows) == list(VARIABLES)


def test_site_generates_the_configuration_reference_at_build_time():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    assert config["hooks"] == ["scripts/config_reference.py"]
    assert PAGE.parent == DOCS


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        pytest.param(
            "Largest photo accepted, in pixels (default 40000000)",
            ("Largest photo accepted, in pixels", "40000000"),
            id="plain",
        ),
        pytest.param(
            "Folder (default: $AIRFLOW_HOME/logs or ./logs)", ("Folder", "$AIRFLOW_HOME/logs or ./logs"), id="colon"
        ),
        pytest.param(
            "Threads (default 1; 0: OpenVINO decides)", ("Threads (0: OpenVINO decides)", "1"), id="aside-kept"
        ),
        pytest.param(
            "off or a date: photos (cut-over; default off)",
            ("off or a date: photos (cut-over)", "off"),
            id="default-last",
        ),
        pytest.param(
            "Chatwork room that receives the summaries", ("Chatwork room that receives the summaries", ""), id="none"
        ),
    ],
)
def test_split_default(description, expected):
    assert split_default(description) == expected
