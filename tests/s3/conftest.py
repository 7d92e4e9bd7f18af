"""A SeaweedFS server for the S3 tests, started once per session and stopped at the end."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import seaweed

_buckets = itertools.count()


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[seaweed.Seaweed]:
    server = seaweed.start(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture
def bucket(weed: seaweed.Seaweed) -> str:
    """A fresh, empty bucket."""
    name = f"photos-{next(_buckets)}"
    weed.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def mounted(weed: seaweed.Seaweed, bucket: str, tmp_path: Path) -> Iterator[Path]:
    """The bucket mounted with FUSE, as s3fs mounts it on a production worker."""
    if not seaweed.fuse_available():
        pytest.skip("FUSE mounts need root and /dev/fuse on this machine")
    with weed.mount(bucket, tmp_path / "mnt") as path:
        yield path
