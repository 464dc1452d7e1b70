"""The dashboard in a real browser: headless Chromium (Debian's package) driven by selenium.

It signs in with an admin key, watches a SKU's numbers change while the test reserves through the core,
pauses the SKU and then everything (accepting the confirmations), and sees each pause take effect.
Set FLASHSTOCK_DASHBOARD_SCREENSHOT=path.png to save a screenshot of the running page.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any, Callable, Iterator

import pytest
from werkzeug.serving import make_server

from api import create_app
from inventory import Inventory, Settings
from inventory.errors import SaleNotActive
from tests.api.conftest import ADMIN_KEYS, with_api_settings
from tests.conftest import IN_CI
from tests.helpers import make_product

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WAIT_SECONDS = 15


def _unavailable(reason: str) -> None:
    message = f"{reason}; scripts/test installs chromium, chromium-driver and selenium"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        _unavailable(f"selenium is not installed ({error})")
    if not CHROMIUM or not CHROMEDRIVER:
        _unavailable("chromium or chromedriver is not installed")
    profile = tempfile.mkdtemp(prefix="fs-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served(real_redis: Any, settings: Settings, migrated_db_url: str) -> Iterator[tuple[str, Inventory]]:
    """The API app on a real HTTP port in this process, over real Redis (its own clock, as in production)
    and a per-test PostgreSQL schema."""
    app_settings = with_api_settings(settings).with_overrides(database_url=migrated_db_url)
    inv = Inventory(real_redis, app_settings)
    server = make_server("127.0.0.1", 0, create_app(app_settings, inventory=inv, on_checkout=None), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", inv
    finally:
        server.shutdown()
        thread.join(5)


def wait_for(driver: Any, condition: Callable[[], Any], what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def check(_: Any) -> Any:
        try:
            return condition()
        except (StaleElementReferenceException, WebDriverException):
            return False

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(check, message=what)


def cell(driver: Any, sku: str, column: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'tr[data-sku="{sku}"] td.{column}').text


def click_and_confirm(driver: Any, selector: str) -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda: driver.find_element(By.CSS_SELECTOR, selector).is_enabled(), selector)
    driver.find_element(By.CSS_SELECTOR, selector).click()
    alert = wait_for(driver, lambda: driver.switch_to.alert, "the confirmation dialog")
    alert.accept()


def test_dashboard_signs_in_shows_live_numbers_and_pauses(browser: Any, served: tuple[str, Inventory]) -> None:
    from selenium.webdriver.common.by import By

    base, inv = served
    make_product(inv, "HOT-1", stock=100)
    make_product(inv, "HOT-2", stock=40)
    inv.reservations.reserve("u0", {"HOT-2": 5})

    browser.get(f"{base}/dashboard/")
    wait_for(browser, lambda: browser.find_element(By.ID, "api-key"), "the sign-in form")
    browser.find_element(By.ID, "api-key").send_keys(ADMIN_KEYS[0])
    browser.find_element(By.ID, "sign-in").click()
    wait_for(browser, lambda: cell(browser, "HOT-1", "available") == "100", "HOT-1 with 100 available")
    assert browser.find_element(By.ID, "global-state").text == "running"

    for n in range(1, 4):  # the page updates itself while the test reserves
        inv.reservations.reserve(f"u{n}", {"HOT-1": n})
    wait_for(browser, lambda: cell(browser, "HOT-1", "available") == "94" and cell(browser, "HOT-1", "held") == "6",
             "HOT-1 at 94 available, 6 held")
    assert cell(browser, "HOT-1", "open-holds") == "3"
    assert cell(browser, "HOT-1", "paid") == "0"  # from PostgreSQL (nothing persisted yet)
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#chart .u-over"), "the chart")
    screenshot = os.environ.get("FLASHSTOCK_DASHBOARD_SCREENSHOT")
    if screenshot:
        browser.save_screenshot(screenshot)

    click_and_confirm(browser, 'button.pause[data-sku="HOT-1"]')
    wait_for(browser, lambda: cell(browser, "HOT-1", "state") == "paused", "HOT-1 paused")
    with pytest.raises(SaleNotActive):
        inv.reservations.reserve("u9", {"HOT-1": 1})

    click_and_confirm(browser, "#pause-all")
    wait_for(browser, lambda: browser.find_element(By.ID, "global-state").text == "PAUSED (everything)",
             "everything paused")
    with pytest.raises(SaleNotActive) as refused:
        inv.reservations.reserve("u9", {"HOT-2": 1})
    assert refused.value.details.get("reason") == "paused_globally"
