from tests.accounts.codex.conftest import _codex_server, codex_fake  # noqa: F401  (shared fixtures)
