"""Restores without Airflow: every selected file gets an outcome, and the tracking file hears of it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from platemask.config import Settings
from platemask.notify import ChatworkClient
from platemask.paths import photo_paths
from platemask.restore import RestoreRequest, restore_and_report, restore_day
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking
from tests.fakes.chatwork import FakeChatwork
from tests.support.photos import jpeg_bytes, noisy_photo

DAY = dt.date(2026, 2, 3)
PATHS = [f"/upfile/1041/8430/10418430{n:03d}.jpg" for n in (1, 2, 3)] + ["/upfile/1041/8457/10418457001.jpg"]


@pytest.fixture
def day(tmp_path: Path) -> tuple[LocalStorage, DayTracking, dict[str, bytes]]:
    """Four processed photos: backups hold the originals, the website shows other bytes."""
    store = LocalStorage(tmp_path / "mount")
    originals = {}
    tracking = DayTracking(LocalStorage(tmp_path / "logs"), DAY)
    with tracking.update() as doc:
        for n, path in enumerate(PATHS, start=1):
            paths = photo_paths(path)
            originals[path] = jpeg_bytes(noisy_photo(seed=n))
            store.write(paths.backup, originals[path])
            store.write(paths.original, jpeg_bytes(noisy_photo(seed=100 + n)))
            car = path.split("/")[2] + path.split("/")[3]
            history = [
                {"status": "pending", "at": "2026-02-04 00:10:00"},
                {"status": "done", "at": "2026-02-04 00:11:00"},
            ]
            doc["processed"][str(n)] = {
                "file_id": n,
                "car_id": car,
                "path": path,
                "status": "done",
                "status_history": history,
            }
    return store, tracking, originals


class _Exploding(LocalStorage):
    """A storage whose write of one file fails in a way nobody planned for."""

    def __init__(self, root: Path, bad: str, error: BaseException) -> None:
        super().__init__(root)
        self.bad, self.error = bad, error

    def write(self, path: str, data: bytes) -> None:
        if path == self.bad:
            raise self.error
        super().write(path, data)


def test_an_unexpected_failure_on_one_file_does_not_stop_the_others(day, tmp_path: Path) -> None:
    store, tracking, originals = day
    broken = _Exploding(tmp_path / "mount", PATHS[1], RuntimeError("driver bug"))
    report = restore_day(RestoreRequest(DAY, "done", dry_run=False), tracking, store=broken, backups=broken)
    assert report.counts()["restored"] == 3 and report.counts()["error"] == 1
    [problem] = [f for f in report.files if f.action == "error"]
    assert problem.path == PATHS[1] and "RuntimeError: driver bug" in problem.detail
    for path in PATHS[:1] + PATHS[2:]:
        assert store.read(path) == originals[path]
    processed = tracking.load()["processed"]
    assert [key for key, r in processed.items() if r.get("restored_at")] == ["1", "3", "4"]


def test_an_interrupted_restore_records_what_it_already_restored(day, tmp_path: Path) -> None:
    store, tracking, originals = day
    # The task is killed (SIGTERM raises in Airflow's task runner) while the third file is written.
    interrupted = _Exploding(tmp_path / "mount", PATHS[2], KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        restore_day(
            RestoreRequest(DAY, "done", dry_run=False), tracking, store=interrupted, backups=interrupted, workers=1
        )
    recorded = {key for key, r in tracking.load()["processed"].items() if r.get("restored_at")}
    on_disk = {str(n) for n, path in enumerate(PATHS, start=1) if store.read(path) == originals[path]}
    assert recorded == on_disk and {"1", "2"} <= recorded and "3" not in recorded


def test_a_dry_run_names_the_cars_it_found_nothing_for(day) -> None:
    store, tracking, _ = day
    request = RestoreRequest(DAY, "error", car_ids=("10418430", "99999999"))
    report = restore_day(request, tracking, store=store, backups=store)
    assert report.files == [] and report.unmatched_cars() == ("10418430", "99999999")
    assert "no matching photos for car 10418430 (status=error)" in report.text()
    assert report.as_dict()["unmatched_cars"] == ["10418430", "99999999"]


def test_a_car_is_its_records_car_id_not_its_folder(day) -> None:
    # A car known by its inspresultdata_cd keeps its photos under its car_cd folder: the daily run
    # grouped them under AB12345, and so does the restore, in its selection and its report.
    store, tracking, originals = day
    with tracking.update() as doc:
        for key in ("1", "2", "3"):  # the photos under /upfile/1041/8430/
            doc["processed"][key]["car_id"] = "AB12345"
    request = RestoreRequest(DAY, "done", car_ids=("AB12345", "10418430"), dry_run=False)
    report = restore_day(request, tracking, store=store, backups=store)
    assert [(f.file_id, f.car_id, f.action) for f in report.files] == [(k, "AB12345", "restored") for k in "123"]
    assert (
        all(store.read(path) == originals[path] for path in PATHS[:3]) and store.read(PATHS[3]) != originals[PATHS[3]]
    )
    assert report.per_car() == {"AB12345": {"restored": 3}} and report.unmatched_cars() == ("10418430",)
    assert "no matching photos for car 10418430 (status=done)" in report.text()


def test_a_record_without_car_id_is_reported_not_guessed(day) -> None:
    store, tracking, originals = day
    with tracking.update() as doc:
        del doc["processed"]["2"]["car_id"]
    report = restore_day(RestoreRequest(DAY, "done", dry_run=False), tracking, store=store, backups=store)
    assert report.files == [] and "photo 2 (/upfile/1041/8430/10418430002.jpg) has no car_id" in report.problem
    assert report.counts()["error"] == 1 and store.read(PATHS[0]) != originals[PATHS[0]]


def test_restore_and_report_posts_the_report_once_and_only_when_files_were_selected(day, tmp_path: Path) -> None:
    store, tracking, originals = day
    settings = Settings.from_env({"S3_MOUNT": str(tmp_path / "mount"), "LOG_DIR": str(tmp_path / "logs")})
    with FakeChatwork(token="restore-token") as chatwork:
        client = ChatworkClient(api_key="restore-token", room_id="77", api_url=chatwork.url)
        request = RestoreRequest(DAY, "done", ("10418457",), dry_run=False)
        report = restore_and_report(request, tracking, settings=settings, store=store, backups=store, client=client)
        assert store.read(PATHS[3]) == originals[PATHS[3]]  # only car 10418457's photo
        assert store.read(PATHS[0]) != originals[PATHS[0]]
        assert [m["body"] for m in chatwork.messages] == [report.text()]
        nothing = RestoreRequest(DAY, "error", (), dry_run=False)  # no record is in error
        restore_and_report(nothing, tracking, settings=settings, store=store, backups=store, client=client)
        assert len(chatwork.messages) == 1


# --- Safe to retry (issue 30, item 7) -------------------------------------------------------------


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"S3_MOUNT": str(tmp_path / "mount"), "LOG_DIR": str(tmp_path / "logs")})


def test_a_retried_restore_records_and_posts_nothing_twice(day, tmp_path: Path) -> None:
    store, tracking, originals = day
    request = RestoreRequest(DAY, "done", (), dry_run=False)
    with FakeChatwork(token="restore-token") as chatwork:
        client = ChatworkClient(api_key="restore-token", room_id="77", api_url=chatwork.url)
        for _attempt in range(2):  # the task retried (retries=2) after it had restored everything
            report = restore_and_report(
                request, tracking, settings=_settings(tmp_path), store=store, backups=store, client=client, run_id="r1"
            )
        assert report.counts()["unchanged"] == 4 and report.chatwork == "already sent"
        assert len(chatwork.messages) == 1
        # Another restore (another run) of the same day is a report of its own.
        restore_and_report(
            request, tracking, settings=_settings(tmp_path), store=store, backups=store, client=client, run_id="r2"
        )
        assert len(chatwork.messages) == 2
    for record in tracking.load()["processed"].values():
        assert [h["status"] for h in record["status_history"]] == ["pending", "done", "restored"]
    assert all(store.read(path) == data for path, data in originals.items())


def test_a_chatwork_failure_after_a_restore_is_a_warning(day, tmp_path: Path) -> None:
    store, tracking, originals = day
    with FakeChatwork(token="restore-token") as chatwork:
        chatwork.fail_next(502, times=20)
        client = ChatworkClient(api_key="restore-token", room_id="77", api_url=chatwork.url, backoff=0.01)
        report = restore_and_report(
            RestoreRequest(DAY, "done", (), dry_run=False),
            tracking,
            settings=_settings(tmp_path),
            store=store,
            backups=store,
            client=client,
            run_id="r1",
        )
    assert not report.failed and report.counts()["restored"] == 4
    assert report.chatwork.startswith("failed:")
    assert all(store.read(path) == data for path, data in originals.items())
    [note] = tracking.load()["notifications"]
    assert (note["kind"], note["run_id"], note["status"]) == ("restore", "r1", "failed")


def test_the_report_of_thousands_of_cars_fits_chatwork_problems_first() -> None:
    from platemask.notify import MAX_MESSAGE_CHARS
    from platemask.restore import FileRestore, RestoreReport

    files = [FileRestore(str(n), f"{10000000 + n}", f"/upfile/{n}/x.jpg", "restored") for n in range(2500)]
    files[2400] = FileRestore("2400", "10002400", "/upfile/2400/x.jpg", "missing_backup", "no backup")
    text = RestoreReport(RestoreRequest(DAY, "all", (), dry_run=False), files).text()
    assert len(text) <= MAX_MESSAGE_CHARS
    assert "⚠️ 10002400" in text.split("📊 車両別結果:")[1].splitlines()[1]  # the problem car first
    assert "…他" in text and text.endswith("[/info]")


def test_a_restore_and_a_daily_run_of_the_same_day_never_interleave(day, tmp_path: Path) -> None:
    from platemask.errors import DayBusyError

    store, tracking, originals = day
    before = {path: store.read(path) for path in PATHS}
    tracking.claim("daily", "scheduled__2026-02-03", stale_after=3600)  # a daily run is between plan and finish
    request = RestoreRequest(DAY, "done", (), dry_run=False)
    with pytest.raises(DayBusyError, match="a daily of this day is running"):
        restore_and_report(request, tracking, settings=_settings(tmp_path), store=store, backups=store, client=None)
    assert {path: store.read(path) for path in PATHS} == before  # nothing put back under the run
    dry = restore_and_report(
        RestoreRequest(DAY, "done", ()), tracking, settings=_settings(tmp_path), store=store, backups=store, client=None
    )
    assert dry.counts()["would_restore"] == 4  # a dry run changes nothing: it may look any time
    tracking.release("scheduled__2026-02-03")  # finish_day
    restore_and_report(
        request, tracking, settings=_settings(tmp_path), store=store, backups=store, client=None, run_id="r1"
    )
    assert all(store.read(path) == data for path, data in originals.items())
    # ... and a restore holds the day while it runs: a daily run planning the day waits.
    tracking.claim("restore", "r2", stale_after=3600)
    with pytest.raises(DayBusyError, match="a restore of this day is running"):
        tracking.claim("daily", "scheduled__2026-02-03", stale_after=3600)
    tracking.claim("restore", "r2", stale_after=3600)  # its own retry takes it again
    tracking.release("r2")
    tracking.claim("daily", "scheduled__2026-02-03", stale_after=3600)
    tracking.claim("daily", "manual__2026-02-05", stale_after=3600)  # a later daily run takes over
