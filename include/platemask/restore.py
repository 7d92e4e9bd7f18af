"""Spec rule 7: put originals back from their backups, selected from a day's tracking file.

The customer's ``restore_from_backup.py``, rebuilt: records are filtered by status and by car id
(the record's ``car_id``, the car the daily run grouped by, not the old script's digits of ``path``),
each backup path is computed from ``path``, and the backup is copied over
the original atomically, then checked byte for byte. Backups are only ever read. A photo that
staff re-uploaded since its backup is kept under ``.backup/.history/`` before being replaced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import socket
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from platemask.backup import history_path
from platemask.config import BACKUP_DIR, DETECT_DIR, Settings, day_timeout
from platemask.errors import MissingFileError, PlateMaskError
from platemask.images import output_source, sha256
from platemask.notify import MAX_MESSAGE_CHARS, fit_lines, post_once
from platemask.paths import parse_car_ids, photo_paths
from platemask.progress import Progress
from platemask.storage import Storage
from platemask.tracking import RESTORE_STATUSES, DayTracking, Record, site_now, stamp
from platemask.uploads import car_id_of

if TYPE_CHECKING:
    from platemask.notify import ChatworkClient

__all__ = [
    "RESTORE_STATUSES",
    "FileRestore",
    "RestoreReport",
    "RestoreRequest",
    "add_restore_command",
    "restore_and_report",
    "restore_day",
    "select_records",
]

log = logging.getLogger(__name__)

#: What happened to each selected file.
ACTIONS = ("restored", "would_restore", "unchanged", "missing_backup", "error")


@dataclass(frozen=True)
class RestoreRequest:
    """Which records to restore and how."""

    day: dt.date
    status: str
    car_ids: tuple[str, ...] = ()
    dry_run: bool = True
    remove_detect: bool = False

    def __post_init__(self) -> None:
        if self.status not in RESTORE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RESTORE_STATUSES)}, not {self.status!r}")


@dataclass(frozen=True)
class FileRestore:
    """The outcome for one selected file."""

    file_id: str
    car_id: str
    path: str
    action: str
    detail: str = ""


@dataclass
class RestoreReport:
    """Everything a restore did (or would do), for the log, XCom and Chatwork."""

    request: RestoreRequest
    files: list[FileRestore] = field(default_factory=list)
    problem: str = ""  # set when the tracking file itself could not be read
    chatwork: str = ""  # how posting the report went: sent, already sent, failed: ..., or "" (not posted)

    def counts(self) -> dict[str, int]:
        """Files per action, every action present."""
        counter = Counter(f.action for f in self.files)
        if self.problem:
            counter["error"] += 1
        return {action: counter.get(action, 0) for action in ACTIONS}

    def per_car(self) -> dict[str, dict[str, int]]:
        """Files per action for each car."""
        cars: dict[str, Counter[str]] = {}
        for item in self.files:
            cars.setdefault(item.car_id, Counter())[item.action] += 1
        return {car: dict(counter) for car, counter in sorted(cars.items())}

    def unmatched_cars(self) -> tuple[str, ...]:
        """Requested car ids with no photo in the selected status (nothing done for them)."""
        found = {f.car_id for f in self.files}
        return tuple(car for car in self.request.car_ids if car not in found)

    @property
    def failed(self) -> bool:
        """Whether anything could not be restored (missing backups included)."""
        counts = self.counts()
        return bool(counts["error"] or counts["missing_backup"])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary (the restore task's XCom)."""
        return {
            "date": self.request.day.isoformat(),
            "status": self.request.status,
            "car_ids": list(self.request.car_ids),
            "dry_run": self.request.dry_run,
            "counts": self.counts(),
            "cars": self.per_car(),
            "unmatched_cars": list(self.unmatched_cars()),
            "problems": [f"{f.path}: {f.detail}" for f in self.files if f.action in ("error", "missing_backup")]
            + ([self.problem] if self.problem else []),
            "chatwork": self.chatwork,
        }

    def text(self, max_chars: int = MAX_MESSAGE_CHARS) -> str:
        """The report as Chatwork-style text, one line per car; cars with problems come first when
        the lines must be cut to fit ``max_chars`` (Chatwork's limit, as for the daily summary)."""
        r, c = self.request, self.counts()
        mode = "dry run: nothing was changed" if r.dry_run else "originals restored"
        cars = ", ".join(r.car_ids) if r.car_ids else "all cars"
        lines = [
            "[info][title]♻️ バックアップから復元[/title]",
            f"📅 対象日: {r.day.isoformat()} (status={r.status}, {cars}, {mode})",
            f"✅ 復元: {c['restored']}件" if not r.dry_run else f"🔎 復元予定: {c['would_restore']}件",
            f"⏸️ 変更なし: {c['unchanged']}件",
            f"❓ バックアップなし: {c['missing_backup']}件",
            f"❌ エラー: {c['error']}件",
        ]
        if self.problem:
            lines.append(f"  {self.problem}")
        lines.append("")
        lines.append("📊 車両別結果:")
        problems, fine = [], []
        for car, counts in self.per_car().items():
            bad = counts.get("error") or counts.get("missing_backup")
            detail = ", ".join(f"{action} {n}" for action, n in counts.items())
            (problems if bad else fine).append(f"  {'⚠️' if bad else '✅'} {car}: {detail}")
        unmatched = [f"  ❔ no matching photos for car {car} (status={r.status})" for car in self.unmatched_cars()]
        return fit_lines(lines, [*problems, *unmatched, *fine], "[/info]", max_chars)


def select_records(processed: dict[str, Record], status: str, car_ids: Iterable[str] = ()) -> list[tuple[str, Record]]:
    """The records to restore: by status (``all`` for every one) and by car (:func:`car_id_of`).

    Every record in the status must name its car (both tracking schemas require ``car_id``): one
    that does not is a TrackingError, reported before anything is restored rather than guessed.
    """
    wanted = set(car_ids)
    in_status = [(key, r) for key, r in processed.items() if status == "all" or r.get("status") == status]
    cars = {key: car_id_of(record) for key, record in in_status}
    return sorted(
        ((key, record) for key, record in in_status if not wanted or cars[key] in wanted),
        key=lambda item: str(item[1].get("path", "")),
    )


def restore_day(
    request: RestoreRequest,
    tracking: DayTracking,
    *,
    store: Storage,
    backups: Storage,
    backup_dir: str = BACKUP_DIR,
    detect_dir: str = DETECT_DIR,
    workers: int = 8,
    progress_every: float = 5.0,
) -> RestoreReport:
    """Restore (or, in a dry run, list) the selected originals of one day from their backups."""
    report = RestoreReport(request)
    try:
        selected = select_records(tracking.view()["processed"], request.status, request.car_ids)
    except PlateMaskError as exc:
        report.problem = exc.describe()
        return report

    def restore(item: tuple[str, Record]) -> FileRestore:
        key, record = item
        return _restore_one(key, record, request, store, backups, backup_dir, detect_dir)

    progress = Progress(
        len(selected), "files restored" if not request.dry_run else "files checked", every=progress_every
    )
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="platemask-restore") as pool:
        futures = [pool.submit(restore, item) for item in selected]
        try:
            for future in futures:
                report.files.append(future.result())
                progress.step()
        finally:
            if len(report.files) < len(futures):  # interrupted (the task was killed): stop, keep what was done
                for future in futures:
                    future.cancel()
                wait(futures)
                report.files[:] = [f.result() for f in futures if not f.cancelled() and f.exception() is None]
            if not request.dry_run:
                _record_restores(tracking, report)
    log.info("Restore %s: %s", request.day, report.counts())
    return report


def _restore_one(
    key: str,
    record: Record,
    request: RestoreRequest,
    store: Storage,
    backups: Storage,
    backup_dir: str,
    detect_dir: str,
) -> FileRestore:
    path = str(record.get("path", ""))
    car_id = car_id_of(record)

    def result(action: str, detail: str = "") -> FileRestore:
        return FileRestore(key, car_id, path, action, detail)

    try:
        paths = photo_paths(path, backup_dir=backup_dir, detect_dir=detect_dir)
        try:
            backup = backups.read(paths.backup)
        except MissingFileError:
            return result("missing_backup", f"no backup at {paths.backup}")
        try:
            current = store.read(paths.original)
        except MissingFileError:
            current = None
        changed = current is None or sha256(current) != sha256(backup)
        if request.dry_run:
            return result("would_restore" if changed else "unchanged")
        if changed:
            if current is not None and output_source(current) != sha256(backup):
                # Neither the backup nor our banner version: a newer upload. Keep it before replacing.
                backups.create(history_path(paths, sha256(current)), current)
            store.write(paths.original, backup)
            if sha256(store.read(paths.original)) != sha256(backup):
                return result("error", "restored bytes differ from the backup")
        if request.remove_detect:
            store.delete(paths.detect)
        return result("restored" if changed else "unchanged")
    except PlateMaskError as exc:
        return result("error", exc.describe())
    except Exception as exc:  # one file's surprise must not stop the others or go unrecorded
        log.exception("Unexpected error restoring %s", path)
        return result("error", f"unexpected {type(exc).__name__}: {exc}")


def _record_restores(tracking: DayTracking, report: RestoreReport) -> None:
    """Rule 7 meets rule 5: restored records get a ``restored`` history entry and ``restored_at``.

    Once: a retried restore finds the photos it already put back unchanged, and adds nothing to
    records whose last entry says so.
    """
    touched = [f for f in report.files if f.action in ("restored", "unchanged")]
    if not touched:
        return
    at = stamp(site_now(tracking.timezone))
    with tracking.update() as doc:
        for item in touched:
            record = doc["processed"].get(item.file_id)
            if record is None:
                continue
            if item.action == "unchanged" and record["status_history"][-1]["status"] == "restored":
                continue
            record["status_history"].append({"status": "restored", "at": at})
            record["restored_at"] = at
            if report.request.remove_detect:
                record["detect_removed_at"] = at


def restore_and_report(
    request: RestoreRequest,
    tracking: DayTracking,
    *,
    settings: Settings,
    store: Storage,
    backups: Storage,
    client: ChatworkClient | None,
    run_id: str | None = None,
) -> RestoreReport:
    """Rule 7 end to end, for the restore DAG and ``platemask restore`` alike.

    A restore that changes photos claims the day first (:meth:`DayTracking.claim`): it never
    interleaves with a daily run of that day. ``run_id`` names this restore (a retried task has
    the same one), so it posts its report at most once.

    Restores (or lists) the originals, logs what was not restored and the requested cars that
    matched nothing, and posts the report to Chatwork when ``client`` is given and files were
    selected. The caller shows the report (task log or terminal) and decides the outcome.
    """
    run_id = run_id or f"restore {socket.gethostname()} pid {os.getpid()}"
    if not request.dry_run:
        tracking.claim("restore", run_id, stale_after=day_timeout().total_seconds())
    try:
        report = restore_day(
            request,
            tracking,
            store=store,
            backups=backups,
            backup_dir=settings.backup_dir_name,
            detect_dir=settings.detect_dir_name,
        )
    finally:
        if not request.dry_run:
            tracking.release(run_id)
    for line in report.as_dict()["problems"]:
        log.warning("Not restored: %s", line)
    for car_id in report.unmatched_cars():
        log.warning("No matching photos for car %s (status=%s) on %s", car_id, request.status, request.day)
    if client is not None and report.files:
        # Once per restore: a retried task does not post it again; a Chatwork failure is a warning.
        report.chatwork = post_once(
            tracking,
            lambda: client.post_message(report.text()),
            kind="restore",
            run_id=run_id,
            key=f"restore\n{run_id}",
            what=f"Restore report of {run_id}",
        )
    return report


def add_restore_command(commands: Any) -> None:
    """Register ``platemask restore``, the command-line twin of ``plate_masking_restore``."""
    parser = commands.add_parser("restore", help="put originals back from .backup/ (see plate_masking_restore)")
    parser.add_argument("--date", required=True, type=dt.date.fromisoformat, help="day of the tracking file")
    parser.add_argument("--status", required=True, choices=RESTORE_STATUSES, help="records to restore")
    parser.add_argument("--car-id", action="append", default=[], dest="car_ids", help="only this car (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="only report what would be restored")
    parser.add_argument("--remove-detect", action="store_true", help="also delete the .detect/ copies")
    parser.set_defaults(run=_restore_command)


def _restore_command(args: argparse.Namespace) -> int:
    from platemask.notify import client_from_settings
    from platemask.storage import open_storage

    logging.getLogger("platemask").setLevel(logging.INFO)
    settings = Settings.from_env()
    settings.require_storage()
    request = RestoreRequest(args.date, args.status, parse_car_ids(args.car_ids), args.dry_run, args.remove_detect)
    store, backups = open_storage(settings)
    tracking = DayTracking.for_settings(settings, args.date)
    client = client_from_settings(settings)
    report = restore_and_report(request, tracking, settings=settings, store=store, backups=backups, client=client)
    print(report.text())
    return 1 if report.failed else 0
