"""The same-day DAG's planning and finishing tasks where they decide without the database: a busy
day and an empty plan are skipped quietly (no red run, no alert every few minutes)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from platemask.config import Settings
from platemask.tracking import DayTracking
from platemask_airflow.today import finish, plan

DAY = dt.date(2026, 2, 3)
SQL = Path(__file__).parents[2] / "include" / "sql" / "day_uploads.sql"


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DayTracking:
    monkeypatch.setenv("S3_MOUNT", str(tmp_path / "mount"))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    return DayTracking.for_settings(Settings.from_env(), DAY)


@pytest.mark.parametrize("holder", ["daily", "restore"])
def test_plan_skips_a_day_held_by_another_run(tracking: DayTracking, holder: str) -> None:
    tracking.claim(holder, "other-run", stale_after=3600)
    with pytest.raises(AirflowSkipException, match=f"the day is busy: {DAY}: a {holder} of this day is running"):
        plan(SQL, DAY.isoformat(), run_id="today-run")
    assert tracking.claim_holder()["run_id"] == "other-run"  # left as it was


@pytest.mark.parametrize(
    "counts",
    [
        pytest.param(None, id="plan-skipped"),
        pytest.param({"date": "2026-02-03", "cars": 0, "photos": 0, "skipped": 0, "refused": 0}, id="nothing-new"),
    ],
)
def test_finish_skips_when_nothing_was_planned(tracking: DayTracking, counts) -> None:
    with pytest.raises(AirflowSkipException):
        finish(counts, run_id="today-run")
    assert not tracking.store.exists(tracking.path)  # the day file untouched
