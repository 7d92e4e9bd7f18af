"""Where a car's photos, backups and masked copies live (spec section 3), and path safety.

Paths from the database are relative to the storage root and start with ``/upfile/``. They are
untrusted input: anything that could point outside the root is refused before any I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from platemask.config import BACKUP_DIR, DETECT_DIR
from platemask.errors import UnsafePathError

__all__ = ["CAR_ID", "PhotoPaths", "car_folder", "parse_car_ids", "photo_paths", "validate_car_id"]

#: What a car id may look like: it names folders and files, so nothing that can escape them.
CAR_ID = r"[0-9A-Za-z][0-9A-Za-z_-]{4,63}"
_CAR_ID = re.compile(rf"^{CAR_ID}$")
_UPLOAD_ROOT = "/upfile/"


def validate_car_id(car_id: str) -> str:
    """Return ``car_id`` if it can name a folder safely, else raise :class:`UnsafePathError`."""
    if not isinstance(car_id, str) or not _CAR_ID.match(car_id):
        raise UnsafePathError(f"car id {car_id!r} must be 5-64 letters, digits, '_' or '-'")
    return car_id


def parse_car_ids(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Car ids as people type them: None, ``"10418430"``, ``"10418430, 10418457"`` or a list of those.

    The restore form's text field and the command line's ``--car-id`` both go through here.
    """
    if not values:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    return tuple(validate_car_id(part.strip()) for item in items for part in item.split(",") if part.strip())


def car_folder(car_id: str) -> str:
    """Folder of a car's photos: car ``10418430`` → ``/upfile/1041/8430/``."""
    validate_car_id(car_id)
    return f"{_UPLOAD_ROOT}{car_id[:4]}/{car_id[4:]}/"


@dataclass(frozen=True)
class PhotoPaths:
    """The three places one photo touches, as storage-relative paths."""

    original: str
    backup: str
    detect: str

    @property
    def folder(self) -> str:
        """The car folder that holds the original."""
        return posixpath.dirname(self.original)

    @property
    def name(self) -> str:
        """The photo's file name."""
        return posixpath.basename(self.original)


def photo_paths(path: str, *, backup_dir: str = BACKUP_DIR, detect_dir: str = DETECT_DIR) -> PhotoPaths:
    """Validate a database path and derive its backup and ``.detect/`` paths."""
    original = _clean(path)
    folder, name = posixpath.split(original)
    return PhotoPaths(
        original=original,
        backup=f"{folder}/{backup_dir}/{name}",
        detect=f"{folder}/{detect_dir}/{name}",
    )


def _clean(path: str) -> str:
    """Normalise a relative ``/upfile/...`` path or raise :class:`UnsafePathError`."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError("empty path")
    if "\x00" in path or "\\" in path:
        raise UnsafePathError(f"path {path!r} contains a NUL byte or a backslash")
    parts = path.split("/")
    if any(part in ("..", ".") for part in parts):
        raise UnsafePathError(f"path {path!r} contains '.' or '..'")
    normal = posixpath.normpath("/" + path.lstrip("/"))
    if not normal.startswith(_UPLOAD_ROOT) or normal.count("/") < 3:
        raise UnsafePathError(f"path {path!r} is not a file under {_UPLOAD_ROOT}")
    if any(part.startswith(".") for part in normal.split("/")[1:]):
        # Hidden names are ours (.backup, .detect): a photo must never be read from or written there.
        raise UnsafePathError(f"path {path!r} points into a hidden folder or file")
    return normal
