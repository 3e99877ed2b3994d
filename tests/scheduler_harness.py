"""Jobs for scheduler tests: importing this registers ``harness.effect``.

``incidentbot scheduler --import tests.scheduler_harness`` runs it in a child process. Each run
POSTs its slot's token to the EffectServer at ``$SCHEDULER_HARNESS_URL`` (deduplicated by token,
so a rerun of a slot whose scheduler died mid-run is counted as a request, not an effect).
"""

from __future__ import annotations

import os

import httpx

from incidentbot.scheduler import JobContext, job


@job("harness.effect", idempotent=True)
def effect(ctx: JobContext) -> None:
    url = os.environ["SCHEDULER_HARNESS_URL"]
    response = httpx.post(url, json={"token": ctx.token, "dedupe": True}, timeout=10)
    response.raise_for_status()
