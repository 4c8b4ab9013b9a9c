"""OpenAI-compatible API accounts: a base URL ending in /v1 and an API key."""

from enum import StrEnum

from accounts.providers import API_KEY_KIND

KIND = "openai_compat"  # UpstreamAccount.provider


class CredentialKind(StrEnum):
    API_KEY = API_KEY_KIND
