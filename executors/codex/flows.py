"""Codex (ChatGPT sign-in) accounts in the guided add-account UI: paste-callback PKCE, device
code, and `auth.json` import (docs/protocols/codex.md#sign-in-chatgpt-oauth,
docs/protocols/codex.md#importing-authjson).

The flows only collect input and turn outcomes into words; every wire call and every write
goes through executors.codex.services (the same code as `manage.py codex_login` /
`codex_import`). The pending login (PKCE verifier, device id) lives in the state store with
its 15-minute TTL; the admin session holds only what the pages show (the sign-in link, the
user code) and the ids to continue with, so any web process can serve any step.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from django import forms

from accounts.flows.base import MIN_POLL_SECONDS, AccountFlow, DeviceCodeFlow, FlowError, Step, duplicate_error
from accounts.flows.fields import allow_duplicate_field, label_clean, upstream_url_field
from accounts.models import UpstreamAccount
from accounts.services import DuplicateIdentity
from executors.codex import KIND, oauth
from executors.codex.config import DEFAULT_AUTH_URL, DEFAULT_BASE_URL, DEFAULT_MODELS, PKCE_REDIRECT_URI
from executors.codex.services import (
    CodexLoginError,
    CodexLoginPending,
    codex_device_complete,
    codex_device_start,
    codex_import_auth_json,
    codex_pkce_complete,
    codex_pkce_start,
)

# The device page re-polls on its own; never faster than this even if the server says less.
# A device code (and its pending login in the store) is valid this long (docs/protocols/codex.md#sign-in-chatgpt-oauth).
_DEVICE_TTL_SECONDS = 15 * 60
# auth.json is a few KB; a bundle of many accounts stays well below this.
_MAX_AUTH_JSON = 200_000
_SETTINGS = ("label", "base_url", "auth_url", "models", "allow_duplicate")
_ACCOUNT_ID_FIELD = "“ChatGPT account id”"
_DEVICE_EXPIRED = "The code expired before it was approved (codes last 15 minutes). Start again."
_NO_ENTITLEMENT = (
    "Codex is not enabled for this ChatGPT workspace (missing_codex_entitlement). Sign in again "
    "choosing a workspace with Codex, or set its workspace id (Back)."
)
_DEVICE_DISABLED = (
    "Device-code sign-in is disabled on this auth server (HTTP 404). Use the ChatGPT sign-in link "
    "flow or import an auth.json instead."
)


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _login_error(exc: CodexLoginError, *, suffix: str = "", field: str | None = None) -> FlowError:
    """The service's message, written for the CLI (it names `--account-id`), pointed at the
    form's field instead; which field the person should use goes with it."""
    message = exc.args[0] if exc.args else str(exc)
    message = message.replace("with --account-id", f"in the {_ACCOUNT_ID_FIELD} field")
    message = message.replace("pass --account-id", f"enter it in the {_ACCOUNT_ID_FIELD} field")
    return FlowError(" ".join(p for p in (_sentence(message), suffix) if p), field=field)


def _oauth_error(exc: oauth.OAuthError, *, doing: str, suffix: str = "", field: str | None = None) -> FlowError:
    """`doing` says which call failed ("refused the authorization code"); the auth server's own
    message is the detail line."""
    status = f" (HTTP {exc.status})" if exc.status else ""
    code = f" [{exc.code}]" if exc.code else ""
    message = f"ChatGPT's auth server {doing}{status}{code}."
    return FlowError(" ".join(p for p in (message, suffix) if p), field=field, detail=str(exc))


def _unreachable(exc: Exception, auth_url: str, *, suffix: str = "", field: str | None = None) -> FlowError:
    message = f"Could not reach the ChatGPT auth server at {auth_url} ({type(exc).__name__})."
    hint = "Check the auth server URL and that this server can reach it."
    return FlowError(" ".join(p for p in (message, hint, suffix) if p), field=field, detail=str(exc))


# ------------------------------------------------------------------------------ forms


class _AccountForm(forms.Form):
    label = forms.CharField(
        max_length=100,
        help_text="A name the team recognises, e.g. 'codex-alice'. Reusing a Codex account's label signs it in again "
        "(it keeps its installation id).",
    )
    models = forms.CharField(
        max_length=1000,
        initial=",".join(DEFAULT_MODELS),
        help_text="Comma-separated model names this account serves.",
    )
    base_url = upstream_url_field(
        "Codex backend URL", DEFAULT_BASE_URL, "Leave as is unless you run a test double.", named="Codex backend URL"
    )
    auth_url = upstream_url_field(
        "Auth server URL",
        DEFAULT_AUTH_URL,
        "ChatGPT's sign-in server (sign-in and token refresh). Leave as is unless you run a test double.",
        named="auth server URL",
    )
    allow_duplicate = allow_duplicate_field("ChatGPT account")

    def clean_label(self) -> str:
        return label_clean(self.cleaned_data["label"], KIND)

    def clean_models(self) -> list[str]:
        names = sorted({m.strip() for m in self.cleaned_data["models"].split(",") if m.strip()})
        if not names:
            raise forms.ValidationError("Name at least one model.")
        return names


class PkceConnectForm(_AccountForm):
    workspace_id = forms.CharField(
        required=False,
        max_length=500,
        label="Workspace id (optional)",
        help_text="Force a ChatGPT workspace (comma-separated ids allowed); empty = choose when signing in.",
    )
    field_order = ["label", "workspace_id", "models", "base_url", "auth_url"]


class DeviceConnectForm(_AccountForm):
    field_order = ["label", "models", "base_url", "auth_url"]


class _WriteOnlyTextarea(forms.Textarea):
    """A pasted auth.json holds live tokens: never render them back into the page."""

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        return super().get_context(name, None, attrs)


class ImportForm(_AccountForm):
    auth_json = forms.CharField(
        max_length=_MAX_AUTH_JSON,
        label="auth.json",
        widget=_WriteOnlyTextarea(attrs={"rows": 8, "cols": 90, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Choose the file ($CODEX_HOME/auth.json, usually ~/.codex/auth.json) or paste its contents. "
        "A CLIProxyAPI token file or an export bundle works too. Write-only: stored encrypted, never shown.",
    )
    account_id = forms.CharField(
        required=False,
        max_length=200,
        label="ChatGPT account id (optional)",
        help_text="Only when the id token and the access token name different ChatGPT accounts: the one to use.",
    )
    field_order = ["label", "auth_json", "account_id", "models", "base_url", "auth_url"]

    def clean_auth_json(self) -> dict[str, Any]:
        text = self.cleaned_data["auth_json"].strip()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"This is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
                "Paste the whole file, from the first { to the last }."
            ) from None
        if not isinstance(data, dict):
            raise forms.ValidationError("This JSON is not an object; auth.json starts with {.")
        return data


class PkceCallbackForm(forms.Form):
    callback = forms.CharField(
        label="Callback URL",
        max_length=4000,
        widget=forms.TextInput(attrs={"size": 90, "autocomplete": "off"}),
        help_text=f"The full address of the page that failed to load ({PKCE_REDIRECT_URI}?code=…&state=…).",
    )


# ------------------------------------------------------------------------------ flows


def _provider_config(auth_url: str) -> dict[str, Any]:
    # Only a non-default auth server is pinned on the account, so the project-wide setting
    # (CODEX_AUTH_URL) keeps applying to the others.
    return {"auth_url": auth_url} if auth_url.rstrip("/") != DEFAULT_AUTH_URL else {}


def _service_kwargs(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": state["label"],
        "base_url": state["base_url"],
        "model_names": state["models"],
        "provider_config": _provider_config(state["auth_url"]),
    }


def _save_kwargs(state: dict[str, Any], actor: Any) -> dict[str, Any]:
    """What the completing call needs besides the tokens: who added it, and the confirmation."""
    return {"actor": actor, "allow_duplicate": bool(state.get("allow_duplicate"))}


class _CodexFlow(AccountFlow):
    provider = KIND

    def initial(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        if step.name != self.steps[0].name:
            return {}
        out = {k: state[k] for k in (*_SETTINGS, "workspace_id") if k in state}
        if isinstance(out.get("models"), list):
            out["models"] = ",".join(out["models"])
        return out


class CodexPkceFlow(_CodexFlow):
    key = "codex.pkce"
    title = "OpenAI Codex — ChatGPT sign-in link (paste the callback)"
    description = (
        "Open a ChatGPT sign-in link, sign in, and paste back the address of the page that fails to load "
        "(http://localhost:1455/…). Works from any machine."
    )
    steps = (
        Step("connect", "Account", PkceConnectForm, "We prepare a ChatGPT sign-in link (PKCE, S256)."),
        Step("callback", "Sign in and paste back", PkceCallbackForm, "", template="codex/pkce_callback.html"),
    )

    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        if step.name == "callback":
            state["callback"] = data["callback"]
            return
        settings = {k: data[k] for k in _SETTINGS if k != "allow_duplicate"}
        # Nothing is contacted here (the link is built locally), so no network errors.
        start = codex_pkce_start(**_service_kwargs(settings), workspace_id=data.get("workspace_id", "").strip())
        state.update(
            settings,
            allow_duplicate=data.get("allow_duplicate", False),
            workspace_id=data.get("workspace_id", ""),
            oauth_state=start.state,
            authorize_url=start.url,
            ended=False,
        )

    def context(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        if step.name != "callback":
            return {}
        return {
            "authorize_url": state.get("authorize_url", ""),
            "redirect_uri": PKCE_REDIRECT_URI,
            "ended": bool(state.get("ended")),
        }

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        if state.get("ended"):
            raise FlowError("This sign-in link was used up by the last attempt. Start again for a new link.")
        callback = str(state.pop("callback", ""))
        # Read the paste first (pure parsing, nothing consumed): a malformed paste, a refusal
        # shown in the URL, or another login's address leave this link usable. The state check
        # also keeps us from consuming some other pending login by its state.
        try:
            params = oauth.parse_callback(callback)
        except oauth.OAuthError as exc:
            if exc.code == "missing_codex_entitlement":
                raise FlowError(_NO_ENTITLEMENT, detail=str(exc)) from None
            if exc.code:
                raise FlowError(
                    f"ChatGPT did not complete the sign-in: {exc.code}. Open the link again and approve.",
                    field="callback",
                    detail=str(exc),
                ) from None
            raise FlowError(
                "That address has no code and state. Copy the whole address from the browser's address bar "
                f"after signing in (it starts with {PKCE_REDIRECT_URI}?code=).",
                field="callback",
            ) from None
        if params.state != state.get("oauth_state"):
            raise FlowError(
                "That address belongs to a different sign-in (its state does not match this page's link). "
                "Open the link on this page, sign in, and paste the address you land on.",
                field="callback",
            )
        try:
            return codex_pkce_complete(callback_url=callback, **_save_kwargs(state, actor))
        except DuplicateIdentity as exc:
            state["ended"] = True  # the code was exchanged: this link is used up
            raise duplicate_error(exc, ended=True) from None
        except CodexLoginError as exc:
            # Raised before the exchange only when the pending login is gone (15 min, single use).
            state["ended"] = True
            if "unknown or expired" in str(exc):
                raise FlowError(
                    "This sign-in link has expired or was already used (links last 15 minutes and work once). "
                    "Start again for a new link."
                ) from None
            raise _login_error(exc, suffix="This sign-in link is used up: start again.") from None
        except oauth.OAuthError as exc:
            state["ended"] = True
            raise _oauth_error(
                exc, doing="refused the authorization code", suffix="This sign-in link is used up: start again."
            ) from None
        except (httpx.HTTPError, ValueError) as exc:
            state["ended"] = True
            raise _unreachable(exc, state["auth_url"], suffix="This sign-in link is used up: start again.") from None


class CodexDeviceFlow(_CodexFlow, DeviceCodeFlow):
    key = "codex.device"
    title = "OpenAI Codex — ChatGPT device code"
    description = "Sign in to ChatGPT in any browser and type a one-time code. Nothing to paste back."
    steps = (
        Step("connect", "Account", DeviceConnectForm, "We ask ChatGPT for a one-time code for you to approve."),
        DeviceCodeFlow.approve_step(
            "ChatGPT",
            "Open the link signed in as the ChatGPT user whose subscription the team will use, and enter the code.",
            template="codex/device_wait.html",
        ),
    )

    def device_start(self, data: dict[str, Any], state: dict[str, Any]) -> None:
        settings = {k: data[k] for k in _SETTINGS}
        try:
            code = codex_device_start(**_service_kwargs(settings))
        except oauth.OAuthError as exc:
            if exc.code == "device_disabled":
                raise FlowError(_DEVICE_DISABLED, detail=str(exc)) from None
            raise _oauth_error(exc, doing="refused to start a device login", field="auth_url") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise _unreachable(exc, settings["auth_url"], field="auth_url") from None
        # Only what the page shows and the ids to poll with; the pending login is in the store.
        state.update(
            settings,
            device_auth_id=code.device_auth_id,
            user_code=code.user_code,
            verification_url=code.verification_url,
            interval=code.interval,
            expires_at=time.time() + _DEVICE_TTL_SECONDS,
            polls=0,
            ended=False,
        )

    def device_links(self, state: dict[str, Any]) -> dict[str, str]:
        return {"verification_url": state.get("verification_url", "")}

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        # The auth server keeps answering "pending" for a dead code: stop on our own clock too.
        self.device_poll_begin(state, expired_message=_DEVICE_EXPIRED)
        try:
            # timeout=0: one poll per request; the page (or the button) asks again.
            return codex_device_complete(
                device_auth_id=state["device_auth_id"], timeout=0, **_save_kwargs(state, actor)
            )
        except DuplicateIdentity as exc:
            state["ended"] = True
            raise duplicate_error(exc, ended=True) from None
        except CodexLoginPending as exc:
            state["interval"] = exc.interval
            raise FlowError(
                f"Not approved yet: ChatGPT says the code is still pending. Open the link, enter "
                f"{state.get('user_code', 'the code')} and approve; this page checks again every "
                f"{max(MIN_POLL_SECONDS, exc.interval):.0f} s."
            ) from None
        except CodexLoginError as exc:
            state["ended"] = True
            if "unknown or expired" in str(exc):
                raise FlowError(_DEVICE_EXPIRED) from None
            raise _login_error(exc, suffix="Start again.") from None
        except oauth.OAuthError as exc:
            if exc.status >= 500 or exc.status == 429:
                # The auth server hiccuped on this check; the code is still pending, poll again.
                raise FlowError(
                    f"ChatGPT's auth server did not answer this check (HTTP {exc.status}); trying again.",
                    detail=str(exc),
                ) from None
            state["ended"] = True
            raise _oauth_error(exc, doing="refused the device login", suffix="Start again.") from None
        except (httpx.HTTPError, ValueError) as exc:
            # Nothing was consumed (an approval is picked up by the next poll): keep polling.
            raise _unreachable(exc, state["auth_url"], suffix="Trying again.") from None


class CodexImportFlow(_CodexFlow):
    key = "codex.import"
    title = "OpenAI Codex — import auth.json"
    description = (
        "Upload or paste the auth.json of a signed-in Codex CLI. The CLI must stop using it afterwards "
        "(refresh tokens rotate: whichever side refreshes first logs the other out)."
    )
    steps = (
        Step(
            "import",
            "auth.json",
            ImportForm,
            "After importing, stop using this auth.json in the Codex CLI (or sign the CLI in again): the proxy "
            "now owns its refresh token.",
            template="codex/import.html",
        ),
    )

    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        # The tokens go to state only for the finish() call of this same request; finish pops
        # them so a failed attempt never leaves them in the session.
        state.update({k: data[k] for k in _SETTINGS}, auth_json=data["auth_json"], account_id=data["account_id"])

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        data = state.pop("auth_json", None)
        if not data:
            raise FlowError("Choose the file or paste auth.json again (it is never kept between attempts).")
        try:
            return codex_import_auth_json(
                data=data,
                pin_account_id=(state.get("account_id") or "").strip() or None,
                **_service_kwargs(state),
                **_save_kwargs(state, actor),
            )
        except DuplicateIdentity as exc:
            raise duplicate_error(exc, ended=False) from None
        except CodexLoginError as exc:
            # Tokens naming two ChatGPT accounts (or none): the account id field is the fix;
            # anything else is about the file itself.
            about_id = "account" in str(exc) and "--account-id" in str(exc)
            raise _login_error(exc, field="account_id" if about_id else "auth_json") from None


FLOWS = [CodexPkceFlow, CodexDeviceFlow, CodexImportFlow]
