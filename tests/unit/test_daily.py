"""The daily steps without Airflow: planning (incremental), processing, finishing."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from platemask.daily import DayPlan, _batches, finish_day, plan_day, process_cars, target_day
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking
from tests.support.photos import StubDetector, no_second_look

DAY = dt.date(2026, 2, 3)
UPDATED = dt.datetime(2026, 2, 3, 10, 0)


def _row(file_id: int, car: str, name: str, branch: int | None, updated: dt.datetime = UPDATED) -> dict:
    return {
        "file_id": file_id,
        "car_id": car,
        "file_path": f"/upfile/{car[:4]}/{car[4:]}/{name}",
        "branch_no": branch,
        "updated_at": updated,
    }


ROWS = [
    _row(1, "10418430", "a.jpg", 1),
    _row(2, "10418430", "b.jpg", 2),
    _row(3, "10418457", "c.jpg", None),
]


@pytest.fixture
def tracking(settings) -> DayTracking:
    return DayTracking.for_settings(settings, DAY)


@pytest.fixture
def photos(put_photo) -> None:
    for row in ROWS:
        put_photo(row["file_path"], seed=row["file_id"])


def _day_file(tracking: DayTracking) -> str:
    return tracking.store.read(tracking.path).decode()


def _run_day(settings, tracking: DayTracking, rows=ROWS, **plan_kwargs):
    plan = plan_day(rows, tracking, **plan_kwargs)
    store = LocalStorage(settings.s3_mount)
    for car_ids in plan.batches:
        process_cars(
            car_ids, tracking, settings=settings, store=store, detector=StubDetector(), second_look=no_second_look()
        )
    return plan, finish_day(tracking, skipped=plan.skipped, refused=plan.refused)


@pytest.mark.parametrize(
    ("requested", "logical", "expected"),
    [
        pytest.param("2026-02-03", None, DAY, id="date-param-wins"),
        pytest.param(None, dt.datetime(2026, 2, 2, 15, 0, tzinfo=dt.UTC), DAY, id="scheduled-tokyo-midnight"),
        pytest.param(None, dt.datetime(2026, 2, 3, 0, 0, tzinfo=dt.UTC), DAY, id="dags-test-date"),
        pytest.param(
            "2026-01-31", dt.datetime(2026, 2, 3, tzinfo=dt.UTC), dt.date(2026, 1, 31), id="param-over-logical"
        ),
    ],
)
def test_target_day(requested, logical, expected) -> None:
    assert target_day(requested, logical, "Asia/Tokyo") == expected


def test_target_day_rejects_bad_date() -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        target_day("03/02/2026", None, "Asia/Tokyo")


def test_first_run_processes_everything(settings, tracking, photos) -> None:
    plan, summary = _run_day(settings, tracking)
    assert plan.batches == [["10418430"], ["10418457"]] and plan.photos == 3 and plan.skipped == 0
    assert (summary.succeeded, summary.failed, summary.skipped) == (3, 0, 0)
    assert [(c.car_id, c.processed, c.detections, c.ok) for c in summary.cars] == [
        ("10418430", 2, 2, True),
        ("10418457", 1, 1, True),
    ]
    doc = json.loads(_day_file(tracking))
    assert {k: r["status"] for k, r in doc["processed"].items()} == {"1": "done", "2": "done", "3": "done"}
    assert doc["processed"]["1"]["is_first"] is True and doc["processed"]["3"]["is_first"] is False
    assert [part["car_id"] for part in tracking.parts()] == ["10418430", "10418457"]  # kept until the next plan


def test_second_run_skips_finished_photos(settings, tracking, photos) -> None:
    _run_day(settings, tracking)
    plan, summary = _run_day(settings, tracking)
    assert plan.batches == [] and plan.skipped == 3
    assert (summary.succeeded, summary.failed, summary.skipped, summary.cars) == (0, 0, 3, ())


def test_changed_row_is_processed_again(settings, tracking, photos) -> None:
    _run_day(settings, tracking)
    rows = [*ROWS[:1], _row(2, "10418430", "b.jpg", 2, updated=UPDATED + dt.timedelta(hours=1)), ROWS[2]]
    plan, summary = _run_day(settings, tracking, rows)
    assert plan.batches == [["10418430"]] and plan.photos == 1 and plan.skipped == 2
    assert summary.succeeded == 1


def test_force_processes_finished_photos(settings, tracking, photos) -> None:
    _run_day(settings, tracking)
    plan, summary = _run_day(settings, tracking, force=True)
    assert plan.photos == 3 and summary.succeeded == 3
    history = [h["status"] for h in json.loads(_day_file(tracking))["processed"]["1"]["status_history"]]
    assert history == ["pending", "processing", "verified", "done", "pending", "processing", "verified", "done"]


def test_error_keeps_car_states_and_is_retried_next_run(settings, tracking, photos, put_photo) -> None:
    put_photo(ROWS[1]["file_path"], b"")  # b.jpg of car 10418430 is empty
    _, summary = _run_day(settings, tracking)
    assert (summary.succeeded, summary.failed) == (2, 1)
    assert [(c.car_id, c.ok) for c in summary.cars] == [("10418430", False), ("10418457", True)]
    records = json.loads(_day_file(tracking))["processed"]
    assert (records["1"]["status"], records["2"]["status"], records["3"]["status"]) == ("verified", "error", "done")
    assert records["2"]["error"] == "invalid_image: empty file (0 bytes)"
    put_photo(ROWS[1]["file_path"], seed=2)  # staff upload it again
    plan, summary = _run_day(settings, tracking)
    assert plan.photos == 1 and (summary.succeeded, summary.failed) == (1, 0)
    records = json.loads(_day_file(tracking))["processed"]
    assert {r["status"] for r in records.values()} == {"done"} and "error" not in records["2"]


def test_unsafe_car_id_is_refused_at_planning(settings, tracking, photos) -> None:
    rows = [*ROWS, {**_row(9, "10418430", "x.jpg", 1), "car_id": "../../etc"}]
    plan, summary = _run_day(settings, tracking, rows)
    assert plan.refused == 1 and summary.failed == 1
    record = json.loads(_day_file(tracking))["processed"]["9"]
    assert record["status"] == "error" and record["error"].startswith("unsafe_path: car id")


def test_dead_car_task_is_reported_incomplete(settings, tracking, photos) -> None:
    plan = plan_day(ROWS, tracking)
    # Only the first car's task runs; the second one's worker died.
    store = LocalStorage(settings.s3_mount)
    process_cars(
        plan.batches[0], tracking, settings=settings, store=store, detector=StubDetector(), second_look=no_second_look()
    )
    summary = finish_day(tracking, skipped=plan.skipped)
    assert summary.failed == 1
    record = json.loads(_day_file(tracking))["processed"]["3"]
    assert record["status"] == "error" and record["error"].startswith("incomplete:")


def test_cars_verified_by_a_run_that_died_before_finishing_become_done_next_run(settings, tracking, photos) -> None:
    plan = plan_day(ROWS, tracking)
    store = LocalStorage(settings.s3_mount)
    for batch in plan.batches:  # every car task ran, then the run died before finish_day
        process_cars(
            batch, tracking, settings=settings, store=store, detector=StubDetector(), second_look=no_second_look()
        )
    plan, _ = _run_day(settings, tracking)
    assert plan.photos == 0 and plan.skipped == 3
    records = json.loads(_day_file(tracking))["processed"]
    assert {key: r["status"] for key, r in records.items()} == {"1": "done", "2": "done", "3": "done"}
    assert all(r["completed_at"] for r in records.values())


def test_rerun_of_a_car_task_only_redoes_unfinished_photos(settings, tracking, photos, put_photo) -> None:
    put_photo(ROWS[1]["file_path"], b"")
    plan = plan_day(ROWS, tracking)
    store = LocalStorage(settings.s3_mount)
    process_cars(
        ["10418430"], tracking, settings=settings, store=store, detector=StubDetector(), second_look=no_second_look()
    )
    put_photo(ROWS[1]["file_path"], seed=2)
    detector = StubDetector()
    [result] = process_cars(
        ["10418430"], tracking, settings=settings, store=store, detector=detector, second_look=no_second_look()
    )
    assert detector.calls == 1 and (result.processed, result.verified) == (1, 1)
    summary = finish_day(tracking, skipped=plan.skipped)
    # Car 10418457's task never ran in this test: its photo is the only failure.
    assert [(c.car_id, c.processed, c.failed) for c in summary.cars] == [("10418430", 2, 0), ("10418457", 1, 1)]
    assert json.loads(_day_file(tracking))["processed"]["2"]["status"] == "done"


def test_batches_respect_max_map_length() -> None:
    cars = [f"{10000000 + i}" for i in range(5000)]
    batches = _batches(cars, 1, 1024)
    assert len(batches) <= 1024 and [car for batch in batches for car in batch] == cars
    assert _batches(cars[:10], 1, 1024) == [[c] for c in cars[:10]]
    assert _batches(cars[:10], 4, 1024) == [cars[0:4], cars[4:8], cars[8:10]]


def test_xcom_stays_small_for_a_huge_day() -> None:
    # 150,000 photos in 5,000 cars: what the planning task hands to Airflow is car ids only.
    # (Planning such a day for real, parts and all, is make bench-scale's job: 5,000 part files.)
    cars = [f"{10000000 + c}" for c in range(5000)]
    plan = DayPlan(DAY, _batches(cars, 1, 1024), photos=150_000, skipped=0)
    assert len(plan.batches) <= 1024 and len(json.dumps(plan.batches)) < 120_000
    assert len(json.dumps(plan.outputs())) < 300


def test_planning_writes_one_part_per_car(settings, tracking: DayTracking, photos) -> None:
    plan = plan_day(ROWS, tracking)
    parts = sorted(tracking.store.list(tracking.parts_dir))
    assert parts == ["10418430.json", "10418457.json"]
    assert plan.batches == [["10418430"], ["10418457"]] and plan.photos == 3
