"""Old tracking files gzipped or deleted (platemask.retention), and a gzipped day still read and restored."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from platemask.cli import main
from platemask.config import Settings
from platemask.errors import ConfigError, StorageError, TrackingError
from platemask.paths import photo_paths
from platemask.restore import RestoreRequest, restore_day
from platemask.retention import apply_retention, apply_retention_safely
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking, new_record, set_status, site_now
from platemask.uploads import Photo
from tests.support.photos import jpeg_bytes, noisy_photo

TODAY = dt.date(2026, 2, 20)
PHOTO = "/upfile/1041/8430/10418430001.jpg"


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"S3_MOUNT": str(tmp_path / "mount"), "LOG_DIR": str(tmp_path / "logs"), **env})


def _day(logs: LocalStorage, day: dt.date, status: str = "done") -> DayTracking:
    """A day file holding one record of ``PHOTO``, and a part, as a finished run leaves them."""
    tracking = DayTracking(logs, day)
    record = new_record(Photo(1, "10418430", PHOTO, 1), f"{day} 00:10:00")
    set_status(record, "processing", f"{day} 00:10:01")
    set_status(record, "verified", f"{day} 00:10:02")
    if status == "done":
        set_status(record, "done", f"{day} 00:10:03")
    with tracking.update() as doc:
        doc["processed"]["1"] = record
    tracking.write_part("10418430", {"date": day.isoformat(), "car_id": "10418430", "records": {"1": record}})
    return tracking


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _ages(tmp_path: Path, *ages: int) -> tuple[LocalStorage, dict[int, DayTracking]]:
    logs = LocalStorage(tmp_path / "logs")
    return logs, {age: _day(logs, TODAY - dt.timedelta(days=age)) for age in ages}


def test_compress_after_n_days_keeps_the_same_json_inside_the_gz(tmp_path: Path) -> None:
    logs, days = _ages(tmp_path, 0, 1, 2, 3, 10)
    plain = {age: (tmp_path / "logs" / t.path.lstrip("/")).read_bytes() for age, t in days.items()}
    result = apply_retention(logs, _settings(tmp_path, PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS="2"), today=TODAY)
    assert result.compressed == [days[10].day, days[3].day] and result.deleted == []
    for age, tracking in days.items():
        json_file, gz_file = (tmp_path / "logs" / p.lstrip("/") for p in (tracking.path, tracking.gz_path))
        if age > 2:
            assert not json_file.exists() and gzip.decompress(gz_file.read_bytes()) == plain[age]
        else:
            assert json_file.read_bytes() == plain[age] and not gz_file.exists()


def test_default_leaves_every_tracking_file_untouched(tmp_path: Path) -> None:
    logs, _ = _ages(tmp_path, 0, 1, 30, 400)
    before = _files(tmp_path / "logs")
    settings = _settings(tmp_path)
    assert (settings.tracking_compress_after_days, settings.tracking_delete_after_days) == (0, 0)
    assert apply_retention(logs, settings, today=TODAY).compressed == []
    assert apply_retention_safely(logs, settings) is None
    assert _files(tmp_path / "logs") == before


def test_today_and_yesterday_are_never_touched(tmp_path: Path) -> None:
    logs, days = _ages(tmp_path, 0, 1, 2)
    before = _files(tmp_path / "logs")
    env = {"PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS": "1", "PLATEMASK_TRACKING_DELETE_AFTER_DAYS": "1"}
    result = apply_retention(logs, _settings(tmp_path, **env), today=TODAY)
    assert (result.compressed, result.deleted) == ([], [days[2].day])
    after = _files(tmp_path / "logs")
    assert {name: data for name, data in before.items() if "20260218" not in name} == after


def test_delete_after_n_days_removes_the_day_in_either_form_with_its_parts(tmp_path: Path) -> None:
    logs, days = _ages(tmp_path, 5, 40, 41)
    settings = _settings(tmp_path, PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS="3")
    apply_retention(logs, settings, today=TODAY - dt.timedelta(days=30))  # day 40 and 41 gzipped a month ago
    env = {"PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS": "3", "PLATEMASK_TRACKING_DELETE_AFTER_DAYS": "35"}
    result = apply_retention(logs, _settings(tmp_path, **env), today=TODAY)
    assert (result.compressed, result.deleted) == ([days[5].day], [days[41].day, days[40].day])
    assert sorted(_files(tmp_path / "logs")) == [
        "tracking/processed_20260215.json.gz",
        "tracking/processed_20260215.parts/10418430.json",
    ]


def test_a_dry_run_lists_and_changes_nothing(tmp_path: Path) -> None:
    logs, days = _ages(tmp_path, 3, 9)
    before = _files(tmp_path / "logs")
    env = {"PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS": "2", "PLATEMASK_TRACKING_DELETE_AFTER_DAYS": "8"}
    result = apply_retention(logs, _settings(tmp_path, **env), today=TODAY, dry_run=True)
    assert result.lines(dry_run=True) == [f"would compress {days[3].day}", f"would delete {days[9].day}"]
    assert _files(tmp_path / "logs") == before


def test_the_command_compresses_against_the_site_local_today(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    today = site_now("Asia/Tokyo").date()
    logs = LocalStorage(tmp_path / "logs")
    old, recent = _day(logs, today - dt.timedelta(days=8)), _day(logs, today - dt.timedelta(days=1))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS", "7")
    assert main(["tracking-retention"]) == 0
    assert capsys.readouterr().out == f"compressed {old.day}\n"
    assert logs.exists(old.gz_path) and not logs.exists(old.path)
    assert logs.exists(recent.path) and not logs.exists(recent.gz_path)


def test_a_compressed_day_loads_and_its_next_update_writes_it_back_plain(tmp_path: Path) -> None:
    logs, days = _ages(tmp_path, 10)
    tracking = days[10]
    doc = tracking.load()
    assert tracking.compress() is True
    assert DayTracking(logs, tracking.day).load() == doc
    with tracking.update() as updated:
        updated["note"] = "touched"
    assert logs.exists(tracking.path) and not logs.exists(tracking.gz_path)
    assert tracking.load() == {**doc, "note": "touched"}


class _GarblingGz(LocalStorage):
    """A storage that stores something other than what it was given for gzipped files."""

    def write(self, path: str, data: bytes) -> None:
        super().write(path, gzip.compress(b"{}") if path.endswith(".gz") else data)


def test_the_plain_file_stays_unless_the_gz_reads_back_the_same(tmp_path: Path) -> None:
    _, days = _ages(tmp_path, 10)
    plain = (tmp_path / "logs" / days[10].path.lstrip("/")).read_bytes()
    garbling = _GarblingGz(tmp_path / "logs")
    with pytest.raises(TrackingError, match="read back differs"):
        DayTracking(garbling, days[10].day).compress()
    assert (tmp_path / "logs" / days[10].path.lstrip("/")).read_bytes() == plain


class _Unlistable(LocalStorage):
    def __init__(self, root: Path, error: BaseException) -> None:
        super().__init__(root)
        self.error = error

    def list(self, folder: str):
        raise self.error


@pytest.mark.parametrize("error", [StorageError("cannot list: timeout"), RuntimeError("a bug")])
def test_a_retention_failure_never_fails_the_day(tmp_path: Path, error: BaseException) -> None:
    _ages(tmp_path, 10)
    before = _files(tmp_path / "logs")
    settings = _settings(tmp_path, PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS="2")
    assert apply_retention_safely(_Unlistable(tmp_path / "logs", error), settings) is None
    assert _files(tmp_path / "logs") == before


def test_restore_of_a_compressed_day_restores_the_original_photo(tmp_path: Path) -> None:
    store, logs = LocalStorage(tmp_path / "mount"), LocalStorage(tmp_path / "logs")
    paths, original = photo_paths(PHOTO), jpeg_bytes(noisy_photo(seed=1))
    store.write(paths.backup, original)
    store.write(paths.original, jpeg_bytes(noisy_photo(seed=2)))  # what the website shows: the masked copy
    tracking = _day(logs, TODAY - dt.timedelta(days=30))
    tracking.clear_parts()  # a month later the records live in the day file alone
    apply_retention(logs, _settings(tmp_path, PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS="7"), today=TODAY)
    assert logs.exists(tracking.gz_path) and not logs.exists(tracking.path)
    report = restore_day(RestoreRequest(tracking.day, "done", dry_run=False), tracking, store=store, backups=store)
    assert report.counts()["restored"] == 1
    assert store.read(PHOTO) == original
    assert tracking.load()["processed"]["1"]["restored_at"]
    assert logs.exists(tracking.path) and not logs.exists(tracking.gz_path)


@pytest.mark.parametrize("name", ["PLATEMASK_TRACKING_COMPRESS_AFTER_DAYS", "PLATEMASK_TRACKING_DELETE_AFTER_DAYS"])
@pytest.mark.parametrize("value", ["-1", "30d", "1.5"])
def test_bad_retention_settings_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        _settings(tmp_path, **{name: value})
