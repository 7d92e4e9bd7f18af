"""A person's fixes of a photo (issue 29, core): pixels, the record, later runs, concurrent saves, export."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import pytest

from platemask.config import Limits
from platemask.corrections import Fix, apply_fix, export_corrections, photo_masks
from platemask.daily import finish_day, plan_day, process_cars
from platemask.errors import CorrectionConflictError, DayBusyError, InvalidCorrectionError
from platemask.images import decode
from platemask.paths import photo_paths
from platemask.review import photos_to_review
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking
from tests.support.photos import StubDetector, no_second_look

DAY = dt.date(2026, 2, 3)
CAR = "10418430"
ROWS = [
    {"file_id": n, "car_id": CAR, "file_path": f"/upfile/1041/8430/{CAR}{n:03d}.jpg", "branch_no": n} for n in (1, 2)
]
FIRST, OTHER = ROWS[0]["file_path"], ROWS[1]["file_path"]
FOUND = (100, 300, 260, 380)  # where the stub model finds a plate on every photo
MISSED = (400, 100, 520, 160)  # a plate it misses
FILL = np.array([43, 43, 43])  # the default fill colour, BGR


@pytest.fixture
def day(settings, put_photo) -> DayTracking:
    for row in ROWS:
        put_photo(row["file_path"], seed=row["file_id"])
    tracking = DayTracking.for_settings(settings, DAY)
    _run(settings, tracking)
    return tracking


def _run(settings, tracking: DayTracking, *, force: bool = False) -> None:
    plan = plan_day(ROWS, tracking, force=force)
    store = LocalStorage(settings.s3_mount)
    for cars in plan.batches:
        process_cars(
            cars, tracking, settings=settings, store=store, detector=StubDetector([FOUND]), second_look=no_second_look()
        )
    finish_day(tracking, skipped=plan.skipped)


def _fix(settings, tracking: DayTracking, file_id: int, fix: Fix):
    store = LocalStorage(settings.s3_mount)
    return apply_fix(tracking, str(file_id), fix, settings=settings, store=store, backups=store)


def _pixels(settings, path: str) -> np.ndarray:
    return decode((Path(settings.s3_mount) / path.lstrip("/")).read_bytes(), Limits())


def _region(image: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return image[y1:y2, x1:x2].astype(int)


def _hidden(image: np.ndarray, box) -> bool:
    """Whether ``box`` is filled, its edge aside (JPEG rings a few pixels into a flat area)."""
    x1, y1, x2, y2 = box
    return bool(np.abs(_region(image, (x1 + 4, y1 + 4, x2 - 4, y2 - 4)) - FILL).max() <= 20)


def test_an_added_mask_hides_the_missed_plate_and_the_record_says_who(settings, day: DayTracking) -> None:
    paths = photo_paths(OTHER)
    backup_before = (Path(settings.s3_mount) / paths.backup.lstrip("/")).read_bytes()
    assert not _hidden(_pixels(settings, paths.detect), MISSED)

    record = _fix(settings, day, 2, Fix(add=([*MISSED],), user="operator-a"))

    detect = _pixels(settings, paths.detect)
    assert _hidden(detect, MISSED) and _hidden(detect, (120, 310, 240, 370))  # the model's plate stays hidden
    assert (Path(settings.s3_mount) / paths.backup.lstrip("/")).read_bytes() == backup_before
    assert record["revision"] == 1 and record["detections"] == 2
    [manual] = record["manual_masks"]
    assert (manual["box"], manual["by"], manual["source"]) == ([*MISSED], "operator-a", "manual")
    assert record["review_resolved"]["by"] == "operator-a" and record["review_resolved"]["action"] == "fixed"
    assert photos_to_review([{**record, "review": ["low_confidence"]}]) == []  # checked: off the list
    assert day.load()["processed"]["2"]["manual_masks"] == record["manual_masks"]  # saved in the day file


def test_a_removed_mask_gives_the_original_pixels_back(settings, day: DayTracking) -> None:
    original = decode((Path(settings.s3_mount) / photo_paths(OTHER).backup.lstrip("/")).read_bytes(), Limits())
    [mask] = photo_masks(day.load()["processed"]["2"])
    assert _hidden(_pixels(settings, photo_paths(OTHER).detect), FOUND)

    record = _fix(settings, day, 2, Fix(remove=(0,), user="operator-b"))

    detect = _pixels(settings, photo_paths(OTHER).detect)
    assert np.abs(_region(detect, FOUND) - _region(original, FOUND)).mean() < 3  # JPEG's own noise only
    assert record["masks"] == [] and record["removed_masks"][0]["box"] == mask["box"]


def test_a_first_photo_keeps_its_website_copy(settings, day: DayTracking) -> None:
    website = (Path(settings.s3_mount) / FIRST.lstrip("/")).read_bytes()
    _fix(settings, day, 1, Fix(add=([[400, 100], [520, 110], [515, 160], [398, 150]],), user="operator-a"))
    assert (Path(settings.s3_mount) / FIRST.lstrip("/")).read_bytes() == website  # banner only, by the spec
    assert _hidden(_pixels(settings, photo_paths(FIRST).detect), (402, 112, 512, 148))


def test_a_forced_rerun_keeps_the_fixes(settings, day: DayTracking) -> None:
    _fix(settings, day, 2, Fix(add=([*MISSED],), remove=(0,), user="operator-a"))
    _run(settings, day, force=True)
    detect = _pixels(settings, photo_paths(OTHER).detect)
    assert _hidden(detect, MISSED) and not _hidden(detect, (120, 310, 240, 370))
    record = day.load()["processed"]["2"]
    assert [m["source"] for m in record["masks"]] == ["manual"] and record["status"] == "done"


def test_a_new_upload_starts_afresh(settings, day: DayTracking, put_photo) -> None:
    _fix(settings, day, 2, Fix(remove=(0,), user="operator-a"))
    put_photo(OTHER, seed=42)  # staff upload the photo again
    _run(settings, day, force=True)
    record = day.load()["processed"]["2"]
    assert "removed_masks" not in record and "fixed_for" not in record
    assert _hidden(_pixels(settings, photo_paths(OTHER).detect), (120, 310, 240, 370))


def test_two_saves_of_one_photo_at_once_lose_nothing_unseen(settings, day: DayTracking) -> None:
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def save(user: str, box) -> None:
        start.wait()
        try:
            outcomes.append(_fix(settings, day, 2, Fix(add=(box,), user=user, revision=0)))
        except CorrectionConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=save, args=(u, b)) for u, b in (("a", [*MISSED]), ("b", [10, 10, 60, 40]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [saved] = [o for o in outcomes if isinstance(o, dict)]
    [refused] = [o for o in outcomes if isinstance(o, CorrectionConflictError)]
    assert f"saved by {saved['review_resolved']['by']}" in str(refused) and "reload" in str(refused)
    record = day.load()["processed"]["2"]
    assert record["revision"] == 1 and len(record["manual_masks"]) == 1  # the saved one, whole; the other told


@pytest.mark.parametrize(
    "shape",
    [[-5, 10, 50, 40], [10, 10, 5000, 40], [50, 40, 10, 10], [10, 10, 12, 12], ["a", 1, 2, 3], [[1, 2], [3, 4]]],
    ids=["outside-left", "outside-right", "inverted", "too-small", "not-numbers", "three-corners-short"],
)
def test_bad_masks_are_refused_and_nothing_changes(settings, day: DayTracking, shape) -> None:
    before = (Path(settings.s3_mount) / photo_paths(OTHER).detect.lstrip("/")).read_bytes()
    with pytest.raises(InvalidCorrectionError):
        _fix(settings, day, 2, Fix(add=(shape,), user="operator-a"))
    with pytest.raises(InvalidCorrectionError, match="no mask"):
        _fix(settings, day, 2, Fix(remove=(7,), user="operator-a"))
    assert (Path(settings.s3_mount) / photo_paths(OTHER).detect.lstrip("/")).read_bytes() == before
    assert "revision" not in day.load()["processed"]["2"]


def test_unknown_photos_and_busy_days_are_refused(settings, day: DayTracking) -> None:
    with pytest.raises(KeyError):
        _fix(settings, day, 99, Fix(approve=True, user="operator-a"))
    day.claim("daily", "scheduled__2026-02-03", stale_after=3600)
    with pytest.raises(DayBusyError, match="a daily of this day is running"):
        _fix(settings, day, 2, Fix(approve=True, user="operator-a"))


def test_export_writes_labels_the_training_builder_reads(settings, day: DayTracking, tmp_path: Path) -> None:
    from training.build_dataset import corrections_photos

    _fix(settings, day, 2, Fix(add=([*MISSED],), remove=(0,), user="operator-a"))
    _fix(settings, day, 1, Fix(approve=True, user="operator-a"))  # approved as is: nothing to learn
    store = LocalStorage(settings.s3_mount)
    counts = export_corrections([day], tmp_path / "export", settings=settings, backups=store)
    assert counts == {"photos": 1, "plates": 1, "negatives": 1}
    photos = {photo.name: photo for _split, photo in corrections_photos(tmp_path / "export")}
    assert set(photos) == {"20260203_2", "20260203_2_neg0"}
    [box] = photos["20260203_2"].boxes
    assert np.allclose(box, MISSED, atol=0.5)
    assert photos["20260203_2_neg0"].boxes == []  # the removed mask: what not to mask


def test_a_failed_rerun_keeps_the_fixes(settings, day: DayTracking) -> None:
    """A photo that cannot even be read this time (storage down, file gone) is an error, not a new upload."""
    _fix(settings, day, 2, Fix(add=([*MISSED],), user="operator-a"))
    (Path(settings.s3_mount) / OTHER.lstrip("/")).unlink()
    _run(settings, day, force=True)
    record = day.load()["processed"]["2"]
    assert record["status"] == "error" and record["error"].startswith("missing_file")
    assert [m["by"] for m in record["manual_masks"]] == ["operator-a"] and record["fixed_for"]
