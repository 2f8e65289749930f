"""A TCP peer on loopback that answers each connection in a thread of its own: the base of the slow and
misbehaving peers the deadline tests need (tests/unit/pki/test_http_fetcher.py, test_tls_probe.py)."""

from __future__ import annotations

import socket
import threading


class LoopbackPeer:
    """Accepts connections on 127.0.0.1 until :meth:`close`; :meth:`answer` serves one (and should return
    when :attr:`stop` is set)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.answer(conn)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
