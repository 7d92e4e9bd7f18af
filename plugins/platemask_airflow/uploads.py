"""The day's uploads from the site database, through the ``upload_db`` connection."""

from __future__ import annotations

import datetime as dt
from contextlib import closing
from pathlib import Path
from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook

from platemask.uploads import run_day_query

__all__ = ["connect_upload_db", "fetch_day_uploads"]


def fetch_day_uploads(
    sql_file: Path,
    day: dt.date,
    *,
    timezone: str,
    last_processed_time: str | None = None,
    updated_since: str | None = None,
    conn_id: str = "upload_db",
) -> list[dict[str, Any]]:
    """Run the site's query (a file, so sites adapt it without Python) for one site-local day.

    The query gets ``day_start``/``day_end`` (site-local, end exclusive) and the tracking file's
    ``last_processed_time`` (NULL on a first run), ``updated_since`` (NULL but for a same-day
    run: only rows updated after it) and returns ``file_id, car_id, file_path,
    branch_no, updated_at``. The session runs in the site's ``timezone``, so the day is the
    site's whether the columns are ``timestamp`` or ``timestamptz``.
    """
    sql = sql_file.read_text(encoding="utf-8")
    with closing(connect_upload_db(conn_id)) as conn, closing(conn.cursor()) as cursor:
        columns = run_day_query(
            cursor, sql, day, timezone=timezone, last_processed_time=last_processed_time, updated_since=updated_since
        )
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def connect_upload_db(conn_id: str = "upload_db") -> Any:
    """A DB-API connection to the site database, through Airflow's connection ``conn_id``."""
    return PostgresHook(postgres_conn_id=conn_id).get_conn()
