"""platemask: hide licence plates in used-car photos.

The Airflow-free core. ``platemask.daily`` runs a day (plan → cars → finish), built on
``paths`` (where files live), ``backup`` (rule 1), ``detect`` (YOLO), ``render`` (masks and the
banner), ``verify`` (rule 4), ``tracking`` (rule 5), ``notify`` (rule 6) and ``restore`` (rule 7).
"""

from __future__ import annotations

from platemask.config import Settings
from platemask.errors import PlateMaskError
from platemask.paths import car_folder, photo_paths
from platemask.pipeline import Photo, PhotoOutcome, process_photos

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
