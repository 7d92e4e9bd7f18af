"""``platemask check`` on S3: photo root, LOG_DIR and, above all, whether backups are public.

Against a real S3 server (SeaweedFS) that checks credentials: the test's keys may do everything,
and anyone without credentials may read and list the bucket ``public-backups`` only, as a
bucket policy granting public read would allow.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from platemask.preflight import (
    Check,
    Preflight,
    Status,
    check_backups_private,
    check_log_dir,
    check_photo_root,
    run_checks,
)
from tests.support import seaweed

pytestmark = pytest.mark.s3

PUBLIC = "public-backups"
_buckets = itertools.count()


@pytest.fixture(scope="module")
def guarded_weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[seaweed.Seaweed]:
    server = seaweed.start(tmp_path_factory.mktemp("guarded-seaweed"), public_buckets=(PUBLIC,))
    server.client().create_bucket(Bucket=PUBLIC)
    yield server
    server.stop()


@pytest.fixture
def private_bucket(guarded_weed: seaweed.Seaweed) -> str:
    name = f"private-{next(_buckets)}"
    guarded_weed.client().create_bucket(Bucket=name)
    return name


def _check(guarded_weed: seaweed.Seaweed, environ: dict[str, str]) -> dict[str, tuple[Status, str, str]]:
    preflight = Preflight(environ, s3_client=lambda settings: guarded_weed.client())
    checks = [Check(f.__name__, f) for f in (check_photo_root, check_log_dir, check_backups_private)]
    return {o.check.name: (o.result.status, o.result.message, o.result.fix) for o in run_checks(preflight, checks)}


def _keys(guarded_weed: seaweed.Seaweed, bucket: str) -> list[str]:
    return [item["Key"] for item in guarded_weed.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_private_bucket_passes_and_keeps_no_probe(guarded_weed: seaweed.Seaweed, private_bucket: str) -> None:
    guarded_weed.client().put_object(Bucket=private_bucket, Key="webroot/upfile/1041/8430/1.jpg", Body=b"photo")

    results = _check(
        guarded_weed,
        {"S3_MOUNT": f"s3://{private_bucket}/webroot", "LOG_DIR": f"s3://{private_bucket}/logs"},
    )

    assert {name: status for name, (status, _, _) in results.items()} == {
        "check_photo_root": Status.OK,
        "check_log_dir": Status.OK,
        "check_backups_private": Status.OK,
    }
    assert "in S3, shared by every worker" in results["check_log_dir"][1]
    assert f"s3://{private_bucket}/webroot/upfile/platemask-check/.backup/" in results["check_backups_private"][1]
    assert _keys(guarded_weed, private_bucket) == ["webroot/upfile/1041/8430/1.jpg"]


def test_public_backups_fail_with_the_fix(guarded_weed: seaweed.Seaweed, tmp_path: Path) -> None:
    # Photos on a mounted folder, backups copied into a bucket that anyone may read.
    environ = {
        "S3_MOUNT": str(tmp_path / "mount"),
        "LOG_DIR": str(tmp_path / "logs"),
        "BACKUP_S3_BUCKET": PUBLIC,
        "BACKUP_S3_KEY_PREFIX": "webroot",
    }
    (tmp_path / "mount").mkdir()

    status, message, fix = _check(guarded_weed, environ)["check_backups_private"]

    assert status is Status.FAIL
    assert "anyone may GET and LIST" in message
    assert f"s3://{PUBLIC}/webroot/upfile/platemask-check/.backup/" in message
    assert "bucket policy" in fix
    assert _keys(guarded_weed, PUBLIC) == []
