"""The local Slack server for tests that talk to it directly (no bot): one per test module,
reset before each test. Import the fixtures into a test module to use them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from incidentbot.sandbox.slack import SlackSandbox


@pytest.fixture(scope="module")
def server() -> Iterator[SlackSandbox]:
    with SlackSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def slack(server: SlackSandbox) -> SlackSandbox:
    server.reset()
    return server
