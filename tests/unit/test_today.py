"""Same-day runs without Airflow: the incremental planner, the day's one summary, and a same-day run
overlapping the daily run on the same cars (threads sharing the day's claim, as two DAG runs do)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest

from platemask.daily import finish_day, plan_day, process_cars
from platemask.errors import DayBusyError
from platemask.storage import LocalStorage
from platemask.today import advance, finish_today, new_rows, plan_today, since
from platemask.tracking import DayTracking
from tests.support.photos import StubDetector, no_second_look
from tests.unit.test_daily import DAY, UPDATED, _row

WAVES = [
    [_row(1, "10418430", "a.jpg", 1), _row(2, "10418430", "b.jpg", 2)],
    [_row(3, "10418457", "c.jpg", None, UPDATED + dt.timedelta(hours=2))],
    [_row(4, "10418430", "d.jpg", 3, UPDATED + dt.timedelta(hours=4))],  # a new photo of a wave-1 car
]
ALL = [row for wave in WAVES for row in wave]


@pytest.fixture
def tracking(settings) -> DayTracking:
    return DayTracking.for_settings(settings, DAY)


@pytest.fixture
def photos(put_photo) -> None:
    for row in ALL:
        put_photo(row["file_path"], seed=row["file_id"])


def _process(settings, tracking: DayTracking, batches, detector=None) -> None:
    store = LocalStorage(settings.s3_mount)
    for car_ids in batches:
        process_cars(
            car_ids,
            tracking,
            settings=settings,
            store=store,
            detector=detector or StubDetector(),
            second_look=no_second_look(),
        )


def _today_run(settings, tracking: DayTracking, rows, detector=None):
    """plan_today → car tasks → finish_today, as plate_masking_today; the rows are what its query returns."""
    plan = plan_today(rows, tracking)
    _process(settings, tracking, plan.batches, detector)
    return plan, (finish_today(tracking, refused=plan.refused) if plan.batches else None)


def _daily_run(settings, tracking: DayTracking, rows=ALL, run_id: str = "scheduled__2026-02-03", detector=None):
    plan = plan_day(rows, tracking)
    _process(settings, tracking, plan.batches, detector)
    return plan, finish_day(tracking, skipped=plan.skipped, refused=plan.refused, run_id=run_id)


def _records(tracking: DayTracking) -> dict:
    return json.loads(tracking.store.read(tracking.path))["processed"]


@pytest.mark.parametrize(
    ("mark", "expected"),
    [
        pytest.param({}, None, id="first-run-reads-the-whole-day"),
        pytest.param({"high": "2026-02-03T12:00:00"}, "2026-02-03T11:50:00", id="overlap-before-newest"),
    ],
)
def test_since(mark, expected) -> None:  # OVERLAP is 10 minutes
    assert since(mark) == expected


def test_new_rows_drops_rows_seen_with_the_same_updated_at() -> None:
    mark = advance({}, WAVES[0])
    assert mark == {"high": "2026-02-03T10:00:00", "seen": {"1": "2026-02-03T10:00:00", "2": "2026-02-03T10:00:00"}}
    changed = _row(2, "10418430", "b.jpg", 2, UPDATED + dt.timedelta(minutes=5))
    late = _row(5, "10418430", "e.jpg", 5, UPDATED - dt.timedelta(minutes=3))  # committed late, older stamp
    assert new_rows([*WAVES[0], changed, late], mark) == [changed, late]


def test_advance_forgets_rows_the_next_query_cannot_return() -> None:
    mark = advance(advance({}, WAVES[0]), WAVES[1])
    assert mark == {"high": "2026-02-03T12:00:00", "seen": {"3": "2026-02-03T12:00:00"}}


def test_nothing_new_reads_and_writes_no_day_file(settings, tracking, photos) -> None:
    _today_run(settings, tracking, WAVES[0])
    assert tracking.store.exists(tracking.path)
    tracking.store.delete(tracking.path)  # had the next plan read and saved the day file, it would be back
    plan, finished = _today_run(settings, tracking, WAVES[0])  # the overlap returns wave 1 again
    assert (plan.batches, plan.photos, finished) == ([], 0, None)
    assert not tracking.store.exists(tracking.path)


def test_waves_then_daily_run_reports_the_whole_day_once(settings, tracking, photos, put_photo) -> None:
    for k, wave in enumerate(WAVES):
        plan, finished = _today_run(settings, tracking, wave)
        assert [car for batch in plan.batches for car in batch] == sorted({r["car_id"] for r in wave})
        assert finished.succeeded == len(wave) and not finished.failed
        records = _records(tracking)
        assert {records[str(r["file_id"])]["status"] for r in wave} == {"verified"}  # not done: the daily run's
        assert len(records) == sum(len(w) for w in WAVES[: k + 1])
    plan, summary = _daily_run(settings, tracking)
    assert (plan.batches, plan.skipped) == ([], 0)  # nothing left, and nothing counted as skipped
    assert (summary.succeeded, summary.failed, summary.skipped) == (4, 0, 0)
    assert [(c.car_id, c.processed, c.detections) for c in summary.cars] == [("10418430", 3, 3), ("10418457", 1, 1)]
    assert summary.quality and summary.quality.photos == 4
    assert {r["status"] for r in _records(tracking).values()} == {"done"}
    # A retried finishing task of the same run says the same; the next daily run reports nothing again.
    again = finish_day(tracking, skipped=plan.skipped, run_id="scheduled__2026-02-03")
    assert (again.succeeded, again.cars) == (summary.succeeded, summary.cars)
    _, rerun = _daily_run(settings, tracking, run_id="manual__rerun")
    assert (rerun.succeeded, rerun.skipped) == (0, 4)


def test_reupload_during_the_day_is_processed_again(settings, tracking, photos, put_photo) -> None:
    _today_run(settings, tracking, WAVES[0])
    put_photo(WAVES[0][0]["file_path"], seed=99)
    reuploaded = _row(1, "10418430", "a.jpg", 1, UPDATED + dt.timedelta(hours=1))
    plan, finished = _today_run(settings, tracking, [*WAVES[0], reuploaded])  # the overlap returns both
    assert plan.photos == 1 and finished.succeeded == 1
    history = [h["status"] for h in _records(tracking)["1"]["status_history"]]
    assert history == ["pending", "processing", "verified", "pending", "processing", "verified"]
    _, summary = _daily_run(settings, tracking, [reuploaded, *WAVES[0][1:], *WAVES[1], *WAVES[2]])
    assert (summary.succeeded, summary.skipped) == (4, 0)  # the photo counts once


def test_failed_photo_of_a_same_day_run_is_retried_and_reported_by_the_daily_run(
    settings, tracking, photos, put_photo
) -> None:
    put_photo(WAVES[1][0]["file_path"], b"")
    _, finished = _today_run(settings, tracking, WAVES[1])
    assert finished.failed == 1 and _records(tracking)["3"]["status"] == "error"
    put_photo(WAVES[1][0]["file_path"], seed=3)
    plan, summary = _daily_run(settings, tracking, WAVES[1])
    assert plan.photos == 1 and (summary.succeeded, summary.failed) == (1, 0)


class _SlowDetector(StubDetector):
    """Records which run works on which car, and when, and takes its time so that runs overlap."""

    def __init__(self, run: str, log: list, started: threading.Event) -> None:
        super().__init__()
        self.run, self.log, self.started = run, log, started

    def detect(self, images, *, conf=None):
        if conf is None:
            self.started.set()
            begin = time.monotonic()
            time.sleep(0.15)
            self.log.append((self.run, threading.current_thread().name, begin, time.monotonic()))
        return super().detect(images, conf=conf)


def test_daily_and_same_day_runs_overlapping_never_work_at_once(settings, tracking, photos) -> None:
    """The 23:45 same-day run still at work when the daily run starts, and a same-day run during the daily run."""
    work: list = []
    today_busy, daily_busy = threading.Event(), threading.Event()
    outcome: dict = {}

    def today(name: str, rows, started: threading.Event) -> None:
        try:
            tracking.claim("today", name, stale_after=3600)
        except DayBusyError:
            outcome[name] = "skipped"
            return
        try:
            outcome[name] = _today_run(settings, tracking, rows, _SlowDetector(name, work, started))
        finally:
            tracking.release(name)

    def daily() -> None:
        tracking.claim("daily", "daily", stale_after=3600, wait=60)
        try:
            outcome["daily"] = _daily_run(
                settings, tracking, run_id="daily", detector=_SlowDetector("daily", work, daily_busy)
            )
        finally:
            tracking.release("daily")

    first = threading.Thread(target=today, args=("today-1", WAVES[0] + WAVES[1], today_busy))
    first.start()
    assert today_busy.wait(10)
    runner = threading.Thread(target=daily)
    runner.start()
    first.join(30)
    assert daily_busy.wait(30)  # the daily run works only once the same-day run has finished
    second = threading.Thread(target=today, args=("today-2", ALL, threading.Event()))
    second.start()
    second.join(30)
    runner.join(30)

    assert outcome["today-2"] == "skipped"  # the day is the daily run's: skipped, not failed
    today_end = max(end for run, _, _, end in work if run == "today-1")
    assert min(begin for run, _, begin, _ in work if run == "daily") >= today_end  # never at once
    records = _records(tracking)
    assert {r["status"] for r in records.values()} == {"done"} and len(records) == len(ALL)  # nothing lost
    assert all([h["status"] for h in r["status_history"]].count("processing") == 1 for r in records.values())
    _, summary = outcome["daily"]
    assert (summary.succeeded, summary.failed, summary.skipped) == (len(ALL), 0, 0)
