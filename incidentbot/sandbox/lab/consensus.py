"""The lab's consensus part: a Lodestar dev beacon node and two validator clients, A and B.

``lab up --consensus`` adds three supervisord programs to the lab:

- ``beacon``: ``lodestar dev``, a one-node devnet (minimal preset, phase0, 2 s slots) that
  itself runs interop validators 0..5 of 8, so the chain keeps finalising (6 of 8 is more
  than two thirds) whichever of A and B runs;
- ``validator-a``: a separate ``lodestar validator`` holding interop keys 6 and 7, started;
- ``validator-b``: another one, configured for the same two keys, left stopped. Starting it
  while A runs is exactly the double-signing incident the validator runbooks guard against.

Both validator clients run with doppelgänger protection (they watch the chain for their keys
for a while before signing, and exit if someone else signs with them), with their own data
directory (their own slashing-protection database) and with the standard keymanager API on a
loopback port of their own (bearer token in ``<data_dir>/validator-db/api-token.txt``): list
the keys, delete them (which returns their EIP-3076 history), import keystores. Lodestar comes
from the separate npm project in ``lab/consensus`` (``package.json`` pins 1.5.1 and, through
overrides, the dependencies it works with on Node 20).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from incidentbot.sandbox.lab.binaries import REPO_ROOT

BEACON = "beacon"
VALIDATOR_A = "validator-a"
VALIDATOR_B = "validator-b"
VALIDATORS = (VALIDATOR_A, VALIDATOR_B)
PROGRAMS = (BEACON, *VALIDATORS)
GENESIS_VALIDATORS = 8
BEACON_INDICES = (0, 5)  # the beacon node's own validators (inclusive range)
VC_INDICES = (6, 7)  # the keys A holds, and B is configured for
KEY_SET = "lab"  # their name in `lab vars` key_sets (move-validator-keys key_set=lab)
SECONDS_PER_SLOT = 2
SLOTS_PER_EPOCH = 8  # the minimal preset
NETWORK = "dev"
# How often `lab up` starts the beacon node again when it came up too late for its genesis.
START_ATTEMPTS = 3
LODESTAR_ENV = "INCIDENTBOT_LODESTAR"
PROJECT = Path("lab") / "consensus"
DOPPELGANGER_FLAG = "--doppelgangerProtectionEnabled"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_lodestar() -> Path | None:
    """$INCIDENTBOT_LODESTAR, else the CLI of the lab's own npm project (``lab/consensus``,
    under the current directory, then the repository's)."""
    override = os.environ.get(LODESTAR_ENV)
    if override:
        path = Path(override)
        return path if path.is_file() else None
    for base in (Path.cwd(), REPO_ROOT):
        script = base / PROJECT / "node_modules" / "@chainsafe" / "lodestar" / "lib" / "index.js"
        if script.is_file():
            return script.resolve()
    return None


def find_node() -> Path | None:
    found = shutil.which("node")
    return Path(found) if found else None


def missing() -> list[str]:
    problems = []
    if find_node() is None:
        problems.append("node not found: apt-get install nodejs (Node 20)")
    if find_lodestar() is None:
        problems.append(
            f"Lodestar not found: run `npm ci` in {PROJECT} (its package.json pins "
            f"@chainsafe/lodestar 1.5.1) or set {LODESTAR_ENV}"
        )
    return problems


@dataclass(frozen=True)
class ConsensusConfig:
    """What ``lab up --consensus`` chose (saved in lab.json under ``consensus``)."""

    node: str
    lodestar: str
    rest_port: int
    p2p_port: int
    seconds_per_slot: int = SECONDS_PER_SLOT
    # The keymanager API port of validator-a and validator-b (0: none, a lab of an older
    # release).
    keymanager_ports: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsensusConfig:
        return cls(
            node=str(data["node"]),
            lodestar=str(data["lodestar"]),
            rest_port=int(data["rest_port"]),
            p2p_port=int(data["p2p_port"]),
            seconds_per_slot=int(data.get("seconds_per_slot", SECONDS_PER_SLOT)),
            keymanager_ports=_two_ports(data.get("keymanager_ports")),
        )

    @property
    def beacon_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def keymanager_port(self, program: str) -> int:
        return self.keymanager_ports[VALIDATORS.index(program)]

    def keymanager_url(self, program: str) -> str | None:
        port = self.keymanager_port(program)
        return f"http://127.0.0.1:{port}" if port else None


def _two_ports(value: Any) -> tuple[int, int]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    return 0, 0


def consensus_dir(root: Path) -> Path:
    return root / "consensus"


def data_dir(root: Path, program: str) -> Path:
    """The data directory of ``beacon``, ``validator-a`` or ``validator-b``."""
    return consensus_dir(root) / program


def indices(low_high: tuple[int, int]) -> list[int]:
    return list(range(low_high[0], low_high[1] + 1))


def _range(low_high: tuple[int, int]) -> str:
    return f"{low_high[0]}..{low_high[1]}"


def beacon_argv(config: ConsensusConfig, root: Path) -> list[str]:
    return [
        config.node,
        config.lodestar,
        "dev",
        "--genesisValidators",
        str(GENESIS_VALIDATORS),
        "--startValidators",
        _range(BEACON_INDICES),
        "--dataDir",
        str(data_dir(root, BEACON)),
        "--rest",
        "--rest.address",
        "127.0.0.1",
        "--rest.port",
        str(config.rest_port),
        "--port",
        str(config.p2p_port),
        "--listenAddress",
        "127.0.0.1",
        "--discv5",
        "false",
        "--params.SECONDS_PER_SLOT",
        str(config.seconds_per_slot),
        # Its own validators' client (in the same process) finds the API here.
        "--server",
        config.beacon_url,
        "--logLevel",
        "info",
    ]


def token_file(root: Path, program: str) -> Path:
    """Where a validator client keeps its keymanager API token (Lodestar writes it)."""
    return data_dir(root, program) / "validator-db" / "api-token.txt"


def validator_argv(config: ConsensusConfig, root: Path, program: str) -> list[str]:
    port = config.keymanager_port(program)
    keymanager = (
        ["--keymanager", "--keymanager.address", "127.0.0.1", "--keymanager.port", str(port)]
        if port
        else []
    )
    return [
        config.node,
        config.lodestar,
        "validator",
        "--network",
        NETWORK,
        "--preset",
        "minimal",
        "--params.SECONDS_PER_SLOT",
        str(config.seconds_per_slot),
        "--interopIndexes",
        _range(VC_INDICES),
        "--server",
        config.beacon_url,
        "--dataDir",
        str(data_dir(root, program)),
        DOPPELGANGER_FLAG,
        *keymanager,
        "--logLevel",
        "info",
    ]


def programs(config: ConsensusConfig, root: Path) -> list[dict[str, Any]]:
    """The supervisord programs: name, argv, whether it starts with the lab, how it stops."""
    return [
        {
            "name": BEACON,
            "argv": beacon_argv(config, root),
            "autostart": True,
            # It ignores SIGINT and may take its time on SIGTERM: supervisord SIGKILLs it
            # after a short grace (its database is thrown away at the next `lab up`).
            "stopwaitsecs": 3,
            "priority": 30,
        },
        {
            "name": VALIDATOR_A,
            "argv": validator_argv(config, root, VALIDATOR_A),
            # Started by `lab up` once the chain runs (it reads the genesis time once).
            "autostart": False,
            "stopwaitsecs": 10,
            "priority": 40,
        },
        {
            "name": VALIDATOR_B,
            "argv": validator_argv(config, root, VALIDATOR_B),
            "autostart": False,
            "stopwaitsecs": 10,
            "priority": 40,
        },
    ]


def reset_data(root: Path) -> None:
    """A new devnet at every ``lab up``: the chain restarts from genesis, so the old beacon
    database and the validators' slashing-protection history (of another chain) go."""
    directory = consensus_dir(root)
    if directory.exists():
        shutil.rmtree(directory)
    for program in PROGRAMS:
        data_dir(root, program).mkdir(parents=True, exist_ok=True)


def chain_state(config: ConsensusConfig) -> tuple[str, str]:
    """Where the devnet is: ``running`` (blocks past genesis, the node in sync),
    ``waiting`` (not yet), or ``stuck``: the node came up so late that its clock is more
    than an epoch past its head with no peer to sync from, and it never produces a block
    (Lodestar counts itself in sync only within an epoch of its head). The second item says
    what was seen."""
    syncing = beacon_get(config, "/eth/v1/node/syncing")
    if not isinstance(syncing, dict):
        return "waiting", "the beacon API does not answer yet"
    try:
        head, distance = int(syncing["head_slot"]), int(syncing["sync_distance"])
    except (KeyError, TypeError, ValueError):
        return "waiting", f"unexpected /eth/v1/node/syncing answer {syncing!r}"
    if head > 0 and not syncing.get("is_syncing"):
        return "running", f"head slot {head}"
    if head == 0 and distance > SLOTS_PER_EPOCH:
        return "stuck", f"head slot 0, {distance} slots behind its clock"
    return "waiting", f"head slot {head}, {distance} slots behind"


def health(config: ConsensusConfig, timeout: float = 2.0) -> int | None:
    """The status of the beacon node's ``/eth/v1/node/health`` (None: no answer)."""
    try:
        return httpx.get(f"{config.beacon_url}/eth/v1/node/health", timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def beacon_get(config: ConsensusConfig, path: str, timeout: float = 2.0) -> Any:
    """The ``data`` of a Beacon API GET (None: no answer, or not a 200)."""
    try:
        response = httpx.get(f"{config.beacon_url}{path}", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json().get("data")
    except (ValueError, AttributeError):
        return None


def is_lodestar(argv: list[str]) -> bool:
    return any(os.path.basename(os.path.dirname(a)) == "lib" and "lodestar" in a for a in argv[:2])


def runbook_vars(config: ConsensusConfig, root: Path, supervisor_sock: Path) -> dict[str, Any]:
    """The ``consensus`` part of ``lab vars``: where the beacon API is and the validator
    clients (program, data directory, keys), for the validator actions and runbooks."""
    validators = {
        program: {
            "program": program,
            "data_dir": str(data_dir(root, program)),
            "indices": indices(VC_INDICES),
            "autostart": program == VALIDATOR_A,
            # Its keymanager API (the failover runbook checks a dead host's no longer
            # answers) and the file holding its bearer token.
            "api": config.keymanager_url(program) or "",
            "token_file": str(token_file(root, program)),
        }
        for program in VALIDATORS
    }
    return {
        "beacon": config.beacon_url,
        "supervisor": str(supervisor_sock),
        "lodestar": [config.node, config.lodestar],
        # What the slashing-protection actions take: the CLI (it runs with `node` from
        # PATH) and how it reaches this devnet's chain configuration.
        "cli": {
            "lodestar": config.lodestar,
            "network": NETWORK,
            "preset": "minimal",
            "params": {"SECONDS_PER_SLOT": str(config.seconds_per_slot)},
        },
        "network": NETWORK,
        "validators": validators,
        "source": VALIDATOR_A,
        "target": VALIDATOR_B,
        "indices": indices(VC_INDICES),
    }
