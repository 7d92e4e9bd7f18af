"""What only a real scheduler does: a backfill of past days, each car task its own process."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from tests.support import cluster
from tests.support.site import Site
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.e2e


def test_backfill_processes_each_day(site: Site, chatwork, tmp_path: Path) -> None:
    days = [dt.date(2026, 2, 1), dt.date(2026, 2, 2)]
    uploads = {}
    for n, day in enumerate(days):
        car = 10418430 + n
        photo = photo_jpeg(make_car_photo(n, size=(960, 720), view="front").image, quality=90)
        uploads[day] = site.add(car, f"{car}001.jpg", photo, branch_no=1, day=day)
    site.add(10418499, "10418499001.jpg", photo_jpeg(make_car_photo(9).image), branch_no=1, day=dt.date(2026, 2, 3))

    with cluster.running(tmp_path / "airflow", cluster.site_environment()) as airflow:
        airflow.wait(lambda: "plate_masking_daily" in airflow.airflow("dags", "list"), 180, "the DAG to be parsed")
        airflow.airflow("dags", "unpause", "plate_masking_daily")
        airflow.airflow(
            "backfill", "create", "--dag-id", "plate_masking_daily",
            "--from-date", "2026-02-01", "--to-date", "2026-02-02", "--max-active-runs", "1",
        )  # fmt: skip

        def backfill_done() -> list[dict] | None:
            runs = [r for r in airflow.dag_runs("plate_masking_daily") if r["run_id"].startswith("backfill__")]
            finished = len(runs) == 2 and all(r["state"] in ("success", "failed") for r in runs)
            return runs if finished else None

        runs = airflow.wait(
            backfill_done, 240, "the backfill runs to finish", lambda: airflow.dag_runs("plate_masking_daily")
        )
    assert [r["state"] for r in runs] == ["success", "success"]
    logs = Path(os.environ["LOG_DIR"]) / "tracking"
    for day, upload in uploads.items():
        doc = json.loads((logs / f"processed_{day:%Y%m%d}.json").read_text())
        assert [r["path"] for r in doc["processed"].values()] == [upload.path]  # exactly that day's uploads
        assert next(iter(doc["processed"].values()))["status"] == "done"
        folder, name = upload.path.rsplit("/", 1)
        assert site.file(f"{folder}/.backup/{name}") == upload.original
        assert site.exists(f"{folder}/.detect/{name}")
    assert not (logs / "processed_20260203.json").exists()  # not in the backfill's range
    assert sorted(m["body"].split("対象日: ")[1][:10] for m in chatwork.messages) == ["2026-02-01", "2026-02-02"]
