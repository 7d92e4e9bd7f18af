"""Photos to check in the Airflow UI: the plugin's FastAPI app behind Airflow's own auth manager.

The app is mounted at ``/platemask`` as the API server mounts it, users are Airflow's simple
auth manager users with a real JWT in the ``_token`` cookie (as the UI's login leaves it), and the
day is a real processed day on a temporary mount. Assertions are on HTTP status and bytes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from platemask.daily import finish_day, plan_day, process_cars
from platemask.storage import LocalStorage
from platemask.tracking import DayTracking
from tests.support.photos import StubDetector, no_second_look

DAY = dt.date(2026, 2, 3)
FLAGGED, CLEAN = "1", "3"  # an unsure mask on car 10418430; a sure one on car 10418457
BOX = (100, 300, 260, 380)  # where StubDetector "finds" the plate


def _row(file_id: int, car: str, branch: int) -> dict:
    return {
        "file_id": file_id,
        "car_id": car,
        "file_path": f"/upfile/{car[:4]}/{car[4:]}/{file_id}.jpg",
        "branch_no": branch,
        "updated_at": dt.datetime(2026, 2, 3, 10, 0),
    }


@pytest.fixture
def day(settings, put_photo, monkeypatch) -> DayTracking:
    """A processed day: car 10418430's masks are unsure (listed), car 10418457's are sure."""
    unsure, sure = [_row(1, "10418430", 1), _row(2, "10418430", 2)], [_row(3, "10418457", 1)]
    for row in [*unsure, *sure]:
        put_photo(row["file_path"], seed=row["file_id"])
    tracking = DayTracking.for_settings(settings, DAY)
    plan = plan_day([*unsure, *sure], tracking)
    store = LocalStorage(settings.s3_mount)
    for cars, conf in ((["10418430"], 0.15), (["10418457"], 0.9)):
        process_cars(
            cars,
            tracking,
            settings=settings,
            store=store,
            detector=StubDetector(conf=conf),
            second_look=no_second_look(),
        )
    finish_day(tracking, skipped=plan.skipped)
    monkeypatch.setenv("S3_MOUNT", settings.s3_mount)  # the app reads the settings the tasks read
    monkeypatch.setenv("LOG_DIR", settings.log_dir)
    return tracking


@pytest.fixture(scope="module")
def auth() -> Iterator[object]:
    """Airflow's metadata tables and its simple auth manager, as the API server starts them."""
    from airflow import settings as airflow_settings
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.models import import_all_models
    from airflow.models.base import Base

    import_all_models()
    Base.metadata.create_all(airflow_settings.engine)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "platemask-photo-fixes-test-" + "0123456789abcdef" * 3)
        yield init_auth_manager()


def _token(auth, name: str, role: str) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth.generate_jwt(SimpleAuthManagerUser(username=name, role=role))


@pytest.fixture
def client(auth) -> TestClient:
    from platemask_airflow.photo_fixes import app

    root = FastAPI()
    root.mount("/platemask", app)
    return TestClient(root)


def _as(client: TestClient, auth, name: str = "ana", role: str = "user") -> TestClient:
    client.cookies.set("_token", _token(auth, name, role))
    return client


PHOTO = f"/platemask/photos/{DAY}/{FLAGGED}"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        pytest.param("GET", f"/platemask/photos?day={DAY}", id="list"),
        pytest.param("GET", f"/platemask/photos/{DAY}/car/10418430", id="car"),
        pytest.param("GET", PHOTO, id="photo-page"),
        pytest.param("GET", f"{PHOTO}/original.jpg", id="original"),
        pytest.param("GET", f"{PHOTO}/published.jpg", id="published"),
        pytest.param("POST", PHOTO, id="save"),
    ],
)
def test_nothing_without_a_login(day, client, method, url) -> None:
    response = client.request(method, url, json={"approve": True})
    assert response.status_code in (401, 403)
    assert b"\xff\xd8" not in response.content  # no JPEG bytes
    assert json.loads(day.store.read(day.path))["processed"][FLAGGED].get("revision") is None


def test_a_forged_token_is_refused(day, client) -> None:
    client.cookies.set("_token", "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhbmEiLCJyb2xlIjoiYWRtaW4ifQ.forged")
    assert client.get(f"{PHOTO}/original.jpg").status_code in (401, 403)


def test_the_list_shows_the_flagged_photos_grouped_by_car(day, client, auth) -> None:
    response = _as(client, auth, role="viewer").get(f"/platemask/photos?day={DAY}")
    assert response.status_code == 200
    page = response.text
    assert "car 10418430" in page and f'href="/platemask/photos/{DAY}/{FLAGGED}"' in page
    assert "low_confidence" in page
    assert "car 10418457" not in page  # nothing to check on that car
    assert response.headers["cache-control"] == "no-store"


def test_a_car_page_lists_every_photo_of_the_car(day, client, auth) -> None:
    page = _as(client, auth, role="viewer").get(f"/platemask/photos/{DAY}/car/10418457").text
    assert f'href="/platemask/photos/{DAY}/{CLEAN}"' in page
    opened = client.get(f"/platemask/photos/{DAY}/car", params={"car_id": "10418457"}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"].endswith(f"/platemask/photos/{DAY}/car/10418457")


def test_the_photo_page_carries_its_masks_and_revision(day, client, auth) -> None:
    page = _as(client, auth, role="viewer").get(PHOTO).text
    data = json.loads(page.split('<script type="application/json" id="photo-data">', 1)[1].split("</script>", 1)[0])
    assert data["photo"]["revision"] == 0
    assert [m["box"] for m in data["photo"]["masks"]] == [list(BOX)]
    assert data["save"] == PHOTO and data["original"] == f"{PHOTO}/original.jpg"


def test_the_images_are_the_backup_and_the_published_copy(day, client, auth, settings) -> None:
    _as(client, auth, role="viewer")
    original = client.get(f"{PHOTO}/original.jpg")
    published = client.get(f"{PHOTO}/published.jpg")
    assert original.status_code == published.status_code == 200
    assert original.headers["content-type"] == "image/jpeg" and original.headers["cache-control"] == "no-store"
    store = LocalStorage(settings.s3_mount)
    assert published.content == store.read(f"/upfile/1041/8430/.detect/{FLAGGED}.jpg")
    backup = _decode(store.read(f"/upfile/1041/8430/.backup/{FLAGGED}.jpg"))
    shown = _decode(original.content)
    assert shown.shape == backup.shape and np.abs(shown - backup).mean() < 2  # the plate is there, unmasked
    x1, y1, x2, y2 = BOX
    assert np.abs(_decode(published.content)[y1:y2, x1:x2] - backup[y1:y2, x1:x2]).mean() > 20  # masked there


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(int)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"/platemask/photos/{DAY}/999", id="unknown-file-id"),
        pytest.param(f"/platemask/photos/{DAY}/999/original.jpg", id="unknown-original"),
        pytest.param(f"/platemask/photos/{DAY}/..%2F..%2F1/original.jpg", id="encoded-path"),
        pytest.param(f"/platemask/photos/{DAY}/%2Fupfile%2F1041%2F8430%2F1.jpg/original.jpg", id="a-path-as-id"),
        pytest.param(f"/platemask/photos/{DAY}/1.jpg/original.jpg", id="a-name-as-id"),
        pytest.param(f"/platemask/photos/2026-02-04/{FLAGGED}/original.jpg", id="another-day"),
    ],
)
def test_only_a_file_id_of_the_day_opens_a_photo(day, client, auth, url) -> None:
    response = _as(client, auth).get(url)
    assert response.status_code in (404, 422)
    assert b"\xff\xd8" not in response.content


def test_a_bad_day_is_refused(day, client, auth) -> None:
    assert _as(client, auth).get("/platemask/photos/2026-13-40/1/original.jpg").status_code == 422


def test_saving_needs_edit_access(day, client, auth) -> None:
    response = _as(client, auth, role="viewer").post(PHOTO, json={"approve": True, "revision": 0})
    assert response.status_code == 403
    assert json.loads(day.store.read(day.path))["processed"][FLAGGED].get("revision") is None


@pytest.mark.parametrize(
    "add",
    [
        pytest.param([[10, 10, 5]], id="three-numbers"),
        pytest.param([[[1, 2], [3, 4], [5, 6]]], id="three-corners"),
        pytest.param([["a", 1, 2, 3]], id="not-a-number"),
        pytest.param([[300, 300, 100, 100]], id="upside-down"),
        pytest.param([[-50, -50, -10, -10]], id="outside-the-photo"),
        pytest.param([[10, 10, 100000, 100000]], id="past-the-edges"),
    ],
)
def test_bad_coordinates_are_refused(day, client, auth, add) -> None:
    response = _as(client, auth).post(PHOTO, json={"add": add, "revision": 0})
    assert response.status_code == 422
    assert json.loads(day.store.read(day.path))["processed"][FLAGGED].get("revision") is None


def test_saving_an_unknown_file_id_is_404(day, client, auth) -> None:
    assert _as(client, auth).post(f"/platemask/photos/{DAY}/999", json={"approve": True}).status_code == 404


def _record(day: DayTracking, file_id: str = FLAGGED) -> dict:
    return json.loads(day.store.read(day.path))["processed"][file_id]


def _pixels(settings, folder: str, file_id: str = FLAGGED) -> np.ndarray:
    return _decode(LocalStorage(settings.s3_mount).read(f"/upfile/1041/8430/{folder}/{file_id}.jpg"))


def test_a_mask_added_by_hand_hides_the_pixels_and_names_the_user(day, client, auth, settings) -> None:
    drawn = [400, 100, 520, 160]  # somewhere the model found nothing
    response = _as(client, auth, "ana").post(PHOTO, json={"add": [drawn], "revision": 0})
    assert response.status_code == 200
    assert response.json()["revision"] == 1
    record = _record(day)
    assert record["revision"] == 1 and record["review_resolved"]["by"] == "ana"
    assert [(m["box"], m["by"]) for m in record["manual_masks"]] == [(drawn, "ana")]
    x1, y1, x2, y2 = drawn
    published, backup = _pixels(settings, ".detect"), _pixels(settings, ".backup")
    assert np.abs(published[y1:y2, x1:x2] - backup[y1:y2, x1:x2]).mean() > 20
    assert (
        json.loads(client.get(PHOTO).text.split('id="photo-data">', 1)[1].split("</script>", 1)[0])["photo"]["revision"]
        == 1
    )  # the page shows what was saved


def test_a_removed_mask_gives_the_original_pixels_back(day, client, auth, settings) -> None:
    response = _as(client, auth).post(PHOTO, json={"remove": [0], "revision": 0})
    assert response.status_code == 200
    assert _record(day)["removed_masks"][0]["by"] == "ana"
    x1, y1, x2, y2 = BOX
    published, backup = _pixels(settings, ".detect"), _pixels(settings, ".backup")
    assert np.abs(published[y1:y2, x1:x2] - backup[y1:y2, x1:x2]).mean() < 3  # JPEG noise only


def test_approving_keeps_the_pixels_and_records_who(day, client, auth, settings) -> None:
    before = LocalStorage(settings.s3_mount).read(f"/upfile/1041/8430/.detect/{FLAGGED}.jpg")
    assert _as(client, auth, "ben").post(PHOTO, json={"approve": True, "revision": 0}).status_code == 200
    assert _record(day)["review_resolved"]["by"] == "ben" and _record(day)["review_resolved"]["action"] == "approved"
    assert LocalStorage(settings.s3_mount).read(f"/upfile/1041/8430/.detect/{FLAGGED}.jpg") == before


def test_a_save_on_a_stale_revision_is_a_conflict(day, client, auth) -> None:
    _as(client, auth, "ana").post(PHOTO, json={"approve": True, "revision": 0})
    response = _as(client, auth, "ben").post(PHOTO, json={"remove": [0], "revision": 0})
    assert response.status_code == 409
    assert "ana" in response.json()["detail"]
    assert _record(day)["review_resolved"]["by"] == "ana" and "removed_masks" not in _record(day)


def test_the_summary_links_to_the_days_photos_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """With Airflow's [api] base_url set, a day with photos to check links to their page."""
    from platemask.notify import DaySummary, Quality, format_summary
    from platemask_airflow.daily import photos_to_check_url

    day = dt.date(2026, 2, 3)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.jp/")
    url = photos_to_check_url(day)
    assert url == "https://airflow.example.jp/platemask/photos?day=2026-02-03"

    def summary(to_review: int) -> str:
        quality = Quality(photos=3, to_review=to_review, plates=3, without_plate=0, p95_ms=120)
        return format_summary(DaySummary(day, 3, 0, 0, quality=quality, photos_to_check_url=url))

    assert f"🔗 要確認の写真: {url}" in summary(1).splitlines()
    assert "🔗" not in summary(0)  # nothing to check: the summary stays as it was
    monkeypatch.delenv("AIRFLOW__API__BASE_URL")
    assert photos_to_check_url(day) is None
