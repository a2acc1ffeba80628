"""Fixtures for the browser tests: a real workspace, the real server (uvicorn on 127.0.0.1,
a free port, in a thread) and headless Debian chromium through chromedriver, with the
network to other hosts blocked.

Chromium absent: the tests skip with the reason, unless EWSPIPE_REQUIRE_BROWSER=1 (set by
.ci/run after installing it), which turns the skip into a failure. Screenshots go to
$EWSPIPE_TEST_ARTIFACTS (default: the test's tmp_path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_workspace import build_dashboard_workspace
from live_server import serve

from ewspipe.api.app import create_app
from ewspipe.settings import load_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def dashboard_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        return build_dashboard_workspace(tmp_path_factory.mktemp("dashboard") / "ws")


@pytest.fixture(scope="session")
def server(dashboard_config: Path) -> Iterator[str]:
    """The app over the workspace, served by uvicorn; yields its base URL."""
    with serve(create_app(load_settings(dashboard_config))) as url:
        yield url


def _chromium_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return None
    return (f"{' and '.join(missing)} not installed; install Debian's chromium and "
            "chromium-driver (apt-get install chromium chromium-driver) to run the browser "
            "tests")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    reason = _chromium_missing()
    if reason is not None:
        if os.environ.get("EWSPIPE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EWSPIPE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # every host but loopback goes through a proxy that refuses connections: the pages under
    # test must work offline, and a request elsewhere fails (a console error) even online
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800",
                "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $EWSPIPE_TEST_ARTIFACTS or the test's tmp_path."""
    folder = Path(os.environ.get("EWSPIPE_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
