"""GitLab Duo: logins (OAuth device/PKCE, PAT), gateway tokens, the executor and its error table."""
