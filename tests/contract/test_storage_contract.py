"""The Storage contract (platemask.storage.Storage), one suite for every backend: a folder and real S3."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from platemask.errors import ImageTooLargeError, MissingFileError
from platemask.s3 import S3Storage
from platemask.storage import LocalStorage, Storage

BACKUP = "/upfile/1041/8430/.backup/10418430001.jpg"
OUTPUT = "/upfile/1041/8430/.detect/10418430001.jpg"


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.s3)])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    """Makes a handle on one fresh storage; each call is another handle, as another process would hold."""
    if request.param == "folder":
        return lambda: LocalStorage(tmp_path)
    weed, bucket = request.getfixturevalue("weed"), request.getfixturevalue("bucket")
    return lambda: S3Storage(weed.client(), bucket, "webroot")


def test_write_replaces_the_whole_file(new_store) -> None:
    store = new_store()
    store.write(OUTPUT, b"one")
    store.write(OUTPUT, b"two")
    assert store.read(OUTPUT) == b"two" and store.exists(OUTPUT)
    assert list(store.list("/upfile/1041/8430/.detect")) == ["10418430001.jpg"]  # no temp file left


def test_create_never_overwrites(new_store) -> None:
    store = new_store()
    assert store.create(BACKUP, b"first") is True
    assert store.create(BACKUP, b"second") is False
    assert store.read(BACKUP) == b"first"


def test_create_race_has_exactly_one_winner(new_store) -> None:
    barrier = threading.Barrier(6)
    wins: list[bool] = []

    def racer(n: int) -> None:
        own = new_store()  # one handle per worker, as in separate processes
        barrier.wait()
        wins.append(own.create(BACKUP, f"writer {n}".encode()))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1
    assert new_store().read(BACKUP).startswith(b"writer ")


def test_missing_files(new_store) -> None:
    store = new_store()
    with pytest.raises(MissingFileError):
        store.read(BACKUP)
    assert not store.exists(BACKUP) and store.age(BACKUP) is None
    assert list(store.list("/upfile/9999/0000")) == []
    store.delete(BACKUP)  # deleting what is not there is fine


def test_size_limit_is_checked_before_reading(new_store) -> None:
    store = new_store()
    store.write(OUTPUT, b"x" * 5000)
    with pytest.raises(ImageTooLargeError, match="5000 bytes"):
        store.read(OUTPUT, max_bytes=1000)
    assert store.read(OUTPUT, max_bytes=5000) == b"x" * 5000


def test_delete_and_age(new_store) -> None:
    store = new_store()
    store.write(OUTPUT, b"data")
    age = store.age(OUTPUT)
    assert age is not None and -5 <= age < 60
    store.delete(OUTPUT)
    assert not store.exists(OUTPUT)
