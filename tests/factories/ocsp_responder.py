"""A real RFC 6960 OCSP responder on a loopback port, with switchable misbehaviours, for tests.

Requests arrive as POST (body: DER OCSPRequest) or GET
(``<path>/<base64 of the DER request>``, RFC 6960 Appendix A.1; URL-safe
base64 and percent-encoded standard base64 are both read). ``path`` (default
``/``) is where the responder lives: ``url`` ends in it, and a GET elsewhere
is answered 404. Answers are ``application/ocsp-response``, built with
cryptography's ``ocsp.OCSPResponseBuilder``.

``refuse_method("GET")`` (or ``"POST"``) answers that method with HTTP 405
(or the ``code`` given, such as 501), as a responder that serves only the
other one does; ``read_get_as_empty_post()`` answers a GET malformedRequest.

How an answer is made is switched at run time by methods (or the attributes
they set); they combine, except that a non-``normal`` ``mode`` replaces the
OCSP answer altogether:

* ``mode``: ``normal`` | ``garbage`` | ``http_error`` | ``error_status`` |
  ``redirect`` | ``oversized`` (``garbage()``, ``http_error()``,
  ``error_status()``, ``redirect_to()``, ``oversized()``);
* ``signer``: ``issuer`` (the CA's own key, the default) | ``delegate``
  (``use_delegate()``) | ``unrelated`` (``sign_with_unrelated_key()``);
* ``timing``: ``normal`` | ``stale`` | ``future`` | ``no_next_update``;
* ``nonce_mode``: ``echo`` | ``mismatch`` | ``drop``;
* ``signature_hash``: ``sha256`` | ``sha1`` (``sha1_signature()``);
* ``delay``: seconds slept before answering (``slow()``).

``reset()`` returns to the normal behaviour (per-serial statuses stay).

``respond_entries(request, entries)`` answers with several SingleResponses
(``Entry``: any serial, status, times and CertID hash), which
cryptography's builder cannot make: one response is built per entry and
their SingleResponses are spliced into one ResponseData, then re-signed.

cryptography refuses SHA-1 signatures and always sets producedAt to the
real current time. So every successful response is re-signed here: its
ResponseData gets producedAt = ``now`` (the injected clock) and is signed
again with the same key (SHA-256, or SHA-1 in ``sha1_signature()`` mode),
then the BasicOCSPResponse is re-assembled in DER (RFC 6960 §4.2.1).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Literal
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.demo.certificates import CertificateAuthority, Issued, LeafProfile, PrivateKey, new_key
from tests.factories.http_files import BackgroundHTTPServer, closed_port_url

__all__ = ["OCSP_SIGNING", "Entry", "OcspResponder", "closed_port_url"]

OCSP_SIGNING = ExtendedKeyUsageOID.OCSP_SIGNING  # id-kp-OCSPSigning, 1.3.6.1.5.5.7.3.9

Status = Literal["good", "revoked", "unknown"]
Mode = Literal["normal", "garbage", "http_error", "error_status", "redirect", "oversized"]
Signer = Literal["issuer", "delegate", "unrelated"]
Timing = Literal["normal", "stale", "future", "no_next_update"]
NonceMode = Literal["echo", "mismatch", "drop"]
SignatureHash = Literal["sha256", "sha1"]
ErrorStatus = Literal["malformedRequest", "internalError", "tryLater", "sigRequired", "unauthorized"]

_ERROR_STATUSES: dict[str, ocsp.OCSPResponseStatus] = {
    "malformedRequest": ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
    "internalError": ocsp.OCSPResponseStatus.INTERNAL_ERROR,
    "tryLater": ocsp.OCSPResponseStatus.TRY_LATER,
    "sigRequired": ocsp.OCSPResponseStatus.SIG_REQUIRED,
    "unauthorized": ocsp.OCSPResponseStatus.UNAUTHORIZED,
}
_CERT_STATUSES: dict[str, ocsp.OCSPCertStatus] = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}
CONTENT_TYPE = "application/ocsp-response"


@dataclass(frozen=True)
class _SerialStatus:
    status: Status
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True)
class Entry:
    """One SingleResponse of ``OcspResponder.respond_entries`` (RFC 6960 §4.2.1).

    ``serial`` None: the requested serial; ``cert_id_hash`` None: the request's CertID (its hash algorithm and
    issuer hashes), else the responder's issuer hashed with that algorithm.
    """

    status: Status
    this_update: dt.datetime
    next_update: dt.datetime | None
    serial: int | None = None
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None
    cert_id_hash: Literal["sha1", "sha256"] | None = None
    # singleExtensions: (dotted OID, critical); each with an empty extnValue (cryptography builds none)
    extensions: tuple[tuple[str, bool], ...] = ()


class OcspResponder(BackgroundHTTPServer):
    """An OCSP responder for the certificates of ``issuer``; serving as soon as it is built.

    Status of a requested serial: what ``set_status`` said; else revoked if
    ``issuer.revoke(cert)`` was called for it (at that time); else
    ``default`` ("good", or "unknown"). A request for another issuer's
    certificate (CertID hashes that do not match ``issuer``) is answered "unknown".

    ``requests`` holds every parsed OCSPRequest (``request_methods`` the HTTP
    method of each); ``hits`` counts every HTTP request, parsable or not, and
    ``seen`` the method and request target (path) of each.
    """

    def __init__(self, issuer: CertificateAuthority, *, now: dt.datetime,
                 validity: dt.timedelta = dt.timedelta(hours=1), default: Literal["good", "unknown"] = "good",
                 path: str = "/") -> None:
        self.issuer = issuer
        self.path = "/" + path.lstrip("/")
        self.seen: list[tuple[str, str]] = []
        self.refused_methods: dict[str, int] = {}
        self.get_as_empty_post = False
        self.get_page: bytes | None = None
        self.now = now
        self.validity = validity
        self.default: Literal["good", "unknown"] = default
        self.requests: list[ocsp.OCSPRequest] = []
        self.request_methods: list[str] = []
        self.hits = 0
        self.responder_encoding = ocsp.OCSPResponderEncoding.HASH
        self.delegate: Issued | None = None
        self.unrelated: Issued | None = None
        self._statuses: dict[int, _SerialStatus] = {}
        self._lock = threading.Lock()
        self.reset()
        super().__init__()

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + self.path

    @property
    def methods_seen(self) -> list[str]:
        """The HTTP method of every request, refused or not, in order."""
        return [method for method, _ in self.seen]

    closed_port_url = staticmethod(closed_port_url)

    # --- statuses ---

    def set_status(self, serial: int | x509.Certificate, status: Status, revoked_at: dt.datetime | None = None,
                   reason: x509.ReasonFlags | str | None = None) -> None:
        """The answer for one serial. Revoked without a time: the CA's revocation time, else ``now`` - 1 h."""
        if isinstance(serial, x509.Certificate):
            serial = serial.serial_number
        if status not in _CERT_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if status == "revoked":
            revoked_at = revoked_at or self.issuer.revoked.get(serial) or self.now - dt.timedelta(hours=1)
            flag = x509.ReasonFlags(reason) if isinstance(reason, str) else reason
            entry = _SerialStatus("revoked", revoked_at, flag)
        else:
            entry = _SerialStatus(status)
        with self._lock:
            self._statuses[serial] = entry

    # --- behaviours ---

    def reset(self) -> None:
        """Back to normal answers: issuer-signed, SHA-256, fresh, nonce echoed, no delay."""
        self.mode: Mode = "normal"
        self.signer: Signer = "issuer"
        self.timing: Timing = "normal"
        self.nonce_mode: NonceMode = "echo"
        self.signature_hash: SignatureHash = "sha256"
        self.delay = 0.0
        self.http_status = 500
        self.error_response_status: ErrorStatus = "internalError"
        self.redirect_location = ""
        self.oversize_bytes = 0
        self.oversize_declare_length = True
        self.response_extensions: list[tuple[x509.ExtensionType, bool]] = []

    def use_issuer(self) -> None:
        """Sign with the issuing CA's own key (the default)."""
        self.signer = "issuer"

    def use_delegate(self, eku: bool = True, issued_by: CertificateAuthority | None = None, *,
                     valid_from: dt.datetime | None = None, valid_until: dt.datetime | None = None,
                     key: str = "ec256") -> Issued:
        """Sign with a delegated responder certificate issued by ``issued_by`` (default: the issuer).

        With ``eku`` it carries ExtendedKeyUsage id-kp-OCSPSigning, else no
        EKU at all; ``issued_by`` another CA simulates an unauthorised
        responder. The certificate is included in the response.
        """
        ca = issued_by or self.issuer
        names = ca.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ca_name = str(names[0].value) if names else "CA"
        profile = LeafProfile(common_name=f"{ca_name} OCSP Responder",
                              eku=(OCSP_SIGNING,) if eku else None, key_encipherment=False,
                              valid_from=valid_from, valid_until=valid_until, key=key)
        self.delegate = ca.issue(profile)
        self.signer = "delegate"
        return self.delegate

    def sign_with_unrelated_key(self) -> Issued:
        """Sign with a fresh key unrelated to the issuer; its self-signed certificate is included."""
        self.unrelated = _self_signed("Unrelated OCSP Responder", self.now)
        self.signer = "unrelated"
        return self.unrelated

    def stale(self) -> None:
        """thisUpdate 2 h ago, nextUpdate 1 h ago."""
        self.timing = "stale"

    def future(self) -> None:
        """thisUpdate 1 h ahead (nextUpdate ``validity`` after that)."""
        self.timing = "future"

    def no_next_update(self) -> None:
        self.timing = "no_next_update"

    def fresh(self) -> None:
        """thisUpdate ``now`` - 1 min, nextUpdate ``now`` + ``validity`` (the default)."""
        self.timing = "normal"

    def nonce_mismatch(self) -> None:
        """Answer with a nonce that differs from the request's (a random one if it sent none)."""
        self.nonce_mode = "mismatch"

    def drop_nonce(self) -> None:
        """Never echo the request's nonce."""
        self.nonce_mode = "drop"

    def echo_nonce(self) -> None:
        self.nonce_mode = "echo"

    def garbage(self) -> None:
        """HTTP 200, ocsp-response content type, a body that is not DER."""
        self.mode = "garbage"

    def http_error(self, code: int = 500) -> None:
        self.mode = "http_error"
        self.http_status = code

    def error_status(self, status: ErrorStatus) -> None:
        """A well-formed OCSPResponse whose responseStatus is not successful (no responseBytes)."""
        if status not in _ERROR_STATUSES:
            raise ValueError(f"unknown OCSPResponseStatus {status!r}")
        self.mode = "error_status"
        self.error_response_status = status

    def slow(self, seconds: float) -> None:
        """Sleep this long before answering (stop() cuts the sleep short)."""
        self.delay = seconds

    def oversized(self, nbytes: int, *, declare_length: bool = True) -> None:
        """HTTP 200 with a body of ``nbytes`` bytes; ``declare_length=False`` sends no Content-Length."""
        self.mode = "oversized"
        self.oversize_bytes = nbytes
        self.oversize_declare_length = declare_length

    def sha1_signature(self) -> None:
        """Sign the response with SHA-1 (ecdsa-with-SHA1 / sha1WithRSAEncryption)."""
        self.signature_hash = "sha1"

    def add_response_extension(self, extension: x509.ExtensionType, *, critical: bool) -> None:
        """Carry ``extension`` among the ResponseData's responseExtensions (RFC 6960 §4.4)."""
        self.response_extensions.append((extension, critical))

    def redirect_to(self, url: str) -> None:
        """HTTP 302 with ``Location: url``."""
        self.mode = "redirect"
        self.redirect_location = url

    def refuse_method(self, method: Literal["GET", "POST"], code: int = 405) -> None:
        """Answer every ``method`` request with ``code`` (405 Method Not Allowed: Allow names the other method;
        501 Not Implemented), as a responder serving only the other method does; ``reset()`` keeps it."""
        self.refused_methods[method] = code

    def read_get_as_empty_post(self) -> None:
        """Take a GET for a POST without a body, as a responder built for POST alone may: its answer is an OCSP
        malformedRequest (HTTP 200); ``reset()`` keeps it."""
        self.get_as_empty_post = True

    def answer_get_with_page(self, page: bytes = b"<html><body>OCSP responder</body></html>\n") -> None:
        """Answer every GET with ``page`` (HTTP 200, text/html), as a web server whose OCSP responder serves only
        POST, at a path whose GETs it answers with a page of its own; ``reset()`` keeps it."""
        self.get_page = page

    # --- serving ---

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        body = self.read_body(handler) if method == "POST" else b""
        with self._lock:
            self.hits += 1
            self.seen.append((method, handler.path))
        self.pause(self.delay)
        head = method == "HEAD"
        refused = self.refused_methods.get("GET" if head else method)
        if refused is not None:
            allowed = "GET, HEAD" if method == "POST" else "POST"
            self.send(handler, refused, b"method not allowed\n", content_type="text/plain",
                      headers={"Allow": allowed} if refused == 405 else None, head=head)
            return
        if self.get_page is not None and method in ("GET", "HEAD"):
            self.send(handler, 200, self.get_page, content_type="text/html", head=head)
            return
        mode = self.mode
        if mode == "redirect":
            self.send(handler, 302, headers={"Location": self.redirect_location}, head=head)
            return
        if mode == "http_error":
            self.send(handler, self.http_status, b"error\n", content_type="text/plain", head=head)
            return
        if mode == "garbage":
            self.send(handler, 200, b"garbage:" + os.urandom(56), content_type=CONTENT_TYPE, head=head)
            return
        if mode == "oversized":
            self.send(handler, 200, b"\x30" * self.oversize_bytes, content_type=CONTENT_TYPE,
                      declare_length=self.oversize_declare_length, head=head)
            return
        der = b"" if method == "GET" and self.get_as_empty_post else self._request_der(handler, method, body)
        request = _parse_request(der) if der is not None else None
        if request is None:
            answer = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        else:
            with self._lock:
                self.requests.append(request)
                self.request_methods.append(method)
            if mode == "error_status":
                answer = ocsp.OCSPResponseBuilder.build_unsuccessful(_ERROR_STATUSES[self.error_response_status])
            else:
                answer = self.respond(request)
        self.send(handler, 200, answer.public_bytes(serialization.Encoding.DER), content_type=CONTENT_TYPE,
                  head=head)

    def _request_der(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> bytes | None:
        if method == "POST":
            return body
        path = urlsplit(handler.path).path
        prefix = self.path.rstrip("/") + "/"
        if not path.startswith(prefix):
            return None
        encoded = unquote(path.removeprefix(prefix))
        if not encoded:
            return None
        encoded = encoded.replace("-", "+").replace("_", "/")
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None

    def respond(self, request: ocsp.OCSPRequest) -> ocsp.OCSPResponse:
        """The successful OCSPResponse the current settings give for ``request``."""
        status = self._status_for(request)
        this_update, next_update = self._times()
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash, request.serial_number, request.hash_algorithm,
            _CERT_STATUSES[status.status], this_update, next_update, status.revoked_at, status.reason,
        )
        signer_cert, signer_key, certs = self._signer()
        builder = builder.responder_id(self.responder_encoding, signer_cert)
        if certs:
            builder = builder.certificates(certs)
        nonce = self._nonce(request)
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        for extension, critical in self.response_extensions:
            builder = builder.add_extension(extension, critical=critical)
        built = builder.sign(signer_key, hashes.SHA256())
        algorithm: hashes.HashAlgorithm = hashes.SHA1() if self.signature_hash == "sha1" else hashes.SHA256()
        return _resign(built, signer_key, algorithm, self.now)

    def respond_entries(self, request: ocsp.OCSPRequest, entries: Sequence[Entry]) -> ocsp.OCSPResponse:
        """A successful OCSPResponse whose ResponseData carries one SingleResponse per entry, in order
        (RFC 6960 §4.2.2.3 lets a responder include more than were asked for). Signer, nonce and signature hash
        follow the current settings; ``timing`` and the per-serial statuses do not apply (each entry says its own).
        """
        if not entries:
            raise ValueError("at least one entry")
        template = self.respond(request)  # responderID, certificates and nonce as configured
        singles = [self._single_response(request, entry) for entry in entries]
        _signer_cert, signer_key, _certs = self._signer()
        algorithm: hashes.HashAlgorithm = hashes.SHA1() if self.signature_hash == "sha1" else hashes.SHA256()
        spliced = ocsp.load_der_ocsp_response(_with_single_responses(template, singles))
        return _resign(spliced, signer_key, algorithm, self.now)

    def _single_response(self, request: ocsp.OCSPRequest, entry: Entry) -> bytes:
        """The DER SingleResponse for ``entry``, cut out of a one-entry response built by cryptography."""
        if entry.cert_id_hash is None:
            algorithm = request.hash_algorithm
            name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
        else:
            algorithm = hashes.SHA1() if entry.cert_id_hash == "sha1" else hashes.SHA256()
            name_hash, key_hash = _issuer_hashes(self.issuer.certificate, algorithm)
        revoked_at = (entry.revoked_at or self.now - dt.timedelta(hours=1)) if entry.status == "revoked" else None
        built = ocsp.OCSPResponseBuilder().add_response_by_hash(
            name_hash, key_hash, request.serial_number if entry.serial is None else entry.serial, algorithm,
            _CERT_STATUSES[entry.status], entry.this_update, entry.next_update, revoked_at,
            entry.reason if entry.status == "revoked" else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.issuer.certificate).sign(self.issuer.key,
                                                                                      hashes.SHA256())
        (single,) = _children(_responses_of(_tbs_response_data(built)))
        if entry.extensions:
            extensions = b"".join(_tlv(0x30, _tlv(0x06, _oid_content(oid)) + (b"\x01\x01\xff" if critical else b"")
                                       + _tlv(0x04, b"\x05\x00")) for oid, critical in entry.extensions)
            single = _tlv(0x30, _content(single) + _tlv(0xA1, _tlv(0x30, extensions)))
        return single

    def _status_for(self, request: ocsp.OCSPRequest) -> _SerialStatus:
        if not _issued_by(request, self.issuer.certificate):
            return _SerialStatus("unknown")
        serial = request.serial_number
        with self._lock:
            entry = self._statuses.get(serial)
        if entry is not None:
            return entry
        revoked_at = self.issuer.revoked.get(serial)
        if revoked_at is not None:
            return _SerialStatus("revoked", revoked_at)
        return _SerialStatus(self.default)

    def _times(self) -> tuple[dt.datetime, dt.datetime | None]:
        now, hour = self.now, dt.timedelta(hours=1)
        if self.timing == "stale":
            return now - 2 * hour, now - hour
        if self.timing == "future":
            return now + hour, now + hour + self.validity
        if self.timing == "no_next_update":
            return now - dt.timedelta(minutes=1), None
        return now - dt.timedelta(minutes=1), now + self.validity

    def _signer(self) -> tuple[x509.Certificate, PrivateKey, list[x509.Certificate]]:
        if self.signer == "delegate":
            if self.delegate is None:
                raise RuntimeError("signer is 'delegate' but use_delegate() was not called")
            return self.delegate.certificate, self.delegate.key, [self.delegate.certificate]
        if self.signer == "unrelated":
            if self.unrelated is None:
                raise RuntimeError("signer is 'unrelated' but sign_with_unrelated_key() was not called")
            return self.unrelated.certificate, self.unrelated.key, [self.unrelated.certificate]
        return self.issuer.certificate, self.issuer.key, []

    def _nonce(self, request: ocsp.OCSPRequest) -> bytes | None:
        try:
            asked: bytes | None = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            asked = None
        if self.nonce_mode == "drop":
            return None
        if self.nonce_mode == "mismatch":
            other = os.urandom(len(asked) if asked else 16)
            return other if other != asked else bytes(b ^ 0xFF for b in other)
        return asked


def _parse_request(der: bytes) -> ocsp.OCSPRequest | None:
    try:
        return ocsp.load_der_ocsp_request(der)
    except (ValueError, NotImplementedError):  # malformed, or more than one CertID
        return None


def _self_signed(common_name: str, now: dt.datetime) -> Issued:
    key = new_key("ec256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([OCSP_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _issued_by(request: ocsp.OCSPRequest, issuer: x509.Certificate) -> bool:
    """Whether the request's CertID names ``issuer`` (name and key hashes, in the request's hash)."""
    def digest(data: bytes) -> bytes:
        h = hashes.Hash(request.hash_algorithm)
        h.update(data)
        return h.finalize()

    spki = issuer.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    _algorithm, bit_string = _children(spki)
    key_bits = _content(bit_string)[1:]  # without the unused-bits octet
    return (digest(issuer.subject.public_bytes()) == request.issuer_name_hash
            and digest(key_bits) == request.issuer_key_hash)


def _issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CertID naming ``issuer`` in ``algorithm`` (RFC 6960 §4.1.1)."""
    def digest(data: bytes) -> bytes:
        h = hashes.Hash(algorithm)
        h.update(data)
        return h.finalize()

    spki = issuer.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    _algorithm, bit_string = _children(spki)
    return digest(issuer.subject.public_bytes()), digest(_content(bit_string)[1:])


# --- minimal DER, for re-signing a built response ---

_ECDSA_WITH_SHA1 = bytes.fromhex("300906072a8648ce3d0401")             # 1.2.840.10045.4.1, no parameters
_SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")       # 1.2.840.113549.1.1.5, NULL


def _header(data: bytes, pos: int) -> tuple[int, int]:
    """(start of the content, end of the element) of the element at ``pos`` (single-byte tags only)."""
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[start:start + n], "big")
        start += n
    return start, start + length


def _content(element: bytes) -> bytes:
    start, end = _header(element, 0)
    return element[start:end]


def _children(element: bytes) -> list[bytes]:
    """The encoded elements inside a constructed element."""
    body = _content(element)
    out: list[bytes] = []
    pos = 0
    while pos < len(body):
        _start, end = _header(body, pos)
        out.append(body[pos:end])
        pos = end
    return out


def _oid_content(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (X.690 §8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = b""
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk, rest = [arc & 0x7F], arc >> 7
        while rest:
            chunk.insert(0, 0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(chunk)
    return out


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _resign(response: ocsp.OCSPResponse, key: PrivateKey, algorithm: hashes.HashAlgorithm,
            produced_at: dt.datetime) -> ocsp.OCSPResponse:
    """``response`` with producedAt replaced and ResponseData signed again with ``algorithm``.

    OCSPResponse ::= SEQUENCE { responseStatus, [0] EXPLICIT ResponseBytes }
    ResponseBytes ::= SEQUENCE { responseType OID, response OCTET STRING (BasicOCSPResponse) }
    BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING, [0] certs OPT }
    ResponseData ::= SEQUENCE { [0] version OPT, responderID, producedAt GeneralizedTime, responses, [1] exts OPT }
    """
    status, explicit = _children(response.public_bytes(serialization.Encoding.DER))
    (response_bytes,) = _children(explicit)
    response_type, octets = _children(response_bytes)
    tbs, signature_algorithm, _signature, *certs = _children(_content(octets))
    if produced_at.tzinfo is not None:
        produced_at = produced_at.astimezone(dt.UTC)
    generalized = _tlv(0x18, produced_at.strftime("%Y%m%d%H%M%SZ").encode("ascii"))
    tbs = _tlv(0x30, b"".join(generalized if part[0] == 0x18 else part for part in _children(tbs)))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, ec.ECDSA(algorithm))
        if isinstance(algorithm, hashes.SHA1):
            signature_algorithm = _ECDSA_WITH_SHA1
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs, padding.PKCS1v15(), algorithm)
        if isinstance(algorithm, hashes.SHA1):
            signature_algorithm = _SHA1_WITH_RSA
    else:
        raise TypeError(f"unsupported responder key {type(key).__name__}")
    basic = _tlv(0x30, tbs + signature_algorithm + _tlv(0x03, b"\x00" + signature) + b"".join(certs))
    der = _tlv(0x30, status + _tlv(0xA0, _tlv(0x30, response_type + _tlv(0x04, basic))))
    return ocsp.load_der_ocsp_response(der)


def with_oid_renamed(response: ocsp.OCSPResponse, old: str, new: str, key: PrivateKey,
                     now: dt.datetime) -> ocsp.OCSPResponse:
    """``response`` with the OBJECT IDENTIFIER ``old`` written as ``new`` in its ResponseData (both of one encoded
    length, ``old`` there once), signed again with ``key`` (producedAt ``now``): e.g. a second responseExtension
    under the first one's OID, which cryptography's builder refuses to make."""
    old_tlv, new_tlv = _tlv(0x06, _oid_content(old)), _tlv(0x06, _oid_content(new))
    der = response.public_bytes(serialization.Encoding.DER)
    if len(old_tlv) != len(new_tlv) or der.count(old_tlv) != 1:
        raise ValueError(f"{old} must appear once and encode as long as {new}")
    return _resign(ocsp.load_der_ocsp_response(der.replace(old_tlv, new_tlv)), key, hashes.SHA256(), now)


def _tbs_response_data(response: ocsp.OCSPResponse) -> bytes:
    """The DER ResponseData (tbsResponseData) of a successful ``response``."""
    _status, explicit = _children(response.public_bytes(serialization.Encoding.DER))
    (response_bytes,) = _children(explicit)
    _response_type, octets = _children(response_bytes)
    return _children(_content(octets))[0]


def _responses_of(tbs: bytes) -> bytes:
    """The ``responses`` SEQUENCE OF SingleResponse of a ResponseData: its only universal SEQUENCE (version [0],
    responderID [1]/[2], producedAt GeneralizedTime, responseExtensions [1] are all tagged otherwise)."""
    (responses,) = [part for part in _children(tbs) if part[0] == 0x30]
    return responses


def _with_single_responses(response: ocsp.OCSPResponse, singles: Sequence[bytes]) -> bytes:
    """``response`` in DER with the SingleResponses of its ResponseData replaced by ``singles``. The signature
    no longer matches: re-sign the result with ``_resign``."""
    status, explicit = _children(response.public_bytes(serialization.Encoding.DER))
    (response_bytes,) = _children(explicit)
    response_type, octets = _children(response_bytes)
    tbs, *rest = _children(_content(octets))
    responses = _tlv(0x30, b"".join(singles))
    tbs = _tlv(0x30, b"".join(responses if part[0] == 0x30 else part for part in _children(tbs)))
    basic = _tlv(0x30, tbs + b"".join(rest))
    return _tlv(0x30, status + _tlv(0xA0, _tlv(0x30, response_type + _tlv(0x04, basic))))
