"""Hypothesis-generated bad input against every client surface through the live proxy.

Target: no 5xx, every error in the surface's own format, and every request leaves exactly one
usage record with the status the client saw (matched by x-request-id). Shapes include NUL bytes,
huge and negative integers, deep nesting, large item counts, and hostile upstream usage
(huge, negative, fractional, textual token counts). The suite runs FUZZ_EXAMPLES (default 600)
examples; the documented long run (docs/security.md) is
    CI=true FUZZ_EXAMPLES=10000 bin/test tests/security/test_fuzz_surfaces.py -q -s -k generated --timeout 3600
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, completion_body, seed

pytestmark = [pytest.mark.live, pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
SURFACES = ["/chat/completions", "/responses", "/messages", "/messages/count_tokens"]
MODELS = ["gpt-4o-mini", "gpt-4.1", "nope", ""]

# Integers far outside every column and counter: 64-bit edges, and beyond (orjson reads those
# as floats), next to ordinary ones.
huge_ints = st.sampled_from(
    [2**31, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**30)]
)
nul_text = st.text(max_size=20).map(lambda t: t[: len(t) // 2] + "\x00" + t[len(t) // 2 :])
scalars = (
    st.none() | st.booleans() | st.integers() | huge_ints | st.floats(allow_nan=False) | st.text(max_size=30) | nul_text
)
values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4), max_leaves=25
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "x"]) | values},
    optional={"content": values | st.text(max_size=50), "tool_calls": values, "name": values, "type": values},
)
shaped = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS) | nul_text.map(lambda t: "gpt-4o-mini" + t) | values},
    optional={
        "messages": st.lists(message, max_size=4) | values,
        "input": values | st.text(max_size=40),
        "stream": st.booleans() | values,
        "max_tokens": st.integers(-5, 10**12) | huge_ints | values,
        "max_output_tokens": values,
        "tools": values,
        "tool_choice": values,
        "stream_options": values,
        "temperature": values,
        "system": values,
        "previous_response_id": values,
        "n": values,
        "metadata": values,
        "unknown_field_xyz": values,
    },
)


def _dumps(value: Any) -> bytes:
    # stdlib json: big integers and Infinity (not valid JSON) are welcome garbage here.
    return json.dumps(value).encode()


def _deep(n: int, inner: bytes = b"") -> bytes:
    return b"[" * n + inner + b"]" * n


def _many(n: int, *, surface_key: str = "messages") -> bytes:
    one = b'{"role":"user","content":"a"}'
    return b'{"model":"gpt-4o-mini","max_tokens":5,"' + surface_key.encode() + b'":[' + b",".join([one] * n) + b"]}"


raw_bodies = st.one_of(
    shaped.map(_dumps),
    # valid requests with a NUL byte somewhere the proxy records or forwards
    nul_text.map(
        lambda t: _dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": t}]})
    ),
    # item counts from a few to past the value bound (formats/bounds.py)
    st.sampled_from([10, 1_000, 30_000, 200_000]).map(_many),
    st.sampled_from([1_000, 200_000]).map(lambda n: _many(n, surface_key="input")),
    values.map(_dumps),
    st.binary(max_size=300),
    st.integers(1, 20_000).map(_deep),
    st.integers(1, 20_000).map(
        lambda n: b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":' + _deep(n) + b"}]}"
    ),
    st.binary(min_size=1, max_size=40).map(lambda b: b'{"model":"gpt-4o-mini","messages":"' + b + b'\xff\xfe"}'),
    st.just(b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800"}]}'),
    st.just(b""),
    st.just(b"null"),
)


def _header_text(n: int) -> st.SearchStrategy[str]:
    # Valid header bytes only (no edge whitespace): a client library refuses anything else.
    return st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=n)


headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(["application/json", "text/plain", "multipart/form-data", "garbage/x"]),
        "anthropic-version": st.sampled_from(["2023-06-01", "", "x" * 300]),
        "x-junk": _header_text(2000),
        "session_id": _header_text(300),
    },
)


count = st.one_of(
    st.integers(0, 100),
    huge_ints,
    st.integers(-(2**40), -1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
# What a hostile upstream reports as usage for the next upstream call (None: a normal answer).
hostile_usage = st.none() | st.fixed_dictionaries(
    {"prompt_tokens": count, "completion_tokens": count},
    optional={"total_tokens": count, "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": count})},
)


def _check_format(surface: str, status: int, content: bytes) -> None:
    body = orjson.loads(content)
    if surface.startswith("/messages"):
        assert body["type"] == "error" and isinstance(body["error"]["type"], str), body
        assert isinstance(body["error"]["message"], str)
    else:
        assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["type"], str), body


@pytest.fixture
def fuzz_target(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    fake_openai.app.chunks = 2
    return seed(live_proxy.url, fake_openai)


def test_generated_requests_never_5xx_and_errors_keep_the_surface_format(fuzz_target: ProxySetup) -> None:
    from asgiref.sync import async_to_sync

    from audit.models import UsageRecord
    from tests.support.proxy import usage_rows

    stats = {"requests": 0, "5xx": 0, "4xx": 0, "hostile_upstream": 0}
    seen: dict[str, int] = {}  # x-request-id -> status the client got
    client = httpx.Client(timeout=60)

    def send(url: str, body: bytes, hdrs: dict[str, str]) -> httpx.Response:
        r = client.post(url, content=body, headers=hdrs)
        stats["requests"] += 1
        seen[r.headers["x-request-id"]] = r.status_code
        if r.status_code >= 500:
            stats["5xx"] += 1
        return r

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(surface=st.sampled_from(SURFACES), body=raw_bodies, extra=headers, usage=hostile_usage)
    def run(surface: str, body: bytes, extra: dict[str, str], usage: Any) -> None:
        # A hostile upstream answers the next non-stream upstream call (a JSON body is the
        # non-stream shape; to a stream request it would be a protocol error, a fair 502).
        fuzz_target.fake.faults.clear()
        if usage is not None and b'"stream": true' not in body and b'"stream":true' not in body:
            # Serialised here (stdlib json): integers past 64 bits, which the fake's own
            # serialiser refuses, reach the proxy as an upstream would send them.
            hostile = json.dumps(completion_body(usage=usage, completion_id="chatcmpl-fuzz"))
            fuzz_target.fake.faults.push(Fault(kind="status", status=200, body=hostile))
            stats["hostile_upstream"] += 1
        r = send(fuzz_target.v1 + surface, body, {"authorization": f"Bearer {fuzz_target.key}", **extra})
        assert r.status_code < 500, (surface, body[:300], r.status_code, r.text[:300])
        if r.status_code >= 400:
            stats["4xx"] += 1
            _check_format(surface, r.status_code, r.content)

    try:
        run()
        # fixed cases hypothesis may not draw: huge header, oversized body, body and key absent
        big = send(
            fuzz_target.v1 + "/chat/completions",
            b"{}",
            {"authorization": f"Bearer {fuzz_target.key}", "x-big": "a" * 200_000},
        )
        assert big.status_code < 500 or big.status_code == 431
        for surface in SURFACES:
            r = send(fuzz_target.v1 + surface, b"x" * 100, {})
            assert r.status_code == 401
            _check_format(surface, r.status_code, r.content)
    finally:
        client.close()
    # Every request left exactly one record, with the status its client saw.
    rows = async_to_sync(usage_rows)(len(seen), timeout=120)
    recorded = {str(row.request_id): row.status_code for row in rows}
    tokens = [(r.input_tokens, r.output_tokens, r.cached_tokens) for r in rows]
    print(f"fuzz: {stats}, records={len(rows)}")
    assert stats["5xx"] == 0
    assert len(rows) == len(seen) == UsageRecord.objects.count()
    assert recorded == seen
    assert all(0 <= n <= 2**31 - 1 for counts in tokens for n in counts)


def test_oversized_body_is_413_in_surface_format(fuzz_target: ProxySetup, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000  # what the views read
    with httpx.Client(timeout=30) as client:
        for surface in SURFACES:
            r = client.post(
                fuzz_target.v1 + surface,
                content=b'{"model":"gpt-4o-mini","pad":"' + b"a" * 50_000 + b'"}',
                headers={"authorization": f"Bearer {fuzz_target.key}"},
            )
            assert r.status_code == 413, (surface, r.status_code)
            _check_format(surface, r.status_code, r.content)
