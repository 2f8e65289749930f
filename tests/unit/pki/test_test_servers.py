"""The tests' own network servers: the OCSP responder and the file server (tests/factories)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

from broker.demo.certificates import CertificateAuthority, LeafProfile
from tests.factories.http_files import FileServer
from tests.factories.ocsp_responder import OCSP_SIGNING, OcspResponder, closed_port_url

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.root("Test Root CA", NOW)


@pytest.fixture(scope="module")
def issuing(root: CertificateAuthority) -> CertificateAuthority:
    return root.subordinate("Test Person CA")


@pytest.fixture(scope="module")
def leaf(issuing: CertificateAuthority) -> x509.Certificate:
    return issuing.issue(LeafProfile(common_name="Anna Andersson")).certificate


@pytest.fixture
def responder(issuing: CertificateAuthority) -> Iterator[OcspResponder]:
    with OcspResponder(issuing, now=NOW) as r:
        yield r
    assert r.errors == []


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as f:
        yield f
    assert f.errors == []


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(_NoRedirects)


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def fetch(url: str, body: bytes | None = None, content_type: str = "application/ocsp-request",
          timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) without following redirects; HTTP errors are answers too."""
    headers = {"Content-Type": content_type} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def post(responder: OcspResponder, cert: x509.Certificate, issuer: x509.Certificate,
         nonce: bytes | None = None) -> ocsp.OCSPResponse:
    status, headers, body = fetch(responder.url, ocsp_request(cert, issuer, nonce))
    assert status == 200
    assert headers["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(body)


def verify(resp: ocsp.OCSPResponse, public_key: object) -> None:
    assert resp.signature_hash_algorithm is not None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(),
                          resp.signature_hash_algorithm)
    else:
        raise TypeError(type(public_key))


def nonce_of(resp: ocsp.OCSPResponse) -> bytes | None:
    try:
        return resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def key_hash(cert: x509.Certificate) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # SHA-1 of the key bits


# --- OCSP responder ---

def test_good_answer_is_signed_by_the_issuer_with_the_configured_times(
        responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    resp = post(responder, leaf, issuing.certificate)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == leaf.serial_number
    assert isinstance(resp.hash_algorithm, hashes.SHA1)
    assert resp.this_update_utc == NOW - MINUTE
    assert resp.next_update_utc == NOW + HOUR
    assert resp.produced_at_utc == NOW
    assert resp.responder_key_hash == key_hash(issuing.certificate)
    assert resp.responder_name is None
    assert resp.certificates == []
    assert isinstance(resp.signature_hash_algorithm, hashes.SHA256)
    assert nonce_of(resp) is None
    verify(resp, issuing.certificate.public_key())
    assert len(responder.requests) == 1
    assert responder.requests[0].serial_number == leaf.serial_number
    assert responder.request_methods == ["POST"]


def test_injected_clock_and_validity(responder: OcspResponder, issuing: CertificateAuthority,
                                     leaf: x509.Certificate) -> None:
    later = NOW + dt.timedelta(days=3)
    responder.now = later
    responder.validity = dt.timedelta(minutes=10)
    resp = post(responder, leaf, issuing.certificate)
    assert (resp.produced_at_utc, resp.this_update_utc, resp.next_update_utc) == (
        later, later - MINUTE, later + dt.timedelta(minutes=10))
    verify(resp, issuing.certificate.public_key())


def test_nonce_is_echoed(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    nonce = os.urandom(16)
    resp = post(responder, leaf, issuing.certificate, nonce)
    assert nonce_of(resp) == nonce
    verify(resp, issuing.certificate.public_key())


def test_nonce_mismatch_and_drop(responder: OcspResponder, issuing: CertificateAuthority,
                                 leaf: x509.Certificate) -> None:
    nonce = os.urandom(16)
    responder.nonce_mismatch()
    returned = nonce_of(post(responder, leaf, issuing.certificate, nonce))
    assert returned is not None
    assert returned != nonce
    responder.drop_nonce()
    assert nonce_of(post(responder, leaf, issuing.certificate, nonce)) is None


def test_revoked_unknown_and_default(issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    other = issuing.issue(LeafProfile(common_name="Bo Berg")).certificate
    at = NOW - dt.timedelta(days=2)
    with OcspResponder(issuing, now=NOW) as responder:
        responder.set_status(leaf.serial_number, "revoked", revoked_at=at, reason=x509.ReasonFlags.key_compromise)
        responder.set_status(other.serial_number, "unknown")
        revoked = post(responder, leaf, issuing.certificate)
        assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert revoked.revocation_time_utc == at
        assert revoked.revocation_reason == x509.ReasonFlags.key_compromise
        verify(revoked, issuing.certificate.public_key())
        assert post(responder, other, issuing.certificate).certificate_status == ocsp.OCSPCertStatus.UNKNOWN
        responder.set_status(leaf, "good")
        assert post(responder, leaf, issuing.certificate).certificate_status == ocsp.OCSPCertStatus.GOOD
    with OcspResponder(issuing, now=NOW, default="unknown") as strict:
        assert post(strict, leaf, issuing.certificate).certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_ca_revocations_are_reported(issuing: CertificateAuthority) -> None:
    ca = issuing.subordinate("Revoking CA")
    cert = ca.issue(LeafProfile(common_name="Revoked Person")).certificate
    ca.revoke(cert, at=NOW - HOUR)
    with OcspResponder(ca, now=NOW) as responder:
        resp = post(responder, cert, ca.certificate)
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_time_utc == NOW - HOUR


def test_another_issuers_certificate_is_unknown(responder: OcspResponder, root: CertificateAuthority) -> None:
    foreign = CertificateAuthority.root("Foreign Root", NOW)
    cert = foreign.issue(LeafProfile(common_name="Stranger")).certificate
    assert post(responder, cert, foreign.certificate).certificate_status == ocsp.OCSPCertStatus.UNKNOWN


@pytest.mark.parametrize("percent_encoded", [False, True], ids=["urlsafe-base64", "percent-encoded-base64"])
def test_get(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate,
             percent_encoded: bool) -> None:
    nonce = os.urandom(16)
    der = ocsp_request(leaf, issuing.certificate, nonce)
    path = quote(base64.b64encode(der).decode(), safe="") if percent_encoded else \
        base64.urlsafe_b64encode(der).decode().rstrip("=")
    status, headers, body = fetch(responder.url + path)
    assert (status, headers["Content-Type"]) == (200, "application/ocsp-response")
    resp = ocsp.load_der_ocsp_response(body)
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert nonce_of(resp) == nonce
    assert responder.request_methods == ["GET"]


def test_delegated_responder(responder: OcspResponder, root: CertificateAuthority, issuing: CertificateAuthority,
                             leaf: x509.Certificate) -> None:
    delegate = responder.use_delegate()
    resp = post(responder, leaf, issuing.certificate)
    assert resp.certificates == [delegate.certificate]
    eku = resp.certificates[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert OCSP_SIGNING in eku
    assert OCSP_SIGNING.dotted_string == "1.3.6.1.5.5.7.3.9"
    resp.certificates[0].verify_directly_issued_by(issuing.certificate)
    assert resp.responder_key_hash == key_hash(delegate.certificate)
    verify(resp, delegate.certificate.public_key())
    with pytest.raises(InvalidSignature):
        verify(resp, issuing.certificate.public_key())

    no_eku = responder.use_delegate(eku=False)
    resp = post(responder, leaf, issuing.certificate)
    assert resp.certificates == [no_eku.certificate]
    with pytest.raises(x509.ExtensionNotFound):
        resp.certificates[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage)

    unauthorised = responder.use_delegate(issued_by=root)
    resp = post(responder, leaf, issuing.certificate)
    resp.certificates[0].verify_directly_issued_by(root.certificate)
    verify(resp, unauthorised.certificate.public_key())


def test_unrelated_key(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    stranger = responder.sign_with_unrelated_key()
    resp = post(responder, leaf, issuing.certificate)
    assert resp.certificates == [stranger.certificate]
    stranger.certificate.verify_directly_issued_by(stranger.certificate)  # self-signed
    verify(resp, stranger.certificate.public_key())
    with pytest.raises(InvalidSignature):
        verify(resp, issuing.certificate.public_key())


def test_sha1_signature(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    responder.sha1_signature()
    resp = post(responder, leaf, issuing.certificate, os.urandom(16))
    assert isinstance(resp.signature_hash_algorithm, hashes.SHA1)
    verify(resp, issuing.certificate.public_key())


def test_rsa_issuer(leaf: x509.Certificate) -> None:
    ca = CertificateAuthority.root("RSA Root", NOW, key="rsa2048")
    cert = ca.issue(LeafProfile(common_name="Rut")).certificate
    with OcspResponder(ca, now=NOW) as responder:
        verify(post(responder, cert, ca.certificate), ca.certificate.public_key())
        responder.sha1_signature()
        resp = post(responder, cert, ca.certificate)
    assert isinstance(resp.signature_hash_algorithm, hashes.SHA1)
    verify(resp, ca.certificate.public_key())


@pytest.mark.parametrize(("method", "this_update", "next_update"), [
    ("stale", NOW - 2 * HOUR, NOW - HOUR),
    ("future", NOW + HOUR, NOW + 2 * HOUR),
    ("no_next_update", NOW - MINUTE, None),
    ("fresh", NOW - MINUTE, NOW + HOUR),
])
def test_timing(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate, method: str,
                this_update: dt.datetime, next_update: dt.datetime | None) -> None:
    getattr(responder, method)()
    resp = post(responder, leaf, issuing.certificate)
    assert (resp.this_update_utc, resp.next_update_utc) == (this_update, next_update)
    verify(resp, issuing.certificate.public_key())


@pytest.mark.parametrize(("name", "status"), [
    ("tryLater", ocsp.OCSPResponseStatus.TRY_LATER),
    ("unauthorized", ocsp.OCSPResponseStatus.UNAUTHORIZED),
    ("internalError", ocsp.OCSPResponseStatus.INTERNAL_ERROR),
    ("malformedRequest", ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
])
def test_error_status(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate,
                      name: str, status: ocsp.OCSPResponseStatus) -> None:
    responder.error_status(name)  # type: ignore[arg-type]
    assert post(responder, leaf, issuing.certificate).response_status == status


def test_malformed_request(responder: OcspResponder) -> None:
    status, _headers, body = fetch(responder.url, b"not an OCSP request")
    assert status == 200
    assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert (responder.requests, responder.hits) == ([], 1)


def test_transport_faults(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    body = ocsp_request(leaf, issuing.certificate)

    responder.garbage()
    status, _headers, answer = fetch(responder.url, body)
    assert status == 200
    with pytest.raises(ValueError):  # noqa: PT011 (cryptography's parse error)
        ocsp.load_der_ocsp_response(answer)

    responder.http_error(503)
    assert fetch(responder.url, body)[0] == 503

    responder.redirect_to("http://127.0.0.1:1/elsewhere")
    status, headers, _ = fetch(responder.url, body)
    assert (status, headers["Location"]) == (302, "http://127.0.0.1:1/elsewhere")

    responder.oversized(300_000)
    status, headers, answer = fetch(responder.url, body)
    assert (status, len(answer), headers["Content-Length"]) == (200, 300_000, "300000")
    responder.oversized(70_000, declare_length=False)
    status, headers, answer = fetch(responder.url, body)
    assert (status, len(answer), "Content-Length" in headers) == (200, 70_000, False)

    responder.reset()
    assert post(responder, leaf, issuing.certificate).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert responder.hits == 6


def test_slow(responder: OcspResponder, issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    responder.slow(0.2)
    started = time.monotonic()
    post(responder, leaf, issuing.certificate)
    assert time.monotonic() - started >= 0.2
    with pytest.raises(TimeoutError):
        fetch(responder.url, ocsp_request(leaf, issuing.certificate), timeout=0.05)


def test_stop_cuts_a_slow_answer_short(issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    responder = OcspResponder(issuing, now=NOW)
    responder.slow(30)
    with pytest.raises(TimeoutError):
        fetch(responder.url, ocsp_request(leaf, issuing.certificate), timeout=0.05)
    started = time.monotonic()
    responder.stop()
    responder.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(urllib.error.URLError):
        fetch(responder.url, ocsp_request(leaf, issuing.certificate))


def test_closed_port(issuing: CertificateAuthority, leaf: x509.Certificate) -> None:
    url = closed_port_url()
    assert url.startswith("http://127.0.0.1:")
    assert OcspResponder.closed_port_url("x").endswith("/x")
    with pytest.raises(urllib.error.URLError) as err:
        fetch(url, ocsp_request(leaf, issuing.certificate))
    assert isinstance(err.value.reason, ConnectionRefusedError)


# --- file server ---

def test_file_server_serves_crls(files: FileServer, issuing: CertificateAuthority,
                                 leaf: x509.Certificate) -> None:
    ca = issuing.subordinate("CRL CA")
    revoked = ca.issue(LeafProfile(common_name="Gone")).certificate
    ca.revoke(revoked)
    crl = ca.crl()
    der_url = files.put("/ca.crl", crl.public_bytes(serialization.Encoding.DER))
    pem_url = files.put_crl("pem/ca.crl", crl, pem=True)
    assert der_url == files.url("ca.crl")

    status, headers, body = fetch(der_url)
    assert (status, headers["Content-Type"]) == (200, "application/pkix-crl")
    loaded = x509.load_der_x509_crl(body)
    assert loaded.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
    assert loaded.is_signature_valid(ca.key.public_key())
    status, _headers, body = fetch(pem_url + "?cache=bust")
    assert x509.load_pem_x509_crl(body) == crl
    fetch(der_url)

    assert files.hits["/ca.crl"] == 2
    assert files.hits["/pem/ca.crl"] == 1
    assert files.hits["/never"] == 0
    assert fetch(files.url("missing.crl"))[0] == 404
    assert files.hits["/missing.crl"] == 1


def test_file_server_slow_status_redirect(files: FileServer) -> None:
    url = files.put("a.crl", b"data")
    files.slow("a.crl", 0.2)
    started = time.monotonic()
    assert fetch(url)[2] == b"data"
    assert time.monotonic() - started >= 0.2
    files.slow("a.crl", 0)

    files.status("a.crl", 503)
    assert fetch(url)[:1] == (503,)
    files.status("a.crl", None)

    files.redirect("a.crl", files.url("b.crl"))
    status, headers, _ = fetch(url)
    assert (status, headers["Location"]) == (302, files.url("b.crl"))
    files.redirect("a.crl", None)

    assert fetch(url)[:1] == (200,)
    assert files.hits["/a.crl"] == 4
    files.remove("a.crl")
    assert fetch(url)[0] == 404


def test_ocsp_redirect_to_file_server_is_followed_by_urllib(
        responder: OcspResponder, files: FileServer) -> None:
    target = files.put("moved", b"\x30\x03\x0a\x01\x03", content_type="application/ocsp-response")
    responder.redirect_to(target)
    with urllib.request.urlopen(responder.url, timeout=5) as resp:  # GET: followed
        assert ocsp.load_der_ocsp_response(resp.read()).response_status == ocsp.OCSPResponseStatus.TRY_LATER
    assert files.hits["/moved"] == 1
