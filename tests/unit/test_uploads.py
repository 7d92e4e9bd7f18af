"""Spec rule 0 (platemask.uploads): what the site's query gets, what its rows become, which photo is first."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from platemask.uploads import Photo, day_bounds, photo_from_row, query_parameters

UPLOADS_SQL = Path(__file__).parents[2] / "include" / "sql" / "day_uploads.sql"


@pytest.mark.parametrize(
    ("branch_no", "first"),
    [
        pytest.param(1, True, id="one"),
        pytest.param(None, False, id="null"),
        pytest.param(0, False, id="zero"),
        pytest.param(2, False, id="two"),
    ],
)
def test_only_branch_one_is_first(branch_no, first) -> None:
    assert Photo(file_id=1, car_id="10418430", path="/a.jpg", branch_no=branch_no).is_first is first


def test_a_query_row_and_its_tracking_record_are_the_same_photo() -> None:
    row = {"file_id": 7, "car_id": 10418430, "file_path": "/upfile/a.jpg", "branch_no": 1, "updated_at": None}
    record = {"file_id": 7, "car_id": "10418430", "path": "/upfile/a.jpg", "branch_no": 1, "status": "pending"}
    assert photo_from_row(row) == photo_from_row(record) == Photo(7, "10418430", "/upfile/a.jpg", 1)


def test_a_text_branch_number_is_read_as_a_number() -> None:
    assert photo_from_row({"file_id": "3", "car_id": "x", "path": "/p.jpg", "branch_no": "1"}).is_first


def test_the_day_is_site_local_and_its_end_exclusive() -> None:
    assert day_bounds(dt.date(2026, 2, 28)) == (dt.datetime(2026, 2, 28), dt.datetime(2026, 3, 1))


def test_the_query_gets_only_the_parameters_it_uses() -> None:
    day = dt.date(2026, 2, 3)
    sql = "SELECT 1 WHERE created_at >= %(day_start)s AND created_at < %(day_end)s"
    assert query_parameters(sql, day, last_processed_time="2026-02-03T10:00:00") == {
        "day_start": dt.datetime(2026, 2, 3),
        "day_end": dt.datetime(2026, 2, 4),
    }
    incremental = sql + " AND updated_at > %(last_processed_time)s"
    assert query_parameters(incremental, day)["last_processed_time"] is None


def test_the_shipped_query_reads_the_whole_day_unless_a_same_day_run_asks_for_changes() -> None:
    """Its grouping, order and ``updated_since`` run on a real PostgreSQL in tests/e2e (daily, today)."""
    sql = UPLOADS_SQL.read_text(encoding="utf-8")
    assert query_parameters(sql, dt.date(2026, 2, 3)) == {
        "day_start": dt.datetime(2026, 2, 3),
        "day_end": dt.datetime(2026, 2, 4),
        "updated_since": None,  # NULL: the whole day
    }
    assert query_parameters(sql, dt.date(2026, 2, 3), updated_since="2026-02-03T12:00:00")["updated_since"]
