"""Fake OpenAI-compatible upstream: /v1/chat/completions, /v1/responses, /v1/models.

Validates requests the way api.openai.com does (status, error type, `param`, message
wording where known) so a proxy bug that sends a malformed upstream body fails a test
instead of passing silently. Answers are deterministic:

- text reply: `reply` if configured, else "echo: <last user text>"; after a tool result,
  "The tool returned: <output>";
- tool calls when tools are offered and the last user text says "call tool" / "call N tools",
  or `tool_choice` forces one; arguments are derived from the tool's JSON schema;
- tokens = whitespace-separated words (prompt: every text in the request; completion: the
  reply or the tool-call arguments, plus the configured `reasoning_tokens`).

Run standalone: `python -m tests.fakes.openai_compat --port 9100 --key sk-upstream`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import (
    SSE_DONE,
    FakeApp,
    FakeServer,
    HTTPError,
    Request,
    Response,
    SSEResponse,
    iter_split,
    json_response,
    openai_error,
    sse_event,
    wait_for_signal,
)

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CALL_N_TOOLS_RE = re.compile(r"call (\d+) tools")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


CHAT_PARAMS = _names(
    """model messages stream stream_options max_tokens max_completion_tokens temperature top_p
    presence_penalty frequency_penalty seed logit_bias n stop logprobs top_logprobs tools
    tool_choice parallel_tool_calls response_format reasoning_effort user metadata store
    service_tier prompt_cache_key safety_identifier modalities audio prediction
    web_search_options verbosity functions function_call"""
)
RESPONSES_PARAMS = _names(
    """model input instructions previous_response_id conversation store stream stream_options
    tools tool_choice parallel_tool_calls max_tool_calls reasoning text max_output_tokens
    temperature top_p top_logprobs truncation include metadata user safety_identifier
    prompt_cache_key prompt_cache_retention service_tier background prompt client_metadata"""
)  # client_metadata: Codex CLI's built-in provider sends it to api.openai.com (docs/protocols/clients.md#codex-cli)
CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
USER_PARTS = ("text", "image_url", "input_audio", "file")
HOSTED_TOOLS = _names(
    "web_search web_search_preview file_search image_generation code_interpreter mcp computer_use_preview local_shell"
)
RESPONSES_ONLY_MESSAGE = "This model is only supported in v1/responses and not in v1/chat/completions."


@dataclass(frozen=True)
class ModelSpec:
    id: str
    responses_only: bool = False
    owned_by: str = "openai"
    created: int = 1_700_000_000


@dataclass
class ToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass
class Conversation:
    """Dialect-neutral view of a request: all the planner needs."""

    texts: list[str]  # every text in the request, for prompt token counting
    last_role: str  # "user", "tool", ...
    last_text: str  # last user text, or the trailing tool output(s)
    tools: list[tuple[str, dict[str, Any]]]  # (name, JSON schema)
    tool_choice: Any
    max_tokens: int | None


@dataclass
class Plan:
    text: str | None
    tool_calls: list[ToolCall]
    finish_reason: str  # stop | length | tool_calls
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int


# ------------------------------------------------------------------ validation utils


def _kind(value: Any) -> str:
    """OpenAI's wording for a JSON type in 'expected X, but got Y instead'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def bad_request(
    message: str, param: str | None, code: str | None = None, *, rule: str | None = "openai.schema"
) -> HTTPError:
    """A 400 in OpenAI's shape; `rule` is its docs/fake-rules.md id (default: the request schema
    of the API reference: types, enums, required fields, lengths)."""
    return (
        openai_error(400, message, param=param, code=code).as_rule(rule)
        if rule
        else openai_error(400, message, param=param, code=code)
    )


def invalid_type(param: str, expected: str, value: Any) -> HTTPError:
    return bad_request(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param,
        "invalid_type",
    )


def missing(param: str) -> HTTPError:
    return bad_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def invalid_value(param: str, value: Any, allowed: Sequence[str]) -> HTTPError:
    quoted = [f"'{a}'" for a in allowed]
    listing = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    return bad_request(f"Invalid value: '{value}'. Supported values are: {listing}.", param, "invalid_value")


def _require(obj: dict[str, Any], key: str, param: str, types: type | tuple[type, ...], expected: str) -> Any:
    if key not in obj:
        raise missing(param)
    value = obj[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise invalid_type(param, expected, value)
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _opt_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise invalid_type(key, "a boolean", value)
    return bool(value)


def _opt_int(body: dict[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(key, "an integer", value)
    if value < minimum:
        raise bad_request(
            f"Invalid '{key}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            key,
            "integer_below_min_value",
        )
    return value


def words(text: str) -> int:
    return len(text.split())


def _sample_args(schema: dict[str, Any]) -> dict[str, Any]:
    """Deterministic arguments that satisfy a simple JSON schema (one value per property)."""
    samples: dict[str, Any] = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True}
    out: dict[str, Any] = {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    for name, prop in (props or {}).items():
        ptype = prop.get("type") if isinstance(prop, dict) else None
        if isinstance(prop, dict) and isinstance(prop.get("enum"), list) and prop["enum"]:
            out[name] = prop["enum"][0]
        elif ptype == "array":
            out[name] = []
        elif ptype == "object":
            out[name] = {}
        else:
            out[name] = samples.get(ptype if isinstance(ptype, str) else "string", "Paris")
    return out


# ----------------------------------------------------------------------------- app


class OpenAICompatApp(FakeApp):
    """Settings (`SETTINGS`) are plain attributes; tests may change them between requests,
    and `reset()` restores the constructor values."""

    SETTINGS = (
        "reply",
        "chunks",
        "interval",
        "usage_on_final_choice_chunk",
        "cached_tokens",
        "reasoning_tokens",
        "unknown_fields",
    )

    def __init__(
        self,
        *,
        keys: Iterable[str] = ("sk-upstream",),
        models: Iterable[str | ModelSpec] = ("gpt-4o-mini", "gpt-4.1"),
        reply: str | None = None,
        chunks: int = 20,
        interval: float = 0.0,
        usage_on_final_choice_chunk: bool = False,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        unknown_fields: str = "reject",
    ) -> None:
        super().__init__()
        if unknown_fields not in ("reject", "ignore"):
            raise ValueError("unknown_fields is 'reject' (api.openai.com) or 'ignore' (lenient servers)")
        # "reject": the strict variant, api.openai.com's behaviour (the default); "ignore": a
        # lenient OpenAI-compatible server that drops fields it does not know.
        self.unknown_fields = unknown_fields
        self.keys = set(keys)
        self.models = {m.id: m for m in (ModelSpec(m) if isinstance(m, str) else m for m in models)}
        self.reply = reply
        self.chunks = chunks
        self.interval = interval
        self.usage_on_final_choice_chunk = usage_on_final_choice_chunk
        self.cached_tokens = cached_tokens
        self.reasoning_tokens = reasoning_tokens
        self.clock: Callable[[], int] = lambda: int(time.time())
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        # Stored Responses by (api key, id) for previous_response_id: full item lists.
        self._stored: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._defaults = {k: getattr(self, k) for k in self.SETTINGS}
        self.route("POST", "/v1/chat/completions", self.chat_completions)
        self.route("POST", "/v1/responses", self.responses)
        self.route("GET", "/v1/models", self.list_models)
        self.route("GET", "/v1/models/{model}", self.get_model)

    def reset(self) -> None:
        super().reset()
        for k, v in self._defaults.items():
            setattr(self, k, v)
        self._stored.clear()

    def _id(self, prefix: str) -> str:
        with self._ids_lock:
            n = next(self._ids)
        return f"{prefix}{n:08x}fake"

    # -- shared checks
    def _auth(self, req: Request) -> str:
        key = req.bearer()
        if key is None:
            raise openai_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
                "or as the password field (with blank username) if you're accessing the API "
                "from your browser and are prompted for a username. You can obtain an API key "
                "from https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            ).as_rule("openai.auth")
        if key not in self.keys:
            shown = f"{key[:3]}{'*' * max(0, len(key) - 7)}{key[-4:]}" if len(key) > 7 else key
            raise openai_error(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            ).as_rule("openai.auth")
        return key

    def _body(self, req: Request, allowed: frozenset[str], unknown_style: str) -> dict[str, Any]:
        if req.json_error or not req.body:
            raise bad_request(
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON. If you have trouble figuring out "
                "how to fix this, please contact us through our help center at help.openai.com.)",
                None,
                rule="openai.json",
            )
        if not isinstance(req.json, dict):
            raise invalid_type("body", "an object", req.json)
        body: dict[str, Any] = req.json
        unknown = [key for key in body if key not in allowed]
        if unknown and self.unknown_fields == "ignore":
            # The lenient variant (servers that log and ignore unknown fields).
            body = {k: v for k, v in body.items() if k in allowed}
        elif unknown:
            key = unknown[0]
            if unknown_style == "chat":
                raise openai_error(400, f"Unrecognized request argument supplied: {key}").as_rule(
                    "openai.chat.unknown-parameter"
                )
            raise bad_request(
                f"Unknown parameter: '{key}'.", key, "unknown_parameter", rule="openai.responses.unknown-parameter"
            )
        if "model" not in body:
            raise bad_request("you must provide a model parameter", None, rule="openai.model-required")
        if not isinstance(body["model"], str):
            raise invalid_type("model", "a string", body["model"])
        stream = _opt_bool(body, "stream")
        if "stream_options" in body and body["stream_options"] is not None:
            if not stream:
                raise bad_request(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    "stream_options",
                    rule="openai.stream-options",
                )
            opts = body["stream_options"]
            if not isinstance(opts, dict):
                raise invalid_type("stream_options", "an object", opts)
            if "include_usage" in opts and not isinstance(opts["include_usage"], bool):
                raise invalid_type("stream_options.include_usage", "a boolean", opts["include_usage"])
        return body

    def _model(self, name: str) -> ModelSpec:
        spec = self.models.get(name)
        if spec is None:
            raise openai_error(
                404,
                f"The model `{name}` does not exist or you do not have access to it.",
                code="model_not_found",
            ).as_rule("openai.model-not-found")
        return spec

    def _plan(self, conv: Conversation) -> Plan:
        n_calls = 0
        choice = conv.tool_choice
        forced: str | None = None
        if conv.tools and choice != "none":
            if conv.last_role == "user":
                m = CALL_N_TOOLS_RE.search(conv.last_text)
                n_calls = int(m.group(1)) if m else (1 if "call tool" in conv.last_text else 0)
            if isinstance(choice, dict):
                forced = (choice.get("function") or {}).get("name") or choice.get("name")
                n_calls = max(n_calls, 1)
            elif choice == "required":
                n_calls = max(n_calls, 1)
        prompt = sum(words(t) for t in conv.texts)
        cached = min(self.cached_tokens, prompt)
        if n_calls:
            schemas = dict(conv.tools)
            names = [forced] * n_calls if forced else [conv.tools[i % len(conv.tools)][0] for i in range(n_calls)]
            calls = [
                ToolCall(self._id("call_"), name, json.dumps(_sample_args(schemas.get(name, {})))) for name in names
            ]
            out = sum(words(c.arguments) for c in calls)
            return Plan(None, calls, "tool_calls", prompt, out + self.reasoning_tokens, cached, self.reasoning_tokens)
        if conv.last_role == "tool":
            text = f"The tool returned: {conv.last_text}"
        else:
            text = self.reply if self.reply is not None else f"echo: {conv.last_text}"
        finish = "stop"
        if conv.max_tokens is not None and words(text) > conv.max_tokens:
            text = " ".join(text.split()[: conv.max_tokens])
            finish = "length"
        out = words(text) + self.reasoning_tokens
        return Plan(text, [], finish, prompt, out, cached, self.reasoning_tokens)

    # ---------------------------------------------------------------------- models
    async def list_models(self, req: Request) -> Response:
        self._auth(req)
        return json_response({"object": "list", "data": [_model_obj(m) for m in self.models.values()]})

    async def get_model(self, req: Request) -> Response:
        self._auth(req)
        return json_response(_model_obj(self._model(req.path_params["model"])))

    # ------------------------------------------------------------ chat completions
    async def chat_completions(self, req: Request) -> Response | SSEResponse:
        self._auth(req)
        body = self._body(req, CHAT_PARAMS, "chat")
        conv = self._chat_conversation(body)
        n = body.get("n")
        if n is not None:
            if not isinstance(n, int) or isinstance(n, bool):
                raise invalid_type("n", "an integer", n)
            if n != 1:
                raise bad_request("This fake upstream only supports n=1.", "n", rule=None)  # a fake limit
        spec = self._model(body["model"])
        if spec.responses_only:
            raise bad_request(RESPONSES_ONLY_MESSAGE, "model", rule="openai.responses-only-model")
        plan = self._plan(conv)
        base = {
            "id": self._id("chatcmpl-"),
            "object": "chat.completion",
            "created": self.clock(),
            "model": spec.id,
        }
        usage = self._chat_usage(plan)
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None, "annotations": []}
            if plan.tool_calls:
                message["tool_calls"] = [
                    {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in plan.tool_calls
                ]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
            return json_response(
                {
                    **base,
                    "choices": [choice],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": "fp_fake",
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = self._chat_stream(base, plan, usage, include_usage, req.chunks(self.chunks))
        return SSEResponse(events, interval=self.interval, model=spec.id)

    def _chat_usage(self, plan: Plan) -> dict[str, Any]:
        return {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": plan.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": plan.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _chat_stream(
        self, base: dict[str, Any], plan: Plan, usage: dict[str, Any], include_usage: bool, n: int
    ) -> Iterator[bytes]:
        head = {**base, "object": "chat.completion.chunk", "service_tier": "default", "system_fingerprint": "fp_fake"}
        # OpenAI puts `usage: null` on every chunk when include_usage is on.
        tail = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse_event({**head, "choices": [choice], **tail})

        if plan.text is not None:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            for piece in iter_split(plan.text, n):
                yield chunk({"content": piece})
        for i, call in enumerate(plan.tool_calls):
            # Real OpenAI: the first fragment carries id/type/name and empty arguments (and, for
            # the first call, the role with content null); later fragments only index+arguments.
            first: dict[str, Any] = {"role": "assistant", "content": None} if i == 0 else {}
            first["tool_calls"] = [
                {"index": i, "id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            ]
            yield chunk(first)
            for piece in iter_split(call.arguments, n):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        final = {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": plan.finish_reason}]}
        if include_usage:
            final["usage"] = None
        if self.usage_on_final_choice_chunk:
            final["usage"] = usage
        yield sse_event(final)
        if include_usage:
            yield sse_event({**head, "choices": [], "usage": usage})
        yield SSE_DONE

    def _chat_conversation(self, body: dict[str, Any]) -> Conversation:
        msgs = body.get("messages")
        if msgs is None:
            raise missing("messages")
        if not isinstance(msgs, list):
            raise invalid_type("messages", "an array of objects", msgs)
        if not msgs:
            raise bad_request(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                "messages",
                "empty_array",
            )
        tools = self._chat_tools(body)
        texts: list[str] = []
        pending_calls: dict[str, int] = {}  # call id -> index of the assistant message
        last_role, last_text, trailing_tool = "user", "", list[str]()
        for i, msg in enumerate(msgs):
            p = f"messages[{i}]"
            if not isinstance(msg, dict):
                raise invalid_type(p, "an object", msg)
            role = _require(msg, "role", f"{p}.role", str, "a string")
            if role not in CHAT_ROLES:
                raise invalid_value(f"{p}.role", role, CHAT_ROLES)
            if role == "function":
                raise bad_request("The 'function' role is not supported by this fake.", f"{p}.role", rule=None)
            if role == "tool":
                call_id = _require(msg, "tool_call_id", f"{p}.tool_call_id", str, "a string")
                if call_id not in pending_calls:
                    raise bad_request(
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.",
                        f"messages.[{i}].role",
                        rule="openai.tool-call-pairing",
                    )
                del pending_calls[call_id]
                text = self._chat_content(msg, p, ("text",), required=True)
                trailing_tool.append(text)
            else:
                if pending_calls:
                    owner = min(pending_calls.values())
                    raise bad_request(
                        "An assistant message with 'tool_calls' must be followed by tool messages "
                        "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                        f"response messages: {', '.join(pending_calls)}",
                        f"messages.[{owner}].role",
                        rule="openai.tool-call-pairing",
                    )
                trailing_tool = []
                if role == "assistant":
                    text = self._chat_content(msg, p, ("text", "refusal"), required=False)
                    for call in self._chat_tool_calls(msg, p):
                        pending_calls[call["id"]] = i
                        texts.append(call["function"]["arguments"])
                    if not msg.get("content") and "tool_calls" not in msg:
                        raise missing(f"{p}.content")
                else:
                    parts = USER_PARTS if role == "user" else ("text",)
                    text = self._chat_content(msg, p, parts, required=True)
                    if role == "user":
                        last_text = text
            texts.append(text)
            last_role = role
        if pending_calls:
            owner = min(pending_calls.values())
            raise bad_request(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending_calls)}",
                f"messages.[{owner}].role",
                rule="openai.tool-call-pairing",
            )
        if last_role == "tool":
            last_text = "; ".join(trailing_tool)
        max_tokens = _opt_int(body, "max_completion_tokens", 1)
        legacy = _opt_int(body, "max_tokens", 1)
        return Conversation(
            texts,
            last_role,
            last_text,
            tools,
            body.get("tool_choice"),
            max_tokens if max_tokens is not None else legacy,
        )

    def _chat_content(self, msg: dict[str, Any], p: str, allowed: Sequence[str], *, required: bool) -> str:
        if "content" not in msg or msg["content"] is None:
            if required:
                raise missing(f"{p}.content")
            return ""
        content = msg["content"]
        if isinstance(content, str):
            return content
        if not isinstance(content, list):
            raise invalid_type(f"{p}.content", "one of a string or array of objects", content)
        texts = []
        for j, part in enumerate(content):
            pp = f"{p}.content[{j}]"
            if not isinstance(part, dict):
                raise invalid_type(pp, "an object", part)
            ptype = _require(part, "type", f"{pp}.type", str, "a string")
            if ptype not in allowed:
                raise invalid_value(f"{pp}.type", ptype, allowed)
            if ptype == "text":
                texts.append(_require(part, "text", f"{pp}.text", str, "a string"))
            elif ptype == "refusal":
                texts.append(_require(part, "refusal", f"{pp}.refusal", str, "a string"))
            elif ptype == "image_url":
                image = _require(part, "image_url", f"{pp}.image_url", dict, "an object")
                _require(image, "url", f"{pp}.image_url.url", str, "a string")
            elif ptype == "input_audio":
                audio = _require(part, "input_audio", f"{pp}.input_audio", dict, "an object")
                _require(audio, "data", f"{pp}.input_audio.data", str, "a string")
                _require(audio, "format", f"{pp}.input_audio.format", str, "a string")
            elif ptype == "file":
                _require(part, "file", f"{pp}.file", dict, "an object")
        return " ".join(texts)

    def _chat_tool_calls(self, msg: dict[str, Any], p: str) -> list[dict[str, Any]]:
        calls = msg.get("tool_calls")
        if calls is None:
            return []
        if not isinstance(calls, list):
            raise invalid_type(f"{p}.tool_calls", "an array of objects", calls)
        for k, call in enumerate(calls):
            cp = f"{p}.tool_calls[{k}]"
            if not isinstance(call, dict):
                raise invalid_type(cp, "an object", call)
            _require(call, "id", f"{cp}.id", str, "a string")
            ctype = _require(call, "type", f"{cp}.type", str, "a string")
            if ctype != "function":
                raise invalid_value(f"{cp}.type", ctype, ("function",))
            fn = _require(call, "function", f"{cp}.function", dict, "an object")
            _require(fn, "name", f"{cp}.function.name", str, "a string")
            _require(fn, "arguments", f"{cp}.function.arguments", str, "a string")
        return calls

    def _chat_tools(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        tools = body.get("tools")
        out: list[tuple[str, dict[str, Any]]] = []
        if tools is not None:
            if not isinstance(tools, list):
                raise invalid_type("tools", "an array of objects", tools)
            for i, tool in enumerate(tools):
                p = f"tools[{i}]"
                if not isinstance(tool, dict):
                    raise invalid_type(p, "an object", tool)
                ttype = _require(tool, "type", f"{p}.type", str, "a string")
                if ttype not in ("function", "custom"):
                    raise invalid_value(f"{p}.type", ttype, ("function", "custom"))
                inner = _require(tool, ttype, f"{p}.{ttype}", dict, "an object")
                name = _require(inner, "name", f"{p}.{ttype}.name", str, "a string")
                _check_tool_name(name, f"{p}.{ttype}.name")
                params = inner.get("parameters", {})
                if not isinstance(params, dict):
                    raise invalid_type(f"{p}.{ttype}.parameters", "an object", params)
                out.append((name, params))
        choice = body.get("tool_choice")
        if choice is not None:
            if not out:
                raise bad_request(
                    "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                    "tool_choice",
                    rule="openai.tool-choice-without-tools",
                )
            if isinstance(choice, str):
                if choice not in ("none", "auto", "required"):
                    raise invalid_value("tool_choice", choice, ("none", "auto", "required"))
            elif isinstance(choice, dict):
                fn = _require(choice, "function", "tool_choice.function", dict, "an object")
                name = _require(fn, "name", "tool_choice.function.name", str, "a string")
                if name not in dict(out):
                    raise bad_request(
                        f"Invalid value for 'tool_choice': tool '{name}' is not in the list of tools.",
                        "tool_choice",
                        rule="openai.tool-choice-unknown-tool",
                    )
            else:
                raise invalid_type("tool_choice", "a string or an object", choice)
        return out

    # ------------------------------------------------------------------ responses
    async def responses(self, req: Request) -> Response | SSEResponse:
        key = self._auth(req)
        body = self._body(req, RESPONSES_PARAMS, "responses")
        items = self._responses_input(body, key)
        tools = self._responses_tools(body)
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise invalid_type("instructions", "a string", instructions)
        max_out = _opt_int(body, "max_output_tokens", 16)
        spec = self._model(body["model"])
        conv = self._responses_conversation(items, instructions, tools, body.get("tool_choice"), max_out)
        plan = self._plan(conv)
        rid = self._id("resp_")
        output = self._responses_output(plan)
        status = "incomplete" if plan.finish_reason == "length" else "completed"
        final = self._response_object(rid, spec.id, body, status, output, self._responses_usage(plan))
        if body.get("store", True) is not False:
            self._stored[(key, rid)] = items + output
        if not body.get("stream"):
            return json_response(final)
        events = self._responses_stream(final, req.chunks(self.chunks))
        return SSEResponse(events, interval=self.interval, error_event=_responses_error_event, model=spec.id)

    def _responses_input(self, body: dict[str, Any], key: str) -> list[dict[str, Any]]:
        prev = body.get("previous_response_id")
        history: list[dict[str, Any]] = []
        if prev is not None:
            if body.get("conversation") is not None:
                raise bad_request(
                    "Mutually exclusive parameters: Ensure you are only providing one of: "
                    "'previous_response_id' or 'conversation'.",
                    None,
                    "mutually_exclusive_parameters",
                )
            if not isinstance(prev, str):
                raise invalid_type("previous_response_id", "a string", prev)
            stored = self._stored.get((key, prev))
            if stored is None:
                raise bad_request(
                    f"Previous response with id '{prev}' not found.",
                    "previous_response_id",
                    "previous_response_not_found",
                    rule="openai.previous-response-not-found",
                )
            history = list(stored)
        raw = body.get("input")
        if raw is None:
            if not history:
                raise missing("input")
            raw = []
        if isinstance(raw, str):
            new = [{"type": "message", "role": "user", "content": raw}]
        elif isinstance(raw, list):
            new = [self._check_item(item, f"input[{i}]") for i, item in enumerate(raw)]
        else:
            raise invalid_type("input", "one of a string or array of input items", raw)
        items = history + new
        known = {it["id"]: it for it in items if isinstance(it.get("id"), str) and it["type"] != "item_reference"}
        resolved = []
        for item in items:
            if item["type"] == "item_reference":
                if item["id"] not in known:
                    raise bad_request(f"Item with id '{item['id']}' not found.", "input", rule="openai.item-reference")
                item = known[item["id"]]
            resolved.append(item)
        calls = {it["call_id"] for it in resolved if it["type"] in ("function_call", "custom_tool_call")}
        for it in resolved:
            if it["type"] in ("function_call_output", "custom_tool_call_output") and it["call_id"] not in calls:
                raise bad_request(
                    f"No tool call found for function call output with call_id {it['call_id']}.",
                    "input",
                    rule="openai.tool-call-pairing",
                )
        return resolved

    def _check_item(self, item: Any, p: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise invalid_type(p, "an object", item)
        itype = item.get("type", "message" if "role" in item else None)
        types = (
            "message", "function_call", "function_call_output", "custom_tool_call",
            "custom_tool_call_output", "reasoning", "item_reference",
        )  # fmt: skip
        if itype is None:
            raise missing(f"{p}.type")
        if itype not in types:
            raise invalid_value(f"{p}.type", itype, types)
        item = {**item, "type": itype}
        checked: dict[str, Any] = item
        if itype == "message":
            roles = ("user", "system", "developer", "assistant")
            role = _require(item, "role", f"{p}.role", str, "a string")
            if role not in roles:
                raise invalid_value(f"{p}.role", role, roles)
            content = item.get("content")
            if isinstance(content, list):
                allowed = (
                    ("output_text", "refusal") if role == "assistant" else ("input_text", "input_image", "input_file")
                )
                for j, part in enumerate(content):
                    pp = f"{p}.content[{j}]"
                    if not isinstance(part, dict):
                        raise invalid_type(pp, "an object", part)
                    ptype = _require(part, "type", f"{pp}.type", str, "a string")
                    if ptype not in allowed:
                        raise invalid_value(f"{pp}.type", ptype, allowed)
                    if ptype in ("input_text", "output_text"):
                        _require(part, "text", f"{pp}.text", str, "a string")
            elif not isinstance(content, str):
                if content is None:
                    raise missing(f"{p}.content")
                raise invalid_type(f"{p}.content", "one of a string or array of input content", content)
        elif itype in ("function_call", "custom_tool_call"):
            _require(item, "call_id", f"{p}.call_id", str, "a string")
            _require(item, "name", f"{p}.name", str, "a string")
            field_ = "arguments" if itype == "function_call" else "input"
            _require(item, field_, f"{p}.{field_}", str, "a string")
        elif itype in ("function_call_output", "custom_tool_call_output"):
            _require(item, "call_id", f"{p}.call_id", str, "a string")
            if "output" not in item:
                raise missing(f"{p}.output")
            if not isinstance(item["output"], str | list):
                raise invalid_type(f"{p}.output", "one of a string or array of content", item["output"])
        elif itype == "reasoning":
            _require(item, "summary", f"{p}.summary", list, "an array")
        elif itype == "item_reference":
            _require(item, "id", f"{p}.id", str, "a string")
        return checked

    def _responses_tools(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        tools = body.get("tools")
        out: list[tuple[str, dict[str, Any]]] = []
        if tools is None:
            return out
        if not isinstance(tools, list):
            raise invalid_type("tools", "an array of objects", tools)
        # namespace / tool_search: Codex CLI extras api.openai.com accepts (docs/protocols/clients.md#codex-cli).
        allowed = ("function", "custom", "namespace", "tool_search", *sorted(HOSTED_TOOLS))
        for i, tool in enumerate(tools):
            p = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise invalid_type(p, "an object", tool)
            ttype = _require(tool, "type", f"{p}.type", str, "a string")
            if ttype not in allowed:
                raise invalid_value(f"{p}.type", ttype, allowed)
            if ttype in ("function", "custom"):
                # Chat-shaped tools ({"function": {...}}) fail here exactly like on OpenAI.
                name = _require(tool, "name", f"{p}.name", str, "a string")
                _check_tool_name(name, f"{p}.name")
                params = tool.get("parameters") or {}
                if not isinstance(params, dict):
                    raise invalid_type(f"{p}.parameters", "an object", params)
                if ttype == "function":
                    out.append((name, params))
        return out

    def _responses_conversation(
        self,
        items: list[dict[str, Any]],
        instructions: str | None,
        tools: list[tuple[str, dict[str, Any]]],
        tool_choice: Any,
        max_tokens: int | None,
    ) -> Conversation:
        texts = [instructions] if instructions else []
        last_role, last_text, trailing = "user", "", list[str]()
        for item in items:
            if item["type"] == "message":
                text = _item_text(item.get("content"))
                texts.append(text)
                trailing = []
                last_role = item["role"]
                if item["role"] == "user":
                    last_text = text
            elif item["type"] in ("function_call_output", "custom_tool_call_output"):
                out = item["output"] if isinstance(item["output"], str) else _item_text(item["output"])
                texts.append(out)
                trailing.append(out)
                last_role = "tool"
            elif item["type"] == "function_call":
                texts.append(item["arguments"])
                trailing = []
                last_role = "assistant"
        if last_role == "tool":
            last_text = "; ".join(trailing)
        if isinstance(tool_choice, dict) and tool_choice.get("type") != "function":
            tool_choice = "auto"
        return Conversation(texts, last_role, last_text, tools, tool_choice, max_tokens)

    def _responses_output(self, plan: Plan) -> list[dict[str, Any]]:
        if plan.text is not None:
            status = "incomplete" if plan.finish_reason == "length" else "completed"
            part = {"type": "output_text", "text": plan.text, "annotations": [], "logprobs": []}
            return [
                {"id": self._id("msg_"), "type": "message", "status": status, "role": "assistant", "content": [part]}
            ]
        return [
            {"id": self._id("fc_"), "type": "function_call", "status": "completed", "arguments": c.arguments,
             "call_id": c.call_id, "name": c.name}
            for c in plan.tool_calls
        ]  # fmt: skip

    def _responses_usage(self, plan: Plan) -> dict[str, Any]:
        return {
            "input_tokens": plan.prompt_tokens,
            "input_tokens_details": {"cached_tokens": plan.cached_tokens},
            "output_tokens": plan.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        }

    def _response_object(
        self,
        rid: str,
        model: str,
        body: dict[str, Any],
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
    ) -> dict[str, Any]:
        reasoning = body.get("reasoning") or {}
        return {
            "id": rid,
            "object": "response",
            "created_at": self.clock(),
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def _responses_stream(self, final: dict[str, Any], n: int) -> Iterator[bytes]:
        seq = itertools.count()

        def ev(type_: str, **data: Any) -> bytes:
            return sse_event({"type": type_, "sequence_number": next(seq), **data}, event=type_)

        start = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
        yield ev("response.created", response=start)
        yield ev("response.in_progress", response=start)
        for idx, item in enumerate(final["output"]):
            if item["type"] == "message":
                part = item["content"][0]
                text = part["text"]
                yield ev("response.output_item.added", output_index=idx,
                         item={**item, "status": "in_progress", "content": []})  # fmt: skip
                loc = {"item_id": item["id"], "output_index": idx, "content_index": 0}
                yield ev(
                    "response.content_part.added", **loc, part={"type": "output_text", "text": "", "annotations": []}
                )
                for piece in iter_split(text, n):
                    yield ev("response.output_text.delta", **loc, delta=piece, logprobs=[])
                yield ev("response.output_text.done", **loc, text=text, logprobs=[])
                yield ev("response.content_part.done", **loc, part=part)
            else:
                yield ev("response.output_item.added", output_index=idx,
                         item={**item, "status": "in_progress", "arguments": ""})  # fmt: skip
                loc = {"item_id": item["id"], "output_index": idx}
                for piece in iter_split(item["arguments"], n):
                    yield ev("response.function_call_arguments.delta", **loc, delta=piece)
                yield ev("response.function_call_arguments.done", **loc, name=item["name"], arguments=item["arguments"])
            yield ev("response.output_item.done", output_index=idx, item=item)
        terminal = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield ev(terminal, response=final)


def _responses_error_event(error: dict[str, Any]) -> bytes:
    # Responses streams report errors as a top-level `error` event (docs/protocols/responses.md#stream-events), or as a
    # `response.failed` when the response itself failed (`{"event": "response.failed", ...}`).
    if error.get("event") == "response.failed":
        err = {"code": error.get("code") or "server_error", "message": error.get("message") or "failed"}
        failed = {"id": "resp_failed", "object": "response", "status": "failed", "error": err, "output": []}
        return sse_event({"type": "response.failed", "sequence_number": 2, "response": failed}, event="response.failed")
    data = {"type": "error", "sequence_number": 0, "code": error.get("code"),
            "message": error.get("message"), "param": error.get("param")}  # fmt: skip
    return sse_event(data, event="error")


def _model_obj(spec: ModelSpec) -> dict[str, Any]:
    return {"id": spec.id, "object": "model", "created": spec.created, "owned_by": spec.owned_by}


def _check_tool_name(name: str, param: str) -> None:
    if not TOOL_NAME_RE.match(name):
        raise bad_request(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
            param,
            "invalid_value",
        )


def _item_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") or p.get("refusal", "") for p in content if isinstance(p, dict))
    return ""


# -------------------------------------------------------------------- standalone


def serve(
    *,
    port: int = 0,
    keys: Sequence[str] = ("sk-upstream",),
    models: Sequence[str] = ("gpt-4o-mini",),
    responses_only: Sequence[str] = (),
    chunks: int = 20,
    interval: float = 0.0,
) -> FakeServer[OpenAICompatApp]:
    """Build and start a fake (convenience for scripts and fixtures)."""
    specs = [ModelSpec(m, responses_only=m in responses_only) for m in models]
    app = OpenAICompatApp(keys=keys, models=specs, chunks=chunks, interval=interval)
    return FakeServer(app, port=port).start()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible upstream")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--key", action="append", help="accepted API key (repeatable)")
    parser.add_argument("--models", default="gpt-4o-mini,gpt-5.5", help="comma-separated model ids")
    parser.add_argument("--responses-only", default="", help="comma-separated models rejected on chat")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between stream events")
    args = parser.parse_args(argv)
    server = serve(
        port=args.port,
        keys=args.key or ["sk-upstream"],
        models=[m for m in args.models.split(",") if m],
        responses_only=[m for m in args.responses_only.split(",") if m],
        chunks=args.chunks,
        interval=args.interval,
    )
    print(f"fake openai-compatible upstream listening on {server.url}  (Ctrl-C to stop)", flush=True)
    wait_for_signal()
    server.stop()


if __name__ == "__main__":
    main()
