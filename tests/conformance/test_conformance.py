"""Real clients x upstream paths x scenarios, through the real proxy onto the scripted fakes.

Each cell records pass/fail with its reason in the matrix (printed at the end of the run and
written to docs/conformance.md on a complete run). Cells listed in KNOWN fail for a proxy bug
that is reported but not fixed here: they are strict xfails, so a fix turns them into a loud
XPASS and the entry must be removed.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.drivers import CLI_CLIENTS, CLIENTS, Cell, CellError
from tests.conformance.harness import MATRIX, NOT_APPLICABLE, SCENARIOS, CellResult, RefusingProxy
from tests.conformance.paths import PATHS, Fakes, setup_path

pytestmark = [pytest.mark.conformance, pytest.mark.live, pytest.mark.django_db(transaction=True)]

# (client, path, scenario) -> why it fails today (a proxy bug, reported but not yet fixed).
# Empty: the Codex CLI `namespace` tool bug these cells used to list is fixed (formats flattens
# namespace members to `<ns>__<name>` and maps calls back).
KNOWN: dict[tuple[str, str, str], str] = {}


def _cells() -> list[Any]:
    return [
        pytest.param(client, path, scenario, id=f"{client}|{path}|{scenario}".replace(" ", "_"))
        for client in CLIENTS
        for path in PATHS
        for scenario in SCENARIOS
        if (client, scenario) not in NOT_APPLICABLE
    ]


@pytest.mark.parametrize(("client", "path", "scenario"), _cells())
def test_cell(
    client: str,
    path: str,
    scenario: str,
    request: pytest.FixtureRequest,
    conformance_fakes: Fakes,
    conformance_proxy: tuple[Any, Any],
    refusing_proxy: RefusingProxy,
    tmp_path: Path,
) -> None:
    from accounts.services import client_key_create

    if client in CLI_CLIENTS:
        request.getfixturevalue("cli_clients")  # fails in CI / skips locally without the CLIs
    server, recorder = conformance_proxy
    conformance_fakes.reset()
    up = setup_path(path, conformance_fakes, accounts=2 if scenario == "429-failover" else 1)
    _, key = client_key_create(name="conformance", owner_label="conformance@example.com")
    (tmp_path / "work").mkdir()
    (tmp_path / "home").mkdir()
    cell = Cell(
        client=client,
        path=path,
        scenario=scenario,
        proxy_url=server.url,
        key=key,
        up=up,
        recorder=recorder,
        workdir=tmp_path / "work",
        home=tmp_path / "home",
        refusing_proxy=refusing_proxy.url,
        nonce=secrets.token_hex(4),
    )
    known = KNOWN.get((client, path, scenario))
    started = time.monotonic()
    try:
        CLIENTS[client](cell)
        # The fakes enforce the real services' rules (docs/fake-rules.md); a real client through
        # the proxy on default settings must never make the proxy break one.
        broken = conformance_fakes.violations()
        if broken:
            raise CellError(f"the proxy broke upstream rules: {broken}")
    except Exception as exc:
        reason = str(exc) if isinstance(exc, CellError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())[:600]
        status = "known" if known else "fail"
        MATRIX.add(CellResult(client, path, scenario, status, known or reason, time.monotonic() - started))
        if known:
            pytest.xfail(f"known proxy bug (docs/conformance.md); observed: {reason[:200]}")
        raise
    MATRIX.add(CellResult(client, path, scenario, "pass", cell.note, time.monotonic() - started))
    if known:
        pytest.fail(f"known failure now passes, remove it from KNOWN: {known}")
