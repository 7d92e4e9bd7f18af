"""The configuration reference of the docs, generated from ``platemask.config.VARIABLES``.

One source: ``docs/configuration.md`` holds the prose and a ``<!-- VARIABLES -->`` line, and this
module replaces that line with the table of every variable, its default and its meaning when the
site is built (``mkdocs.yml`` names it under ``hooks:``), so the reference cannot go stale.
``python scripts/config_reference.py`` prints the page as it will be built.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"
MARKER = "<!-- VARIABLES -->"

#: A parenthesised aside of a description that names the default: ``(default 0.35; lower hides more)``.
_ASIDE = re.compile(r"\s*\(([^()]*\bdefault\b[^()]*)\)")
_DEFAULT = re.compile(r"^default:?\s+(.*)$")


def _variables() -> dict[str, str]:
    """``platemask.config.VARIABLES``, from this checkout's sources when the package is not installed."""
    include = str(ROOT / "include")
    if include not in sys.path:
        sys.path.insert(0, include)
    from platemask.config import VARIABLES

    return VARIABLES


def split_default(description: str) -> tuple[str, str]:
    """``(meaning, default)`` of a ``VARIABLES`` description; the default is ``""`` when none is named."""
    match = _ASIDE.search(description)
    if not match:
        return description, ""
    parts = [part.strip() for part in match[1].split(";")]
    defaults = [m[1] for part in parts if (m := _DEFAULT.match(part))]
    if not defaults:
        return description, ""
    rest = [part for part in parts if not _DEFAULT.match(part)]
    aside = f" ({'; '.join(rest)})" if rest else ""
    return description[: match.start()] + aside + description[match.end() :], defaults[0]


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def table(variables: dict[str, str] | None = None) -> str:
    """The Markdown table of every variable: name, default and meaning, in ``VARIABLES``' order."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, description in (variables if variables is not None else _variables()).items():
        meaning, default = split_default(description)
        shown = f"`{default}`" if default and " " not in default else _cell(default) or "—"
        rows.append(f"| `{name}` | {shown} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def render(markdown: str, variables: dict[str, str] | None = None) -> str:
    """``markdown`` with its ``<!-- VARIABLES -->`` line replaced by :func:`table`."""
    if MARKER not in markdown:
        raise ValueError(f"{PAGE.relative_to(ROOT)} has no {MARKER} line for the table of variables")
    return markdown.replace(MARKER, table(variables).rstrip("\n"), 1)


def on_page_markdown(markdown: str, *, page: Any, **kwargs: Any) -> str:
    """MkDocs hook: fill in the table of ``docs/configuration.md`` at build time."""
    if page.file.src_uri == PAGE.name:
        return render(markdown)
    return markdown


if __name__ == "__main__":
    sys.stdout.write(render(PAGE.read_text(encoding="utf-8")))
