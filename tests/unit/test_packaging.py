"""`pip install .` gives a package that runs: its imports are declared, within requirements.txt's pins."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "include" / "platemask"
FIRST_PARTY = {"platemask", "__future__"}
# An import name that is not its distribution's name.
DISTRIBUTION = {
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "psycopg2": "psycopg2-binary",
    "botocore": "boto3",  # boto3 brings the botocore it is built for
    "ultralytics": "ultralytics-opencv-headless",
    "platemask_airflow": "apache-airflow",  # this distribution's Airflow layer: the `airflow` extra
}
# Installed with `pip install --no-deps` (their own pins are years old), so no dependency can name them.
NO_DEPS = {"platedet"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _imports() -> dict[str, bool]:
    """Third-party modules imported by the package → whether some import of it runs on module load."""
    found: dict[str, bool] = {}
    for source in PACKAGE.rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        at_load = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for root in {m.split(".")[0] for m in modules} - FIRST_PARTY - set(sys.stdlib_module_names):
                found[root] = found.get(root, False) or id(node) in at_load
    return found


def test_every_import_of_the_package_is_a_declared_dependency() -> None:
    project = _project()
    core = _names(project["dependencies"])
    extras = {extra: _names(requirements) for extra, requirements in project["optional-dependencies"].items()}
    imports = _imports()
    assert {"cv2", "numpy", "openvino", "requests"} <= set(imports)  # the walk sees the package
    for module, at_load in imports.items():
        if module in NO_DEPS:
            continue
        name = canonicalize_name(DISTRIBUTION.get(module, module))
        # Imported on load: `import platemask...` needs it, so the core does; a lazy import may be an extra's.
        allowed = core if at_load else core.union(*extras.values())
        assert name in allowed, f"{module} ({name}) is not a dependency{'' if at_load else ' nor in an extra'}"
    assert "apache-airflow" in extras["airflow"] and not any(n.startswith("apache-airflow") for n in core)


def test_no_deps_packages_are_installed_by_make_and_the_image() -> None:
    for recipe in ("Makefile", "Dockerfile"):
        text = (ROOT / recipe).read_text(encoding="utf-8")
        for name in NO_DEPS:
            assert re.search(rf"--no-deps {name}==", text), f"{recipe} does not install {name}"


def _pins(name: str) -> dict[str, str]:
    """Name -> pinned version of a requirements file, with the files it includes (``-r``)."""
    pins = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("-r "):
            pins |= _pins(line.split()[1])
        elif line.strip() and not line.startswith("#"):
            pin = Requirement(line)
            pins[canonicalize_name(pin.name)] = next(iter(pin.specifier)).version
    return pins


def test_ranges_hold_requirements_txt_pins() -> None:
    pins = _pins("requirements.txt")
    project = _project()
    declared = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name in pins:
            assert requirement.specifier.contains(pins[name]), f"{text} excludes requirements.txt's {pins[name]}"
    assert set(pins) <= _names(declared), f"pinned, not declared: {set(pins) - _names(declared)}"


def test_runtime_set_is_the_core_and_airflow_and_the_rest_is_the_pytorch_extra() -> None:
    """requirements-runtime.txt (what workers install) pins the core and the `airflow` extra;
    requirements.txt adds exactly the `pytorch` extra (model conversion, .pt models, training)."""
    project = _project()
    extras = {extra: _names(requirements) for extra, requirements in project["optional-dependencies"].items()}
    runtime, full = set(_pins("requirements-runtime.txt")), set(_pins("requirements.txt"))
    assert runtime <= _names(project["dependencies"]) | extras["airflow"]
    assert full - runtime == extras["pytorch"]
