"""The runbook lab for tests: one lab per module, put back to healthy after each test.

``needs_lab`` skips a test when the lab's programs are not installed (outside CI; CI must
have them). ``lab`` starts one lab for the module and checks nothing of it is left running
afterwards; ``healthy_lab`` (autouse where imported, or by ``usefixtures``) restarts stopped
nodes, unfreezes them and puts every server back to ready, weight 1 and UP after each test
that used the lab.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from incidentbot.infra.rpc import RpcError
from incidentbot.sandbox.lab import BACKEND, NODES, Lab, missing

T = TypeVar("T")
MISSING = missing()
needs_lab = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"),
    reason="runbook lab not installed: " + "; ".join(MISSING),
)


def wait_for(check: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something truthy (and return that)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def rpc_post(url: str, method: str, params: list | None = None) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    return httpx.post(url, json=body, timeout=5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if MISSING:
        pytest.fail("CI needs the runbook lab: " + "; ".join(MISSING))
    with Lab(tmp_path_factory.mktemp("lab")) as running:
        yield running
    assert running.processes() == []


@pytest.fixture(autouse=True)
def healthy_lab(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the lab: every node running, answering and mining, every
    server ready, weight 1 and UP."""
    yield
    if "lab" not in request.fixturenames:
        return
    running: Lab = request.getfixturevalue("lab")
    for node in NODES:
        if not running.supervisor.state(node).running:
            running.supervisor.stop(node)  # a node in BACKOFF after a failed start
            running.supervisor.start(node)
        wait_for(lambda node=node: answers(running, node), f"{node} to answer")
        running.fault(node, "unfreeze")
        running.haproxy.set_state(BACKEND, node, "ready")
        running.haproxy.set_weight(BACKEND, node, 1)
    for node in NODES:
        running.wait_server(node, "UP")


def answers(running: Lab, node: str) -> bool:
    try:
        running.head(node)
    except RpcError:
        return False
    return True


def start_runbook(engine: Any, settings: Any, name: str, params: dict[str, Any]) -> int:
    """Plan a shipped runbook for INC-1 and start it as alice, from the CLI; its run id."""
    from incidentbot import db
    from incidentbot.incidents import service as svc
    from incidentbot.runbooks import engine as rb_engine
    from incidentbot.runbooks import planning, run_context
    from incidentbot.runbooks.actions import Services, registry
    from incidentbot.runbooks.loader import load_dirs

    runbook = load_dirs(settings.runbooks.dirs, registry).get(name)
    assert runbook is not None, name
    with db.transaction(engine) as s:
        info = run_context.incident_info(s, svc.get(s, "INC-1"))
    plan = planning.plan(
        runbook,
        params,
        incident=info,
        variables=settings.runbooks.vars,
        services=Services(settings=settings),
    )
    with db.transaction(engine) as s:
        row = rb_engine.start(
            s,
            settings,
            plan,
            key=str(uuid.uuid4()),
            requester="alice",
            incident=svc.get(s, "INC-1"),
            source="cli",
        )
        return row.run_id
