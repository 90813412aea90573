"""Debian's headless Chromium driven by selenium, for the jobs page's tests (tests/test_farm_page.py,
tests/test_farm_previews.py). Without chromium and chromium-driver the browser tests skip on a developer's machine
and fail in CI (.ci/run installs them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def require_browser() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "chromium and chromium-driver are not installed: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(message + " (.ci/run installs them; in CI the browser tests must run)")
    pytest.skip(message + " (.ci/run installs them in CI)")


@contextmanager
def headless_chromium() -> Iterator:
    chromium, driver_path = require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP violations land there
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def sign_in(driver, gateway_url: str, token: str) -> None:
    """Open the jobs page and sign in with `token`; returns once the signed-in view (the submit form) shows."""
    from selenium.webdriver.common.by import By

    driver.get(f"{gateway_url}/ui")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in-button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "app").is_displayed() and d.find_elements(By.ID, "input-prompt"))


def card(driver, prediction_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'.job[data-id="{prediction_id}"]')
