"""A TCP proxy on loopback that passes requests at once and answers a byte at a time: a Redis (or a network
path) that is slow in the way per-read timeouts do not see. ``TricklingProxy(target, gap)``; ``gap`` 0 passes
answers whole."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TricklingProxy:
    def __init__(self, target: tuple[str, int], *, gap: float) -> None:
        self.target = target
        self.gap = gap
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name=f"TricklingProxy:{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.gap), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, gap: float) -> None:
        with contextlib.suppress(OSError):
            while not self._stopping.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if not gap:
                    sink.sendall(data)
                    continue
                for i in range(len(data)):
                    if self._stopping.is_set():
                        return
                    sink.sendall(data[i:i + 1])
                    time.sleep(gap)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> TricklingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
