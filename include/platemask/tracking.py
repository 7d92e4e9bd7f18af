"""Spec rule 5: the daily tracking file, its states, and safe updates from many hosts.

``{LOG_DIR}/tracking/processed_YYYYMMDD.json`` keeps exactly the original schema (new fields are
only added). Car tasks run in parallel, possibly on hosts that share nothing but storage, so
they never write the day file: each writes its own part, ``processed_YYYYMMDD.parts/<car>.json``,
and the day file is rewritten only under a lock file, by the tasks that plan and finish the day
(and by restores). Records only ever grow their ``status_history``; when a part and the day
file disagree, the longer history is the newer record. Every write is temp file + rename, so
each file is valid JSON at every instant.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from platemask.errors import TrackingError
from platemask.pipeline import Photo, PhotoOutcome
from platemask.storage import atomic_write

__all__ = [
    "FINISHED",
    "STATUSES",
    "DayTracking",
    "Record",
    "apply_outcome",
    "mark_cars_done",
    "merge_record",
    "new_record",
    "set_status",
    "site_now",
    "stamp",
]

log = logging.getLogger(__name__)

Record = dict[str, Any]
STATUSES = ("pending", "processing", "verified", "done", "error")
#: States whose outputs are verified: not processed again unless the photo changed or force is asked.
FINISHED = ("verified", "done")


def site_now(timezone: str) -> dt.datetime:
    """The current site-local wall-clock time, naive (the tracking file's convention)."""
    return dt.datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)


def stamp(moment: dt.datetime) -> str:
    """``2026-02-03 10:30:00``: the format of ``status_history[].at`` and ``completed_at``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def new_record(photo: Photo, at: str) -> Record:
    """A ``pending`` record for a photo seen for the first time."""
    return {
        "file_id": photo.file_id,
        "car_id": photo.car_id,
        "path": photo.path,
        "branch_no": photo.branch_no,
        "is_first": photo.is_first,
        "status": "pending",
        "status_history": [{"status": "pending", "at": at}],
    }


def set_status(record: Record, status: str, at: str) -> None:
    """Move a record to ``status``, keeping the history (rule 5: history is kept)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    record["status"] = status
    record["status_history"].append({"status": status, "at": at})


def apply_outcome(record: Record, outcome: PhotoOutcome, at: str) -> None:
    """Record a processed photo as ``verified`` or ``error`` with what was written."""
    record["detections"] = outcome.detections
    record["duration_ms"] = outcome.millis
    if outcome.sha256:
        record["sha256"] = dict(outcome.sha256)
    if outcome.backup_history:
        record.setdefault("backup_history", []).append(outcome.backup_history)
    if outcome.ok:
        record["output_paths"] = dict(outcome.outputs)
        record.pop("error", None)
        set_status(record, "verified", at)
    else:
        assert outcome.error is not None
        record["error"] = outcome.error.describe()
        set_status(record, "error", at)


def merge_record(current: Record | None, incoming: Record) -> Record:
    """The newer of two versions of one record: histories only grow, so the longer one."""
    if current is None or len(incoming.get("status_history", ())) > len(current.get("status_history", ())):
        return incoming
    return current


def mark_cars_done(records: Iterable[Record], car_ids: Iterable[str], at: str) -> set[str]:
    """Rule 5: a car's files become ``done`` only when ALL of them are verified; return those cars."""
    by_car: dict[str, list[Record]] = {}
    wanted = set(car_ids)
    for record in records:
        if record["car_id"] in wanted:
            by_car.setdefault(record["car_id"], []).append(record)
    done = set()
    for car_id, car_records in by_car.items():
        if all(r["status"] in FINISHED for r in car_records):
            for record in car_records:
                if record["status"] == "verified":
                    set_status(record, "done", at)
                    record["completed_at"] = at
            done.add(car_id)
    return done


class DayTracking:
    """The tracking file of one day and the per-car parts written while the day runs."""

    def __init__(self, tracking_dir: Path, day: dt.date, timezone: str = "Asia/Tokyo") -> None:
        self.day = day
        self.timezone = timezone
        self.path = Path(tracking_dir) / f"processed_{day:%Y%m%d}.json"
        self.parts_dir = self.path.with_suffix(".parts")
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"DayTracking({str(self.path)!r})"

    def load(self) -> dict[str, Any]:
        """The day file, or an empty one; an unreadable file is an error, never overwritten."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {
                "date": self.day.isoformat(),
                "created_at": site_now(self.timezone).isoformat(),
                "last_processed_time": None,
                "processed": {},
            }
        except OSError as exc:
            raise TrackingError(f"cannot read {self.path}: {exc}") from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrackingError(f"{self.path} is not valid JSON ({exc}); fix or move it away") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("processed"), dict):
            raise TrackingError(f"{self.path} has no 'processed' object; fix or move it away")
        return doc

    def view(self) -> dict[str, Any]:
        """The day file with the newer part records overlaid, without writing anything."""
        doc = self.load()
        self._merge_parts(doc)
        return doc

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Lock the day, yield its document with the parts merged in, and save it on success."""
        with self._locked():
            doc = self.load()
            self._merge_parts(doc)
            yield doc
            self._save(doc)

    def read_part(self, car_id: str) -> dict[str, Any] | None:
        """A car's part, or None when it has none."""
        try:
            return json.loads((self.parts_dir / f"{car_id}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise TrackingError(f"cannot read the tracking part of car {car_id}: {exc}") from exc

    def write_part(self, car_id: str, part: dict[str, Any]) -> None:
        """Replace a car's part atomically (only that car's task writes it)."""
        _write_json(self.parts_dir / f"{car_id}.json", part)

    def parts(self) -> Iterator[dict[str, Any]]:
        """Every part currently on disk."""
        if not self.parts_dir.is_dir():
            return
        for path in sorted(self.parts_dir.glob("*.json")):
            part = self.read_part(path.stem)
            if part is not None:
                yield part

    def clear_parts(self) -> None:
        """Remove all parts (after they were merged into the day file)."""
        if self.parts_dir.is_dir():
            for path in self.parts_dir.glob("*.json"):
                path.unlink(missing_ok=True)

    def _merge_parts(self, doc: dict[str, Any]) -> None:
        processed = doc["processed"]
        for part in self.parts():
            for key, record in part.get("records", {}).items():
                processed[key] = merge_record(processed.get(key), record)

    def _save(self, doc: dict[str, Any]) -> None:
        _write_json(self.path, doc)

    @contextlib.contextmanager
    def _locked(self, timeout: float = 300.0, stale_after: float = 900.0) -> Iterator[None]:
        # An O_EXCL lock file works on local disks and on NFS-style shared storage, where flock
        # does not; a holder that died is recognised by the file's age.
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        owner = f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(4)}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w") as handle:
                    handle.write(owner)
                break
            except FileExistsError:
                self._break_stale_lock(stale_after)
                if time.monotonic() > deadline:
                    holder = _read_text(self._lock_path)
                    error = TrackingError(f"{self._lock_path} is held by {holder or 'someone'}")
                    error.transient = True
                    raise error from None
                time.sleep(0.2)
        try:
            yield
        finally:
            if _read_text(self._lock_path) == owner:
                self._lock_path.unlink(missing_ok=True)

    def _break_stale_lock(self, stale_after: float) -> None:
        try:
            age = time.time() - self._lock_path.stat().st_mtime
        except FileNotFoundError:
            return
        if age > stale_after:
            log.warning(
                "Breaking stale lock %s (%.0f s old, held by %s)", self._lock_path, age, _read_text(self._lock_path)
            )
            self._lock_path.unlink(missing_ok=True)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    data = _encode(doc).encode("utf-8")
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise TrackingError(f"cannot write {path}: {exc}") from exc


def _encode(doc: dict[str, Any]) -> str:
    """JSON with one record per line: readable and grep-able, and fast for 150,000 records.

    ``json.dumps(indent=...)`` falls back to the pure-Python encoder, 20× slower than this.
    """

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [f"  {dump(k)}: {dump(v)}," for k, v in doc.items() if k not in ("processed", "records")]
    for key in ("processed", "records"):
        if key in doc:
            records = [f"    {dump(k)}: {dump(v)}" for k, v in doc[key].items()]
            body = "{\n" + ",\n".join(records) + "\n  }" if records else "{}"
            lines.append(f"  {dump(key)}: {body},")
    return "{\n" + "\n".join(lines)[:-1] + "\n}\n"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
