"""Add an OpenAI-compatible account: connect (label, base URL, key; models discovered), choose models."""

from __future__ import annotations

from typing import Any

import httpx
from django import forms

from accounts.flows.base import AccountFlow, FlowError, Step
from accounts.models import UpstreamAccount
from accounts.validators import upstream_url_validate
from executors.openai_compat import KIND
from executors.openai_compat.services import account_add_openai_compat

DISCOVERY_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class ConnectForm(forms.Form):
    label = forms.CharField(max_length=100, help_text="A name the team recognises, e.g. 'openai-main'.")
    base_url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="The URL ending in /v1, e.g. https://api.openai.com/v1"
    )
    api_key = forms.CharField(
        widget=forms.PasswordInput(render_value=False), help_text="Stored encrypted; never shown."
    )

    def clean_base_url(self) -> str:
        # Before model discovery contacts it: the SSRF guard runs on the admin's input.
        return upstream_url_validate(self.cleaned_data["base_url"])

    def clean_label(self) -> str:
        label: str = self.cleaned_data["label"].strip()
        if UpstreamAccount.objects.filter(label=label).exists():
            raise forms.ValidationError("An account with this label already exists.")
        return label


class ModelsForm(forms.Form):
    models = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="Models this account will serve."
    )
    extra_models = forms.CharField(
        required=False, help_text="Other model names, comma-separated (if the server does not list them)."
    )
    priority = forms.IntegerField(initial=0, help_text="Higher tiers are tried first.")
    weight = forms.IntegerField(initial=1, min_value=1)

    def __init__(self, *args: Any, discovered: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models_field = self.fields["models"]
        assert isinstance(models_field, forms.ChoiceField)
        models_field.choices = [(m, m) for m in discovered or []]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        extra = [m.strip() for m in (data.get("extra_models") or "").split(",") if m.strip()]
        data["model_names"] = sorted({*data.get("models", []), *extra})
        if not data["model_names"]:
            raise forms.ValidationError("Choose at least one model.")
        return data


def discover_models(base_url: str, api_key: str) -> list[str]:
    """GET {base_url}/models; a FlowError says in plain words what went wrong."""
    url = base_url.rstrip("/") + "/models"
    try:
        with httpx.Client(timeout=DISCOVERY_TIMEOUT, follow_redirects=False, trust_env=False) as client:
            response = client.get(url, headers={"authorization": f"Bearer {api_key}"})
    except httpx.TimeoutException:
        raise FlowError(f"{url} did not answer within 10 seconds. Is the base URL right?", field="base_url") from None
    except httpx.HTTPError as exc:
        raise FlowError(
            f"Could not connect to {url}. Check the base URL (it should end in /v1).", field="base_url", detail=str(exc)
        ) from None
    text = response.text[:500]
    if response.status_code in (401, 403):
        raise FlowError(
            f"The server rejected this API key (HTTP {response.status_code}).", field="api_key", detail=text
        )
    if response.status_code == 404:
        raise FlowError(f"{url} does not exist (HTTP 404): the base URL should end in /v1.", field="base_url")
    if response.is_redirect:
        raise FlowError(
            f"{url} redirects to {response.headers.get('location', '?')}; enter the final URL.", field="base_url"
        )
    if response.status_code >= 400:
        raise FlowError(f"The server answered HTTP {response.status_code} when listing models.", detail=text)
    try:
        data = response.json().get("data")
        names = sorted({str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")})
    except (ValueError, AttributeError, TypeError, KeyError):
        raise FlowError(
            f"{url} did not answer with an OpenAI-style model list. Is this an OpenAI-compatible server?", detail=text
        ) from None
    return names


class OpenAICompatApiKeyFlow(AccountFlow):
    key = "openai_compat.api_key"
    provider = KIND
    title = "OpenAI-compatible API (API key)"
    description = "Any server speaking the OpenAI API: OpenAI, Azure-style gateways, vLLM, Ollama, LiteLLM…"
    steps = (
        Step("connect", "Connect", ConnectForm, "We list the server's models with this key to check that it works."),
        Step("models", "Choose models", ModelsForm, "Pick the models the team may use through this account."),
    )

    def form_kwargs(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        return {"discovered": state.get("discovered", [])} if step.name == "models" else {}

    def initial(self, step: Step, state: dict[str, Any]) -> dict[str, Any]:
        if step.name == "connect":
            return {k: state[k] for k in ("label", "base_url") if k in state}
        return {"models": state.get("discovered", [])}

    def process(self, step: Step, data: dict[str, Any], state: dict[str, Any]) -> None:
        if step.name == "connect":
            base_url = data["base_url"].rstrip("/")
            state["discovered"] = discover_models(base_url, data["api_key"])
            state.update(label=data["label"], base_url=base_url, api_key=data["api_key"])
        else:
            state.update(model_names=data["model_names"], priority=data["priority"], weight=data["weight"])

    def finish(self, state: dict[str, Any], *, actor: Any) -> UpstreamAccount:
        return account_add_openai_compat(
            label=state["label"],
            base_url=state["base_url"],
            api_key=state["api_key"],
            model_names=state["model_names"],
            priority=state.get("priority", 0),
            weight=state.get("weight", 1),
            actor=actor,
        )


FLOWS = [OpenAICompatApiKeyFlow]
