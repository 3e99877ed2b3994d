"""What the consensus-layer actions share: a small Beacon API client under the egress policy,
the chain's clock, and validator liveness asked the way the node understands it.

Every request goes through the step's egress policy (:func:`egress_http.client`); errors are
the ledger's: a read that did not get an answer is retryable (nothing happened), an answer
that cannot be used is permanent. URLs in messages are masked (a provider key in a path or
query never shows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from incidentbot.ledger.actions import PermanentError, RetryableError, classify
from incidentbot.runbooks.actions._common import masked_url, shown
from incidentbot.runbooks.actions.base import ActionContext
from incidentbot.runbooks.actions.egress_http import client as egress_client
from incidentbot.runbooks.actions.web3.beacon import endpoint
from incidentbot.runbooks.egress import policy_of

# The standard liveness endpoint (beacon-APIs 2.4) and the one older clients answered
# (Lodestar 1.5 among them: the POST is a 404 there).
LIVENESS_POST = "/eth/v1/validator/liveness/{epoch}"
LIVENESS_GET = "/eth/v1/validator/liveness"


class BeaconApiError(RetryableError):
    """The node answered with an error status (``status``) to a read."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Clock:
    """The chain's clock: genesis time and the slot length, from the node."""

    genesis_time: int
    seconds_per_slot: int
    slots_per_epoch: int

    def slot(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return max(0, int(now - self.genesis_time) // self.seconds_per_slot)

    def epoch(self, now: float | None = None) -> int:
        return self.slot(now) // self.slots_per_epoch

    def epoch_of(self, slot: int) -> int:
        return slot // self.slots_per_epoch

    @property
    def epoch_seconds(self) -> int:
        return self.seconds_per_slot * self.slots_per_epoch


class BeaconApi:
    """The Beacon API at ``url`` for one step (use as a context manager)."""

    def __init__(self, ctx: ActionContext, action: str, url: str, timeout: float):
        policy_of(ctx.services).check_url(action, url)
        self.ctx, self.action, self.url = ctx, action, url
        self.http = egress_client(
            ctx, action, timeout=timeout, headers={"Accept": "application/json"}
        )
        self.liveness_endpoint: str | None = None

    def __enter__(self) -> BeaconApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    # -- requests ---------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, params: Any = None, body: Any = None
    ) -> httpx.Response:
        url = endpoint(self.url, path)
        try:
            return self.http.request(method, url, params=params, json=body)
        except httpx.HTTPError as exc:
            failure = classify(exc)
            message = shown(self.ctx, f"{method} {masked_url(url)}: {failure.message}")
            # A read that got no answer changed nothing: trying again is safe (also after a
            # timeout). Only a request that can never work is permanent.
            if failure.kind == "permanent":
                raise PermanentError(message) from None
            raise RetryableError(message) from None

    def data(self, method: str, path: str, *, params: Any = None, body: Any = None) -> Any:
        """The ``data`` of a 200 answer (BeaconApiError for another status)."""
        response = self.request(method, path, params=params, body=body)
        if response.status_code != 200:
            raise BeaconApiError(
                shown(
                    self.ctx,
                    f"{method} {masked_url(endpoint(self.url, path))} answered "
                    f"{response.status_code}: {api_message(response)}",
                ),
                response.status_code,
            )
        try:
            body_json = response.json()
        except ValueError:
            body_json = None
        if not isinstance(body_json, dict) or "data" not in body_json:
            raise PermanentError(
                shown(self.ctx, f"{method} {masked_url(endpoint(self.url, path))}: no `data`")
            )
        return body_json["data"]

    def get(self, path: str, **params: Any) -> Any:
        return self.data("GET", path, params=params or None)

    # -- what the actions ask ---------------------------------------------------------------

    def clock(self) -> Clock:
        genesis = self.get("/eth/v1/beacon/genesis")
        spec = self.get("/eth/v1/config/spec")
        try:
            return Clock(
                genesis_time=int(genesis["genesis_time"]),
                seconds_per_slot=int(spec["SECONDS_PER_SLOT"]),
                slots_per_epoch=int(spec["SLOTS_PER_EPOCH"]),
            )
        except (KeyError, TypeError, ValueError):
            raise PermanentError(
                shown(self.ctx, f"{masked_url(self.url)}: genesis or spec without slot timing")
            ) from None

    def head_slot(self) -> int:
        header = self.get("/eth/v1/beacon/headers/head")
        return as_int(header["header"]["message"]["slot"])

    def liveness(self, epoch: int, indices: list[int]) -> dict[int, bool]:
        """Whether each validator was seen active (attested or proposed) in ``epoch``.

        Tries the standard ``POST .../liveness/{epoch}`` first, then the ``GET`` older
        clients answer; remembers which one worked. Nodes only know the current and the
        previous epoch (and say so with a 400 for others)."""
        order = [LIVENESS_POST, LIVENESS_GET]
        if self.liveness_endpoint == LIVENESS_GET:
            order.reverse()
        last: BeaconApiError | None = None
        for which in order:
            try:
                if which == LIVENESS_POST:
                    rows = self.data(
                        "POST",
                        LIVENESS_POST.format(epoch=epoch),
                        body=[str(i) for i in indices],
                    )
                else:
                    rows = self.data(
                        "GET",
                        LIVENESS_GET,
                        # Repeated (indices=6&indices=7): Lodestar 1.5 refuses "6,7".
                        params={"epoch": str(epoch), "indices": [str(i) for i in indices]},
                    )
            except BeaconApiError as exc:
                if exc.status in (404, 405):
                    last = exc
                    continue
                raise
            self.liveness_endpoint = which
            return {as_int(row["index"]): bool(row["is_live"]) for row in rows}
        assert last is not None
        raise PermanentError(
            shown(self.ctx, f"the node answers neither liveness endpoint ({last})")
        ) from None


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    return int(value)


def api_message(response: httpx.Response) -> str:
    """The ``message`` of a Beacon API error body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:200]
    return response.reason_phrase


def index_list(value: Any) -> list[int]:
    """Validator indices: a list of numbers, or a string like ``6,7`` or ``6..7``."""
    if isinstance(value, str):
        text = value.strip()
        if ".." in text:
            low, _, high = text.partition("..")
            items: list[Any] = list(range(int(low), int(high) + 1))
        else:
            items = [part for part in text.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("give validator indices as a list (or '6,7' or '6..7')")
    out = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"{item!r} is not a validator index")
        number = int(str(item).strip())
        if number < 0:
            raise ValueError(f"{number} is not a validator index")
        if number not in out:
            out.append(number)
    if not out:
        raise ValueError("give at least one validator index")
    if len(out) > 1000:
        raise ValueError("at most 1000 validator indices per step")
    return out
