"""A wall-clock deadline for network exchanges whose library bounds each socket operation only.

urllib3's read timeout and the kernel's SO_RCVTIMEO bound one ``recv`` each: a peer that sends a byte every
second (slowloris, in reverse) never trips them, and the exchange lasts as long as the peer likes.
:class:`SocketDeadline` shuts the sockets it was given down when its time is up, so the blocked operation
returns at once (end of stream, or an error) and the caller reports the deadline (:attr:`expired`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class SocketDeadline:
    """``with SocketDeadline(seconds) as deadline: deadline.attach(sock); ...`` (one timer thread while active)."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._handles: list[socket.socket] = []  # our own handles on connections ssl took over (closed at exit)
        self.expired = False
        self._seconds = max(seconds, 0.0)
        self._ends = time.monotonic() + self._seconds
        self._timer = threading.Timer(self._seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> SocketDeadline:
        self._ends = time.monotonic() + self._seconds
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()

    def remaining(self) -> float:
        """Seconds left (0 once passed): the bound of a wait that has no socket to shut down, such as a name
        resolution."""
        return max(self._ends - time.monotonic(), 0.0)

    def attach(self, sock: socket.socket | None) -> None:
        """Put ``sock`` under the deadline (shut down at once if it has passed already)."""
        if sock is None:
            return
        with self._lock:
            if not any(known is sock for known in self._sockets):
                self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def attach_connection(self, sock: socket.socket) -> None:
        """Put ``sock``'s connection under the deadline through a handle of its own, closed at exit: for a socket
        handed to :mod:`ssl` next, which takes its descriptor over and leaves ``sock`` detached (shutting a
        connection down through one handle ends it for all of them)."""
        handle = sock.dup()
        with self._lock:
            self._handles.append(handle)
        self.attach(handle)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed meanwhile
        sock.shutdown(socket.SHUT_RDWR)
