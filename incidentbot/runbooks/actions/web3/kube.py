"""``kubernetes.rollout_restart``: ``kubectl rollout restart`` for a Deployment, StatefulSet
or DaemonSet, through the official ``kubernetes`` Python client, optionally waiting for the
rollout the way ``kubectl rollout status`` does.

The restart is a strategic merge patch of the pod template's
``kubectl.kubernetes.io/restartedAt`` annotation (the time, RFC 3339, UTC): the controller
sees a changed template and replaces the pods by its update strategy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from incidentbot.ledger.actions import OutcomeUnknownError, PermanentError, RetryableError
from incidentbot.runbooks.actions._common import Seconds, fmt_seconds, shown
from incidentbot.runbooks.actions.base import Action, ActionContext
from incidentbot.runbooks.actions.web3._util import after_change, positive, wait_until

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
KINDS = {
    "deployment": "deployment",
    "deployments": "deployment",
    "deploy": "deployment",
    "statefulset": "statefulset",
    "statefulsets": "statefulset",
    "sts": "statefulset",
    "daemonset": "daemonset",
    "daemonsets": "daemonset",
    "ds": "daemonset",
}
_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class RolloutRestartInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(max_length=63, pattern=_LABEL)
    kind: Literal["deployment", "statefulset", "daemonset"]
    name: str = Field(max_length=253, pattern=_SUBDOMAIN)
    kubeconfig: str | None = None
    context: str | None = None
    wait: bool = True
    timeout: Seconds = 240.0
    interval: Seconds = 2.0

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if isinstance(value, str):
            kind = KINDS.get(value.strip().lower())
            if kind is None:
                raise ValueError(
                    f"{value!r} cannot be rolled out: use deployment, statefulset or daemonset"
                )
            return kind
        return value

    @field_validator("timeout", "interval")
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        return positive(value, f"the {info.field_name}")


@dataclass(frozen=True)
class Progress:
    """Where a rollout is, in kubectl's terms."""

    done: bool
    message: str
    generation: int | None
    observed_generation: int | None
    replicas: int | None
    updated: int | None
    ready: int | None
    available: int | None


def _n(value: Any) -> int:
    return int(value or 0)


def rollout_progress(kind: str, obj: Any) -> Progress:
    """Whether the rollout of ``obj`` is complete, as ``kubectl rollout status`` decides.

    Raises PermanentError when it cannot complete (a Deployment past its progress deadline)
    or cannot be followed (an OnDelete update strategy)."""
    meta, spec, status = obj.metadata, obj.spec, obj.status
    generation = meta.generation if meta else None
    observed = status.observed_generation if status else None
    name = f"{kind}/{meta.name if meta else '?'}"
    seen = generation is not None and observed is not None and generation <= observed
    if kind == "deployment":
        want = spec.replicas if spec and spec.replicas is not None else None
        replicas, updated = _n(status and status.replicas), _n(status and status.updated_replicas)
        available, ready = (
            _n(status and status.available_replicas),
            _n(status and status.ready_replicas),
        )
        base = dict(
            generation=generation,
            observed_generation=observed,
            replicas=want,
            updated=updated,
            ready=ready,
            available=available,
        )
        if not seen:
            return Progress(False, f"waiting for the {name} spec update to be observed", **base)
        for cond in (status.conditions or []) if status else []:
            if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
                raise PermanentError(f"{name} exceeded its progress deadline: {cond.message}")
        if want is not None and updated < want:
            message = f"{updated} out of {want} new replicas have been updated"
            return Progress(False, message, **base)
        if replicas > updated:
            message = f"{replicas - updated} old replicas are pending termination"
            return Progress(False, message, **base)
        if available < updated:
            return Progress(
                False, f"{available} of {updated} updated replicas are available", **base
            )
        return Progress(True, f"{name} successfully rolled out", **base)
    if kind == "daemonset":
        strategy = spec.update_strategy.type if spec and spec.update_strategy else None
        if strategy not in (None, "RollingUpdate"):
            raise PermanentError(f"{name} updates {strategy}: a rollout cannot be followed")
        desired = _n(status and status.desired_number_scheduled)
        updated = _n(status and status.updated_number_scheduled)
        available, ready = (
            _n(status and status.number_available),
            _n(status and status.number_ready),
        )
        base = dict(
            generation=generation,
            observed_generation=observed,
            replicas=desired,
            updated=updated,
            ready=ready,
            available=available,
        )
        if not seen:
            return Progress(False, f"waiting for the {name} spec update to be observed", **base)
        if updated < desired:
            return Progress(False, f"{updated} out of {desired} new pods have been updated", **base)
        if available < desired:
            return Progress(False, f"{available} of {desired} updated pods are available", **base)
        return Progress(True, f"{name} successfully rolled out", **base)
    # statefulset
    strategy = spec.update_strategy if spec else None
    if strategy is not None and strategy.type not in (None, "RollingUpdate"):
        raise PermanentError(f"{name} updates {strategy.type}: a rollout cannot be followed")
    want = spec.replicas if spec and spec.replicas is not None else None
    updated, ready = _n(status and status.updated_replicas), _n(status and status.ready_replicas)
    available = _n(status and status.available_replicas)
    base = dict(
        generation=generation,
        observed_generation=observed,
        replicas=want,
        updated=updated,
        ready=ready,
        available=available,
    )
    if not observed or not seen:
        return Progress(False, f"waiting for the {name} spec update to be observed", **base)
    if want is not None and ready < want:
        return Progress(False, f"waiting for {want - ready} pods to be ready", **base)
    partition = None
    if strategy is not None and strategy.rolling_update is not None:
        partition = strategy.rolling_update.partition
    if want is not None and partition:
        if updated < want - partition:
            message = f"waiting for partitioned roll out to finish: {updated} out of " + (
                f"{want - partition} new pods have been updated"
            )
            return Progress(False, message, **base)
        return Progress(True, f"partitioned roll out complete: {updated} new pods", **base)
    if status.update_revision != status.current_revision:
        message = (
            f"waiting for the rolling update to complete: {updated} pods at revision "
            f"{status.update_revision}"
        )
        return Progress(False, message, **base)
    return Progress(True, f"{name} successfully rolled out", **base)


def _api_client(inputs: RolloutRestartInputs, ctx: ActionContext) -> Any:
    """An ApiClient of its own (nothing global is changed): the kubeconfig given, else the
    pod's service account when running in a cluster, else the default kubeconfig."""
    from kubernetes import client, config

    try:
        if (
            inputs.kubeconfig is None
            and inputs.context is None
            and os.environ.get("KUBERNETES_SERVICE_HOST")
        ):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(
            config_file=inputs.kubeconfig, context=inputs.context, persist_config=False
        )
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        where = inputs.kubeconfig or "the default kubeconfig"
        raise PermanentError(shown(ctx, f"cannot use {where}: {exc}")) from None


def _status_message(exc: Any) -> str:
    """The ``message`` of the API server's Status body, else its reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return data["message"]
    return str(getattr(exc, "reason", "") or "").strip() or "no reason given"


def _is_connect_failure(exc: BaseException) -> bool:
    import urllib3.exceptions as u3

    reason = getattr(exc, "reason", None)
    return isinstance(exc, u3.NewConnectionError | u3.ConnectTimeoutError) or isinstance(
        reason, u3.NewConnectionError | u3.ConnectTimeoutError
    )


def _classify(exc: BaseException, subject: str, *, sent_change: bool) -> Exception | None:
    """The ledger's view of a client error (None: not a client error). ``sent_change``: the
    request may have changed something (the patch)."""
    import urllib3.exceptions as u3
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = exc.status or 0
        message = f"{subject}: {status} {_status_message(exc)}".strip()
        if status == 429:
            return RetryableError(message)
        if status in (409,) or status >= 500:
            return OutcomeUnknownError(message) if sent_change else RetryableError(message)
        return PermanentError(message)
    if isinstance(exc, u3.HTTPError):
        message = f"{subject}: {type(exc).__name__}: {exc}"
        if not sent_change or _is_connect_failure(exc):
            return RetryableError(message)
        return OutcomeUnknownError(message)
    return None


class KubernetesRolloutRestart(Action):
    """Restart a Deployment, StatefulSet or DaemonSet like ``kubectl rollout restart``, then
    (``wait``, the default) follow the rollout like ``kubectl rollout status`` until it is
    complete: the controller observed the new generation and every replica is updated and
    available (ready, for a StatefulSet).

    Refused before anything changes: an unknown object, a paused Deployment, and with
    ``wait`` an object whose update strategy is OnDelete (its pods are replaced only when
    deleted, so the rollout would never complete). A rollout that does not complete within
    ``timeout`` fails the step (the restart was applied; the message says how far it got).
    Keep ``timeout`` below the step's own timeout."""

    name = "kubernetes.rollout_restart"
    description = (
        "Restart a Kubernetes deployment, statefulset or daemonset (kubectl rollout restart) "
        "and wait for the rollout."
    )
    idempotent = False
    Inputs = RolloutRestartInputs
    outputs: ClassVar[dict[str, str]] = {
        "kind": "deployment, statefulset or daemonset",
        "namespace": "the namespace",
        "name": "the object's name",
        "restarted_at": f"the {RESTARTED_AT} annotation set (RFC 3339, UTC)",
        "generation": "metadata.generation after the patch",
        "observed_generation": "status.observedGeneration when last read",
        "replicas": "desired replicas (desired pods for a daemonset)",
        "updated_replicas": "replicas of the new template",
        "ready_replicas": "replicas ready",
        "available_replicas": "replicas available",
        "complete": "true once the rollout completed; null when not waited for",
        "message": "where the rollout is, in kubectl's words",
        "polls": "how many times the object was read while waiting",
    }

    def plan(self, inputs: RolloutRestartInputs, ctx: ActionContext) -> str:
        source = inputs.kubeconfig or "the in-cluster service account or default kubeconfig"
        context = f", context {inputs.context}" if inputs.context else ""
        wait = (
            f", then wait up to {fmt_seconds(inputs.timeout)} for the rollout"
            if inputs.wait
            else ""
        )
        return shown(
            ctx,
            f"rollout restart {inputs.kind}/{inputs.name} in namespace {inputs.namespace} "
            f"(patch the pod template's {RESTARTED_AT}; {source}{context}){wait}",
        )

    def describe(self, outputs: dict[str, Any]) -> str:
        o = outputs
        what = f"{o.get('kind', 'object')} {o.get('namespace', '?')}/{o.get('name', '?')}"
        if o.get("complete"):
            ready = f"{o.get('ready_replicas', '?')}/{o.get('replicas', '?')}"
            return f"Restarted {what}; rollout complete, {ready} ready"
        if o.get("complete") is None:
            return f"Restarted {what} (rollout not waited for)"
        return f"Restarted {what}; rollout not complete: {o.get('message', '')}".rstrip(": ")

    def run(self, inputs: RolloutRestartInputs, ctx: ActionContext) -> dict[str, Any]:
        from kubernetes import client

        api_client = _api_client(inputs, ctx)
        try:
            return self._run(client.AppsV1Api(api_client), inputs, ctx)
        finally:
            api_client.close()

    def _run(self, apps: Any, inputs: RolloutRestartInputs, ctx: ActionContext) -> dict[str, Any]:
        suffix = {
            "deployment": "deployment",
            "statefulset": "stateful_set",
            "daemonset": "daemon_set",
        }[inputs.kind]
        read: Callable[..., Any] = getattr(apps, f"read_namespaced_{suffix}")
        patch: Callable[..., Any] = getattr(apps, f"patch_namespaced_{suffix}")
        subject = f"{inputs.kind}/{inputs.name} in namespace {inputs.namespace}"
        request_timeout = (min(10.0, inputs.timeout), min(30.0, inputs.timeout))

        def call(fn: Callable[..., Any], *args: Any, sent_change: bool, **kwargs: Any) -> Any:
            try:
                return fn(*args, _request_timeout=request_timeout, **kwargs)
            except Exception as exc:
                verdict = _classify(exc, subject, sent_change=sent_change)
                if verdict is None:
                    raise
                raise _shown(ctx, verdict) from None

        current = call(read, inputs.name, inputs.namespace, sent_change=False)
        spec = current.spec
        if inputs.kind == "deployment" and spec is not None and spec.paused:
            raise PermanentError(
                f"{subject} is paused: resume it (kubectl rollout resume) before restarting; "
                "nothing was changed"
            )
        if inputs.wait and inputs.kind != "deployment" and spec and spec.update_strategy:
            strategy = spec.update_strategy.type
            if strategy not in (None, "RollingUpdate"):
                raise PermanentError(
                    f"{subject} updates {strategy}: its pods are replaced only when deleted, "
                    "so the rollout cannot be waited for; set wait: false. Nothing was changed"
                )
        restarted_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at}}}}}
        # A dict body goes out as a strategic merge patch (the client picks that content
        # type for anything but a JSON Patch list; the tests check the header).
        patched = call(patch, inputs.name, inputs.namespace, body, sent_change=True)
        generation = patched.metadata.generation if patched.metadata else None
        out: dict[str, Any] = {
            "kind": inputs.kind,
            "namespace": inputs.namespace,
            "name": inputs.name,
            "restarted_at": restarted_at,
            "generation": generation,
            "complete": None,
            "polls": 0,
        }
        if not inputs.wait:
            try:
                progress = rollout_progress(inputs.kind, patched)
            except PermanentError as exc:
                progress = Progress(False, str(exc), generation, None, None, None, None, None)
            return {**out, **_progress_outputs(progress), "complete": None}
        done = f"the restart was applied ({RESTARTED_AT}={restarted_at})"
        polls = 0
        last: list[Progress] = []

        def check() -> tuple[Progress | None, str]:
            nonlocal polls
            polls += 1
            try:
                obj = call(read, inputs.name, inputs.namespace, sent_change=False)
                progress = rollout_progress(inputs.kind, obj)
            except RetryableError as exc:  # the API server is busy: not yet
                return None, f"last read failed: {exc}"
            except (PermanentError, OutcomeUnknownError) as exc:
                raise after_change(ctx, exc, done) from None
            last[:] = [progress]
            ctx.progress(f"{subject}: {progress.message}")
            return (progress if progress.done else None), progress.message

        def unfinished(message: str) -> Exception:
            return PermanentError(shown(ctx, f"{message}; {done}"))

        progress = wait_until(
            ctx,
            check,
            timeout=inputs.timeout,
            what=f"the rollout of {inputs.kind}/{inputs.name} to complete",
            interval=inputs.interval,
            on_timeout=unfinished,
            on_stop=lambda m: OutcomeUnknownError(shown(ctx, f"{m}; {done}")),
        )
        return {**out, **_progress_outputs(progress), "complete": True, "polls": polls}


def _progress_outputs(progress: Progress) -> dict[str, Any]:
    return {
        "observed_generation": progress.observed_generation,
        "replicas": progress.replicas,
        "updated_replicas": progress.updated,
        "ready_replicas": progress.ready,
        "available_replicas": progress.available,
        "message": progress.message,
    }


def _shown(ctx: ActionContext, exc: Exception) -> Exception:
    if isinstance(exc, RetryableError):
        return RetryableError(shown(ctx, str(exc)), exc.retry_after)
    return type(exc)(shown(ctx, str(exc)))
