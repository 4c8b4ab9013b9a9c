"""GitLab Duo executor: AI-gateway vendor proxy first, explicit lossy instance fallbacks."""

from executors.gitlab.models import gitlab_upstream_model

__all__ = ["gitlab_upstream_model"]
