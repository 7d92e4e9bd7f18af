from __future__ import annotations

from pathlib import Path

import pytest

from platemask.backup import history_path, prepare_original
from platemask.config import Limits
from platemask.errors import BackupError, InvalidImageError, MissingFileError
from platemask.images import encode_jpeg, sha256
from platemask.paths import photo_paths
from platemask.storage import LocalStorage
from tests.support.photos import jpeg_bytes, noisy_photo

PATH = "/upfile/1041/8430/10418430001.jpg"
PATHS = photo_paths(PATH)
LIMITS = Limits()


@pytest.fixture
def store(photo_root: Path) -> LocalStorage:
    return LocalStorage(photo_root)


def test_first_run_creates_byte_exact_backup(store: LocalStorage, put_photo, photo_root: Path) -> None:
    original = put_photo(PATH)
    clean = prepare_original(PATHS, store, store, LIMITS)
    assert clean.backup_created and clean.data == original
    assert (photo_root / PATHS.backup.lstrip("/")).read_bytes() == original


def test_existing_backup_is_never_overwritten(store: LocalStorage, put_photo, photo_root: Path) -> None:
    original = put_photo(PATH)
    prepare_original(PATHS, store, store, LIMITS)
    backup_file = photo_root / PATHS.backup.lstrip("/")
    before = backup_file.stat().st_mtime_ns
    clean = prepare_original(PATHS, store, store, LIMITS)
    assert not clean.backup_created and clean.data == original
    assert backup_file.stat().st_mtime_ns == before


def test_our_banner_output_is_replaced_by_the_backup(store: LocalStorage, put_photo, photo_root: Path) -> None:
    original = put_photo(PATH)
    prepare_original(PATHS, store, store, LIMITS)
    ours = encode_jpeg(noisy_photo(seed=5), quality=90, source_sha256=sha256(original))
    put_photo(PATH, ours)  # what a previous run left: the banner-only first photo
    clean = prepare_original(PATHS, store, store, LIMITS)
    assert clean.restored and clean.data == original
    assert (photo_root / PATH.lstrip("/")).read_bytes() == original  # restored before processing


@pytest.mark.parametrize("marked", [True, False], ids=["our-comment", "known-from-tracking"])
def test_our_output_without_its_backup_is_never_backed_up(store: LocalStorage, put_photo, photo_root, marked) -> None:
    """``.backup/`` cleaned, or the backup settings changed: the banner version must not become the original."""
    original = put_photo(PATH)
    prepare_original(PATHS, store, store, LIMITS)
    ours = (
        encode_jpeg(noisy_photo(seed=5), quality=90, source_sha256=sha256(original))
        if marked
        else jpeg_bytes(noisy_photo(seed=6))
    )
    put_photo(PATH, ours)
    (photo_root / PATHS.backup.lstrip("/")).unlink()
    with pytest.raises(BackupError, match=r"own output.*backup /upfile/1041/8430/\.backup/10418430001\.jpg is missing"):
        prepare_original(PATHS, store, store, LIMITS, known_outputs=() if marked else {sha256(ours)})
    assert not (photo_root / PATHS.backup.lstrip("/")).exists()  # nothing taken for the original
    assert (photo_root / PATH.lstrip("/")).read_bytes() == ours  # and the photo left as it is


def test_output_known_from_tracking_is_replaced(store: LocalStorage, put_photo) -> None:
    original = put_photo(PATH)
    prepare_original(PATHS, store, store, LIMITS)
    unmarked = jpeg_bytes(noisy_photo(seed=6))  # e.g. an older version's output without our comment
    put_photo(PATH, unmarked)
    clean = prepare_original(PATHS, store, store, LIMITS, known_outputs={sha256(unmarked)})
    assert clean.restored and clean.data == original


def test_new_upload_keeps_both_versions(store: LocalStorage, put_photo, photo_root: Path) -> None:
    old = put_photo(PATH, seed=1)
    prepare_original(PATHS, store, store, LIMITS)
    new = put_photo(PATH, seed=2)  # staff replaced the photo after it was backed up
    clean = prepare_original(PATHS, store, store, LIMITS)
    assert clean.data == new and clean.archived_backup == history_path(PATHS, sha256(old))
    assert (photo_root / PATH.lstrip("/")).read_bytes() == new  # never reverted
    assert (photo_root / PATHS.backup.lstrip("/")).read_bytes() == new
    assert (photo_root / clean.archived_backup.lstrip("/")).read_bytes() == old


def test_broken_new_upload_leaves_backup_alone(store: LocalStorage, put_photo, photo_root: Path) -> None:
    old = put_photo(PATH, seed=1)
    prepare_original(PATHS, store, store, LIMITS)
    put_photo(PATH, old[:3000])  # truncated re-upload
    with pytest.raises(InvalidImageError, match="truncated"):
        prepare_original(PATHS, store, store, LIMITS)
    assert (photo_root / PATHS.backup.lstrip("/")).read_bytes() == old


def test_bad_original_gets_no_backup(store: LocalStorage, put_photo, photo_root: Path) -> None:
    put_photo(PATH, b"")
    with pytest.raises(InvalidImageError, match="empty"):
        prepare_original(PATHS, store, store, LIMITS)
    assert not (photo_root / PATHS.backup.lstrip("/")).exists()


def test_missing_original(store: LocalStorage) -> None:
    with pytest.raises(MissingFileError):
        prepare_original(PATHS, store, store, LIMITS)
