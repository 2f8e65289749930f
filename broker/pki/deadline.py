"""A wall-clock deadline for network exchanges whose library bounds each socket operation only.

urllib3's read timeout and the kernel's SO_RCVTIMEO bound one ``recv`` each: a peer that sends a byte every
second (slowloris, in reverse) never trips them, and the exchange lasts as long as the peer likes.
:class:`SocketDeadline` shuts the sockets it was given down when its time is up, so the blocked operation
returns at once (end of stream, or an error) and the caller reports the deadline (:attr:`expired`).

Name resolution comes before any socket exists, so no watchdog can cut it short: :func:`connect_within` resolves
in a small pool of resolver threads (one resolution of a name at a time, shared by those who need it), waits for it
at most the time the deadline leaves, and connects to the addresses it gave, each attempt bounded by the connect
timeout and the time left. The revocation and metadata fetches and readiness's probes connect through it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from urllib3.util.connection import allowed_gai_family


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


# name resolutions at once; more wait their turn (within their own fetch's deadline). A name whose DNS servers do not
# answer holds a thread for the resolver's own timeouts (tens of seconds) while its responder is asked again every
# retry_after (10 s): enough threads that a few such names do not starve the others
_RESOLVERS = 16
_resolver_pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}  # by process id
_resolver_lock = threading.Lock()


# gunicorn forks its workers from a master whose threads fetch too (the metadata refresher): a child forked while
# one of them held this lock would find it held for ever, by a thread it does not have, and its first fetch would
# wait on it with no deadline. The fork waits for the lock instead (it is held for a dict lookup at most), as
# the logging module's locks do
os.register_at_fork(before=_resolver_lock.acquire, after_in_parent=_resolver_lock.release,
                    after_in_child=_resolver_lock.release)


def _resolver() -> concurrent.futures.ThreadPoolExecutor:
    """This process's resolver threads (a forked worker makes its own: threads do not survive a fork)."""
    pid = os.getpid()
    with _resolver_lock:
        pool = _resolver_pools.get(pid)
        if pool is None:
            _resolver_pools.clear()  # a parent's pool, unusable here
            pool = _resolver_pools[pid] = concurrent.futures.ThreadPoolExecutor(
                max_workers=_RESOLVERS, thread_name_prefix="resolver")
        return pool


_Addresses = list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]]
# the resolutions under way in this process, by (host, port): the fetches that need one name wait on one resolution
# of it, not on a resolver thread each. Logins that all need a responder whose DNS servers do not answer would
# otherwise take every resolver thread for the resolver's own timeouts, long after each had given up, and every
# other name's fetch (another municipality's responder) would time out queued behind them. A forked child starts
# with none: the parent's would never end there, their threads are not in the child
_resolving: dict[tuple[str, int], concurrent.futures.Future[_Addresses]] = {}
os.register_at_fork(after_in_child=_resolving.clear)


def _resolve(host: str, port: int) -> concurrent.futures.Future[_Addresses]:
    """The resolution of ``host`` under way, or a new one. Raises RuntimeError when the process is exiting."""
    key = (host, port)
    pool = _resolver()
    with _resolver_lock:
        pending = _resolving.get(key)
        if pending is not None:
            return pending
        pending = _resolving[key] = pool.submit(_getaddrinfo, host, port)
    # outside the lock: a resolution already done calls back at once, and the callback takes the lock
    pending.add_done_callback(lambda done: _resolved(key, done))
    return pending


def _getaddrinfo(host: str, port: int) -> _Addresses:
    return list(socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM))


def _resolved(key: tuple[str, int], done: concurrent.futures.Future[_Addresses]) -> None:
    """A resolution has ended: the next fetch of its name asks the resolver again (nothing is cached here)."""
    with _resolver_lock:
        if _resolving.get(key) is done:
            del _resolving[key]


class ResolutionTimeout(TimeoutError):
    """The name was not resolved within the time the deadline left."""


def resolve_within(host: str, port: int, seconds: float, *, within: str = "") -> _Addresses:
    """``host``'s addresses for TCP (getaddrinfo's entries), resolved in a resolver thread and waited for no longer
    than ``seconds``: a resolver that hangs on an unanswering DNS server would otherwise hold the caller for its
    own timeouts. Raises :class:`ResolutionTimeout` (its message names ``within``, by default the seconds),
    socket.gaierror, OSError, or RuntimeError while the process exits."""
    pending = _resolve(host, port)
    try:
        return pending.result(timeout=max(seconds, 0))
    except concurrent.futures.TimeoutError:
        raise ResolutionTimeout(f"name resolution of {host} not complete within "
                                f"{within or format(seconds, 'g') + ' s'}") from None
    except UnicodeError as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc


def connect_within(host: str, port: int, deadline: SocketDeadline, *, timeout: float | None,
                   socket_options: Sequence[tuple[int, int, int | bytes]] = (),
                   source_address: tuple[str, int] | None = None) -> socket.socket:
    """A TCP connection to ``host`` within ``deadline``: the name resolved in a resolver thread, waited for no
    longer than the time left (a resolver that hangs on an unanswering DNS server would otherwise hold the caller
    for its own timeouts, seconds to tens of seconds), then each address tried with ``timeout``, capped by the
    time left. Raises :class:`ResolutionTimeout`, TimeoutError (no address connected in time), socket.gaierror,
    OSError, or RuntimeError while the process exits (no resolver thread can be started then)."""
    addresses = resolve_within(host, port, deadline.remaining(), within="the time left")
    error: OSError = OSError(f"{host} resolves to no address")
    for family, kind, proto, _name, address in addresses:
        left = deadline.remaining()
        if left <= 0:
            raise TimeoutError(f"connection to {host} not made in time")
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options:
                sock.setsockopt(*option)
            sock.settimeout(left if timeout is None else min(timeout, left))
            if source_address:
                sock.bind(source_address)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error
