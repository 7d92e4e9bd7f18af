from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest

from platemask.errors import TrackingError
from platemask.storage import LocalStorage
from platemask.tracking import (
    INCOMPLETE,
    DayTracking,
    mark_cars_done,
    mark_incomplete,
    merge_record,
    new_record,
    requeue,
    set_status,
)
from platemask.uploads import Photo

DAY = dt.date(2026, 2, 3)


def _record(file_id: int, car: str = "10418430", status: str = "verified") -> dict:
    record = new_record(Photo(file_id, car, f"/upfile/1041/8430/{file_id}.jpg", file_id), "2026-02-03 10:00:00")
    if status != "pending":
        set_status(record, "processing", "2026-02-03 10:00:01")
        set_status(record, status, "2026-02-03 10:00:02")
    return record


def test_file_name_and_empty_document(tmp_path: Path) -> None:
    tracking = DayTracking(LocalStorage(tmp_path), DAY)
    assert tracking.path == "/tracking/processed_20260203.json"
    doc = tracking.load()
    assert doc["date"] == "2026-02-03" and doc["processed"] == {}


def test_unreadable_file_is_an_error_and_is_kept(tmp_path: Path) -> None:
    tracking = DayTracking(LocalStorage(tmp_path), DAY)
    (tmp_path / "tracking").mkdir()
    (tmp_path / "tracking/processed_20260203.json").write_text("{not json")
    with pytest.raises(TrackingError, match="not valid JSON"), tracking.update():
        pass
    assert (tmp_path / "tracking/processed_20260203.json").read_text() == "{not json"


def test_done_only_when_all_files_of_the_car_verified() -> None:
    records = [_record(1), _record(2), _record(3, car="10418457"), _record(4, car="10418457", status="error")]
    done = mark_cars_done(records, {"10418430", "10418457"}, "2026-02-03 11:00:00")
    assert done == {"10418430"}
    assert [r["status"] for r in records] == ["done", "done", "verified", "error"]
    assert records[0]["completed_at"] == "2026-02-03 11:00:00"
    assert [h["status"] for h in records[0]["status_history"]] == ["pending", "processing", "verified", "done"]


def test_a_requeued_record_follows_the_database_and_keeps_its_history() -> None:
    record = _record(1)  # verified, branch_no 1
    moved = Photo(1, "10418430", "/upfile/1041/8430/renamed.jpg", branch_no=2)
    assert requeue(record, moved, "2026-02-04 09:00:00") is record
    assert (record["path"], record["branch_no"], record["is_first"], record["status"]) == (
        moved.path,
        2,
        False,
        "pending",
    )
    assert [h["status"] for h in record["status_history"]] == ["pending", "processing", "verified", "pending"]
    fresh = requeue(None, moved, "2026-02-04 09:00:00")
    assert (fresh["status"], fresh["status_history"]) == (
        "pending",
        [{"status": "pending", "at": "2026-02-04 09:00:00"}],
    )


def test_only_unfinished_records_are_marked_incomplete() -> None:
    records = [_record(1, status="pending"), _record(2, status="processing"), _record(3), _record(4, status="error")]
    records[3]["error"] = "invalid_image: truncated"
    assert mark_incomplete(records, "2026-02-03 11:00:00") == 2
    assert [r["status"] for r in records] == ["error", "error", "verified", "error"]
    assert [r.get("error") for r in records] == [INCOMPLETE, INCOMPLETE, None, "invalid_image: truncated"]


def test_merge_keeps_the_longer_history() -> None:
    older, newer = _record(1, status="pending"), _record(1)
    assert merge_record(older, newer) is newer
    assert merge_record(newer, older) is newer
    assert merge_record(None, older) is older


def test_parts_are_merged_under_lock(tmp_path: Path) -> None:
    tracking = DayTracking(LocalStorage(tmp_path), DAY)
    with tracking.update() as doc:
        doc["processed"]["1"] = _record(1, status="pending")
    tracking.write_part("10418430", {"car_id": "10418430", "records": {"1": _record(1)}})
    assert tracking.view()["processed"]["1"]["status"] == "verified"
    assert (
        json.loads((tmp_path / "tracking/processed_20260203.json").read_text())["processed"]["1"]["status"] == "pending"
    )  # view writes nothing
    with tracking.update():
        pass
    assert (
        json.loads((tmp_path / "tracking/processed_20260203.json").read_text())["processed"]["1"]["status"]
        == "verified"
    )


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    tracking = DayTracking(LocalStorage(tmp_path), DAY)

    def writer(n: int) -> None:
        for i in range(10):
            with DayTracking(LocalStorage(tmp_path), DAY).update() as doc:
                doc["processed"][f"{n}-{i}"] = _record(n * 100 + i)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tracking.load()["processed"]) == 40
    assert [p.name for p in (tmp_path / "tracking").iterdir()] == ["processed_20260203.json"]


def test_stale_lock_is_broken(tmp_path: Path) -> None:
    import os
    import time

    tracking = DayTracking(LocalStorage(tmp_path), DAY)
    (tmp_path / "tracking").mkdir()
    lock = tmp_path / "tracking/processed_20260203.json.lock"
    lock.write_text("dead-host pid 1")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with tracking.update() as doc:
        doc["processed"]["1"] = _record(1)
    assert not lock.exists()


def test_two_waiters_breaking_one_stale_lock_never_both_hold_it(tmp_path: Path) -> None:
    """B sees the stale lock, A breaks it and takes the lock, then B acts on what it saw."""
    import os
    import time

    (tmp_path / "tracking").mkdir()
    lock = tmp_path / "tracking/processed_20260203.json.lock"
    lock.write_text("dead-host pid 1")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    first = DayTracking(LocalStorage(tmp_path), DAY)

    class SlowWaiter(LocalStorage):
        """Storage of waiter B: the lock changes hands right after B measured its age."""

        interleaved = False

        def age(self, path: str) -> float | None:
            seen = super().age(path)
            if path.endswith(".lock") and not self.interleaved:
                self.interleaved = True
                first._break_stale_lock(900.0)
                assert first.store.create(first._lock_path, b"waiter A")
            return seen

    second = DayTracking(SlowWaiter(tmp_path), DAY)
    second._break_stale_lock(900.0)
    assert lock.read_text() == "waiter A"
    assert not second.store.create(second._lock_path, b"waiter B")
    assert sorted(p.name for p in (tmp_path / "tracking").iterdir()) == [lock.name]


def test_a_break_token_left_by_a_dead_waiter_does_not_block_forever(tmp_path: Path) -> None:
    import hashlib
    import os
    import time

    tracking = DayTracking(LocalStorage(tmp_path), DAY)
    (tmp_path / "tracking").mkdir()
    lock = tmp_path / "tracking/processed_20260203.json.lock"
    lock.write_text("dead-host pid 1")
    token = lock.with_name(f"{lock.name}.break-{hashlib.sha256(b'dead-host pid 1').hexdigest()[:16]}")
    token.write_text("dead-host pid 1")
    old = time.time() - 3600
    for path in (lock, token):
        os.utime(path, (old, old))
    with tracking.update() as doc:
        doc["processed"]["1"] = _record(1)
    assert sorted(p.name for p in (tmp_path / "tracking").iterdir()) == ["processed_20260203.json"]


def test_a_lock_left_by_a_killed_process_of_this_host_is_broken_at_once(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tracking = DayTracking(LocalStorage(tmp_path), DAY)
    (tmp_path / "tracking").mkdir()
    lock = tmp_path / "tracking/processed_20260203.json.lock"
    lock.write_text(f"{socket.gethostname()} pid {dead.pid} 0123abcd")  # fresh, but its holder is gone
    with tracking.update() as doc:
        doc["processed"]["1"] = _record(1)
    assert not lock.exists() and "1" in tracking.load()["processed"]


def test_a_fresh_lock_of_a_live_process_or_another_host_is_respected(tmp_path: Path) -> None:
    import os
    import socket

    (tmp_path / "tracking").mkdir()
    lock = tmp_path / "tracking/processed_20260203.json.lock"
    for holder in (f"{socket.gethostname()} pid {os.getppid()} 0123abcd", "other-host pid 1 0123abcd"):
        lock.write_text(holder)
        tracking = DayTracking(LocalStorage(tmp_path), DAY)
        tracking._break_stale_lock(900.0)
        assert lock.read_text() == holder


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        pytest.param(["processing", "verified", "done"], True, id="the-happy-path"),
        pytest.param(["processing", "error", "pending", "processing", "verified"], True, id="error-retried"),
        pytest.param(["processing", "error", "processing", "verified"], True, id="car-task-retried"),
        pytest.param(["processing", "pending", "processing", "processing", "error"], True, id="crash-then-retry"),
        pytest.param(["processing", "verified", "done", "pending"], True, id="forced-again"),
        pytest.param(["error"], True, id="refused-at-planning"),
        pytest.param(["verified"], False, id="verified-without-processing"),
        pytest.param(["processing", "done"], False, id="done-before-verified"),
        pytest.param(["processing", "verified", "error"], False, id="verified-photo-cannot-fail"),
        pytest.param(["processing", "error", "done"], False, id="error-cannot-become-done"),
        pytest.param(["processing", "verified", "done", "done"], False, id="done-twice"),
    ],
)
def test_set_status_follows_the_rule_5_state_machine(path: list[str], allowed: bool) -> None:
    record = {"file_id": 1, "status": "pending", "status_history": [{"status": "pending", "at": "t0"}]}
    try:
        for i, status in enumerate(path):
            set_status(record, status, f"t{i + 1}")
    except ValueError as exc:
        assert not allowed, exc
        assert "is not a rule 5 transition" in str(exc)
        assert [h["status"] for h in record["status_history"]] == ["pending", *path[:i]]  # refused: nothing kept
    else:
        assert allowed
        assert [h["status"] for h in record["status_history"]] == ["pending", *path]
