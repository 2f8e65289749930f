"""A wall-clock bound on each Redis command.

redis-py's ``socket_timeout`` bounds each socket read, not the answer: a Redis (or a network path) that
passes the reply a byte at a time, each within the timeout, holds a worker thread for as long as it likes
(measured: a certificate login 10 s, a session reuse 70 s, never a 503). :class:`CommandDeadlines` gives
each command attempt a deadline; at the deadline, the sockets of the connections the attempt took from its
pool are shut down, so the blocked read returns at once, redis-py raises a connection error, and the store
reports the outage like any other (:class:`broker.errors.SessionStoreUnavailable`, a 503 page).

One watcher thread per process, started on first use (and again in a forked worker, whose lock and state
start afresh), wakes every
``TICK`` seconds while commands are armed and sleeps otherwise; arming and disarming cost a lock and a
dictionary entry, not a thread per command (a timer thread per command would cost more than the round
trip it guards). Connections are noted through the pool's ``get_connection`` (:func:`watch_pool`), so the
bound covers one server and Sentinel (redis-py's ``Redis`` clients); a Redis Cluster client's per-node
pools are not hooked, and there each read stays bounded by ``socket_timeout`` only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TICK = 0.05  # how late past its deadline a command may be cut off


@dataclass
class Armed:
    """One command attempt under a deadline; ``expired`` once the watcher cut it off."""

    deadline: float
    connections: list[Any] = field(default_factory=list)
    expired: bool = False


class CommandDeadlines:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: dict[int, Armed] = {}      # by thread: a thread runs one command at a time
        self._pid: int | None = None
        # a child forked while the parent's watcher held the lock would wait on it for ever (gunicorn forks its
        # workers from a master that may have used Redis): the child starts afresh
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._changed = threading.Condition()
        self._armed = {}
        self._pid = None

    def arm(self, seconds: float) -> Armed:
        """Put the calling thread's command under a deadline ``seconds`` from now."""
        entry = Armed(time.monotonic() + seconds)
        with self._changed:
            if self._pid != os.getpid():  # first use, or a forked worker: the parent's thread is not ours
                self._armed = {}
                self._pid = os.getpid()
                threading.Thread(target=self._watch, name="redis-command-deadlines", daemon=True).start()
            self._armed[threading.get_ident()] = entry
            if len(self._armed) == 1:
                self._changed.notify()
        return entry

    def disarm(self, entry: Armed) -> None:
        with self._changed:
            if self._armed.get(threading.get_ident()) is entry:
                del self._armed[threading.get_ident()]

    def forget(self, connection: Any) -> None:
        """``connection`` goes back to its pool: from now on it may serve another thread's command, which the
        deadline of this one must not cut off (under the lock: the watcher may be shutting sockets right now)."""
        entry = self._armed.get(threading.get_ident())
        if entry is not None and entry.connections:
            with self._changed:
                entry.connections = [known for known in entry.connections if known is not connection]

    def note(self, connection: Any) -> None:
        """A connection the calling thread's armed command took (nothing when none is armed); one noted after the
        deadline passed is shut at once."""
        entry = self._armed.get(threading.get_ident())
        if entry is not None and not any(known is connection for known in entry.connections):
            entry.connections.append(connection)
            if entry.expired:
                _shut(getattr(connection, "_sock", None))

    def _watch(self) -> None:
        pid = os.getpid()
        with self._changed:
            while self._pid == pid:
                if not self._armed:
                    self._changed.wait()
                    continue
                now = time.monotonic()
                for entry in self._armed.values():
                    if now >= entry.deadline:  # at every tick: a socket made after the deadline is shut too
                        entry.expired = True
                        for connection in entry.connections:
                            _shut(getattr(connection, "_sock", None))
                self._changed.wait(TICK)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)


DEADLINES = CommandDeadlines()


def watch_pool(pool: Any) -> None:
    """Note every connection ``pool`` hands out to an armed command (redis-py's ``ConnectionPool`` and its
    Sentinel subclass): each as it connects (its handshake, HELLO or CLIENT SETNAME, is read from the server
    too, inside ``get_connection``), and a pooled one as it is handed out; forgotten as it goes back (another
    thread's command may take it next)."""
    make: Callable[..., Any] = pool.make_connection
    get: Callable[..., Any] = pool.get_connection

    def make_connection(*args: Any, **kwargs: Any) -> Any:
        connection = make(*args, **kwargs)
        connect: Callable[[], None] = connection.connect

        def noted_connect() -> None:  # a pooled connection reconnects inside get_connection, before it returns
            DEADLINES.note(connection)
            connect()

        connection.connect = noted_connect
        return connection

    def get_connection(*args: Any, **kwargs: Any) -> Any:
        connection = get(*args, **kwargs)
        DEADLINES.note(connection)
        return connection

    release: Callable[[Any], Any] = pool.release

    def release_connection(connection: Any) -> Any:
        DEADLINES.forget(connection)
        return release(connection)

    pool.make_connection = make_connection
    pool.get_connection = get_connection
    pool.release = release_connection
