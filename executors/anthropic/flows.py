"""Add an Anthropic API account: connect (label, base URL, key: the key is checked by listing
the models), then choose which of the discovered models the account serves."""

from __future__ import annotations

from typing import Any, cast

import httpx
from django import forms

from accounts.flows.base import AccountFlow, FlowError, Step
from accounts.flows.fields import upstream_url_field
from accounts.models import UpstreamAccount
from executors.anthropic import ANTHROPIC_VERSION, DEFAULT_BASE_URL, KIND, base_url_normalize
from executors.anthropic.services import account_add_anthropic

_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# GET /v1/models pages (`limit` at most 1000); a server that never stops paging is cut here.
_MAX_PAGES = 20
PAGE_LIMIT = 1000  # the largest page the API serves


def _label_unused(label: str) -> None:
    if UpstreamAccount.objects.filter(label=label).exists():
        raise forms.ValidationError("An account with this label already exists.")


class KeyForm(forms.Form):
    label = forms.CharField(
        max_length=100, validators=[_label_unused], help_text="A name the team recognises, e.g. 'anthropic-main'."
    )
    base_url = upstream_url_field(
        "Base URL",
        DEFAULT_BASE_URL,
        "https://api.anthropic.com, or the base URL of an Anthropic-compatible server.",
        named="Base URL",
    )
    api_key = forms.CharField(
        widget=forms.PasswordInput(render_value=False), help_text="Sent as x-api-key; stored encrypted, never shown."
    )

    def clean_base_url(self) -> str:
        return base_url_normalize(self.cleaned_data["base_url"])  # the field ran the SSRF guard


class PickForm(forms.Form):
    models = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, help_text="Served through this account.")
    priority = forms.IntegerField(initial=0, help_text="Higher tiers are tried first.")
    weight = forms.IntegerField(initial=1, min_value=1)

    def __init__(self, *args: Any, discovered: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["models"]).choices = [(name, name) for name in discovered or []]


def _models_page(client: httpx.Client, url: str, api_key: str, after: str | None) -> dict[str, Any]:
    params = {"limit": str(PAGE_LIMIT), **({"after_id": after} if after else {})}
    headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
    try:
        response = client.get(url, params=params, headers=headers)
    except httpx.TimeoutException:
        raise FlowError(f"{url} did not answer within 10 seconds. Is the base URL right?", field="base_url") from None
    except httpx.HTTPError as exc:
        raise FlowError(f"Could not connect to {url}.", field="base_url", detail=str(exc)) from None
    snippet = response.text[:500]
    if response.status_code in (401, 403):
        raise FlowError(f"The API rejected this key (HTTP {response.status_code}).", field="api_key", detail=snippet)
    if response.is_redirect or response.status_code == 404:
        raise FlowError(
            f"{url} is not an Anthropic model list (HTTP {response.status_code}); enter the base URL without /v1.",
            field="base_url",
        )
    if response.status_code >= 400:
        raise FlowError(f"Listing models failed with HTTP {response.status_code}.", detail=snippet)
    try:
        page = response.json()
    except ValueError:
        page = None
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise FlowError(f"{url} did not answer with an Anthropic model list.", detail=snippet)
    return page


def models_discover(base_url: str, api_key: str) -> list[str]:
    """Every model id of `GET {base}/v1/models`, following `has_more` / `last_id`."""
    url = f"{base_url}/v1/models"
    names: set[str] = set()
    after: str | None = None
    with httpx.Client(timeout=_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        for _ in range(_MAX_PAGES):
            page = _models_page(client, url, api_key, after)
            names.update(str(m["id"]) for m in page["data"] if isinstance(m, dict) and m.get("id"))
            after = page.get("last_id") if page.get("has_more") else None
            if not isinstance(after, str) or not after:
                break
    if not names:
        raise FlowError("The key works, but the API lists no models for it.")
    return sorted(names)


_CONNECT = Step("connect", "Connect", KeyForm, "We check the key by listing the models it can use.")
_PICK = Step("models", "Choose models", PickForm, "Pick the models the team may use through this account.")


class AnthropicApiKeyFlow(AccountFlow):
    """Connect (the key is checked by model discovery), then choose the models."""

    key, provider, steps = "anthropic.api_key", KIND, (_CONNECT, _PICK)
    title = "Anthropic API (API key)"
    description = "An Anthropic Console API key, for api.anthropic.com or an Anthropic-compatible server."

    def form_kwargs(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        return {} if step == _CONNECT else {"discovered": state.get("discovered", [])}

    def initial(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        if step == _PICK:
            return {"models": state.get("discovered", [])}
        return {"base_url": state.get("base_url", DEFAULT_BASE_URL), "label": state.get("label", "")}

    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        if step == _CONNECT:
            state["discovered"] = models_discover(data["base_url"], data["api_key"])
            state.update(label=data["label"], base_url=data["base_url"], api_key=data["api_key"])
            return
        state.update(model_names=sorted(data["models"]), priority=data["priority"], weight=data["weight"])

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        fields = ("label", "base_url", "api_key", "model_names", "priority", "weight")
        return account_add_anthropic(actor=actor, **{name: state[name] for name in fields if name in state})


FLOWS = [AnthropicApiKeyFlow]
