"""A TCP forwarder in front of a local server, standing in for the load balancer before Slack.

It counts the connections clients open (so a test sees whether calls share one), can close
them all as a server does with idle keep-alive connections, and can lose answers: forward a
request to the server, then close the client's connection instead of passing the answer on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self.lose_answers = False
        self.answer_lost = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """What to give a Slack client: the Web API's root through this proxy."""
        return f"http://{self.host}:{self.port}/api/"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self.accepted += 1
                self._open.append((client, upstream))
            for src, dst, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(src, dst, answers), name="tcp-proxy-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.lose_answers:
                    # The request reached the server; its answer never leaves.
                    self.answer_lost.set()
                    _close(dst)
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)

    def drop_all(self) -> None:
        """Close every connection open now, from the server's side (its FIN sent before this
        returns), as a server closing idle keep-alive connections does."""
        with self._lock:
            pairs, self._open = self._open, []
        for client, upstream in pairs:
            _close(client)
            _close(upstream)

    def close(self) -> None:
        _close(self._listener)  # wakes the accept
        self._thread.join(timeout=5)
        self.drop_all()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
