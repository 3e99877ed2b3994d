"""The egress configuration of tests whose steps connect to local servers.

The test servers (HTTP servers, the lab's nodes and HAProxy) listen on loopback, and the
lab's runtime API and supervisord on unix sockets under the temporary directory: the egress
policy refuses all of them unless the configuration allows them, so these tests say so.
"""

from __future__ import annotations

import tempfile

from incidentbot.runbooks.egress import EgressPolicy, EgressSettings

# `runbooks.egress` for settings: loopback (IPv4) allowed for every action.
LOOPBACK: dict[str, list[str]] = {"allow": ["127.0.0.1"]}
# The policy for actions run directly: loopback, and unix sockets under the temporary directory.
LOCAL_POLICY = EgressPolicy(
    EgressSettings(allow=["127.0.0.1"], sockets=[tempfile.gettempdir().rstrip("/") + "/"])
)
