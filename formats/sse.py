"""Server-sent events: one event type, an encoder and an incremental parser.

The parser follows the WHATWG event-stream rules that matter for LLM APIs: events end at a
blank line (LF, CRLF or CR line endings), ``data:`` lines are joined with ``\\n``, lines
starting with ``:`` are comments (keep-alives), and a single leading space after the colon is
dropped. ``id:``/``retry:`` are ignored: no LLM API relies on reconnection.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._core import UpstreamFormatError

DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One SSE event. ``data`` is the raw payload (JSON bytes or ``b"[DONE]"``)."""

    event: str | None
    data: bytes


def encode_sse(ev: SseEvent) -> bytes:
    """Frame one event. Multi-line payloads become several ``data:`` lines."""
    if b"\n" in ev.data or b"\r" in ev.data:
        lines = ev.data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"".join(b"data: " + line + b"\n" for line in lines)
    else:
        body = b"data: " + ev.data + b"\n"
    if ev.event is not None:
        return b"event: " + ev.event.encode() + b"\n" + body + b"\n"
    return body + b"\n"


class SseLimitExceeded(UpstreamFormatError):
    """One event grew beyond the parser's limit; the upstream is misbehaving."""


class SseParser:
    """Incremental bytes -> SseEvent splitter with a bounded buffer.

    Memory is bounded by ``max_event_bytes``: the unfinished tail plus the current event's
    data never exceed it, so a peer that never sends a blank line cannot exhaust memory.
    """

    __slots__ = ("_buf", "_data", "_data_len", "_event", "_has_data", "_max")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = b""
        self._event: str | None = None
        self._data: list[bytes] = []
        self._data_len = 0
        self._has_data = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        out: list[SseEvent] = []
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, nl if nl >= 0 else n)
            if cr >= 0:
                # A CR ends a line too; if it is the last byte we cannot yet know whether
                # an LF follows (CRLF split across chunks), so wait for more input.
                if cr == n - 1:
                    break
                end, nxt = cr, cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif nl >= 0:
                end, nxt = nl, nl + 1
            else:
                break
            self._line(buf[start:end], out)
            start = nxt
        self._buf = buf[start:]
        if len(self._buf) + self._data_len > self._max:
            self._reset()
            self._buf = b""
            raise SseLimitExceeded(None, f"SSE event larger than {self._max} bytes")
        return out

    def flush(self) -> list[SseEvent]:
        """End of stream: a final event without its blank line is still delivered."""
        out: list[SseEvent] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[SseEvent]) -> None:
        if not line:
            if self._has_data:
                out.append(SseEvent(self._event, b"\n".join(self._data)))
            self._reset()
            return
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._data_len += len(value) + 1
            self._has_data = True
            if self._data_len > self._max:
                self._reset()
                raise SseLimitExceeded(None, f"SSE event larger than {self._max} bytes")
        elif name == b"event":
            self._event = value.decode("utf-8", "replace") or None

    def _reset(self) -> None:
        self._event = None
        self._data = []
        self._data_len = 0
        self._has_data = False
