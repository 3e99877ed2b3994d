"""What operators deploy: the Kubernetes base agrees with itself, and the deploy lint
(scripts/lint-deploy, run by scripts/test before pytest) catches broken files.

kustomize is not installed here, so the base is checked the way kustomize would read it: every
manifest listed, and the names, labels and selectors that tie the objects together matching.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from incidentbot.sandbox.slack import SlackSandbox
from tests.pgcluster import PgCluster
from tests.slack_harness import wait_for

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
UNIT = ROOT / "deploy" / "systemd" / "incidentbot.service"


def _load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert len(docs) == 1, f"{path.name}: one object per file"
    return docs[0]


def _kustomization() -> dict[str, Any]:
    return _load(KUBE / "kustomization.yaml")


def _objects() -> dict[str, dict[str, Any]]:
    """The base's objects by kind (one of each kind)."""
    objects: dict[str, dict[str, Any]] = {}
    for name in _kustomization()["resources"]:
        obj = _load(KUBE / name)
        assert obj["kind"] not in objects, f"two objects of kind {obj['kind']}"
        objects[obj["kind"]] = obj
    return objects


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def lint(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run scripts/lint-deploy as scripts/test does, with this interpreter's incidentbot."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [str(ROOT / "scripts" / "lint-deploy"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


# --- the kustomize base ---------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    listed = _kustomization()["resources"]
    manifests = [p for p in KUBE.iterdir() if p.suffix in (".yaml", ".yml")]
    on_disk = sorted(p.name for p in manifests if p.stem != "kustomization")
    assert sorted(listed) == on_disk
    assert len(set(listed)) == len(listed)


def test_no_secret_values_in_the_base() -> None:
    for path in KUBE.glob("*.yaml"):
        obj = _load(path)
        assert obj.get("kind") != "Secret", f"{path.name}: secrets are created by the operator"
    text = "\n".join(p.read_text(encoding="utf-8") for p in KUBE.glob("*.yaml"))
    for prefix in ("xoxb-", "xapp-", "postgresql+psycopg://"):
        assert prefix not in text.replace(f"'{prefix}...'", "")


def test_names_labels_and_selectors_agree() -> None:
    k = _kustomization()
    objs = _objects()
    namespace = k["namespace"]
    for kind, obj in objs.items():
        assert obj["metadata"]["namespace"] == namespace, kind
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "incidentbot", kind

    deployment, job = objs["Deployment"], objs["Job"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    # The Service and the PodDisruptionBudget select the bot's pods, and only those.
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (
        ("Service", objs["Service"]["spec"]["selector"]),
        ("PodDisruptionBudget", objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
    ):
        assert _matches(selector, pod_labels), kind
        assert not _matches(selector, job_labels), f"{kind} must not select the migration Job"
    # The NetworkPolicy covers both the bot and the migration Job.
    policy = objs["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]
    assert _matches(policy, pod_labels) and _matches(policy, job_labels)
    assert [p["port"] for r in objs["NetworkPolicy"]["spec"]["ingress"] for p in r["ports"]] == [
        8080
    ]

    image_names = {i["name"] for i in k["images"]}
    config_map = objs["ConfigMap"]
    for kind, pod in (("Deployment", deployment), ("Job", job)):
        spec = pod["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == objs["ServiceAccount"]["metadata"]["name"], kind
        (container,) = spec["containers"]
        assert container["image"].split(":")[0] in image_names, kind
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert set(mounts) == set(volumes), kind
        assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"], kind
        env = {e["name"]: e["value"] for e in container["env"]}
        config_file = Path(env["INCIDENTBOT_CONFIG"])
        assert str(config_file.parent) == mounts["config"], kind
        assert config_file.name in config_map["data"], kind
        assert env["INCIDENTBOT_SECRETS_DIR"] == mounts["secrets"], kind
        assert volumes["secrets"]["secret"]["secretName"] == "incidentbot-secrets", kind
        # The image's data directory and /tmp are the only writable places.
        assert mounts["data"] == "/var/lib/incidentbot/data" and mounts["tmp"] == "/tmp", kind
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, kind
        assert spec["securityContext"]["runAsNonRoot"] is True, kind
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]

    # Probes, the Service's target and the ConfigMap's port are the same port.
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}, probe
    assert objs["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    # The image's environment sets the port (over incidentbot.yaml): the same one.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"INCIDENTBOT_HTTP__PORT={port['containerPort']}" in dockerfile
    assert f"\nEXPOSE {port['containerPort']}\n" in dockerfile
    assert "http" not in (yaml.safe_load(config_map["data"]["incidentbot.yaml"]) or {})
    # Several replicas, so one stands by for the scheduler; the budget keeps one up in a drain.
    assert deployment["spec"]["replicas"] >= 2
    assert objs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_configmap_settings_pass_config_check(tmp_path: Path) -> None:
    config_map = _load(KUBE / "configmap.yaml")
    path = tmp_path / "incidentbot.yaml"
    path.write_text(config_map["data"]["incidentbot.yaml"], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTBOT_")}
    result = subprocess.run(
        [sys.executable, "-m", "incidentbot.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the deploy lint ------------------------------------------------------------------------


def test_lint_passes_the_shipped_dockerfile_and_unit() -> None:
    result = lint("--dockerfile", ROOT / "Dockerfile", "--systemd", UNIT)
    assert result.returncode == 0, result.stderr
    assert "deploy lint passed" in result.stderr


def test_lint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM debian:latest\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "COPY . /app\n"
        "CMD incidentbot serve\n",
        encoding="utf-8",
    )
    result = lint("--dockerfile", bad)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "DL3007" in out  # :latest
    assert "DL3008" in out  # unpinned apt packages
    assert "DL3025" in out  # CMD in shell form
    assert f"FAILED: hadolint {bad}" in out


def test_lint_catches_a_manifest_without_probes_and_one_off_the_schema(tmp_path: Path) -> None:
    deployment = _load(KUBE / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        del container[probe]
    no_probes = tmp_path / "no-probes"
    no_probes.mkdir()
    (no_probes / "deployment.yaml").write_text(yaml.safe_dump(deployment), encoding="utf-8")

    service = _load(KUBE / "service.yaml")
    service["spec"]["ports"][0]["targetport"] = 8080  # misspelt: not in the schema
    off_schema = tmp_path / "off-schema"
    off_schema.mkdir()
    (off_schema / "service.yaml").write_text(yaml.safe_dump(service), encoding="utf-8")

    result = lint("--kubernetes", no_probes, "--kubernetes", off_schema)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    # The schemas accept a Deployment without probes; checkov does not.
    assert f"FAILED: kubernetes-validate 1.29.0 {no_probes}" not in out
    assert "CKV_K8S_8" in out and "CKV_K8S_9" in out  # liveness and readiness probes
    assert f"FAILED: checkov {no_probes}" in out
    assert "'targetport' was unexpected" in out
    assert f"FAILED: kubernetes-validate 1.29.0 {off_schema}" in out
    assert f"FAILED: kubernetes-validate 1.37.0 {off_schema}" in out


def test_lint_catches_a_bad_or_unhardened_unit(tmp_path: Path) -> None:
    shipped = UNIT.read_text(encoding="utf-8")
    typo = tmp_path / "typo.service"
    typo.write_text(shipped.replace("Restart=on-failure", "Restart=sometimes"), encoding="utf-8")
    open_unit = tmp_path / "open.service"
    open_unit.write_text(
        "[Unit]\nDescription=incidentbot without a sandbox\n\n"
        "[Service]\nExecStart=/opt/incidentbot/bin/incidentbot serve\n",
        encoding="utf-8",
    )
    result = lint("--systemd", typo, "--systemd", open_unit)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "Failed to parse service restart specifier" in out
    assert f"FAILED: systemd-analyze verify {typo}" in out
    assert f"FAILED: systemd-analyze security {typo}" not in out
    assert f"FAILED: systemd-analyze security {open_unit}" in out
    assert "Overall exposure level for open.service" in out


@pytest.mark.parametrize("option", ["--dockerfile", "--kubernetes", "--systemd"])
def test_lint_refuses_what_is_not_there(tmp_path: Path, option: str) -> None:
    missing = tmp_path / "missing"
    result = lint(option, missing)
    assert result.returncode == 1
    assert f"FAILED: {missing}: no such" in result.stderr


# --- the image --------------------------------------------------------------------------------
#
# Built with buildah from the Dockerfile on a Debian base made with debootstrap (no container
# registry is needed), then run with podman as an operator would: `db upgrade`, then the image's
# default command (serve) against the local Slack server, on SQLite in a volume or PostgreSQL.

IMAGE = "localhost/incidentbot:test"
SBIN = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin"
MISSING_IMAGE_TOOLS = [
    t for t in ("buildah", "podman", "runc", "debootstrap") if not shutil.which(t, path=SBIN)
]
needs_image_tools = pytest.mark.skipif(
    bool(MISSING_IMAGE_TOOLS) and not os.environ.get("CI"),
    reason=f"image tests need {', '.join(MISSING_IMAGE_TOOLS)} (scripts/test installs them)",
)


def _limit(which: int, cap: int) -> str:
    hard = resource.getrlimit(which)[1]
    value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    return f"{value}:{value}"


# runc rather than crun (which refuses hosts with cgroups in hybrid mode); limits within the
# host's own, since podman's defaults may exceed what a VM lets it set; the host network, so the
# container reaches the local Slack server and PostgreSQL on 127.0.0.1.
PODMAN_RUN = [
    "podman", "run", "--runtime", "runc", "--network", "host",
    "--ulimit", f"nofile={_limit(resource.RLIMIT_NOFILE, 65536)}",
    "--ulimit", f"nproc={_limit(resource.RLIMIT_NPROC, 4096)}",
]  # fmt: skip


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def image() -> str:
    if MISSING_IMAGE_TOOLS:
        pytest.fail(f"CI needs {', '.join(MISSING_IMAGE_TOOLS)} to build the image")
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-image"), "--local-base", "--tag", IMAGE],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return IMAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


@needs_image_tools
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_image_migrates_serves_and_keeps_its_data(
    image: str, backend: str, request: pytest.FixtureRequest
) -> None:
    port = _free_port()
    name = f"incidentbot-test-{backend}-{port}"
    volume = f"{name}-data"
    slack = SlackSandbox(bot_url=f"http://127.0.0.1:{port}/slack/events").start()
    request.addfinalizer(slack.stop)
    request.addfinalizer(lambda: podman("volume", "rm", "--force", volume))
    request.addfinalizer(lambda: podman("rm", "--force", "--time", "5", name))
    env = {
        "INCIDENTBOT_SLACK_BOT_TOKEN": slack.bot_token,
        "INCIDENTBOT_SLACK_SIGNING_SECRET": slack.signing_secret,
        "INCIDENTBOT_SLACK__API_URL": slack.base_url,
        "INCIDENTBOT_HTTP__PORT": str(port),
    }
    if backend == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        database = f"image_{port}"
        cluster.execute(f"CREATE DATABASE {database}")
        env["INCIDENTBOT_DATABASE_URL"] = cluster.url(database)
    run = [*PODMAN_RUN, "--volume", f"{volume}:/var/lib/incidentbot/data"]
    for key, value in env.items():
        run += ["--env", f"{key}={value}"]

    upgrade = subprocess.run(
        [*run, "--rm", "--no-healthcheck", image, "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert "upgraded from empty" in upgrade.stdout

    started = subprocess.run(
        [*run, "--detach", "--name", name, image], capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0, started.stderr

    answers: list[tuple[int, dict[str, Any]]] = []

    def healthy() -> tuple[int, dict[str, Any]] | None:
        state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true":
            logs = podman("logs", name)
            raise AssertionError(f"the container stopped: {logs.stdout}{logs.stderr}")
        answer = _healthz(port)
        if answer is not None:
            answers.append(answer)
        # Listening comes first; ready (200) once the bot has warmed up.
        return answer if answer is not None and answer[0] == 200 else None

    status, health = wait_for(healthy, timeout=240, what="/healthz to say ready")
    assert status == 200
    # Before it was ready, it said so (a probe keeps traffic away meanwhile).
    assert all(body.get("ready") is False for code, body in answers if code != 200), answers
    assert health["ok"] is True and health["database"] == "ok" and health["slack"] == "ok"
    # Not root, and the image's HEALTHCHECK agrees.
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    check = podman("healthcheck", "run", name)
    assert check.returncode == 0, check.stdout + check.stderr

    ack = slack.driver.slash_command("declare sev2 RPC lag on mainnet", user="alice")
    assert ack.status == 200, ack.body
    assert "declared *INC-1* (SEV2)" in json.loads(ack.body)["text"]
    wait_for(
        lambda: [m for m in slack.snapshot("incidents").messages if "#inc-1-" in m.text],
        timeout=60,
        what="the digest announcement",
    )

    stopped = podman("stop", "--time", "30", name, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    assert "Stopped." in podman("logs", name).stdout

    # A new container on the same volume (SQLite) or URL (PostgreSQL) finds the incident.
    listed = subprocess.run(
        [*run, "--rm", "--no-healthcheck", image, "incident", "list"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "INC-1" in listed.stdout and "RPC lag on mainnet" in listed.stdout
    files = subprocess.run(
        [
            *run,
            "--rm",
            "--no-healthcheck",
            "--entrypoint",
            "ls",
            image,
            "/var/lib/incidentbot/data",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ("incidentbot.db" in files.stdout.split()) == (backend == "sqlite")
