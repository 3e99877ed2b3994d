"""A store of node state snapshots: ``<root>/<id>/state.json`` plus ``manifest.json``.

The manifest says what the snapshot is a snapshot *of*, as the node itself reported it when
the snapshot was taken: the chain id, the height, the block hash at that height. It also holds
the SHA-256 and size of the state file, so a damaged or swapped file is refused before any
node is touched, and the time it was created (UTC, ISO 8601).

Restoring is filesystem work: the target's current state file is moved aside (never deleted)
and the snapshot's copied in its place. Stopping the node before and starting it after is the
caller's (a supervisor restart, a runbook step); :func:`wait_for_block` then confirms the node
answers with the snapshot's block hash at the snapshot's height.

Snapshots are written to a hidden temporary directory and renamed into place, so a crash never
leaves a half-written snapshot that :meth:`SnapshotStore.list` would show.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from incidentbot.infra.rpc import Block, RpcClient, RpcError

STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SnapshotError(Exception):
    """A snapshot cannot be created, read, verified or restored (the message says why)."""


class ChecksumMismatch(SnapshotError):
    """The state file is not the one the manifest describes."""

    def __init__(self, snapshot_id: str, expected: str, actual: str, path: Path):
        super().__init__(
            f"snapshot {snapshot_id}: {path} has sha256 {actual[:16]}…, the manifest says "
            f"{expected[:16]}…; refusing to use it"
        )
        self.snapshot_id = snapshot_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class SnapshotManifest:
    id: str
    node: str
    chain_id: int
    height: int
    block_hash: str
    sha256: str
    size: int
    created: datetime  # UTC
    format: str = "anvil-state"  # what the state file is (how a node loads it)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "chain_id": self.chain_id,
            "height": self.height,
            "block_hash": self.block_hash,
            "sha256": self.sha256,
            "size": self.size,
            "created": self.created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "format": self.format,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotManifest:
        try:
            created = datetime.fromisoformat(str(data["created"]).replace("Z", "+00:00"))
            if created.tzinfo is None:
                raise ValueError("created has no time zone")
            manifest = cls(
                id=str(data["id"]),
                node=str(data["node"]),
                chain_id=int(data["chain_id"]),
                height=int(data["height"]),
                block_hash=str(data["block_hash"]),
                sha256=str(data["sha256"]).lower(),
                size=int(data["size"]),
                created=created.astimezone(UTC),
                format=str(data.get("format", "anvil-state")),
            )
        except KeyError as exc:
            raise ValueError(f"missing {exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if not re.fullmatch(r"[0-9a-f]{64}", manifest.sha256):
            raise ValueError("sha256 is not 64 hex digits")
        if manifest.height < 0 or manifest.size < 0:
            raise ValueError("height and size must be >= 0")
        return manifest


class SnapshotStore:
    """Snapshots under one directory, one sub-directory each."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"SnapshotStore({str(self.root)!r})"

    # -- reading ----------------------------------------------------------------------------

    def list(self) -> list[SnapshotManifest]:
        """Every snapshot, newest first. Directories without a readable manifest (and
        unfinished ones, which are hidden) are not snapshots and are left out."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                found.append(self.get(entry.name))
            except SnapshotError:
                continue
        return sorted(found, key=lambda m: (m.created, m.id), reverse=True)

    def get(self, snapshot_id: str) -> SnapshotManifest:
        """The manifest of ``snapshot_id`` (does not check the state file: see :meth:`verify`)."""
        directory = self._dir(snapshot_id)
        path = directory / MANIFEST_FILE
        if not directory.is_dir():
            known = ", ".join(m.id for m in self.list()[:5]) or "none"
            raise SnapshotError(f"no snapshot {snapshot_id!r} in {self.root} (newest: {known})")
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SnapshotError(f"snapshot {snapshot_id}: {path} is missing") from None
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"snapshot {snapshot_id}: cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise SnapshotError(f"snapshot {snapshot_id}: {path} is not a JSON object")
        try:
            manifest = SnapshotManifest.from_dict(data)
        except ValueError as exc:
            raise SnapshotError(f"snapshot {snapshot_id}: {path}: {exc}") from None
        if manifest.id != snapshot_id:
            raise SnapshotError(
                f"snapshot {snapshot_id}: {path} describes snapshot {manifest.id!r}"
            )
        return manifest

    def state_path(self, snapshot_id: str) -> Path:
        return self._dir(snapshot_id) / STATE_FILE

    def verify(self, snapshot_id: str) -> SnapshotManifest:
        """The manifest, once the state file's size and SHA-256 match it
        (:class:`ChecksumMismatch` otherwise)."""
        manifest = self.get(snapshot_id)
        path = self.state_path(snapshot_id)
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            raise SnapshotError(f"snapshot {snapshot_id}: {path} is missing") from None
        if actual != manifest.sha256:
            raise ChecksumMismatch(snapshot_id, manifest.sha256, actual, path)
        return manifest

    # -- writing ----------------------------------------------------------------------------

    def create(
        self,
        state: Path | bytes,
        *,
        rpc: RpcClient,
        node: str,
        height: int,
        state_format: str = "anvil-state",
        now: datetime | None = None,
    ) -> SnapshotManifest:
        """Store ``state`` (a file, or its bytes) as a snapshot of ``node`` at ``height``.

        ``height`` is the head the state was taken at (for anvil, :func:`anvil_state_height`);
        the chain id and the block hash at that height are asked of the node through ``rpc``,
        so the node must still have that block."""
        if height < 0:
            raise ValueError("height must be >= 0")
        if not _ID.match(node):
            raise ValueError(f"node name {node!r}: letters, digits, '.', '_' and '-' only")
        data = state if isinstance(state, bytes) else Path(state).read_bytes()
        if not data:
            raise SnapshotError(f"the state of {node} is empty; nothing to snapshot")
        chain_id = rpc.chain_id()
        block = rpc.block(height)
        if block is None:
            raise SnapshotError(
                f"{node} has no block {height} (at {rpc.masked_url}); cannot record its hash"
            )
        created = (now or datetime.now(UTC)).astimezone(UTC)
        self.root.mkdir(parents=True, exist_ok=True)
        base = f"{node}-{height}-{created:%Y%m%dT%H%M%SZ}"
        snapshot_id, n = base, 1
        while self._dir(snapshot_id).exists():
            n += 1
            snapshot_id = f"{base}-{n}"
        manifest = SnapshotManifest(
            id=snapshot_id,
            node=node,
            chain_id=chain_id,
            height=height,
            block_hash=block.hash,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            created=created,
            format=state_format,
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{snapshot_id}-", dir=self.root))
        try:
            _write(tmp / STATE_FILE, data)
            _write(tmp / MANIFEST_FILE, (json.dumps(manifest.to_dict(), indent=2) + "\n").encode())
            tmp.rename(self._dir(snapshot_id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest

    def restore(
        self, snapshot_id: str, target: str | Path, *, now: datetime | None = None
    ) -> Path | None:
        """Put the snapshot's state file at ``target`` (the node must be stopped).

        The snapshot is verified first; nothing is touched if it fails. The file already at
        ``target`` is moved aside to ``<target>.replaced-<UTC time>`` and that path returned
        (None if there was none)."""
        self.verify(snapshot_id)
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            shutil.copyfile(self.state_path(snapshot_id), tmp)
            aside: Path | None = None
            if target.exists() or target.is_symlink():
                aside = target.with_name(f"{target.name}.replaced-{stamp}")
                os.replace(target, aside)
            try:
                os.replace(tmp, target)
            except BaseException:
                if aside is not None:
                    os.replace(aside, target)
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return aside

    def _dir(self, snapshot_id: str) -> Path:
        if not _ID.match(snapshot_id or ""):
            raise SnapshotError(f"not a snapshot id: {snapshot_id!r}")
        return self.root / snapshot_id


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def wait_for_block(
    rpc: RpcClient,
    height: int,
    block_hash: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
) -> Block:
    """Poll until the node answers with ``block_hash`` at ``height``; return that block.

    A node that is not answering yet (starting) is waited for; once ``timeout`` seconds pass
    the error says what the node last showed."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        try:
            block = rpc.block(height)
        except RpcError as exc:
            if not exc.retryable:
                raise
            last = f"no answer ({exc.code})"
        else:
            if block is not None and block.hash.lower() == block_hash.lower():
                return block
            if block is None:
                try:
                    last = f"its head is {rpc.block_number()}, below {height}"
                except RpcError as exc:
                    last = f"no block {height} ({exc.code})"
            else:
                last = f"block {height} is {block.hash}"
        if time.monotonic() >= deadline:
            raise SnapshotError(
                f"{rpc.masked_url} did not answer with {block_hash} at height {height} "
                f"within {timeout:g}s: {last}"
            )
        time.sleep(interval)


# -- anvil ---------------------------------------------------------------------------------------


def dump_anvil_state(rpc: RpcClient) -> bytes:
    """anvil's whole state (``anvil_dumpState``) as the JSON ``--load-state`` reads."""
    raw = rpc.call("anvil_dumpState")
    if not isinstance(raw, str):
        raise SnapshotError(f"anvil_dumpState at {rpc.masked_url} did not answer a hex string")
    try:
        data = bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        raise SnapshotError(f"anvil_dumpState at {rpc.masked_url}: not hex") from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


def anvil_state_height(data: bytes) -> int:
    """The head an anvil state dump was taken at (its ``best_block_number``)."""
    try:
        state = json.loads(data)
        value = state.get("best_block_number")
        if value is None:
            value = state["block"]["number"]
        return int(value, 16) if isinstance(value, str) else int(value)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"not an anvil state dump: {exc}") from None
