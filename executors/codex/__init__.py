"""OpenAI Codex (ChatGPT sign-in): logins, token refresh, the executor and its error table."""

from enum import StrEnum

KIND = "codex"  # UpstreamAccount.provider


class CredentialKind(StrEnum):
    CHATGPT = "chatgpt"
