"""Same-day runs (``plate_masking_today``): today's new and changed photos, minutes after upload.

A same-day run is a small daily run: the same planning (:func:`platemask.daily.plan_day`), car
tasks and tracking file, with two differences.

* **It plans only what is new.** It asks the site's database for the rows updated since its
  watermark (:func:`since`) and drops those it has already planned (:func:`new_rows`), so a run
  that finds nothing new neither reads nor writes the day file, whose size grows with the day.
* **It reports nothing.** Its finishing step (:func:`finish_today`) merges the car tasks' parts
  into the day file and leaves the day's cars and summary to the daily run: the records it
  processed are listed as not yet reported (:data:`SAME_DAY`), and the daily run counts them in
  the day's one summary as photos processed, not as skipped.

The watermark is kept beside the day file (``DayTracking.today_path``): the highest
``updated_at`` seen, and the rows seen within :data:`OVERLAP` of it. Each query reaches
:data:`OVERLAP` back, so a row committed late with an older ``updated_at`` (a long transaction, a
web server whose clock is behind) is still found; a row seen before, with the same
``updated_at``, is not planned twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from platemask.daily import SAME_DAY, DayPlan, plan_day, records_of_this_run
from platemask.notify import DaySummary, summarise_run
from platemask.tracking import DayTracking, site_now, stamp

__all__ = ["OVERLAP", "advance", "finish_today", "new_rows", "plan_today", "since"]

log = logging.getLogger(__name__)

#: How far back each same-day query reaches before the newest ``updated_at`` seen.
OVERLAP = dt.timedelta(minutes=10)

Row = Mapping[str, Any]


def since(mark: Mapping[str, Any]) -> str | None:
    """The ``updated_at`` a same-day query starts after: :data:`OVERLAP` before the newest seen."""
    high = mark.get("high")
    return (dt.datetime.fromisoformat(high) - OVERLAP).isoformat() if high else None


def new_rows(rows: Iterable[Row], mark: Mapping[str, Any]) -> list[Row]:
    """The rows a same-day run has not planned yet, or that changed since (a newer ``updated_at``)."""
    seen = mark.get("seen", {})
    return [row for row in rows if seen.get(str(row["file_id"])) != _iso(row.get("updated_at"))]


def advance(mark: Mapping[str, Any], rows: Iterable[Row]) -> dict[str, Any]:
    """The watermark after planning ``rows``: the newest ``updated_at``, and the rows the next query sees again."""
    seen = {**mark.get("seen", {}), **{str(r["file_id"]): _iso(r.get("updated_at")) for r in rows}}
    stamps = [s for s in seen.values() if s]
    high = max([*stamps, *([mark["high"]] if mark.get("high") else [])], default=None)
    if high is None:
        return {"high": None, "seen": {}}
    floor = (dt.datetime.fromisoformat(high) - OVERLAP).isoformat()
    # Only rows the next query can return again need remembering: the file stays small.
    return {"high": high, "seen": {k: v for k, v in seen.items() if v and v > floor}}


def plan_today(rows: Iterable[Row], tracking: DayTracking, *, cars_per_task: int = 1, max_tasks: int = 1024) -> DayPlan:
    """Plan the new and changed rows of today (the caller holds the day's claim); the day file is
    read and written only when there is something new."""
    mark = tracking.read_today_mark()
    rows = list(rows)
    fresh = new_rows(rows, mark)
    if not fresh:
        log.info("%s: nothing new since %s (%d rows seen again)", tracking.day, mark.get("high"), len(rows))
        return DayPlan(tracking.day, [], 0, 0)
    plan = plan_day(fresh, tracking, cars_per_task=cars_per_task, max_tasks=max_tasks)
    # Written once the work is planned: a plan that failed is planned again by the next run.
    tracking.write_today_mark(advance(mark, fresh))
    return plan


def finish_today(tracking: DayTracking, *, refused: int = 0) -> DaySummary:
    """Merge this run's parts into the day file, cars NOT marked done, nothing sent; return what it did.

    The records it worked on are added to the day's not yet reported ones (:data:`SAME_DAY`),
    which the daily run's summary counts.
    """
    at = stamp(site_now(tracking.timezone))
    with tracking.update() as doc:
        run_keys, run_records = records_of_this_run(tracking, doc, at)
        state = doc.setdefault(SAME_DAY, {})
        state["unreported"] = list(dict.fromkeys([*state.get("unreported", []), *run_keys]))
    return summarise_run(tracking.day, run_records, skipped=0, refused=refused)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)
