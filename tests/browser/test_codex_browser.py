"""Adding Codex (ChatGPT sign-in) accounts in headless Chromium against the real proxy server and
the fake ChatGPT auth server + Codex backend: an auth.json chosen with the file picker (a
mismatched one first), then the device code (pending, approved on "ChatGPT", picked up by the
page's own polling), and both accounts on the board."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_admin_browser import _click_and_wait, _fill, _shot, admin_login
from tests.fakes.base import FakeServer
from tests.fakes.codex import CodexFakeApp, make_jwt

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _settings(driver: Any, fake: FakeServer[CodexFakeApp], label: str) -> None:
    _fill(driver, "label", label)
    _fill(driver, "base_url", fake.url + "/backend-api/codex")
    _fill(driver, "auth_url", fake.url)


def test_add_codex_accounts_with_auth_json_and_device_code(
    browser: Any, artifacts: Path, live_proxy: Any, codex_server: FakeServer[CodexFakeApp], tmp_path: Path
) -> None:
    base = live_proxy.url
    admin_login(browser, base)

    # auth.json import: a file whose tokens name two ChatGPT accounts is refused with the reason
    good = codex_server.app.auth_json()
    bad = json.loads(json.dumps(good))
    bad["tokens"]["id_token"] = make_jwt({"https://api.openai.com/auth": {"chatgpt_account_id": "acc-other"}})
    del bad["tokens"]["account_id"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "auth.json").write_text(json.dumps(bad))
    (tmp_path / "auth.json").write_text(json.dumps(good))

    browser.get(base + "/admin/accounts/upstreamaccount/add/")
    _click_and_wait(browser, By.ID, "flow-codeximport")
    _settings(browser, codex_server, "codex-imported")
    browser.find_element(By.ID, "codex-auth-file").send_keys(str(tmp_path / "bad" / "auth.json"))
    WebDriverWait(browser, 5).until(lambda d: d.find_element(By.NAME, "auth_json").get_attribute("value"))
    _click_and_wait(browser, By.ID, "flow-next")
    assert "but the id token names acc-other; pin the intended one in the “ChatGPT account id” field." in (
        browser.page_source
    )
    # the tokens are not rendered back: the person chooses the right file
    assert browser.find_element(By.NAME, "auth_json").get_attribute("value") == ""
    _shot(browser, artifacts, "codex-import-mismatch.png")
    browser.find_element(By.ID, "codex-auth-file").send_keys(str(tmp_path / "auth.json"))
    WebDriverWait(browser, 5).until(
        lambda d: "auth.json loaded" in d.find_element(By.ID, "codex-auth-file-status").text
    )
    _click_and_wait(browser, By.ID, "flow-next")
    assert browser.current_url.endswith("/admin/accounts/upstreamaccount/")
    assert "Account 'codex-imported' added." in browser.page_source

    # device code: the page shows the code; "continue" before approving says it is pending
    codex_server.app.device_pending_polls = 1
    browser.get(base + "/admin/accounts/upstreamaccount/add/")
    _click_and_wait(browser, By.ID, "flow-codexdevice")
    _settings(browser, codex_server, "codex-device")
    # the fake signs in the same ChatGPT account as the import: the duplicate is confirmed
    browser.find_element(By.NAME, "allow_duplicate").click()
    _click_and_wait(browser, By.ID, "flow-next")
    code = browser.find_element(By.ID, "codex-user-code").text.strip()
    link = browser.find_element(By.ID, "codex-verification-url").get_attribute("href")
    assert code and link == codex_server.url + "/codex/device"
    _shot(browser, artifacts, "codex-device-code.png")
    _click_and_wait(browser, By.ID, "flow-next")
    assert "Not approved yet: ChatGPT says the code is still pending." in browser.page_source
    # the fake approves on its next poll: the page's own timer finishes the login
    WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/admin/accounts/upstreamaccount/"))
    assert "Account 'codex-device' added." in browser.page_source

    # both on the board, active, signed in with ChatGPT
    rows = {
        r.find_element(By.CSS_SELECTOR, "th").text.splitlines()[0]: r.text
        for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    }
    assert set(rows) == {"codex-imported", "codex-device"}
    # new accounts have no traffic yet: neither failing nor waiting for a human
    assert all("ChatGPT sign-in" in text and "No recent traffic" in text for text in rows.values()), rows
    _shot(browser, artifacts, "codex-accounts-board.png", width=2000)
