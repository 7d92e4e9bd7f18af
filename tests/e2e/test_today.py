"""plate_masking_today end to end: real Airflow, PostgreSQL, model, files and Chatwork double.

Uploads arrive in three waves during the day, a same-day run follows each, then the daily run
after midnight. The outcome must be the one of the daily run alone on the same uploads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pendulum
import pytest

from platemask.images import output_source, sha256
from tests.support.airflow_runs import rendered_map_indexes, trigger
from tests.support.site import Site, Upload, new_site, tracking_file
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 2, 3)
SCHEDULED = pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")
TODAY = {"date": DAY.isoformat()}  # the same-day run of DAY, whatever the test machine's date
# Per-run fields, normalised before comparing two days: when things happened and how long they took.
PER_RUN = ("created_at", "last_processed_time", "notifications", "same_day")
PER_RUN_RECORD = ("completed_at", "duration_ms", "backup_history")


def _photo(seed: int) -> bytes:
    return photo_jpeg(make_car_photo(seed, size=(1280, 960)).image, quality=92)


PHOTOS = {seed: _photo(seed) for seed in (1, 2, 3, 4, 5, 6, 7, 8)}


def _wave1(site: Site) -> list[Upload]:
    at = dt.time(9, 0)
    return [
        site.add(10418430, "10418430001.jpg", PHOTOS[1], branch_no=1, day=DAY, at=at),
        site.add(10418430, "10418430002.jpg", PHOTOS[2], branch_no=2, day=DAY, at=at),
    ]


def _wave2(site: Site) -> list[Upload]:
    at = dt.time(12, 0)
    wave = [
        site.add(10418457, "10418457002.jpg", PHOTOS[3], branch_no=2, day=DAY, at=at),
        site.add(10418457, "10418457009.jpg", PHOTOS[4], branch_no=None, day=DAY, at=at),
    ]
    first = site.uploads[0]  # staff replace wave 1's first photo
    site.touch(first, PHOTOS[5], at=dt.datetime.combine(DAY, dt.time(12, 30)))
    return [*wave, first]


def _wave3(site: Site) -> list[Upload]:
    at = dt.time(15, 0)
    return [
        site.add(10418430, "10418430003.jpg", PHOTOS[6], branch_no=3, day=DAY, at=at),  # a wave-1 car again
        site.add(555, "20260001001.jpg", PHOTOS[7], branch_no=1, day=DAY, inspresultdata_cd="20260001", at=at),
    ]


WAVES: list[Callable[[Site], list[Upload]]] = [_wave1, _wave2, _wave3]


def _assert_masked(site: Site, uploads: list[Upload]) -> None:
    """Each photo has its backup (the current original) and its masked copy; a first photo its banner."""
    for upload in uploads:
        folder, name = upload.path.rsplit("/", 1)
        assert site.file(f"{folder}/.backup/{name}") == upload.original, upload.path
        assert site.pixels(f"{folder}/.detect/{name}").shape == (960, 1280, 3), upload.path
        if upload.branch_no == 1:  # one banner, drawn on the current original
            assert output_source(site.file(upload.path)) == sha256(upload.original), upload.path
        else:
            assert site.file(upload.path) == upload.original


def _normalised(doc: dict) -> dict:
    doc = {k: v for k, v in doc.items() if k not in PER_RUN}
    doc["quality"] = {k: v for k, v in doc["quality"].items() if k != "p95_ms"}
    for key, record in doc["processed"].items():
        history = [h["status"] for h in record["status_history"]]
        last = len(history) - history[::-1].index("pending") - 1  # the last processing only
        kept = {k: v for k, v in record.items() if k not in PER_RUN_RECORD}
        doc["processed"][key] = {**kept, "status_history": history[last:]}
    return doc


def _summary_without_timing(body: str) -> str:
    return re.sub(r"p95: \d+ms", "p95: …ms", body)


def test_three_waves_then_daily_equal_the_daily_run_alone(
    site: Site, chatwork, postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    masked: list[Upload] = []
    for wave in WAVES:
        uploads = wave(site)
        run = trigger("plate_masking_today", None, TODAY)
        assert run.state == "success"
        assert sorted(rendered_map_indexes(run, "mask_car").values()) == sorted({u.car_id for u in uploads})
        masked += uploads
        _assert_masked(site, masked)  # this wave, and every earlier one still right
        records = tracking_file(DAY)["processed"]
        assert {records[str(u.file_id)]["status"] for u in uploads} == {"verified"}  # done is the daily run's

    # Nothing new: the run changes nothing, not even the day file.
    day_file = Path(os.environ["LOG_DIR"]) / "tracking" / "processed_20260203.json"
    before, photos = day_file.read_bytes(), site.snapshot()
    assert trigger("plate_masking_today", None, TODAY).state == "success"
    assert day_file.read_bytes() == before and site.snapshot() == photos
    assert chatwork.messages == []  # same-day runs say nothing when nothing failed

    # The re-upload: processed again from the new original, the old one kept.
    first = site.uploads[0]
    [kept] = (site.root / "upfile/1041/8430/.backup/.history").iterdir()
    assert kept.read_bytes() == PHOTOS[1] and first.original == PHOTOS[5]
    history = [h["status"] for h in tracking_file(DAY)["processed"][str(first.file_id)]["status_history"]]
    assert history == ["pending", "processing", "verified", "pending", "processing", "verified"]

    assert trigger("plate_masking_daily", SCHEDULED).state == "success"
    [summary] = chatwork.messages
    # Six photos, the re-uploaded one once, all processed: none skipped.
    assert "✅ 成功: 6件" in summary["body"] and "⏭️ スキップ: 0件" in summary["body"]
    doc, photos = tracking_file(DAY), site.snapshot()
    assert {r["status"] for r in doc["processed"].values()} == {"done"}

    # The same uploads on a second site, processed by the daily run alone.
    alone = new_site(postgres, tmp_path / "alone")
    monkeypatch.setenv("S3_MOUNT", str(alone.root))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "alone-logs"))
    monkeypatch.setenv("AIRFLOW_CONN_UPLOAD_DB", alone.connection_json())
    for wave in WAVES:
        wave(alone)
    assert trigger("plate_masking_daily", SCHEDULED).state == "success"
    assert len(chatwork.messages) == 2
    assert _summary_without_timing(summary["body"]) == _summary_without_timing(chatwork.messages[1]["body"])
    assert _normalised(doc) == _normalised(tracking_file(DAY))
    history_copy = f"upfile/1041/8430/.backup/.history/{kept.name}"
    assert {k: v for k, v in photos.items() if k != history_copy} == alone.snapshot()
    assert json.loads(json.dumps(doc["same_day"]))["unreported"] == []
