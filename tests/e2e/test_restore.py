"""plate_masking_restore end to end, after a real daily run: the form, dry run, filters, the CLI twin."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest
from airflow.sdk.exceptions import ParamValidationError

from tests.support.airflow_runs import task_states, trigger, xcom
from tests.support.site import Site, tracking_file
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 2, 3)


def _photo(seed: int) -> bytes:
    return photo_jpeg(make_car_photo(seed, size=(960, 720), view="front").image, quality=90)


@pytest.fixture
def processed_day(site: Site) -> dict[str, list]:
    """Two cars, each with a first photo, processed by a real daily run."""
    cars = {
        "10418430": [site.add(10418430, f"10418430{n:03d}.jpg", _photo(n), branch_no=n, day=DAY) for n in (1, 2)],
        "10418457": [site.add(10418457, f"10418457{n:03d}.jpg", _photo(10 + n), branch_no=n, day=DAY) for n in (1, 2)],
    }
    assert trigger("plate_masking_daily", pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")).state == "success"
    return cars


@pytest.mark.parametrize(
    "conf",
    [
        pytest.param({"status": "done"}, id="date-missing"),
        pytest.param({"date": "2026-02-30", "status": "done"}, id="bad-date"),
        pytest.param({"date": "2026-02-03", "status": "finished"}, id="unknown-status"),
        pytest.param({"date": "2026-02-03", "status": "done", "car_id": "../../etc"}, id="malformed-car-id"),
        pytest.param({"date": "2026-02-03", "status": "done", "car_id": ["10418430", "x y"]}, id="malformed-in-list"),
        pytest.param({"date": "2026-02-03", "status": "done", "dry_run": "no"}, id="dry-run-not-boolean"),
    ],
)
def test_invalid_conf_is_refused_before_any_task(site: Site, conf: dict) -> None:
    with pytest.raises(ParamValidationError):
        trigger("plate_masking_restore", None, conf)


def test_dry_run_then_restore_one_car(site: Site, processed_day, chatwork) -> None:
    website = site.file("/upfile/1041/8430/10418430001.jpg")
    before = site.snapshot()

    # The form's default is a dry run: a report, not a single byte changed.
    dry = trigger("plate_masking_restore", None, {"date": "2026-02-03", "status": "done"})
    assert dry.state == "success" and site.snapshot() == before
    report = xcom(dry, "restore_originals")
    assert report["dry_run"] is True
    assert report["counts"] == {"restored": 0, "would_restore": 2, "unchanged": 2, "missing_backup": 0, "error": 0}
    assert report["cars"] == {
        "10418430": {"would_restore": 1, "unchanged": 1},
        "10418457": {"would_restore": 1, "unchanged": 1},
    }
    assert "🔎 復元予定: 2件" in chatwork.messages[-1]["body"]

    # Then for real, one car only (the form's car_id), originals back byte for byte.
    real = trigger(
        "plate_masking_restore", None, {"date": "2026-02-03", "status": "done", "car_id": "10418430", "dry_run": False}
    )
    assert real.state == "success"
    for upload in processed_day["10418430"]:
        assert site.file(upload.path) == upload.original
    assert site.file("/upfile/1041/8457/10418457001.jpg") == before["upfile/1041/8457/10418457001.jpg"]  # untouched
    assert site.exists("/upfile/1041/8430/.detect/10418430001.jpg")  # remove_detect was off
    records = {r["path"]: r for r in tracking_file(DAY)["processed"].values()}
    restored = records["/upfile/1041/8430/10418430001.jpg"]
    assert restored["status"] == "done" and restored["status_history"][-1]["status"] == "restored"
    assert "restored_at" in restored and "restored_at" not in records["/upfile/1041/8457/10418457001.jpg"]
    assert site.file("/upfile/1041/8430/.backup/10418430001.jpg") == processed_day["10418430"][0].original

    # A later daily run leaves restored photos alone unless asked (force) — then one banner again.
    assert trigger("plate_masking_daily", pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")).state == "success"
    assert site.file("/upfile/1041/8430/10418430001.jpg") == processed_day["10418430"][0].original
    forced = trigger("plate_masking_daily", None, {"date": "2026-02-03", "force": True})
    assert forced.state == "success"
    assert site.file("/upfile/1041/8430/10418430001.jpg") == website


def test_a_car_known_by_its_inspresultdata_cd_is_restored_by_it(site: Site, chatwork) -> None:
    # Its photos sit under its car_cd folder (1041/8430); the daily run groups them as AB12345, and so
    # does the restore: the folder's digits name no car.
    names = {n: f"10418430{n:03d}.jpg" for n in (1, 2)}
    uploads = [
        site.add(
            10418430,
            name,
            _photo(20 + n),
            branch_no=n,
            day=DAY,
            inspresultdata_cd="AB12345",
            path=f"/upfile/1041/8430/{name}",
        )
        for n, name in names.items()
    ]
    assert trigger("plate_masking_daily", pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")).state == "success"
    conf = {"date": "2026-02-03", "status": "done", "car_id": "AB12345, 10418430", "dry_run": False}
    run = trigger("plate_masking_restore", None, conf)
    assert run.state == "success"
    report = xcom(run, "restore_originals")
    assert report["cars"] == {"AB12345": {"restored": 1, "unchanged": 1}} and report["unmatched_cars"] == ["10418430"]
    for upload in uploads:
        assert site.file(upload.path) == upload.original


def test_filters_missing_backup_and_remove_detect(site: Site, processed_day) -> None:
    (site.root / "upfile/1041/8457/.backup/10418457001.jpg").unlink()  # someone deleted a backup
    none = trigger("plate_masking_restore", None, {"date": "2026-02-03", "status": "error", "dry_run": False})
    assert none.state == "success" and xcom(none, "restore_originals")["counts"]["restored"] == 0

    run = trigger(
        "plate_masking_restore",
        None,
        {
            "date": "2026-02-03",
            "status": "all",
            "car_id": "10418457, 10418430",
            "dry_run": False,
            "remove_detect": True,
        },
    )
    assert task_states(run)[("restore_originals", -1)] == "failed"  # reported, and the run is red
    for upload in processed_day["10418430"]:
        assert site.file(upload.path) == upload.original
        assert not site.exists(upload.path.replace("/8430/", "/8430/.detect/"))
    second = processed_day["10418457"][1]
    assert site.file(second.path) == second.original and not site.exists("/upfile/1041/8457/.detect/10418457002.jpg")
    assert site.exists("/upfile/1041/8457/.detect/10418457001.jpg")  # not restored, so its masked copy stays


def test_command_line_twin(site: Site, processed_day, chatwork) -> None:
    platemask = str(Path(sys.executable).with_name("platemask"))
    command = [platemask, "restore", "--date", "2026-02-03", "--status", "done", "--car-id", "10418457"]
    before = site.snapshot()
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, encoding="utf-8", env=os.environ, check=True)
    assert "復元予定: 1件" in dry.stdout and site.snapshot() == before
    subprocess.run(command, capture_output=True, encoding="utf-8", env=os.environ, check=True)
    assert "✅ 復元: 1件" in chatwork.messages[-1]["body"]  # the same report as the DAG's
    for upload in processed_day["10418457"]:
        assert site.file(upload.path) == upload.original
    assert site.file("/upfile/1041/8430/10418430001.jpg") == before["upfile/1041/8430/10418430001.jpg"]
