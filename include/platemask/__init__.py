"""platemask: hide licence plates in used-car photos.

The Airflow-free core. ``platemask.daily`` runs a day (plan → cars → finish). Each rule of the
specification has one module: ``uploads`` (rule 0, the day's photos and which is first),
``backup`` (rule 1), ``render`` (rules 2 and 3, the outputs), ``verify`` (rule 4), ``tracking``
(rule 5), ``notify`` (rule 6) and ``restore`` (rule 7). ``paths`` says where files live,
``detect``, ``runtime`` and ``second_look`` find the plates, ``pipeline`` runs one photo
through rules 1-4.
"""

from __future__ import annotations

import importlib
from typing import Any

from platemask.config import Settings
from platemask.errors import PlateMaskError
from platemask.paths import car_folder, photo_paths

__all__ = [
    "Photo",
    "PhotoOutcome",
    "PlateMaskError",
    "Settings",
    "__version__",
    "car_folder",
    "photo_paths",
    "process_photos",
]

__version__ = "0.1.0"

# Imported on first use: every ``import platemask.x`` runs this file, and DAG files (parsed
# every few seconds by Airflow) must not pay for numpy and OpenCV.
_LAZY = {"Photo": "platemask.uploads", "PhotoOutcome": "platemask.pipeline", "process_photos": "platemask.pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'platemask' has no attribute {name!r}")
