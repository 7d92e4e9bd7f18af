"""Photos to check in the Airflow UI, in a real Chromium: an operator fixes what the model got wrong.

Log in, open the daily run of the demo day, open its "Photos to check" tab, see the far car the
model missed; draw a mask over its plate and save; remove a mask from another photo and save.
Assertions are on the ``.detect/`` pixels and the tracking record; one fix is timed.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains

from tests.browser.conftest import DAY, Browser

pytestmark = pytest.mark.browser

DAILY = "plate_masking_daily"
REMOVED_PHOTO = "/upfile/1041/8457/10418457001.jpg"  # a car photo whose model mask the operator takes away


def _tracking(ui) -> dict:
    return json.loads((ui.logs / "tracking" / f"processed_{DAY:%Y%m%d}.json").read_text(encoding="utf-8"))


def _record(ui, path: str) -> dict:
    return next(r for r in _tracking(ui)["processed"].values() if r["path"] == path)


def _pixels(ui, path: str, folder: str) -> np.ndarray:
    folder_path, name = path.rsplit("/", 1)
    data = (ui.root / folder_path.lstrip("/") / folder / name).read_bytes()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(int)


def _banner_free(ui, shape: tuple[int, ...]) -> np.ndarray:
    """True where the banner leaves a ``.detect/`` copy's pixels alone."""
    from platemask.config import Settings
    from platemask.render import add_banner

    options = Settings.from_env({"S3_MOUNT": str(ui.root), "LOG_DIR": str(ui.logs)}).render
    black, white = np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)
    return ~((add_banner(black, options) != 0).any(axis=2) | (add_banner(white, options) != 255).any(axis=2))


@pytest.fixture(scope="module")
def day_run(ui) -> str:
    """A finished run of the demo day (the operator's test triggers one; else trigger it here)."""

    def manual() -> list[dict]:
        return [r for r in ui.cluster.dag_runs(DAILY) if r["run_id"].startswith("manual__")]

    if not manual():
        ui.cluster.airflow("dags", "trigger", DAILY, "--conf", json.dumps({"date": DAY.isoformat()}))
    finished = ui.cluster.wait(
        lambda: [r for r in manual() if r["state"] in ("success", "failed")], 300, "the demo day's run"
    )
    return finished[0]["run_id"]


def _photo_frame(browser: Browser) -> None:
    """Work inside the plugin's frame, as the operator sees it in the UI."""
    browser.driver.switch_to.default_content()
    browser.driver.switch_to.frame(browser.find("iframe"))


def _canvas_point(browser: Browser, x: float, y: float) -> tuple[int, int]:
    """Offset from the canvas's centre (Selenium's origin) of photo pixel (x, y)."""
    canvas = browser.find("#canvas")
    browser.wait(lambda: int(canvas.get_attribute("width") or 0) > 300, 20, "the original to load")
    scale = canvas.size["width"] / int(canvas.get_attribute("width"))
    return round(x * scale - canvas.size["width"] / 2), round(y * scale - canvas.size["height"] / 2)


def _drag(browser: Browser, box: tuple[int, int, int, int]) -> None:
    canvas = browser.find("#canvas")
    # Offsets are from the centre of the part of the canvas in view: have it all in view.
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    start, end = _canvas_point(browser, box[0], box[1]), _canvas_point(browser, box[2], box[3])
    actions = ActionChains(browser.driver)
    actions.move_to_element_with_offset(canvas, *start).click_and_hold()
    actions.move_to_element_with_offset(canvas, *end).release().perform()


def test_open_the_days_photos_to_check_from_the_run(browser: Browser, ui, day_run) -> None:
    from demo import FAR_PHOTO

    browser.login("admin", "platemask")
    browser.open(f"/dags/{DAILY}/runs/{day_run}/plugin/photos-of-run")
    _photo_frame(browser)
    page = browser.wait_for_text(f"Photos to check: {DAY.isoformat()}", "car 10418457")
    assert "second_look_unmasked" in page  # why the far car is listed
    file_id = str(_record(ui, FAR_PHOTO)["file_id"])
    assert browser.find(f'a[href$="/photos/{DAY.isoformat()}/{file_id}"]')
    browser.driver.switch_to.default_content()
    browser.shot("photos-to-check-list")


def test_mask_the_plate_the_model_missed(browser: Browser, ui, day_run) -> None:
    from demo import FAR_PHOTO, far_car_photo

    record = _record(ui, FAR_PHOTO)
    x1, y1, x2, y2 = far_car_photo().plate_box
    assert np.abs(_pixels(ui, FAR_PHOTO, ".detect") - _pixels(ui, FAR_PHOTO, ".backup"))[y1:y2, x1:x2].mean() < 6
    browser.login("admin", "platemask")
    browser.open(f"/dags/{DAILY}/runs/{day_run}/plugin/photos-of-run")
    _photo_frame(browser)
    started, clicks = time.monotonic(), 1
    browser.find(f'a[href$="/photos/{DAY.isoformat()}/{record["file_id"]}"]').click()
    browser.wait_for_text("Add mask", "not masked")
    browser.button("Add mask").click()
    _drag(browser, (x1 - 6, y1 - 6, x2 + 6, y2 + 6))  # a little around the plate, as a person draws
    browser.wait_for_text("new mask")
    browser.driver.switch_to.default_content()
    browser.shot("photos-to-check-photo")
    _photo_frame(browser)
    browser.button("Save").click()
    clicks += 3  # Add mask, the drag, Save
    browser.wait_for_text("Checked: fixed by admin")
    seconds = time.monotonic() - started
    print(f"\nOne fix in the UI: {clicks} clicks, {seconds:.1f} s from opening the photo to the saved result")

    fixed = _record(ui, FAR_PHOTO)
    assert fixed["review_resolved"]["by"] == "admin" and fixed["revision"] == 1
    assert [m["by"] for m in fixed["manual_masks"]] == ["admin"]
    published, original = _pixels(ui, FAR_PHOTO, ".detect"), _pixels(ui, FAR_PHOTO, ".backup")
    assert np.abs(published - original)[y1:y2, x1:x2].mean() > 20  # the plate is hidden now
    browser.driver.switch_to.default_content()
    browser.shot("photos-to-check-saved")


def test_remove_a_wrong_mask(browser: Browser, ui, day_run) -> None:
    record = _record(ui, REMOVED_PHOTO)
    [mask] = record["masks"]  # the model's one mask on this photo
    x1, y1, x2, y2 = (round(v) for v in mask["box"])
    browser.login("admin", "platemask")
    browser.open("/plugin/photos-to-check")
    _photo_frame(browser)
    browser.find('input[name="day"]').send_keys(DAY.strftime("%m%d%Y"))
    browser.button("Show").click()
    browser.find('input[name="car_id"]').send_keys("10418457")
    browser.button("Open").click()
    browser.wait_for_text("Car 10418457")
    browser.find(f'a[href$="/photos/{DAY.isoformat()}/{record["file_id"]}"]').click()
    browser.button("Remove").click()
    browser.button("Save").click()
    browser.wait_for_text("Checked: fixed by admin")
    fixed = _record(ui, REMOVED_PHOTO)
    assert fixed["masks"] == [] and fixed["removed_masks"][0]["by"] == "admin"
    published, original = _pixels(ui, REMOVED_PHOTO, ".detect"), _pixels(ui, REMOVED_PHOTO, ".backup")
    where = _banner_free(ui, original.shape)[y1:y2, x1:x2]
    assert where.any()
    assert np.abs(published - original)[y1:y2, x1:x2][where].mean() < 4  # the original's pixels, JPEG noise aside
    browser.driver.switch_to.default_content()


def test_without_a_login_the_running_api_server_gives_no_photo(ui, day_run) -> None:
    """The plugin on the real API server of the make ui stack: no login, no page, no photo, no save."""
    import requests
    from demo import FAR_PHOTO

    file_id = _record(ui, FAR_PHOTO)["file_id"]
    photo = f"{ui.url}/platemask/photos/{DAY.isoformat()}/{file_id}"
    for url in (f"{ui.url}/platemask/photos", photo, f"{photo}/original.jpg", f"{photo}/published.jpg"):
        answer = requests.get(url, timeout=30)
        assert answer.status_code in (401, 403), url
        assert not answer.content.startswith(b"\xff\xd8"), url  # not a JPEG's first bytes
    before = _record(ui, FAR_PHOTO)
    saved = requests.post(photo, json={"add": [[10, 10, 60, 40]], "revision": before.get("revision", 0)}, timeout=30)
    assert saved.status_code in (401, 403)
    assert _record(ui, FAR_PHOTO) == before  # nothing saved
