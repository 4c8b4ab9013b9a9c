"""GitLab Duo accounts in the guided add-account UI: personal access token, OAuth device grant,
OAuth authorization code + PKCE (paste-callback).

The flows only collect input and translate outcomes into words; every check and every write
goes through executors.gitlab.services (the same code as `manage.py gitlab_login` /
`gitlab_add_pat`). Pending OAuth state (device code, PKCE verifier, client secret) is kept by
those services in the state store, encrypted, with the flow's TTL; the admin session only holds
the flow id and what the pages show (user code, URLs), so any web process can serve any step.
"""

from __future__ import annotations

import time
from typing import Any

from django import forms

from accounts.flows.base import MIN_POLL_SECONDS, AccountFlow, DeviceCodeFlow, FlowError, Step, duplicate_error
from accounts.flows.fields import allow_duplicate_field, label_clean, upstream_url_field, url_field
from accounts.models import UpstreamAccount
from accounts.services import DuplicateIdentity
from executors.gitlab import KIND
from executors.gitlab.config import DEFAULT_GATEWAY_URL, DEFAULT_INSTANCE_URL
from executors.gitlab.exceptions import GitLabError, LoginPending
from executors.gitlab.services import (
    _flow_load,
    gitlab_oauth_device_poll,
    gitlab_oauth_device_start,
    gitlab_oauth_pkce_finish,
    gitlab_oauth_pkce_start,
    gitlab_pat_add,
)

DEFAULT_REDIRECT_URI = "http://localhost:17171/auth/callback"
# The device page re-polls on its own; never faster than this even if GitLab says less.

# What the person can do about each failure; appended to the service's specific message.
_HINTS: dict[str, str] = {
    GitLabError.NO_DUO: "Assign a GitLab Duo seat to this user, or tick “keep the account even without Duo access”.",
    GitLabError.GRANT_DISABLED: (
        "An instance admin must enable the agent_platform_claude_code feature flag and the user's "
        "Duo Agent Platform entitlement (see docs/gitlab.md)."
    ),
    GitLabError.DIRECT_DISABLED: "An instance admin must turn off “disable direct connections” in the Duo settings.",
    GitLabError.MISSING_SCOPE: "Create a token with the api scope.",
    GitLabError.UNREACHABLE: "Check the instance URL and that this server can reach it.",
    GitLabError.RATE_LIMITED: "Wait a minute and try again.",
}
# Failures caused by the credential the person typed: shown on that field.
_TOKEN_KINDS = frozenset({GitLabError.AUTH_FAILED, GitLabError.MISSING_SCOPE})


def _flow_error(exc: GitLabError, *, field: str | None = None, suffix: str = "") -> FlowError:
    """The service's message (already specific: "token valid but this user has no GitLab Duo
    access"), a hint, and GitLab's own text as the detail line (not repeated in the message)."""
    message = exc.message
    tail = f" (GitLab said: {exc.upstream_text})"
    if exc.upstream_text and message.endswith(tail):
        message = message[: -len(tail)]
    message = message[:1].upper() + message[1:]
    if not message.endswith("."):
        message += "."
    hint = _HINTS.get(exc.kind, "")
    text = " ".join(part for part in (message, hint, suffix) if part)
    return FlowError(text, field=field, detail=exc.upstream_text)


# ------------------------------------------------------------------------------ forms


class _AccountForm(forms.Form):
    label = forms.CharField(
        max_length=100,
        help_text="A name the team recognises, e.g. 'duo-alice'. Reusing a GitLab account's label logs it in again.",
    )
    instance_url = upstream_url_field(
        "Instance URL",
        DEFAULT_INSTANCE_URL,
        "Your GitLab: https://gitlab.com or your self-managed instance.",
        named="instance URL",
    )
    gateway_url = upstream_url_field(
        "AI gateway URL",
        DEFAULT_GATEWAY_URL,
        "The GitLab AI gateway the instance uses (GitLab does not tell us; the default is GitLab's).",
        named="AI gateway URL",
    )
    keep_without_duo = forms.BooleanField(
        required=False,
        label="Keep the account even without Duo access",
        help_text="Saved as 'not entitled' with the reason and re-checked every 6 hours, instead of refused.",
    )
    allow_duplicate = allow_duplicate_field("GitLab user")

    def clean_label(self) -> str:
        return label_clean(self.cleaned_data["label"], KIND)


class PatForm(_AccountForm):
    token = forms.CharField(
        label="Personal access token",
        widget=forms.PasswordInput(render_value=False),
        help_text="glpat-…, scope api (ai_features alone also works). Write-only: stored encrypted, never shown.",
    )
    field_order = ["label", "instance_url", "gateway_url", "token", "keep_without_duo"]


class _OAuthForm(_AccountForm):
    client_id = forms.CharField(
        max_length=200,
        label="OAuth application ID",
        help_text="Of an OAuth application (user, group or admin area → Applications) with scopes api read_user.",
    )
    client_secret = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        label="Application secret (optional)",
        help_text="Only for a confidential application. Write-only; stored encrypted.",
    )


class DeviceConnectForm(_OAuthForm):
    field_order = ["label", "instance_url", "gateway_url", "client_id", "client_secret", "keep_without_duo"]


class PkceConnectForm(_OAuthForm):
    redirect_uri = url_field(
        "Redirect URI",
        DEFAULT_REDIRECT_URI,
        "Exactly as registered on the application. Nothing needs to listen there: you paste the URL back.",
    )
    field_order = [
        "label",
        "instance_url",
        "gateway_url",
        "client_id",
        "client_secret",
        "redirect_uri",
        "keep_without_duo",
    ]


class PkceCallbackForm(forms.Form):
    callback = forms.CharField(
        label="Callback URL or code",
        max_length=4000,
        widget=forms.TextInput(attrs={"size": 90, "autocomplete": "off"}),
        help_text="The full address your browser was sent to after approving (…?code=…&state=…), or just the code.",
    )


# ------------------------------------------------------------------------------ flows


def _settings(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: data.get(k, False) for k in ("label", "instance_url", "gateway_url", "keep_without_duo", "allow_duplicate")
    }


class _GitLabFlow(AccountFlow):
    provider = KIND
    # What the first form shows again when the person comes back to it (Back, or a refusal).
    refill: tuple[str, ...] = ("label", "instance_url", "gateway_url")

    def initial(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        return {k: state[k] for k in self.refill if k in state} if step.name == self.steps[0].name else {}


class GitLabPatFlow(_GitLabFlow):
    key = "gitlab.pat"
    title = "GitLab Duo — personal access token (PAT)"
    description = "Paste a glpat- token. Simplest; the token is checked and GitLab Duo access is probed first."
    steps = (
        Step(
            "connect",
            "Token",
            PatForm,
            "We check the token (active, scopes, expiry), who it belongs to, and mint a Duo gateway token "
            "with it. Nothing is saved unless that works (or you keep it without Duo access).",
        ),
    )

    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        # The token goes to state only for the finish() call of this same request; finish pops
        # it so a failed attempt never leaves it in the session.
        state.update(_settings(data), token=data["token"])

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        token = state.pop("token", "")
        if not token:
            raise FlowError("Enter the token again (it is never kept between attempts).", field="token")
        try:
            return gitlab_pat_add(token=token, actor=actor, **_settings(state))
        except DuplicateIdentity as exc:
            raise duplicate_error(exc, ended=False) from None
        except GitLabError as exc:
            raise _flow_error(exc, field="token" if exc.kind in _TOKEN_KINDS else None) from None


class GitLabDeviceFlow(_GitLabFlow, DeviceCodeFlow):
    key = "gitlab.oauth_device"
    refill = (*_GitLabFlow.refill, "client_id")
    title = "GitLab Duo — OAuth, device code"
    description = (
        "Sign in as the GitLab user in any browser and type a code; the token refreshes itself. "
        "Needs an OAuth application and GitLab 17.3+."
    )
    steps = (
        Step(
            "connect", "OAuth application", DeviceConnectForm, "We ask GitLab for a one-time code for you to approve."
        ),
        DeviceCodeFlow.approve_step(
            "GitLab",
            "Open the link as the GitLab user whose Duo seat the team will use, enter the code, and authorize.",
            template="gitlab/device_wait.html",
        ),
    )

    def device_start(self, data: dict[str, Any], state: dict[str, Any]) -> None:
        try:
            start = gitlab_oauth_device_start(
                client_id=data["client_id"], client_secret=data.get("client_secret") or "", **_settings(data)
            )
        except GitLabError as exc:
            if exc.status in (400, 401):
                # invalid_client: GitLab does not know this application id (or the secret is wrong).
                raise _flow_error(exc, field="client_id", suffix="Check the application ID (and secret).") from None
            raise _flow_error(exc) from None
        # Only what the page shows and the flow id; the device code and secret stay in the store.
        state.update(
            {k: data[k] for k in ("label", "instance_url", "gateway_url", "client_id")},
            flow_id=start.flow_id,
            user_code=start.user_code,
            verification_uri=start.verification_uri,
            verification_uri_complete=start.verification_uri_complete,
            interval=start.interval,
            expires_at=time.time() + start.expires_in,
            polls=0,
            ended=False,
        )

    def device_links(self, state: dict[str, Any]) -> dict[str, str]:
        return {
            "verification_uri": state.get("verification_uri", ""),
            "verification_uri_complete": state.get("verification_uri_complete", ""),
        }

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        # GitLab reports an expired code itself (expired_token), so no clock check here.
        self.device_poll_begin(state)
        try:
            return gitlab_oauth_device_poll(flow_id=state["flow_id"], actor=actor)
        except DuplicateIdentity as exc:
            state["ended"] = True
            raise duplicate_error(exc, ended=True) from None
        except LoginPending as exc:
            state["interval"] = exc.interval
            if exc.slow_down:
                raise FlowError(
                    f"GitLab asked us to check less often (slow_down); the next check is in {exc.interval:.0f} s. "
                    "Nothing is wrong: approve the code on GitLab if you have not yet."
                ) from None
            raise FlowError(
                f"Not approved yet: GitLab says the authorization is still pending. Open the link, enter "
                f"{state.get('user_code', 'the code')} and click Authorize; this page checks again every "
                f"{max(MIN_POLL_SECONDS, exc.interval):.0f} s."
            ) from None
        except GitLabError as exc:
            if exc.kind == GitLabError.LOGIN:
                # expired / denied / unknown flow: the device code is spent, polling cannot help.
                state["ended"] = True
                raise _flow_error(exc) from None
            # Approved, but the Duo probe refused: the code is spent too (single-use).
            state["ended"] = True
            raise _flow_error(exc, suffix="Fix that, then start again.") from None


def _pkce_alive(flow_id: str) -> bool:
    """Whether the pending PKCE login (verifier) still exists in the state store: the service
    drops it once a code exchange was attempted, after which only a restart can help."""
    try:
        _flow_load(flow_id)
    except GitLabError:
        return False
    return True


class GitLabPkceFlow(_GitLabFlow):
    key = "gitlab.oauth_pkce"
    refill = (*_GitLabFlow.refill, "client_id", "redirect_uri")
    title = "GitLab Duo — OAuth, authorization code + PKCE"
    description = (
        "Open a GitLab sign-in link, approve, and paste back the address you were redirected to. "
        "Needs an OAuth application with that redirect URI."
    )
    steps = (
        Step("connect", "OAuth application", PkceConnectForm, "We prepare a sign-in link (PKCE, S256)."),
        Step(
            "callback",
            "Authorize and paste back",
            PkceCallbackForm,
            "",
            template="gitlab/pkce_callback.html",
        ),
    )

    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        if step.name == "callback":
            state["callback"] = data["callback"]
            return
        start = gitlab_oauth_pkce_start(
            client_id=data["client_id"],
            client_secret=data.get("client_secret") or "",
            redirect_uri=data["redirect_uri"],
            **_settings(data),
        )
        state.update(
            {k: data[k] for k in ("label", "instance_url", "gateway_url", "client_id", "redirect_uri")},
            flow_id=start.flow_id,
            authorize_url=start.authorize_url,
        )

    def context(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        if step.name != "callback":
            return {}
        return {
            "authorize_url": state.get("authorize_url", ""),
            "redirect_uri": state.get("redirect_uri", ""),
            "ended": bool(state.get("ended")),
        }

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        if state.get("ended"):
            raise FlowError("This sign-in link was used up by the last attempt. Start again for a new link.")
        callback = state.pop("callback", "")
        try:
            return gitlab_oauth_pkce_finish(callback=callback, flow_id=state["flow_id"], actor=actor)
        except DuplicateIdentity as exc:
            state["ended"] = True
            raise duplicate_error(exc, ended=True) from None
        except GitLabError as exc:
            if _pkce_alive(state["flow_id"]):
                # A malformed paste or a refusal shown in the URL: the link can be tried again.
                raise _flow_error(exc, field="callback" if exc.kind == GitLabError.LOGIN else None) from None
            state["ended"] = True
            raise _flow_error(exc, suffix="This sign-in link is used up: start again.") from None


FLOWS = [GitLabPatFlow, GitLabDeviceFlow, GitLabPkceFlow]
