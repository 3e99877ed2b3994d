"""The few Beacon API reads chain impact needs (ethereum/beacon-APIs), over httpx.

Numbers come as decimal strings in the API and are returned as ints. Liveness is read with the
standard ``POST /eth/v1/validator/liveness/{epoch}``, falling back to the older
``GET /eth/v1/validator/liveness?epoch=E&indices=I&indices=J`` some clients (Lodestar 1.5)
still answer instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx


class BeaconError(Exception):
    """The beacon node did not answer as the API says it should (the message says what)."""


def source_name(url: str) -> str:
    """How a sample names where it came from: the host and port only (a URL may carry a key)."""
    parts = urlsplit(url)
    return f"beacon node {parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


class BeaconReader:
    def __init__(self, url: str, *, timeout: float = 5.0, client: httpx.Client | None = None):
        self.url = url
        self.client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def _url(self, path: str, **params: str | list[str]) -> str:
        """``path`` under the base URL, keeping the base's query (a provider's key) and adding
        ``params`` to it (a list is repeated: ``indices=6&indices=7``)."""
        parts = urlsplit(self.url)
        extra = [
            (name, item)
            for name, value in params.items()
            for item in (value if isinstance(value, list) else [value])
        ]
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *extra])
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, query=query))

    def _data(self, response: httpx.Response, what: str) -> Any:
        if response.status_code != 200:
            raise BeaconError(f"{what}: HTTP {response.status_code} from {source_name(self.url)}")
        try:
            return response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise BeaconError(f"{what}: not a Beacon API answer") from None

    def get(self, path: str, what: str, **params: Any) -> Any:
        return self._data(self.client.get(self._url(path, **params)), what)

    def slots_per_epoch(self) -> int:
        return int(self.get("/eth/v1/config/spec", "spec")["SLOTS_PER_EPOCH"])

    def syncing(self) -> tuple[int, int]:
        """(head slot, sync distance) of the node."""
        data = self.get("/eth/v1/node/syncing", "syncing")
        return int(data["head_slot"]), int(data["sync_distance"])

    def finalized_epoch(self) -> int:
        data = self.get("/eth/v1/beacon/states/head/finality_checkpoints", "finality")
        return int(data["finalized"]["epoch"])

    def liveness(self, epoch: int, indices: list[int]) -> dict[int, bool]:
        body = [str(i) for i in indices]
        response = self.client.post(self._url(f"/eth/v1/validator/liveness/{epoch}"), json=body)
        if response.status_code in (404, 405):
            # Repeated (indices=6&indices=7): Lodestar 1.5 refuses "6,7".
            url = self._url("/eth/v1/validator/liveness", epoch=str(epoch), indices=body)
            response = self.client.get(url)
        data = self._data(response, "liveness")
        return {int(item["index"]): bool(item["is_live"]) for item in data}

    def proposer_duties(self, epoch: int) -> list[tuple[int, int]]:
        """(slot, validator index) of every proposal due in ``epoch``. Some nodes answer only
        for the current and the next epoch (Lodestar 1.5: a 500 otherwise)."""
        duties = self.get(f"/eth/v1/validator/duties/proposer/{epoch}", "proposer duties")
        return [(int(d["slot"]), int(d["validator_index"])) for d in duties]

    def proposer_slots(self, epoch: int, indices: list[int]) -> list[int]:
        """The slots of ``epoch`` at which one of ``indices`` was to propose."""
        wanted = set(indices)
        return sorted(slot for slot, index in self.proposer_duties(epoch) if index in wanted)

    def has_block(self, slot: int) -> bool:
        response = self.client.get(self._url(f"/eth/v1/beacon/headers/{slot}"))
        if response.status_code == 404:
            return False
        self._data(response, f"block header at slot {slot}")
        return True
