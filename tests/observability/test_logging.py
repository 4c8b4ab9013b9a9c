"""Structured logs: JSON lines carry the request id (the same as the header and the usage
record), secrets are redacted, LOG_FORMAT picks the formatter."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from proxy_project.logging import JsonFormatter, RedactSecretsFilter, RequestIdFilter, redact
from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, seed, usage_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """A JSON handler on the root logger, configured like LOG_FORMAT=json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecretsFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def two_accounts(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai, accounts=2)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_log_lines_carry_the_request_id_of_header_and_usage_record(
    two_accounts: ProxySetup, json_log: io.StringIO
) -> None:
    # given two accounts, the first answers 500 once (dispatch logs the failed attempt)
    proxy = two_accounts
    proxy.fake.faults.push(Fault.http(500))
    # when the client sends a request, with its own correlation id
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            proxy.v1 + "/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers=proxy.headers(**{"x-request-id": "client-42"}),
        )
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    rows = await usage_rows(1)
    # then every line logged while serving it is JSON with that id
    lines = [x for x in _lines(json_log) if x["logger"] == "routing.dispatch"]
    assert lines, json_log.getvalue()
    line = lines[0]
    assert line["request_id"] == rid == str(rows[0].request_id)
    assert line["client_request_id"] == "client-42"
    assert line["level"] == "WARNING" and "upstream attempt failed" in line["message"]
    assert {"ts", "level", "logger", "message"} <= line.keys()
    # and the client's key never appears in any line
    assert proxy.key not in json_log.getvalue()


def test_redaction_filter_masks_keys_tokens_and_tracebacks(json_log: io.StringIO) -> None:
    log = logging.getLogger("tests.observability.redact")
    client_key = "sk-team-" + "A1b2C3d4" * 5
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEyMyJ9.c2lnbmF0dXJlLXZhbHVl"
    log.warning("auth header was %s", f"Bearer {client_key}")
    log.warning("upstream key sk-proj-abcdefghijklmnop and %s", "glpat-abcdefghij0123456789")
    log.warning("codex access token %s", jwt)
    log.warning("with extra", extra={"header": f"authorization: Bearer {client_key}"})
    try:
        raise ValueError(f"bad key {client_key}")
    except ValueError:
        log.exception("failed")
    text = json_log.getvalue()
    for secret in (client_key, "sk-proj-abcdefghijklmnop", "glpat-abcdefghij0123456789", jwt, "A1b2C3d4"):
        assert secret not in text
    lines = _lines(json_log)
    assert lines[0]["message"] == "auth header was Bearer [REDACTED]"
    assert lines[1]["message"] == "upstream key sk-[REDACTED] and glpat-[REDACTED]"
    assert lines[2]["message"] == "codex access token [REDACTED-JWT]"
    assert lines[3]["header"] == "authorization: Bearer [REDACTED]"
    assert "ValueError: bad key sk-[REDACTED]" in lines[4]["exc"]
    # outside a request there is no request id field
    assert "request_id" not in lines[0]


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "model gpt-4o-mini account acct-A status 429 task-name risk-assessment"
    assert redact(text) == text
    assert redact("") == ""


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_log_format_setting_selects_the_formatter(fmt: str) -> None:
    code = (
        "import django, logging; django.setup();logging.getLogger('probe').warning('hello %s', 'sk-team-secretsecret')"
    )
    env = {**os.environ, "LOG_FORMAT": fmt, "DJANGO_SETTINGS_MODULE": "proxy_project.settings.test"}
    out = (
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
        )
        .stderr.strip()
        .splitlines()[-1]
    )
    assert "secretsecret" not in out
    if fmt == "json":
        line = orjson.loads(out)
        assert line["logger"] == "probe" and line["message"] == "hello sk-[REDACTED]"
    else:
        assert out.endswith("WARNING probe [-] hello sk-[REDACTED]")
