"""The hardening campaign (issue 30): what production will meet, on real Airflow and PostgreSQL.

- a car task hangs on a stalled storage read: its timeout kills it, it is retried, the day completes;
- Chatwork answers 5xx while a restore runs: the originals are back, the task stays green;
- a day laid out by the script the site ran before is cut over: one banner, the true originals kept.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import cv2
import pendulum
import pytest

from platemask.images import output_source, sha256
from platemask.paths import photo_paths
from tests.support import cluster
from tests.support.airflow_runs import trigger, xcom
from tests.support.site import Site, tracking_file
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 2, 3)
SCHEDULED = pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")


def _photo(seed: int) -> bytes:
    return photo_jpeg(make_car_photo(seed, size=(960, 720), view="front").image, quality=90)


def test_a_hung_car_task_is_killed_by_its_timeout_retried_and_the_day_completes(
    site: Site, chatwork, tmp_path: Path
) -> None:
    healthy = site.add(10418430, "10418430001.jpg", _photo(1), branch_no=1, day=DAY)
    hung = site.add(10418457, "10418457001.jpg", _photo(2), branch_no=1, day=DAY)
    stalled = site.root / hung.path.lstrip("/")
    stalled.unlink()
    os.mkfifo(stalled)  # a read that never returns, like a hung network mount: opening it blocks

    env = {**cluster.site_environment(), "PLATEMASK_CAR_TIMEOUT": "0.3"}  # 18 s a car
    with cluster.running(tmp_path / "airflow", env) as airflow:
        airflow.wait(lambda: "plate_masking_daily" in airflow.airflow("dags", "list"), 180, "the DAG to be parsed")
        airflow.airflow("dags", "unpause", "plate_masking_daily")
        airflow.airflow("dags", "trigger", "plate_masking_daily", "--conf", json.dumps({"date": DAY.isoformat()}))

        # The hung attempt is stopped by its timeout and said so at once; the storage recovers.
        alert = airflow.wait(
            lambda: next((m for m in chatwork.messages if "timeout" in m["body"]), None),
            180,
            "the timed-out car task's alert",
            lambda: airflow.dag_runs("plate_masking_daily"),
        )
        assert "10418457" in alert["body"] and "retried" in alert["body"]
        stalled.unlink()
        stalled.write_bytes(hung.original)

        def finished() -> dict | None:
            # Unpausing also made the run of the last finished day: the triggered run is the one.
            [run] = [r for r in airflow.dag_runs("plate_masking_daily") if r["run_id"].startswith("manual__")]
            return run if run["state"] in ("success", "failed") else None

        run = airflow.wait(finished, 240, "the run to finish", lambda: airflow.dag_runs("plate_masking_daily"))
    assert run["state"] == "success"
    doc = tracking_file(DAY)
    assert {r["status"] for r in doc["processed"].values()} == {"done"}
    for upload in (healthy, hung):
        paths = photo_paths(upload.path)
        assert site.file(paths.backup) == upload.original
        assert output_source(site.file(paths.detect)) == sha256(upload.original)
    summary = chatwork.messages[-1]["body"]
    assert "✅ 成功: 2件" in summary and "❌ エラー: 0件" in summary


def test_chatwork_failing_during_a_restore_leaves_the_originals_back_and_the_task_green(site: Site, chatwork) -> None:
    uploads = [site.add(10418430, f"10418430{n:03d}.jpg", _photo(n), branch_no=n, day=DAY) for n in (1, 2)]
    assert trigger("plate_masking_daily", SCHEDULED).state == "success"
    before = len(chatwork.messages)
    chatwork.fail_next(503, times=50)  # every try of the restore's report

    conf = {"date": DAY.isoformat(), "status": "done", "car_id": None, "dry_run": False, "remove_detect": False}
    run = trigger("plate_masking_restore", pendulum.now("Asia/Tokyo"), conf=conf)

    assert run.state == "success"
    assert all(site.file(u.path) == u.original for u in uploads)  # the bannered first photo is the original again
    report = xcom(run, "restore_originals")
    assert report["counts"]["restored"] == 1 and report["counts"]["unchanged"] == 1
    assert report["chatwork"].startswith("failed:")
    assert len(chatwork.messages) == before
    for record in tracking_file(DAY)["processed"].values():
        assert [h["status"] for h in record["status_history"]].count("restored") == 1


def test_a_day_of_the_old_script_is_cut_over(site: Site, chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    uploads = [site.add(10418430, f"10418430{n:03d}.jpg", _photo(n), branch_no=n, day=DAY) for n in (1, 2)]
    image = make_car_photo(1, size=(960, 720), view="front").image.copy()
    cv2.rectangle(image, (660, 640), (950, 710), (255, 255, 255), thickness=-1)  # the old script's banner
    old_banner = photo_jpeg(image, quality=90)
    for upload in uploads:  # what the old script left: backups, its masked copies, its banner on the first photo
        paths = photo_paths(upload.path)
        for path, data in ((paths.backup, upload.original), (paths.detect, old_banner)):
            target = site.root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    (site.root / uploads[0].path.lstrip("/")).write_bytes(old_banner)
    monkeypatch.setenv("PLATEMASK_CUTOVER", "2026-02-04")  # platemask runs from the 4th

    assert trigger("plate_masking_daily", SCHEDULED).state == "success"

    first = photo_paths(uploads[0].path)
    for upload in uploads:
        assert site.file(photo_paths(upload.path).backup) == upload.original  # the true originals stay the backups
    assert output_source(site.file(first.original)) == sha256(uploads[0].original)  # one banner, on the original
    history = sorted((site.root / first.backup.lstrip("/")).parent.glob(".history/*"))
    assert [p.read_bytes() for p in history] == [old_banner]  # the old banner version, kept
    assert {r["status"] for r in tracking_file(DAY)["processed"].values()} == {"done"}
