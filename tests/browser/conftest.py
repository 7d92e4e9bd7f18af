"""The operator's browser: Chromium from Debian, driven by Selenium, against ``make ui``'s Airflow.

Nothing is downloaded: Selenium is pointed at Debian's ``chromium`` and ``chromedriver`` and
kept offline. The browser runs in the site's time zone (Asia/Tokyo), as an operator in Japan.
Every step can save a screenshot under the test's temporary folder (``PLATEMASK_SCREENSHOTS``
to keep them elsewhere).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).parents[2]
DAY = dt.date(2026, 2, 3)  # the demo day; its two earlier days are there for the backfill
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="package")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``make ui``'s site: Airflow on 127.0.0.1, the demo day and two earlier days, a Chatwork double."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make install puts them there as root)")
    sys.path.insert(0, str(REPO / "scripts"))
    import ui as ui_script

    before = listening_sockets()
    with ui_script.running_site(tmp_path_factory.mktemp("ui"), DAY) as site:
        site.opened_sockets = listening_sockets() - before
        yield site


def listening_sockets() -> set[tuple[str, int]]:
    """``(address, port)`` of every listening TCP socket on this machine, from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A":  # LISTEN
                    address, port = local.split(":")
                    found.add((address, int(port, 16)))
    return found


class Browser:
    """A logged-in Chromium and the few moves the tests make with it."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver, self.base, self.shots = driver, base, shots

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def login(self, user: str, password: str) -> None:
        """Sign in on Airflow's login page, unless this browser is signed in already."""
        self.open("/")
        self.wait(lambda: "/auth/login" in self.driver.current_url or "Dags" in self.text(), 30, "a page")
        if "/auth/login" not in self.driver.current_url:
            return
        self.find("input").send_keys(user)
        self.driver.find_elements("tag name", "input")[1].send_keys(password)
        self.button("Sign in").click()
        self.wait(lambda: "/auth/login" not in self.driver.current_url, 30, "the login to go through")

    def find(self, css: str, timeout: float = 20) -> Any:
        return self.wait(
            lambda: next((e for e in self.driver.find_elements("css selector", css) if e.is_displayed()), None),
            timeout,
            css,
        )

    def button(self, text: str, timeout: float = 20) -> Any:
        def visible():
            return next(
                (
                    b
                    for b in reversed(self.driver.find_elements("tag name", "button"))
                    if b.is_displayed() and b.text.strip() == text
                ),
                None,
            )

        return self.wait(visible, timeout, f"a button {text!r}")

    def text(self) -> str:
        return self.driver.find_element("tag name", "body").text

    def wait_for_text(self, *wanted: str, timeout: float = 30) -> str:
        return self.wait(
            lambda: all(w in self.text() for w in wanted) and self.text(), timeout, f"the page to show {wanted}"
        )

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = condition()
            except Exception:  # the page is re-rendering: elements come and go
                value = None
            if value:
                return value
            time.sleep(0.3)
        self.shot("timeout")
        raise AssertionError(f"timed out waiting for {what}; page text:\n{self.text()[:2000]}")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="package")
def browser(ui: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, env={**os.environ, "TZ": "Asia/Tokyo"})
    driver = webdriver.Chrome(service=service, options=options)
    shots = Path(os.environ.get("PLATEMASK_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    browser = Browser(driver, ui.url, shots)
    try:
        yield browser
    finally:
        driver.quit()
