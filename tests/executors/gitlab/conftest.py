# The GitLab fakes and their per-test reset, shared with tests/accounts/gitlab.
from tests.accounts.gitlab.conftest import _gitlab_servers, gitlab  # noqa: F401
