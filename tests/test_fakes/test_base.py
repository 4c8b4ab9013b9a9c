"""The fake-server framework: lifecycle, control plane (in-process and over HTTP), helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.base import (
    FakeApp,
    FakeServer,
    Fault,
    RemoteFake,
    Request,
    Response,
    iter_split,
    json_response,
    parse_sse,
)
from tests.fakes.openai_compat import OpenAICompatApp

Fake = FakeServer[OpenAICompatApp]
ROOT = Path(__file__).resolve().parents[2]


class EchoApp(FakeApp):
    """The smallest possible fake: proves the framework is reusable beyond OpenAI."""

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/api/v4/projects/{id}", self.project)

    async def project(self, req: Request) -> Response:
        return json_response({"id": int(req.path_params["id"])})


def test_server_starts_fast_and_stops_cleanly() -> None:
    start = time.monotonic()
    server = FakeServer(EchoApp()).start()
    assert time.monotonic() - start < 0.5
    assert server.url.startswith("http://127.0.0.1:")
    assert httpx.get(server.url + "/api/v4/projects/42").json() == {"id": 42}
    assert httpx.get(server.url + "/api/v4/nothing").status_code == 404
    assert httpx.post(server.url + "/api/v4/projects/42").status_code == 405
    port = server.port
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/v4/projects/1")


def test_requests_are_recorded(fake: Fake, client: httpx.Client) -> None:
    before = time.time()
    client.post("/v1/chat/completions?x=1", json={"model": "gpt-4o-mini", "messages": []})
    [rec] = fake.requests
    assert rec["method"] == "POST" and rec["path"] == "/v1/chat/completions" and rec["query"] == "x=1"
    assert rec["headers"]["authorization"].startswith("Bearer ")
    assert rec["json"] == {"model": "gpt-4o-mini", "messages": []}
    assert before <= rec["received_at"] <= time.time()


def test_http_control_api_drives_a_fake(fake: Fake) -> None:
    remote = RemoteFake(fake.url)
    try:
        remote.push(Fault.http(503).where(path="/v1/models"))
        assert httpx.get(fake.url + "/_fake/faults").json()["faults"][0]["status"] == 503
        key = next(iter(fake.app.keys))
        assert httpx.get(fake.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 503
        assert [r["path"] for r in remote.requests()] == ["/v1/models"]  # control calls aren't recorded
        assert remote.stats()["requests"] == 1
        bad = httpx.post(fake.url + "/_fake/faults", json={"kind": "explode"})
        assert bad.status_code == 400
        remote.reset()
        assert remote.requests() == [] and len(fake.faults) == 0
    finally:
        remote.close()


def test_iter_split_and_parse_sse() -> None:
    assert list(iter_split("abcdefg", 3)) == ["abc", "de", "fg"]
    assert list(iter_split("ab", 5)) == ["a", "b"]
    assert list(iter_split("", 5)) == []
    msgs = parse_sse(b'event: a\ndata: {"x": 1}\n\n: comment\n\ndata: [DONE]\n\n')
    assert [(m.event, m.data) for m in msgs] == [("a", '{"x": 1}'), (None, "[DONE]")]
    assert msgs[0].json() == {"x": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_standalone_command_serves_until_interrupted() -> None:
    port = _free_port()
    args = "--key sk-demo --models gpt-4o-mini,gpt-5.5 --responses-only gpt-5.5 --chunks 4 --interval 0.01"
    cmd = [sys.executable, "-m", "tests.fakes.openai_compat", "--port", str(port), *args.split()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        auth = {"authorization": "Bearer sk-demo"}
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=auth).json()
        assert [m["id"] for m in models["data"]] == ["gpt-4o-mini", "gpt-5.5"]
        chat = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers=auth,
            json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "x"}]},
        )
        assert chat.status_code == 400
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0


def test_reset_restores_constructor_settings(fake: Fake, client: httpx.Client) -> None:
    fake.app.reply, fake.app.chunks = "changed", 3
    fake.faults.push(Fault.http(500))
    assert client.post("/_fake/reset").json() == {"ok": True}
    assert (fake.app.reply, fake.app.chunks, len(fake.faults)) == (None, 20, 0)
