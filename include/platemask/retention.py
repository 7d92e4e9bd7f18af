"""Keeping tracking files in check: old days gzipped, older ones deleted.

At 150,000 photos a day a day file is about 100 MB, 37 GB a year. With
``PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS`` a day file older than that many days becomes
``processed_YYYYMMDD.json.gz`` (same bytes inside; it still loads, so restores still work), and
with ``PLATEMASK_TRACKING_DELETE_AFTER_DAYS`` the day's file and parts are deleted. Both are off
by default. A day's age comes from its name, against the site-local today, so today's and
yesterday's files are never touched (the smallest setting, 1, reaches the day before yesterday).

``finish_day`` applies it after each daily run; ``platemask tracking-retention`` by hand.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field

from platemask.config import Settings
from platemask.errors import PlateMaskError
from platemask.storage import Storage
from platemask.tracking import DayTracking, site_now

__all__ = ["RetentionResult", "apply_retention", "apply_retention_safely"]

log = logging.getLogger(__name__)

_DAY_FILE = re.compile(r"^processed_(\d{8})\.json(?:\.gz)?$")


@dataclass
class RetentionResult:
    """The days acted on (or, in a dry run, that would be), oldest first."""

    compressed: list[dt.date] = field(default_factory=list)
    deleted: list[dt.date] = field(default_factory=list)

    def lines(self, *, dry_run: bool = False) -> list[str]:
        """One line per day, for the command line."""
        verbs = ("would compress", "would delete") if dry_run else ("compressed", "deleted")
        return [f"{verbs[0]} {day}" for day in self.compressed] + [f"{verbs[1]} {day}" for day in self.deleted]


def apply_retention(
    store: Storage, settings: Settings, *, today: dt.date | None = None, dry_run: bool = False
) -> RetentionResult:
    """Compress and delete the day files of ``store`` (``LOG_DIR``) that the settings make old enough."""
    today = today or site_now(settings.timezone).date()
    result = RetentionResult()
    for day, names in sorted(_day_files(store).items()):
        age = (today - day).days
        action = _action(age, names, settings)
        if action is None:
            continue
        tracking = DayTracking(store, day, settings.timezone)
        if action == "delete":
            if not dry_run:
                tracking.remove()
            result.deleted.append(day)
        elif dry_run or tracking.compress():
            result.compressed.append(day)
    return result


def apply_retention_safely(store: Storage, settings: Settings) -> RetentionResult | None:
    """:func:`apply_retention` for the daily run: a failure is logged, never fatal.

    The day's photos are masked whatever happens here; old tracking files that stay a day
    longer cost only disk space, so they must not turn a processed day red.
    """
    if not (settings.tracking_compress_after_days or settings.tracking_delete_after_days):
        return None
    try:
        result = apply_retention(store, settings)
    except PlateMaskError as exc:
        log.error("Tracking retention NOT applied: %s", exc.describe())
        return None
    except Exception:  # a bug here must not fail a day whose photos are done
        log.exception("Tracking retention NOT applied")
        return None
    for line in result.lines():
        log.info("Tracking retention: %s", line)
    return result


def _day_files(store: Storage) -> dict[dt.date, set[str]]:
    """Day -> the names of its day file(s) in ``tracking/`` (plain and/or gzipped)."""
    days: dict[dt.date, set[str]] = {}
    for name in store.list("/tracking"):
        match = _DAY_FILE.match(name)
        if match is None:
            continue
        try:
            day = dt.datetime.strptime(match[1], "%Y%m%d").date()
        except ValueError:  # processed_20261399.json: not a day this code wrote
            continue
        days.setdefault(day, set()).add(name)
    return days


def _action(age: int, names: set[str], settings: Settings) -> str | None:
    """``delete``, ``compress`` or None for a day ``age`` days old whose files are ``names``."""
    if age < 2:  # today's and yesterday's files may still be written: never touched
        return None
    delete_after, compress_after = settings.tracking_delete_after_days, settings.tracking_compress_after_days
    if delete_after and age > delete_after:
        return "delete"
    if compress_after and age > compress_after and any(name.endswith(".json") for name in names):
        return "compress"
    return None
