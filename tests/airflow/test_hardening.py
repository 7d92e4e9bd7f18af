"""Nothing hangs forever, every failure alerts, and the platform's faults are not bad input (issue 30, items 4-6)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from platemask.config import DEFAULT_CAR_TIMEOUT_MIN, car_timeout, day_timeout
from platemask.daily import finish_day, plan_day, process_cars
from platemask.errors import ConfigError, TrackingError
from platemask.notify import format_summary
from platemask.pipeline import process_photos
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking
from platemask.uploads import Photo
from platemask_airflow.notifiers import ChatworkNotifier
from platemask_airflow.operators import PlateMaskOperator
from tests.fakes.chatwork import FakeChatwork
from tests.support.photos import StubDetector, no_second_look

DAY = dt.date(2026, 2, 3)
CAR = "10418430"
ROWS = [
    {"file_id": n, "car_id": CAR, "file_path": f"/upfile/1041/8430/{CAR}{n:03d}.jpg", "branch_no": n} for n in (1, 2)
]


# --- 4. Nothing hangs forever -------------------------------------------------------------------


def test_the_daily_dag_bounds_its_runs_and_car_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("PLATEMASK_CAR_TIMEOUT", "4")
    monkeypatch.setenv("PLATEMASK_CARS_PER_TASK", "5")
    monkeypatch.setenv("PLATEMASK_DAY_TIMEOUT", "600")
    dag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags")).dags["plate_masking_daily"]
    assert dag.dagrun_timeout == dt.timedelta(hours=10)
    assert dag.get_task("mask_car").execution_timeout == dt.timedelta(minutes=20)  # 4 minutes × 5 cars a task
    for task_id in ("plan_uploads", "finish_day"):
        assert dag.get_task(task_id).execution_timeout is not None


def test_timeout_defaults_and_bad_values() -> None:
    assert car_timeout({}) == dt.timedelta(minutes=DEFAULT_CAR_TIMEOUT_MIN)
    assert day_timeout({}) == dt.timedelta(hours=20)
    with pytest.raises(ConfigError, match="PLATEMASK_CAR_TIMEOUT must be at least"):
        car_timeout({"PLATEMASK_CAR_TIMEOUT": "0"})
    with pytest.raises(ConfigError, match="PLATEMASK_DAY_TIMEOUT must be a number"):
        day_timeout({"PLATEMASK_DAY_TIMEOUT": "all day"})


def test_a_tracking_lock_held_by_a_live_process_is_waited_for_a_bounded_time(settings) -> None:
    tracking = DayTracking.for_settings(settings, DAY)
    holder = f"{os.uname().nodename} pid {os.getpid()} alive"  # this very process: never broken
    tracking.store.create(tracking.path + ".lock", holder.encode())
    started = time.monotonic()
    with pytest.raises(TrackingError, match="is held by") as err, tracking._locked(timeout=0.5):
        pass
    assert err.value.transient and time.monotonic() - started < 5


class _StalledStorage(LocalStorage):
    """A photo root whose reads of one photo never return, like a hung network mount."""

    def __init__(self, root: str, stalled: str) -> None:
        super().__init__(root)
        self.stalled = stalled
        self.release = threading.Event()

    def read(self, path: str, *, max_bytes: int | None = None) -> bytes:
        if path == self.stalled:
            self.release.wait()
        return super().read(path, max_bytes=max_bytes)


def test_an_interrupted_car_never_waits_for_a_stalled_read(settings, put_photo) -> None:
    """The car task's execution_timeout raises in the task (SIGALRM): it must end, not wait on the hung read."""
    for row in ROWS:
        put_photo(row["file_path"], seed=row["file_id"])
    store = _StalledStorage(settings.s3_mount, ROWS[1]["file_path"])
    photos = [Photo(r["file_id"], CAR, r["file_path"], r["branch_no"]) for r in ROWS]
    outcomes = process_photos(
        photos, settings=settings, store=store, backups=store, detector=StubDetector(), second_look=no_second_look()
    )

    def timed_out(_signum, _frame):
        raise TimeoutError("execution_timeout")

    previous = signal.signal(signal.SIGALRM, timed_out)
    unstick = threading.Timer(10, store.release.set)  # so that a regression fails instead of hanging
    unstick.start()
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(TimeoutError):
            list(outcomes)
        assert time.monotonic() - started < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        store.release.set()
        unstick.cancel()


# --- 5. Every failure reaches the operators ------------------------------------------------------


@pytest.fixture
def chatwork(monkeypatch: pytest.MonkeyPatch):
    with FakeChatwork(token="alert-token") as fake:
        monkeypatch.setenv("CHATWORK_API_KEY", "alert-token")
        monkeypatch.setenv("CHATWORK_ROOM_ID", "1001")
        monkeypatch.setenv("CHATWORK_API_URL", fake.url)
        yield fake


class _TI:
    task_id = "mask_car"
    rendered_map_index = CAR
    log_url = "http://airflow.example/log"


def _context(exception: BaseException) -> dict:
    from airflow.sdk import DAG

    return {
        "dag": DAG(dag_id="plate_masking_daily", schedule=None),
        "run_id": "scheduled__2026-02-03",
        "ti": _TI(),
        "exception": exception,
    }


def test_a_failed_car_alerts_with_its_car_id_and_reason(chatwork) -> None:
    ChatworkNotifier.task_failed("a car's photos are not all masked")(
        _context(AirflowFailException("bad input: 1 photo(s) failed: /upfile/x.jpg: invalid_image: truncated"))
    )
    [message] = chatwork.messages
    assert CAR in message["body"] and "invalid_image: truncated" in message["body"]
    assert "http://airflow.example/log" in message["body"]


def test_the_alert_goes_out_and_names_an_invalid_setting(chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATEMASK_CONF", "very sure")
    ChatworkNotifier.task_failed("a car's photos are not all masked")(_context(ConfigError("PLATEMASK_CONF ...")))
    [message] = chatwork.messages
    assert "invalid setting: PLATEMASK_CONF must be a number, not 'very sure'" in message["body"]


def test_failed_photos_already_in_the_summary_send_no_second_alert(chatwork) -> None:
    from platemask_airflow.errors import FailedPhotos

    notifier = ChatworkNotifier.task_failed("the day was not finished", unless=(FailedPhotos,))
    notifier(_context(FailedPhotos("1 photo(s) failed; cars: 10418430")))
    assert chatwork.messages == []
    notifier(_context(TrackingError("cannot write the day file")))
    assert len(chatwork.messages) == 1


def test_a_run_alerts_only_when_it_timed_out(chatwork) -> None:
    from airflow.sdk import DAG

    from platemask_airflow.notifiers import RUN_TIMEOUT_TEXT

    class _Run:
        run_id = "scheduled__2026-02-03"

    dag = DAG(dag_id="plate_masking_daily", schedule=None, dagrun_timeout=dt.timedelta(hours=20))
    ChatworkNotifier(text=RUN_TIMEOUT_TEXT)({"dag": dag, "dag_run": _Run(), "reason": "task_failure"})
    assert chatwork.messages == []
    ChatworkNotifier(text=RUN_TIMEOUT_TEXT)({"dag": dag, "dag_run": _Run(), "reason": "timed_out"})
    [message] = chatwork.messages
    assert "時間切れ" in message["body"] and "20:00:00" in message["body"]


def test_every_task_of_both_dags_alerts_on_failure() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags"))
    for dag in bag.dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(c, ChatworkNotifier) for c in callbacks), f"{dag.dag_id}.{task.task_id}"


# --- 6. Infrastructure faults are not bad input ---------------------------------------------------


@pytest.mark.inference
@pytest.mark.parametrize("model", ["missing", "corrupt"])
def test_a_broken_model_is_retried_and_reported_as_infrastructure(
    settings, put_photo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    path = tmp_path / "plates.onnx"
    if model == "corrupt":
        path.write_bytes(b"\x08\x01 this is not a model")
    for row in ROWS:
        put_photo(row["file_path"], seed=row["file_id"])
    monkeypatch.setenv("S3_MOUNT", settings.s3_mount)
    monkeypatch.setenv("LOG_DIR", settings.log_dir)
    monkeypatch.setenv("PLATE_MODEL", str(path))
    monkeypatch.setenv("PLATEMASK_SECOND_LOOK", "off")
    tracking = DayTracking.for_settings(settings, DAY)
    plan = plan_day(ROWS, tracking)

    with pytest.raises(AirflowException) as err:
        PlateMaskOperator(task_id="mask_car", car_ids=[CAR], day=DAY.isoformat()).execute({})

    assert not isinstance(err.value, AirflowFailException)  # retried: the photos are not at fault
    assert str(err.value).startswith("infrastructure fault")
    summary = finish_day(tracking, skipped=plan.skipped)
    assert summary.failed == summary.infrastructure == 2
    assert "🛠️ うち基盤の障害: 2件" in format_summary(summary)
    assert all(r["error"].startswith("model: ") for r in tracking.load()["processed"].values())


def _car_day(settings, detector):
    """Plan the car's day, process it with ``detector``, finish it: its result, summary and records."""
    tracking = DayTracking.for_settings(settings, DAY)
    plan = plan_day(ROWS, tracking)
    store = LocalStorage(settings.s3_mount)
    [result] = process_cars(
        [CAR], tracking, settings=settings, store=store, detector=detector, second_look=no_second_look()
    )
    summary = finish_day(tracking, skipped=plan.skipped)
    return result, summary, list(tracking.load()["processed"].values())


def test_out_of_memory_is_an_infrastructure_fault(settings, put_photo) -> None:
    class _Exhausted(StubDetector):
        def detect(self, image, **kwargs):
            raise MemoryError("cannot allocate 48000000 bytes")

    for row in ROWS:
        put_photo(row["file_path"], seed=row["file_id"])
    result, summary, records = _car_day(settings, _Exhausted())
    assert result.transient and result.infrastructure
    assert summary.infrastructure == 2
    assert all(r["error"].startswith("memory: out of memory") for r in records)


def test_bad_input_is_not_infrastructure(settings, put_photo) -> None:
    put_photo(ROWS[0]["file_path"], data=b"\xff\xd8\xff truncated")
    put_photo(ROWS[1]["file_path"], seed=2)
    result, summary, _records = _car_day(settings, StubDetector())
    assert not result.transient and not result.infrastructure
    assert (summary.failed, summary.infrastructure) == (1, 0)
    assert "基盤" not in format_summary(summary)


def test_a_car_task_stopped_by_its_timeout_is_named_by_its_cars(chatwork) -> None:
    """A timed-out task has no rendered label: the alert takes the car ids from the task itself."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    class _Unlabelled(_TI):
        rendered_map_index = None

    context = _context(AirflowTaskTimeout("Timeout, PID: 4242")) | {
        "ti": _Unlabelled(),
        "task": PlateMaskOperator(task_id="mask_car", car_ids=["10418457", "10418460"], day="2026-02-03"),
    }
    ChatworkNotifier.task_failed("a car task hung", only=(AirflowTaskTimeout,))(context)
    ChatworkNotifier.task_failed("a car task hung", only=(AirflowTaskTimeout,))(_context(ValueError("not a timeout")))
    [message] = chatwork.messages
    assert "mask_car 10418457 +1 cars: Timeout, PID: 4242" in message["body"]
