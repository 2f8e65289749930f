"""TLS with client-certificate requests, via pyOpenSSL (the only module that imports it).

Python's ``ssl`` module aborts the handshake when a presented client
certificate fails verification, so the user would see a browser error
instead of the broker's explanation. Here the server requests a certificate,
advertises exactly the configured CA names (TLS 1.2 CertificateRequest
``certificate_authorities`` / the TLS 1.3 extension), and accepts whatever
arrives: the broker, not the TLS layer, decides and explains.

:class:`ClientCertTLS` plugs into werkzeug's development server (its
``ssl_context`` argument only needs ``wrap_socket``); werkzeug then exposes the
peer certificate as ``SSL_CLIENT_CERT`` in the WSGI environ.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import re
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto

from broker.pki.deadline import SocketDeadline, connect_within


def _accept_any(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    # Deliberately permissive: validation happens in broker.pki with reasons the user can read.
    return True


class ClientCertTLS:
    """A server TLS context that requests client certificates and never rejects them."""

    def __init__(self, certificate_chain: Sequence[x509.Certificate], key_pem: bytes,
                 client_cas: Sequence[x509.Certificate]) -> None:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.use_certificate(certificate_chain[0])
        for extra in certificate_chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(serialization.load_pem_private_key(key_pem, password=None))  # type: ignore[arg-type]
        ctx.check_privatekey()
        ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
        for ca in client_cas:
            ctx.add_client_ca(ca)
        ctx.set_session_id(b"broker")
        self.context = ctx
        self.advertised = tuple(c.subject for c in client_cas)

    def wrap_socket(self, sock: socket.socket, server_side: bool = True) -> _TLSListener:
        if not server_side:
            raise ValueError("ClientCertTLS only serves")
        return _TLSListener(sock, self.context)


class _TLSListener:
    """The listening socket: accept() hands out TLS connections (handshake happens on first read)."""

    def __init__(self, sock: socket.socket, context: SSL.Context) -> None:
        self._sock = sock
        self._context = context

    def accept(self) -> tuple[_TLSConnection, Any]:
        raw, address = self._sock.accept()
        tls = SSL.Connection(self._context, raw)
        tls.set_accept_state()
        return _TLSConnection(tls, raw), address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _RawTLS(io.RawIOBase):
    def __init__(self, conn: _TLSConnection) -> None:
        self._conn = conn

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._conn.recv(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def write(self, data: Any) -> int:
        self._conn.sendall(bytes(data))
        return len(data)


class _TLSConnection:
    """Enough of the socket API for socketserver and werkzeug, over a pyOpenSSL connection."""

    def __init__(self, tls: SSL.Connection, raw: socket.socket) -> None:
        self._tls = tls
        self._raw = raw

    def recv(self, size: int) -> bytes:
        try:
            return self._tls.recv(size)
        except SSL.ZeroReturnError:
            return b""
        except SSL.SysCallError as exc:
            if exc.args and exc.args[0] == -1:  # unexpected EOF
                return b""
            raise ConnectionError(str(exc)) from exc
        except SSL.Error as exc:
            raise ConnectionError(f"TLS error: {exc}") from exc

    def sendall(self, data: bytes) -> None:
        try:
            self._tls.sendall(data)
        except SSL.Error as exc:
            raise ConnectionError(f"TLS error: {exc}") from exc

    def makefile(self, mode: str = "rb", buffering: int = -1) -> io.BufferedIOBase:
        raw = _RawTLS(self)
        size = io.DEFAULT_BUFFER_SIZE if buffering in (-1, 0, None) else buffering
        if "r" in mode:
            return io.BufferedReader(raw, size)
        return io.BufferedWriter(raw, size)

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        cert = self._tls.get_peer_certificate(as_cryptography=True)
        if cert is None:
            return None
        return cert.public_bytes(serialization.Encoding.DER)

    def shutdown(self, how: int) -> None:
        with contextlib.suppress(SSL.Error):
            self._tls.shutdown()
        with contextlib.suppress(OSError):
            self._raw.shutdown(how)

    def close(self) -> None:
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


@dataclass(frozen=True)
class EndpointProbe:
    """What one TLS handshake (without a client certificate) showed of an endpoint's client authentication.

    ``certificate_requested``: the server sent a CertificateRequest in the handshake itself (as opposed to
    asking later, per path, by renegotiation or post-handshake authentication, which HTTP/2 forbids).
    ``ca_list_bytes``: the size of the advertised CA list on the wire (RFC 8446 §4.2.4, RFC 5246 §7.4.4).
    ``required``: how the server refused a client that sent no certificate after its request (the handshake aborted:
    Apache ``SSLVerifyClient require``; or an HTTP request answered 400/495/496 for the missing certificate: nginx
    ``ssl_verify_client on``), None when it went on without one.
    """

    ca_names: tuple[x509.Name, ...]
    certificate_requested: bool
    alpn: str | None
    tls_version: str
    server_certificates: tuple[x509.Certificate, ...]
    required: str | None = None

    @property
    def ca_list_bytes(self) -> int:
        # each DistinguishedName is a 2-byte length and the DER name, the list another 2-byte length
        return 2 + sum(2 + len(n.public_bytes()) for n in self.ca_names)


def probe_endpoint(host: str, port: int, *, server_name: str | None = None, timeout: float = 10.0,
                   alpn: Sequence[bytes] = (b"h2", b"http/1.1")) -> EndpointProbe:
    """Handshake with a live endpoint as a browser without a certificate would, and report what it asked.

    A real handshake on a blocking socket (pyOpenSSL needs one; the kernel's socket timeouts bound every
    wait, and :class:`SocketDeadline` the whole exchange: an endpoint answering a byte at a time is cut off at
    ``timeout``). The server is not verified here: this reads its CertificateRequest, it does not trust it.
    Raises ``OSError`` when no handshake is possible at all (pyOpenSSL's errors do not leave this module).
    """
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_verify(SSL.VERIFY_NONE, _accept_any)
    if alpn:
        ctx.set_alpn_protos(list(alpn))
    requested: list[bool] = []

    def watch(conn: SSL.Connection, where: int, _ret: int) -> None:
        # OpenSSL names the client state after it read a CertificateRequest "TLS_ST_CR_CERT_REQ":
        # "SSLv3/TLS read server certificate request"
        if where & SSL.SSL_CB_LOOP and b"certificate request" in (conn.get_state_string() or b""):
            requested.append(True)

    ctx.set_info_callback(watch)
    # the name resolved within the limit too (connect_within): it comes before any socket the deadline can cut
    with SocketDeadline(timeout) as deadline, connect_within(host, port, deadline, timeout=timeout) as raw:
        deadline.attach(raw)
        raw.settimeout(None)
        limit = struct.pack("ll", int(timeout), int((timeout % 1) * 1_000_000))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        conn = SSL.Connection(ctx, raw)
        name = server_name or host
        if not _address_literal(name):  # RFC 6066 §3: an IP address is never a HostName, nor sent by browsers
            conn.set_tlsext_host_name(name.encode("idna"))
        conn.set_connect_state()
        required: str | None = None
        try:
            conn.do_handshake()
        except SSL.Error as exc:
            if deadline.expired or _timed_out(exc):
                raise TimeoutError(f"no complete TLS handshake within {timeout:g} s (the endpoint answered too "
                                   "slowly or not at all)") from None
            # a server that requires a certificate may abort after its request; anything else is no handshake
            if not requested:
                raise ConnectionError(f"TLS handshake failed: {exc or type(exc).__name__}") from None
            required = f"the handshake was aborted after the certificate request ({_ssl_error(exc)})"
        if deadline.expired:
            raise TimeoutError(f"no complete TLS handshake within {timeout:g} s")
        names = tuple(conn.get_client_ca_list(as_cryptography=True))
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        negotiated = conn.get_alpn_proto_negotiated()
        version = conn.get_protocol_version_name()
        if requested and required is None:
            required = _refused_without_certificate(conn, raw, name, negotiated, deadline, limit)
        with contextlib.suppress(SSL.Error):
            conn.shutdown()
    return EndpointProbe(names, bool(requested), negotiated.decode() if negotiated else None, version,
                         tuple(chain), required)


ALERT_WAIT_US = 300_000   # how long a server that requires a certificate gets to send its alert, in microseconds
# the HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113 §3.4, §6.5): a server answers with its own
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_REFUSED_STATUS = re.compile(rb"^HTTP/1\.[01] (49[56]|400)\b")


def _refused_without_certificate(conn: SSL.Connection, raw: socket.socket, host: str, alpn: bytes | None,
                                 deadline: SocketDeadline, limit: bytes) -> str | None:
    """After a handshake without a client certificate: whether the server refuses to go on without one. TLS 1.3
    servers that require a certificate abort only after the client's Finished (RFC 8446 §4.4.2.4: the alert
    certificate_required arrives on the first read); nginx (``ssl_verify_client on``) completes the handshake and
    answers the HTTP request 400 "No required SSL certificate was sent" (its 496; 495 for a certificate error)."""
    if alpn == b"h2":
        request = _H2_PREFACE + _h2_get(host)
    else:
        target = f"[{host}]" if ":" in host else host
        request = (f"GET / HTTP/1.1\r\nHost: {target}\r\nUser-Agent: broker-readiness\r\nAccept: */*\r\n"
                   "Connection: close\r\n\r\n").encode("ascii", "replace")
    # the alert first: it is on its way at once, and a write after it may meet the reset of the closed connection,
    # which discards it unread. What arrives instead is kept: an HTTP/2 server speaks first, its SETTINGS unasked
    # (RFC 9113 §3.4), and the frames of its answer are counted from that first byte
    answer = b""
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, ALERT_WAIT_US))
    try:
        answer = conn.recv(1)
    except SSL.WantReadError:
        pass
    except SSL.Error as exc:
        alert = _ssl_error(exc)
        if not _timed_out(exc) and re.search("certificate|handshake failure", alert, re.I):
            return f"the server ended the connection after the handshake ({alert})"
    finally:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    with contextlib.suppress(SSL.Error, OSError):  # a server that aborted may reset the write: its alert is read next
        conn.sendall(request)
    try:
        while len(answer) < 8192 and b"</title>" not in answer.lower() and not deadline.expired:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
            if alpn == b"h2" and _h2_answer(answer)[0] not in (None, 400):
                break  # answered, not for want of a certificate
    except SSL.ZeroReturnError:
        pass
    except SSL.Error as exc:
        # (with part of an answer: judged below; an HTTP/2 server's own SETTINGS are none)
        if not answer or (alpn == b"h2" and _h2_answer(answer)[0] is None):
            alert = _ssl_error(exc)
            if deadline.expired or _timed_out(exc) or not re.search("certificate|handshake failure", alert, re.I):
                return None  # no answer in time, or a reset: says nothing either way
            return f"the server ended the connection after the handshake ({alert})"
    except OSError:
        return None
    if alpn == b"h2":
        code_h2, body = _h2_answer(answer)
        if code_h2 == 400 and b"certificate" in body.lower():  # nginx answers its 495 and 496 as 400 over HTTP/2
            return "an HTTP/2 request without a certificate was answered 400 (the certificate missing)"
        return None
    status = _REFUSED_STATUS.match(answer)
    if status is None:
        return None
    code = status.group(1).decode()
    if code == "400" and b"certificate" not in answer.lower():
        return None  # a 400 for another reason than the certificate
    line = answer.split(b"\r\n", 1)[0].decode("ascii", "replace")
    return f"an HTTP request without a certificate was answered {line!r}"


def _h2_get(host: str) -> bytes:
    """An HTTP/2 HEADERS frame on stream 1, ending the stream: GET https://``host``/ (RFC 9113 §6.2; HPACK, RFC 7541:
    :method GET, :scheme https, :path / from the static table, :authority a literal without Huffman coding). The
    authority is a URI's (RFC 9113 §8.3.1, RFC 3986 §3.2.2): an IPv6 address in brackets, as ``Host`` has it."""
    if not _address_literal(host):
        authority = host.encode("idna")[:126]
    else:
        authority = (f"[{host.strip('[]')}]" if ":" in host else host).encode("ascii")
    block = b"\x82\x87\x84\x41" + bytes([len(authority)]) + authority
    return len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block


# HPACK static table (RFC 7541 Appendix A): the indexed :status fields
_H2_STATUS = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500}


def _h2_answer(data: bytes) -> tuple[int | None, bytes]:
    """The status of the response on stream 1 in ``data`` (HTTP/2 frames: 9-byte headers, RFC 9113 §4.1), when it is
    an indexed or plain literal :status (else 0: some other answer), and its body so far."""
    status: int | None = None
    body = b""
    at = 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        kind, flags = data[at + 3], data[at + 4]
        stream = int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF
        payload = data[at + 9:at + 9 + length]
        at += 9 + length
        if stream != 1:
            continue
        if flags & 0x08 and payload:  # PADDED: the pad length first, the padding last
            payload = payload[1:len(payload) - payload[0]]
        if kind == 0x01 and status is None:  # HEADERS
            if flags & 0x20:  # PRIORITY: 5 bytes first
                payload = payload[5:]
            first = payload[:1]
            if first and first[0] in _H2_STATUS:
                status = _H2_STATUS[first[0]]
            elif first[:1] == b"\x48" and len(payload) >= 2 and not payload[1] & 0x80:  # literal :status, no Huffman
                value = payload[2:2 + payload[1]]
                status = int(value) if value.isdigit() else 0
            else:
                status = 0
        elif kind == 0x00:  # DATA
            body += payload
    return status, body


def _ssl_error(exc: SSL.Error) -> str:
    """pyOpenSSL's error as the reasons OpenSSL gave (e.g. 'tlsv13 alert certificate required')."""
    if exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        return "; ".join(str(entry[-1]) for entry in exc.args[0] if isinstance(entry, tuple)) or str(exc)
    return str(exc) or type(exc).__name__


def _address_literal(name: str) -> bool:
    """Whether ``name`` is an IPv4 or IPv6 address (an IPv6 one in brackets too), not a host name."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _timed_out(exc: SSL.Error) -> bool:
    """pyOpenSSL's report of a socket read or write that hit SO_RCVTIMEO / SO_SNDTIMEO (EAGAIN)."""
    return isinstance(exc, SSL.SysCallError) and bool(exc.args) and exc.args[0] in (errno.EAGAIN, errno.EWOULDBLOCK)


def read_client_ca_list(host: str, port: int, *, server_name: str | None = None,
                        timeout: float = 10.0) -> list[x509.Name]:
    """The CA names a live TLS endpoint advertises in its certificate request (empty: none, or no request)."""
    return list(probe_endpoint(host, port, server_name=server_name, timeout=timeout, alpn=()).ca_names)
