"""Photos to check (SPEC section 6, added): why a photo is listed, the day's page and list.

A photo is listed when its tracking record has a non-empty ``review``: reason codes that say
what a person should look at. The finishing task writes one self-contained page per day,
``{LOG_DIR}/review/review_YYYYMMDD.html`` (thumbnails inline, no outside assets, opens straight
from the file system); ``platemask review DATE`` prints the same list in a terminal.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np

from platemask.config import Settings
from platemask.detect import Detection
from platemask.errors import PlateMaskError
from platemask.images import decode_any
from platemask.paths import photo_paths
from platemask.storage import Storage

__all__ = [
    "REASONS",
    "format_review_list",
    "photos_to_review",
    "review_marks",
    "review_page_path",
    "review_reasons",
    "write_review_page",
]

log = logging.getLogger(__name__)

#: Every reason code a record's ``review`` may hold, with what it asks the reader to check.
REASONS: dict[str, str] = {
    "second_look_masked": "masked on the second look's word alone: is there a plate under it?",
    "second_look_unmasked": "plate-like text left visible (review mode, or large and unconfirmed): is it a plate?",
    "low_confidence": "a mask from an unsure detection (below PLATEMASK_REVIEW_CONF): is the plate fully hidden?",
    "no_plate_found": "the car's first photo and no plate found: is a plate visible?",
    "large_mask": "a mask takes a large part of the photo: is it on a plate, not on the car?",
}
#: Thumbnails on one page at most: a day with thousands of photos to check stays a page a browser opens.
MAX_THUMBNAILS = 400
_THUMB_WIDTH = 360
_COLOURS = {  # BGR
    "model": (60, 200, 60),
    "zoomed_out": (200, 200, 0),
    "closer_look": (255, 160, 0),
    "second_look": (40, 40, 230),
}
_UNMASKED = (0, 215, 255)
_Thumbs = tuple[str | None, str | None]  # data URIs of the original and the published copy


def review_reasons(
    plates: Sequence[Detection],
    unmasked: Sequence[Detection],
    *,
    first: bool,
    review_conf: float,
    large_mask: bool = False,
) -> list[str]:
    """The reason codes of one processed photo, in ``REASONS`` order; empty when nothing needs a look.

    ``large_mask``: one of the masks takes more of the photo than a plate usually does.
    """
    found = {
        "large_mask": large_mask,
        "second_look_masked": any(p.source == "second_look" for p in plates),
        "second_look_unmasked": bool(unmasked),
        "low_confidence": any(p.source != "second_look" and p.conf < review_conf for p in plates),
        "no_plate_found": first and not plates and not unmasked,
    }
    return [code for code in REASONS if found[code]]


def review_marks(plates: Sequence[Detection], unmasked: Sequence[Detection]) -> list[dict[str, Any]]:
    """What the page outlines on a listed photo: each mask and each unmasked candidate."""
    return [
        {
            "box": [round(v) for v in d.box],
            "conf": round(d.conf, 3),
            "source": d.source,
            "masked": masked,
        }
        for d, masked in [*((p, True) for p in plates), *((u, False) for u in unmasked)]
    ]


def photos_to_review(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records with a non-empty ``review`` that no person has resolved yet (approved or fixed in
    the Airflow UI), grouped by car, in file order."""
    listed = [r for r in records if r.get("review") and not r.get("review_resolved")]
    return sorted(listed, key=lambda r: (str(r["car_id"]), int(r["file_id"])))


def review_page_path(day: dt.date) -> str:
    """The page's path in the ``LOG_DIR`` storage."""
    return f"/review/review_{day:%Y%m%d}.html"


def format_review_list(day: dt.date, records: Sequence[Mapping[str, Any]]) -> str:
    """The terminal version of the page: one line per photo, grouped by car."""
    if not records:
        return f"{day.isoformat()}: no photos to check"
    lines = [f"{day.isoformat()}: {len(records)} photo(s) to check"]
    car = None
    for record in records:
        if record["car_id"] != car:
            car = record["car_id"]
            lines.append(f"car {car}")
        lines.append(f"  {record['file_id']}  {record['path']}  {', '.join(record['review'])}")
    lines.append("")
    lines += [f"{code}: {meaning}" for code, meaning in REASONS.items()]
    return "\n".join(lines)


def write_review_page(
    day: dt.date,
    records: Sequence[Mapping[str, Any]],
    *,
    settings: Settings,
    store: Storage,
    backups: Storage,
    logs: Storage,
) -> str:
    """Write the day's review page (atomically, as every file) and return its path in ``logs``."""
    page = render_review_page(day, records, lambda record: _thumbnails(record, settings, store, backups))
    path = review_page_path(day)
    logs.write(path, page.encode("utf-8"))
    log.info("Review page for %s: %d photo(s) to check, %s", day, len(records), logs.describe(path))
    return path


def render_review_page(
    day: dt.date, records: Sequence[Mapping[str, Any]], thumbnails: Callable[[Mapping[str, Any]], _Thumbs]
) -> str:
    """The page's HTML; ``thumbnails(record)`` gives the (original, masked) data URIs or Nones."""
    rows = []
    for index, record in enumerate(records):
        original, masked = thumbnails(record) if index < MAX_THUMBNAILS else (None, None)
        new_car = index == 0 or record["car_id"] != records[index - 1]["car_id"]
        rows.append({"record": record, "new_car": new_car, "original": original, "masked": masked})
    legend = [(name, tuple(reversed(colour))) for name, colour in [*_COLOURS.items(), ("not masked", _UNMASKED)]]
    return (
        _templates()
        .get_template("review_page.html")
        .render(
            day=day,
            rows=rows,
            legend=legend,
            reasons=REASONS,
            max_thumbnails=MAX_THUMBNAILS,
            thumb_width=_THUMB_WIDTH,
        )
    )


@functools.cache
def _templates() -> jinja2.Environment:
    # Autoescape: paths and car ids come from the site's database and uploads.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _thumbnails(record: Mapping[str, Any], settings: Settings, store: Storage, backups: Storage) -> _Thumbs:
    """The untouched upload (its backup) with the marks drawn, and the published ``.detect/`` copy."""
    paths = photo_paths(record["path"], backup_dir=settings.backup_dir_name, detect_dir=settings.detect_dir_name)
    original = _read_image(backups, paths.backup, settings)
    if original is not None:
        _draw_marks(original, record.get("review_marks", ()))
    masked = _read_image(store, paths.detect, settings)
    return _data_uri(original), _data_uri(masked)


def _read_image(storage: Storage, path: str, settings: Settings) -> np.ndarray | None:
    try:
        return decode_any(storage.read(path, max_bytes=settings.limits.max_bytes), settings.limits)
    except PlateMaskError as exc:
        log.warning("Review page: cannot show %s: %s", path, exc.describe())
        return None


def _draw_marks(image: np.ndarray, marks: Iterable[Mapping[str, Any]]) -> None:
    thickness = max(2, image.shape[1] // 300)
    for mark in marks:
        x1, y1, x2, y2 = (int(v) for v in mark["box"])
        colour = _COLOURS.get(mark["source"], (255, 0, 255)) if mark["masked"] else _UNMASKED
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        label = f"{mark['source'].replace('_', ' ')} {mark['conf']:.2f}" + ("" if mark["masked"] else " NOT masked")
        scale = max(0.5, image.shape[1] / 1200)
        cv2.putText(image, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness)


def _data_uri(image: np.ndarray | None) -> str | None:
    if image is None:
        return None
    scale = min(1.0, _THUMB_WIDTH * 2 / image.shape[1])  # twice the shown width: sharp on high-DPI screens
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii") if ok else None
