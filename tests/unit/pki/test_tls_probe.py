"""broker.pki.tls.probe_endpoint keeps its time limit against endpoints that answer too slowly: one that never
answers, and one that trickles a TLS record a byte at a time (each byte in time for the socket timeout, the
handshake never done). Real sockets on loopback; the probe's answers on a real TLS server are tested with nginx
in tests/flows/test_nginx.py."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator

import pytest

from broker.pki.tls import probe_endpoint
from broker.readiness.endpoints import probe
from tests.factories.loopback_peer import LoopbackPeer
from tests.factories.slow_resolver import resolve_slowly
from tests.factories.tls_servers import ServerIdentity, TlsEndpoint

TIMEOUT = 1.0


class SlowPeer(LoopbackPeer):
    """Accepts connections; answers nothing (``trickle`` False) or a TLS handshake record header announcing
    16 kB, then one byte every 0.2 s."""

    def __init__(self, trickle: bool) -> None:
        self.trickle = trickle
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        conn.recv(65536)  # the ClientHello
        if self.trickle:
            conn.sendall(b"\x16\x03\x03\x40\x00")  # handshake record, TLS 1.2, 16,384 bytes to come
        while not self.stop.is_set():
            if self.trickle:
                conn.sendall(b"\x00")
            time.sleep(0.2)


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[SlowPeer]:
    server = SlowPeer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("peer", [pytest.param(False, id="silent"), pytest.param(True, id="trickling")],
                         indirect=True)
def test_a_slow_endpoint_is_given_up_at_the_timeout_with_a_clear_message(peer: SlowPeer) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no complete TLS handshake within 1 s"):
        probe_endpoint("127.0.0.1", peer.port, server_name="kommun.example", timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT + 1.0  # before: still waiting after 150 s (trickling)


@pytest.mark.parametrize("peer", [pytest.param(False, id="silent")], indirect=True)
def test_the_name_is_resolved_within_the_timeout(peer: SlowPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time limit covers the name's resolution, which comes before any socket: a resolver waiting on an
    unanswering DNS server held the probe for its own timeouts (a real delay in ``socket.getaddrinfo`` here)."""
    resolve_slowly(monkeypatch, "login.slow-resolver.test", 3)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"name resolution of login\.slow-resolver\.test not complete"):
        probe_endpoint("login.slow-resolver.test", peer.port, timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT + 1.0


@pytest.mark.parametrize(("name", "sent"), [
    pytest.param("localhost", "localhost", id="host-name"),
    pytest.param("127.0.0.1", None, id="ipv4-literal"),
    pytest.param("::1", None, id="ipv6-literal"),
    pytest.param("[::1]", None, id="ipv6-literal-in-brackets"),
])
def test_an_address_literal_is_never_sent_as_server_name(name: str, sent: str | None) -> None:
    """RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName". A browser sends none for
    https://10.0.0.5/, and a server choosing its certificate or CA list by name must be asked as browsers ask
    it."""
    endpoint = TlsEndpoint(ServerIdentity.generate(dt.datetime.now(dt.UTC)))
    try:
        probe_endpoint("127.0.0.1", endpoint.port, server_name=name, timeout=5)
    finally:
        endpoint.stop()
    assert endpoint.server_names == [sent]


def test_readiness_probes_an_address_url_without_a_server_name() -> None:
    endpoint = TlsEndpoint(ServerIdentity.generate(dt.datetime.now(dt.UTC)))
    try:
        found = probe(f"https://127.0.0.1:{endpoint.port}", 5)
    finally:
        endpoint.stop()
    assert found.error is None
    assert endpoint.server_names == [None]
