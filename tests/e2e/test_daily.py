"""plate_masking_daily end to end: real Airflow, PostgreSQL, model, files and Chatwork double.

What an operator does: the scheduled run of a day, the same day again, a red car fixed and
cleared, a manual run with the ``date`` field, a day without uploads, staff re-uploading a photo.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path

import numpy as np
import pendulum
import pytest
from PIL import Image

from platemask.images import output_source, sha256
from tests.support.airflow_runs import clear_and_rerun, rendered_map_indexes, task_states, trigger, xcom
from tests.support.site import Site, Upload, tracking_file
from tests.support.synthetic import make_car_photo, make_scene, photo_jpeg

pytestmark = pytest.mark.e2e

DAY = dt.date(2026, 2, 3)
SCHEDULED = pendulum.datetime(2026, 2, 3, tz="Asia/Tokyo")  # the run for day D (data interval start)
FILL = np.array([43, 43, 43])  # the default fill colour, BGR


def _car_photo(seed: int, **kwargs) -> tuple[bytes, tuple[int, int, int, int]]:
    photo = make_car_photo(seed, size=(1280, 960), **kwargs)
    return photo_jpeg(photo.image, quality=92), photo.plate_box


def _seed_day(site: Site) -> dict[str, list[Upload]]:
    """Several cars: with and without a first photo, NULL branch_no, a soft delete, a bad file."""
    cars: dict[str, list[Upload]] = {}
    for branch in (1, 2, 3):
        data, box = _car_photo(10 + branch)
        cars.setdefault("10418430", []).append(
            site.add(10418430, f"10418430{branch:03d}.jpg", data, branch_no=branch, day=DAY, plate_box=box)
        )
    site.add(10418430, "10418430004.jpg", _car_photo(14)[0], branch_no=4, day=DAY, deleted=True)
    for name, branch in (("10418457002.jpg", 2), ("10418457009.jpg", None)):
        data, box = _car_photo(20 + (branch or 9))
        cars.setdefault("10418457", []).append(site.add(10418457, name, data, branch_no=branch, day=DAY, plate_box=box))
    data, box = _car_photo(31)
    cars["20260001"] = [  # car id from inspresultdata_cd
        site.add(555, "20260001001.jpg", data, branch_no=1, day=DAY, inspresultdata_cd="20260001", plate_box=box)
    ]
    good, box = _car_photo(41)
    cars["10418460"] = [
        site.add(10418460, "10418460001.jpg", good, branch_no=1, day=DAY, plate_box=box),
        site.add(10418460, "10418460002.jpg", good[: len(good) // 2], branch_no=2, day=DAY),  # truncated upload
    ]
    site.add(10418499, "10418499001.jpg", _car_photo(50)[0], branch_no=1, day=DAY + dt.timedelta(days=1))
    return cars


def _tracking(day: dt.date = DAY) -> dict:
    return tracking_file(day)


def _masked_fraction(pixels: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    region = pixels[y1:y2, x1:x2].astype(int)
    return float((np.abs(region - FILL).max(axis=2) < 16).mean())


def _expected_summary(doc: dict, processed: dict[str, list[str]], succeeded: int, failed: int, skipped: int) -> str:
    """The spec's message for a run that processed ``{car_id: [file names]}``."""
    lines = []
    finished: list[dict] = []
    for car, names in processed.items():
        records = [r for r in doc["processed"].values() if r["car_id"] == car and r["path"].rsplit("/", 1)[1] in names]
        bad = any(r["status"] == "error" for r in records)
        found = sum(r.get("detections", 0) for r in records if r["status"] != "error")
        lines.append(f"  {'⚠️' if bad else '✅'} {car}: {len(records)}枚処理, 検出{found}件")
        finished += [r for r in records if r["status"] != "error"]
    millis = sorted(r["duration_ms"] for r in finished)
    plates = sum(r["detections"] for r in finished)
    return "\n".join(
        [
            "[info][title]🚗 ナンバープレート処理完了[/title]",
            f"📅 対象日: {DAY.isoformat()}",
            f"✅ 成功: {succeeded}件",
            f"❌ エラー: {failed}件",
            f"⏭️ スキップ: {skipped}件",
            f"🔍 要確認: {sum(bool(r.get('review')) for r in finished)}件",
            f"🔢 1枚あたり検出: {plates / len(finished) if finished else 0:.2f}件 "
            f"(検出なし {sum(r['detections'] == 0 for r in finished)}枚)",
            f"⏱️ 処理時間 p95: {millis[max(0, -(-len(millis) * 95 // 100) - 1)] if millis else 0}ms/枚",
            "",
            "📊 車両別結果:",
            *lines,
            "[/info]",
        ]
    )


def _names(uploads: list[Upload]) -> list[str]:
    return [u.path.rsplit("/", 1)[1] for u in uploads]


def test_scheduled_day_then_rerun_then_clear_one_car(site: Site, chatwork) -> None:
    cars = _seed_day(site)
    deleted = "/upfile/1041/8430/10418430004.jpg"
    other_day = "/upfile/1041/8499/10418499001.jpg"

    # 1. The scheduled run of day D.
    run = trigger("plate_masking_daily", SCHEDULED)
    assert run.state == "failed"  # one truncated photo: the run is red, after the summary
    labels = rendered_map_indexes(run, "mask_car")
    assert sorted(labels.values()) == ["10418430", "10418457", "10418460", "20260001"]
    states = task_states(run)
    bad_index = next(i for i, label in labels.items() if label == "10418460")
    assert states[("mask_car", bad_index)] == "failed"
    assert [states[("mask_car", i)] for i in labels if i != bad_index] == ["success"] * 3
    assert states[("finish_day", -1)] == "failed"

    # Storage layout (spec section 3), byte for byte.
    for upload in [u for car in cars.values() for u in car if u.plate_box]:
        folder, name = upload.path.rsplit("/", 1)
        assert site.file(f"{folder}/.backup/{name}") == upload.original  # backup = pre-run original
        masked = site.pixels(f"{folder}/.detect/{name}")
        assert masked.shape == (960, 1280, 3)
        assert _masked_fraction(masked, upload.plate_box) > 0.9, upload.path  # plate hidden in .detect/
        if upload.branch_no == 1:
            website = site.file(upload.path)
            assert website != upload.original and output_source(website) == sha256(upload.original)
            before = np.asarray(Image.open(io.BytesIO(upload.original)))[:, :, ::-1].astype(int)
            x1, y1, x2, y2 = upload.plate_box
            plate_after = site.pixels(upload.path)[y1:y2, x1:x2].astype(int)
            assert np.abs(plate_after - before[y1:y2, x1:x2]).mean() < 8  # banner only: plate still visible
            assert _masked_fraction(site.pixels(upload.path), upload.plate_box) < 0.2
        else:
            assert site.file(upload.path) == upload.original  # other photos untouched
    assert not site.exists("/upfile/1041/8430/.detect/10418430004.jpg")  # soft-deleted: never processed
    assert not site.exists("/upfile/1041/8430/.backup/10418430004.jpg") and site.exists(deleted)
    assert not site.exists("/upfile/1041/8499/.detect/10418499001.jpg") and site.exists(other_day)

    # The tracking file: the original schema, rule-5 states.
    doc = _tracking()
    status = {r["path"].rsplit("/", 1)[1]: r["status"] for r in doc["processed"].values()}
    assert status == {
        "10418430001.jpg": "done",
        "10418430002.jpg": "done",
        "10418430003.jpg": "done",
        "10418457002.jpg": "done",
        "10418457009.jpg": "done",
        "20260001001.jpg": "done",
        "10418460001.jpg": "verified",  # its car has an error: states kept
        "10418460002.jpg": "error",
    }
    bad = next(r for r in doc["processed"].values() if r["status"] == "error")
    assert bad["error"].startswith("invalid_image: truncated JPEG")
    first = next(r for r in doc["processed"].values() if r["path"].endswith("10418430001.jpg"))
    assert first["is_first"] and set(first["output_paths"]) == {"detect", "original"}
    assert [h["status"] for h in first["status_history"]] == ["pending", "processing", "verified", "done"]
    no_first = [r for r in doc["processed"].values() if r["car_id"] == "10418457"]
    assert not any(r["is_first"] for r in no_first) and all(set(r["output_paths"]) == {"detect"} for r in no_first)
    assert sum(r["detections"] for r in doc["processed"].values() if r["status"] != "error") >= 7

    # The red car's alert (its car id and reason), then the Chatwork summary, exactly.
    alert, message = chatwork.messages
    assert "mask_car 10418460:" in alert["body"] and "bad input" in alert["body"]
    assert "invalid_image: truncated JPEG" in alert["body"]
    assert message["room_id"] == "424242"
    everything = {car: _names(cars[car]) for car in ("10418430", "10418457", "10418460", "20260001")}
    assert message["body"] == _expected_summary(doc, everything, 7, 1, 0)

    # The day's review page: every photo whose record asks for a look, and no other.
    page = (Path(os.environ["LOG_DIR"]) / "review" / "review_20260203.html").read_text(encoding="utf-8")
    for record in doc["processed"].values():
        assert (f"<small>{record['path']}</small>" in page) is bool(record.get("review")), record["path"]

    # 2. The same day again (someone re-triggers it): finished photos are skipped, bytes identical.
    before = site.snapshot()
    again = trigger("plate_masking_daily", SCHEDULED)
    assert again.state == "failed"  # the truncated photo is still there
    assert site.snapshot() == before  # no double banner, nothing rewritten
    assert chatwork.messages[-1]["body"] == _expected_summary(_tracking(), {"10418460": ["10418460002.jpg"]}, 0, 1, 7)

    # 3. Staff upload the photo again; the operator clears the red car (with downstream).
    fixed, box = _car_photo(42)
    bad_upload = cars["10418460"][1]
    site.touch(bad_upload, fixed)
    labels = rendered_map_indexes(again, "mask_car")
    [index] = [i for i, label in labels.items() if label == "10418460"]
    rerun = clear_and_rerun("plate_masking_daily", again, "mask_car", index)
    assert rerun.state == "success"
    doc = _tracking()
    assert {r["status"] for r in doc["processed"].values()} == {"done"}
    assert site.file("/upfile/1041/8460/.backup/10418460002.jpg") == fixed
    assert _masked_fraction(site.pixels("/upfile/1041/8460/.detect/10418460002.jpg"), box) > 0.9
    assert site.file("/upfile/1041/8460/10418460001.jpg") == before["upfile/1041/8460/10418460001.jpg"]
    assert chatwork.messages[-1]["body"] == _expected_summary(doc, {"10418460": ["10418460002.jpg"]}, 1, 0, 7)

    # 4. force: every photo again from its backup, the very same bytes (one banner, same masks).
    settled = site.snapshot()
    forced = trigger("plate_masking_daily", None, {"date": "2026-02-03", "force": True})
    assert forced.state == "success"
    assert site.snapshot() == settled
    assert chatwork.messages[-1]["body"].count("✅ ") == 5  # the total line and four cars


def test_manual_run_with_date_param_and_empty_day(site: Site, chatwork) -> None:
    data, box = _car_photo(60)
    site.add(10418430, "10418430001.jpg", data, branch_no=1, day=DAY, plate_box=box)
    run = trigger("plate_masking_daily", None, {"date": "2026-02-03"})  # Airflow 3 manual run: no logical date
    assert run.state == "success" and _tracking()["processed"]
    # finish_day's outputs, one XCom per key (the day's summary), next to its whole return value.
    assert xcom(run, "finish_day", "day") == "2026-02-03" and xcom(run, "finish_day", "succeeded") == 1
    assert xcom(run, "finish_day")["cars"] == [{"car_id": "10418430", "processed": 1, "detections": 1, "failed": 0}]
    empty = trigger("plate_masking_daily", pendulum.datetime(2026, 2, 5, tz="Asia/Tokyo"))
    assert empty.state == "success"
    assert _tracking(dt.date(2026, 2, 5))["processed"] == {}
    assert len(chatwork.messages) == 1  # nothing processed on the 5th: no summary


def test_reuploaded_photo_is_processed_and_both_versions_kept(site: Site, chatwork) -> None:
    first, _ = _car_photo(70)
    upload = site.add(10418430, "10418430002.jpg", first, branch_no=2, day=DAY)
    assert trigger("plate_masking_daily", SCHEDULED).state == "success"
    second, box = _car_photo(71)
    site.touch(upload, second)
    assert trigger("plate_masking_daily", SCHEDULED).state == "success"
    assert site.file(upload.path) == second  # never reverted to the old backup
    assert site.file("/upfile/1041/8430/.backup/10418430002.jpg") == second
    [kept] = (site.root / "upfile/1041/8430/.backup/.history").iterdir()
    assert kept.read_bytes() == first
    assert _masked_fraction(site.pixels("/upfile/1041/8430/.detect/10418430002.jpg"), box) > 0.9
    record = next(iter(_tracking()["processed"].values()))
    assert record["status"] == "done" and record["backup_history"] == [f"/{kept.relative_to(site.root)}"]


def test_bad_input_each_fails_alone(site: Site, chatwork) -> None:
    """The issue's list of bad input: each photo is an error with a reason, or processed correctly."""

    def jpeg(image: Image.Image, **kwargs) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **kwargs)
        return buffer.getvalue()

    good, box = _car_photo(80)
    car = make_car_photo(81, size=(1280, 960))
    rotated = photo_jpeg(car.image, quality=92, exif_orientation=6)
    cmyk = jpeg(Image.fromarray(make_car_photo(82, size=(1280, 960)).image[:, :, ::-1]).convert("CMYK"))
    png = io.BytesIO()
    Image.fromarray(make_scene(83, size=(640, 480))[:, :, ::-1]).save(png, "PNG")
    cases = {
        "10000001": (b"", "invalid_image: empty file"),
        "10000002": (good[:40000], "invalid_image: truncated JPEG"),
        "10000003": (png.getvalue(), "invalid_image: not a JPEG (PNG"),
        "10000004": (jpeg(Image.new("RGB", (1, 1))), "invalid_image: 1×1 px is too small"),
        "10000005": (jpeg(Image.new("L", (10000, 10000)), quality=5), "image_too_large: 10000×10000"),
        "10000006": (rotated, None),
        "10000007": (cmyk, None),
    }
    for car_id, (data, _) in cases.items():
        site.add(int(car_id), f"{car_id}001.jpg", data, branch_no=2, day=DAY)
    site.add(10000008, "gone.jpg", b"", branch_no=2, day=DAY, path="/upfile/1000/0008/gone.jpg")
    (site.root / "upfile/1000/0008/gone.jpg").unlink()
    site.add(10000009, "x.jpg", b"", branch_no=2, day=DAY, path="/upfile/1000/0009/../../../../etc/passwd")
    site.add(10418430, "10418430001.jpg", good, branch_no=1, day=DAY, plate_box=box)

    run = trigger("plate_masking_daily", SCHEDULED)
    assert run.state == "failed"
    records = {r["car_id"]: r for r in _tracking()["processed"].values()}
    for car_id, (_, reason) in cases.items():
        if reason is None:
            assert records[car_id]["status"] == "done", records[car_id].get("error")
        else:
            assert records[car_id]["status"] == "error" and records[car_id]["error"].startswith(reason), car_id
    assert records["10000008"]["error"].startswith("missing_file:")
    assert records["10000009"]["error"].startswith("unsafe_path:")
    assert records["10418430"]["status"] == "done"  # the rest of the day completed
    upright = site.pixels("/upfile/1000/0006/.detect/10000006001.jpg")
    assert upright.shape == (960, 1280, 3)  # EXIF orientation applied
    assert _masked_fraction(upright, car.plate_box) > 0.9
    assert not (site.root.parent / "etc").exists()


def test_days_beyond_max_map_length_batch_cars(site: Site, chatwork, monkeypatch: pytest.MonkeyPatch) -> None:
    """More cars than [core] max_map_length: cars share tasks instead of the run failing to expand."""
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    for n in range(5):
        car = 10418430 + n
        site.add(car, f"{car}001.jpg", photo_jpeg(make_scene(90 + n, size=(640, 480))), branch_no=1, day=DAY)
    run = trigger("plate_masking_daily", SCHEDULED)
    assert run.state == "success"
    labels = sorted(rendered_map_indexes(run, "mask_car").values())
    assert labels == ["10418430 +2 cars", "10418433 +1 cars"]
    assert {r["status"] for r in _tracking()["processed"].values()} == {"done"}
    assert chatwork.messages[-1]["body"].count("枚処理") == 5  # still one summary line per car


def test_secrets_stay_out_of_logs_xcom_and_tracking(
    site: Site, chatwork, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    token, password = "cw-token-s3cr3t-5eb1", "db-pa55-s3cr3t-9f2"
    monkeypatch.setenv("CHATWORK_API_KEY", token)
    chatwork.token = token
    connection = json.loads(site.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_UPLOAD_DB", json.dumps({**connection, "password": password}))
    data, _ = _car_photo(95)
    site.add(10418430, "10418430001.jpg", data, branch_no=1, day=DAY)
    site.add(10418430, "10418430002.jpg", b"", branch_no=2, day=DAY)  # an error path logs too
    run = trigger("plate_masking_daily", SCHEDULED)
    assert run.state == "failed" and chatwork.messages  # the token was used…
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert "Car 10418430" in output  # …the task logs are in the captured output…
    for secret in (token, password):  # …and no secret is in them, nor in XCom or the tracking file
        assert secret not in output
        assert secret not in json.dumps(_tracking())
        assert secret not in json.dumps(_all_xcoms(run), default=str)


def _all_xcoms(dag_run) -> list:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(XComModel).where(XComModel.run_id == dag_run.run_id)).all()
        return [XComModel.deserialize_value(row) for row in rows]
