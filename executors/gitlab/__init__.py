"""GitLab Duo: logins (OAuth device/PKCE, PAT), gateway tokens, the executor and its error table."""

from enum import StrEnum

KIND = "gitlab"  # UpstreamAccount.provider


class CredentialKind(StrEnum):
    OAUTH = "oauth"
    PAT = "pat"
