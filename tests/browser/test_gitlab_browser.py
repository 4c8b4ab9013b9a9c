"""Adding GitLab Duo accounts in headless Chromium against the real proxy server and the fake
GitLab instance + AI gateway: a personal access token (a wrong one first), then the OAuth device
grant (pending, approved on "GitLab", picked up by the page's own polling)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_admin_browser import _click_and_wait, _fill, _shot, admin_login
from tests.fakes.gitlab import GitLabFakes, serve

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

CLIENT_ID = "proxy-app"
PAT = "glpat-browser-duo-user-0000000000"


@pytest.fixture
def gitlab_fakes() -> Iterator[GitLabFakes]:
    from executors.gitlab.grants import gitlab_grant_cache_clear

    fakes = serve()
    fakes.world.add_app(CLIENT_ID)
    fakes.world.add_pat(PAT)
    gitlab_grant_cache_clear()
    try:
        yield fakes
    finally:
        gitlab_grant_cache_clear()
        fakes.stop()


def _connect(driver: Any, gitlab: GitLabFakes, label: str) -> None:
    _fill(driver, "label", label)
    _fill(driver, "instance_url", gitlab.instance_url)
    _fill(driver, "gateway_url", gitlab.gateway_url)


def test_add_gitlab_accounts_with_pat_and_device_flow(
    browser: Any, artifacts: Path, live_proxy: Any, gitlab_fakes: GitLabFakes
) -> None:
    base = live_proxy.url
    admin_login(browser, base)

    # PAT: a wrong token is refused with the reason, on the token field
    browser.get(base + "/admin/accounts/upstreamaccount/add/")
    _click_and_wait(browser, By.ID, "flow-gitlabpat")
    assert browser.find_element(By.NAME, "token").get_attribute("type") == "password"
    _connect(browser, gitlab_fakes, "duo-pat")
    _fill(browser, "token", "glpat-wrong-token-000000000000000")
    _click_and_wait(browser, By.ID, "flow-next")
    assert "GitLab rejected the token: unknown, revoked or expired." in browser.page_source
    _shot(browser, artifacts, "gitlab-pat-rejected.png")
    # the right one adds the account (the URLs were kept, the token was not)
    assert browser.find_element(By.NAME, "token").get_attribute("value") == ""
    _fill(browser, "token", PAT)
    _click_and_wait(browser, By.ID, "flow-next")
    assert browser.current_url.endswith("/admin/accounts/upstreamaccount/")

    # device grant: the page shows the code; "continue" before approving says it is pending
    gitlab_fakes.world.device_pending_polls = -1  # pending until approved
    gitlab_fakes.world.device_interval = 3  # the page re-polls every 3 s
    browser.get(base + "/admin/accounts/upstreamaccount/add/")
    _click_and_wait(browser, By.ID, "flow-gitlaboauth_device")
    _connect(browser, gitlab_fakes, "duo-device")
    _fill(browser, "client_id", CLIENT_ID)
    # the same GitLab user as the PAT: the duplicate is confirmed
    browser.find_element(By.NAME, "allow_duplicate").click()
    _click_and_wait(browser, By.ID, "flow-next")
    code = browser.find_element(By.ID, "gitlab-user-code").text.strip()
    link = browser.find_element(By.ID, "gitlab-verification-uri").get_attribute("href")
    assert code and link.startswith(gitlab_fakes.instance_url + "/oauth/device")
    _shot(browser, artifacts, "gitlab-device-code.png")
    _click_and_wait(browser, By.ID, "flow-next")
    assert "Not approved yet: GitLab says the authorization is still pending." in browser.page_source
    # when the user approves on GitLab, the page's own polling finishes the login
    gitlab_fakes.world.approve_device(code)
    WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/admin/accounts/upstreamaccount/"))

    # then the board lists both, active, with their credential kinds
    rows = {
        r.find_element(By.CSS_SELECTOR, "th").text.splitlines()[0]: r.text
        for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    }
    assert set(rows) == {"duo-pat", "duo-device"}
    assert "Personal access token" in rows["duo-pat"]
    assert "OAuth" in rows["duo-device"]
    assert all("No recent traffic" in text for text in rows.values())  # neither failing nor needing a human
    _shot(browser, artifacts, "gitlab-accounts-board.png", width=2000)
