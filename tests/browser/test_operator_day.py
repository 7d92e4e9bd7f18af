"""The operator's day in the Airflow UI, in a real Chromium, in the order an operator lives it.

Log in; find the DAGs and their docs; trigger a day from the form; see each car labelled and
the corrupt one red; fix it and clear that car; backfill two past days; restore from the form.
Assertions are on what the page says and on the files; each step leaves a screenshot.
"""

from __future__ import annotations

import json
import time

import pytest
from selenium.webdriver.common.keys import Keys

from tests.browser.conftest import DAY, Browser
from tests.support.synthetic import make_car_photo, photo_jpeg

pytestmark = pytest.mark.browser

DAILY, RESTORE, TODAY = "plate_masking_daily", "plate_masking_restore", "plate_masking_today"
CARS = {"10418430", "10418457", "10418461", "10418475", "20260001"}  # the demo day's cars with work
RED_CAR, RED_PHOTO = "10418475", "/upfile/1041/8475/10418475003.jpg"


def _runs(ui, dag_id: str, prefix: str = "") -> list[dict]:
    return [r for r in ui.cluster.dag_runs(dag_id) if r["run_id"].startswith(prefix)]


def _wait_runs(ui, dag_id: str, prefix: str, count: int, timeout: float = 300) -> list[dict]:
    def finished() -> list[dict] | None:
        runs = _runs(ui, dag_id, prefix)
        return runs if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs) else None

    return ui.cluster.wait(finished, timeout, f"{count} {prefix or ''} run(s) of {dag_id}", lambda: _runs(ui, dag_id))


def _tracking(ui, day) -> dict:
    return json.loads((ui.logs / "tracking" / f"processed_{day:%Y%m%d}.json").read_text(encoding="utf-8"))


def _trigger_dialog(browser: Browser, dag_id: str) -> None:
    browser.open(f"/dags/{dag_id}")
    browser.find('button[aria-label="Trigger Dag"]').click()
    browser.find("#element_date")


def _mapped_cars(browser: Browser, run_id: str) -> dict[str, str]:
    """``{label: state}`` of the mapped ``mask_car`` tasks of a run, as the table shows them."""
    browser.open(f"/dags/{DAILY}/runs/{run_id}/tasks/mask_car/mapped")

    def rows() -> dict[str, str] | None:
        found = {}
        for row in browser.driver.find_elements("css selector", "tbody tr"):
            cells = row.text.split("\n")
            if len(cells) >= 2:
                found[cells[0]] = cells[1]
        return found if len(found) == len(CARS) else None

    return browser.wait(rows, 30, "the mapped car tasks")


def test_everything_listens_on_loopback_only(ui) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net writes them
    assert ui.opened_sockets, "the site opened no port at all?"
    assert {(address, port) for address, port in ui.opened_sockets if address not in loopback} == set()


def test_login_shows_the_dags_and_the_daily_docs(browser: Browser) -> None:
    browser.open("/")
    browser.find("input").send_keys("admin")
    browser.driver.find_elements("tag name", "input")[1].send_keys("platemask")
    browser.button("Sign in").click()
    browser.wait(lambda: "/auth/login" not in browser.driver.current_url, 30, "the login to go through")
    browser.wait_for_text("Dags")
    browser.open("/dags")
    page = browser.wait_for_text(DAILY, RESTORE, TODAY, "3 Dags")
    assert page.count("platemask") >= 3 and "same-day" in page  # each DAG shows its tags
    browser.shot("01-dags")
    browser.open(f"/dags/{DAILY}")
    browser.find('button[aria-label="Dag Docs"]').click()
    browser.wait_for_text("Dag Documentation", "reads the day's uploads")
    items = [li.text for li in browser.driver.find_elements("tag name", "li")]
    # The flow is a list of three steps, not one wrapped line.
    assert any(i.startswith("plan_uploads:") for i in items) and any(i.startswith("finish_day:") for i in items)
    assert any(i.startswith("mask_car, one task per car") for i in items)
    browser.shot("02-daily-docs")


def test_trigger_the_demo_day_from_the_form(browser: Browser, ui) -> None:
    _trigger_dialog(browser, DAILY)
    browser.find("#element_date").send_keys(DAY.strftime("%m%d%Y"))
    browser.button("Trigger").click()
    browser.wait_for_text("Dag run has been successfully triggered")
    [run] = _wait_runs(ui, DAILY, "manual__", 1)
    assert run["state"] == "failed"  # the corrupt upload
    cars = _mapped_cars(browser, run["run_id"])
    assert set(cars) == CARS  # each mapped task labelled with its car id
    assert cars.pop(RED_CAR) == "Failed" and set(cars.values()) == {"Success"}
    browser.shot("03-mapped-cars")


def test_fix_the_red_car_and_clear_it(browser: Browser, ui) -> None:
    (ui.root / RED_PHOTO.lstrip("/")).write_bytes(photo_jpeg(make_car_photo(475).image, quality=90))  # staff re-upload
    [run] = _runs(ui, DAILY, "manual__")
    _mapped_cars(browser, run["run_id"])
    [row] = [r for r in browser.driver.find_elements("css selector", "tbody tr") if r.text.startswith(RED_CAR)]
    row.find_element("css selector", 'button[aria-label="Clear Task Instance"]').click()
    # Downstream is already selected: finish_day is among the affected tasks.
    dialog = browser.wait_for_text("Clear Task Instance", "Affected Tasks: 2", "finish_day")
    assert "mask_car" in dialog
    browser.shot("04-clear-dialog")
    browser.button("Confirm").click()
    ui.cluster.wait(lambda: _runs(ui, DAILY, "manual__")[0]["state"] == "success", 240, "the cleared run to turn green")
    records = [r for r in _tracking(ui, DAY)["processed"].values() if r["car_id"] == RED_CAR]
    assert records and {r["status"] for r in records} == {"done"}
    assert f"✅ {RED_CAR}" in ui.chatwork.messages[-1]["body"]
    cars = _mapped_cars(browser, run["run_id"])
    assert set(cars.values()) == {"Success"}
    browser.shot("05-all-green")


def test_backfill_two_past_days_from_the_ui(browser: Browser, ui) -> None:
    first, second = ui.days[0], ui.days[1]
    _trigger_dialog(browser, DAILY)
    browser.driver.find_element("xpath", "//*[normalize-space()='Backfill']").click()
    for n, day in enumerate((first, second)):
        browser.driver.find_elements("css selector", "[data-testid=datetime-input]")[n].click()
        browser.find('input[placeholder="YYYY/MM/DD"]').send_keys(day.strftime("%Y/%m/%d"))
        clock = browser.find('input[placeholder="HH:mm"]')
        clock.send_keys("00:00")
        clock.send_keys(Keys.ESCAPE)
        time.sleep(0.5)
    browser.wait_for_text("2 runs will be triggered")
    browser.shot("06-backfill-form")
    browser.button("Run Backfill").click()
    runs = _wait_runs(ui, DAILY, "backfill__", 2)
    assert [r["state"] for r in runs] == ["success", "success"]
    for day in (first, second):
        records = list(_tracking(ui, day)["processed"].values())
        assert len(records) == 2 and {r["status"] for r in records} == {"done"}  # that day's two cars
        for record in records:  # processed exactly once
            assert [h["status"] for h in record["status_history"]].count("verified") == 1


def _fill_restore_form(browser: Browser, car_ids: str, *, dry_run: bool = True) -> None:
    browser.find("#element_date").send_keys(DAY.strftime("%m%d%Y"))
    browser.driver.find_element("xpath", "//*[normalize-space()='Select Value']").click()
    options = browser.driver.find_elements
    browser.wait(
        lambda: next(o for o in options("css selector", "[role=option]") if o.text == "done"), 10, "done"
    ).click()
    browser.find("[role=dialog] textarea").send_keys(car_ids)
    if not dry_run:  # the switch is on by default
        browser.driver.find_element("xpath", "//input[@name='element_dry_run']/ancestor::label[1]").click()


RESTORE_FORM = (
    "The day whose tracking file lists the photos",
    "Restore the photos whose tracking status",
    "A car id is 5 to 64 letters",
    "Only report what would be restored",
    "Delete the .detect/",
)


def test_restore_from_the_form(browser: Browser, ui) -> None:
    car_photos = sorted((ui.root / "upfile/1041/8430").glob("*.jpg"))
    masked = {p: p.read_bytes() for p in car_photos}
    backups = {p: (p.parent / ".backup" / p.name).read_bytes() for p in car_photos}
    assert any(masked[p] != backups[p] for p in car_photos)  # the first photo carries the banner

    _trigger_dialog(browser, RESTORE)
    page = browser.wait_for_text("Records with status", "Car ids", "Dry run", "Also remove masked copies")
    assert all(description in page for description in RESTORE_FORM)  # every field says what it wants
    _fill_restore_form(browser, "10/418")  # not a car id
    browser.button("Trigger").click()
    browser.wait_for_text("Failed to Trigger")
    browser.shot("07-restore-refused")
    assert _runs(ui, RESTORE) == []

    _trigger_dialog(browser, RESTORE)
    _fill_restore_form(browser, "10418430")
    browser.shot("08-restore-form")
    browser.button("Trigger").click()
    [dry] = _wait_runs(ui, RESTORE, "manual__", 1)
    assert dry["state"] == "success"
    assert {p: p.read_bytes() for p in car_photos} == masked  # a dry run changes nothing

    _trigger_dialog(browser, RESTORE)
    _fill_restore_form(browser, "10418430", dry_run=False)
    browser.button("Trigger").click()
    runs = _wait_runs(ui, RESTORE, "manual__", 2)
    assert {r["state"] for r in runs} == {"success"}
    assert {p: p.read_bytes() for p in car_photos} == backups  # originals back, byte for byte
