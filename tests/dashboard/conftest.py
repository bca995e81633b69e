"""Browser fixtures: the server in a thread on a free loopback port, headless Debian Chromium.

Browser tests skip (and say why) when chromium or chromedriver is missing; CI installs both
(``make system-deps``). Measured render times are printed in pytest's summary.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from kiln.track import Store

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1300,1000",
                "--disable-dev-shm-usage"]  # fmt: skip


@pytest.fixture
def store(tmp_path, monkeypatch) -> Iterator[Store]:
    monkeypatch.setenv("KILN_ARTIFACTS", str(tmp_path / "artifacts"))
    store = Store(tmp_path / "kiln.db")
    yield store
    store.close()


@pytest.fixture
def server(store: Store) -> Iterator[str]:
    """The dashboard's base URL, served by uvicorn in a thread."""
    from kiln._serving import serving
    from kiln.server import create_app

    with serving(create_app(store)) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("browser tests need Debian's chromium and chromium-driver (make system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
