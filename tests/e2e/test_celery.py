"""Real parallel workers: CeleryExecutor, a real Redis, two Celery workers, eight car tasks at once.

The workers have their own AIRFLOW_HOME and temp folder; they share only the photo storage and
LOG_DIR, as workers on different hosts do. Airflow's metadata database is PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest

from platemask.images import output_source, sha256
from tests.support import cluster
from tests.support.site import Site, valid_tracking
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 2, 3)
CARS = 16


@pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (Debian: apt-get install redis-server)"
)
def test_two_celery_workers_run_a_day_of_sixteen_cars(site: Site, chatwork, postgres, tmp_path: Path) -> None:
    import psycopg

    uploads = []
    for car in range(CARS):
        car_id = 10418400 + car
        for branch in (1, 2, 3):
            photo = photo_jpeg(make_car_photo(car * 3 + branch, size=(640, 480)).image, quality=88)
            uploads.append(site.add(car_id, f"{car_id}{branch:03d}.jpg", photo, branch_no=branch, day=DAY))
    with psycopg.connect(postgres.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE airflow_celery")
    socket_dir = postgres.get_uri().split("host=", 1)[1]
    metadata = f"postgresql+psycopg2://postgres@/airflow_celery?host={socket_dir}"

    env = cluster.site_environment()
    with cluster.celery_running(tmp_path / "airflow", env, metadata, workers=2, concurrency=4) as airflow:
        airflow.wait(lambda: "plate_masking_daily" in airflow.airflow("dags", "list"), 180, "the DAG to be parsed")
        airflow.airflow("dags", "unpause", "plate_masking_daily")
        airflow.airflow("dags", "trigger", "plate_masking_daily", "--conf", json.dumps({"date": DAY.isoformat()}))

        def finished() -> list[dict] | None:
            runs = [r for r in airflow.dag_runs("plate_masking_daily") if r["run_id"].startswith("manual__")]
            return runs if runs and runs[0]["state"] in ("success", "failed") else None

        [run] = airflow.wait(finished, 420, "the day to finish", lambda: airflow.dag_runs("plate_masking_daily"))
        assert run["state"] == "success"

    with psycopg.connect(postgres.get_uri("airflow_celery")) as conn:
        spans = conn.execute(
            "SELECT start_date, end_date FROM task_instance WHERE task_id = 'mask_car' AND map_index >= 0"
        ).fetchall()
    assert len(spans) == CARS
    at_once = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    print(f"car tasks at once: {at_once}")
    # Both workers at work together (more than one worker's 4 slots), never over PLATEMASK_CAR_TASKS=8.
    assert 4 < at_once <= 8

    # Both workers ran car tasks (each writes the logs of the tasks it ran into its own home).
    for n in (1, 2):
        assert list((tmp_path / "airflow" / f"worker{n}" / "logs").rglob("*map_index=*/*.log")), (
            f"worker{n} ran nothing"
        )
    doc = valid_tracking(
        json.loads((Path(os.environ["LOG_DIR"]) / "tracking" / f"processed_{DAY:%Y%m%d}.json").read_text())
    )
    records = {r["path"]: r for r in doc["processed"].values()}
    assert len(records) == len(uploads) == CARS * 3  # no update lost
    for upload in uploads:
        record = records[upload.path]
        assert record["status"] == "done"
        assert [h["status"] for h in record["status_history"]] == ["pending", "processing", "verified", "done"]
        folder, name = upload.path.rsplit("/", 1)
        backup, detect, original = (
            site.file(f"{folder}/.backup/{name}"),
            site.file(f"{folder}/.detect/{name}"),
            site.file(upload.path),
        )
        assert backup == upload.original and record["sha256"]["backup"] == sha256(
            backup
        )  # the record matches its photo
        assert record["sha256"]["detect"] == sha256(detect) and output_source(detect) == sha256(backup)
        if upload.branch_no == 1:
            assert record["sha256"]["original"] == sha256(original)
    [summary] = chatwork.messages
    assert f"✅ 成功: {CARS * 3}件" in summary["body"]
