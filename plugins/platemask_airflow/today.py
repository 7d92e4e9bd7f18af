"""The planning and finishing tasks of ``plate_masking_today``, kept out of the DAG file."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any, TypedDict

from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowSkipException

from platemask.config import RESTORE_TIMEOUT, Settings
from platemask.daily import DayPlan, target_day
from platemask.errors import DayBusyError
from platemask.today import finish_today, plan_today, since
from platemask.tracking import DayTracking
from platemask_airflow.errors import FailedPhotos
from platemask_airflow.storage import day_tracking
from platemask_airflow.uploads import fetch_day_uploads

__all__ = ["TodayResult", "finish", "plan"]

log = logging.getLogger(__name__)


class TodayResult(TypedDict):
    """What a same-day run's finishing task returns: what it processed (no summary is sent)."""

    day: str  # YYYY-MM-DD
    succeeded: int
    failed: int


def plan(sql_file: Path, date: str | None, *, run_id: str) -> DayPlan:
    """Claim today, fetch its rows updated since the last same-day run and plan the new ones.

    A day held by another run (the daily run, a restore) is skipped, not failed: the next
    same-day run, minutes later, finds the work still there. The claim of a run with work lasts
    until :func:`finish`; a run that found nothing gives it back at once.
    """
    settings = Settings.from_env()
    settings.require_storage()
    tracking = day_tracking(settings, target_day(date, None, settings.timezone))
    try:
        tracking.claim("today", run_id, stale_after=RESTORE_TIMEOUT.total_seconds())
    except DayBusyError as exc:
        raise AirflowSkipException(f"skipped, the day is busy: {exc}") from None
    try:
        day_plan = _plan(sql_file, tracking, settings)
    except BaseException:
        tracking.release(run_id)  # no finish will run for this day: its car tasks get no work
        raise
    if not day_plan.batches and not day_plan.refused:
        tracking.release(run_id)
    return day_plan


def _plan(sql_file: Path, tracking: DayTracking, settings: Settings) -> DayPlan:
    rows = fetch_day_uploads(
        sql_file, tracking.day, timezone=settings.timezone, updated_since=since(tracking.read_today_mark())
    )
    return plan_today(
        rows,
        tracking,
        cars_per_task=settings.cars_per_task,
        max_tasks=conf.getint("core", "max_map_length", fallback=1024),
    )


def finish(counts: dict[str, Any] | None, *, run_id: str) -> TodayResult:
    """Merge this run's work into the day file; fail (its alert is the only message) if a photo failed."""
    if counts is None:
        raise AirflowSkipException("nothing to finish: plan_today was skipped or did not complete")
    if not counts["cars"] and not counts["refused"]:
        raise AirflowSkipException("nothing new was planned")
    tracking = day_tracking(Settings.from_env(), dt.date.fromisoformat(counts["date"]))
    try:
        summary = finish_today(tracking, refused=counts["refused"])
    finally:
        tracking.release(run_id)
    log.info("%s: %d photos verified, %d failed", tracking.day, summary.succeeded, summary.failed)
    FailedPhotos.raise_for(summary)
    return TodayResult(day=tracking.day.isoformat(), succeeded=summary.succeeded, failed=summary.failed)
