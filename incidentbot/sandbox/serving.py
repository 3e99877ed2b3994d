"""Serving a local server from a background thread: the listening socket and the start wait."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket (``port`` 0 picks a free one) for uvicorn to serve on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: without it Nagle's algorithm and delayed ACKs add about
    # 40 ms to every small answer (headers and body leave in two writes).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def wait_started(server: uvicorn.Server, thread: threading.Thread, what: str) -> None:
    """Return once ``server`` accepts requests; raise if its thread died or 10 s passed."""
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the {what} did not start")
        time.sleep(0.01)
