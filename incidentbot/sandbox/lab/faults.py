"""Faults the lab injects into a node: stop, freeze, lag, corrupt, reset, and their undoing."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Literal

from incidentbot.sandbox.lab import consensus
from incidentbot.sandbox.lab.base import LabBase, LabError
from incidentbot.sandbox.lab.config import NODES

FaultKind = Literal["stop", "start", "freeze", "unfreeze", "lag", "corrupt", "reset"]
FAULTS: tuple[str, ...] = ("stop", "start", "freeze", "unfreeze", "lag", "corrupt", "reset")
# The faults of the consensus part: validator clients stop and start; the beacon node also
# freezes (SIGSTOP: it neither answers nor follows the chain) and unfreezes (SIGCONT).
CONSENSUS_FAULTS: dict[str, tuple[str, ...]] = {
    consensus.BEACON: ("stop", "start", "freeze", "unfreeze"),
    consensus.VALIDATOR_A: ("stop", "start", "kill"),
    consensus.VALIDATOR_B: ("stop", "start", "kill"),
}
# A lagging node mines this many times slower than the others.
LAG_SLOWDOWN = 3


class FaultsMixin(LabBase):
    """:meth:`fault`: break a node the way nodes break."""

    def fault(self, node: str, kind: str, *, blocks: int = 10) -> str:
        """Inject a fault into ``node`` (or undo one); return what was done.

        - ``stop`` / ``start``: supervisord stops or starts the node's process.
        - ``freeze``: the node stops producing blocks (it still answers; its head stays).
        - ``unfreeze``: back to one block per block time.
        - ``lag``: the other nodes jump ``blocks`` blocks ahead and this node mines
          ``LAG_SLOWDOWN`` times slower, so it falls further behind until ``unfreeze``.
        - ``corrupt``: the state file is overwritten with garbage while the node is stopped;
          anvil refuses to load it, so the node fails to start (BACKOFF, then FATAL).
        - ``reset``: the state file is moved aside while the node is stopped; the node
          starts again on a new chain from block 0.

        A restart brings back normal mining (freeze, unfreeze and lag last until then).

        With the consensus part (``lab up --consensus``), ``node`` may also be ``beacon``
        (stop, start, freeze, unfreeze) or a validator client (stop, start).
        """
        if node in CONSENSUS_FAULTS:
            return self._consensus_fault(node, kind)
        self._check_node(node)
        if kind not in FAULTS:
            raise LabError(f"unknown fault {kind!r}; choose one of: {', '.join(FAULTS)}")
        self._require_running()
        block_time = self.config.block_time
        if kind == "stop":
            info = self.supervisor.stop(node)
            return f"{node} stopped ({info.state})"
        if kind == "start":
            info = self.supervisor.start(node)
            return f"{node} started ({info.state}, pid {info.pid})"
        if kind == "freeze":
            with self.rpc(node) as rpc:
                rpc.call("evm_setAutomine", [False])
                rpc.call("evm_setIntervalMining", [0])
                head = rpc.block_number()
            return f"{node} stopped producing blocks at {head}"
        if kind == "unfreeze":
            with self.rpc(node) as rpc:
                rpc.call("evm_setIntervalMining", [block_time])
                head = rpc.block_number()
            return f"{node} produces a block every {block_time}s again (head {head})"
        if kind == "lag":
            if blocks < 1:
                raise LabError("lag needs blocks >= 1")
            ahead = []
            for other in NODES:
                if other == node or not self.supervisor.state(other).running:
                    continue
                with self.rpc(other) as rpc:
                    # All at once, with the head's timestamp (interval 0): no blocks from
                    # the future.
                    rpc.call("anvil_mine", [hex(blocks), "0x0"])
                ahead.append(other)
            with self.rpc(node) as rpc:
                rpc.call("evm_setIntervalMining", [block_time * LAG_SLOWDOWN])
            jumped = f"{', '.join(ahead)} jumped {blocks} blocks ahead; " if ahead else ""
            return f"{jumped}{node} now mines every {block_time * LAG_SLOWDOWN}s"
        state = self.state_path(node)
        self.supervisor.stop(node)
        if kind == "corrupt":
            state.write_bytes(b'{"corrupted by incidentbot lab": ' + os.urandom(64).hex().encode())
            info = self.supervisor.start(node, wait=False)
            return f"{node}: state file overwritten; anvil cannot load it ({info.state})"
        # reset
        aside = None
        if state.exists():
            aside = state.with_name(f"{state.name}.reset-{int(time.time())}")
            os.replace(state, aside)
        info = self.supervisor.start(node)
        kept = f" (old state kept at {aside.name})" if aside else ""
        return f"{node} restarted on a new chain{kept}, pid {info.pid}"

    def _consensus_fault(self, program: str, kind: str) -> str:
        if self.config.consensus is None:
            raise LabError(
                f"{program} is part of the consensus lab, which this lab was started without "
                "(`incidentbot lab up --consensus`)"
            )
        allowed = CONSENSUS_FAULTS[program]
        if kind not in allowed:
            raise LabError(f"{program} takes the faults: {', '.join(allowed)} (not {kind!r})")
        self._require_running()
        if kind in ("freeze", "unfreeze"):
            info = self.supervisor.state(program)
            if not info.running or not info.pid:
                raise LabError(f"{program} is not running ({info.state})")
            os.kill(info.pid, signal.SIGSTOP if kind == "freeze" else signal.SIGCONT)
            if kind == "freeze":
                return f"{program} (pid {info.pid}) frozen: SIGSTOP; `unfreeze` sends SIGCONT"
            return f"{program} (pid {info.pid}) runs again (SIGCONT)"
        if kind == "kill":
            # A dead host: the client's process group SIGKILLed (no shutdown of any kind);
            # supervisord leaves it down (autorestart=false).
            info = self.supervisor.state(program)
            if not info.running or not info.pid:
                raise LabError(f"{program} is not running ({info.state})")
            with contextlib.suppress(ProcessLookupError):
                # Its group only when it leads one (supervisord makes it): never the lab's.
                if os.getpgid(info.pid) == info.pid:
                    os.killpg(info.pid, signal.SIGKILL)
                else:
                    os.kill(info.pid, signal.SIGKILL)
            return f"{program} (pid {info.pid}) killed: SIGKILL, left down"
        if kind == "stop":
            pid = self.supervisor.state(program).pid
            if pid:
                # A frozen process cannot act on the stop signal.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            info = self.supervisor.stop(program)
            return f"{program} stopped ({info.state})"
        info = self.supervisor.start(program)
        return f"{program} started ({info.state}, pid {info.pid})"
