from __future__ import annotations

import pytest

from platemask.errors import UnsafePathError
from platemask.paths import car_folder, parse_car_ids, photo_paths
from platemask.storage import LocalStorage


@pytest.mark.parametrize(
    ("car_id", "folder"),
    [
        pytest.param("10418430", "/upfile/1041/8430/", id="spec-example"),
        pytest.param("104184301", "/upfile/1041/84301/", id="nine-digits"),
        pytest.param("AB12C-99", "/upfile/AB12/C-99/", id="inspection-code"),
    ],
)
def test_car_folder(car_id: str, folder: str) -> None:
    assert car_folder(car_id) == folder


@pytest.mark.parametrize(
    "car_id",
    [
        pytest.param("", id="empty"),
        pytest.param("1041", id="too-short"),
        pytest.param("../../etc", id="traversal"),
        pytest.param("1041/8430", id="slash"),
    ],
)
def test_car_folder_refuses_unsafe_ids(car_id: str) -> None:
    with pytest.raises(UnsafePathError):
        car_folder(car_id)


def test_photo_paths_derive_backup_and_detect() -> None:
    paths = photo_paths("/upfile/1041/8430/10418430001.jpg")
    assert paths.original == "/upfile/1041/8430/10418430001.jpg"
    assert paths.backup == "/upfile/1041/8430/.backup/10418430001.jpg"
    assert paths.detect == "/upfile/1041/8430/.detect/10418430001.jpg"
    assert paths.folder == "/upfile/1041/8430"
    assert paths.name == "10418430001.jpg"


def test_photo_paths_custom_backup_folder() -> None:
    assert photo_paths("/upfile/1/2/x.jpg", backup_dir=".orig").backup == "/upfile/1/2/.orig/x.jpg"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/upfile/1041/../../etc/passwd", id="dotdot"),
        pytest.param("/etc/passwd", id="absolute-outside"),
        pytest.param("/upfile/x.jpg", id="not-in-a-car-folder"),
        pytest.param("/upfile/1041/8430/.backup/x.jpg", id="into-backup"),
        pytest.param("/upfile/1041/8430/.detect/x.jpg", id="into-detect"),
        pytest.param("/upfile/1041/8430/x\x00.jpg", id="nul"),
        pytest.param("\\upfile\\1041\\x.jpg", id="backslashes"),
        pytest.param("", id="empty"),
    ],
)
def test_photo_paths_refuse_unsafe(path: str) -> None:
    with pytest.raises(UnsafePathError):
        photo_paths(path)


def test_storage_refuses_symlink_out_of_root(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "upfile" / "1041").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    (root / "upfile" / "1041" / "8430").symlink_to(outside)
    store = LocalStorage(root)
    with pytest.raises(UnsafePathError):
        store.read("/upfile/1041/8430/secret.jpg")
    with pytest.raises(UnsafePathError):
        store.write("/upfile/1041/8430/.detect/x.jpg", b"data")
    assert not (outside / ".detect").exists()


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (None, ()),
        ("", ()),
        ("10418430", ("10418430",)),
        (" 10418430 , 20260001,", ("10418430", "20260001")),  # the restore form's text field
        (["10418430", "10418457,20260001"], ("10418430", "10418457", "20260001")),  # --car-id, repeated
    ],
)
def test_parse_car_ids(typed, expected) -> None:
    assert parse_car_ids(typed) == expected


def test_parse_car_ids_refuses_a_path() -> None:
    with pytest.raises(UnsafePathError):
        parse_car_ids("10418430, ../../etc")
