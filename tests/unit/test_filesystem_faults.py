"""The photo file system full (ENOSPC) or read-only: clear errors, nothing half-written, then recovery.

These mount a small tmpfs, so they run as root (as CI does here) and are skipped elsewhere.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from platemask.config import Settings
from platemask.pipeline import process_photos
from platemask.storage import LocalStorage
from platemask.uploads import Photo
from tests.support.photos import StubDetector, jpeg_bytes, noisy_photo
from tests.support.tmpfs import mounted

FOLDER = "upfile/1041/8430"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs as the photo root."""
    with mounted(tmp_path / "disk", "size=3m") as root:
        yield root


def _day(root: Path) -> tuple[Settings, list[Photo], dict[str, bytes]]:
    originals = {}
    photos = []
    for n in (1, 2, 3):
        path = f"/{FOLDER}/10418430{n:03d}.jpg"
        originals[path] = jpeg_bytes(noisy_photo(640, 480, seed=n))
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(originals[path])
        photos.append(Photo(n, "10418430", path, n))
    return Settings.from_env({"S3_MOUNT": str(root), "LOG_DIR": str(root / "logs")}), photos, originals


def _process(settings: Settings, photos: list[Photo]):
    store = LocalStorage(settings.s3_mount)
    return list(process_photos(photos, settings=settings, store=store, backups=store, detector=StubDetector()))


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp"))


def test_full_disk_fails_photos_clearly_and_they_succeed_once_there_is_room(small_disk: Path) -> None:
    settings, photos, originals = _day(small_disk)
    filler = small_disk / "filler"
    with filler.open("wb") as handle:  # fill the disk to the last byte
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    outcomes = _process(settings, photos)
    assert all(not o.ok for o in outcomes)
    for outcome in outcomes:
        assert outcome.error.code == "storage" and outcome.error.transient  # the task retries
        assert "No space left on device" in str(outcome.error)
    for path, data in originals.items():
        assert (small_disk / path.lstrip("/")).read_bytes() == data
    assert _leftovers(small_disk) == []  # no half-written temp files eat what room is left

    filler.unlink()
    assert all(o.ok for o in _process(settings, photos))
    for path, data in originals.items():
        assert (small_disk / FOLDER / ".backup" / path.rsplit("/", 1)[1]).read_bytes() == data


def test_read_only_disk_fails_photos_at_once_and_leaves_them_untouched(small_disk: Path) -> None:
    settings, photos, originals = _day(small_disk)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    outcomes = _process(settings, photos)
    for outcome in outcomes:
        assert outcome.error.code == "storage" and not outcome.error.transient  # retrying cannot help
        assert "Read-only file system" in str(outcome.error)
    for path, data in originals.items():
        assert (small_disk / path.lstrip("/")).read_bytes() == data

    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert all(o.ok for o in _process(settings, photos))
