"""broker.pki.revocation.http: the total deadline of a fetch holds against a peer that trickles (a byte at a
time in its status line, headers or body), which urllib3's per-operation timeouts never cut off; GET (CRLs,
metadata) and POST (OCSP, on the login path) alike. Real sockets on loopback."""

from __future__ import annotations

import concurrent.futures
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from broker.pki import deadline as deadline_module
from broker.pki.revocation.http import FetchError, FetchLimits, HttpFetcher
from tests.factories.loopback_peer import LoopbackPeer
from tests.factories.slow_resolver import resolve_slowly

BODY = b"0" * 2000
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
LIMITS = FetchLimits(connect_timeout=1.0, total_timeout=1.0, max_bytes=65536)


class Peer(LoopbackPeer):
    """An HTTP peer on loopback: answers each request at once, or sends ``ANSWER`` from byte ``start`` onward one
    byte every 0.1 s (the bytes before ``start`` at once)."""

    def __init__(self, trickle_from: int | None) -> None:
        self.trickle_from = trickle_from
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        while not self.stop.is_set():
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            if b"Content-Length: 1" in request and not request.endswith(b"\r\n\r\nx"):
                conn.recv(1)  # the POST's one-byte body
            if self.trickle_from is None:
                conn.sendall(ANSWER)
                continue
            conn.sendall(ANSWER[:self.trickle_from])
            for byte in ANSWER[self.trickle_from:]:
                if self.stop.is_set():
                    return
                conn.sendall(bytes([byte]))
                time.sleep(0.1)


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    server = Peer(request.param)
    yield server
    server.close()


def _fetch(fetcher: HttpFetcher, method: str, port: int, host: str = "127.0.0.1") -> bytes:
    if method == "GET":
        return fetcher.get(f"http://{host}:{port}/ca.crl", LIMITS, "application/pkix-crl")
    return fetcher.post(f"http://{host}:{port}/ocsp", b"x", "application/ocsp-request",
                        "application/ocsp-response", LIMITS)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("peer", [
    pytest.param(5, id="status-line-trickled"),
    pytest.param(40, id="headers-trickled"),
    pytest.param(len(ANSWER) - len(BODY) + 10, id="body-trickled"),
], indirect=True)
def test_a_trickling_peer_is_cut_off_at_the_total_deadline(peer: Peer, method: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        _fetch(HttpFetcher(), method, peer.port)
    took = time.monotonic() - started
    assert caught.value.timeout
    assert f"timed out (no complete answer within {LIMITS.total_timeout:g} s)" in str(caught.value)
    assert took < LIMITS.total_timeout + 1.0  # before the watchdog: still waiting after 30 s


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_read_timing_out_at_the_deadline_before_the_watchdog_fires_is_reported_as_the_deadline(
        method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read's own timeout is the time left, so on a loaded machine it can run out a moment before the
    watchdog's timer thread gets to run: the fetch still ran out of its total time, and says so."""
    monkeypatch.setattr(deadline_module.SocketDeadline, "_expire", lambda _self: None)  # a watchdog that is late
    # connections to it complete in its backlog, and nothing ever answers
    with socket.create_server(("127.0.0.1", 0)) as silent, pytest.raises(FetchError) as caught:
        _fetch(HttpFetcher(), method, silent.getsockname()[1])
    assert caught.value.timeout
    assert f"timed out (no complete answer within {LIMITS.total_timeout:g} s)" in str(caught.value)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("peer", [pytest.param(None, id="prompt-peer")], indirect=True)
def test_a_prompt_answer_and_a_kept_alive_connection_are_unaffected(peer: Peer, method: str) -> None:
    fetcher = HttpFetcher()
    for _ in range(3):  # the second and third fetch reuse the connection: each has its own deadline
        assert _fetch(fetcher, method, peer.port) == BODY
    time.sleep(LIMITS.total_timeout + 0.2)  # an earlier fetch's deadline passing does not touch the connection
    assert _fetch(fetcher, method, peer.port) == BODY


SLOW_HOST = "slow-resolver.test"  # a name only the slow resolver below knows: it stands for 127.0.0.1


@pytest.fixture
def slow_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving :data:`SLOW_HOST` takes 3 s (:func:`tests.factories.slow_resolver.resolve_slowly`)."""
    resolve_slowly(monkeypatch, SLOW_HOST, 3.0)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("peer", [pytest.param(None, id="prompt-peer")], indirect=True)
def test_a_slow_name_resolution_is_within_the_total_deadline(peer: Peer, method: str, slow_resolver: None) -> None:
    """The deadline covers the whole fetch, name resolution included: the resolver runs before any socket exists,
    so the watchdog alone (which shuts sockets down) would let it hold a login for as long as it takes."""
    fetcher = HttpFetcher()
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        _fetch(fetcher, method, peer.port, SLOW_HOST)
    took = time.monotonic() - started
    assert caught.value.timeout
    assert "timed out" in str(caught.value)
    assert took < LIMITS.total_timeout + 0.5  # before: the resolver's 3 s, then the answer
    assert _fetch(fetcher, method, peer.port) == BODY  # a name that resolves at once is unaffected


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("peer", [pytest.param(None, id="prompt-peer")], indirect=True)
def test_a_fetch_while_the_process_exits_fails_as_one_that_cannot_connect(peer: Peer, method: str) -> None:
    """At interpreter exit concurrent.futures takes no new work: a background CRL refresh still running then must
    fail as a fetch that cannot connect (a warning), not with a RuntimeError (a traceback in the log)."""
    deadline_module._resolver().shutdown(wait=True)  # what the interpreter's exit does to it
    try:
        with pytest.raises(FetchError) as caught:
            _fetch(HttpFetcher(), method, peer.port)
        assert not caught.value.timeout
        assert "shutting down" in str(caught.value)
    finally:
        deadline_module._resolver_pools.clear()  # the next fetch makes a new pool
    assert _fetch(HttpFetcher(), method, peer.port) == BODY


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("peer", [pytest.param(None, id="prompt-peer")], indirect=True)
def test_a_worker_forked_while_a_parent_thread_resolves_can_fetch(peer: Peer, method: str) -> None:
    """gunicorn forks its workers from a master whose metadata refresher fetches too: a worker forked while one of
    the master's threads held the resolver pool's lock must not wait on that lock for ever (no thread of the child
    will release it); its fetches resolve names in a pool of its own."""
    deadline_module._resolver()  # the parent's pool
    holding = threading.Event()

    def refresher() -> None:  # a parent's thread inside _resolver() at the moment of the fork
        with deadline_module._resolver_lock:
            holding.set()
            time.sleep(0.3)

    thread = threading.Thread(target=refresher)
    thread.start()
    holding.wait()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fetch completes
        try:
            os.write(write, b"1" if _fetch(HttpFetcher(), method, peer.port) == BODY else b"0")
        finally:
            os._exit(0)
    thread.join()
    os.close(write)
    answered = select.select([read], [], [], 5.0)[0]
    if not answered:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert answered, "the forked child's fetch hung on the parent's lock"
    assert os.read(read, 1) == b"1"
    os.close(read)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("peer", [pytest.param(None, id="prompt-peer")], indirect=True)
def test_one_name_that_does_not_resolve_leaves_resolver_threads_for_the_others(peer: Peer, method: str,
                                                                               slow_resolver: None) -> None:
    """Logins that all need one responder whose DNS servers do not answer (a municipality's, say) wait on one
    resolution of its name, not on one resolver thread each: they must not take every resolver thread from the
    names of the other municipalities' responders, whose fetches would then time out queued behind them."""
    fetcher = HttpFetcher()
    logins = deadline_module._RESOLVERS + 4
    with concurrent.futures.ThreadPoolExecutor(max_workers=logins) as pool:
        stuck = [pool.submit(_fetch, fetcher, method, peer.port, SLOW_HOST) for _ in range(logins)]
        time.sleep(0.2)  # every one of them waiting on the name by now
        assert _fetch(fetcher, method, peer.port) == BODY
        for waiting in stuck:
            with pytest.raises(FetchError) as caught:
                waiting.result()
            assert caught.value.timeout
