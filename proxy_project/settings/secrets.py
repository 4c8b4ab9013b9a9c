"""Secrets come from the environment; the embedded default generates them once into var/."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def secret_from_env_or_file(name: str, var_dir: Path, generate: Callable[[], str]) -> str:
    value = os.environ.get(name)
    if value:
        return value
    path = var_dir / f"{name.lower()}.secret"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = generate()
    # O_EXCL: two processes starting at once must not write two different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def generate_django_secret() -> str:
    return secrets.token_urlsafe(50)


def generate_fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
