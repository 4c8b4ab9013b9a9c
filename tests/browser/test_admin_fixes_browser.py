"""The admin fixes of issue 15 and the developer page, in headless Chromium at 1400 and 800 px
against the real server: each fixed problem is looked at the way a person would.

Screenshots (test-artifacts/): accounts-board-<w>.png, account-detail-<w>.png,
keys-<w>.png, developer-page-<w>.png.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from accounts.models import ClientKey, Credential, UpstreamAccount
from accounts.providers import API_KEY_KIND
from accounts.services import account_mark_state, client_key_create, team_create
from audit.models import AdminAction, UsageRecord
from audit.rollups import rollups_update
from executors.openai_compat.services import account_add_openai_compat
from state.cooldown import cooldown_start, family_scope
from statestore.factory import call_sync
from tests.browser.test_admin_browser import _click_and_wait, _fill
from tests.fakes.base import FakeServer
from tests.fakes.codex import CodexFakeApp

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

WIDTHS = [1400, 800]
PASSWORD = "correct-horse-9"


def _at(driver: Any, width: int) -> None:
    driver.set_window_size(width, 1000)


_WIDER = """
const out = [];
for (const el of document.querySelectorAll('body *')) {
  const r = el.getBoundingClientRect();
  if (r.right > window.innerWidth + 1 && r.width > 0) out.push(`${el.tagName}#${el.id}.${el.className} ${r.right}`);
}
return out.slice(0, 8);
"""


def _no_sideways_scroll(driver: Any, where: str) -> None:
    scroll, inner = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{where}: scrolls sideways ({scroll} px in {inner}): {driver.execute_script(_WIDER)}"


def _sidebar_open(driver: Any) -> bool:
    return bool(
        driver.execute_script(
            "const m = document.getElementById('main'); return !!m && m.classList.contains('shifted')"
        )
    )


def _shot(driver: Any, artifacts: Path, name: str, width: int) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(width, min(max(700, height + 40), 3000))
    driver.save_screenshot(str(artifacts / name))
    driver.set_window_size(width, 1000)


def _login(driver: Any, base: str, username: str, path: str = "/admin/login/") -> None:
    driver.get(base + path)
    _fill(driver, "username", username)
    _fill(driver, "password", PASSWORD)
    _click_and_wait(driver, By.CSS_SELECTOR, "input[type=submit]")


def _record(account: UpstreamAccount, key: ClientKey | None, *, ok: bool, minutes_ago: float) -> None:
    attempt: dict[str, Any] = {"account": account.label, "model": "gpt-4o-mini", "status": 200 if ok else 502, "ms": 9}
    if not ok:
        attempt["code"] = "upstream_connect_error"
    UsageRecord.objects.create(
        request_id=uuid.uuid4(),
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        client_key_id=key.pk if key else None,
        key_prefix=key.prefix if key else "",
        account_id=account.pk,
        account_label=account.label,
        surface="chat",
        requested_model="gpt-4o-mini",
        outcome="ok" if ok else "upstream_error",
        status_code=200 if ok else 502,
        input_tokens=120 if ok else 0,
        output_tokens=80 if ok else 0,
        ttfb_ms=40,
        duration_ms=300,
        attempts=1,
        attempt_log=[attempt],
        error_code="" if ok else "upstream_connect_error",
        error_message="" if ok else "connect to 10.9.9.9:443: connection refused",
    )


def _seed_board() -> dict[str, Any]:
    """Six accounts in every health state, a team, keys with limits and usage."""
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    accounts = {
        name: account_add_openai_compat(
            label=name, base_url="http://127.0.0.1:9/v1", api_key=f"sk-{name}", model_names=["gpt-4o-mini"]
        )
        for name in ("team-openai", "backup-openai", "refused-host", "rate-limited", "revoked-key", "spare")
    }
    team = team_create(name="platform", tokens_per_day=200_000, requests_per_minute=60, member_key_limit=2)
    key, _ = client_key_create(name="alice-laptop", owner_label="alice@example.com", team_id=team.pk)
    for minute in range(1, 9):
        _record(accounts["team-openai"], key, ok=True, minutes_ago=minute * 3)
        _record(accounts["backup-openai"], key, ok=minute % 3 != 0, minutes_ago=minute * 4)
    for minute in (2, 5, 9, 14):
        _record(accounts["refused-host"], key, ok=False, minutes_ago=minute)
    _record(accounts["rate-limited"], key, ok=True, minutes_ago=20)
    call_sync(
        lambda s: cooldown_start(
            s,
            account_id=accounts["rate-limited"].pk,
            scope=family_scope("gpt-4o"),
            seconds=300,
            reason="429 from upstream: Retry-After 300",
        )
    )
    account_mark_state(account_id=accounts["revoked-key"].pk, state="auth_failed", error="401 invalid api key")
    # A personal access token that expires in 72 years used to read "in 631817h52m".
    Credential.objects.filter(account=accounts["backup-openai"]).update(
        kind=API_KEY_KIND, expires_at=timezone.now() + timedelta(hours=631817, minutes=52)
    )
    rollups_update()
    return {"boss": boss, "accounts": accounts, "key": key, "team": team}


@pytest.mark.parametrize("width", WIDTHS)
def test_accounts_board_and_admin_fixes(
    browser: Any, artifacts: Path, live_proxy: Any, codex_server: FakeServer[CodexFakeApp], settings: Any, width: int
) -> None:
    settings.PROXY_BOARD_REFRESH_SECONDS = 2
    seeded = _seed_board()
    base = live_proxy.url
    _at(browser, width)
    _login(browser, base, "boss")

    # The board: worst first, health states visible, fits the window, sidebar collapsed at 800.
    browser.get(base + "/admin/accounts/upstreamaccount/")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]
    order = [r.splitlines()[0] for r in rows]
    assert order[:3] == ["revoked-key", "refused-host", "rate-limited"], order
    board = {r.splitlines()[0]: r for r in rows}
    assert "Needs a human" in board["revoked-key"] and "Credential rejected" in board["revoked-key"]
    assert "Failing" in board["refused-host"] and "4 failed in a row" in board["refused-host"]
    assert "0 % of 4" in board["refused-host"] and "upstream_connect_error" in board["refused-host"]
    assert "Cooling" in board["rate-limited"] and "cooling until" in board["rate-limited"]
    assert "(family:gpt-4o)" in board["rate-limited"]
    assert "Healthy" in board["team-openai"] and "100 % of 8" in board["team-openai"]
    assert "No recent traffic" in board["spare"]
    _no_sideways_scroll(browser, f"board at {width}px")
    assert _sidebar_open(browser) is (width > 1024)
    _shot(browser, artifacts, f"accounts-board-{width}.png", width)

    # It refreshes itself: new traffic shows up in place (nothing reloads while the order holds)...
    stamp = browser.find_element(By.ID, "board-refreshed")
    _record(seeded["accounts"]["team-openai"], None, ok=True, minutes_ago=0.1)
    WebDriverWait(browser, 15).until(lambda d: "100 % of 9" in d.find_element(By.ID, "result_list").text)
    assert int(stamp.get_attribute("data-refreshes") or 0) >= 1  # the same element: no reload
    # ...and a newly failing account moves up (the page reloads itself when the order changes).
    for minute in (0.1, 0.2, 0.3):
        _record(seeded["accounts"]["spare"], None, ok=False, minutes_ago=minute)

    def spare_is_failing(d: Any) -> bool:
        first_rows = [r.text for r in d.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")[:3]]
        return any(r.startswith("spare") and "3 failed in a row" in r for r in first_rows)

    WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException]).until(spare_is_failing)

    # Filters: failing / cooling / needs a human.
    for value, expected in (
        ("failing", {"refused-host", "spare"}),
        ("cooling", {"rate-limited"}),
        ("needs_human", {"revoked-key"}),
    ):
        browser.get(base + f"/admin/accounts/upstreamaccount/?health={value}")
        labels = {r.text.splitlines()[0] for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")}
        assert labels == expected, (value, labels)

    # The account page: expiry in years, failed attempts as a table, and a new API key saves (was a 500).
    refused = seeded["accounts"]["refused-host"]
    browser.get(base + f"/admin/accounts/upstreamaccount/{seeded['accounts']['backup-openai'].pk}/change/")
    assert "(in 72 years)" in browser.find_element(By.CSS_SELECTOR, ".field-credential_expiry").text
    browser.get(base + f"/admin/accounts/upstreamaccount/{refused.pk}/change/")
    failures = browser.find_element(By.CSS_SELECTOR, "table.failures")
    assert "upstream_connect_error" in failures.text and "connection refused" in failures.text
    assert '"status"' not in browser.find_element(By.ID, "content").text
    _no_sideways_scroll(browser, f"account page at {width}px")
    _shot(browser, artifacts, f"account-detail-{width}.png", width)
    _fill(browser, "api_key", "sk-replaced-key")
    _click_and_wait(browser, By.NAME, "_save")
    assert "was changed successfully" in browser.page_source
    assert Credential.objects.get(account=refused).secret == {"api_key": "sk-replaced-key"}
    assert AdminAction.objects.filter(action="account.credential_replace", actor_label="boss").exists()

    # Keys: usage against limits, last use, today; rotation keeps the record.
    key = seeded["key"]
    browser.get(base + "/admin/accounts/clientkey/")
    row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr").text
    assert "alice-laptop" in row and "platform" in row and "req/min" in row and "tok/day" in row
    assert "ago" in row and "tok" in row
    _no_sideways_scroll(browser, f"keys at {width}px")
    _shot(browser, artifacts, f"keys-{width}.png", width)
    browser.get(base + f"/admin/accounts/clientkey/{key.pk}/change/")
    browser.find_element(By.ID, "rotate-key").click()
    browser.switch_to.alert.accept()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "new-key"))
    assert browser.find_element(By.ID, "new-key").text.startswith("sk-team-")
    assert ClientKey.objects.get(pk=key.pk).rotated_at is not None

    # The guided flows are styled like the rest of the admin (forms.css), and a duplicate
    # ChatGPT account is refused until confirmed.
    from executors.codex.services import codex_import_auth_json

    auth = codex_server.app.auth_json()
    codex_import_auth_json(
        data=auth,
        label="codex-alice",
        base_url=codex_server.url + "/backend-api/codex",
        provider_config={"auth_url": codex_server.url},
    )
    browser.get(base + "/admin/accounts/upstreamaccount/guided/codex.import/")
    label_width = browser.execute_script(
        "return getComputedStyle(document.querySelector('#flow-form .aligned label')).width"
    )
    assert label_width.endswith("px") and 100 <= float(label_width[:-2]) <= 200, label_width
    _no_sideways_scroll(browser, f"guided flow at {width}px")

    def import_again(confirm: bool) -> None:
        _fill(browser, "label", "codex-alice-2")
        _fill(browser, "base_url", codex_server.url + "/backend-api/codex")
        _fill(browser, "auth_url", codex_server.url)
        browser.execute_script("document.getElementsByName('auth_json')[0].value = arguments[0]", json.dumps(auth))
        if confirm:
            browser.find_element(By.NAME, "allow_duplicate").click()
        _click_and_wait(browser, By.ID, "flow-next")

    import_again(confirm=False)
    assert "is already added as account 'codex-alice'" in browser.page_source
    assert not UpstreamAccount.objects.filter(label="codex-alice-2").exists()
    import_again(confirm=True)
    assert "Account 'codex-alice-2' added." in browser.page_source


@pytest.mark.parametrize("width", WIDTHS)
def test_view_only_staff_cannot_act(browser: Any, live_proxy: Any, width: int) -> None:
    seeded = _seed_board()
    viewer = get_user_model().objects.create_user("viewer", "v@example.com", PASSWORD, is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_clientkey", "view_all_keys", "view_upstreamaccount", "view_usagerecord"]
        )
    )
    base = live_proxy.url
    _at(browser, width)
    _login(browser, base, "viewer")
    # No actions on keys or accounts (the revoke that used to work for her is gone), no add link.
    for page in ("/admin/accounts/clientkey/", "/admin/accounts/upstreamaccount/"):
        browser.get(base + page)
        assert browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        assert not browser.find_elements(By.NAME, "action"), page
        assert not browser.find_elements(By.CSS_SELECTOR, ".addlink"), page
        _no_sideways_scroll(browser, f"{page} at {width}px")
    # A forged revoke is refused: the key still works.
    key = seeded["key"]
    browser.get(base + f"/admin/accounts/clientkey/{key.pk}/change/")
    assert not browser.find_elements(By.ID, "rotate-key") and not browser.find_elements(By.NAME, "_save")
    # Usage records: read-only, no delete, even for her own view permission.
    record = UsageRecord.objects.first()
    assert record is not None
    browser.get(base + f"/admin/audit/usagerecord/{record.pk}/change/")
    assert not browser.find_elements(By.CSS_SELECTOR, "a.deletelink")
    browser.get(base + f"/admin/audit/usagerecord/{record.pk}/delete/")
    assert "403" in browser.title or "Forbidden" in browser.page_source
    assert ClientKey.objects.get(pk=key.pk).enabled and UsageRecord.objects.filter(pk=record.pk).exists()


@pytest.mark.parametrize("width", WIDTHS)
def test_developer_page(browser: Any, artifacts: Path, live_proxy: Any, width: int) -> None:
    seeded = _seed_board()
    alice = get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    bob = get_user_model().objects.create_user("bob", "bob@example.com", PASSWORD)
    team = seeded["team"]
    team.members.add(alice, bob)
    mine, _ = client_key_create(name="alice-desktop", owner_id=alice.pk, team_id=team.pk, tokens_per_day=50_000)
    client_key_create(name="bob-private-key", owner_id=bob.pk, team_id=team.pk)
    for minute in range(1, 6):
        _record(seeded["accounts"]["team-openai"], mine, ok=minute != 3, minutes_ago=minute)
    rollups_update()
    base = live_proxy.url
    _at(browser, width)
    _login(browser, base, "alice", path="/me/login/")
    assert browser.current_url.endswith("/me/")
    text = browser.find_element(By.ID, "content").text
    assert "alice-desktop" in text and "bob-private-key" not in text
    assert "team-openai" not in text and "sk-team-openai" not in browser.page_source  # no accounts, no credentials
    assert "tok/day" in text and "ago" in text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#my-requests tbody tr")) == 5
    assert browser.find_elements(By.CSS_SELECTOR, ".chart svg")
    _no_sideways_scroll(browser, f"developer page at {width}px")

    # Create one within the team's allowance (2 per member: one is held).
    _fill(browser, "name", "alice-ci")
    _fill(browser, "tokens_per_day", "1000")
    _click_and_wait(browser, By.ID, "create-key")
    raw = browser.find_element(By.ID, "new-key").text
    assert raw.startswith("sk-team-")
    _no_sideways_scroll(browser, f"new key page at {width}px")
    _click_and_wait(browser, By.ID, "done")
    assert raw not in browser.page_source and "alice-ci" in browser.page_source
    assert browser.find_elements(By.ID, "no-create")  # the allowance is used up
    _shot(browser, artifacts, f"developer-page-{width}.png", width)

    # Rotate and revoke their own key.
    created = ClientKey.objects.get(name="alice-ci")
    row = browser.find_element(By.ID, f"key-{created.pk}")
    row.find_element(By.CSS_SELECTOR, "button.rotate").click()
    browser.switch_to.alert.accept()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "new-key"))
    assert browser.find_element(By.ID, "new-key").text not in ("", raw)
    _click_and_wait(browser, By.ID, "done")
    browser.find_element(By.ID, f"key-{created.pk}").find_element(By.CSS_SELECTOR, "button.revoke").click()
    browser.switch_to.alert.accept()
    # The revoke posts and the page reloads: the row found before the reload goes stale.
    WebDriverWait(browser, 10, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "revoked" in d.find_element(By.ID, f"key-{created.pk}").text
    )
    assert not ClientKey.objects.get(pk=created.pk).enabled

    # The admin stays closed to a developer.
    browser.get(base + "/admin/accounts/clientkey/")
    assert "/admin/login/" in browser.current_url and "bob-private-key" not in browser.page_source
