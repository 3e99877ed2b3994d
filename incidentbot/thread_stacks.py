"""Where a thread is now, for a log line about a thread that took too long.

A step that outlives its timeout is abandoned, and the log says so; without where it was
waiting (a database lock, a socket, a lock of its own), the operator has only the step's
name to go on. :func:`where` gives the innermost frames of a live thread as short
``file:line in function`` lines: code locations only, never the values of its variables, so
nothing a user typed or a secret it was handling reaches the log.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

FRAMES = 8


def where(thread: threading.Thread | None, frames: int = FRAMES) -> str:
    """The innermost ``frames`` frames of ``thread``'s stack, innermost last, one per line;
    a short sentence when the thread has ended or was never started."""
    if thread is None or thread.ident is None:
        return "(no thread)"
    frame = sys._current_frames().get(thread.ident)
    if frame is None:
        return "(the thread has ended)"
    lines: list[str] = []
    while frame is not None and len(lines) < frames:
        code = frame.f_code
        lines.append(f"{_short(code.co_filename)}:{frame.f_lineno} in {code.co_name}")
        frame = frame.f_back
    return "\n".join(f"  {line}" for line in reversed(lines))


def _short(filename: str) -> str:
    """A path from its package down (``incidentbot/db.py``, ``sqlalchemy/engine/base.py``)."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    if "incidentbot" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("incidentbot") :])
    return "/".join(parts[-2:])
