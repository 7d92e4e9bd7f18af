"""A big day on paper: plan_uploads and finish_day at production size, with the car tasks' work skipped.

Seeds ``--cars`` × ``--photos`` rows (default 5,000 × 30 = 150,000 photos) into a real
PostgreSQL (pgserver), then times what the daily DAG's two day-level tasks do, through the same
functions the tasks call (``platemask_airflow.daily.plan`` and ``finish``):

1. ``plan_uploads`` on a first run: query, tracking file, one part per car, the mapped items;
2. every car's photos marked ``verified`` in its part, as the car tasks would (not timed as theirs);
3. ``finish_day``: merge the parts, mark cars done, build the summary (Chatwork off);
4. ``plan_uploads`` again (an incremental rerun: everything is skipped);
5. ``plan_today`` of the same-day DAG (``platemask_airflow.today.plan``) on the finished day:
   its first run (no watermark yet: the whole day is read), then a run that finds 0 new photos,
   then one that finds 100 (10 cars uploaded after the day's last photo).

Prints each time, the tracking file's size and the XCom sizes (the mapped items and counts).

    .venv/bin/python scripts/bench_scale.py [--cars 5000] [--photos 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins"), str(REPO)]
UPLOADS_SQL = REPO / "include" / "sql" / "day_uploads.sql"
DAY = dt.date(2026, 2, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cars", type=int, default=5000)
    parser.add_argument("--photos", type=int, default=30, help="photos per car")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="platemask-scale-"))
    try:
        run(work, args.cars, args.photos)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run(work: Path, cars: int, photos: int) -> dict[str, float]:
    """Seed, then time plan / finish / plan again; returns the figures it prints."""
    import pgserver

    server = pgserver.get_server(work / "pgdata", cleanup_mode="stop")
    try:
        _seed(server.get_uri(), cars, photos)
        _environment(work, server.get_uri().split("host=", 1)[1])
        figures = _measure(work, cars * photos)
        figures |= _measure_today(server.get_uri(), cars * photos)
        return figures
    finally:
        server.cleanup()


def _measure(work: Path, rows: int) -> dict[str, float]:
    from platemask_airflow.daily import finish, plan

    figures: dict[str, float] = {}
    started = time.perf_counter()
    day_plan = plan(UPLOADS_SQL, DAY.isoformat(), None, force=False, run_id="bench-scale")
    figures["plan_s"] = time.perf_counter() - started
    items, counts = day_plan.batches, day_plan.counts()
    figures["xcom_items_bytes"] = len(json.dumps(items))
    figures["xcom_counts_bytes"] = len(json.dumps(counts))
    started = time.perf_counter()
    _verify_every_car(DAY, [car for batch in day_plan.batches for car in batch])
    figures["simulated_car_tasks_s"] = time.perf_counter() - started
    started = time.perf_counter()
    summary = finish(counts, run_id="bench-scale")
    figures["finish_s"] = time.perf_counter() - started
    tracking = Path(os.environ["LOG_DIR"]) / "tracking" / f"processed_{DAY:%Y%m%d}.json"
    figures["tracking_mb"] = tracking.stat().st_size / 1e6
    started = time.perf_counter()
    again = plan(UPLOADS_SQL, DAY.isoformat(), None, force=False, run_id="bench-scale-rerun")
    figures["replan_s"] = time.perf_counter() - started
    print(f"A day of {rows:,} photos in {counts['cars']:,} cars ({len(items):,} mapped tasks)")
    print(f"   plan_uploads, first run        {figures['plan_s']:7.1f} s")
    print(f"   finish_day                     {figures['finish_s']:7.1f} s   ({summary['succeeded']:,} photos done)")
    print(f"   plan_uploads, rerun (all skip) {figures['replan_s']:7.1f} s   ({again.skipped:,} skipped)")
    print(f"   tracking file                  {figures['tracking_mb']:7.1f} MB")
    print(f"   XCom: mapped items {figures['xcom_items_bytes']:,} bytes, counts {figures['xcom_counts_bytes']} bytes")
    print(f"   (car tasks simulated by writing their parts: {figures['simulated_car_tasks_s']:.1f} s, not a task cost)")
    return figures


def _measure_today(dsn: str, rows: int) -> dict[str, float]:
    """The same-day DAG's planning on the finished day: first run, 0 new photos, 100 new photos."""
    from platemask.config import Settings
    from platemask.tracking import DayTracking
    from platemask_airflow.today import plan

    tracking = DayTracking.for_settings(Settings.from_env(), DAY)
    tracking.release("bench-scale-rerun")  # the rerun above planned without finishing
    figures: dict[str, float] = {}
    for name, new in (("today_first_s", 0), ("today_0_new_s", 0), ("today_100_new_s", 100)):
        _add_uploads(dsn, new, rows)
        started = time.perf_counter()
        today = plan(UPLOADS_SQL, DAY.isoformat(), run_id=name)
        figures[name] = time.perf_counter() - started
        tracking.release(name)  # no car tasks here: the claim goes back at once
        assert today.photos == new, (name, today.photos)
    mark = Path(os.environ["LOG_DIR"]) / "tracking" / f"processed_{DAY:%Y%m%d}.today.json"
    print(f"   plan_today, first of the day   {figures['today_first_s']:7.2f} s   (whole day read, all done)")
    print(f"   plan_today, 0 new photos       {figures['today_0_new_s']:7.2f} s")
    print(f"   plan_today, 100 new photos     {figures['today_100_new_s']:7.2f} s   (10 cars)")
    print(f"   same-day watermark file        {mark.stat().st_size / 1e3:7.1f} kB")
    return figures


def _add_uploads(dsn: str, photos: int, rows: int) -> None:
    """``photos`` new rows of the day, 10 per car, uploaded a minute after the day's last one."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in range(photos):
            car = 90_000_000 + rows + n // 10
            conn.execute(
                "INSERT INTO upload_files (car_cd, branch_no, file_path, created_at, updated_at)"
                " SELECT %s, %s, %s, max(created_at) + interval '1 minute', max(updated_at) + interval '1 minute'"
                " FROM upload_files",
                (car, n % 10 + 1, f"/upfile/{str(car)[:4]}/{str(car)[4:]}/{car}{n % 10 + 1:03d}.jpg"),
            )


def _verify_every_car(day: dt.date, car_ids: list[str]) -> None:
    """What the car tasks leave behind: each part with its photos verified."""
    from platemask.config import Settings
    from platemask.pipeline import PhotoOutcome
    from platemask.tracking import DayTracking, apply_outcome, set_status, stamp
    from platemask.uploads import Photo

    tracking = DayTracking.for_settings(Settings.from_env(), day)
    at = stamp(dt.datetime.now(dt.UTC))

    def verify(car_id: str) -> None:
        part = tracking.read_part(car_id)
        assert part is not None
        for record in part["records"].values():
            photo = Photo(record["file_id"], car_id, record["path"], record.get("branch_no"))
            digest = "0" * 64
            outcome = PhotoOutcome(
                photo,
                detections=1,
                outputs={"detect": record["path"]},
                sha256={"backup": digest, "detect": digest},
                millis=300,
            )
            set_status(record, "processing", at)  # rule 5: a photo is started before it is verified
            apply_outcome(record, outcome, at)
        tracking.write_part(car_id, part)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(verify, car_ids))


def _seed(dsn: str, cars: int, photos: int) -> None:
    """``cars`` × ``photos`` rows of the day, with COPY (seconds, not minutes)."""
    import psycopg

    from platemask.paths import car_folder

    table = (REPO / "include" / "sql" / "upload_files.sql").read_text(encoding="utf-8")
    start = dt.datetime.combine(DAY, dt.time(6))
    buffer = io.StringIO()
    for c in range(cars):
        car = 10_000_000 + c
        folder = car_folder(str(car))
        # Uploads spread from 06:00 to 18:00, a car at a time, as staff work through the day.
        created = start + dt.timedelta(hours=12) * c / cars
        for n in range(1, photos + 1):
            buffer.write(f"{car}\t{n}\t{folder}{car}{n:03d}.jpg\t{created}\t{created}\n")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS upload_files")
        conn.execute(table)
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY upload_files (car_cd, branch_no, file_path, created_at, updated_at) FROM STDIN") as copy,
        ):
            copy.write(buffer.getvalue())


def _environment(work: Path, socket_dir: str) -> None:
    home = work / "airflow"
    (work / "mount").mkdir()
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__MAX_MAP_LENGTH="8192",  # as the Docker set-up: one task per car
        AIRFLOW__CORE__DEFAULT_TIMEZONE=os.environ.get("PLATEMASK_TIMEZONE", "Asia/Tokyo"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW_CONN_UPLOAD_DB=json.dumps(
            {"conn_type": "postgres", "host": socket_dir, "login": "postgres", "schema": "postgres"}
        ),
        S3_MOUNT=str(work / "mount"),
        LOG_DIR=str(work / "logs"),
    )
    for name in ("CHATWORK_API_KEY", "CHATWORK_ROOM_ID"):
        os.environ.pop(name, None)


if __name__ == "__main__":
    sys.exit(main())
