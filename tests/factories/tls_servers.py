"""Real TLS servers on loopback, as the public login endpoint in front of the broker could be set up.

``broker readiness`` reads, in a live handshake, what an endpoint asks of browsers: whether it sends a
CertificateRequest in the handshake itself, which CA names that request lists (TLS 1.2
``certificate_authorities``, the TLS 1.3 extension), and which protocol ALPN chose. ``TlsEndpoint`` is such an
endpoint, built on the broker's own :class:`broker.pki.tls.ClientCertTLS` (pyOpenSSL) and configured per test:

* ``client_cas``: the CA certificates whose names the CertificateRequest lists (empty: a request naming none);
* ``request_certificate=False``: no CertificateRequest at all (a proxy that asks per path, later, or never);
* ``require_certificate``: abort the handshake when the client sends none (nginx ``ssl_verify_client on``);
* ``alpn``: the protocols the server selects from the client's offer, in its order of preference;
* ``max_version``: e.g. ``SSL.TLS1_2_VERSION`` to pin TLS 1.2;
* ``silent=True``: accept TCP connections and never answer (a black hole behind a load balancer);
* ``http_answer``: after the handshake, read one HTTP request and send these bytes (e.g. nginx's 400 "No required
  SSL certificate was sent" to a client without one).

It binds 127.0.0.1 on a port the kernel picks, serves from a background thread as soon as it is built, and
must be stopped (``with TlsEndpoint(...) as e:`` or ``stop()``); stopping closes every socket and joins the
thread. ``handshakes`` records each connection: ``(completed, tls version, ALPN, error)``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from broker.demo.certificates import SERVER_AUTH, CertificateAuthority, LeafProfile
from broker.pki.tls import ClientCertTLS

HANDSHAKE_TIMEOUT = 5.0  # a client that connects and never speaks cannot hold the server up longer


@dataclass(frozen=True)
class ServerIdentity:
    """The endpoint's own certificate (for 127.0.0.1 and localhost) and its key, from a private TLS CA."""

    ca: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_pem: bytes

    @classmethod
    def generate(cls, now: dt.datetime, name: str = "Loopback TLS CA") -> ServerIdentity:
        ca = CertificateAuthority.root(name, now)
        leaf = ca.issue(LeafProfile(common_name="127.0.0.1", eku=(SERVER_AUTH,), san_dns="localhost",
                                    san_ip="127.0.0.1"))
        return cls(ca.certificate, (leaf.certificate, ca.certificate), leaf.key_pem())

    @property
    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)


class TlsEndpoint:
    """A TLS server on 127.0.0.1:<free port> (or ``host``:``port``: another loopback address, for a host name
    with several addresses) that completes handshakes, then closes (it serves no HTTP)."""

    def __init__(self, identity: ServerIdentity, *, client_cas: Sequence[x509.Certificate] = (),
                 request_certificate: bool = True, require_certificate: bool = False,
                 alpn: Sequence[bytes] = (b"http/1.1",), max_version: int | None = None,
                 silent: bool = False, host: str = "127.0.0.1", port: int = 0,
                 http_answer: bytes | None = None) -> None:
        self.advertised = tuple(c.subject for c in client_cas) if request_certificate else ()
        self.handshakes: list[tuple[bool, str | None, str | None, str | None]] = []
        self.server_names: list[str | None] = []  # each handshake's SNI, in the order of ``handshakes``
        self._silent = silent
        self._http_answer = http_answer
        tls = ClientCertTLS(identity.chain, identity.key_pem, client_cas)
        ctx = tls.context
        if not request_certificate:
            ctx.set_verify(SSL.VERIFY_NONE)
        elif require_certificate:
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
        if max_version is not None:
            ctx.set_max_proto_version(max_version)
        preferences = list(alpn)

        def select(_conn: SSL.Connection, offered: list[bytes]) -> bytes:
            for proto in preferences:
                if proto in offered:
                    return proto
            return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

        if preferences:
            ctx.set_alpn_select_callback(select)
        self._context = ctx
        self._stopping = threading.Event()
        self._held: list[socket.socket] = []
        self.host = host
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.05)
        self.port: int = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name=f"TlsEndpoint:{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._silent:
                self._held.append(raw)  # never answered; closed at stop()
                continue
            self._handshake(raw)

    def _handshake(self, raw: socket.socket) -> None:
        raw.settimeout(None)
        limit = struct.pack("ll", int(HANDSHAKE_TIMEOUT), 0)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        conn = SSL.Connection(self._context, raw)
        conn.set_accept_state()
        try:
            try:
                conn.do_handshake()
                with contextlib.suppress(SSL.Error, OSError):
                    if self._http_answer is not None:
                        request = b""
                        while b"\r\n\r\n" not in request:
                            chunk = conn.recv(4096)
                            if not chunk:
                                break
                            request += chunk
                        conn.sendall(self._http_answer)
                    conn.recv(1)  # the client's close_notify (or its EOF), so its reads never see a reset
            except (SSL.Error, OSError) as exc:
                self.server_names.append(_server_name(conn))
                self.handshakes.append((False, None, None, str(exc) or type(exc).__name__))
                return
            self.server_names.append(_server_name(conn))
            negotiated = conn.get_alpn_proto_negotiated()
            self.handshakes.append((True, conn.get_protocol_version_name(),
                                    negotiated.decode() if negotiated else None, None))
            with contextlib.suppress(SSL.Error, OSError):
                conn.shutdown()
        finally:
            raw.close()

    def recorded(self, count: int, timeout: float = 10.0) -> list[tuple[bool, str | None, str | None, str | None]]:
        """The handshakes once ``count`` are recorded: the server side finishes its part (reading the client's
        close_notify) after the client has its answer, so a test must not look at once."""
        deadline = time.monotonic() + timeout
        while len(self.handshakes) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.handshakes)

    def stop(self) -> None:
        """Stop serving and close every socket; a second call does nothing."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join()
        self._listener.close()
        for held in self._held:
            held.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _server_name(conn: SSL.Connection) -> str | None:
    name = conn.get_servername()
    return name.decode() if name else None
