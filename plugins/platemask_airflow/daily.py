"""The planning and finishing tasks of ``plate_masking_daily``, kept out of the DAG file."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypedDict

from airflow.sdk import conf

from platemask.config import RESTORE_TIMEOUT, Settings
from platemask.daily import DayPlan, finish_day, plan_day, publish_review, target_day
from platemask.notify import deliver_summary, format_summary
from platemask.retention import apply_retention_safely
from platemask.tracking import DayTracking
from platemask_airflow import PHOTOS_TO_CHECK_PATH
from platemask_airflow.chatwork import ChatworkHook
from platemask_airflow.errors import FailedPhotos, NothingToFinish
from platemask_airflow.storage import day_tracking, open_storage
from platemask_airflow.uploads import fetch_day_uploads

__all__ = ["DayResult", "finish", "plan"]

log = logging.getLogger(__name__)

#: How long planning waits for the day's claim (a same-day run or a restore ends) before it fails
#: and is retried: well within the planning task's 30-minute timeout.
CLAIM_WAIT = dt.timedelta(minutes=20)


class DayResult(TypedDict):
    """What ``finish_day`` returns, one XCom per key: the run's summary as JSON-able values."""

    day: str  # YYYY-MM-DD
    succeeded: int
    failed: int
    skipped: int
    infrastructure: int
    cars: list[dict[str, Any]]  # one CarOutcome each
    quality: dict[str, Any] | None
    photos_to_check_url: str | None
    chatwork: str  # how the summary's send went (platemask.notify.deliver_summary)
    review_page: str | None  # where the day's review page was written


def plan(sql_file: Path, date: str | None, logical_date: dt.datetime | None, *, force: bool, run_id: str) -> DayPlan:
    """Claim the day, fetch its rows and plan the work (written to the day's tracking parts).

    The claim (no restore or same-day run of the day meanwhile) lasts until :func:`finish` of
    the same run. A same-day run still at work on the day (the 23:45 run, at midnight) is waited
    for, up to :data:`CLAIM_WAIT`, rather than failed and retried.
    """
    settings = Settings.from_env()
    settings.require_storage()
    _warn_on_timezone_mismatch(settings.timezone)
    tracking = day_tracking(settings, target_day(date, logical_date, settings.timezone))
    tracking.claim("daily", run_id, stale_after=RESTORE_TIMEOUT.total_seconds(), wait=CLAIM_WAIT.total_seconds())
    try:
        rows = fetch_day_uploads(
            sql_file,
            tracking.day,
            timezone=settings.timezone,
            last_processed_time=tracking.load().get("last_processed_time"),
        )
        return plan_day(
            rows,
            tracking,
            force=force,
            cars_per_task=settings.cars_per_task,
            max_tasks=conf.getint("core", "max_map_length", fallback=1024),
        )
    except BaseException:
        tracking.release(run_id)  # no finish will run for this day: its car tasks get no work
        raise


def finish(counts: dict[str, Any] | None, *, run_id: str) -> DayResult:
    """Merge the day, send the summary, and fail the run (after sending) if any photo failed."""
    if counts is None:
        # plan_uploads failed or never ran (this task runs whatever happened upstream).
        raise NothingToFinish(
            "nothing to finish: plan_uploads did not complete in this run, see its log. "
            "Once the cause is fixed, clear plan_uploads with its downstream tasks."
        )
    settings = Settings.from_env()
    tracking = day_tracking(settings, dt.date.fromisoformat(counts["date"]))
    try:
        return _finish(tracking, counts, settings, run_id)
    finally:
        tracking.release(run_id)


def _finish(tracking: DayTracking, counts: dict[str, Any], settings: Settings, run_id: str) -> DayResult:
    summary = finish_day(tracking, skipped=counts["skipped"], refused=counts["refused"], run_id=run_id)
    summary = replace(summary, photos_to_check_url=photos_to_check_url(summary.day))
    log.info("Summary:\n%s", format_summary(summary))
    chatwork = deliver_summary(summary, tracking, ChatworkHook(settings=settings).get_conn, run_id=run_id)
    store, backups = open_storage(settings)
    review_page = publish_review(tracking, settings=settings, store=store, backups=backups)
    apply_retention_safely(tracking.store, settings)  # old days' tracking files; never fails the day
    FailedPhotos.raise_for(summary)
    return DayResult(
        day=summary.day.isoformat(),
        succeeded=summary.succeeded,
        failed=summary.failed,
        skipped=summary.skipped,
        infrastructure=summary.infrastructure,
        cars=[asdict(car) for car in summary.cars],
        quality=asdict(summary.quality) if summary.quality else None,
        photos_to_check_url=summary.photos_to_check_url,
        chatwork=chatwork,
        review_page=tracking.store.describe(review_page) if review_page else None,
    )


def photos_to_check_url(day: dt.date) -> str | None:
    """The day's "Photos to check" page, under Airflow's ``[api] base_url``; None when that is unset."""
    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}{PHOTOS_TO_CHECK_PATH}?day={day.isoformat()}" if base else None


def _warn_on_timezone_mismatch(site_timezone: str) -> None:
    """Backfill and `dags test` read their dates in [core] default_timezone: it should be the site's."""
    default = conf.get("core", "default_timezone", fallback="utc")
    if default.lower() != site_timezone.lower():
        log.warning(
            "[core] default_timezone is %s but the site's days are %s days: dates typed in the CLI or UI "
            "(backfill --from-date/--to-date, dags test) are read in %s and may select neighbouring days. "
            "Set AIRFLOW__CORE__DEFAULT_TIMEZONE=%s.",
            default,
            site_timezone,
            default,
            site_timezone,
        )
