"""GitLab Duo accounts: login flows (OAuth device grant, OAuth PKCE, PAT), rotating OAuth
refresh, and the AI-gateway token minted from the account's GitLab token.

Wire reference: docs/protocols/gitlab-duo.md. Public API: `accounts.gitlab.services`.
"""
