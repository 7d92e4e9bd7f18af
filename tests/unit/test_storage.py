from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from platemask.errors import StorageError
from platemask.storage import LocalStorage

# The contract every backend keeps (atomic writes, create-if-absent, its race, missing files,
# size limits) is tests/contract/test_storage_contract.py; here, what only a folder does.


def test_a_write_leaves_no_temp_file_in_the_folder(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("/upfile/1041/8430/.detect/a.jpg", b"one")
    store.write("/upfile/1041/8430/.detect/a.jpg", b"two")
    assert [p.name for p in (tmp_path / "upfile/1041/8430/.detect").iterdir()] == ["a.jpg"]


def test_create_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # what s3fs answers

    monkeypatch.setattr(os, "link", no_link)
    store = LocalStorage(tmp_path)
    assert store.create("/upfile/1/2/.backup/a.jpg", b"first") is True
    assert store.create("/upfile/1/2/.backup/a.jpg", b"second") is False
    assert (tmp_path / "upfile/1/2/.backup/a.jpg").read_bytes() == b"first"


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
