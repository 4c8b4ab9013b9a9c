"""An admin adds an Anthropic API account through the guided flow in headless Chromium, a
developer uses it with a Messages client, and the board and the record show it (priced in money)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from selenium.webdriver.common.by import By

from accounts.services import client_key_create
from audit.models import UsageRecord
from audit.rollups import rollups_update
from audit.services import usage_flush
from tests.browser.test_admin_browser import _click_and_wait, _fill, _shot, admin_login
from tests.fakes.anthropic import MODELS, AnthropicApp
from tests.fakes.base import FakeServer

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

KEY = "sk-ant-api03-browser-000000000000"


@pytest.fixture
def anthropic_server() -> Iterator[FakeServer[AnthropicApp]]:
    server = FakeServer(AnthropicApp(keys=(KEY,))).start()
    yield server
    server.stop()


def test_add_anthropic_account_in_the_browser_and_use_it(
    browser: Any, artifacts: Any, live_proxy: Any, anthropic_server: FakeServer[AnthropicApp]
) -> None:
    base = live_proxy.url
    admin_login(browser, base)

    # the guided flow: a wrong key is refused on its field, with nothing saved
    browser.get(base + "/admin/accounts/upstreamaccount/add/")
    _click_and_wait(browser, By.ID, "flow-anthropicapi_key")
    _fill(browser, "label", "team-claude")
    _fill(browser, "base_url", anthropic_server.url)
    _fill(browser, "api_key", "sk-ant-api03-wrong")
    _click_and_wait(browser, By.ID, "flow-next")
    assert "The API rejected this key (HTTP 401)" in browser.page_source
    # the right key: the models the API lists (paged GET /v1/models) are offered, pre-selected
    _fill(browser, "api_key", KEY)
    _click_and_wait(browser, By.ID, "flow-next")
    boxes = browser.find_elements(By.CSS_SELECTOR, "input[name=models]")
    assert {b.get_attribute("value") for b in boxes} == set(MODELS)
    assert all(b.is_selected() for b in boxes)
    _shot(browser, artifacts, "anthropic-flow-models.png")
    _click_and_wait(browser, By.ID, "flow-next")
    listed = [r for r in anthropic_server.requests if r["path"] == "/v1/models"]
    assert listed and all(r["headers"].get("x-api-key") in (KEY, "sk-ant-api03-wrong") for r in listed)

    # a developer's Messages client uses it
    _, raw_key = client_key_create(name="dev")
    r = httpx.post(
        base + "/v1/messages",
        json={"model": "claude-sonnet-4-6", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]},
        headers={"x-api-key": raw_key, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message"
    [upstream] = [q for q in anthropic_server.requests if q["path"] == "/v1/messages"]
    assert upstream["headers"]["x-api-key"] == KEY  # the account's key, never the developer's
    assert live_proxy.wait_idle()
    async_to_sync(usage_flush)()
    rollups_update()
    record = UsageRecord.objects.get()
    assert (record.account_label, record.outcome, record.status_code) == ("team-claude", "ok", 200)
    assert record.cost_nanousd > 0  # a metered key: priced in money

    # the board shows the account healthy with today's request
    browser.get(base + "/admin/accounts/upstreamaccount/")
    row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr")
    assert "team-claude" in row.text and "Healthy" in row.text, row.text
    assert browser.find_element(By.CSS_SELECTOR, "#result_list tbody td.field-today").text.startswith("1 req")
    _shot(browser, artifacts, "anthropic-board.png", width=2000)
