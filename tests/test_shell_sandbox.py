"""The ``shell.exec`` sandbox against real processes: what a program may not be handed (the
loader's variables, even through a parameter), the limits that stop it, the directory of its
own, and the process group that dies with it."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from incidentbot.config import ConfigError, Settings, load_settings
from incidentbot.ledger import OutcomeUnknownError, PermanentError
from incidentbot.runbooks.actions import ActionContext, Services, registry, shell_sandbox
from incidentbot.runbooks.config import RunbookSettings
from incidentbot.runbooks.shell_policy import DEFAULT_SHELL_PATH, ShellLimits
from tests.conftest import count

LOADER_REFUSAL = (
    "LD_PRELOAD is refused: the dynamic loader or the C library reads it to load code into "
    "the program; shell.exec never passes it"
)


def settings_for(tmp_path: Path, *allow: str, **runbooks: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        runbooks=RunbookSettings(shell_allow=list(allow), **runbooks),
    )


def context(settings: Settings | None) -> ActionContext:
    return ActionContext(run_id=7, step_id="step", services=Services(settings=settings))


def shell(data: dict[str, Any], settings: Settings | None) -> dict[str, Any]:
    action = registry.get("shell.exec")
    assert action is not None
    return action.run(action.validate(data), context(settings))


# -- the loader's variables, through a parameter ------------------------------------------------


@pytest.fixture
def preload(tmp_path: Path) -> tuple[Path, Path]:
    """A shared library that writes a marker file as soon as it is loaded, and the marker."""
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is needed to build the LD_PRELOAD library"
    marker = tmp_path / "preload-ran"
    source = tmp_path / "preload.c"
    source.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void ran(void) {\n"
        f'    FILE *f = fopen("{marker}", "w");\n'
        '    if (f) { fputs("code ran inside the allowed program\\n", f); fclose(f); }\n'
        "}\n"
    )
    library = tmp_path / "preload.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    # The attack is real: any program started with LD_PRELOAD pointing at it runs the code.
    echo = shutil.which("echo", path=os.pathsep.join(DEFAULT_SHELL_PATH))
    assert echo is not None
    subprocess.run([echo, "hi"], env={"LD_PRELOAD": str(library)}, check=True, capture_output=True)
    assert marker.read_text() == "code ran inside the allowed program\n"
    marker.unlink()
    return library, marker


def write_runbook_setup(tmp_path: Path, runbook: str) -> Path:
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "greet.yaml").write_text(runbook)
    config = tmp_path / "incidentbot.yaml"
    config.write_text(f"runbooks:\n  dirs: [{tmp_path / 'rb'}]\n  shell_allow: [cat, echo]\n")
    return config


PARAM_RUNBOOK = """\
name: greet
description: Say hello
params:
  preload: {type: string, required: true, description: a library}
steps:
  - id: hello
    uses: shell.exec
    with:
      argv: [echo, hello]
      env: {LD_PRELOAD: "{{ params.preload }}"}
"""


def test_ld_preload_typed_as_a_parameter_is_refused_before_anything_runs(
    cli: Any, tmp_path: Path, preload: tuple[Path, Path], engine: Any
) -> None:
    library, marker = preload
    config = write_runbook_setup(tmp_path, PARAM_RUNBOOK)
    code, out, err = cli("-c", str(config), "runbook", "plan", "greet", f"preload={library}")
    assert code == 1
    assert f"shell.exec: refused: env: {LOADER_REFUSAL}" in out
    assert err.strip() == f"error: step hello: env: {LOADER_REFUSAL}"
    code, _out, err = cli("-c", str(config), "runbook", "run", "greet", f"preload={library}")
    assert code == 1
    assert err.strip() == (
        f"error: the runbook cannot run as asked: step hello: env: {LOADER_REFUSAL}"
    )
    assert not marker.exists()
    assert count(engine, "ledger_run") == 0  # nothing was started


STEP_OUTPUT_RUNBOOK = """\
name: greet
description: Say hello with a library another step printed
params:
  preload: {type: string, required: true, description: a library}
steps:
  - id: where
    uses: shell.exec
    with:
      argv: [echo, "{{ params.preload }}"]
  - id: hello
    uses: shell.exec
    with:
      argv: [echo, hello]
      env: {LD_PRELOAD: "{{ steps.where.outputs.stdout | trim }}"}
"""


def test_ld_preload_known_only_when_the_step_runs_fails_the_step(
    cli: Any, tmp_path: Path, preload: tuple[Path, Path]
) -> None:
    """The plan cannot see a value another step prints: the step itself refuses it."""
    library, marker = preload
    config = write_runbook_setup(tmp_path, STEP_OUTPUT_RUNBOOK)
    code, out, err = cli("-c", str(config), "runbook", "run", "greet", f"preload={library}")
    assert code != 0
    assert f"inputs of shell.exec do not fit: env: {LOADER_REFUSAL}" in out + err
    assert not marker.exists()


def test_variables_that_run_code_are_refused_when_the_inputs_are_validated() -> None:
    action = registry.get("shell.exec")
    assert action is not None
    for name, why in [
        ("LD_PRELOAD", "the dynamic loader"),
        ("LD_LIBRARY_PATH", "the dynamic loader"),
        ("GCONV_PATH", "the dynamic loader or the C library"),
        ("PYTHONSTARTUP", "an interpreter reads it"),
        ("PERL5OPT", "an interpreter reads it"),
        ("NODE_OPTIONS", "an interpreter reads it"),
        ("BASH_ENV", "a shell reads it"),
        ("ENV", "a shell reads it"),
        ("IFS", "a shell reads it"),
        ("PATH", "shell.exec sets it itself"),
        ("HOME", "shell.exec sets it itself"),
        ("GIT_SSH_COMMAND", "programs read it to run a command"),
        ("KUBECONFIG", "programs read it to run a command"),
        ("https_proxy", "programs read it"),
    ]:
        with pytest.raises(ValidationError) as info:
            action.validate({"argv": ["echo"], "env": {name: "x"}})
        assert f"{name} is refused: {why}" in str(info.value), name
    with pytest.raises(ValidationError, match="not a valid environment variable name"):
        action.validate({"argv": ["echo"], "env": {"BASH_FUNC_id%%": "() { :; }"}})
    assert action.validate({"argv": ["echo"], "env": {"NETWORK": "sepolia"}})


def test_a_checked_runbook_file_names_the_refused_variable(tmp_path: Path, cli: Any) -> None:
    runbook = PARAM_RUNBOOK.replace('"{{ params.preload }}"', "/tmp/preload.so")
    config = write_runbook_setup(tmp_path, runbook)
    code, out, err = cli("-c", str(config), "runbook", "validate")
    assert code == 1
    assert f"greet.yaml:10: steps[0].with.env: {LOADER_REFUSAL}" in out + err


def test_shell_env_is_the_list_of_names_steps_may_set(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "env", shell_env=["NETWORK"])
    out = shell({"argv": ["env"], "env": {"NETWORK": "holesky"}}, settings)
    assert "NETWORK=holesky\n" in out["stdout"]
    with pytest.raises(PermanentError) as info:
        shell({"argv": ["env"], "env": {"CHAIN": "1"}}, settings)
    assert str(info.value) == "env CHAIN is not allowed: add it to runbooks.shell_env"
    action = registry.get("shell.exec")
    assert action is not None
    line = action.plan(action.validate({"argv": ["env"], "env": {"CHAIN": "1"}}), context(settings))
    assert line.endswith("would be refused: env CHAIN is not allowed: add it to runbooks.shell_env")


def test_settings_refuse_a_loader_variable_or_relative_paths(tmp_path: Path) -> None:
    config = tmp_path / "incidentbot.yaml"
    config.write_text(
        "runbooks:\n  shell_allow: [echo, bin/lb-ctl]\n  shell_env: [NETWORK, LD_PRELOAD]\n"
        "  shell_path: [bin, /usr/bin]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.problems == [
        "runbooks.shell_allow: shell_allow entry 'bin/lb-ctl' must be a program name (systemctl) "
        "or an absolute path (/usr/local/bin/lb-ctl)",
        "runbooks.shell_path: shell_path entry 'bin' must be an absolute directory (relative "
        "entries would find programs in whatever directory a program runs in)",
        f"runbooks.shell_env: shell_env lists LD_PRELOAD, which can never be allowed: "
        f"{LOADER_REFUSAL}",
    ]


# -- environment and program -------------------------------------------------------------------


def test_the_environment_is_fixed_and_nothing_of_the_bots_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INCIDENTBOT_SLACK_BOT_TOKEN", "xoxb-bot-token-never-shown")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    out = shell({"argv": ["env"], "env": {"CHAIN": "1"}}, settings_for(tmp_path, "env"))
    values = dict(line.split("=", 1) for line in out["stdout"].splitlines())
    assert sorted(values) == ["CHAIN", "HOME", "LANG", "PATH", "TMPDIR"]
    assert values["PATH"] == os.pathsep.join(DEFAULT_SHELL_PATH)
    assert values["LANG"] == "C.UTF-8" and values["CHAIN"] == "1"


def test_a_name_is_found_in_shell_path_never_on_the_bots_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "planted-ran"
    (planted / "echo").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (planted / "echo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{planted}{os.pathsep}{os.environ.get('PATH', '')}")
    out = shell({"argv": ["echo", "real"]}, settings_for(tmp_path, "echo"))
    assert out["stdout"] == "real\n" and not marker.exists()
    # An operator who puts the directory in shell_path gets that program, by its full path.
    settings = settings_for(tmp_path, "echo", shell_path=[str(planted), "/usr/bin", "/bin"])
    shell({"argv": ["echo", "planted"]}, settings)
    assert marker.exists()
    with pytest.raises(PermanentError) as info:
        shell({"argv": ["echo"]}, settings_for(tmp_path, "echo", shell_path=[str(tmp_path)]))
    assert str(info.value) == f"'echo' was not found (searched {tmp_path}: runbooks.shell_path)"


# -- limits -------------------------------------------------------------------------------------


def test_limits_are_applied_to_the_program(tmp_path: Path) -> None:
    limits = {"cpu": "7s", "memory": "300MiB", "file_size": "5MiB", "open_files": 99}
    settings = settings_for(tmp_path, "cat", shell_limits=limits)
    out = shell({"argv": ["cat", "/proc/self/limits"]}, settings)
    rows = {line[:26].strip(): line[26:].split()[:2] for line in out["stdout"].splitlines()[1:]}
    assert rows["Max cpu time"] == ["7", "8"]
    assert rows["Max address space"] == [str(300 * 1024**2)] * 2
    assert rows["Max file size"] == [str(5 * 1024**2)] * 2
    assert rows["Max open files"] == ["99", "99"]
    assert rows["Max core file size"] == ["0", "0"]
    if os.getuid() != 0:  # RLIMIT_NPROC does not hold root, so it is not set for root
        assert rows["Max processes"][0] != "unlimited"


def test_a_cpu_burning_program_is_stopped_by_its_cpu_limit(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "sh", shell_limits={"cpu": 1})
    with pytest.raises(PermanentError) as info:
        shell({"argv": ["sh", "-c", "while :; do :; done"], "timeout": "10m"}, settings)
    assert str(info.value) == (
        "'sh' was killed by SIGXCPU: it used more than 1s of CPU time (runbooks.shell_limits.cpu)"
    )


def test_a_memory_hungry_program_gets_no_more_than_its_limit(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "python3", shell_limits={"memory": "200MiB"})
    small = "b = bytearray(16 * 1024 * 1024); print(len(b))"
    assert shell({"argv": ["python3", "-c", small]}, settings)["stdout"] == "16777216\n"
    big = "b = bytearray(400 * 1024 * 1024); print(len(b))"
    with pytest.raises(PermanentError) as info:
        shell({"argv": ["python3", "-c", big]}, settings)
    assert str(info.value) == "'python3' exited with code 1: MemoryError"


def test_an_output_flood_is_killed_at_its_limit(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "yes", shell_limits={"output": "64KiB"})
    with pytest.raises(PermanentError) as info:
        shell({"argv": ["yes", "block"], "timeout": "10m"}, settings)
    assert str(info.value) == (
        "'yes' printed more than 64KiB (runbooks.shell_limits.output) and was killed"
    )


def test_a_file_past_the_size_limit_kills_the_writer(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "dd", shell_limits={"file_size": "1MiB"})
    argv = ["dd", "if=/dev/zero", "of=chaindata.bin", "bs=65536", "count=64"]
    with pytest.raises(PermanentError) as info:
        shell({"argv": argv}, settings)
    assert str(info.value) == (
        "'dd' was killed by SIGXFSZ: it wrote a file larger than 1MiB "
        "(runbooks.shell_limits.file_size)"
    )


# -- its own directory and process group ---------------------------------------------------------


def test_each_step_runs_in_a_fresh_directory_that_is_removed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "sh")
    script = 'pwd; echo "$TMPDIR"; ls -A; echo data > left-behind'
    seen = []
    for _ in range(2):
        out = shell({"argv": ["sh", "-c", script]}, settings)
        cwd, tmpdir, *listing = out["stdout"].splitlines()
        assert cwd == tmpdir and listing == []  # empty: nothing of an earlier step
        assert Path(cwd).parent == Path(tempfile.gettempdir())
        assert Path(cwd).name.startswith("incidentbot-step-")
        assert not Path(cwd).exists()
        seen.append(cwd)
    assert seen[0] != seen[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_gone(pid: int) -> bool:
    """True once ``pid`` has ended: waits for its exit notification (a pidfd becomes readable),
    giving up after 30 s only so that a failure does not hang the suite."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(30_000)
    finally:
        os.close(fd)
    return not _alive(pid)


def test_a_timeout_kills_the_program_and_what_it_started(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "sh")
    pidfile = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pidfile}; echo 'waiting for sync' >&2; wait"
    with pytest.raises(OutcomeUnknownError) as info:
        shell({"argv": ["sh", "-c", script], "timeout": "1s"}, settings)
    assert str(info.value) == "'sh' did not finish within 1s and was killed: waiting for sync"
    assert _wait_gone(int(pidfile.read_text())), "the background child survived the timeout"


def test_what_a_finished_program_left_running_is_killed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "sh")
    pidfile = tmp_path / "child.pid"
    out = shell({"argv": ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo done"]}, settings)
    assert out["stdout"] == "done\n"
    assert _wait_gone(int(pidfile.read_text())), "the background child outlived its step"


def test_a_stopped_run_kills_the_program(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "sh")
    started = tmp_path / "started"
    os.mkfifo(started)
    ctx = context(settings)

    def stop_once_started() -> None:
        with started.open() as fifo:  # returns once the program has opened it to write
            fifo.read()
        ctx.stop_event.set()

    watcher = threading.Thread(target=stop_once_started)
    watcher.start()
    action = registry.get("shell.exec")
    assert action is not None
    script = f"echo up > {started}; sleep 300"
    inputs = action.validate({"argv": ["sh", "-c", script], "timeout": "10m"})
    with pytest.raises(OutcomeUnknownError) as info:
        action.run(inputs, ctx)
    watcher.join()
    assert str(info.value) == "'sh' was killed before it finished (run stopped)"


def test_the_sandbox_itself_refuses_a_loader_variable(
    tmp_path: Path, preload: tuple[Path, Path]
) -> None:
    """For callers other than shell.exec's inputs (an action pack running a program)."""
    library, marker = preload
    with pytest.raises(ValueError, match="LD_PRELOAD is refused: the dynamic loader"):
        shell_sandbox.run(
            "/usr/bin/echo",
            ["echo", "hi"],
            env={"LD_PRELOAD": str(library)},
            shell_path=list(DEFAULT_SHELL_PATH),
            limits=ShellLimits(),
            timeout=60,
            should_stop=lambda: False,
        )
    assert not marker.exists()
