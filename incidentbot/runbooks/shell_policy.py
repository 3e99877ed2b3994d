"""What ``shell.exec`` lets a program have: its environment, its limits, where it is found.

The policy is the operator's (``runbooks.shell_path``, ``shell_env``, ``shell_limits``), never
the runbook's: a step names a program and sets variables, and everything here decides whether
that may run and how. Imported by the settings, so it imports nothing of the bot's but
durations.

- **Environment.** Built from scratch: ``PATH`` (the fixed search path), ``HOME``, ``LANG``,
  ``TMPDIR`` (the step's own directory), then the step's ``env``. Variables that make the
  loader, an interpreter, a shell or a common tool load code or run a command of the value's
  choosing are refused outright, whoever sets them: their value may come from a parameter a
  channel member typed. ``shell_env``, when set, is the list of the only names steps may set.
- **Program.** An allow-listed name is looked up in ``shell_path`` (not the bot's ``PATH``, not
  the step's), once, before the program starts; the absolute path found is what runs.
- **Limits.** ``setrlimit`` values applied to the program before it starts.
"""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from incidentbot.durations import parse_duration

DEFAULT_SHELL_PATH = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)
# Set by the sandbox itself; a step may not replace them.
FIXED_VARIABLES = ("PATH", "HOME", "TMPDIR", "SHELL")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Why a variable is never passed, with the names (or NAME* prefixes) it covers. Matched
# without regard to case: some programs read both spellings (http_proxy, HTTP_PROXY).
_REFUSED: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "shell.exec sets it itself (PATH from runbooks.shell_path, HOME, TMPDIR: the step's "
        "own directory, SHELL unset)",
        FIXED_VARIABLES,
    ),
    (
        "the dynamic loader or the C library reads it to load code into the program",
        (
            "LD_*",
            "DYLD_*",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "MALLOC_*",
            "LOCPATH",
            "NLSPATH",
            "HOSTALIASES",
            "RES_OPTIONS",
            "LOCALDOMAIN",
            "GETCONF_DIR",
        ),
    ),
    (
        "an interpreter reads it to load or run code",
        (
            "PYTHON*",
            "PERL*",
            "RUBY*",
            "NODE_*",
            "LUA_*",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "CLASSPATH",
            "TCLLIBPATH",
        ),
    ),
    (
        "a shell reads it to run code or to split words",
        (
            "IFS",
            "ENV",
            "BASH_ENV",
            "BASH_FUNC_*",
            "CDPATH",
            "GLOBIGNORE",
            "SHELLOPTS",
            "BASHOPTS",
            "PS4",
            "PROMPT_COMMAND",
        ),
    ),
    (
        "programs read it to run a command, load a module or read a configuration of its choosing",
        (
            "EDITOR",
            "VISUAL",
            "PAGER",
            "SYSTEMD_*",
            "LESSOPEN",
            "LESSCLOSE",
            "BROWSER",
            "SUDO_ASKPASS",
            "SSH_*",
            "GIT_*",
            "KUBECONFIG",
            "OPENSSL_*",
            "SSL_CERT_*",
            "CURL_CA_BUNDLE",
            "REQUESTS_CA_BUNDLE",
            "XDG_CONFIG_*",
            "XDG_DATA_*",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "CURL_HOME",
            "WGETRC",
            "GNUPGHOME",
            "*_PROXY",
        ),
    ),
)


def refused_variable(name: str) -> str | None:
    """Why the variable ``name`` may never be set for a program (None: it may)."""
    if not _NAME.match(name):
        return (
            f"{name!r} is not a valid environment variable name (letters, digits and _, "
            "not starting with a digit)"
        )
    upper = name.upper()
    for why, patterns in _REFUSED:
        if any(fnmatch.fnmatchcase(upper, pattern) for pattern in patterns):
            if patterns is FIXED_VARIABLES:
                return f"{name} is refused: {why}"
            return f"{name} is refused: {why}; shell.exec never passes it"
    return None


def _size(value: Any) -> int:
    """Bytes, from a number or ``512KiB``, ``64MiB``, ``2GiB``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 64MiB, got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", str(value), re.IGNORECASE)
        if not match:
            raise ValueError(f"{value!r} is not a size: write bytes or e.g. 512KiB, 64MiB, 2GiB")
        unit = (match.group(2) or "B").upper().replace("I", "")
        number = int(match.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit]
    if number <= 0:
        raise ValueError(f"a size must be more than 0 bytes, got {value!r}")
    return number


def _cpu_seconds(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected seconds or a duration such as 30s, got {value!r}")
    seconds = value if isinstance(value, int | float) else None
    if seconds is None:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = parse_duration(text).total_seconds()
    if seconds < 1:
        raise ValueError(f"the CPU time limit must be at least 1 second, got {value!r}")
    return int(seconds)


Size = Annotated[int, BeforeValidator(_size)]
CpuSeconds = Annotated[int, BeforeValidator(_cpu_seconds)]


def format_size(number: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if number >= factor and number % factor == 0:
            return f"{number // factor}{unit}"
    return f"{number} bytes"


class ShellLimits(BaseModel):
    """What one ``shell.exec`` program may use (``runbooks.shell_limits``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: CpuSeconds = Field(default=60, description="CPU seconds (RLIMIT_CPU)")
    memory: Size = Field(default=2 * 1024**3, description="address space (RLIMIT_AS)")
    output: Size = Field(
        default=1024**2, description="bytes of stdout and stderr together before it is killed"
    )
    file_size: Size = Field(default=256 * 1024**2, description="largest file it may write")
    open_files: int = Field(default=256, ge=16, le=65536, description="RLIMIT_NOFILE")
    processes: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="processes it may add to the bot user's (RLIMIT_NPROC; not for root)",
    )


def check_shell_path(dirs: list[str]) -> list[str]:
    """``dirs`` if every one is an absolute directory path (ValueError otherwise)."""
    if not dirs:
        raise ValueError("shell_path must list at least one directory")
    for entry in dirs:
        if not os.path.isabs(entry) or ":" in entry:
            raise ValueError(
                f"shell_path entry {entry!r} must be an absolute directory (relative entries "
                "would find programs in whatever directory a program runs in)"
            )
    return [os.path.normpath(entry) for entry in dirs]


def check_shell_allow(entries: list[str]) -> list[str]:
    """``entries`` if each is a bare program name or an absolute path (ValueError otherwise)."""
    for entry in entries:
        entry = entry.strip()
        if not entry or "\0" in entry or ("/" in entry and not os.path.isabs(entry)):
            raise ValueError(
                f"shell_allow entry {entry!r} must be a program name (systemctl) or an absolute "
                "path (/usr/local/bin/lb-ctl)"
            )
    return [entry.strip() for entry in entries]


def check_shell_env(names: list[str] | None) -> list[str] | None:
    """``names`` if none of them is refused (ValueError naming the first that is)."""
    if names is None:
        return None
    for name in names:
        why = refused_variable(name)
        if why:
            raise ValueError(f"shell_env lists {name}, which can never be allowed: {why}")
    return names


def not_in_allowed_env(names: list[str], allowed: list[str] | None) -> str | None:
    """Why a step may not set ``names`` under ``runbooks.shell_env`` (None: it may)."""
    if allowed is None:
        return None
    extra = [name for name in names if name not in allowed]
    if not extra:
        return None
    return (
        f"env {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not allowed: add "
        f"{'it' if len(extra) == 1 else 'them'} to runbooks.shell_env"
    )


def find_program(name: str, dirs: list[str]) -> str | None:
    """The absolute path of the executable file ``name`` in the first of ``dirs`` that has
    one (None if none has)."""
    for directory in dirs:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
