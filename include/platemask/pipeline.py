"""One photo from original to verified outputs (spec rules 1-4), pipelined across photos.

Reading, backing up and decoding the next photos runs in worker threads while the model looks
at the current one, and encoding/writing runs behind it; OpenCV and the model release the GIL,
so storage latency and CPU work overlap instead of adding up.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from platemask.backup import CleanOriginal, Provenance, prepare_original
from platemask.config import Settings
from platemask.detect import Detection, PlateDetector
from platemask.errors import InternalError, PhotoChangedError, PlateMaskError, ResourceError
from platemask.images import decode, encode_jpeg, output_source, sha256
from platemask.masking import PersonsFixes, find_masks, mask_entry
from platemask.paths import PhotoPaths, photo_paths
from platemask.render import render_outputs
from platemask.review import review_marks
from platemask.second_look import SecondLook
from platemask.storage import Storage
from platemask.uploads import Photo
from platemask.verify import verify_output

__all__ = ["PhotoOutcome", "process_photos", "write_verified"]

log = logging.getLogger(__name__)


@dataclass
class PhotoOutcome:
    """What happened to one photo; ``error`` is None when its outputs are verified."""

    photo: Photo
    detections: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    backup_history: str | None = None
    error: PlateMaskError | None = None
    millis: int = 0
    review: list[str] = field(default_factory=list)  # reason codes (platemask.review.REASONS)
    review_marks: list[dict[str, object]] = field(default_factory=list)  # what to outline, when listed
    masks: list[dict[str, object]] = field(default_factory=list)  # every mask drawn (platemask.masking.mask_entry)

    @property
    def ok(self) -> bool:
        """Whether the photo reached ``verified``."""
        return self.error is None


@dataclass
class _Prepared:
    photo: Photo
    paths: PhotoPaths
    clean: CleanOriginal
    image: np.ndarray
    work: float  # seconds spent on this photo so far, waits in the pipeline excluded


def process_photos(
    photos: Iterable[Photo],
    *,
    settings: Settings,
    store: Storage,
    backups: Storage,
    detector: PlateDetector,
    second_look: SecondLook | None = None,
    provenance: Mapping[int, Provenance] | None = None,
    fixes: Mapping[int, PersonsFixes] | None = None,
    prefetch: int = 3,
    on_start: Callable[[Photo], None] | None = None,
) -> Iterator[PhotoOutcome]:
    """Process photos in order, yielding each outcome as soon as its outputs are verified.

    ``second_look`` (see :mod:`platemask.second_look`) looks again at what the plates leave
    visible; without it only the model's plates are masked.
    """
    provenance = provenance or {}
    fixes = fixes or {}
    queue = iter(photos)
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="platemask-io")

    def submit_next(loading: deque[Future[_Prepared | PhotoOutcome]]) -> None:
        photo = next(queue, None)
        if photo is not None:
            if on_start:
                on_start(photo)
            loading.append(
                pool.submit(_prepare, photo, settings, store, backups, provenance.get(photo.file_id, Provenance()))
            )

    finished = False
    try:
        loading: deque[Future[_Prepared | PhotoOutcome]] = deque()
        finishing: deque[Future[PhotoOutcome]] = deque()
        for _ in range(prefetch):
            submit_next(loading)
        while loading:
            prepared = loading.popleft().result()
            submit_next(loading)
            if isinstance(prepared, PhotoOutcome):
                yield prepared
                continue
            started = time.perf_counter()
            try:
                found = _find_plates(prepared, detector, second_look, settings, fixes.get(prepared.photo.file_id))
            except PlateMaskError as exc:
                yield _failed(prepared.photo, exc, started, prepared.work)
                continue
            except MemoryError as exc:
                yield _failed(prepared.photo, _unexpected(exc), started, prepared.work)
                continue
            prepared.work += time.perf_counter() - started
            finishing.append(pool.submit(_finish, prepared, found, settings, store))
            while len(finishing) > 1 or (finishing and finishing[0].done()):
                yield finishing.popleft().result()
        while finishing:
            yield finishing.popleft().result()
        finished = True
    finally:
        # Interrupted (the task's execution_timeout, a kill): never wait for a read that may hang
        # forever on stalled storage, or the task could not end and be retried.
        pool.shutdown(wait=finished, cancel_futures=True)


def _prepare(
    photo: Photo, settings: Settings, store: Storage, backups: Storage, provenance: Provenance
) -> _Prepared | PhotoOutcome:
    started = time.perf_counter()
    try:
        paths = photo_paths(photo.path, backup_dir=settings.backup_dir_name, detect_dir=settings.detect_dir_name)
        clean = prepare_original(
            paths,
            store,
            backups,
            settings.limits,
            known_outputs=provenance.known_outputs,
            backup_is_original=provenance.backup_is_original,
        )
        image = decode(clean.data, settings.limits)
    except PlateMaskError as exc:
        return _failed(photo, exc, started)
    except Exception as exc:  # one photo must never take the car down with it
        log.exception("Unexpected error preparing %s", photo.path)
        return _failed(photo, _unexpected(exc), started)
    return _Prepared(photo, paths, clean, image, time.perf_counter() - started)


@dataclass(frozen=True)
class _Found:
    plates: list[Detection]  # everything to mask
    review: list[str]
    marks: list[dict[str, object]]


def _find_plates(
    prepared: _Prepared,
    detector: PlateDetector,
    second_look: SecondLook | None,
    settings: Settings,
    fixes: PersonsFixes | None,
) -> _Found:
    """The photo's masks (platemask.masking), a person's fixes kept, and what to outline when a
    person should check it."""
    found = find_masks(
        prepared.image,
        detector,
        second_look,
        padding=settings.render.padding,
        checks=settings.checks,
        first=prepared.photo.is_first,
        review_conf=settings.second_look.review_conf,
    )
    plates = found.plates
    if fixes is not None and fixes.backup == prepared.clean.sha256:  # made on this very original
        plates = fixes.apply(plates)
    marks = review_marks(plates, found.unmasked) if found.review else []
    return _Found(plates, found.review, marks)


def _finish(prepared: _Prepared, found: _Found, settings: Settings, store: Storage) -> PhotoOutcome:
    started = time.perf_counter()
    photo, paths, clean = prepared.photo, prepared.paths, prepared.clean
    detections = found.plates
    outcome = PhotoOutcome(
        photo,
        detections=len(detections),
        masks=[mask_entry(d) for d in detections],
        backup_history=clean.archived_backup,
        review=found.review,
        review_marks=found.marks,
    )
    outcome.sha256["backup"] = clean.sha256
    try:
        masked, banner_only = render_outputs(prepared.image, detections, first=photo.is_first, options=settings.render)
        size = (prepared.image.shape[1], prepared.image.shape[0])
        # The .detect/ copy first: the original is only overwritten once its masked twin is safe.
        outcome.sha256["detect"] = write_verified(store, paths.detect, masked, clean, size, settings)
        outcome.outputs["detect"] = paths.detect
        if banner_only is not None:
            _check_unchanged(store, paths.original, clean, settings)
            outcome.sha256["original"] = write_verified(store, paths.original, banner_only, clean, size, settings)
            outcome.outputs["original"] = paths.original
    except PlateMaskError as exc:
        outcome.error = exc
    except Exception as exc:
        log.exception("Unexpected error writing the outputs of %s", photo.path)
        outcome.error = _unexpected(exc)
    outcome.millis = round((prepared.work + time.perf_counter() - started) * 1000)
    return outcome


def _check_unchanged(store: Storage, path: str, clean: CleanOriginal, settings: Settings) -> None:
    """Refuse to write over an upload that arrived while this photo was processed (it would be lost)."""
    current = store.read(path, max_bytes=settings.limits.max_bytes)
    if sha256(current) != clean.sha256 and output_source(current) != clean.sha256:
        raise PhotoChangedError(
            f"{path} was replaced while it was processed; it is processed again from the new upload"
        )


def write_verified(
    store: Storage, path: str, image: np.ndarray, clean: CleanOriginal, size: tuple[int, int], settings: Settings
) -> str:
    """Encode an output of ``clean`` (marked as ours), write it atomically, verify it (rule 4); its sha256."""
    data = encode_jpeg(image, quality=settings.render.jpeg_quality, source_sha256=clean.sha256, icc_from=clean.data)
    digest = sha256(data)
    store.write(path, data)
    verify_output(store, path, expected_sha256=digest, size=size, limits=settings.limits)
    return digest


def _unexpected(exc: Exception) -> PlateMaskError:
    """An exception no step expected, as the error of one photo: the host's, or a bug's."""
    if isinstance(exc, MemoryError):
        return ResourceError(f"out of memory: {exc or 'an allocation failed'}")
    return InternalError(f"{type(exc).__name__}: {exc}")


def _failed(photo: Photo, error: PlateMaskError, started: float, earlier: float = 0.0) -> PhotoOutcome:
    return PhotoOutcome(photo, error=error, millis=round((earlier + time.perf_counter() - started) * 1000))
