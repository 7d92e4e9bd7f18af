from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from platemask.errors import MissingFileError, StorageError
from platemask.storage import LocalStorage


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("/upfile/1041/8430/.detect/a.jpg", b"one")
    store.write("/upfile/1041/8430/.detect/a.jpg", b"two")
    folder = tmp_path / "upfile/1041/8430/.detect"
    assert (folder / "a.jpg").read_bytes() == b"two"
    assert [p.name for p in folder.iterdir()] == ["a.jpg"]


def test_create_never_overwrites(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    assert store.create("/upfile/1/2/.backup/a.jpg", b"first") is True
    assert store.create("/upfile/1/2/.backup/a.jpg", b"second") is False
    assert (tmp_path / "upfile/1/2/.backup/a.jpg").read_bytes() == b"first"


def test_create_race_has_exactly_one_winner(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def racer(n: int) -> None:
        barrier.wait()
        results.append(store.create("/upfile/1/2/.backup/a.jpg", f"writer {n}".encode()))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert (tmp_path / "upfile/1/2/.backup/a.jpg").read_bytes().startswith(b"writer ")


def test_create_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # what s3fs answers

    monkeypatch.setattr(os, "link", no_link)
    store = LocalStorage(tmp_path)
    assert store.create("/upfile/1/2/.backup/a.jpg", b"first") is True
    assert store.create("/upfile/1/2/.backup/a.jpg", b"second") is False
    assert (tmp_path / "upfile/1/2/.backup/a.jpg").read_bytes() == b"first"


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="does not exist"):
        LocalStorage(tmp_path).read("/upfile/1/2/none.jpg")


@pytest.mark.parametrize(
    ("errno_value", "transient"),
    [
        pytest.param(errno.EIO, True, id="io-error-retried"),
        pytest.param(errno.ENOSPC, True, id="disk-full-retried"),
        pytest.param(errno.EACCES, False, id="permission-denied-not-retried"),
        pytest.param(errno.EROFS, False, id="read-only-not-retried"),
    ],
)
def test_write_errors_say_whether_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno_value: int, transient: bool
) -> None:
    def broken(*args, **kwargs):
        raise OSError(errno_value, os.strerror(errno_value))

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(StorageError, match=os.strerror(errno_value)) as caught:
        LocalStorage(tmp_path).write("/upfile/1/2/a.jpg", b"x")
    assert caught.value.transient is transient
    assert not list((tmp_path / "upfile/1/2").iterdir())  # the temp file was cleaned up
