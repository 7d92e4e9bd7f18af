"""A person's fixes of one photo (the Airflow UI's "Photos to check"), and the data they make.

A fix adds masks (a rectangle, or a plate's four corners), removes masks, or approves the photo
as it is. Saving renders the ``.detect/`` copy again from the backup through the pipeline's own
steps (mask, banner, atomic write, verify: :func:`platemask.pipeline.write_verified`); the
backup is only read, and a first photo's website copy (banner only, spec rule 2) is left as it
is. The tracking record keeps who did what and when (``manual_masks``, ``removed_masks``,
``review_resolved``), and later runs of the same original keep it
(:class:`platemask.masking.PersonsFixes`). Every save names the ``revision`` it was made on:
a save on an older one is refused, so two people fixing one photo never lose a change unseen.

:func:`export_corrections` turns the fixes into training data: the photos with their final
plate boxes as YOLO labels, and crops of removed masks as hard negatives (training/DATACARD.md).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from platemask.backup import CleanOriginal
from platemask.config import Settings
from platemask.detect import Detection
from platemask.errors import (
    CorrectionConflictError,
    DayBusyError,
    InvalidCorrectionError,
    InvalidImageError,
    MissingFileError,
)
from platemask.images import decode, sha256
from platemask.masking import detection_of, mask_entry
from platemask.paths import photo_paths
from platemask.pipeline import write_verified
from platemask.render import render_outputs
from platemask.storage import Storage, atomic_write
from platemask.tracking import FINISHED, DayTracking, Record, site_now, stamp

__all__ = ["Fix", "apply_fix", "days_since", "export_corrections", "photo_masks"]

log = logging.getLogger(__name__)

#: A drawn mask smaller than this (pixels a side) is a slip of the mouse, not a plate.
MIN_SIDE = 4


@dataclass(frozen=True)
class Fix:
    """What a person changed on one photo, and on which revision of its record they saw it."""

    add: tuple[Sequence[Any], ...] = ()  # each [x1, y1, x2, y2], or four corners [[x, y]] * 4, photo pixels
    remove: tuple[int, ...] = ()  # indexes into photo_masks(record)
    approve: bool = False
    user: str = ""
    revision: int = 0


def photo_masks(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every mask of the published copy, in order (what :attr:`Fix.remove` indexes)."""
    return [dict(m) for m in record.get("masks", ())]


def apply_fix(
    tracking: DayTracking, file_id: str, fix: Fix, *, settings: Settings, store: Storage, backups: Storage
) -> Record:
    """Apply ``fix`` to photo ``file_id`` of the day and return its updated record.

    Raises KeyError for a photo the day does not know, :class:`InvalidCorrectionError` for a fix that
    cannot apply, :class:`CorrectionConflictError` when the record moved on since ``fix.revision``,
    and :class:`DayBusyError` while a daily run or a restore of the day is under way.
    """
    if not fix.user:
        raise InvalidCorrectionError("a fix needs the name of the person who made it")
    with tracking.update() as doc:
        holder = tracking.claim_holder()
        if holder:
            raise DayBusyError(
                f"{tracking.day}: a {holder.get('kind', '?')} of this day is running; save again after it"
            )
        record: Record = doc["processed"][str(file_id)]
        _check_revision(record, fix)
        if record["status"] not in FINISHED:
            raise InvalidCorrectionError(f"photo {file_id} is {record['status']}, not processed yet: nothing to fix")
        at = stamp(site_now(tracking.timezone))
        if fix.add or fix.remove:
            _refresh_outputs(record, fix, at, settings=settings, store=store, backups=backups)
        record["review_resolved"] = {
            "by": fix.user,
            "at": at,
            "action": "fixed" if fix.add or fix.remove else "approved",
        }
        record["revision"] = record.get("revision", 0) + 1
        return record


def _check_revision(record: Record, fix: Fix) -> None:
    revision = record.get("revision", 0)
    if fix.revision != revision:
        last = record.get("review_resolved", {})
        raise CorrectionConflictError(
            f"photo {record['file_id']} was saved by {last.get('by', 'someone')} at {last.get('at', '?')} since you "
            "opened it: reload it to see their change, then make yours again"
        )


def _refresh_outputs(
    record: Record, fix: Fix, at: str, *, settings: Settings, store: Storage, backups: Storage
) -> None:
    """Render the ``.detect/`` copy again from the backup with the fixed masks, and record the fix."""
    paths = photo_paths(record["path"], backup_dir=settings.backup_dir_name, detect_dir=settings.detect_dir_name)
    try:
        data = backups.read(paths.backup, max_bytes=settings.limits.max_bytes)
    except MissingFileError:
        raise InvalidCorrectionError(f"no backup at {paths.backup}: the photo cannot be rendered again") from None
    clean = CleanOriginal(data, sha256(data))
    image = decode(data, settings.limits)
    height, width = image.shape[:2]
    masks = photo_masks(record)
    if any(not 0 <= i < len(masks) for i in fix.remove):
        raise InvalidCorrectionError(f"no mask {sorted(fix.remove)} to remove: the photo has {len(masks)}")
    added = [_drawn(shape, width, height) for shape in fix.add]
    kept = [m for i, m in enumerate(masks) if i not in set(fix.remove)]
    final = [detection_of(m) for m in kept] + added
    masked, _ = render_outputs(image, final, first=False, options=settings.render)  # the website copy stays
    record.setdefault("sha256", {})["detect"] = write_verified(
        store, paths.detect, masked, clean, (width, height), settings
    )
    _record_fix(record, [masks[i] for i in sorted(set(fix.remove))], added, fix.user, at, clean.sha256)
    record["masks"] = [mask_entry(d) for d in final]
    record["detections"] = len(final)


def _record_fix(
    record: Record, removed: list[dict[str, Any]], added: list[Detection], user: str, at: str, backup: str
) -> None:
    if record.get("fixed_for") != backup:  # fixes of an earlier original no longer apply
        record["manual_masks"], record["removed_masks"] = [], []
    manual = record.setdefault("manual_masks", [])
    for mask in removed:
        same = [m for m in manual if m["box"] == mask["box"]] if mask["source"] == "manual" else []
        if same:  # a mask a person drew and now takes back: it is simply gone
            manual.remove(same[0])
        else:
            record.setdefault("removed_masks", []).append({**mask, "by": user, "at": at})
    manual.extend({**mask_entry(d), "by": user, "at": at} for d in added)
    record.setdefault("removed_masks", [])
    record["fixed_for"] = backup


def _drawn(shape: Sequence[Any], width: int, height: int) -> Detection:
    """A mask a person drew: ``[x1, y1, x2, y2]`` or four corners, checked against the photo."""
    try:
        if len(shape) == 4 and all(isinstance(v, int | float) for v in shape):
            x1, y1, x2, y2 = (float(v) for v in shape)
            corners = None
        elif len(shape) == 4 and all(len(point) == 2 for point in shape):
            corners = np.asarray(shape, dtype=np.float32)
            (x1, y1), (x2, y2) = corners.min(axis=0), corners.max(axis=0)
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise InvalidCorrectionError(
            f"a mask is [x1, y1, x2, y2] or four corners [[x, y], ...], not {shape!r}"
        ) from None
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise InvalidCorrectionError(f"mask {list(shape)} is not inside the photo ({width}×{height})")
    if min(x2 - x1, y2 - y1) < MIN_SIDE:
        raise InvalidCorrectionError(f"mask {list(shape)} is smaller than {MIN_SIDE} pixels a side")
    return Detection((x1, y1, x2, y2), 1.0, corners, "manual")


# --- Training data ---------------------------------------------------------------------------------

#: A hard negative's crop: the removed mask and this much of the photo around it, per side.
NEGATIVE_CONTEXT = 1.0


def export_corrections(
    days: Iterable[DayTracking], out: Path, *, settings: Settings, backups: Storage
) -> dict[str, int]:
    """Write the fixed photos of ``days`` as YOLO training data in ``out``; return what was written.

    ``images/<day>_<file_id>.jpg`` with ``labels/<day>_<file_id>.txt`` (class 0, the final plate
    boxes, normalised centre and size), and for each removed mask a crop around it with an empty
    label file: a hard negative, what the model must learn not to mask.
    """
    counts = {"photos": 0, "plates": 0, "negatives": 0}
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for tracking in days:
        for key, record in sorted(tracking.view()["processed"].items()):
            if not record.get("fixed_for") or record.get("sha256", {}).get("backup") != record["fixed_for"]:
                continue
            image = _backup_image(record, settings, backups)
            if image is None:
                continue
            stem = f"{tracking.day:%Y%m%d}_{key}"
            counts["plates"] += _write_example(out, stem, image, [m["box"] for m in record.get("masks", ())])
            counts["photos"] += 1
            for n, removed in enumerate(record.get("removed_masks", ())):
                _write_example(out, f"{stem}_neg{n}", _around(image, removed["box"]), [])
                counts["negatives"] += 1
    return counts


def _backup_image(record: Mapping[str, Any], settings: Settings, backups: Storage) -> np.ndarray | None:
    paths = photo_paths(record["path"], backup_dir=settings.backup_dir_name, detect_dir=settings.detect_dir_name)
    try:
        return decode(backups.read(paths.backup), settings.limits)
    except MissingFileError:
        log.warning("No backup at %s: its fix is not exported", paths.backup)
        return None


def _write_example(out: Path, stem: str, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> int:
    height, width = image.shape[:2]
    lines = []
    for x1, y1, x2, y2 in boxes:
        cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    encoded, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])  # upright pixels, as labelled
    if not encoded:
        raise InvalidImageError(f"cannot encode {stem}.jpg")
    atomic_write(out / "images" / f"{stem}.jpg", jpeg.tobytes())
    atomic_write(out / "labels" / f"{stem}.txt", ("\n".join(lines) + "\n" if lines else "").encode())
    return len(lines)


def _around(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * NEGATIVE_CONTEXT, (y2 - y1) * NEGATIVE_CONTEXT
    left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    right, bottom = min(width, int(np.ceil(x2 + dx))), min(height, int(np.ceil(y2 + dy)))
    return np.ascontiguousarray(image[top:bottom, left:right])


def days_since(since: dt.date, until: dt.date) -> list[dt.date]:
    """Every day from ``since`` to ``until``, both included."""
    return [since + dt.timedelta(days=n) for n in range((until - since).days + 1)]
