"""The daily and restore DAGs with S3: a mounted bucket with S3 backups, and direct S3 (no mount)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import cv2
import numpy as np
import pendulum
import pytest

from platemask.images import output_source, sha256
from platemask.paths import car_folder
from tests.support.airflow_runs import trigger
from tests.support.seaweed import Seaweed
from tests.support.site import Site, valid_tracking
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = [pytest.mark.e2e, pytest.mark.s3]

DAY = dt.date(2026, 2, 3)
SCHEDULED = pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")


def _photos() -> list[tuple[int, str, bytes]]:
    rows = []
    for car, seeds in ((10418430, (1, 2, 3)), (10418457, (4, 5))):
        for branch, seed in enumerate(seeds, start=1):
            data = photo_jpeg(make_car_photo(seed, size=(960, 720), view="front").image, quality=90)
            rows.append((car, f"{car_folder(str(car))}{car}{branch:03d}.jpg", data))
    return rows


def _seed(site: Site, put) -> list[tuple[str, bytes, int]]:
    seeded = []
    for index, (car, path, data) in enumerate(_photos()):
        branch = 1 if path.endswith("001.jpg") else index + 2
        upload = site.add(car, path.rsplit("/", 1)[1], data, branch_no=branch, day=DAY, path=path)
        put(path, data)
        seeded.append((upload.path, data, branch))
    return seeded


def test_mount_with_s3_backups(site: Site, weed: Seaweed, mounted: Path, bucket: str, monkeypatch) -> None:
    """S3_MOUNT is the mounted bucket; BACKUP_S3_BUCKET makes backups server-side S3 copies."""
    root = mounted / "webroot"
    monkeypatch.setenv("S3_MOUNT", str(root))
    monkeypatch.setenv("BACKUP_S3_BUCKET", bucket)
    monkeypatch.setenv("BACKUP_S3_KEY_PREFIX", "webroot")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", weed.connection_json())

    def put(path: str, data: bytes) -> None:  # staff upload through the mount
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    seeded = _seed(site, put)
    assert trigger("plate_masking_daily", SCHEDULED).state == "success"
    s3 = weed.client()
    for path, original, branch in seeded:
        folder, name = path.rsplit("/", 1)
        backup_key = f"webroot{folder}/.backup/{name}"
        assert s3.get_object(Bucket=bucket, Key=backup_key)["Body"].read() == original  # made through S3
        detect = (root / f"{folder}/.detect/{name}".lstrip("/")).read_bytes()
        assert output_source(detect) == sha256(original)
        assert ((root / path.lstrip("/")).read_bytes() != original) == (branch == 1)

    # The restore DAG reads the backups from S3.
    run = trigger("plate_masking_restore", None, {"date": "2026-02-03", "status": "done", "dry_run": False})
    assert run.state == "success"
    for path, original, _ in seeded:
        assert (root / path.lstrip("/")).read_bytes() == original


def test_direct_s3_without_a_mount(site: Site, weed: Seaweed, bucket: str, monkeypatch) -> None:
    """S3_MOUNT=s3://...: a worker with no mount at all; the tracking file lives in S3 too."""
    monkeypatch.setenv("S3_MOUNT", f"s3://{bucket}/webroot")
    monkeypatch.setenv("LOG_DIR", f"s3://{bucket}/logs")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", weed.connection_json())
    s3 = weed.client()

    def put(path: str, data: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=f"webroot{path}", Body=data)

    def get(key: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    seeded = _seed(site, put)
    assert trigger("plate_masking_daily", SCHEDULED).state == "success"
    for path, original, branch in seeded:
        folder, name = path.rsplit("/", 1)
        assert get(f"webroot{folder}/.backup/{name}") == original
        masked = cv2.imdecode(np.frombuffer(get(f"webroot{folder}/.detect/{name}"), np.uint8), cv2.IMREAD_COLOR)
        assert masked.shape == (720, 960, 3)
        assert (get(f"webroot{path}") != original) == (branch == 1)
    doc = valid_tracking(json.loads(get("logs/tracking/processed_20260203.json")))
    assert {r["status"] for r in doc["processed"].values()} == {"done"}
    assert not any(k["Key"].endswith(".lock") for k in s3.list_objects_v2(Bucket=bucket, Prefix="logs/")["Contents"])

    photo_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="webroot/")["Contents"]]
    before = {key: get(key) for key in photo_keys}
    again = trigger("plate_masking_daily", SCHEDULED)  # incremental: nothing to do, nothing rewritten
    assert again.state == "success"
    assert {key: get(key) for key in photo_keys} == before

    run = trigger("plate_masking_restore", None, {"date": "2026-02-03", "status": "all", "dry_run": False})
    assert run.state == "success"
    for path, original, _ in seeded:
        assert get(f"webroot{path}") == original
