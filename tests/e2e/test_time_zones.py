"""The day's bounds in real PostgreSQL, for both column types a site may have (issue 30, item 3).

The spec's ``created_at`` is a ``timestamp`` holding site-local time. A ``timestamptz`` column
compares with the bounds in the database session's time zone, often UTC: a naive bound would
shift the day by 9 hours. The planning query must select the same site-local day for both.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from platemask_airflow.uploads import fetch_day_uploads
from tests.support.site import Site

pytestmark = pytest.mark.e2e

UPLOADS_SQL = Path(__file__).parents[2] / "include" / "sql" / "day_uploads.sql"
DAY = dt.date(2026, 2, 3)
#: Site-local upload times around the day (Asia/Tokyo) and whether each belongs to it.
MOMENTS = {
    "2026-02-02 23:59:59": False,
    "2026-02-03 00:00:00": True,
    "2026-02-03 08:59:59": True,  # 23:59:59 UTC the day before: lost by a UTC session
    "2026-02-03 23:59:59": True,
    "2026-02-04 00:00:00": False,
    "2026-02-04 08:30:00": False,  # still 2026-02-03 in UTC: picked by a UTC session
}


@pytest.mark.parametrize("column_type", ["timestamp", "timestamptz"])
def test_the_day_is_the_site_day_whatever_the_column_type(site: Site, column_type: str) -> None:
    # Sessions in UTC, as on most managed databases, whatever the server's own setting.
    site.execute(f"ALTER DATABASE {site.database} SET timezone TO 'UTC'")
    for column in ("created_at", "updated_at"):
        site.execute(f"ALTER TABLE upload_files ALTER COLUMN {column} TYPE {column_type}")
    wanted = set()
    for n, (moment, on_the_day) in enumerate(MOMENTS.items()):
        # A timestamptz value is an instant: written with the site's offset; a timestamp is site-local.
        value = f"{moment}+09" if column_type == "timestamptz" else moment
        [(file_id,)] = site.execute(
            "INSERT INTO upload_files (car_cd, branch_no, file_path, created_at, updated_at) "
            "VALUES (%s, 1, %s, %s, %s) RETURNING id",
            (10418430 + n, f"/upfile/1041/{8430 + n}/x.jpg", value, value),
        )
        if on_the_day:
            wanted.add(file_id)

    rows = fetch_day_uploads(UPLOADS_SQL, DAY, timezone="Asia/Tokyo")

    assert {row["file_id"] for row in rows} == wanted
    # updated_at comes back as site-local wall time (the tracking file compares it across runs).
    times = sorted(row["updated_at"].replace(tzinfo=None) for row in rows)
    assert [t.isoformat(" ") for t in times] == sorted(m for m, on_day in MOMENTS.items() if on_day)
