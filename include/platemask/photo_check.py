"""What the "Photos to check" view shows: a day's photos, one photo's masks, its two images.

The Airflow plugin (``platemask_airflow.photo_fixes``) serves these; fixes themselves go through
``platemask.corrections``. A photo is only ever found by its day and file id in that day's
tracking file: the view never takes a path from the browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import cv2

from platemask.config import Settings
from platemask.corrections import photo_masks
from platemask.images import decode_any
from platemask.paths import photo_paths
from platemask.review import REASONS, photos_to_review
from platemask.storage import Storage

__all__ = [
    "FILE_ID",
    "REASONS",
    "car_photos",
    "find_record",
    "group_by_car",
    "original_jpeg",
    "photo_view",
    "published_jpeg",
    "to_check",
]

FILE_ID = re.compile(r"\d{1,20}")
#: Quality of the original as the view sends it: what a person compares against, so near-lossless.
_VIEW_QUALITY = 92


def find_record(processed: Mapping[str, Mapping[str, Any]], file_id: str) -> Mapping[str, Any]:
    """The tracking record of ``file_id``; ``KeyError`` for anything the day does not know."""
    if not FILE_ID.fullmatch(file_id):
        raise KeyError(file_id)
    return processed[file_id]


def to_check(processed: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The day's photos with a reason to look, grouped by car, in file order."""
    return photos_to_review(processed.values())


def car_photos(processed: Mapping[str, Mapping[str, Any]], car_id: str) -> list[Mapping[str, Any]]:
    """Every photo of one car on the day, in file order."""
    return sorted((r for r in processed.values() if str(r["car_id"]) == car_id), key=lambda r: int(r["file_id"]))


def photo_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the photo page draws and says: the masks, the candidates left visible, the reasons."""
    return {
        "file_id": str(record["file_id"]),
        "car_id": str(record["car_id"]),
        "path": record["path"],
        "revision": int(record.get("revision", 0)),
        "masks": photo_masks(record),
        # Plate-like text nothing masked: shown so that one click can mask it.
        "candidates": [m for m in record.get("review_marks", ()) if not m.get("masked", True)],
        "reasons": [{"code": code, "text": REASONS.get(code, "")} for code in record.get("review") or ()],
        "resolved": record.get("review_resolved"),
    }


def group_by_car(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """``[(car_id, records)]`` in the order the records come."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(str(record["car_id"]), []).append(record)
    return list(groups.items())


def original_jpeg(record: Mapping[str, Any], settings: Settings, backups: Storage) -> bytes:
    """The untouched upload (its backup), upright, as a JPEG: the frame mask coordinates are in.

    Re-encoded rather than sent as stored, so a phone photo's EXIF rotation is applied here once,
    the way the masking applied it, whatever the browser does with EXIF.
    """
    paths = _paths(record, settings)
    image = decode_any(backups.read(paths.backup, max_bytes=settings.limits.max_bytes), settings.limits)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _VIEW_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode the original of {record['path']}")
    return data.tobytes()


def published_jpeg(record: Mapping[str, Any], settings: Settings, store: Storage) -> bytes:
    """The ``.detect/`` copy exactly as the site exports it."""
    return store.read(_paths(record, settings).detect, max_bytes=settings.limits.max_bytes)


def _paths(record: Mapping[str, Any], settings: Settings):
    return photo_paths(record["path"], backup_dir=settings.backup_dir_name, detect_dir=settings.detect_dir_name)
