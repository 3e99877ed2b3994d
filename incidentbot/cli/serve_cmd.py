"""``incidentbot serve``: the bot, in HTTP mode or Socket Mode."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import threading

import typer

from incidentbot import logs
from incidentbot.cli.common import state


def serve(ctx: typer.Context) -> None:
    """Run the bot: Slack (HTTP or Socket Mode), durable workers, /healthz and /metrics."""
    # Start-up allocates hundreds of thousands of objects that live as long as the process:
    # the collector would walk them again and again while they are created. It runs again
    # once they are in place, and from then on leaves them out (gc.freeze).
    gc.disable()
    _fewer_malloc_arenas()
    try:
        _serve(ctx)
    finally:
        gc.enable()


def _say(line: str) -> None:
    """One line on stdout, as it is (Rich, which the other commands print with, would read
    ``[...]`` in Slack's error text as markup, and its import is not needed to serve)."""
    typer.echo(line)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def _fewer_malloc_arenas() -> None:
    """At most two malloc arenas, unless ``MALLOC_ARENA_MAX`` says otherwise.

    glibc gives threads that contend for malloc arenas of their own (up to eight per core) and
    keeps the memory freed in each: the web server's thread pool, the workers and the scheduler
    made the resident memory grow by a third more over 1,000 declares than with two arenas
    (bench/serve_memory.py). Python holds the GIL around nearly every allocation, so sharing
    arenas costs no throughput. Elsewhere than glibc this changes nothing."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: no such setting
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 2)


def _serve(ctx: typer.Context) -> None:
    from incidentbot.bot import Bot

    st = state(ctx)
    settings = st.settings
    logs.configure(settings.log_level)
    bot = Bot.build(settings, st.engine, remember_checks=True)
    # Listening from here on, /healthz answers 503 until the bot is warmed up and started.
    url = bot.start_http(settings.http.host, settings.http.port, warm=False)
    # Asks Slack who the bot is meanwhile, and readies the scheduler's first tick (it leads).
    bot.warm_up(check_slack=True, scheduler=True)
    _say(f"Slack: {bot.slack_state}")
    bot.start_workers()
    bot.start_scheduler()
    if settings.slack.mode == "socket":
        try:
            bot.start_socket_mode()
        except BaseException:
            bot.stop()
            raise
        _say("Connected to Slack in Socket Mode")
    gc.freeze()
    gc.enable()
    bot.ready.set()
    _say(f"Listening on {url} (/slack/events, /healthz, /metrics)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    _say("Stopping: finishing the current steps…")
    bot.stop()  # closes the Socket Mode connection first
    _say("Stopped.")
    # A step attempt abandoned at its timeout may still be running in its thread; it must not
    # keep the process alive. Its run was handed back, and the ledger resumes it elsewhere.
    logging.shutdown()
    os._exit(0)
