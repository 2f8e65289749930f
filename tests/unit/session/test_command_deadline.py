"""A Redis command is bounded in wall-clock time (broker.session.command_deadline), not only per socket read.

A real Redis behind a loopback proxy (tests/factories/trickling_proxy.py) that passes each answer a byte at a
time: every read arrives within socket_timeout, so redis-py alone waits for the whole trickle (a 300-byte value
at 0.2 s a byte: a minute). With the deadline, a command attempt gets socket_timeout to connect and again to
answer, two attempts at most: the store gives up as unavailable (a 503 page) within about 2 x 2 x socket_timeout.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest

from broker.errors import SessionStoreUnavailable
from broker.session.command_deadline import CommandDeadlines
from broker.session.redis_client import single_server
from broker.session.store import RedisStore
from tests.factories.trickling_proxy import TricklingProxy

TIMEOUT = 0.25  # socket_timeout: an attempt gets 0.5 s, two attempts 1 s


@pytest.fixture
def target(redis_url: str) -> tuple[str, int]:
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
    return host, int(port)


@pytest.fixture
def value(redis_url: str, redis_prefix: str) -> Iterator[bytes]:
    stored = secrets.token_hex(150).encode()
    store = RedisStore(redis_url, prefix=redis_prefix)
    store.put("probe", stored, 60)
    yield stored
    store.delete("probe")


def through(proxy: TricklingProxy, prefix: str) -> RedisStore:
    return RedisStore(connector=single_server(proxy.url, socket_timeout=TIMEOUT), prefix=prefix)


def test_an_answer_that_trickles_in_is_cut_off_at_the_deadline(target: tuple[str, int], redis_prefix: str,
                                                               value: bytes) -> None:
    outcome: list[object] = []
    with TricklingProxy(target, gap=0.1) as proxy:
        store = through(proxy, redis_prefix)
        started = time.monotonic()
        worker = threading.Thread(target=lambda: outcome.append(_get(store)), daemon=True)
        worker.start()
        worker.join(timeout=10)
        waited = time.monotonic() - started

    assert not worker.is_alive(), f"one GET still running after {waited:.1f} s"
    assert waited < 4 * TIMEOUT + 0.5  # two attempts of 2 x socket_timeout, and the watcher's tick
    (result,) = outcome
    assert isinstance(result, SessionStoreUnavailable)
    assert "no complete answer within 0.5 s" in result.detail


def test_a_prompt_answer_through_the_same_path_is_untouched(target: tuple[str, int], redis_prefix: str,
                                                            value: bytes) -> None:
    with TricklingProxy(target, gap=0) as proxy:
        store = through(proxy, redis_prefix)
        assert [store.get("probe") for _ in range(20)] == [value] * 20


def test_a_forked_process_gets_a_watcher_of_its_own() -> None:
    """gunicorn forks workers from a master that may have armed a deadline: the child's arm starts its own
    watcher (the parent's thread does not exist there)."""
    import os

    deadlines = CommandDeadlines()
    deadlines.disarm(deadlines.arm(1.0))  # the watcher of this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a deadline must fire here too
        entry = deadlines.arm(0.05)
        time.sleep(0.5)
        os.write(write, b"1" if entry.expired else b"0")
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert status == 0


def _get(store: RedisStore) -> object:
    try:
        return store.get("probe")
    except SessionStoreUnavailable as exc:
        return exc


def test_a_connection_given_back_is_not_cut_off_by_its_last_users_deadline(redis_url: str,
                                                                           redis_prefix: str) -> None:
    """Thread A's command is done and its connection back in the pool, but A has not disarmed yet (a thread
    switch) when its deadline passes: the connection, now thread B's, must not be shut under B's command (a
    GETDEL cut off that way was sent again: the one-time value gone)."""
    store = RedisStore(connector=single_server(redis_url, socket_timeout=0.1), prefix=redis_prefix)  # 0.2 s
    store.get("warm")  # one pooled connection
    pool = store.client.connection_pool
    release = pool.release  # the pool's, as the store watches it
    given_back = threading.Event()

    def slow_release(connection: object) -> None:
        release(connection)
        given_back.set()
        time.sleep(0.6)  # still armed, past the deadline

    pool.release = slow_release
    a = threading.Thread(target=lambda: store.get("warm"), daemon=True)
    a.start()
    assert given_back.wait(2)
    connection = pool.get_connection()  # the same connection, now this thread's
    time.sleep(0.4)  # A's deadline passes while A is armed
    try:
        connection.send_command("PING")
        assert connection.read_response() == b"PONG"
    finally:
        release(connection)
        a.join(5)
