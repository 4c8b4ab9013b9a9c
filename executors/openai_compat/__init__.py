"""OpenAI-compatible API accounts: a base URL ending in /v1 and an API key."""

from enum import StrEnum

KIND = "openai_compat"  # UpstreamAccount.provider


class CredentialKind(StrEnum):
    API_KEY = "api_key"
