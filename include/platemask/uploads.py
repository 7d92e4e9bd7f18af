"""Spec rule 0: the day's uploads, one row per photo, and which photo is a car's first.

The site's query (``include/sql/day_uploads.sql``, a file so that sites adapt it without Python)
groups the rows per car by ``COALESCE(inspresultdata_cd, car_cd::text)`` and orders them by
``branch_no``; this module says what it is given and what its rows become. A row becomes a
:class:`Photo` here and nowhere else, whether it comes from the database at planning time or
back from a tracking record in a car task (records keep the same four fields).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from platemask.errors import TrackingError

__all__ = [
    "FIRST_BRANCH_NO",
    "QUERY_COLUMNS",
    "SITE_TIME_ZONE_SQL",
    "Photo",
    "car_id_of",
    "day_bounds",
    "photo_from_row",
    "query_parameters",
    "run_day_query",
]

#: The one ``branch_no`` that makes a photo its car's first (not NULL, not 2, ...).
FIRST_BRANCH_NO = 1
#: The columns the site's query must return, by these names (``platemask check`` makes sure).
QUERY_COLUMNS = ("file_id", "car_id", "file_path", "branch_no", "updated_at")


@dataclass(frozen=True)
class Photo:
    """One uploaded photo: its database id, its car, its path under the photo root."""

    file_id: int
    car_id: str
    path: str
    branch_no: int | None = None

    @property
    def is_first(self) -> bool:
        """Only ``branch_no = 1`` is first; a car without one has no first photo (all to .detect/)."""
        return self.branch_no == FIRST_BRANCH_NO


def car_id_of(row: Mapping[str, Any]) -> str:
    """The car a query row or a tracking record belongs to: its ``car_id``, what the daily run groups by.

    The one definition of a car (the site's ``COALESCE(inspresultdata_cd, car_cd::text)``), for
    planning, car tasks, summaries and restores alike. Never the folder's digits: a car known by its
    ``inspresultdata_cd`` keeps its photos under its ``car_cd`` folder. Both tracking schemas, the
    original script's and ours, require ``car_id``, so there is nothing to fall back to.
    """
    try:
        return str(row["car_id"])
    except KeyError:
        raise TrackingError(f"photo {row.get('file_id')} ({row.get('path', '')}) has no car_id") from None


def photo_from_row(row: Mapping[str, Any]) -> Photo:
    """A query row (``file_path``) or a tracking record (``path``) as a :class:`Photo`."""
    branch = row.get("branch_no")
    return Photo(
        file_id=int(row["file_id"]),
        car_id=car_id_of(row),
        path=str(row.get("path") or row.get("file_path") or ""),
        branch_no=None if branch is None else int(branch),
    )


#: Run in the query's transaction first. With the session in the site's zone, the naive bounds of
#: :func:`day_bounds` are site-local times for a ``timestamp`` column (whose values are site-local,
#: as the spec says) and site-local instants for a ``timestamptz`` column, which a session in UTC
#: (most managed databases) would shift by the zone's offset. ``timestamptz`` values come back in
#: the site's zone too.
SITE_TIME_ZONE_SQL = "SELECT set_config('TimeZone', %(timezone)s, true)"


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Site-local [start, end) of ``day``: the uploads of one site-local calendar day."""
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)


def query_parameters(
    sql: str, day: dt.date, *, last_processed_time: str | None = None, updated_since: str | None = None
) -> dict[str, Any]:
    """The named parameters the site's query gets: ``day_start``, ``day_end``, ``last_processed_time``
    and ``updated_since`` (None but for a same-day run, which asks only for recent changes).

    Only those the query uses are passed: PostgreSQL refuses untyped parameters it does not use.
    """
    start, end = day_bounds(day)
    offered = {
        "day_start": start,
        "day_end": end,
        "last_processed_time": last_processed_time,
        "updated_since": updated_since,
    }
    return {name: value for name, value in offered.items() if f"%({name})s" in sql}


def run_day_query(
    cursor: Any,
    sql: str,
    day: dt.date,
    *,
    timezone: str,
    last_processed_time: str | None = None,
    updated_since: str | None = None,
) -> list[str]:
    """Run the site's query for ``day`` on a DB-API ``cursor``, the session in the site's zone
    (:data:`SITE_TIME_ZONE_SQL`); return the names of its columns (the rows are the cursor's).

    The daily run and ``platemask check`` both run it here, so the check tries what the run does.
    """
    cursor.execute(SITE_TIME_ZONE_SQL, {"timezone": timezone})
    cursor.execute(
        sql, query_parameters(sql, day, last_processed_time=last_processed_time, updated_since=updated_since)
    )
    return [column[0] for column in cursor.description or ()]
