"""Cut-over from the script the site ran before platemask (``PLATEMASK_CUTOVER``, issue 30 item 2).

The old script wrote the same ``.backup/`` copies and put its banner on each first photo. On
platemask's first day such a photo differs from its backup and is not platemask's own output:
without a cut-over it would be taken for a staff re-upload (the bannered photo becomes the
backup, and the website photo gets a second banner).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import cv2
import pytest

from platemask.config import Cutover, Limits, Settings
from platemask.daily import finish_day, plan_day, process_cars
from platemask.errors import ConfigError
from platemask.images import decode, sha256
from platemask.paths import photo_paths
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking
from tests.support.photos import StubDetector, jpeg_bytes, no_second_look

DAY = dt.date(2026, 2, 3)
CUT_OVER = dt.date(2026, 2, 4)  # the first day platemask runs instead of the old script
CAR = "10418430"
ROWS = [
    {
        "file_id": n,
        "car_id": CAR,
        "file_path": f"/upfile/1041/8430/{CAR}{n:03d}.jpg",
        "branch_no": n,
        "updated_at": dt.datetime(2026, 2, 3, 10, n),
    }
    for n in (1, 2, 3)
]


def _old_script_banner(original: bytes) -> bytes:
    """The old script's website photo: the original with its banner, and no platemask marker."""
    image = decode(original, Limits())
    cv2.rectangle(image, (400, 400), (630, 470), (255, 255, 255), thickness=-1)
    return jpeg_bytes(image)


def _lay_out_old_flow(root: Path, originals: dict[str, bytes]) -> None:
    """What the old script leaves: every original in .backup/, masked copies in .detect/, the
    first photo overwritten with its banner."""
    for row in ROWS:
        paths = photo_paths(row["file_path"])
        original = originals[row["file_path"]]
        for path, data in (
            (paths.backup, original),
            (paths.detect, _old_script_banner(original)),
            (paths.original, _old_script_banner(original) if row["branch_no"] == 1 else original),
        ):
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _run_day(settings: Settings, rows=ROWS) -> None:
    tracking = DayTracking.for_settings(settings, DAY)
    plan = plan_day(rows, tracking)
    for car_ids in plan.batches:
        process_cars(
            car_ids,
            tracking,
            settings=settings,
            store=LocalStorage(settings.s3_mount),
            detector=StubDetector(),
            second_look=no_second_look(),
        )
    finish_day(tracking, skipped=plan.skipped)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def originals(put_photo) -> dict[str, bytes]:
    return {row["file_path"]: put_photo(row["file_path"], seed=row["file_id"]) for row in ROWS}


@pytest.fixture
def fresh(settings: Settings, originals: dict[str, bytes], tmp_path: Path) -> dict[str, bytes]:
    """The tree platemask makes from the same originals on a site that never ran the old script."""
    _run_day(settings)
    return _tree(Path(settings.s3_mount))


@pytest.mark.parametrize("cutover", [Cutover(untracked=True), Cutover(before=CUT_OVER)], ids=["untracked", "date"])
def test_a_day_of_the_old_script_is_cut_over(settings, originals, fresh, tmp_path: Path, cutover) -> None:
    root = tmp_path / "old-site"
    _lay_out_old_flow(root, originals)
    old_banner = (root / ROWS[0]["file_path"].lstrip("/")).read_bytes()
    site = dataclasses.replace(settings, s3_mount=str(root), log_dir=str(tmp_path / "old-logs"), cutover=cutover)

    _run_day(site)

    tree = _tree(root)
    history = {path: data for path, data in tree.items() if "/.history/" in path}
    # Backups, website photos and masked copies: byte for byte what a site without the old script has.
    assert {path: data for path, data in tree.items() if path not in history} == fresh
    # The old banner version is kept, never lost, in case it was a staff upload after all.
    assert list(history.values()) == [old_banner]
    assert f".{sha256(old_banner)[:16]}." in next(iter(history))


def test_without_a_cutover_the_old_banner_would_become_the_original(settings, originals, tmp_path: Path) -> None:
    """Why the setting exists: the default treats the old script's output as a new upload."""
    root = tmp_path / "old-site"
    _lay_out_old_flow(root, originals)
    old_banner = (root / ROWS[0]["file_path"].lstrip("/")).read_bytes()
    _run_day(dataclasses.replace(settings, s3_mount=str(root), log_dir=str(tmp_path / "old-logs")))
    assert (root / photo_paths(ROWS[0]["file_path"]).backup.lstrip("/")).read_bytes() == old_banner


def test_a_photo_uploaded_after_the_cutover_date_is_a_new_upload(settings, originals, put_photo, tmp_path) -> None:
    """A staff re-upload after the cut-over keeps its bytes and becomes the backup (and is never reverted)."""
    site = dataclasses.replace(settings, cutover=Cutover(before=CUT_OVER))
    _run_day(site)
    reupload = put_photo(ROWS[1]["file_path"], seed=99)
    rows = [dict(row, updated_at=dt.datetime(2026, 2, 5, 9, 0)) if row["file_id"] == 2 else row for row in ROWS]
    _run_day(site, rows)
    root = Path(settings.s3_mount)
    paths = photo_paths(ROWS[1]["file_path"])
    assert (root / paths.backup.lstrip("/")).read_bytes() == reupload
    assert (root / paths.original.lstrip("/")).read_bytes() == reupload


def test_untracked_spares_photos_platemask_has_verified(settings, originals, put_photo) -> None:
    """``untracked`` applies only to photos with no verified processing: a re-upload of one is kept."""
    site = dataclasses.replace(settings, cutover=Cutover(untracked=True))
    _run_day(site)
    reupload = put_photo(ROWS[2]["file_path"], seed=77)
    rows = [dict(row, updated_at=dt.datetime(2026, 2, 3, 18, 0)) if row["file_id"] == 3 else row for row in ROWS]
    _run_day(site, rows)
    assert (Path(settings.s3_mount) / photo_paths(ROWS[2]["file_path"]).backup.lstrip("/")).read_bytes() == reupload


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", Cutover()),
        ("off", Cutover()),
        ("untracked", Cutover(untracked=True)),
        ("2026-12-01", Cutover(before=dt.date(2026, 12, 1))),
    ],
)
def test_cutover_setting(value: str, expected: Cutover) -> None:
    assert Settings.from_env({"PLATEMASK_CUTOVER": value}).cutover == expected


def test_bad_cutover_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PLATEMASK_CUTOVER"):
        Settings.from_env({"PLATEMASK_CUTOVER": "yesterday"})
