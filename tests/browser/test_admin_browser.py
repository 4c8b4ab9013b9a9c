"""A person's path through the web UI, in headless Chromium against the real proxy server:
log in, add an account with the guided flow, create a key, use it, see the usage."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from audit.rollups import rollups_update
from audit.services import usage_flush

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _fill(driver: Any, name: str, value: str) -> None:
    field = driver.find_element(By.NAME, name)
    field.clear()
    field.send_keys(value)


def _click_and_wait(driver: Any, by: str, selector: str) -> None:
    """Click something that loads a new page, and wait for that page (a bare click returns
    before navigation, which makes page_source racy under load). ChromeDriver may answer a check
    on the old page while it is replaced with an inspector error ("Node with given id does not
    belong to the document") rather than "stale": both mean "gone"."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, selector).click()

    def replaced(_: Any) -> bool:
        try:
            old.is_enabled()
        except (StaleElementReferenceException, WebDriverException):
            return True
        return False

    WebDriverWait(driver, 15).until(replaced)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def admin_login(driver: Any, base: str) -> None:
    """A superuser `boss` exists and is signed in to the admin in this browser."""
    get_user_model().objects.create_superuser("boss", "boss@example.com", "correct-horse-9")
    driver.get(base + "/admin/login/")
    _fill(driver, "username", "boss")
    _fill(driver, "password", "correct-horse-9")
    _click_and_wait(driver, By.CSS_SELECTOR, "input[type=submit]")


def _shot(driver: Any, artifacts: Path, name: str, width: int = 1500) -> None:
    # Full page height so the screenshot shows every chart, not just the first screen.
    driver.set_window_size(width, 1100)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(width, min(max(900, height + 40), 4000))
    driver.save_screenshot(str(artifacts / name))
    driver.set_window_size(1500, 1100)


def test_add_account_create_key_use_it_and_see_usage(
    browser: Any, artifacts: Path, live_proxy: Any, fake_openai: Any
) -> None:
    base = live_proxy.url
    # given a logged-in admin
    admin_login(browser, base)
    assert "Accounts, keys and usage" in browser.page_source

    # when they add an OpenAI-compatible account through the guided flow
    browser.get(base + "/admin/accounts/upstreamaccount/add/")
    _click_and_wait(browser, By.ID, "flow-openai_compatapi_key")
    _fill(browser, "label", "team-openai")
    _fill(browser, "base_url", fake_openai.url + "/v1")
    _fill(browser, "api_key", "sk-wrong")
    _click_and_wait(browser, By.ID, "flow-next")
    # a wrong key gets a human message on the field, and nothing is saved
    assert "The server rejected this API key (HTTP 401)" in browser.page_source
    _fill(browser, "api_key", "sk-upstream-A")
    _click_and_wait(browser, By.ID, "flow-next")
    # discovered models are offered, pre-selected
    boxes = browser.find_elements(By.CSS_SELECTOR, "input[name=models]")
    assert {b.get_attribute("value") for b in boxes} == {"gpt-4o-mini", "gpt-4.1"}
    assert all(b.is_selected() for b in boxes)
    _shot(browser, artifacts, "flow-choose-models.png")
    _click_and_wait(browser, By.ID, "flow-next")
    assert "Account &#x27;team-openai&#x27; added." in browser.page_source or "team-openai" in browser.page_source

    # and creates a developer key (shown once)
    browser.get(base + "/admin/accounts/clientkey/add/")
    _fill(browser, "name", "alice-laptop")
    _fill(browser, "owner_label", "alice@example.com")
    _fill(browser, "requests_per_minute", "60")
    _click_and_wait(browser, By.NAME, "_save")
    raw_key = browser.find_element(By.ID, "new-key").text.strip()
    assert raw_key.startswith("sk-team-")
    _shot(browser, artifacts, "key-created.png")

    # and a developer uses the key through the proxy
    r = httpx.post(
        base + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
        headers={"authorization": f"Bearer {raw_key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert live_proxy.wait_idle()
    async_to_sync(usage_flush)()
    assert rollups_update() == 1

    # then the accounts board shows it
    browser.get(base + "/admin/accounts/upstreamaccount/")
    row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr")
    assert "team-openai" in row.text and "API key" in row.text and "Healthy" in row.text
    assert browser.find_element(By.CSS_SELECTOR, "#result_list tbody td.field-today").text.startswith("1 req")
    _shot(browser, artifacts, "accounts-board.png", width=2000)

    # and the dashboard shows it
    browser.get(base + "/admin/audit/usagerecord/dashboard/")
    assert browser.find_element(By.ID, "kpi-requests").text == "1"
    assert "alice@example.com" in browser.find_element(By.ID, "table-developer").text
    assert "team-openai" in browser.find_element(By.ID, "table-account").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 8
    _shot(browser, artifacts, "dashboard.png", width=1700)

    # and both CSV exports contain it (fetched with the browser's session)
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    for element_id, column in (("export-rollups", "account_label"), ("export-records", "account_label")):
        url = browser.find_element(By.ID, element_id).get_attribute("href")
        resp = httpx.get(url, cookies=cookies, timeout=10)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        assert len(rows) == 1 and rows[0][column] == "team-openai"
