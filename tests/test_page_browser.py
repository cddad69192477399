"""Browser: the Hosted Sandboxes page at ``/`` in headless Chromium, kept current by the
waiting read.

Fast leg (SQLite + fakeredis, whose pub/sub carries the notifications), served by a threaded
werkzeug server on a loopback port. Writes go through the API while the page is open; the
badges must move with no reload. Needs Debian's ``chromium`` and ``chromium-driver`` (skips on
a developer machine without them, fails under ``CI=true``). ``FACETS_PAGE_SCREENSHOT=<path>``
saves a screenshot of the owner's page (the README's ``docs/page.png``).
"""

from __future__ import annotations

import os

import pytest
from acme_org import SLUG
from conftest import World
from test_docs_browser import (
    browser_app,
    headless_chromium,
    is_local,
    requested_urls,
    require_chromium,
    serving,
)

from facets.extensions import state
from models.services import accounts

MOVE_TIMEOUT_S = 5  # the waiting read answers within one notification; this is a bound
LOAD_TIMEOUT_S = 20
SANDBOXES = f"/api/v1/org/{SLUG}/sandboxes"

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path):
    """``browser_app`` served on 127.0.0.1:<free port>; (base URL, app)."""
    app = browser_app(tmp_path)
    with serving(app) as base:
        yield base, app


def sign_in(browser, base: str, key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base + "/")
    WebDriverWait(browser, LOAD_TIMEOUT_S).until(
        ec.visibility_of_element_located((By.ID, "api-key"))
    )
    browser.find_element(By.ID, "api-key").send_keys(key)
    org = browser.find_element(By.ID, "org-slug")
    org.clear()
    org.send_keys(SLUG)
    browser.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()


def badges(browser) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    return {
        b.get_attribute("data-badge") or "all": b.text
        for b in browser.find_elements(By.CSS_SELECTOR, "[data-badge]")
    }


def until_badges(browser, expected: dict[str, int], timeout: float = MOVE_TIMEOUT_S) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    want = {k: str(v) for k, v in expected.items()}
    WebDriverWait(browser, timeout).until(
        lambda b: {k: v for k, v in badges(b).items() if k in want} == want,
        message=f"badges never became {want}",
    )


def project_options(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#project option")]


def test_badges_follow_writes_live_members_see_their_projects_revoked_keys_sign_out(
    served, tmp_path
):
    require_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, app = served
    world = World(app)
    world.org(SLUG)
    web = world.project(SLUG, "web", "Web")
    api = world.project(SLUG, "api", "API")
    world.sandboxes(SLUG, web, "running", 3)
    world.sandboxes(SLUG, api, "paused", 2)
    world.sandboxes(SLUG, None, "killed", 1)
    owner = world.caller(SLUG, "owner")
    member = world.caller(SLUG, "member", projects_=[web])
    client = app.test_client()

    with headless_chromium(tmp_path) as browser:
        sign_in(browser, base, owner.key)
        until_badges(browser, {"all": 6, "running": 3, "paused": 2, "killed": 1}, LOAD_TIMEOUT_S)
        assert project_options(browser) == ["All projects", "Web (3)", "API (2)"]
        WebDriverWait(browser, LOAD_TIMEOUT_S).until(
            lambda b: len(b.find_elements(By.CSS_SELECTOR, "#sandboxes tbody tr")) == 6
        )
        assert not browser.find_element(By.ID, "sign-in").is_displayed()
        browser.execute_script("window.__notReloaded = true")

        created = client.post(
            SANDBOXES, json={"project_id": str(web), "state": "running"}, headers=owner.headers
        )
        assert created.status_code == 201
        until_badges(browser, {"all": 7, "running": 4, "paused": 2, "killed": 1})
        sandbox = f"{SANDBOXES}/{created.json['id']}"
        assert (
            client.patch(sandbox, json={"state": "paused"}, headers=owner.headers).status_code
            == 200
        )
        until_badges(browser, {"all": 7, "running": 3, "paused": 3, "killed": 1})
        assert (
            client.patch(sandbox, json={"state": "killed"}, headers=owner.headers).status_code
            == 200
        )
        until_badges(browser, {"all": 7, "running": 3, "paused": 2, "killed": 2})
        assert browser.execute_script("return window.__notReloaded") is True
        assert browser.find_element(By.ID, "status").text == "Live"

        # a tab refilters through the facets call with the state applied
        browser.find_element(By.CSS_SELECTOR, '.tab[data-state="paused"]').click()
        until_badges(browser, {"all": 2, "running": 0, "paused": 2, "killed": 0})
        assert project_options(browser) == ["All projects", "API (2)"]
        WebDriverWait(browser, MOVE_TIMEOUT_S).until(
            lambda b: (
                [c.text.lower() for c in b.find_elements(By.CSS_SELECTOR, "td.state")]
                == ["paused", "paused"]
            )
        )
        browser.find_element(By.CSS_SELECTOR, '.tab[data-state=""]').click()
        until_badges(browser, {"all": 7, "running": 3, "paused": 2, "killed": 2})
        if os.environ.get("FACETS_PAGE_SCREENSHOT"):
            browser.set_window_size(1000, 560)
            browser.save_screenshot(os.environ["FACETS_PAGE_SCREENSHOT"])
        assert [u for u in requested_urls(browser) if not is_local(u)] == []

        # a member sees only their project, and a revoked key brings the sign-in back
        browser.find_element(By.ID, "sign-out").click()
        sign_in(browser, base, member.key)
        # web's 3 running and the sandbox killed above, and the unassigned killed one
        until_badges(browser, {"running": 3, "killed": 2, "paused": 0}, LOAD_TIMEOUT_S)
        assert project_options(browser) == ["All projects", "Web (4)"]
        with app.app_context(), state().unit_of_work() as uow:
            accounts.revoke_api_key(uow, prefix=member.key[: accounts.API_KEY_PREFIX_LEN])
        # the member's waiting read answers with this change; the next one is refused
        moved = client.post(
            SANDBOXES, json={"project_id": str(web), "state": "running"}, headers=owner.headers
        )
        assert moved.status_code == 201
        WebDriverWait(browser, MOVE_TIMEOUT_S * 2).until(
            ec.visibility_of_element_located((By.ID, "sign-in-error"))
        )
        assert "refused" in browser.find_element(By.ID, "sign-in-error").text
        assert browser.find_element(By.ID, "board").is_displayed() is False
        assert browser.execute_script("return sessionStorage.getItem('facets.apiKey')") is None
