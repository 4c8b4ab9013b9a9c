from tests.executors.codex.conftest import _codex_server, codex_fake  # noqa: F401  (shared fixtures)
