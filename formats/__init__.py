"""Pure, I/O-free translation between the client dialects.

Chat Completions ("chat"), Responses ("responses", the canonical hub form) and Anthropic
Messages ("messages"): requests, non-stream responses, stream events, errors and usage.
See docs/formats.md for the mapping decisions.
"""

from ._common import EncodeOptions, custom_tool_names, hosted_tools_drop
from ._core import Dialect, InvalidRequest, UnsupportedFeature, UpstreamFormatError
from .bodies import decode_response, encode_response
from .errors import error_body, error_from_upstream
from .requests import decode_request, encode_request
from .sse import SseEvent, SseLimitExceeded, SseParser, encode_sse
from .stream import StreamTranslator
from .stream_start import event_type, is_error_event, is_handshake
from .usage import Usage, usage_from, usage_to
from .validate import validate_request

__all__ = [
    "Dialect",
    "EncodeOptions",
    "InvalidRequest",
    "SseEvent",
    "SseLimitExceeded",
    "SseParser",
    "StreamTranslator",
    "UnsupportedFeature",
    "UpstreamFormatError",
    "Usage",
    "custom_tool_names",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "encode_sse",
    "error_body",
    "error_from_upstream",
    "event_type",
    "hosted_tools_drop",
    "is_error_event",
    "is_handshake",
    "usage_from",
    "usage_to",
    "validate_request",
]
