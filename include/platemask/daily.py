"""The daily run in three steps, each one task of ``plate_masking_daily``.

1. :func:`plan_day` turns the day's database rows into work: new, changed (re-uploaded) and
   unfinished photos, grouped per car, while finished ones are skipped (incremental runs).
2. :func:`process_cars` backs up, detects, masks and verifies the photos of a few cars (one by
   default) and records every state change in the car's tracking part.
3. :func:`finish_day` merges the parts into the day file, marks complete cars ``done`` and
   returns the summary that goes to Chatwork.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from platemask.backup import Provenance
from platemask.config import Settings
from platemask.detect import PlateDetector, get_detector
from platemask.errors import PlateMaskError, UnsafePathError
from platemask.masking import PersonsFixes
from platemask.notify import DaySummary, Quality, summarise_run
from platemask.paths import validate_car_id
from platemask.pipeline import PhotoOutcome, process_photos
from platemask.review import photos_to_review, write_review_page
from platemask.second_look import SecondLook, get_second_look
from platemask.storage import Storage
from platemask.tracking import (
    FINISHED,
    DayTracking,
    Record,
    apply_outcome,
    mark_cars_done,
    mark_incomplete,
    requeue,
    set_status,
    site_now,
    stamp,
)
from platemask.uploads import Photo, photo_from_row

__all__ = [
    "SAME_DAY",
    "CarResult",
    "DayPlan",
    "finish_day",
    "plan_day",
    "process_cars",
    "publish_review",
    "records_of_this_run",
    "take_same_day",
    "target_day",
]

log = logging.getLogger(__name__)

#: Day file key: the file ids processed by same-day runs (platemask.today) that no daily summary
#: has counted yet (``unreported``), and those the last daily run counted (``reported``).
SAME_DAY = "same_day"


def target_day(requested: str | None, logical_date: dt.datetime | None, timezone: str) -> dt.date:
    """The site-local day a run processes: the ``date`` param, else the logical date, else today."""
    if requested:
        try:
            return dt.date.fromisoformat(str(requested))
        except ValueError:
            raise ValueError(f"date must be YYYY-MM-DD, not {requested!r}") from None
    if logical_date is not None:
        return logical_date.astimezone(ZoneInfo(timezone)).date()
    return site_now(timezone).date()


@dataclass(frozen=True)
class DayPlan:
    """What a run will do: batches of car ids (one mapped task each) and the photo counts."""

    day: dt.date
    batches: list[list[str]]
    photos: int
    skipped: int
    refused: int = 0

    def outputs(self) -> dict[str, Any]:
        """The planning task's named outputs, constants of the run: the day and the counts.

        The batches (one list of car ids per car task, never photo lists) are its return value.
        """
        return {"day": self.day.isoformat(), "counts": self.counts()}

    def counts(self) -> dict[str, Any]:
        """The numbers the finishing task needs."""
        return {
            "date": self.day.isoformat(),
            "cars": sum(len(batch) for batch in self.batches),
            "photos": self.photos,
            "skipped": self.skipped,
            "refused": self.refused,
        }


def plan_day(
    rows: Iterable[Mapping[str, Any]],
    tracking: DayTracking,
    *,
    force: bool = False,
    cars_per_task: int = 1,
    max_tasks: int = 1024,
) -> DayPlan:
    """Decide which photos of the day need work and write one tracking part per car to do."""
    now = site_now(tracking.timezone)
    at = stamp(now)
    work: dict[str, dict[str, Record]] = {}
    skipped = refused = 0
    with tracking.update() as doc:  # merges the previous run's parts into the day file
        processed = doc["processed"]
        # Done by a same-day run and not reported yet: the daily summary counts them as processed.
        unreported = set(doc.get(SAME_DAY, {}).get("unreported", ()))
        for row in rows:
            photo, updated_at = photo_from_row(row), _iso(row.get("updated_at"))
            key = str(photo.file_id)
            record = processed.get(key)
            if record is not None and not force and record["status"] in FINISHED and not _changed(record, updated_at):
                skipped += key not in unreported
                continue
            record = requeue(record, photo, at)
            record["source_updated_at"] = updated_at
            processed[key] = record
            try:
                validate_car_id(photo.car_id)
            except UnsafePathError as exc:
                record["error"] = exc.describe()
                set_status(record, "error", at)
                refused += 1
                continue
            work.setdefault(photo.car_id, {})[key] = record
        doc["last_processed_time"] = now.isoformat()
    # Only now that the day file holds everything the old parts said may they go.
    tracking.clear_parts()
    parts = {car_id: {"date": tracking.day.isoformat(), "car_id": car_id, "records": r} for car_id, r in work.items()}
    with ThreadPoolExecutor(max_workers=8) as pool:  # thousands of small fsync'd files: overlap them
        list(pool.map(tracking.write_part, parts, parts.values()))
    batches = _batches(sorted(work), cars_per_task, max_tasks)
    photos = sum(len(r) for r in work.values())
    log.info("%s: %d photos of %d cars to process, %d skipped", tracking.day, photos, len(work), skipped)
    return DayPlan(tracking.day, batches, photos, skipped, refused)


@dataclass
class CarResult:
    """One car's photos in this task: counts for the log, XCom and the retry decision."""

    car_id: str
    processed: int = 0
    verified: int = 0
    detections: int = 0
    errors: list[str] = field(default_factory=list)
    transient: bool = False  # some error may pass: the task is retried
    infrastructure: bool = False  # some error is the platform's (model, memory, settings, storage), not a photo's

    def as_xcom(self) -> dict[str, Any]:
        """A small JSON-able dict."""
        return {
            "car_id": self.car_id,
            "processed": self.processed,
            "verified": self.verified,
            "detections": self.detections,
            "errors": len(self.errors),
        }


def process_cars(
    car_ids: Sequence[str],
    tracking: DayTracking,
    *,
    settings: Settings,
    store: Storage,
    backups: Storage | None = None,
    detector: PlateDetector | None = None,
    second_look: SecondLook | None = None,
) -> list[CarResult]:
    """Process the unfinished photos of the given cars, updating each car's tracking part."""
    detector = detector or get_detector(settings.detect)
    second_look = second_look or get_second_look(settings.second_look)
    parts = {car_id: _load_part(tracking, car_id) for car_id in car_ids}
    results = {car_id: CarResult(car_id) for car_id in car_ids}
    todo: list[Photo] = []
    provenance: dict[int, Provenance] = {}
    fixes: dict[int, PersonsFixes] = {}
    for part in parts.values():
        for record in part["records"].values():
            if record["status"] not in FINISHED:
                todo.append(photo_from_row(record))
                provenance[record["file_id"]] = provenance_of(record, tracking.day, settings)
                if (fixed := PersonsFixes.of(record)) is not None:
                    fixes[record["file_id"]] = fixed
    if todo:
        detector.load_async()  # load the models while the first photos are read and backed up
        if second_look.enabled:
            second_look.load_async()

    def started(photo: Photo) -> None:
        part = parts[photo.car_id]
        set_status(part["records"][str(photo.file_id)], "processing", stamp(site_now(tracking.timezone)))
        tracking.write_part(photo.car_id, part)

    outcomes = process_photos(
        todo,
        settings=settings,
        store=store,
        backups=backups or store,
        detector=detector,
        second_look=second_look,
        provenance=provenance,
        fixes=fixes,
        on_start=started,
    )
    for outcome in outcomes:
        _log_photo(outcome)
        part = parts[outcome.photo.car_id]
        apply_outcome(part["records"][str(outcome.photo.file_id)], outcome, stamp(site_now(tracking.timezone)))
        tracking.write_part(outcome.photo.car_id, part)
        _count(results[outcome.photo.car_id], outcome)
    return list(results.values())


def provenance_of(record: Record, day: dt.date, settings: Settings) -> Provenance:
    """What a photo's record tells its backup step: the outputs we wrote, and whether a cut-over applies."""
    hashes = record.get("sha256", {})
    uploaded_on = _site_date(record.get("source_updated_at"), settings.timezone) or day
    return Provenance(
        known_outputs=frozenset(h for k, h in hashes.items() if k != "backup"),
        # Only a verified processing records hashes: without them platemask never finished this photo.
        backup_is_original=settings.cutover.backup_is_original(uploaded_on, verified_before=bool(hashes)),
    )


def _site_date(iso: str | None, timezone: str) -> dt.date | None:
    """The site-local date of a row's ``updated_at`` (naive values are site-local already)."""
    if not iso:
        return None
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    return (moment.astimezone(ZoneInfo(timezone)) if moment.tzinfo else moment).date()


def finish_day(tracking: DayTracking, *, skipped: int, refused: int = 0, run_id: str | None = None) -> DaySummary:
    """Merge the parts, mark complete cars ``done`` (rule 5) and return this run's summary (rule 6).

    The summary also counts the photos that same-day runs processed since the last daily run
    (:data:`SAME_DAY`): the daily run's one message tells the whole day.
    """
    at = stamp(site_now(tracking.timezone))
    with tracking.update() as doc:
        processed = doc["processed"]
        run_keys, run_records = records_of_this_run(tracking, doc, at)
        mine = set(run_keys)
        run_records += [r for r in take_same_day(doc, run_id) if str(r["file_id"]) not in mine]
        # Every car of the day, not only this run's: a run that died after its car tasks and
        # before this step left verified cars that no later run would process again.
        mark_cars_done(processed.values(), _cars_with_verified(processed.values()), at)
        doc["quality"] = asdict(quality_of(processed.values()))  # the whole day's figures
    return summarise_run(tracking.day, run_records, skipped=skipped, refused=refused, quality=quality_of(run_records))


def records_of_this_run(tracking: DayTracking, doc: dict[str, Any], at: str) -> tuple[list[str], list[Record]]:
    """The file ids and records this run's car tasks worked on (their parts, merged into ``doc`` by
    ``tracking.update()``), a photo still unfinished marked as such."""
    keys = [key for part in tracking.parts() for key in part.get("records", {})]
    records = [doc["processed"][key] for key in keys]
    mark_incomplete(records, at)
    return keys, records


def take_same_day(doc: dict[str, Any], run_id: str | None) -> list[Record]:
    """The records of same-day runs that the daily run ``run_id`` reports, now marked as reported.

    A retried finishing task of the same run gets the same records again, so its summary is the
    same text (sent once, platemask.notify.post_once).
    """
    state = doc.get(SAME_DAY)
    if not state:
        return []
    again = state.get("reported", []) if state.get("reported_by") == run_id else []
    keys = list(dict.fromkeys([*again, *state.get("unreported", [])]))
    doc[SAME_DAY] = {"unreported": [], "reported_by": run_id, "reported": keys}
    return [doc["processed"][key] for key in keys if key in doc["processed"]]


def quality_of(records: Iterable[Record]) -> Quality:
    """The quality figures of the verified (or done) records among ``records``."""
    finished = [r for r in records if r["status"] in FINISHED]
    millis = sorted(int(r.get("duration_ms", 0)) for r in finished)
    return Quality(
        photos=len(finished),
        to_review=sum(bool(r.get("review")) for r in finished),
        plates=sum(int(r.get("detections", 0)) for r in finished),
        without_plate=sum(not r.get("detections") for r in finished),
        p95_ms=millis[min(len(millis) - 1, math.ceil(0.95 * len(millis)) - 1)] if millis else 0,
    )


def publish_review(tracking: DayTracking, *, settings: Settings, store: Storage, backups: Storage) -> str | None:
    """Write the day's page of photos to check (platemask.review); a failure is logged, never fatal.

    The photos are masked whatever happens here: the page helps a person check them, so a page
    that cannot be written must not turn a processed day red.
    """
    try:
        records = photos_to_review(tracking.load()["processed"].values())
        return write_review_page(
            tracking.day, records, settings=settings, store=store, backups=backups, logs=tracking.store
        )
    except PlateMaskError as exc:
        log.error("Review page for %s NOT written: %s", tracking.day, exc.describe())
    except Exception:  # a bug in the page must not fail a day whose photos are done
        log.exception("Review page for %s NOT written", tracking.day)
    return None


def _cars_with_verified(records: Iterable[Record]) -> set[str]:
    return {r["car_id"] for r in records if r["status"] == "verified"}


def _load_part(tracking: DayTracking, car_id: str) -> dict[str, Any]:
    part = tracking.read_part(car_id)
    if part is not None:
        return part
    # No part (a later plan replaced them): rebuild it from the day file's unfinished records.
    records = {k: r for k, r in tracking.view()["processed"].items() if r["car_id"] == car_id}
    part = {"date": tracking.day.isoformat(), "car_id": car_id, "records": records}
    tracking.write_part(car_id, part)
    return part


def _log_photo(outcome: PhotoOutcome) -> None:
    photo = outcome.photo
    if outcome.ok:
        log.info("%s %s: verified, %d plates, %d ms", photo.file_id, photo.path, outcome.detections, outcome.millis)
    else:
        assert outcome.error is not None
        log.warning("%s %s: error (%s), %d ms", photo.file_id, photo.path, outcome.error.describe(), outcome.millis)


def _count(result: CarResult, outcome: PhotoOutcome) -> None:
    result.processed += 1
    if outcome.ok:
        result.verified += 1
        result.detections += outcome.detections
    else:
        assert isinstance(outcome.error, PlateMaskError)
        result.errors.append(f"{outcome.photo.path}: {outcome.error.describe()}")
        result.transient |= outcome.error.transient
        result.infrastructure |= outcome.error.infrastructure


def _changed(record: Record, updated_at: str | None) -> bool:
    seen = record.get("source_updated_at")
    return bool(updated_at and seen and updated_at > seen)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _batches(car_ids: list[str], cars_per_task: int, max_tasks: int) -> list[list[str]]:
    """Group cars so that there are at most ``max_tasks`` mapped tasks (Airflow's max_map_length)."""
    size = max(cars_per_task, math.ceil(len(car_ids) / max_tasks)) if car_ids else 1
    return [car_ids[i : i + size] for i in range(0, len(car_ids), size)]
