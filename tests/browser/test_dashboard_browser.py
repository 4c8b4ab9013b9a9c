"""The usage dashboard as people read it, in headless Chromium at 1400 px and 800 px: names not
prefixes, spend, real percentiles, integer axes, no future hours, readable legends, drill-down
to the records, team filter, developer x account, readable failed attempts, no overflow."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By

from accounts.services import account_create, client_key_create, team_create
from audit.models import UsageRecord
from audit.rollups import rollups_update
from executors.openai_compat.services import account_add_openai_compat
from tests.browser.test_admin_browser import _click_and_wait, _fill

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

# The real TTFBs of the report: 2-107 ms (the old dashboard showed 100 / 250 / 500).
TTFBS = [2, 3, 4, 5, 6, 8, 9, 11, 14, 17, 21, 26, 33, 41, 55, 68, 79, 91, 99, 107]


def _seed() -> dict[str, Any]:
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    platform = team_create(name="Platform")
    mobile = team_create(name="Mobile")
    openai = account_add_openai_compat(
        label="openai-main", base_url="https://api.openai.com/v1", api_key="sk-x", model_names=["gpt-4o-mini"]
    )
    codex = account_create(
        label="codex-pro-1",
        provider="codex",
        base_url="https://chatgpt.com/backend-api/codex",
        model_names=["gpt-5.5"],
        credential_kind="oauth",  # the Codex sign-in credential
        secret={"access_token": "a", "refresh_token": "r"},
    )
    alice, _ = client_key_create(name="alice-laptop", owner_label="alice@example.com", team_id=platform.pk)
    bob, _ = client_key_create(name="bob-ci", owner_label="bob@example.com", team_id=mobile.pk)
    records = []
    # Every record in the past hour or earlier today: the dashboard must not draw later hours.
    for i, ttfb in enumerate(TTFBS):
        key, account, model = (alice, openai, "gpt-4o-mini") if i % 2 else (bob, codex, "gpt-5.5")
        records.append(_record(max(today, now - timedelta(seconds=20 + 10 * i)), key.pk, account, model, ttfb))
    failed = _record(max(today, now - timedelta(seconds=5)), alice.pk, openai, "gpt-4o-mini", 40)
    failed.attempts = 2
    failed.attempt_log = [
        {"account": "codex-pro-1", "model": "gpt-5.5", "status": 429, "code": "rate_limited", "ms": 12},
        {"account": "openai-main", "model": "gpt-4o-mini", "status": 200, "ms": 40},
    ]
    records.append(failed)
    UsageRecord.objects.bulk_create(records)
    rollups_update()
    return {"platform": platform, "alice": alice, "openai": openai, "records": len(records)}


def _record(at: datetime, key_id: int, account: Any, model: str, ttfb: int) -> UsageRecord:
    return UsageRecord(
        request_id=uuid.uuid4(),
        created_at=at,
        client_key_id=key_id,
        key_prefix="sk-team-" + str(key_id) * 4,
        account_id=account.pk,
        account_label=account.label,
        surface="chat",
        requested_model=model,
        served_model=model,
        outcome="ok",
        status_code=200,
        input_tokens=1200,
        cached_tokens=200,
        output_tokens=300,
        # priced as the flusher would: list price on the metered account, free on the subscription
        cost_nanousd=345_000 if account.label == "openai-main" else 0,
        price_source="list" if account.label == "openai-main" else "free",
        ttfb_ms=ttfb,
        duration_ms=ttfb + 500,
        attempts=1,
        attempt_log=[{"account": account.label, "model": model, "status": 200, "ms": ttfb}],
    )


def _login(browser: Any, base: str, width: int = 1400) -> None:
    get_user_model().objects.create_superuser("boss", "boss@example.com", "correct-horse-9")
    browser.set_window_size(width, 1000)
    browser.get(base + "/admin/login/")
    _fill(browser, "username", "boss")
    _fill(browser, "password", "correct-horse-9")
    _click_and_wait(browser, By.CSS_SELECTOR, "input[type=submit]")


def _fold_nav_sidebar(browser: Any) -> None:
    """On a narrow screen a person folds the admin's navigation sidebar (the admin remembers
    it); the page must then use the whole width."""
    sidebar = browser.find_elements(By.ID, "nav-sidebar")
    if sidebar and sidebar[0].is_displayed():
        browser.find_element(By.ID, "toggle-nav-sidebar").click()


def _no_horizontal_overflow(browser: Any) -> None:
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px"


def _boxes_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def _full_shot(browser: Any, path: Path, width: int) -> None:
    browser.set_window_size(width, 1000)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(width, min(max(900, height + 40), 6000))
    browser.save_screenshot(str(path))
    browser.set_window_size(width, 1000)


@pytest.mark.parametrize("width", [1400, 800])
def test_dashboard_reads_right_at_both_widths(browser: Any, artifacts: Path, live_proxy: Any, width: int) -> None:
    seeded = _seed()
    base = live_proxy.url
    _login(browser, base, width)
    browser.get(base + "/admin/audit/usagerecord/dashboard/?start={0}&end={0}".format(datetime.now(UTC).date()))
    if width < 1024:
        _fold_nav_sidebar(browser)

    # totals, spend and names
    assert browser.find_element(By.ID, "kpi-requests").text == str(seeded["records"])
    assert browser.find_element(By.ID, "kpi-spend").text == "$0.0038"  # 11 x $0.000345 on the metered account
    developers = browser.find_element(By.ID, "table-developer").text
    assert "alice@example.com" in developers and "bob@example.com" in developers and "sk-team-" not in developers
    assert "Platform" in browser.find_element(By.ID, "table-team").text
    assert "codex-pro-1" in browser.find_element(By.ID, "table-matrix").text.lower()  # developer x account

    # real percentiles: interpolated inside the fine buckets, not the old 100/250/500 edges
    p50, p95, p99 = (float(v) for v in re.findall(r"[\d.]+", browser.find_element(By.ID, "kpi-ttfb").text)[:3])
    assert 10 <= p50 <= 50 and p50 < p95 <= p99 <= 150, (p50, p95, p99)

    # "Today" ends at the current hour: no future hours drawn as zeros
    requests_chart = browser.find_element(By.ID, "chart-requests-account")
    points = requests_chart.find_element(By.CSS_SELECTOR, "polyline").get_attribute("points").split()
    assert len(points) == datetime.now(UTC).hour + 1
    # integer axis for a count
    ticks = [t.text for t in requests_chart.find_elements(By.CSS_SELECTOR, "svg text") if t.text.strip()]
    numeric = [t for t in ticks if re.fullmatch(r"[\d.]+", t)]
    assert numeric and all(float(t) == int(float(t)) for t in numeric), ticks
    # legends are HTML entries that never overlap each other
    for chart in browser.find_elements(By.CSS_SELECTOR, ".dash-chart"):
        boxes = [e.rect for e in chart.find_elements(By.CSS_SELECTOR, ".dash-legend li")]
        assert not any(_boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # nothing overflows sideways, at 1400 px nor at 800 px
    _no_horizontal_overflow(browser)
    _full_shot(browser, artifacts / f"dashboard-{width}.png", width)

    # drill-down: a legend entry opens the records of that series
    link = requests_chart.find_element(By.LINK_TEXT, "openai-main")
    query = parse_qs(urlparse(link.get_attribute("href")).query)
    assert query["account"] == [str(seeded["openai"].pk)]
    browser.get(link.get_attribute("href"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 11 and all("openai-main" in r.text for r in rows)
    # the records list names the developer and the team, not a prefix
    assert "alice@example.com" in rows[0].text and "Platform" in rows[0].text
    _no_horizontal_overflow_or_scrolls_inside(browser)
    # its columns sit side by side inside the visible part of the list (not one column and a
    # sideways scroll bar)
    _full_shot(browser, artifacts / f"records-{width}.png", width)
    box = browser.find_element(By.CSS_SELECTOR, "#changelist .results").rect
    visible = [
        c
        for c in rows[0].find_elements(By.CSS_SELECTOR, "td, th")
        if c.rect["width"] > 20 and c.rect["x"] + c.rect["width"] <= box["x"] + box["width"] + 1
    ]
    assert len(visible) >= 7, f"only {len(visible)} of 9 record columns visible at {width} px"

    # a failed attempt reads as words in the list and as a table on the record, not as JSON
    assert "codex-pro-1 429 → openai-main 200" in rows[0].text
    _click_and_wait(browser, By.CSS_SELECTOR, "#result_list tbody tr th a")
    attempts = browser.find_element(By.CSS_SELECTOR, "table.attempts")
    assert "rate_limited" in attempts.text and "429" in attempts.text
    assert '[{"' not in browser.page_source and "[{'" not in browser.page_source


def _no_horizontal_overflow_or_scrolls_inside(browser: Any) -> None:
    """The records table may scroll inside its own box on a narrow screen; the page may not."""
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"records page scrolls sideways by {overflow}px"


def test_dashboard_filters_by_team(browser: Any, live_proxy: Any) -> None:
    seeded = _seed()
    base = live_proxy.url
    _login(browser, base)
    browser.get(base + "/admin/audit/usagerecord/dashboard/")
    browser.find_element(By.CSS_SELECTOR, f"#id_team option[value='{seeded['platform'].pk}']").click()
    _click_and_wait(browser, By.ID, "dash-apply")
    # Platform is alice: her 10 + the failed-over one
    assert browser.find_element(By.ID, "kpi-requests").text == "11"
    assert "bob@example.com" not in browser.find_element(By.ID, "table-developer").text
    # and the records behind it, through "Show these records"
    _click_and_wait(browser, By.ID, "all-records")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 11 and all("Platform" in r.text for r in rows)
