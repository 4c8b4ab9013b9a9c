"""Admin hardening (headers, CSRF, login throttle) and credential key rotation."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from accounts.crypto import CredentialDecryptError, decrypt_json
from accounts.models import Credential
from accounts.services import credentials_rotate
from executors.gitlab.models import GatewayToken
from executors.openai_compat.services import account_add_openai_compat

pytestmark = pytest.mark.django_db


def test_admin_security_headers() -> None:
    r = Client().get("/admin/login/")
    assert r.status_code == 200
    assert r["X-Frame-Options"] == "DENY"
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in r  # plain HTTP unless PROXY_BEHIND_TLS


def test_tls_mode_sets_hsts_and_secure_cookies(settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    r = Client().get("/admin/login/", secure=True)
    assert r["Strict-Transport-Security"].startswith("max-age=31536000")
    assert r.cookies["csrftoken"]["secure"]


def test_tls_settings_follow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import proxy_project.settings.security as sec

    monkeypatch.setenv("PROXY_BEHIND_TLS", "true")
    on = importlib.reload(sec)
    assert on.SESSION_COOKIE_SECURE and on.CSRF_COOKIE_SECURE and on.SECURE_HSTS_SECONDS > 0
    monkeypatch.delenv("PROXY_BEHIND_TLS")
    off = importlib.reload(sec)
    assert not off.PROXY_BEHIND_TLS and not off.PROXY_ALLOW_PRIVATE_UPSTREAMS


def test_admin_login_requires_csrf() -> None:
    get_user_model().objects.create_superuser("root", "r@example.com", "right-password")
    r = Client(enforce_csrf_checks=True).post(
        "/admin/login/", {"username": "root", "password": "right-password", "next": "/admin/"}
    )
    assert r.status_code == 403


def test_admin_login_is_throttled_after_repeated_failures(settings: Any) -> None:
    settings.ADMIN_LOGIN_MAX_FAILURES = 3
    get_user_model().objects.create_superuser("root", "r@example.com", "right-password")
    client = Client()
    for _ in range(3):
        r = client.post("/admin/login/", {"username": "root", "password": "wrong", "next": "/admin/"})
        assert r.status_code == 200  # the form again, with an error
    # now even the right password is refused for this user and address
    r = client.post("/admin/login/", {"username": "root", "password": "right-password", "next": "/admin/"})
    assert r.status_code == 200 and "_auth_user_id" not in client.session
    # another username from another address is unaffected
    get_user_model().objects.create_superuser("other", "o@example.com", "pw-other-123")
    other = Client(REMOTE_ADDR="10.9.9.9")
    r = other.post("/admin/login/", {"username": "other", "password": "pw-other-123", "next": "/admin/"})
    assert r.status_code == 302


def test_credentials_rotate_reencrypts_under_the_first_key(settings: Any) -> None:
    old, new = settings.CREDENTIAL_KEYS[0], Fernet.generate_key().decode()
    account = account_add_openai_compat(label="a", base_url="https://8.8.8.8/v1", api_key="sk-rot", model_names=["m"])
    GatewayToken.objects.create(account=account, secret={"token": "gt-secret"}, **_gateway_fields())
    raw_before = _raw(Credential)
    # the new key goes first; old ciphertexts stay readable until the rotation
    settings.CREDENTIAL_KEYS = [new, old]
    assert Credential.objects.get(account=account).secret["api_key"] == "sk-rot"
    out = StringIO()
    call_command("credentials_rotate", stdout=out)
    assert "re-encrypted 2" in out.getvalue()
    assert _raw(Credential) != raw_before
    # then the old key can be dropped: everything decrypts with the new key alone
    settings.CREDENTIAL_KEYS = [new]
    assert Credential.objects.get(account=account).secret["api_key"] == "sk-rot"
    assert GatewayToken.objects.get(account=account).secret["token"] == "gt-secret"
    settings.CREDENTIAL_KEYS = [old]
    with pytest.raises(CredentialDecryptError):
        decrypt_json(_raw(Credential)[0])
    # a row no configured key can read aborts the whole rotation (nothing half-rotated)
    settings.CREDENTIAL_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ValueError):
        credentials_rotate()


def _raw(model: Any) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret FROM {model._meta.db_table} ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def _gateway_fields() -> dict[str, Any]:
    from django.utils import timezone

    fields: dict[str, Any] = {}
    for f in GatewayToken._meta.concrete_fields:
        if f.name in ("id", "account", "secret") or f.null or f.has_default():
            continue
        if f.get_internal_type() == "DateTimeField":
            fields[f.name] = timezone.now()
        elif f.get_internal_type() in ("CharField", "TextField"):
            fields[f.name] = "x"
    return fields


def test_login_throttle_is_atomic_under_40_concurrent_wrong_passwords(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 F8: check and increment were separate steps, so 40 concurrent wrong passwords
    were all checked against a limit of 5. Now at most 5 ever reach the password check."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from django.contrib.auth.backends import ModelBackend
    from django.core.exceptions import PermissionDenied
    from django.test import RequestFactory

    from accounts.throttle import ThrottledModelBackend

    settings.ADMIN_LOGIN_MAX_FAILURES = 5
    get_user_model().objects.create_superuser("root", "r@example.com", "right-password")
    checked = 0
    lock = threading.Lock()
    real = ModelBackend.authenticate

    def slow_check(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal checked
        with lock:
            checked += 1
        time.sleep(0.05)  # a password hash takes time: the attempts overlap
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ModelBackend, "authenticate", slow_check)
    request = RequestFactory().post("/admin/login/", REMOTE_ADDR="10.1.2.3")

    def attempt(_: int) -> str:
        try:
            user = ThrottledModelBackend().authenticate(request, username="root", password="wrong")
        except PermissionDenied:
            return "throttled"
        return "ok" if user is not None else "wrong"

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    assert checked <= 5, f"{checked} passwords checked"
    assert outcomes.count("wrong") == checked and outcomes.count("throttled") == 40 - checked
