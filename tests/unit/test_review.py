"""Photos to check: review reasons, the quality lines of the summary, the day's review page and list."""

from __future__ import annotations

import base64
import datetime as dt
import json
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from platemask.cli import main as platemask
from platemask.daily import finish_day, plan_day, process_cars, publish_review
from platemask.detect import Detection
from platemask.errors import InvalidImageError
from platemask.notify import CarOutcome, DaySummary, Quality, format_summary
from platemask.pipeline import PhotoOutcome
from platemask.review import REASONS, render_review_page, review_page_path, review_reasons
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking, apply_outcome, new_record, set_status
from platemask.uploads import Photo
from tests.support.photos import StubDetector, no_second_look
from tests.support.site import valid_tracking

DAY = dt.date(2026, 2, 3)
UPDATED = dt.datetime(2026, 2, 3, 10, 0)


def _plate(conf: float, source: str = "model") -> Detection:
    return Detection(box=(10.0, 10.0, 50.0, 30.0), conf=conf, source=source)


@pytest.mark.parametrize(
    ("plates", "unmasked", "first", "expected"),
    [
        pytest.param([_plate(0.9)], [], True, [], id="a-sure-plate-needs-no-look"),
        pytest.param([_plate(0.12)], [], False, ["low_confidence"], id="unsure-mask"),
        pytest.param([_plate(0.12, "closer_look")], [], False, ["low_confidence"], id="unsure-closer-look"),
        pytest.param([_plate(0.05, "second_look")], [], False, ["second_look_masked"], id="masked-on-text-alone"),
        pytest.param([], [_plate(0.05, "second_look")], True, ["second_look_unmasked"], id="review-mode-candidate"),
        pytest.param([], [], True, ["no_plate_found"], id="first-photo-without-plate"),
        pytest.param([], [], False, [], id="other-photo-without-plate"),
        pytest.param(
            [_plate(0.05, "second_look"), _plate(0.2)],
            [],
            True,
            ["second_look_masked", "low_confidence"],
            id="several-in-table-order",
        ),
    ],
)
def test_review_reasons(plates, unmasked, first, expected) -> None:
    assert review_reasons(plates, unmasked, first=first, review_conf=0.25) == expected
    assert set(expected) <= set(REASONS)


def test_summary_adds_its_lines_after_skipped_keeping_the_spec_lines() -> None:
    quality = Quality(photos=8, to_review=3, plates=10, without_plate=1, p95_ms=183)
    cars = (CarOutcome("10418430", 5, 3), CarOutcome("10418457", 3, 1, failed=1))
    text = format_summary(DaySummary(DAY, succeeded=7, failed=1, skipped=100, cars=cars, quality=quality))
    assert text.splitlines() == [
        "[info][title]🚗 ナンバープレート処理完了[/title]",
        "📅 対象日: 2026-02-03",
        "✅ 成功: 7件",
        "❌ エラー: 1件",
        "⏭️ スキップ: 100件",
        "🔍 要確認: 3件",
        "🔢 1枚あたり検出: 1.25件 (検出なし 1枚)",
        "⏱️ 処理時間 p95: 183ms/枚",
        "",
        "📊 車両別結果:",
        "  ✅ 10418430: 5枚処理, 検出3件",
        "  ⚠️ 10418457: 3枚処理, 検出1件",
        "[/info]",
    ]


def _row(file_id: int, car: str, branch: int | None) -> dict:
    return {
        "file_id": file_id,
        "car_id": car,
        "file_path": f"/upfile/{car[:4]}/{car[4:]}/{file_id}.jpg",
        "branch_no": branch,
        "updated_at": UPDATED,
    }


@pytest.fixture
def reviewed_day(settings, put_photo):
    """A processed day: car 10418430's plates are unsure, car 10418457's first photo shows no plate."""
    unsure, empty = [_row(1, "10418430", 1), _row(2, "10418430", 2)], [_row(3, "10418457", 1), _row(4, "10418457", 2)]
    for row in [*unsure, *empty]:
        put_photo(row["file_path"], seed=row["file_id"])
    tracking = DayTracking.for_settings(settings, DAY)
    plan = plan_day([*unsure, *empty], tracking)
    store = LocalStorage(settings.s3_mount)
    process_cars(
        ["10418430"],
        tracking,
        settings=settings,
        store=store,
        detector=StubDetector(conf=0.15),
        second_look=no_second_look(),
    )
    process_cars(
        ["10418457"],
        tracking,
        settings=settings,
        store=store,
        detector=StubDetector(boxes=()),
        second_look=no_second_look(),
    )
    summary = finish_day(tracking, skipped=plan.skipped)
    return tracking, store, summary


def test_finishing_counts_the_photos_to_check_and_records_the_days_figures(reviewed_day) -> None:
    tracking, _, summary = reviewed_day
    records = {r["file_id"]: r for r in json.loads(tracking.store.read(tracking.path))["processed"].values()}
    assert {k: r.get("review", []) for k, r in records.items()} == {
        1: ["low_confidence"],
        2: ["low_confidence"],
        3: ["no_plate_found"],
        4: [],
    }
    # The page outlines exactly the masks drawn: the stub's one box at conf 0.15.
    assert records[1]["review_marks"] == [
        {"box": [100, 300, 260, 380], "conf": 0.15, "source": "model", "masked": True}
    ]
    assert "review_marks" not in records[4]
    assert summary.quality == Quality(photos=4, to_review=3, plates=2, without_plate=2, p95_ms=summary.quality.p95_ms)
    assert "🔍 要確認: 3件" in format_summary(summary).splitlines()
    day = valid_tracking(json.loads(tracking.store.read(tracking.path)))  # the added fields keep to the schema
    assert day["quality"]["to_review"] == 3 and day["quality"]["photos"] == 4


class _Page(HTMLParser):
    """The rows and images of a review page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []
        self.outside: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        for name in ("src", "href"):
            if values.get(name) and not values[name].startswith("data:"):
                self.outside.append(values[name])

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _decode(uri: str) -> np.ndarray:
    header, payload = uri.split(",", 1)
    assert header == "data:image/jpeg;base64"
    return cv2.imdecode(np.frombuffer(base64.b64decode(payload), np.uint8), cv2.IMREAD_COLOR)


def test_review_page_lists_each_photo_to_check_with_its_masks_outlined(reviewed_day, settings, tmp_path) -> None:
    tracking, store, _ = reviewed_day
    path = publish_review(tracking, settings=settings, store=store, backups=store)
    assert path == review_page_path(DAY) == "/review/review_20260203.html"
    page = _Page()
    page.feed((tmp_path / "logs" / "review" / "review_20260203.html").read_text(encoding="utf-8"))
    text = " ".join(page.text)
    # Three photos, grouped by car, each with its original and published thumbnail; nothing from outside.
    for listed in ("/upfile/1041/8430/1.jpg", "/upfile/1041/8430/2.jpg", "/upfile/1041/8457/3.jpg"):
        assert listed in text and store.exists(listed)
    assert "/upfile/1041/8457/4.jpg" not in text
    assert text.index("car 10418430") < text.index("car 10418457")
    assert len(page.images) == 6 and page.outside == []
    # The original of photo 1 (640 × 480, shown at full size) has the mask's box outlined in green.
    original = _decode(page.images[0]).astype(int)
    upload = cv2.imdecode(np.frombuffer(store.read("/upfile/1041/8430/.backup/1.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert original.shape == upload.shape == (480, 640, 3)
    edge = original[340, 99:103]  # the left edge of the box (100, 300, 260, 380)
    assert (np.abs(edge - [60, 200, 60]).max(axis=1) < 40).any()
    # Outlined, not filled: inside the box the thumbnail is the upload itself.
    assert np.abs(original[320:360, 150:210] - upload[320:360, 150:210]).mean() < 6
    # The published copy is the masked one: the box is filled with the mask colour.
    published = _decode(page.images[1]).astype(int)
    assert np.abs(published[340, 180] - [43, 43, 43]).max() < 25


def test_review_page_escapes_what_comes_from_the_site() -> None:
    """Paths and car ids come from uploads and the site's database: they are shown, never run."""
    record = {
        "car_id": "9<b>",
        "file_id": 1,
        "path": '/upfile/9/"><script>alert(1)</script>.jpg',
        "review": ["large_mask"],
    }
    page = render_review_page(DAY, [record], lambda _: ("data:image/jpeg;base64,AB+/=", None))
    parsed = _Page()
    parsed.feed(page)
    assert "<script" not in page and "<b>" not in page
    assert record["path"] in " ".join(parsed.text) and "car 9<b>" in " ".join(parsed.text)
    assert parsed.images == ["data:image/jpeg;base64,AB+/="]


def test_review_command_prints_the_list_and_writes_the_page(reviewed_day, settings, monkeypatch, capsys) -> None:
    monkeypatch.setenv("S3_MOUNT", settings.s3_mount)
    monkeypatch.setenv("LOG_DIR", settings.log_dir)
    assert platemask(["review", "2026-02-03", "--page"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2026-02-03: 3 photo(s) to check"
    assert out[1:5] == [
        "car 10418430",
        "  1  /upfile/1041/8430/1.jpg  low_confidence",
        "  2  /upfile/1041/8430/2.jpg  low_confidence",
        "car 10418457",
    ]
    assert out[-1].endswith("review/review_20260203.html")
    assert platemask(["review", "2026-02-04"]) == 0
    assert capsys.readouterr().out.startswith("2026-02-04: no photos to check")


def test_a_reprocessed_photo_keeps_only_its_latest_reasons() -> None:
    photo = Photo(file_id=7, car_id="10418430", path="/upfile/1041/8430/7.jpg", branch_no=1)
    record = new_record(photo, "2026-02-03 10:00:00")
    marks = [{"box": [0, 0, 9, 9], "conf": 0.1, "source": "model", "masked": True}]
    listed = PhotoOutcome(photo, detections=1, outputs={"detect": "/upfile/1041/8430/.detect/7.jpg"})
    listed.review, listed.review_marks = ["low_confidence"], marks
    failed = PhotoOutcome(photo, error=InvalidImageError("truncated JPEG"))
    clean = PhotoOutcome(photo, detections=1, outputs={"detect": "/upfile/1041/8430/.detect/7.jpg"})

    def process(outcome: PhotoOutcome, hour: int) -> None:
        if record["status"] != "pending":
            set_status(record, "pending", f"2026-02-03 {hour:02}:00:00")  # planned again (force)
        set_status(record, "processing", f"2026-02-03 {hour:02}:00:01")
        apply_outcome(record, outcome, f"2026-02-03 {hour:02}:00:02")

    process(listed, 10)
    assert record["review"] == ["low_confidence"] and record["review_marks"] == marks
    process(failed, 11)
    assert "review" not in record and "review_marks" not in record  # nothing to check on a failed photo
    process(listed, 12)
    process(clean, 13)
    assert "review" not in record and "review_marks" not in record
