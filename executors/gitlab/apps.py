from executors import apps


class GitLabApp(apps.ProviderApp):
    name = "executors.gitlab"
    label = "gitlab"
    verbose_name = "GitLab Duo"
