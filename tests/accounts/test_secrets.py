"""Secrets at rest: upstream credentials encrypted, client keys hashed only."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.crypto import CredentialDecryptError, decrypt_json, encrypt_json
from accounts.models import ClientKey, Credential
from accounts.services import client_key_create, client_key_hash
from executors.openai_compat.services import account_add_openai_compat

pytestmark = pytest.mark.django_db

SECRET = "sk-live-THIS-IS-A-VERY-SECRET-UPSTREAM-KEY-1234567890"


def _raw_column(sql: str, *params: object) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [str(v) for row in cursor.fetchall() for v in row]


def test_raw_credential_column_holds_no_secret() -> None:
    account = account_add_openai_compat(label="a", base_url="https://up.example/v1", api_key=SECRET, model_names=["m"])
    raw = _raw_column(f"SELECT secret FROM {Credential._meta.db_table} WHERE account_id = %s", account.id)
    assert raw and SECRET not in raw[0] and "sk-live" not in raw[0]
    # and it still decrypts through the model
    assert Credential.objects.get(account=account).secret == {"api_key": SECRET}


def test_credential_ciphertext_is_authenticated() -> None:
    token = encrypt_json({"api_key": SECRET})
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(CredentialDecryptError) as exc:
        decrypt_json(tampered)
    assert SECRET not in str(exc.value)


def test_rotation_keeps_old_ciphertexts_readable(settings: pytest.FixtureRequest) -> None:
    from cryptography.fernet import Fernet

    old_token = encrypt_json({"api_key": SECRET})
    settings.CREDENTIAL_KEYS = [Fernet.generate_key().decode(), *settings.CREDENTIAL_KEYS]  # type: ignore[attr-defined]
    assert decrypt_json(old_token) == {"api_key": SECRET}
    from accounts.crypto import reencrypt

    new_token = reencrypt(old_token)
    settings.CREDENTIAL_KEYS = settings.CREDENTIAL_KEYS[:1]  # type: ignore[attr-defined]
    assert decrypt_json(new_token) == {"api_key": SECRET}
    with pytest.raises(CredentialDecryptError):
        decrypt_json(old_token)


def test_client_keys_exist_only_as_hashes() -> None:
    key, raw = client_key_create(name="dev", owner_label="dev@example.com")
    assert raw.startswith("sk-team-") and len(raw) > 40
    stored = _raw_column(f"SELECT * FROM {ClientKey._meta.db_table} WHERE id = %s", key.id)
    assert all(raw not in value for value in stored)
    assert client_key_hash(raw) in stored
    assert key.prefix == raw[: len(key.prefix)] and len(key.prefix) < 20


def test_backfill_gives_shared_installation_ids_their_own() -> None:
    import importlib

    from django.apps import apps

    from accounts.models import UpstreamAccount

    a = account_add_openai_compat(label="x1", base_url="https://up.example/v1", api_key="k", model_names=["m"])
    b = account_add_openai_compat(label="x2", base_url="https://up.example/v1", api_key="k", model_names=["m"])
    c = account_add_openai_compat(label="x3", base_url="https://up.example/v1", api_key="k", model_names=["m"])
    UpstreamAccount.objects.filter(id__in=[a.id, b.id]).update(installation_id=c.installation_id)
    importlib.import_module("accounts.migrations.0004_backfill_installation_ids").backfill(apps, None)
    ids = list(UpstreamAccount.objects.order_by("id").values_list("installation_id", flat=True))
    assert len(set(ids)) == 3
