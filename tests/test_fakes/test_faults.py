"""Every fault kind produces the failure a real upstream (or network) would."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.fakes.base import FakeServer, Fault, parse_sse
from tests.fakes.openai_compat import OpenAICompatApp

Fake = FakeServer[OpenAICompatApp]
CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
STREAM = {**BODY, "stream": True}


def sdk(fake: Fake, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key=api_key, max_retries=0)


@pytest.mark.parametrize(
    ("status", "exc", "err_type"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (403, openai.PermissionDeniedError, "invalid_request_error"),
        (404, openai.NotFoundError, "invalid_request_error"),
        (500, openai.InternalServerError, "server_error"),
        (502, openai.InternalServerError, "cf_bad_gateway"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_http_status_faults_raise_the_sdk_exception(
    fake: Fake, api_key: str, status: int, exc: type[Exception], err_type: str
) -> None:
    fake.faults.push(Fault.http(status))
    with pytest.raises(exc) as info:
        sdk(fake, api_key).chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.status_code == status
    assert info.value.body["type"] == err_type  # type: ignore[index]
    # the fault was consumed: the next request succeeds
    assert sdk(fake, api_key).chat.completions.create(**BODY).choices  # type: ignore[call-overload]


def test_429_carries_retry_after_and_rate_limit_headers(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.http(429, retry_after=7))
    resp = client.post(CHAT, json=BODY)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "7"
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"


def test_custom_error_body_and_headers(fake: Fake, client: httpx.Client) -> None:
    quota = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": None,
                       "code": "insufficient_quota"}}  # fmt: skip
    fake.faults.push(Fault.http(429, quota, headers={"x-should-retry": "false"}))
    resp = client.post(CHAT, json=BODY)
    assert resp.json() == quota and resp.headers["x-should-retry"] == "false"


def test_html_502_is_not_json(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.html(502))
    resp = client.post(CHAT, json=BODY)
    assert resp.status_code == 502
    assert resp.headers["content-type"] == "text/html"
    assert "<h1>502 Bad Gateway</h1>" in resp.text


def test_slow_first_byte_delays_headers(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.slow(0.3))
    start = time.monotonic()
    assert client.post(CHAT, json=BODY).status_code == 200
    assert time.monotonic() - start >= 0.3
    fake.faults.push(Fault.slow(2))
    with pytest.raises(httpx.ReadTimeout):
        client.post(CHAT, json=BODY, timeout=httpx.Timeout(5, read=0.2))
    # the fake notices the client gave up during the delay
    assert fake.control.wait_for(lambda c: c.cancelled_streams == 1, timeout=3)


def test_reset_and_close_before_any_response(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.reset())
    with pytest.raises(httpx.ReadError):
        client.post(CHAT, json=BODY)
    fake.faults.push(Fault.close())
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(CHAT, json=BODY)
    assert client.post(CHAT, json=BODY).status_code == 200


def test_mid_stream_cut_is_an_incomplete_chunked_read(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.cut(after=3))
    seen: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        client.stream("POST", CHAT, json=STREAM) as resp,
    ):
        assert resp.status_code == 200
        seen.extend(line for line in resp.iter_lines() if line.startswith("data:"))
    assert len(seen) == 3
    assert fake.control.cancelled_streams == 0  # a server-side cut is not a client cancel


def test_cut_non_stream_body(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.cut(after=0))
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        client.post(CHAT, json=BODY)


def test_cut_reaches_the_sdk_as_a_connection_error(fake: Fake, api_key: str) -> None:
    fake.faults.push(Fault.cut(after=2))
    stream = sdk(fake, api_key).chat.completions.create(**STREAM)  # type: ignore[call-overload]
    with pytest.raises(openai.APIConnectionError) as info:
        list(stream)
    # openai 3.x bundles its own httpx fork, so compare by name, not class
    assert type(info.value.__cause__).__name__ == "RemoteProtocolError"


def test_malformed_sse_data_line(fake: Fake, client: httpx.Client, api_key: str) -> None:
    fake.faults.push(Fault.malformed(after=1))
    text = client.post(CHAT, json=STREAM).text
    msgs = parse_sse(text)
    assert msgs[1].data == "{not json"
    assert msgs[-1].data == "[DONE]"  # the stream carries on after the bad event
    fake.faults.push(Fault.malformed(after=1))
    with pytest.raises(ValueError):  # json.JSONDecodeError inside the SDK's SSE decoder
        list(sdk(fake, api_key).chat.completions.create(**STREAM))  # type: ignore[call-overload]


def test_malformed_garbage_bytes(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.malformed(after=0, garbage=True))
    raw = client.post(CHAT, json=STREAM).content
    assert raw.startswith(b"\x00\xff\xfe garbage")


def test_stream_error_as_first_event(fake: Fake, client: httpx.Client, api_key: str) -> None:
    fake.faults.push(Fault.stream_error())
    resp = client.post(CHAT, json=STREAM)
    assert resp.status_code == 200
    [msg] = parse_sse(resp.text)
    assert msg.json()["error"]["type"] == "server_error"
    fake.faults.push(Fault.stream_error({"message": "boom", "type": "server_error", "param": None, "code": None}))
    with pytest.raises(openai.APIError, match="boom"):
        list(sdk(fake, api_key).chat.completions.create(**STREAM))  # type: ignore[call-overload]


def test_stream_error_on_responses_is_an_error_event(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.stream_error())
    msgs = parse_sse(client.post("/v1/responses", json={"model": "gpt-4.1", "input": "hi", "stream": True}).text)
    assert [m.event for m in msgs] == ["error"]
    assert msgs[0].json()["type"] == "error"


def test_pacing_override_per_request(fake: Fake, client: httpx.Client) -> None:
    fake.app.reply = "abcdefghij" * 3
    fake.faults.push(Fault.pacing(chunks=5, interval=0.02))
    start = time.monotonic()
    msgs = parse_sse(client.post(CHAT, json=STREAM).text)
    assert len(msgs) == 1 + 5 + 1 + 1  # role, content x5, final, [DONE]
    assert time.monotonic() - start > 0.12
    assert len(parse_sse(client.post(CHAT, json=STREAM).text)) == 1 + 20 + 1 + 1  # back to defaults


def test_fault_filters_by_path_model_and_times(fake: Fake, client: httpx.Client) -> None:
    fake.faults.push(Fault.http(503).where(model="gpt-4.1", times=2), Fault.http(500).where(path="/v1/responses"))
    assert client.post(CHAT, json=BODY).status_code == 200
    assert client.post(CHAT, json={**BODY, "model": "gpt-4.1"}).status_code == 503
    assert client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": "x"}).status_code == 500
    assert client.post(CHAT, json={**BODY, "model": "gpt-4.1"}).status_code == 503
    assert client.post(CHAT, json={**BODY, "model": "gpt-4.1"}).status_code == 200
    assert len(fake.faults) == 0


def test_client_disconnect_mid_stream_is_recorded_as_cancelled(fake: Fake, client: httpx.Client) -> None:
    fake.app.reply = "x" * 40
    fake.faults.push(Fault.pacing(interval=0.05))
    with client.stream("POST", CHAT, json=STREAM) as resp:
        events = 0
        for line in resp.iter_lines():
            events += line.startswith("data:")
            if events == 2:
                break  # leaving the block closes the half-read connection
    assert fake.control.wait_for(lambda c: c.cancelled_streams == 1 and c.open_streams == 0, timeout=3)
    [cancel] = fake.control.cancellations
    assert cancel["path"] == CHAT and cancel["model"] == "gpt-4o-mini"
    assert 2 <= cancel["events_sent"] < 20
    assert cancel["cancelled_at"] <= time.time()
    assert fake.control.completed_streams == 0
