"""Authenticated, versioned encryption of upstream credentials (Fernet: AES-128-CBC + HMAC).

MultiFernet decrypts with any configured key and encrypts with the first, so keys can be
rotated: add a new key in front, run `manage.py credentials_rotate`, then drop the old one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialDecryptError(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.CREDENTIAL_KEYS))


def encrypt_json(value: dict[str, Any]) -> str:
    return _current().encrypt(orjson.dumps(value)).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    try:
        data = orjson.loads(_current().decrypt(token.encode()))
    except (InvalidToken, orjson.JSONDecodeError) as exc:
        # Never include the token in the message.
        raise CredentialDecryptError("credential cannot be decrypted with the configured keys") from exc
    if not isinstance(data, dict):
        raise CredentialDecryptError("credential payload is not an object")
    return data


def reencrypt(token: str) -> str:
    return _current().rotate(token.encode()).decode()
