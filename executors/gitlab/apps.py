from django.apps import AppConfig


class GitLabApp(AppConfig):
    name = "executors.gitlab"
    label = "gitlab"
    verbose_name = "GitLab Duo"
