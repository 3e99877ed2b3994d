"""``incidentbot lab ...``: the runbook lab (anvil nodes behind HAProxy, under supervisord).

``lab up`` starts it in a directory (``data/lab`` unless ``--dir`` or $INCIDENTBOT_LAB_DIR
says otherwise) and returns; later commands, from any process, find it there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from incidentbot.cli.common import CliError, console
from incidentbot.infra.snapshots import SnapshotError
from incidentbot.ports import ExternalError
from incidentbot.sandbox.lab import FAULTS, Lab, LabError, LabStatus, default_dir

app = typer.Typer(
    help=(
        "The runbook lab: three anvil nodes behind HAProxy, run by supervisord; with "
        "--consensus also a Lodestar beacon node and validator clients A and B."
    ),
    no_args_is_help=True,
)
snapshot_app = typer.Typer(help="Snapshots of a lab node's state.", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")

DIR = typer.Option(
    None, "--dir", "-d", help="The lab's directory (default: $INCIDENTBOT_LAB_DIR or data/lab)."
)


def _lab(directory: Path | None) -> Lab:
    return Lab(directory or default_dir())


@contextmanager
def _errors() -> Iterator[None]:
    """Whatever the lab or its clients refuse ends as one line (see incidentbot.cli.main)."""
    try:
        yield
    except (LabError, SnapshotError) as exc:
        raise CliError(str(exc)) from exc
    except ExternalError as exc:
        raise CliError(str(exc)) from exc


def _print_status(st: LabStatus) -> None:
    if not st.running:
        console.print(f"Lab in {escape(st.dir)}: not running")
        return
    console.print(
        f"Lab in {escape(st.dir)}: running (supervisord pid {st.supervisor_pid}); "
        f"RPC through HAProxy: {st.frontend_url}"
    )
    nodes = Table("Node", "Role", "RPC", "Process", "Pid", "Uptime", "Head", "Chain id")
    for n in st.nodes:
        nodes.add_row(
            n.name,
            n.role,
            n.url or "-",
            n.state,
            str(n.pid or "-"),
            f"{n.uptime_s}s" if n.uptime_s is not None else "-",
            str(n.head) if n.head is not None else ("no answer" if n.error else "-"),
            str(n.chain_id or "-"),
        )
    console.print(nodes)
    servers = Table(
        "HAProxy server", "State", "Status", "Check", "Weight", "Address", "Backup",
        title=f"HAProxy ({st.haproxy})",
    )  # fmt: skip
    for s in st.servers:
        servers.add_row(
            s.server,
            s.state,
            s.status,
            escape(f"{s.check_status or '-'} {s.check_description}".strip()),
            str(s.weight),
            s.address,
            "yes" if s.backup else "no",
        )
    console.print(servers)
    cl = st.consensus
    if cl is None:
        return
    finalized = "-" if cl.finalized_epoch is None else str(cl.finalized_epoch)
    head = "no answer" if cl.head_slot is None else str(cl.head_slot)
    console.print(
        f"Consensus: beacon API {cl.beacon_url} (health {cl.health or 'no answer'}), "
        f"head slot {head}, finalized epoch {finalized}"
    )
    programs = Table("Program", "Role", "Process", "Pid", "Uptime", title="Consensus (Lodestar)")
    for p in cl.programs:
        programs.add_row(
            p.name,
            p.role,
            p.state + (" (frozen)" if p.frozen else ""),
            str(p.pid or "-"),
            f"{p.uptime_s}s" if p.uptime_s is not None else "-",
        )
    console.print(programs)


@app.command()
def up(
    directory: Path = DIR,
    timeout: float = typer.Option(
        None, "--timeout", min=1, help="Seconds to wait for it (30; 120 with --consensus)."
    ),
    with_consensus: bool = typer.Option(
        False,
        "--consensus",
        help="Also a Lodestar dev beacon node and validator clients A (running) and B "
        "(stopped) holding the same keys (a new devnet at every start).",
    ),
) -> None:
    """Start the lab: write its configuration, start supervisord, wait until ready."""
    lab = _lab(directory)
    with _errors():
        st = lab.up(timeout=timeout, with_consensus=with_consensus)
    _print_status(st)


@app.command("vars")
def vars_cmd(directory: Path = DIR) -> None:
    """Print the runbooks.vars and runbooks.egress (YAML) that point the shipped runbooks at
    this lab (its loopback addresses and sockets, which the egress policy refuses unless
    allowed)."""
    lab = _lab(directory)
    with _errors():
        if not lab.exists():
            raise LabError(f"no lab in {lab.dir}: start it with `incidentbot lab up`")
        found = lab.runbook_settings()
    typer.echo(yaml.safe_dump({"runbooks": found}, sort_keys=False), nl=False)


@app.command()
def down(directory: Path = DIR) -> None:
    """Stop the lab: HAProxy, the nodes and supervisord (state, logs, snapshots stay)."""
    lab = _lab(directory)
    with _errors():
        stopped = lab.down()
    if not stopped:
        console.print(f"Nothing of the lab in {escape(str(lab.dir))} was running.")
        return
    names = ", ".join(f"{p.kind} {p.pid}" for p in stopped)
    console.print(f"Stopped {len(stopped)} processes ({names}).")


@app.command()
def status(
    directory: Path = DIR,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show the nodes (process, head, chain id) and HAProxy's view of them."""
    lab = _lab(directory)
    with _errors():
        st = lab.status()
    if as_json:
        typer.echo(json.dumps(st.to_dict(), indent=2))
        return
    _print_status(st)


@app.command()
def fault(
    node: str = typer.Argument(
        ...,
        help="node-1, node-2 or node-3; with --consensus also beacon, validator-a, validator-b.",
    ),
    kind: str = typer.Argument(
        ...,
        help=f"One of: {', '.join(FAULTS)} (beacon: stop, start, freeze, unfreeze; a "
        "validator client: stop, start).",
    ),
    blocks: int = typer.Option(10, "--blocks", min=1, help="lag: how far the others jump."),
    directory: Path = DIR,
) -> None:
    """Break a node (stop, freeze, lag, corrupt, reset) or undo it (start, unfreeze)."""
    lab = _lab(directory)
    with _errors():
        done = lab.fault(node, kind, blocks=blocks)
    console.print(escape(done))


@snapshot_app.command("create")
def snapshot_create(
    node: str = typer.Argument(..., help="node-1, node-2 or node-3."),
    directory: Path = DIR,
) -> None:
    """Snapshot a node's state into the lab's snapshot store."""
    lab = _lab(directory)
    with _errors():
        m = lab.snapshot(node)
    console.print(
        f"Snapshot {m.id}: {m.node} at height {m.height} ({m.block_hash}), "
        f"{m.size} bytes, sha256 {m.sha256[:16]}…"
    )


@snapshot_app.command("list")
def snapshot_list(directory: Path = DIR) -> None:
    """List the snapshots, newest first."""
    lab = _lab(directory)
    with _errors():
        manifests = lab.snapshots.list()
    if not manifests:
        console.print(f"No snapshots in {escape(str(lab.snapshots.root))}.")
        return
    table = Table("Id", "Node", "Height", "Block hash", "Chain id", "Size", "Created (UTC)")
    for m in manifests:
        table.add_row(
            m.id,
            m.node,
            str(m.height),
            m.block_hash,
            str(m.chain_id),
            str(m.size),
            m.created.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@snapshot_app.command("restore")
def snapshot_restore(
    node: str = typer.Argument(..., help="The node to restore."),
    snapshot_id: str = typer.Argument(..., help="The snapshot, as `lab snapshot list` shows it."),
    timeout: float = typer.Option(30.0, "--timeout", min=1, help="Seconds to wait for the node."),
    directory: Path = DIR,
) -> None:
    """Restore a snapshot onto a node (the state it replaces is kept aside)."""
    lab = _lab(directory)
    with _errors():
        result = lab.restore(node, snapshot_id, timeout=timeout)
    kept = f"; its previous state is at {result.aside}" if result.aside else ""
    console.print(
        escape(
            f"{node} restored from {snapshot_id}: block {result.block.number} is "
            f"{result.block.hash}{kept}"
        )
    )
