"""How ``broker serve``'s workers (broker/slow_clients.py) treat connections and the arbiter while they stop or serve.

* A stopping gthread worker gives its pending connections (accepted, nothing read yet) a last moment for their
  request instead of closing them at once: one accepted in the worker's last turn usually has its request on the
  way, and closing it unanswered lost that POST (a reload under load dropped 2-3 of 1,000 requests).
* The sync worker (``threads: 1``) tells the arbiter it is alive while a request runs, so that a login within its
  own deadlines is not killed by gunicorn's 30 s worker timeout.

The workers are built with just what these methods touch (gunicorn's __init__ wants a whole arbiter).
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.workers.gthread import TConn
from gunicorn.workers.sync import SyncWorker

from broker.config.loader import load_settings
from broker.slow_clients import STOP_PENDING_LINGER, DeadlineSyncWorker, DeadlineThreadWorker, longest_request_seconds


def _thread_worker(request_timeout: float) -> DeadlineThreadWorker:
    worker = DeadlineThreadWorker.__new__(DeadlineThreadWorker)
    worker.app = SimpleNamespace(request_timeout=request_timeout)
    worker.alive = True
    worker.poller = selectors.DefaultSelector()
    worker.pending_conns = deque()
    worker.nr_conns = 0
    return worker


def _pending(worker: DeadlineThreadWorker, deadline_in: float) -> tuple[TConn, socket.socket]:
    """A connection waiting on the worker's poller (as ``accept`` leaves it); returns it and the client's end."""
    server_end, client_end = socket.socketpair()
    conn = TConn(Config(), server_end, ("127.0.0.1", 40000), ("127.0.0.1", 8080))
    conn.timeout = time.monotonic() + deadline_in
    worker.pending_conns.append(conn)
    worker.poller.register(conn.sock, selectors.EVENT_READ, None)
    worker.nr_conns += 1
    return conn, client_end


def _stopped_with_a_pending_connection(request_timeout: float) -> tuple[DeadlineThreadWorker, TConn, socket.socket]:
    """A worker with one pending connection (deadline ``request_timeout`` away) that has just begun to stop."""
    worker = _thread_worker(request_timeout)
    conn, client = _pending(worker, deadline_in=request_timeout)
    worker.alive = False
    worker.murder_pending()
    return worker, conn, client


def test_a_stopping_worker_leaves_pending_connections_a_moment_for_their_request() -> None:
    worker, conn, client = _stopped_with_a_pending_connection(request_timeout=20)

    assert list(worker.pending_conns) == [conn]  # not closed: its request may be on the way
    assert conn.timeout <= time.monotonic() + STOP_PENDING_LINGER
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # arrives: the poller hands it to a thread
    assert worker.poller.select(timeout=1)
    client.close()
    conn.close()


def test_a_silent_pending_connection_is_closed_once_the_moment_has_passed() -> None:
    worker, _, client = _stopped_with_a_pending_connection(request_timeout=20)

    time.sleep(STOP_PENDING_LINGER + 0.1)
    worker.murder_pending()

    assert not worker.pending_conns
    assert worker.nr_conns == 0
    client.settimeout(1)
    assert client.recv(1) == b""  # closed by the worker
    client.close()


def test_a_short_request_timeout_is_not_lengthened_by_the_stop() -> None:
    _, conn, client = _stopped_with_a_pending_connection(request_timeout=0.2)
    assert conn.timeout <= time.monotonic() + 0.2
    client.close()
    conn.close()


def _beats_during_a_request(monkeypatch: pytest.MonkeyPatch, longest_request: float,
                            stopped_meanwhile: bool = False) -> list[float]:
    """When the sync worker told the arbiter it was alive while one request ran for 1.5 s (the arbiter wants word
    every second); the times are relative to the request's start."""
    worker = DeadlineSyncWorker.__new__(DeadlineSyncWorker)
    worker.app = SimpleNamespace(longest_request=longest_request)
    worker.alive = True
    worker.timeout = 1.0
    beats: list[float] = []
    started = time.monotonic()
    monkeypatch.setattr(worker, "notify", lambda: beats.append(time.monotonic() - started), raising=False)
    def a_long_request(self: Any, *args: Any) -> None:
        if stopped_meanwhile:
            self.alive = False  # SIGTERM (a reload's old worker, a stop) while the request runs
        time.sleep(1.5)

    monkeypatch.setattr(SyncWorker, "handle_request", a_long_request)

    def serve_one_request(self: Any) -> None:
        self.handle_request(None, None, None, None)
        self.alive = False

    monkeypatch.setattr(SyncWorker, "run", serve_one_request)
    worker.run()
    return beats


def test_the_sync_worker_tells_the_arbiter_it_is_alive_while_a_request_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    beats = _beats_during_a_request(monkeypatch, longest_request=60)
    assert len(beats) >= 3
    assert max(b - a for a, b in zip([0.0, *beats], beats, strict=False)) < 1.0


def test_a_stopping_worker_still_finishes_its_request_alive_for_the_arbiter(monkeypatch: pytest.MonkeyPatch) -> None:
    beats = _beats_during_a_request(monkeypatch, longest_request=60, stopped_meanwhile=True)
    assert max(beats) > 1.0


def test_a_request_older_than_any_may_be_leaves_the_worker_to_the_arbiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``longest_request`` (worked out from the configuration's timeouts) the worker is stuck, not slow: the
    heartbeat falls silent, and gunicorn's arbiter replaces the worker after its timeout, as for a plain sync
    worker."""
    beats = _beats_during_a_request(monkeypatch, longest_request=0.4)
    assert beats
    assert max(beats) < 0.4 + 0.1


def test_the_longest_request_follows_the_revocation_timeouts(config_dir: Path) -> None:
    """Each municipality's longest path, each certificate asking every OCSP and CRL source in turn within their
    timeouts; the largest of them, after the request's own arrival, and a margin."""
    settings = load_settings(config_dir)
    arrival = settings.broker.server.request_timeout.seconds
    worst = 0.0
    for m in settings.municipalities.values():
        login = m.config.certificate
        if login is None or login.revocation.mode != "check":
            continue
        r = login.revocation
        ocsp = (1 if r.ocsp.url else 2) * r.ocsp.timeout.seconds if "ocsp" in r.methods else 0.0
        crl = max(len(r.crl.urls) + 2 * r.crl.distribution_points, 1) * (r.crl.timeout.seconds + 1) \
            if "crl" in r.methods else 0.0
        worst = max(worst, (login.max_chain_depth + 1) * (ocsp + crl))
    assert worst > 0
    assert longest_request_seconds(settings, arrival) == arrival + worst + 30
    assert longest_request_seconds(settings, arrival) > 300  # defaults: 3 s OCSP + 30 s CRLs, five certificates


def test_the_sync_worker_reads_the_longest_request_of_the_configuration_in_force(config_dir: Path) -> None:
    """A reload swaps the app's settings: the worker's ceiling follows them, not the ones it started with."""
    settings = load_settings(config_dir)
    worker = DeadlineSyncWorker.__new__(DeadlineSyncWorker)
    worker.app = SimpleNamespace(request_timeout=20.0, longest_request=1.0)
    worker.wsgi = SimpleNamespace(extensions={"broker": SimpleNamespace(settings=settings)})
    assert worker._longest_request() == longest_request_seconds(settings, 20.0)
