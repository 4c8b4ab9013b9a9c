"""Anthropic API accounts: an API key for api.anthropic.com or any Anthropic-compatible base URL.

Wire facts the code relies on: docs/protocols/anthropic.md.
"""

from enum import StrEnum

from accounts.providers import API_KEY_KIND

KIND = "anthropic"  # UpstreamAccount.provider
DEFAULT_BASE_URL = "https://api.anthropic.com"
# Sent when the client did not name a version (Chat/Responses clients, the probe).
ANTHROPIC_VERSION = "2023-06-01"


class CredentialKind(StrEnum):
    API_KEY = API_KEY_KIND


def base_url_normalize(url: str) -> str:
    """The account's base URL without a trailing `/v1`: paths are appended as `/v1/...`, the
    way the official SDKs take their base URL."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url
