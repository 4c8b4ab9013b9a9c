"""What one client WebSocket remembers between its turns (docs/protocols/responses-websocket.md).

A client on the Responses WebSocket (Codex CLI with `supports_websockets`) sends the first
turn in full and every later one as `previous_response_id` (the last response on the same
socket) plus only the new input items, even with `store: false`: the server is expected to
keep the last response per connection. The proxy keeps exactly that here, in the process
that owns the socket (a socket never moves between processes), so a continuation can be
expanded into a full stateless request for any account or provider, and the upstream
transport state of the conversation (`UpstreamSession`) lives as long as the socket.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from executors.base import Continuation, UpstreamSession
from routing.snapshots import conversation_items, input_items, snapshot_expand


@dataclass(slots=True)
class Conversation:
    session: UpstreamSession = field(default_factory=UpstreamSession)
    response_id: str | None = None  # the last completed response on this socket
    items: list[Any] = field(default_factory=list)  # its whole conversation (input + output)
    account_id: int | None = None  # the account that served it (affinity)
    provider_meta: dict[str, Any] = field(default_factory=dict)
    turns: int = 0  # response.create frames handled

    async def expand(
        self, *, key_id: int, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], int | None, Continuation | None]:
        """A continuation becomes a full request: (body, provider_meta, preferred account,
        continuation). The last response on this socket is expanded from memory; another id
        falls back to the stored snapshots (`store` not false), like HTTP."""
        previous = body.get("previous_response_id")
        if not previous:
            return body, {}, self.account_id, None
        if previous != self.response_id:
            expanded, meta, account = await snapshot_expand(key_id=key_id, body=body)
            return expanded, meta, account, None
        expanded = {k: v for k, v in body.items() if k != "previous_response_id"}
        expanded["input"] = [*self.items, *input_items(body.get("input"))]
        return expanded, dict(self.provider_meta), self.account_id, Continuation(previous, len(self.items))

    def remember(
        self, *, request_body: dict[str, Any], response: dict[str, Any], account_id: int | None, meta: dict[str, Any]
    ) -> None:
        """Keep the completed response as the socket's last one (only the last one is kept)."""
        response_id = response.get("id")
        if not isinstance(response_id, str) or not response_id:
            return
        self.response_id = response_id
        self.items = conversation_items(request_body, response)
        if account_id is not None:
            self.account_id = account_id
        self.provider_meta = meta

    def prewarm(self, body: dict[str, Any]) -> list[bytes]:
        """`generate: false`: the client only sets the conversation up (Codex CLI sends it
        once per socket and waits for `response.completed`). Answered here without any
        upstream call; the next turn continues from this response's id."""
        response: dict[str, Any] = {
            "id": "resp_" + secrets.token_hex(16),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": body.get("model"),
            "output": [],
            "usage": None,
        }
        created = {"type": "response.created", "sequence_number": 0, "response": response}
        usage = {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        }
        done = {**response, "status": "completed", "usage": usage}
        completed = {"type": "response.completed", "sequence_number": 1, "response": done}
        self.remember(request_body=body, response=done, account_id=None, meta=self.provider_meta)
        return [orjson.dumps(created), orjson.dumps(completed)]

    async def aclose(self) -> None:
        self.items = []
        await self.session.aclose()
