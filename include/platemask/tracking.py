"""Spec rule 5: the daily tracking file, its states, and safe updates from many hosts.

``{LOG_DIR}/tracking/processed_YYYYMMDD.json`` keeps exactly the original schema (new fields are
only added). Car tasks run in parallel, possibly on hosts that share nothing but storage, so
they never write the day file: each writes its own part, ``processed_YYYYMMDD.parts/<car>.json``,
and the day file is rewritten only under a lock file, by the tasks that plan and finish the day
(and by restores). Records only ever grow their ``status_history``; when a part and the day
file disagree, the longer history is the newer record. Every write is temp file + rename, so
each file is valid JSON at every instant.

An old day's file may be kept gzipped, ``processed_YYYYMMDD.json.gz`` (platemask.retention): it
reads like the plain file, and the first update of that day writes the plain file back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import secrets
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypedDict
from zoneinfo import ZoneInfo

from platemask.config import DEFAULT_TIMEZONE
from platemask.errors import DayBusyError, MissingFileError, StorageError, TrackingError
from platemask.storage import Storage, open_log_storage

if TYPE_CHECKING:  # annotations only: the restore form imports this module at DAG parse time
    from platemask.config import Settings
    from platemask.pipeline import PhotoOutcome
    from platemask.uploads import Photo

__all__ = [
    "FINISHED",
    "INCOMPLETE",
    "RESTORE_STATUSES",
    "STATUSES",
    "TRANSITIONS",
    "DayTracking",
    "Record",
    "ReviewMark",
    "StatusChange",
    "apply_outcome",
    "mark_cars_done",
    "mark_incomplete",
    "merge_record",
    "new_record",
    "requeue",
    "set_status",
    "site_now",
    "stamp",
]

log = logging.getLogger(__name__)


class StatusChange(TypedDict):
    """One entry of ``status_history``: a state, or ``restored``, and when (``stamp`` format)."""

    status: str
    at: str


class ReviewMark(TypedDict):
    """What the review page outlines on a photo to check (platemask.review)."""

    box: list[int]  # x1, y1, x2, y2 in photo pixels
    conf: float
    source: str  # model, closer_look or second_look
    masked: bool


class _RecordFields(TypedDict):
    """The original script's required fields."""

    file_id: int
    car_id: str
    path: str  # /upfile/..., relative to S3_MOUNT
    branch_no: int | None
    is_first: bool  # rule 0 (platemask.uploads): branch_no == 1
    status: str  # one of STATUSES, moved by set_status only
    status_history: list[StatusChange]


class Record(_RecordFields, total=False):
    """One photo of the day file, ``processed[<file_id>]`` (rule 5; tests/schemas/tracking.schema.json).

    The original schema's optional fields, then the ones platemask adds (never a changed meaning).
    """

    detections: int
    output_paths: dict[str, str]  # detect, and original for a first photo
    completed_at: str
    error: str  # "<code>: <reason>"
    sha256: dict[str, str]  # backup, detect, original
    source_updated_at: str | None
    duration_ms: int
    backup_history: list[str]
    restored_at: str
    detect_removed_at: str
    review: list[str]  # platemask.review.REASONS codes
    review_marks: list[ReviewMark]
    masks: list[dict[str, Any]]  # every mask of the published copy (platemask.masking.mask_entry)
    # A person's fixes in the Airflow UI (platemask.corrections), kept while the original is the same.
    revision: int  # counts saved fixes: a save made on an older revision is refused
    fixed_for: str  # sha256 of the original the fixes were made on
    manual_masks: list[dict[str, Any]]  # masks a person drew: box (corners), by, at
    removed_masks: list[dict[str, Any]]  # masks a person removed: box, source, conf, by, at
    review_resolved: dict[str, Any]  # by, at, action (fixed or approved)


STATUSES = ("pending", "processing", "verified", "done", "error")
#: States whose outputs are verified: not processed again unless the photo changed or force is asked.
FINISHED = ("verified", "done")
#: What a restore selects records by (spec rule 7): one status, or every record.
RESTORE_STATUSES = ("done", "error", "verified", "all")
#: A lock break takes milliseconds: a break token older than this belongs to a dead waiter.
_BREAK_TOKEN_STALE_S = 60.0
#: Kinds of claimant whose DAG runs one run at a time: a claim of the same kind is a run that is over.
_RUN_KINDS = ("daily", "today")
#: How often a claimant that waits looks at the day's claim again.
_CLAIM_POLL_S = 5.0


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


def requeue(record: Record | None, photo: Photo, at: str) -> Record:
    """A photo planned for processing: a new ``pending`` record, or its record moved back to ``pending``.

    The database is the truth for where the photo is and whether it is first, so those fields
    follow the row; the history keeps every earlier state.
    """
    if record is None:
        return new_record(photo, at)
    record.update(path=photo.path, branch_no=photo.branch_no, is_first=photo.is_first, car_id=photo.car_id)
    set_status(record, "pending", at)
    return record


#: Why a record that a run planned is still ``pending`` or ``processing`` when the run finishes.
INCOMPLETE = "incomplete: the car task ended before this photo was processed"


def mark_incomplete(records: Iterable[Record], at: str) -> int:
    """Records whose car task died (killed, out of memory) or never ran become ``error``; the next
    run retries them. Returns how many."""
    marked = 0
    for record in records:
        if record["status"] in ("pending", "processing"):
            record["error"] = INCOMPLETE
            set_status(record, "error", at)
            marked += 1
    return marked


#: Rule 5's state machine: the states a record may move to from each state.
TRANSITIONS: dict[str, frozenset[str]] = {
    # Planned again (an unfinished photo of an earlier run), started, or refused at planning.
    "pending": frozenset({"pending", "processing", "error"}),
    # Started again (a retried task), finished either way, planned again after a crash.
    "processing": frozenset({"processing", "verified", "error", "pending"}),
    "verified": frozenset({"done", "pending"}),  # the car complete; or reprocessed (changed, force)
    "done": frozenset({"pending"}),  # reprocessed only: changed upload or force
    "error": frozenset({"pending", "processing"}),  # every later run retries it, as does a retried task
}


def set_status(record: Record, status: str, at: str) -> None:
    """Move a record to ``status``, keeping the history (rule 5); any other move is a bug, refused."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    current = record.get("status")
    if current is not None and status not in TRANSITIONS[current]:
        raise ValueError(f"record {record.get('file_id')}: {current} → {status} is not a rule 5 transition")
    record["status"] = status
    record["status_history"].append({"status": status, "at": at})


def apply_outcome(record: Record, outcome: PhotoOutcome, at: str) -> None:
    """Record a processed photo as ``verified`` or ``error`` with what was written."""
    record["duration_ms"] = outcome.millis
    if outcome.sha256:
        record["sha256"] = dict(outcome.sha256)
    if outcome.backup_history:
        record.setdefault("backup_history", []).append(outcome.backup_history)
    # Photos to check (platemask.review): this processing's reasons and the marks their page
    # outlines; an earlier processing's never stay behind (a failed photo has none).
    for key, value in (("review", outcome.review), ("review_marks", outcome.review_marks)):
        if value and outcome.ok:
            record[key] = list(value)
        else:
            record.pop(key, None)
    backup = outcome.sha256.get("backup")  # None when the photo failed before it was backed up
    if record.get("fixed_for") and backup and backup != record["fixed_for"]:
        # A new original (staff uploaded the photo again): a person's fixes were about the old one.
        for key in ("fixed_for", "manual_masks", "removed_masks", "review_resolved"):
            record.pop(key, None)
    if outcome.ok:
        record["detections"] = outcome.detections
        record["masks"] = list(outcome.masks)
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
    """The tracking file of one day and the per-car parts written while the day runs.

    ``store`` is the ``LOG_DIR`` storage: a folder shared by every worker of the day, or S3.
    """

    def __init__(self, store: Storage, day: dt.date, timezone: str = DEFAULT_TIMEZONE) -> None:
        self.store = store
        self.day = day
        self.timezone = timezone
        self.path = f"/tracking/processed_{day:%Y%m%d}.json"
        self.gz_path = self.path + ".gz"  # the same bytes gzipped, for an old day (platemask.retention)
        self.parts_dir = f"/tracking/processed_{day:%Y%m%d}.parts"
        self._lock_path = self.path + ".lock"
        self._claim_path = self.path + ".claim"
        # The same-day runs' watermark (platemask.today): a small file of its own, so that a run
        # that finds nothing new reads neither the day file nor writes it.
        self.today_path = f"/tracking/processed_{day:%Y%m%d}.today.json"

    def __repr__(self) -> str:
        return f"DayTracking({self.store.describe(self.path)!r})"

    @classmethod
    def for_settings(cls, settings: Settings, day: dt.date, s3_client: Callable[[], Any] | None = None) -> DayTracking:
        """The day's tracking in ``LOG_DIR`` (a folder, or ``s3://bucket/prefix``)."""
        return cls(open_log_storage(settings, s3_client), day, settings.timezone)

    def load(self) -> dict[str, Any]:
        """The day file (plain, else gzipped), or an empty one; an unreadable file is an error, never overwritten."""
        try:
            where, text = self._read_text()
        except MissingFileError:
            return {
                "date": self.day.isoformat(),
                "created_at": site_now(self.timezone).isoformat(),
                "last_processed_time": None,
                "processed": {},
            }
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrackingError(f"{where} is not valid JSON ({exc}); fix or move it away") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("processed"), dict):
            raise TrackingError(f"{where} has no 'processed' object; fix or move it away")
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
            self._write(self.path, doc)
            # The plain file is the day's file again; a gzipped copy left beside it would be stale.
            self._delete(self.gz_path)

    def compress(self) -> bool:
        """Replace the day file by its gzipped copy (platemask.retention); False when it has no plain file.

        Under the day's lock, so no update runs meanwhile. The plain file goes only once the copy
        was written and read back to the same bytes: any failure leaves it in place.
        """
        with self._locked():
            try:
                data = self.store.read(self.path)
            except MissingFileError:
                return False
            except StorageError as exc:
                raise TrackingError(f"cannot read {self.store.describe(self.path)}: {exc}") from exc
            self._put(self.gz_path, gzip.compress(data, mtime=0))  # mtime 0: the same day, the same bytes
            try:
                same = gzip.decompress(self.store.read(self.gz_path)) == data
            except (OSError, EOFError, zlib.error) as exc:  # storage errors are OSErrors, as is BadGzipFile
                raise TrackingError(f"cannot read back {self.store.describe(self.gz_path)}: {exc}") from exc
            if not same:
                raise TrackingError(f"{self.store.describe(self.gz_path)} read back differs; the plain file is kept")
            self._delete(self.path)
        return True

    def remove(self) -> None:
        """Delete the day's file in either form and its parts (platemask.retention)."""
        with self._locked():
            for name in self._part_names():
                self._delete(f"{self.parts_dir}/{name}")
            self._delete(self.today_path)
            self._delete(self.path)
            self._delete(self.gz_path)

    def _read_text(self) -> tuple[str, str]:
        """Where the day file was read and its text; :class:`MissingFileError` when neither form exists.

        The plain file comes first: after a crash between writing it back and removing the
        gzipped copy, both exist and the plain one is newer.
        """
        for path in (self.path, self.gz_path):
            where = self.store.describe(path)
            try:
                data = self.store.read(path)
            except MissingFileError:
                continue
            except StorageError as exc:
                raise TrackingError(f"cannot read {where}: {exc}") from exc
            if path == self.gz_path:
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError, zlib.error) as exc:
                    raise TrackingError(f"{where} is not valid gzip ({exc}); fix or move it away") from None
            return where, data.decode("utf-8")
        raise MissingFileError(f"{self.path} does not exist")

    def _delete(self, path: str) -> None:
        try:
            self.store.delete(path)
        except StorageError as exc:
            raise TrackingError(f"cannot delete {self.store.describe(path)}: {exc}") from exc

    def read_part(self, car_id: str) -> dict[str, Any] | None:
        """A car's part, or None when it has none."""
        try:
            return json.loads(self.store.read(f"{self.parts_dir}/{car_id}.json").decode("utf-8"))
        except MissingFileError:
            return None
        except (StorageError, json.JSONDecodeError) as exc:
            raise TrackingError(f"cannot read the tracking part of car {car_id}: {exc}") from exc

    def write_part(self, car_id: str, part: dict[str, Any]) -> None:
        """Replace a car's part atomically (only that car's task writes it)."""
        self._write(f"{self.parts_dir}/{car_id}.json", part)

    def parts(self) -> Iterator[dict[str, Any]]:
        """Every part currently stored."""
        for name in self._part_names():
            part = self.read_part(name.removesuffix(".json"))
            if part is not None:
                yield part

    def clear_parts(self) -> None:
        """Remove all parts (after they were merged into the day file)."""
        for name in self._part_names():
            self.store.delete(f"{self.parts_dir}/{name}")

    def _part_names(self) -> list[str]:
        return [name for name in self.store.list(self.parts_dir) if name.endswith(".json")]

    def _merge_parts(self, doc: dict[str, Any]) -> None:
        processed = doc["processed"]
        for part in self.parts():
            for key, record in part.get("records", {}).items():
                processed[key] = merge_record(processed.get(key), record)

    def _write(self, path: str, doc: dict[str, Any]) -> None:
        self._put(path, _encode(doc).encode("utf-8"))

    def _put(self, path: str, data: bytes) -> None:
        try:
            self.store.write(path, data)
        except StorageError as exc:
            raise TrackingError(f"cannot write {self.store.describe(path)}: {exc}") from exc

    def read_today_mark(self) -> dict[str, Any]:
        """The same-day runs' watermark (platemask.today), or an empty dict before the first one."""
        try:
            return json.loads(self.store.read(self.today_path))
        except MissingFileError:
            return {}
        except (StorageError, json.JSONDecodeError) as exc:
            raise TrackingError(f"cannot read {self.store.describe(self.today_path)}: {exc}") from exc

    def write_today_mark(self, mark: dict[str, Any]) -> None:
        """Replace the same-day runs' watermark atomically."""
        self._write(self.today_path, mark)

    def claim(self, kind: str, run_id: str, *, stale_after: float, wait: float = 0.0) -> None:
        """Claim the day for a daily run, a same-day run or a restore, which must not interleave: a
        restore would put back originals under a car task that is writing its outputs, and two runs
        would process the same car at once.

        The claim is a file of its own (``.claim``), held from a run's planning to its finishing,
        or for a whole restore. A retry of the same run takes it again; a run takes over an earlier
        run's claim of its own kind (``max_active_runs=1``: that run is over), and anything takes
        over a claim older than ``stale_after`` seconds (its run timed out). Any other holder is a
        :class:`DayBusyError` that names it, raised once ``wait`` seconds have passed: it passes,
        so it is retried (or, for a same-day run, skipped).
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._claim_once(kind, run_id, stale_after=stale_after)
            except DayBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(_CLAIM_POLL_S, max(0.0, deadline - time.monotonic())))

    def _claim_once(self, kind: str, run_id: str, *, stale_after: float) -> None:
        mine = json.dumps({"kind": kind, "run_id": run_id, "host": socket.gethostname()})
        while not self.store.create(self._claim_path, mine.encode()):
            held = self.claim_holder()
            if held.get("run_id") == run_id:
                return
            age = self.store.age(self._claim_path) or 0.0
            if not (kind == held.get("kind") in _RUN_KINDS or age > stale_after):
                raise DayBusyError(
                    f"{self.day}: a {held.get('kind', '?')} of this day is running ({held.get('run_id', '?')}, "
                    f"for {age / 60:.0f} min); this {kind} waits until it ends"
                )
            log.warning("%s: taking over the claim of %s (%.0f s old)", self.day, held, age)
            self.store.delete(self._claim_path)

    def release(self, run_id: str) -> None:
        """Give up the day's claim, if ``run_id`` holds it."""
        if self.claim_holder().get("run_id") == run_id:
            self.store.delete(self._claim_path)

    def claim_holder(self) -> dict[str, Any]:
        """Who claims the day (``kind``, ``run_id``, ``host``), or an empty dict."""
        try:
            return json.loads(self.store.read(self._claim_path))
        except MissingFileError:
            return {}
        except (StorageError, json.JSONDecodeError) as exc:
            raise TrackingError(f"cannot read {self.store.describe(self._claim_path)}: {exc}") from exc

    @contextlib.contextmanager
    def _locked(self, timeout: float = 300.0, stale_after: float = 900.0) -> Iterator[None]:
        # "Create if absent" is atomic on every storage we support (O_EXCL/link on a shared
        # folder, If-None-Match on S3), unlike flock on NFS; a dead holder shows by the lock's age.
        owner = f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(4)}"
        deadline = time.monotonic() + timeout
        while not self.store.create(self._lock_path, owner.encode()):
            self._break_stale_lock(stale_after)
            if time.monotonic() > deadline:
                where = self.store.describe(self._lock_path)
                error = TrackingError(f"{where} is held by {self._holder() or 'someone'}")
                error.transient = True
                raise error
            time.sleep(0.2)
        try:
            yield
        finally:
            if self._holder() == owner:
                self.store.delete(self._lock_path)

    def _holder(self) -> str:
        try:
            return self.store.read(self._lock_path).decode("utf-8", "replace")
        except (MissingFileError, StorageError):
            return ""

    def _break_stale_lock(self, stale_after: float) -> None:
        """Remove the lock if its holder is dead, as a compare-and-swap on the holder.

        Dead means: a process of this host that no longer runs (a task killed while it held the
        lock must not block the day), or, from another host, a lock older than ``stale_after``.

        Two waiters may both see the same stale lock. Deleting it straight away would let the
        slower one delete the lock the faster one has just taken, and both would "hold" it. So
        a break is claimed first by creating a token named after the stale holder (only one
        waiter can create it), and the lock is removed only if, read again under the token, it
        still has that holder and is still stale.
        """
        age = self.store.age(self._lock_path)
        holder = self._holder()
        if not holder or not _holder_is_dead(holder, age, stale_after):
            return
        token = f"{self._lock_path}.break-{hashlib.sha256(holder.encode()).hexdigest()[:16]}"
        if not self.store.create(token, holder.encode()):
            if (self.store.age(token) or 0.0) > _BREAK_TOKEN_STALE_S:  # a breaker died holding it
                self.store.delete(token)
            return
        try:
            age = self.store.age(self._lock_path)
            if self._holder() == holder and _holder_is_dead(holder, age, stale_after):
                log.warning("Breaking stale lock %s (%.0f s old, held by %s)", self._lock_path, age, holder)
                self.store.delete(self._lock_path)
        finally:
            self.store.delete(token)


def _holder_is_dead(holder: str, age: float | None, stale_after: float) -> bool:
    """Whether a lock of this ``age`` (None: there is none) may be broken: stale, or its process ended."""
    return age is not None and (age > stale_after or _holder_is_gone(holder))


def _holder_is_gone(holder: str) -> bool:
    """Whether the lock's holder (``"<host> pid <pid> <token>"``) was a process of this host that has ended."""
    parts = holder.split()
    if len(parts) < 3 or parts[1] != "pid" or not parts[2].isdigit() or parts[0] != socket.gethostname():
        return False
    pid = int(parts[2])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:  # a killed process waits as a zombie until its parent collects it: it is gone all the same
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


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
