"""The infrastructure clients without a lab: HAProxy runtime API output recorded from HAProxy
2.6, the snapshot store's on-disk contract, and how the JSON-RPC client reports failures from
a real HTTP server (errors carry the method and a masked URL, and say whether to retry).

The same clients against real anvil nodes, HAProxy and supervisord: tests/test_lab.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from incidentbot.infra.haproxy import (
    HaproxyError,
    HaproxyRuntime,
    parse_servers_state,
    parse_stat,
    status_state,
)
from incidentbot.infra.rpc import RpcClient, RpcError
from incidentbot.infra.snapshots import (
    ChecksumMismatch,
    SnapshotError,
    SnapshotManifest,
    SnapshotStore,
    anvil_state_height,
    wait_for_block,
)
from incidentbot.infra.supervisor import SupervisorClient, SupervisorError
from incidentbot.ledger import classify

# `show servers state rpc_nodes` from HAProxy 2.6.12 with node-1 stopped (its check refused),
# node-2 forced into drain with weight 40, node-3 forced into maintenance.
SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 rpc_nodes 1 node-1 127.0.0.1 0 0 1 1 0 8 2 0 6 0 0 0 - 33329 - 0 0 - - 0
3 rpc_nodes 2 node-2 127.0.0.1 2 8 40 1 0 15 3 3 6 0 0 0 - 45871 - 0 0 - - 0
3 rpc_nodes 3 node-3 127.0.0.1 0 1 1 1 0 15 3 0 14 0 0 0 - 47661 - 0 0 - - 0
"""  # noqa: E501

# `show stat` at the same moment.
SHOW_STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
rpc,FRONTEND,,,0,0,9984,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
rpc_nodes,node-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,2,1,0,0,,1,3,1,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,127.0.0.1:33329,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
rpc_nodes,node-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,40,0,1,0,0,0,0,,1,3,2,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:45871,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,40,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
rpc_nodes,node-3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,0,1,0,1,0,0,,1,3,3,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:47661,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
rpc_nodes,BACKEND,0,0,0,0,999,0,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,1,0,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,10,10,2048,1072,0,0,
"""  # noqa: E501

# node-1's row in `show stat` a moment after it stopped: one failed check of the two that
# take it down ("fall 2").
GOING_DOWN = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
rpc_nodes,node-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1,1,0,1,0,2,0,,1,3,1,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,2,,,,127.0.0.1:33329,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
"""  # noqa: E501


def test_the_clients_do_not_import_the_sandbox() -> None:
    """Runbook actions wrap these clients in production: no sandbox code comes with them."""
    code = (
        "import sys, incidentbot.infra; "
        "print(sorted(m for m in sys.modules if m.startswith('incidentbot.sandbox')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


# -- HAProxy -----------------------------------------------------------------------------------


def test_show_servers_state_rows() -> None:
    rows = {r.server: r for r in parse_servers_state(SERVERS_STATE)}
    assert set(rows) == {"node-1", "node-2", "node-3"}
    n1, n2, n3 = rows["node-1"], rows["node-2"], rows["node-3"]
    assert (n1.backend, n1.state, n1.check_status, n1.address) == (
        "rpc_nodes",
        "DOWN",
        "L4CON",
        "127.0.0.1:33329",
    )
    assert (n2.state, n2.weight, n2.check_status) == ("DRAIN", 40, "L7OK")
    # In maintenance no check runs: the left-over check code is not reported.
    assert (n3.state, n3.check_status) == ("MAINT", None)
    assert n1.name == "rpc_nodes/node-1"
    assert n1.last_change_s == 0


def test_show_stat_rows_agree_with_servers_state() -> None:
    stat = {r.server: r for r in parse_stat(SHOW_STAT)}
    state = {r.server: r for r in parse_servers_state(SERVERS_STATE)}
    assert set(stat) == set(state)  # FRONTEND and BACKEND rows are not servers
    for name, row in stat.items():
        assert (row.state, row.weight, row.check_status, row.address) == (
            state[name].state,
            state[name].weight,
            state[name].check_status,
            state[name].address,
        )
    assert stat["node-1"].check_description == "Layer4 connection problem"
    assert stat["node-1"].backup is False
    assert stat["node-2"].backup is True and stat["node-3"].backup is True


def test_show_stat_transitional_status_keeps_the_current_state() -> None:
    (row,) = parse_stat(GOING_DOWN)
    # "UP 1/2": still up, one more failed check takes it down.
    assert (row.state, row.status, row.check_status) == ("UP", "UP 1/2", "L4CON")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("UP", "UP"),
        ("UP 1/2", "UP"),
        ("DOWN", "DOWN"),
        ("DOWN 1/2", "DOWN"),
        ("MAINT", "MAINT"),
        ("MAINT (via rpc_nodes/node-1)", "MAINT"),
        ("MAINT (resolution)", "MAINT"),
        ("DRAIN", "DRAIN"),
        ("DRAIN (agent)", "DRAIN"),
        ("NOLB", "DRAIN"),
        ("no check", "UP"),
    ],
)
def test_status_words(status: str, state: str) -> None:
    assert status_state(status) == state


def test_unparseable_answers_are_errors() -> None:
    with pytest.raises(HaproxyError, match="show stat"):
        parse_stat("No such backend.")
    with pytest.raises(HaproxyError, match="version 1"):
        parse_servers_state("2\n# be_id\n")


def test_runtime_api_addresses_and_unreachable_socket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="host:port"):
        HaproxyRuntime("localhost")
    assert HaproxyRuntime("127.0.0.1:9999")._tcp == ("127.0.0.1", 9999)
    missing = HaproxyRuntime(f"unix:{tmp_path / 'haproxy.sock'}")
    with pytest.raises(HaproxyError) as err:
        missing.servers()
    assert err.value.code == "connect_failed" and err.value.retryable
    assert str(tmp_path / "haproxy.sock") in str(err.value)
    with pytest.raises(ValueError, match="one command"):
        missing.command("show stat; show info")
    with pytest.raises(ValueError, match="server name"):
        missing.set_state("rpc_nodes", "node-1 state ready", "drain")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ready, drain or maint"):
        missing.set_state("rpc_nodes", "node-1", "up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0 to 256"):
        missing.set_weight("rpc_nodes", "node-1", 300)


def test_supervisor_unreachable(tmp_path: Path) -> None:
    client = SupervisorClient(tmp_path / "supervisor.sock", timeout=2)
    with pytest.raises(SupervisorError) as err:
        client.state("node-1")
    assert err.value.code == "connect_failed" and err.value.retryable
    assert "is it running?" in str(err.value)
    assert classify(err.value).kind == "retry"


# -- snapshots ---------------------------------------------------------------------------------


def _write_snapshot(
    store: SnapshotStore, snapshot_id: str, data: bytes, created: datetime, **changes: object
) -> SnapshotManifest:
    manifest = SnapshotManifest(
        id=snapshot_id,
        node="node-1",
        chain_id=31337,
        height=12,
        block_hash="0x" + "ab" * 32,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        created=created,
    )
    body = {**manifest.to_dict(), **changes}
    directory = store.root / snapshot_id
    directory.mkdir(parents=True)
    (directory / "state.json").write_bytes(data)
    (directory / "manifest.json").write_text(json.dumps(body))
    return manifest


def test_manifest_round_trip_and_listing(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    older = _write_snapshot(store, "node-1-12-a", b'{"a":1}', t0)
    newer = _write_snapshot(store, "node-1-12-b", b'{"b":2}', t0 + timedelta(minutes=1))
    (tmp_path / ".tmp-node-1-13-x").mkdir()  # unfinished: hidden
    (tmp_path / "not-a-snapshot").mkdir()  # no manifest
    assert [m.id for m in store.list()] == [newer.id, older.id]
    got = store.get(older.id)
    assert got == older
    text = json.loads((tmp_path / older.id / "manifest.json").read_text())
    assert text["created"] == "2026-01-02T03:04:05Z"
    assert store.verify(newer.id) == newer


def test_verify_refuses_a_changed_state_file(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    m = _write_snapshot(store, "node-1-12-x", b'{"state": 1}', datetime.now(UTC))
    (tmp_path / m.id / "state.json").write_bytes(b'{"state": 2}')
    with pytest.raises(ChecksumMismatch) as err:
        store.verify(m.id)
    assert err.value.expected == m.sha256
    assert err.value.actual == hashlib.sha256(b'{"state": 2}').hexdigest()
    assert "refusing" in str(err.value)


def test_broken_manifests_are_explained(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    _write_snapshot(store, "no-height", b"{}", datetime.now(UTC), height=None)
    _write_snapshot(store, "bad-sum", b"{}", datetime.now(UTC), sha256="beef")
    _write_snapshot(store, "other-id", b"{}", datetime.now(UTC), id="someone-else")
    with pytest.raises(SnapshotError, match="no-height"):
        store.get("no-height")
    with pytest.raises(SnapshotError, match="64 hex digits"):
        store.get("bad-sum")
    with pytest.raises(SnapshotError, match="describes snapshot 'someone-else'"):
        store.get("other-id")
    with pytest.raises(SnapshotError, match="no snapshot 'missing'"):
        store.get("missing")
    with pytest.raises(SnapshotError, match="not a snapshot id"):
        store.get("../etc")
    assert store.list() == []


def test_restore_keeps_the_replaced_file_and_refuses_bad_snapshots(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    good = _write_snapshot(store, "good", b'{"good": true}', datetime.now(UTC))
    target = tmp_path / "node" / "state.json"
    target.parent.mkdir()
    target.write_bytes(b"current")
    aside = store.restore(good.id, target)
    assert target.read_bytes() == b'{"good": true}'
    assert aside is not None and aside.parent == target.parent
    assert aside.read_bytes() == b"current"
    # Nothing at the target: nothing set aside.
    fresh = tmp_path / "fresh" / "state.json"
    assert store.restore(good.id, fresh) is None
    assert fresh.read_bytes() == b'{"good": true}'
    # A damaged snapshot: the target is not touched.
    bad = _write_snapshot(store, "bad", b"original", datetime.now(UTC))
    (store.root / bad.id / "state.json").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch):
        store.restore(bad.id, target)
    assert target.read_bytes() == b'{"good": true}'
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(["state.json", aside.name])


def test_anvil_state_height() -> None:
    assert anvil_state_height(b'{"best_block_number": "0x1f", "block": {"number": "0x1"}}') == 31
    assert anvil_state_height(b'{"block": {"number": "0x2a"}}') == 42
    with pytest.raises(SnapshotError, match="not an anvil state dump"):
        anvil_state_height(b"garbage")


# -- JSON-RPC errors ---------------------------------------------------------------------------

KEY = "0123456789abcdef0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/busy"):
            self._send(503, b"busy", {"Retry-After": "7"})
        elif self.path.startswith("/html"):
            self._send(200, b"<html>gateway</html>", {"Content-Type": "text/html"})
        elif self.path.startswith("/limited"):
            body = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "limit"}}
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        elif self.path.startswith("/slow"):
            threading.Event().wait(2)
            self._send(200, b"{}", {})
        else:
            self._send(404, b"", {})

    def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rpc_connect_failure_masks_the_key() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v3/{KEY}"
    with RpcClient(url, timeout=2) as rpc, pytest.raises(RpcError) as err:
        rpc.block_number()
    e = err.value
    assert (e.code, e.method, e.retryable, e.sent) == (
        "connect_failed",
        "eth_blockNumber",
        True,
        False,
    )
    assert KEY not in str(e) and KEY not in e.url and "***" in e.url
    assert "eth_blockNumber" in str(e)
    assert classify(e).kind == "retry"


def test_rpc_http_errors(http_server: str) -> None:
    with RpcClient(f"{http_server}/busy/{KEY}") as rpc, pytest.raises(RpcError) as busy:
        rpc.chain_id()
    assert (busy.value.code, busy.value.retryable, busy.value.retry_after) == ("http_503", True, 7)
    assert KEY not in str(busy.value)
    with RpcClient(f"{http_server}/html") as rpc, pytest.raises(RpcError) as html:
        rpc.block("latest")
    assert (html.value.code, html.value.retryable) == ("bad_response", False)
    assert "not JSON" in str(html.value) and "eth_getBlockByNumber" in str(html.value)
    with RpcClient(f"{http_server}/nothing") as rpc, pytest.raises(RpcError) as missing:
        rpc.syncing()
    assert (missing.value.code, missing.value.retryable) == ("http_404", False)
    assert classify(missing.value).kind == "permanent"


def test_rpc_rate_limit_answer_is_retryable(http_server: str) -> None:
    with RpcClient(f"{http_server}/limited") as rpc, pytest.raises(RpcError) as err:
        rpc.peer_count()
    assert (err.value.code, err.value.rpc_code, err.value.retryable) == ("rpc_-32005", -32005, True)


def test_rpc_timeout(http_server: str) -> None:
    with RpcClient(f"{http_server}/slow", timeout=0.2) as rpc, pytest.raises(RpcError) as err:
        rpc.block_number()
    assert (err.value.code, err.value.sent, err.value.retryable) == ("timeout", True, True)


def test_rpc_rejects_bad_block_numbers() -> None:
    with RpcClient("http://127.0.0.1:1/") as rpc:
        with pytest.raises(ValueError):
            rpc.block(-1)
        with pytest.raises(ValueError):
            rpc.block("newest")  # type: ignore[arg-type]


def test_wait_for_block_reports_what_it_last_saw() -> None:
    rpc = RpcClient(f"http://127.0.0.1:{_closed_port()}/", timeout=0.5)
    with rpc, pytest.raises(SnapshotError) as err:
        wait_for_block(rpc, 5, "0x" + "cd" * 32, timeout=0.3, interval=0.05)
    assert "no answer (connect_failed)" in str(err.value)
