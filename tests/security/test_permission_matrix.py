"""The permission matrix: every admin and developer URL, action and export, for four roles.

Roles:
- admin: a superuser.
- viewer: view-only staff (every view permission of the product's models, usage and keys of
  everyone), no add/change/delete.
- staff_dev: staff with view permissions on keys and usage but neither view_all_keys nor
  view_all_usage (a developer who may open the admin): sees only what they own.
- developer: a plain user (not staff) who owns a key: the admin is closed, /me/ is theirs.

Every URL the admin site and the developer pages expose is enumerated from the URL resolver;
a URL without an entry here fails the test, so a new page or export cannot ship unclassified.
Besides the status codes, no response to staff_dev or developer may contain anything of the
other developer (bob): his key's name and prefix, his requests' model, his team.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.models import ClientKey, Team, UpstreamAccount
from accounts.services import client_key_create, team_create
from alerts.models import AlertChannel, AlertEvent, ChannelKind
from alerts.services import alert_channel_save
from audit.models import AdminAction, UsageDeadLetter, UsageRecord, UsageRollup
from audit.rollups import rollups_update
from executors.openai_compat.services import account_add_openai_compat
from pricing.models import MoneyBudget, PriceMode, PriceRule
from pricing.services import money_budget_save, price_rule_save
from routing.models import CatalogEntry

pytestmark = pytest.mark.django_db

ROLES = ("admin", "viewer", "staff_dev", "developer")
PASSWORD = "pw-matrix-123456"
BOB_MARKERS = ("bob-private-key", "bob-private-model", "bob-team")

# Product models in the admin and what is special about them.
# nobody adds, changes or deletes
READ_ONLY = {"usagerecord", "usagerollup", "adminaction", "usagedeadletter", "alertevent"}
PRODUCT_APPS = ("accounts", "audit", "routing", "pricing", "alerts")
ADD_REDIRECTS = {"upstreamaccount"}  # "add" goes to the guided flows
OWNED = {"clientkey", "usagerecord", "usagerollup"}  # staff_dev sees only their own rows


@dataclass
class World:
    clients: dict[str, Client]
    users: dict[str, Any]
    objects: dict[str, Any]  # model name -> an object of bob's (or the only one)
    own: dict[str, Any]  # model name -> staff_dev's own object, where owned
    flow_key: str


def _user(name: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD, **extra)


def _grant(user: Any, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def _record(key: ClientKey, model: str) -> UsageRecord:
    return UsageRecord.objects.create(
        request_id=uuid.uuid4(),
        created_at=timezone.now(),
        client_key_id=key.pk,
        key_prefix=key.prefix,
        account_id=UpstreamAccount.objects.get(label="acct").pk,
        account_label="acct",
        surface="chat",
        requested_model=model,
        outcome="ok",
        status_code=200,
        input_tokens=3,
        output_tokens=4,
        attempts=1,
        attempt_log=[{"account": "acct", "model": model, "status": 200, "ms": 1}],
    )


@pytest.fixture
def world() -> World:
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    viewer = _user("viewer", is_staff=True)
    product_views = [
        p.codename
        for p in Permission.objects.filter(content_type__app_label__in=PRODUCT_APPS)
        if p.codename.startswith("view_")
    ]
    _grant(viewer, *product_views)  # includes view_all_keys and view_all_usage
    staff_dev = _user("staff_dev", is_staff=True)
    _grant(staff_dev, "view_clientkey", "view_usagerecord", "view_usagerollup")
    developer = _user("developer")
    bob = _user("bob")

    account = account_add_openai_compat(
        label="acct", base_url="http://127.0.0.1:9/v1", api_key="sk-upstream-secret", model_names=["m"]
    )
    team = team_create(name="bob-team", member_ids=[bob.pk], member_key_limit=2)
    team_create(name="dev-team", member_ids=[developer.pk, staff_dev.pk], member_key_limit=2)
    bob_key, _ = client_key_create(name="bob-private-key", owner_id=bob.pk, team_id=team.pk)
    dev_key, _ = client_key_create(name="developer-key", owner_id=developer.pk)
    staff_key, _ = client_key_create(name="staff-dev-key", owner_id=staff_dev.pk)
    bob_record = _record(bob_key, "bob-private-model")
    _record(dev_key, "developer-model")
    staff_record = _record(staff_key, "staff-dev-model")
    rollups_update()
    entry = CatalogEntry.objects.create(name="alias", targets=["m"])
    price_rule = price_rule_save(PriceRule(model="m", mode=PriceMode.FREE))
    budget = money_budget_save(MoneyBudget(team=team, usd=Decimal("5"), period="month"))
    channel = alert_channel_save(AlertChannel(kind=ChannelKind.EMAIL, target="ops@example.com"))
    event = AlertEvent.objects.create(subject="account:1", kind="account", new_state="failing", message="acct failing")

    clients = {}
    for role, user in (("admin", boss), ("viewer", viewer), ("staff_dev", staff_dev), ("developer", developer)):
        client = Client()
        client.force_login(user)
        clients[role] = client
    rollup = UsageRollup.objects.filter(client_key_id=bob_key.pk, granularity="d").first()
    own_rollup = UsageRollup.objects.filter(client_key_id=staff_key.pk, granularity="d").first()
    return World(
        clients=clients,
        users={"admin": boss, "viewer": viewer, "staff_dev": staff_dev, "developer": developer, "bob": bob},
        objects={
            "upstreamaccount": account,
            "clientkey": bob_key,
            "team": team,
            "catalogentry": entry,
            "usagerecord": bob_record,
            "usagerollup": rollup,
            "adminaction": AdminAction.objects.filter(target_type="client_key", target_id=bob_key.pk).first(),
            "usagedeadletter": UsageDeadLetter.objects.create(request_id="r-1", error="DataError: x", payload="{}"),
            "user": bob,
            "group": None,
            "pricerule": price_rule,
            "moneybudget": budget,
            "alertchannel": channel,
            "alertevent": event,
        },
        own={"clientkey": staff_key, "usagerecord": staff_record, "usagerollup": own_rollup},
        flow_key="openai_compat.api_key",
    )


# --------------------------------------------------------------------------- the URL inventory


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, str | None]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.name


def _inventory() -> list[tuple[str, str]]:
    """(route, name) of every named admin and developer-page URL."""
    return [
        (route, name)
        for route, name in _walk(get_resolver().url_patterns)
        if name and (route.startswith("admin/") or route.startswith("me/"))
    ]


# Statuses a GET answers per role, for URLs that are not a model's standard pages
# (302* = redirect to a login page; 302 = another redirect).
CUSTOM: dict[str, tuple[int | str, ...]] = {
    # name: (admin, viewer, staff_dev, developer)
    "index": (200, 200, 200, "302*"),
    "login": (302, 302, 302, 200),  # staff are sent on; a plain user sees the form again
    "logout": (405, 405, 405, 302),  # POST only; the admin sends a non-staff user to its index
    "password_change": (200, 200, 200, "302*"),
    "password_change_done": (200, 200, 200, "302*"),
    "autocomplete": (403, 403, 403, "302*"),  # without its query parameters
    "jsi18n": (200, 200, 200, "302*"),
    "view_on_site": (404, 404, 404, "302*"),  # no model defines get_absolute_url
    "app_list": (200, 200, 200, "302*"),
    "accounts_flow_choose": (200, 403, 403, "302*"),
    "accounts_flow_step": (200, 403, 403, "302*"),
    "accounts_clientkey_rotate": (405, 403, 404, "302*"),  # POST only; bob's key is outside staff_dev's scope
    "audit_dashboard": (200, 200, 200, "302*"),
    "audit_export_rollups": (200, 200, 200, "302*"),
    "audit_export_records": (200, 200, 200, "302*"),
    # the developer pages
    "portal:home": ("200", "200", "200", "200"),
    "portal:login": (302, 302, 302, 302),  # already signed in
    "portal:logout": (405, 405, 405, 405),
    "portal:key_create": (405, 405, 405, 405),
    "portal:key_rotate": (405, 405, 405, 405),
    "portal:key_revoke": (405, 405, 405, 405),
    "portal:usage_export": (200, 200, 200, 200),
}

_STANDARD = re.compile(r"^(?P<app>[a-z_]+)_(?P<model>[a-z]+)_(?P<page>changelist|add|change|delete|history)$")


def _standard_expectation(model: str, page: str, role: str, own: bool) -> int | str:
    """A model's stock admin pages: permissions decide (Django's own rules, our overrides)."""
    if role == "developer":
        return "302*"
    auth_model = model in ("user", "group", "permission")
    can_view = (
        role == "admin"
        or (role == "viewer" and not auth_model)
        or (role == "staff_dev" and model in ("clientkey", "usagerecord", "usagerollup"))
    )
    if page in ("add", "delete"):
        if role != "admin" or model in READ_ONLY:
            return 403
        return 302 if page == "add" and model in ADD_REDIRECTS else 200
    if not can_view:
        return 403
    if page == "changelist":
        return 200
    if role == "staff_dev" and model in OWNED and not own:
        return 302  # "does not exist": the row is outside their scope
    return 200


def _fill(route: str, world: World, model: str | None, own: bool) -> str:
    obj = (world.own if own else world.objects).get(model or "")
    url = "/" + route
    url = re.sub(r"\^\(\?P<app_label>[a-z|_]+\)/\$", "accounts/", url)
    url = re.sub(r"<path:content_type_id>", "1", url)
    url = re.sub(r"<(?:path|int):(?:object_id|key_id|id)>", str(obj.pk if obj else world.objects["clientkey"].pk), url)
    url = url.replace("<id>", str(world.users["bob"].pk))
    return url.replace("<str:flow_key>", world.flow_key)


def _label(name: str, route: str) -> str:
    return f"portal:{name}" if route.startswith("me/") else name


def _assert_status(resp: Any, expected: int | str, where: str) -> None:
    if expected == "302*":
        assert resp.status_code == 302 and "login" in resp["Location"], f"{where}: {resp.status_code}"
    else:
        assert resp.status_code == int(expected), f"{where}: {resp.status_code} != {expected}"


def _body(resp: Any) -> str:
    if getattr(resp, "streaming", False):
        return b"".join(resp.streaming_content).decode(errors="replace")
    return resp.content.decode(errors="replace")


def _assert_no_bob(resp: Any, where: str) -> None:
    text = _body(resp)
    leaked = [m for m in BOB_MARKERS if m in text]
    bob_key = ClientKey.objects.get(name="bob-private-key")
    if bob_key.prefix in text:
        leaked.append("bob's key prefix")
    assert not leaked, f"{where} shows {leaked}"


def test_every_url_answers_each_role_as_the_matrix_says(world: World) -> None:
    seen = set()
    unclassified = []
    for route, name in _inventory():
        label = _label(name, route)
        standard = _STANDARD.match(name) if not route.startswith("me/") else None
        if not standard and label not in CUSTOM:
            unclassified.append(f"{label} ({route})")
            continue
        variants = [False, True] if standard and standard["model"] in world.own else [False]
        for own in variants:
            model = standard["model"] if standard else ("clientkey" if "key_id" in route else None)
            url = _fill(route, world, model, own)
            if standard and standard["page"] in ("change", "delete", "history") and world.objects.get(model) is None:
                continue  # no object of that kind to open (e.g. groups)
            for i, role in enumerate(ROLES):
                if standard:
                    expected = _standard_expectation(standard["model"], standard["page"], role, own)
                else:
                    expected = CUSTOM[label][i]
                resp = world.clients[role].get(url)
                _assert_status(resp, expected, f"{role} GET {url}")
                if role in ("staff_dev", "developer"):
                    _assert_no_bob(resp, f"{role} GET {url}")
                seen.add(label)
    assert not unclassified, f"admin/developer URLs missing from the permission matrix: {unclassified}"
    assert {"audit_dashboard", "audit_export_records", "portal:usage_export", "accounts_clientkey_rotate"} <= seen


# (url, whether the admin sees bob's data there: proves the check is not vacuous)
FILTERED_LISTS = [
    ("/admin/accounts/clientkey/?q=bob", True),
    ("/admin/accounts/clientkey/?owner__id__exact={bob}", False),  # not a filter: refused (?e=1)
    ("/admin/accounts/clientkey/?team__id__exact={team}", True),
    ("/admin/accounts/clientkey/?enabled__exact=1", True),
    ("/admin/audit/usagerecord/?q=bob", True),
    ("/admin/audit/usagerecord/?client_key__id__exact={key}", False),
    ("/admin/audit/usagerecord/?client_key_id={key}", False),
    ("/admin/audit/usagerecord/?account={account}", True),
    ("/admin/audit/usagerecord/?outcome__exact=ok&o=-1", True),
    ("/admin/audit/usagerollup/?client_key_id={key}", False),
    ("/admin/audit/usagerollup/?granularity__exact=d", True),
    ("/admin/audit/usagerecord/dashboard/?start={yesterday}&end={tomorrow}", True),
    # the dashboard's filters, its drill-down into the records list and the filtered exports
    ("/admin/audit/usagerecord/?team={team}", True),
    ("/admin/audit/usagerecord/?key={key}", True),
    ("/admin/audit/usagerecord/?developer=bob", True),
    ("/admin/audit/usagerecord/?team={team}&account={account}&outcome__exact=ok", True),
    ("/admin/audit/usagerecord/dashboard/?team={team}", True),
    ("/admin/audit/usagerecord/dashboard/?key={key}", True),
    ("/admin/audit/usagerecord/dashboard/?developer=bob&account={account}", True),
    ("/admin/audit/usagerecord/export/records.csv?team={team}&start={yesterday}&end={tomorrow}", True),
    ("/admin/audit/usagerecord/export/rollups.csv?developer=bob&granularity=d", True),
    ("/admin/audit/usagerecord/export/records.csv?start={yesterday}&end={tomorrow}", True),
    ("/admin/audit/usagerecord/export/rollups.csv?start={yesterday}&end={tomorrow}&granularity=h", True),
    ("/admin/audit/usagerecord/export/rollups.csv?granularity=dk", False),
    ("/admin/audit/usagerecord/{record}/change/", True),
    ("/admin/audit/usagerecord/{record}/history/", False),
    ("/admin/accounts/clientkey/{key}/change/", True),
    ("/admin/accounts/clientkey/{key}/history/", True),
    ("/me/?key={key}", False),
    ("/me/usage.csv?days=92", False),
    ("/me/usage.csv?key={key}", False),
]


def test_no_filter_or_export_reaches_another_developers_data(world: World) -> None:
    from datetime import timedelta

    today = timezone.now().date()
    values = {
        "bob": world.users["bob"].pk,
        "team": world.objects["team"].pk,
        "key": world.objects["clientkey"].pk,
        "record": world.objects["usagerecord"].pk,
        "account": world.objects["upstreamaccount"].pk,
        "yesterday": today - timedelta(days=1),
        "tomorrow": today + timedelta(days=1),
    }
    for template, admin_sees_bob in FILTERED_LISTS:
        url = template.format(**values)
        for role in ("staff_dev", "developer"):
            resp = world.clients[role].get(url)
            assert resp.status_code in (200, 302), f"{role} GET {url}: {resp.status_code}"
            _assert_no_bob(resp, f"{role} GET {url}")
        if admin_sees_bob:
            admin_text = _body(world.clients["admin"].get(url))
            assert any(m in admin_text for m in BOB_MARKERS), f"admin GET {url} shows nothing of bob's"


def _state() -> tuple[Any, ...]:
    """Everything an action could change; every product service also writes AdminAction."""
    return (
        AdminAction.objects.count(),
        UsageRecord.objects.count(),
        UsageRollup.objects.count(),
        tuple(ClientKey.objects.order_by("pk").values_list("enabled", "key_hash")),
        tuple(UpstreamAccount.objects.order_by("pk").values_list("enabled", "state")),
        Team.objects.count(),
        CatalogEntry.objects.count(),
        tuple(PriceRule.objects.values_list("pk", "mode")),
        tuple(MoneyBudget.objects.values_list("pk", "usd")),
        tuple(AlertChannel.objects.values_list("pk", "target", "enabled")),
        AlertEvent.objects.count(),
    )


def test_actions_and_writes_need_the_matching_permission(world: World) -> None:
    admin_request = type("R", (), {"user": world.users["admin"], "GET": {}, "POST": {}})()
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        if opts.app_label not in PRODUCT_APPS:
            continue
        changelist = f"/admin/{opts.app_label}/{opts.model_name}/"
        ids = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
        actions = list(model_admin.get_actions(admin_request))
        for role in ("viewer", "staff_dev", "developer"):
            client = world.clients[role]
            for action in actions:
                before = _state()
                resp = client.post(changelist, {"action": action, "_selected_action": ids, "post": "yes"})
                assert resp.status_code in (200, 302, 403), f"{role} {action} on {changelist}: {resp.status_code}"
                assert _state() == before, f"{role} could run {action} on {changelist}"
            before = _state()
            for url in (
                changelist + "add/",
                *(f"{changelist}{pk}/change/" for pk in ids),
                *(f"{changelist}{pk}/delete/" for pk in ids),
            ):
                resp = client.post(url, {"post": "yes", "name": "x", "label": "x"})
                assert resp.status_code in (302, 403), f"{role} POST {url}: {resp.status_code}"
                if role == "developer":
                    assert "login" in resp["Location"]
            assert _state() == before, f"{role} changed something through {changelist}"
    # the admin's own actions do run (the matrix would pass vacuously otherwise)
    key = world.objects["clientkey"]
    world.clients["admin"].post("/admin/accounts/clientkey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
    assert not ClientKey.objects.get(pk=key.pk).enabled


def test_custom_write_endpoints(world: World) -> None:
    bob_key, own_key = world.objects["clientkey"], world.own["clientkey"]
    before = _state()
    for role in ("viewer", "staff_dev"):
        for key in (bob_key, own_key):
            resp = world.clients[role].post(f"/admin/accounts/clientkey/{key.pk}/rotate/")
            assert resp.status_code in (403, 404), f"{role} rotate {key.name}: {resp.status_code}"
        flow = world.clients[role].post(f"/admin/accounts/upstreamaccount/guided/{world.flow_key}/", {"label": "x"})
        assert flow.status_code == 403
    resp = world.clients["developer"].post(f"/admin/accounts/clientkey/{bob_key.pk}/rotate/")
    assert resp.status_code == 302 and "login" in resp["Location"]
    # the developer pages: another developer's key is "not found", whatever the verb
    for role in ROLES:
        for action in ("rotate", "revoke"):
            resp = world.clients[role].post(f"/me/keys/{bob_key.pk}/{action}/")
            assert resp.status_code == 404, f"{role} {action} bob's key on /me/: {resp.status_code}"
        created = world.clients[role].post("/me/keys/new/", {"name": "sneaky", "team": world.objects["team"].pk})
        assert created.status_code == 302  # refused: not a member of bob's team (back to /me/ with the reason)
    assert _state() == before
    assert not ClientKey.objects.filter(name="sneaky").exists()
