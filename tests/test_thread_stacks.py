"""The stack of a live thread as a log shows it: code locations only."""

from __future__ import annotations

import threading

from incidentbot.thread_stacks import where


def _waits_here(started: threading.Event, release: threading.Event, secret: str) -> None:
    started.set()
    release.wait()
    assert secret


def test_where_names_the_waiting_function_and_no_variable():
    started, release = threading.Event(), threading.Event()
    secret = "xoxb-123456789012-abcdefghijkl"
    thread = threading.Thread(target=_waits_here, args=(started, release, secret))
    thread.start()
    try:
        started.wait()
        shown = where(thread)
    finally:
        release.set()
        thread.join()
    lines = shown.splitlines()
    assert any("tests/test_thread_stacks.py" in line and "in _waits_here" in line for line in lines)
    assert "threading.py:" in lines[-1] and lines[-1].endswith(" in wait"), shown  # innermost
    assert secret not in shown
    assert where(thread) == "(the thread has ended)"
    assert where(None) == "(no thread)"
