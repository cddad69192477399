"""Browser: Swagger UI at ``/docs`` renders the facets operation in headless Chromium, offline.

Runs on the fast leg only (its own SQLite file + fakeredis), served by a real werkzeug server
on a loopback port. Needs Debian's ``chromium`` and ``chromium-driver``: without them the test
skips on a developer machine and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import require_installed

from werkzeug.serving import make_server

from facets import create_app
from facets.extensions import state
from models import migrate

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FACETS_PATH = "/api/v1/org/{org}/sandboxes/facets"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
RENDER_TIMEOUT_S = 30

pytestmark = pytest.mark.browser


def require_chromium() -> None:
    """Skip (or, under CI, fail) when Debian's Chromium and ChromeDriver are not installed."""
    require_installed(
        [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()],
        "install them with: apt-get update && apt-get install -y chromium chromium-driver",
    )


def browser_app(tmp_path: Path):
    """The app on a fresh migrated SQLite file and fakeredis."""
    db_url = f"sqlite:///{tmp_path / 'facets.sqlite3'}"
    migrate.upgrade(db_url)
    return create_app(
        {
            "TESTING": True,
            "DATABASE_URL": db_url,
            "REDIS_URL": "fakeredis://",
            "JWT_SECRET": "browser-test-jwt-secret-long-enough-for-hs256",
            "LOG_LEVEL": "WARNING",
        }
    )


@pytest.fixture
def live_server(tmp_path):
    """``browser_app`` served on 127.0.0.1:<free port> in a thread."""
    with serving(browser_app(tmp_path)) as base:
        yield base


@contextmanager
def serving(app):
    """``app`` served by a threaded werkzeug server on 127.0.0.1:<free port>; its base URL.
    Afterwards the server is stopped and the app's listener and pools are closed."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        with app.app_context():
            state().watchers.close()
            state().db.dispose()


@contextmanager
def headless_chromium(tmp_path: Path):
    """Headless Debian Chromium with a fresh profile and the network log switched on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull),
        options=options,
    )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver) -> list[str]:
    """Every URL the page asked the network for, from Chromium's DevTools performance log."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def is_local(url: str) -> bool:
    """A URL that stays on this machine: loopback HTTP or a browser-internal scheme."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname in LOOPBACK_HOSTS


def test_swagger_ui_renders_facets_operation_offline(live_server, tmp_path):
    require_chromium()
    with headless_chromium(tmp_path) as browser:
        check_docs_page(browser, live_server)


def check_docs_page(browser, live_server: str) -> None:
    """/docs renders the facets operation and nothing on the page leaves the machine."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{live_server}/docs")
    operation_css = f'.opblock-summary-path[data-path="{FACETS_PATH}"]'
    # Swagger UI either renders the operations or a message saying why it cannot.
    rendered = WebDriverWait(browser, RENDER_TIMEOUT_S).until(
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, f"{operation_css}, .version-pragma, .errors-wrapper")
        )
    )
    refusals = [
        e.text for e in browser.find_elements(By.CSS_SELECTOR, ".version-pragma, .errors-wrapper")
    ]
    assert refusals == [], "Swagger UI did not render the document"
    assert rendered.text.replace("\u200b", "") == FACETS_PATH
    assert browser.find_elements(By.CSS_SELECTOR, ".opblock-get")

    # Swagger UI shows its validator badge only when validatorUrl points somewhere.
    assert not browser.find_elements(By.CSS_SELECTOR, ".validator-badge, img[src*='validator']")
    html = browser.page_source
    assert "validator.swagger.io" not in html
    for tag, attribute in (("script", "src"), ("link", "href"), ("img", "src")):
        for element in browser.find_elements(By.TAG_NAME, tag):
            url = element.get_attribute(attribute)  # resolved to an absolute URL
            assert not url or is_local(url), f"<{tag} {attribute}={url!r}> leaves the machine"

    urls = requested_urls(browser)
    assert f"{live_server}/openapi.json" in urls
    assert [u for u in urls if not is_local(u)] == []
