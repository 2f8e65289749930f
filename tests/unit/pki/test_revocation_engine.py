"""The revocation checker against real loopback servers: OCSP answers and failures, method order and fallback,
soft fail, the per-process and shared (Redis) caches, the circuit breaker, refresh-ahead and CRLs over HTTP.

Every refusal asserts the exact reason code (broker/reasons.py); the audited events are the flow tests'
(tests/flows/test_revocation_login.py).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from broker.clock import FixedClock
from broker.demo.certificates import CertificateAuthority, Issued
from broker.errors import CertificateRejected
from broker.pki.revocation.engine import RevocationChecker
from broker.pki.revocation.http import FetchError, FetchLimits, HttpFetcher
from broker.pki.revocation.ocsp import build_request
from broker.session.store import RedisStore
from tests.factories.http_files import FileServer
from tests.factories.ocsp_responder import OcspResponder, closed_port_url
from tests.factories.pki import Hierarchy
from tests.factories.pki_cases import crl_signing_key, reissue, revoking
from tests.factories.revocation import (
    HOUR,
    MINUTE,
    NOW,
    SECOND,
    check,
    checker,
    impostor,
    issuing_under,
    leaf,
    person_ca,
    policy,
    refused,
    with_pointers,
)
from tests.factories.slow_resolver import resolve_slowly

DAY = dt.timedelta(days=1)
UNKNOWN_EXTENSION = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return person_ca()


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as f:
        yield f
    assert f.errors == []



# --- OCSP: each answer and each failure, with its reason code ---------------------------------------


@dataclass(frozen=True)
class OcspCase:
    """How the responder behaves, how the municipality configured OCSP, and what the check concludes."""

    configure: Callable[[OcspResponder, x509.Certificate], object] = lambda r, c: None
    reason: str | None = None                     # None: accepted
    detail: str = ""
    url: Callable[[OcspResponder], str] = field(default=lambda r: r.url)
    nonce: bool = False
    timeout: float = 3.0
    http_method: Literal["auto", "get", "post"] = "auto"


def _revoked(r: OcspResponder, c: x509.Certificate) -> None:
    r.set_status(c, "revoked", revoked_at=NOW - 2 * DAY, reason=x509.ReasonFlags.key_compromise)


OCSP_CASES = [
    pytest.param(OcspCase(), id="good"),
    pytest.param(OcspCase(_revoked, "revoked", "revoked"), id="revoked"),
    pytest.param(OcspCase(lambda r, c: r.set_status(c, "unknown"), "revocation_unknown", "does not know serial"),
                 id="unknown"),
    pytest.param(OcspCase(reason="revocation_unavailable", detail="Connection refused",
                          url=lambda r: closed_port_url()), id="responder-down"),
    pytest.param(OcspCase(lambda r, c: r.slow(3), "revocation_unavailable", "timed out", timeout=0.5),
                 id="responder-slow"),
    pytest.param(OcspCase(lambda r, c: r.garbage(), "revocation_response_invalid", "not a DER OCSP response"),
                 id="garbage"),
    pytest.param(OcspCase(lambda r, c: r.http_error(500), "revocation_unavailable", "HTTP 500"), id="http-500"),
    pytest.param(OcspCase(lambda r, c: r.error_status("tryLater"), "revocation_unavailable", "try_later"),
                 id="try-later"),
    pytest.param(OcspCase(lambda r, c: r.error_status("internalError"), "revocation_unavailable",
                          "internal_error"), id="internal-error"),
    pytest.param(OcspCase(lambda r, c: r.error_status("unauthorized"), "revocation_response_invalid",
                          "unauthorized"), id="unauthorized"),
    pytest.param(OcspCase(lambda r, c: r.error_status("malformedRequest"), "revocation_response_invalid",
                          "malformed_request"), id="malformed-request"),
    pytest.param(OcspCase(lambda r, c: r.sign_with_unrelated_key(), "revocation_response_invalid",
                          "is not issued by the certificate's CA"), id="signed-by-unrelated-key"),
    pytest.param(OcspCase(lambda r, c: r.use_delegate(eku=False), "revocation_response_invalid",
                          "lacks id-kp-OCSPSigning"), id="delegate-without-ocsp-signing-eku"),
    pytest.param(OcspCase(lambda r, c: r.use_delegate(issued_by=person_ca(name="Kommun B")),
                          "revocation_response_invalid", "is not issued by the certificate's CA"),
                 id="delegate-issued-by-another-ca"),
    pytest.param(OcspCase(lambda r, c: r.use_delegate(eku=True)), id="delegate-with-eku-issued-by-the-ca"),
    # the key that vouches for "good" meets the floor of every CA key on a path
    pytest.param(OcspCase(lambda r, c: r.use_delegate(eku=True, key="rsa1024"), "revocation_response_invalid",
                          "RSA key of 1024 bits"), id="delegate-with-rsa-1024-key"),
    pytest.param(OcspCase(lambda r, c: r.use_delegate(eku=True, key="ec192"), "revocation_response_invalid",
                          "elliptic curve secp192r1 is not accepted"), id="delegate-with-p192-key"),
    pytest.param(OcspCase(lambda r, c: r.use_delegate(eku=True, key="rsa2048")), id="delegate-with-rsa-2048-key"),
    # RFC 6960 §4.4: an extension may be ignored only when it is not critical
    pytest.param(OcspCase(lambda r, c: r.add_response_extension(UNKNOWN_EXTENSION, critical=True),
                          "revocation_response_invalid", "critical extension 1.3.6.1.4.1.99999.1"),
                 id="unknown-critical-response-extension"),
    pytest.param(OcspCase(lambda r, c: r.add_response_extension(UNKNOWN_EXTENSION, critical=False)),
                 id="unknown-non-critical-response-extension"),
    pytest.param(OcspCase(lambda r, c: r.stale(), "revocation_stale", "expired at"), id="stale-next-update"),
    pytest.param(OcspCase(lambda r, c: r.future(), "revocation_response_invalid", "is in the future"),
                 id="this-update-in-future"),
    pytest.param(OcspCase(lambda r, c: r.no_next_update()), id="no-next-update-recent"),
    pytest.param(OcspCase(nonce=True), id="nonce-echoed"),
    pytest.param(OcspCase(lambda r, c: r.nonce_mismatch(), "revocation_response_invalid", "nonce does not match",
                          nonce=True), id="nonce-mismatch"),
    pytest.param(OcspCase(lambda r, c: r.drop_nonce(), "revocation_response_invalid",
                          "did not return the request's nonce", nonce=True), id="nonce-dropped-nonce-required"),
    pytest.param(OcspCase(lambda r, c: r.drop_nonce()), id="nonce-dropped-nonce-off"),
    pytest.param(OcspCase(lambda r, c: r.sha1_signature(), "revocation_response_invalid",
                          "SHA-256 or stronger is required"), id="sha1-signed-response"),
    pytest.param(OcspCase(lambda r, c: r.oversized(100_000), "revocation_unavailable", "exceed the limit of 65536"),
                 id="oversized-declared"),
    pytest.param(OcspCase(lambda r, c: r.oversized(100_000, declare_length=False), "revocation_unavailable",
                          "exceeds the limit of 65536"), id="oversized-undeclared"),
    # a GET follows a redirect (a signed answer is as good from wherever it comes), but never to another scheme;
    # a POST follows none
    pytest.param(OcspCase(lambda r, c: r.redirect_to("https://127.0.0.1:1/ocsp"), "revocation_unavailable",
                          "redirect to another scheme (https://127.0.0.1:1/ocsp) refused"), id="redirect-to-https"),
    pytest.param(OcspCase(lambda r, c: r.redirect_to("ftp://127.0.0.1/ocsp"), "revocation_unavailable",
                          "redirect to another scheme (ftp://127.0.0.1/ocsp) refused"), id="redirect-to-ftp"),
    # a Location that is no URL (an IPv6 host without its closing bracket): a failed fetch, not a traceback
    pytest.param(OcspCase(lambda r, c: r.redirect_to("http://[2001:db8::1/ocsp"), "revocation_unavailable",
                          "redirect to an unusable location (http://[2001:db8::1/ocsp): Invalid IPv6 URL"),
                 id="redirect-to-no-url"),
    pytest.param(OcspCase(lambda r, c: r.redirect_to("https://127.0.0.1:1/ocsp"), "revocation_unavailable",
                          "HTTP 302 redirect not followed", http_method="post"), id="redirect-by-post"),
    pytest.param(OcspCase(lambda r, c: r.redirect_to("ftp://127.0.0.1/ocsp"), "revocation_unavailable",
                          "HTTP 302 redirect not followed", nonce=True), id="redirect-by-post-with-nonce"),
]


@pytest.mark.parametrize("case", OCSP_CASES)
def test_ocsp_answer(responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority,
                     cert: x509.Certificate, case: OcspCase) -> None:
    case.configure(responder, cert)
    url = case.url(responder)
    pol = policy([ca.certificate], ocsp_url=url, nonce=case.nonce, ocsp_timeout=case.timeout,
                 http_method=case.http_method)
    if case.reason is None:
        outcome = check(engine, cert, ca, pol)
        assert outcome.summary == "ocsp"
        assert outcome.soft_fail is None
        (status,) = outcome.checked
        assert (status.status, status.method, status.source, status.cached) == ("good", "ocsp", url, False)
        assert status.serial_hex == f"{cert.serial_number:x}"
        assert responder.hits == 1
        return
    exc = refused(engine, cert, ca, pol)
    assert exc.reason == case.reason
    assert case.detail in exc.detail
    assert url in exc.detail


@pytest.mark.parametrize("behaviour", [
    pytest.param(lambda r: r.http_error(500), id="http-500"),
    pytest.param(lambda r: r.redirect_to("https://127.0.0.1:1/"), id="redirect"),
    pytest.param(lambda r: r.oversized(100_000), id="oversized"),
])
def test_abandoned_answer_leaves_no_socket_open(responder: OcspResponder, engine: RevocationChecker,
                                                ca: CertificateAuthority, cert: x509.Certificate,
                                                behaviour: Callable[[OcspResponder], None]) -> None:
    """An answer the fetcher refuses is closed there and then, not left to the garbage collector."""
    behaviour(responder)
    assert refused(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url)).reason == \
        "revocation_unavailable"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_refused_connection_is_not_reported_as_a_timeout() -> None:
    """FetchError.timeout tells a slow peer from an unreachable one (broker/pki/revocation/http.py)."""
    with pytest.raises(FetchError) as caught:
        HttpFetcher().post(closed_port_url(), b"", "application/ocsp-request", "application/ocsp-response",
                           FetchLimits(1, 1, 1024))
    assert "Connection refused" in str(caught.value)
    assert caught.value.timeout is False
    assert "timed out" not in str(caught.value)


def test_slow_peer_is_reported_as_a_timeout(responder: OcspResponder) -> None:
    responder.slow(3)
    with pytest.raises(FetchError) as caught:
        HttpFetcher().post(responder.url, b"", "application/ocsp-request", "application/ocsp-response",
                           FetchLimits(1, 0.3, 1024))
    assert caught.value.timeout is True


def test_a_fetchers_timeout_cap_bounds_every_fetch(responder: OcspResponder) -> None:
    """readiness.timeout ("per network check") bounds a fetch whose own limits allow 30 s."""
    responder.slow(3)
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        HttpFetcher(max_timeout=0.3).post(responder.url, b"", "application/ocsp-request",
                                          "application/ocsp-response", FetchLimits(30, 30, 1024))
    assert caught.value.timeout is True
    assert time.monotonic() - started < 1.5


def test_revoked_names_the_revocation_date(responder: OcspResponder, engine: RevocationChecker,
                                           ca: CertificateAuthority, cert: x509.Certificate) -> None:
    _revoked(responder, cert)
    exc = refused(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
    assert exc.reason == "revoked"
    assert dict(exc.params) == {"revocation_date": (NOW - 2 * DAY).date().isoformat()}
    assert "key_compromise" in exc.detail


def test_slow_responder_is_given_up_after_the_configured_timeout(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority,
        cert: x509.Certificate) -> None:
    responder.slow(5)
    started = time.monotonic()
    exc = refused(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url, ocsp_timeout=0.5))
    elapsed = time.monotonic() - started
    assert exc.reason == "revocation_unavailable"
    assert elapsed < 0.5 + 1


def test_a_slow_name_resolution_is_given_up_after_the_configured_timeout(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority, cert: x509.Certificate,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ocsp.timeout bounds the whole fetch, the responder's name resolution included (a resolver waiting on an
    unanswering DNS server; a real delay in ``socket.getaddrinfo``, which urllib3 and the fetcher call)."""
    resolve_slowly(monkeypatch, "ocsp.slow-resolver.test", 5)
    url = responder.url.replace("127.0.0.1", "ocsp.slow-resolver.test")
    started = time.monotonic()
    exc = refused(engine, cert, ca, policy([ca.certificate], ocsp_url=url, ocsp_timeout=0.5))
    elapsed = time.monotonic() - started
    assert exc.reason == "revocation_unavailable"
    assert "timed out" in exc.detail
    assert elapsed < 0.5 + 2.0  # waiting for the resolver: 5 s


def test_good_answer_is_valid_until_its_next_update(responder: OcspResponder, engine: RevocationChecker,
                                                    ca: CertificateAuthority, cert: x509.Certificate) -> None:
    responder.validity = 10 * MINUTE
    outcome = check(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
    assert outcome.valid_until == NOW + 10 * MINUTE
    assert outcome.checked[0].this_update == NOW - MINUTE


def test_valid_until_is_capped_by_max_cache_time(responder: OcspResponder, engine: RevocationChecker,
                                                 ca: CertificateAuthority, cert: x509.Certificate) -> None:
    responder.validity = DAY
    outcome = check(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url, max_cache_time=600))
    assert outcome.valid_until == NOW + 10 * MINUTE


def test_responder_from_the_certificates_authority_information_access(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority) -> None:
    pointed = leaf(ca, ocsp_url=responder.url).certificate
    outcome = check(engine, pointed, ca, policy([ca.certificate]))
    assert [(c.method, c.source) for c in outcome.checked] == [("ocsp", responder.url)]
    assert [r.serial_number for r in responder.requests] == [pointed.serial_number]


# RFC 5280 §4.2.2.1: the AIA's OCSP responders are alternatives; the next is asked when one gives no usable answer

def _second_of_two(first: Callable[[OcspResponder], str]) -> Callable[[OcspResponder, CertificateAuthority],
                                                                     x509.Certificate]:
    def make(responder: OcspResponder, ca: CertificateAuthority) -> x509.Certificate:
        second = x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                        x509.UniformResourceIdentifier(responder.url))
        return with_pointers(leaf(ca).certificate, ca.key, ocsp_url=first(responder), access=[second])
    return make


@pytest.mark.parametrize(("configure", "reason", "asked"), [
    pytest.param(lambda other, c: None, None, 0, id="first-says-good"),
    pytest.param(lambda other, c: other.garbage(), None, 1, id="first-answers-garbage"),
    pytest.param(lambda other, c: other.http_error(503), None, 1, id="first-answers-http-503"),
    pytest.param(lambda other, c: other.stale(), None, 1, id="first-answers-stale"),
    pytest.param(lambda other, c: other.sign_with_unrelated_key(), None, 1, id="first-signed-by-unrelated-key"),
    pytest.param(_revoked, "revoked", 0, id="first-says-revoked"),
])
def test_the_next_responder_of_the_authority_information_access_is_asked(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority,
        configure: Callable[[OcspResponder, x509.Certificate], object], reason: str | None, asked: int) -> None:
    with OcspResponder(ca, now=NOW) as other:
        cert = _second_of_two(lambda r: other.url)(responder, ca)
        configure(other, cert)
        if reason is None:
            outcome = check(engine, cert, ca, policy([ca.certificate]))
            answered = responder.url if asked else other.url
            assert [(c.method, c.status, c.source) for c in outcome.checked] == [("ocsp", "good", answered)]
        else:
            assert refused(engine, cert, ca, policy([ca.certificate])).reason == reason
    assert len(responder.requests) == asked


def test_a_responder_down_is_followed_by_the_next(responder: OcspResponder, engine: RevocationChecker,
                                                  ca: CertificateAuthority) -> None:
    cert = _second_of_two(lambda r: closed_port_url())(responder, ca)
    outcome = check(engine, cert, ca, policy([ca.certificate]))
    assert [(c.status, c.source) for c in outcome.checked] == [("good", responder.url)]


def test_every_responder_failing_names_each(engine: RevocationChecker, ca: CertificateAuthority) -> None:
    with OcspResponder(ca, now=NOW) as other:
        other.garbage()
        first = closed_port_url()
        cert = with_pointers(leaf(ca).certificate, ca.key, ocsp_url=first, access=[x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(other.url))])
        exc = refused(engine, cert, ca, policy([ca.certificate]))
    assert exc.reason == "revocation_response_invalid"  # the most telling of the two
    assert first in exc.detail
    assert other.url in exc.detail


def test_the_responders_share_one_timeout(responder: OcspResponder, engine: RevocationChecker,
                                          ca: CertificateAuthority) -> None:
    with OcspResponder(ca, now=NOW) as other:
        other.slow(5)
        cert = _second_of_two(lambda r: other.url)(responder, ca)
        started = time.monotonic()
        exc = refused(engine, cert, ca, policy([ca.certificate], ocsp_timeout=0.5))
        elapsed = time.monotonic() - started
    assert exc.reason == "revocation_unavailable"
    assert "ocsp.timeout reached" in exc.detail
    assert responder.requests == []
    assert elapsed < 0.5 + 1


def test_certificate_without_responder_is_unavailable(engine: RevocationChecker, ca: CertificateAuthority,
                                                      cert: x509.Certificate) -> None:
    exc = refused(engine, cert, ca, policy([ca.certificate]))
    assert exc.reason == "revocation_unavailable"
    assert "no OCSP responder" in exc.detail


def test_sha256_cert_id_is_understood_by_the_responder(responder: OcspResponder, engine: RevocationChecker,
                                                       ca: CertificateAuthority, cert: x509.Certificate) -> None:
    outcome = check(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url, cert_id_hash="sha256"))
    assert outcome.summary == "ocsp"
    assert responder.requests[0].hash_algorithm.name == "sha256"


# --- a path with an issuing CA: CA certificates use their own AIA ------------------------------------


@pytest.fixture
def root() -> CertificateAuthority:
    return CertificateAuthority.root("Kommun A Root CA", NOW, organization="Kommun A")


def test_each_certificate_of_the_path_is_established_by_its_own_responder(
        root: CertificateAuthority, engine: RevocationChecker) -> None:
    with OcspResponder(root, now=NOW) as root_responder:
        issuing = issuing_under(root, ocsp_url=root_responder.url)
        cert = leaf(issuing).certificate
        with OcspResponder(issuing, now=NOW) as leaf_responder:
            pol = policy([root.certificate, issuing.certificate], ocsp_url=leaf_responder.url)
            engine.register(pol)
            outcome = engine.check((cert, issuing.certificate, root.certificate), pol)
        assert [r.serial_number for r in root_responder.requests] == [issuing.certificate.serial_number]
    assert outcome.summary == "ocsp"
    assert [c.source for c in outcome.checked] == [leaf_responder.url, root_responder.url]
    assert [c.serial_hex for c in outcome.checked] == [f"{cert.serial_number:x}",
                                                       f"{issuing.certificate.serial_number:x}"]


def test_configured_responder_is_for_users_only_a_ca_without_aia_is_unavailable(
        root: CertificateAuthority, engine: RevocationChecker) -> None:
    issuing = root.subordinate("Kommun A Issuing CA", organization="Kommun A")
    cert = leaf(issuing).certificate
    with OcspResponder(issuing, now=NOW) as leaf_responder:
        pol = policy([root.certificate, issuing.certificate], ocsp_url=leaf_responder.url)
        with pytest.raises(CertificateRejected) as caught:
            engine.check((cert, issuing.certificate, root.certificate), pol)
        assert leaf_responder.hits == 1
    assert caught.value.reason == "revocation_unavailable"
    assert "no OCSP responder for" in caught.value.detail
    assert issuing.certificate.subject.rfc4514_string() in caught.value.detail


def test_revoked_issuing_ca_is_revoked(root: CertificateAuthority, engine: RevocationChecker) -> None:
    with OcspResponder(root, now=NOW) as root_responder:
        issuing = issuing_under(root, ocsp_url=root_responder.url)
        root_responder.set_status(issuing.certificate, "revoked")
        cert = leaf(issuing).certificate
        with OcspResponder(issuing, now=NOW) as leaf_responder:
            pol = policy([root.certificate, issuing.certificate], ocsp_url=leaf_responder.url)
            with pytest.raises(CertificateRejected) as caught:
                engine.check((cert, issuing.certificate, root.certificate), pol)
    assert caught.value.reason == "revoked"
    assert f"serial {issuing.certificate.serial_number:x} revoked" in caught.value.detail


# --- method order, fallback, soft fail ---------------------------------------------------------------


def crl_leaf(ca: CertificateAuthority, files: FileServer, path: str = "/ca.crl", **kwargs: object) -> x509.Certificate:
    """A certificate whose CRL distribution point is ``path`` on ``files``."""
    return leaf(ca, crl_url=files.url(path), **kwargs).certificate  # type: ignore[arg-type]


def test_crl_answers_when_the_responder_is_down(engine: RevocationChecker, ca: CertificateAuthority,
                                                files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    files.put_crl("/ca.crl", ca.crl())
    outcome = check(engine, cert, ca, policy([ca.certificate], methods=("ocsp", "crl"), ocsp_url=closed_port_url()))
    assert outcome.summary == "crl"
    assert [(c.status, c.method, c.source) for c in outcome.checked] == [("good", "crl", files.url("/ca.crl"))]
    assert files.hits["/ca.crl"] == 1


def test_crl_first_does_not_ask_the_responder(responder: OcspResponder, engine: RevocationChecker,
                                              ca: CertificateAuthority, files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    files.put_crl("/ca.crl", ca.crl())
    outcome = check(engine, cert, ca, policy([ca.certificate], methods=("crl", "ocsp"), ocsp_url=responder.url))
    assert outcome.summary == "crl"
    assert responder.hits == 0


def test_ocsp_first_does_not_fetch_the_crl(responder: OcspResponder, engine: RevocationChecker,
                                           ca: CertificateAuthority, files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    files.put_crl("/ca.crl", ca.crl())
    outcome = check(engine, cert, ca, policy([ca.certificate], methods=("ocsp", "crl"), ocsp_url=responder.url))
    assert outcome.summary == "ocsp"
    assert files.hits["/ca.crl"] == 0


def test_ocsp_unknown_then_crl_good_is_good(responder: OcspResponder, engine: RevocationChecker,
                                            ca: CertificateAuthority, files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    responder.set_status(cert, "unknown")
    files.put_crl("/ca.crl", ca.crl())
    outcome = check(engine, cert, ca, policy([ca.certificate], methods=("ocsp", "crl"), ocsp_url=responder.url))
    assert [(c.status, c.method) for c in outcome.checked] == [("good", "crl")]
    assert responder.hits == 1


def test_revoked_by_ocsp_ends_the_check(responder: OcspResponder, engine: RevocationChecker,
                                        ca: CertificateAuthority, files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    responder.set_status(cert, "revoked")
    files.put_crl("/ca.crl", ca.crl())
    exc = refused(engine, cert, ca, policy([ca.certificate], methods=("ocsp", "crl"), ocsp_url=responder.url))
    assert exc.reason == "revoked"
    assert files.hits["/ca.crl"] == 0


def _crl_missing(files: FileServer, ca: CertificateAuthority) -> None:
    """Nothing at the distribution point (404)."""


def _crl_stale(files: FileServer, ca: CertificateAuthority) -> None:
    files.put_crl("/ca.crl", ca.crl(this_update=NOW - 8 * DAY, next_update=NOW - DAY))


@pytest.mark.parametrize(("ocsp_behaviour", "crl_setup", "reason"), [
    pytest.param(lambda r, c: r.set_status(c, "unknown"), _crl_missing, "revocation_unknown",
                 id="unknown-beats-unavailable"),
    pytest.param(lambda r, c: r.garbage(), _crl_missing, "revocation_response_invalid",
                 id="invalid-beats-unavailable"),
    pytest.param(lambda r, c: r.garbage(), _crl_stale, "revocation_response_invalid", id="invalid-beats-stale"),
    pytest.param(lambda r, c: r.http_error(500), _crl_stale, "revocation_stale", id="stale-beats-unavailable"),
    pytest.param(lambda r, c: r.http_error(500), _crl_missing, "revocation_unavailable", id="both-unavailable"),
])
@pytest.mark.parametrize("methods", [pytest.param(("ocsp", "crl"), id="ocsp-first"),
                                     pytest.param(("crl", "ocsp"), id="crl-first")])
def test_when_every_method_fails_the_most_telling_reason_is_given(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority, files: FileServer,
        ocsp_behaviour: Callable[[OcspResponder, x509.Certificate], None],
        crl_setup: Callable[[FileServer, CertificateAuthority], None], reason: str,
        methods: tuple[str, str]) -> None:
    cert = crl_leaf(ca, files)
    ocsp_behaviour(responder, cert)
    crl_setup(files, ca)
    exc = refused(engine, cert, ca, policy([ca.certificate], methods=methods,  # type: ignore[arg-type]
                                           ocsp_url=responder.url))
    assert exc.reason == reason
    assert "ocsp: " in exc.detail
    assert "crl: " in exc.detail


def test_soft_fail_lets_the_check_through_with_the_reason(engine: RevocationChecker, ca: CertificateAuthority,
                                                          cert: x509.Certificate) -> None:
    pol = policy([ca.certificate], ocsp_url=closed_port_url(), failure="soft_fail")
    outcome = check(engine, cert, ca, pol)
    assert outcome.soft_fail is not None
    assert outcome.soft_fail.reason == "revocation_unavailable"
    assert outcome.summary == "soft_fail"
    assert outcome.checked == ()
    assert outcome.valid_until is not None
    assert NOW < outcome.valid_until <= NOW + HOUR  # looked at again soon


@pytest.mark.parametrize("methods", [pytest.param(("ocsp",), id="ocsp"), pytest.param(("ocsp", "crl"), id="ocsp-crl")])
def test_revoked_is_never_soft_failed(responder: OcspResponder, engine: RevocationChecker,
                                      ca: CertificateAuthority, files: FileServer,
                                      methods: tuple[str, ...]) -> None:
    cert = crl_leaf(ca, files)
    responder.set_status(cert, "revoked")
    pol = policy([ca.certificate], methods=methods, ocsp_url=responder.url, failure="soft_fail")  # type: ignore[arg-type]
    assert refused(engine, cert, ca, pol).reason == "revoked"


@pytest.mark.parametrize("methods", [pytest.param(("ocsp",), id="ocsp"), pytest.param(("ocsp", "crl"), id="ocsp-crl")])
def test_unknown_is_never_soft_failed(engine: RevocationChecker, ca: CertificateAuthority, files: FileServer,
                                      methods: tuple[str, ...]) -> None:
    """RFC 6960 §2.2: "unknown" is the responder's definite answer that it does not know the serial (a card its
    CA may never have issued), not an outage: soft fail covers only sources that do not answer."""
    cert = crl_leaf(ca, files, "/missing.crl")
    with OcspResponder(ca, now=NOW, default="unknown") as responder:
        pol = policy([ca.certificate], methods=methods, ocsp_url=responder.url, failure="soft_fail")  # type: ignore[arg-type]
        assert refused(engine, cert, ca, pol).reason == "revocation_unknown"


def test_an_unknown_answer_is_held_a_minute_not_until_its_next_update(
        responder: OcspResponder, clock: FixedClock, ca: CertificateAuthority, cert: x509.Certificate) -> None:
    """A card issued minutes ago that its CA's responder does not know yet (RFC 6960 §2.2 "unknown") is refused; once
    the responder knows it, the card logs in within a minute, not only when the "unknown" (cached up to
    max_cache_time, an hour by default) has run out. Within the minute, retries are answered from the cache."""
    responder.set_status(cert, "unknown")
    pol = policy([ca.certificate], ocsp_url=responder.url)
    engine = checker(clock)
    try:
        assert refused(engine, cert, ca, pol).reason == "revocation_unknown"
        clock.set(NOW + dt.timedelta(seconds=30))
        assert refused(engine, cert, ca, pol).reason == "revocation_unknown"
        assert responder.hits == 1
        responder.set_status(cert, "good")
        clock.set(NOW + 2 * MINUTE)
        responder.now = clock.now()
        assert check(engine, cert, ca, pol).checked[0].status == "good"
        assert responder.hits == 2
    finally:
        engine.close()


@pytest.mark.parametrize(("signer_revoked", "reason"), [pytest.param(False, None, id="crl-signer-good"),
                                                        pytest.param(True, "revocation_unavailable",
                                                                     id="crl-signer-revoked")])
def test_a_separate_crl_signing_keys_status_comes_from_its_own_distribution_point(
        root: CertificateAuthority, engine: RevocationChecker, files: FileServer, signer_revoked: bool,
        reason: str | None) -> None:
    """RFC 5280 §6.3.3 (f), with nothing but distribution points: the issuing CA's CRL, signed by a separate key
    whose certificate the root issued, counts once that certificate's own status is established from the CRL its
    own distribution point names (PKITS 4.4.19, 4.4.21)."""
    issuing = issuing_under(root, crl_url=files.url("/root.crl"))
    signer = crl_signing_key(issuing)
    signer = replace(signer, certificate=with_pointers(signer.certificate, root.key, crl_url=files.url("/root.crl")))
    cert = leaf(issuing, crl_url=files.url("/issuing.crl")).certificate
    files.put_crl("/issuing.crl", revoking(signer, cert).crl() if signer_revoked else signer.crl())
    files.put_crl("/root.crl", (revoking(root, signer.certificate) if signer_revoked else root).crl())
    pol = policy([root.certificate, issuing.certificate, signer.certificate], methods=("crl",))
    engine.register(pol)
    path = (cert, issuing.certificate, root.certificate)
    if reason is None:
        outcome = engine.check(path, pol)
        assert [(c.status, c.source) for c in outcome.checked] == [("good", files.url("/issuing.crl")),
                                                                   ("good", files.url("/root.crl"))]
        return
    with pytest.raises(CertificateRejected) as caught:
        engine.check(path, pol)
    assert caught.value.reason == reason
    assert "the CRL signing certificate" in caught.value.detail
    assert "is on the CRL" in caught.value.detail


@pytest.mark.parametrize("lists_card", [pytest.param(True, id="own-key-crl-lists-card"),
                                        pytest.param(False, id="own-key-crl-good")])
def test_another_keys_crl_at_hand_does_not_spare_asking_for_the_issuing_keys_own(
        root: CertificateAuthority, engine: RevocationChecker, files: FileServer, tmp_path: Path,
        lists_card: bool) -> None:
    """A CA that keeps one CRL per key after a key rollover, each for the certificates of that key: the old key's
    CRL (a configured file, usable, not listing the card) counts for the CA's certificates (RFC 5280 §6.3.3 (f)),
    but the new key's CRL, at the card's distribution point, is still fetched and its revocation refuses."""
    old = issuing_under(root)
    new = issuing_under(root)
    cert = leaf(new, crl_url=files.url("/new-key.crl")).certificate
    files.put_crl("/new-key.crl", (revoking(new, cert) if lists_card else new).crl())
    path = tmp_path / "old-key.crl"
    old_crl = old.crl()
    path.write_bytes(old_crl.public_bytes(serialization.Encoding.PEM))
    pol = policy([root.certificate, old.certificate, new.certificate], methods=("crl",), crl_files=[(path, old_crl)],
                 crl_urls=[files.url("/root.crl")])
    files.put_crl("/root.crl", root.crl())
    engine.register(pol)
    chain = (cert, new.certificate, root.certificate)
    if lists_card:
        with pytest.raises(CertificateRejected) as caught:
            engine.check(chain, pol)
        assert caught.value.reason == "revoked"
    else:
        outcome = engine.check(chain, pol)
        assert [c.status for c in outcome.checked] == ["good", "good"]
    assert files.hits["/new-key.crl"] == 1


def test_soft_fail_on_the_card_still_checks_the_ca_above_it(root: CertificateAuthority, engine: RevocationChecker,
                                                           files: FileServer) -> None:
    """RFC 5280 §6.3: every certificate of the path. A revoked (compromised) issuing CA minting cards without
    a distribution point or responder must not get them through a soft-fail policy."""
    issuing = issuing_under(root, crl_url=files.url("/root.crl"))
    root.revoke(issuing.certificate, NOW - DAY)
    files.put_crl("/root.crl", root.crl())
    cert = leaf(issuing).certificate  # no AIA, no CDP: its own status cannot be established
    pol = policy([root.certificate, issuing.certificate], methods=("ocsp", "crl"), failure="soft_fail")
    engine.register(pol)
    with pytest.raises(CertificateRejected) as caught:
        engine.check((cert, issuing.certificate, root.certificate), pol)
    assert caught.value.reason == "revoked"
    assert issuing.certificate.subject.rfc4514_string() in caught.value.detail


def test_soft_fail_on_the_card_keeps_the_cas_answer(root: CertificateAuthority, engine: RevocationChecker,
                                                    files: FileServer) -> None:
    issuing = issuing_under(root, crl_url=files.url("/root.crl"))
    files.put_crl("/root.crl", root.crl(next_update=NOW + 2 * MINUTE))
    cert = leaf(issuing, crl_url=files.url("/missing.crl")).certificate
    pol = policy([root.certificate, issuing.certificate], methods=("crl",), failure="soft_fail")
    engine.register(pol)
    outcome = engine.check((cert, issuing.certificate, root.certificate), pol)
    assert outcome.soft_fail is not None
    assert outcome.soft_fail.reason == "revocation_unavailable"
    assert [c.serial_hex for c in outcome.checked] == [f"{issuing.certificate.serial_number:x}"]
    assert outcome.valid_until == NOW + 2 * MINUTE  # the earlier of the CA's CRL and the soft fail's look again


def test_answer_without_next_update_holds_a_session_only_while_it_is_fresh(engine: RevocationChecker,
                                                                           ca: CertificateAuthority,
                                                                           cert: x509.Certificate) -> None:
    with OcspResponder(ca, now=NOW) as responder:
        responder.no_next_update()  # thisUpdate NOW - 1 min: fresh for max_age_without_next_update (5 min)
        outcome = check(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
    assert outcome.valid_until == NOW - MINUTE + 5 * MINUTE


def test_cached_answer_holds_a_session_only_until_the_cache_entry_expires(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority, cert: x509.Certificate,
        clock: FixedClock) -> None:
    """max_cache_time counts from the fetch: a login just before the cached answer expires must not be told
    to rely on it for another max_cache_time."""
    responder.validity = 7 * DAY
    pol = policy([ca.certificate], ocsp_url=responder.url, max_cache_time=3600)
    assert check(engine, cert, ca, pol).valid_until == NOW + HOUR
    clock.set(NOW + 59 * MINUTE)
    later = check(engine, cert, ca, pol)
    assert later.checked[0].cached
    assert later.valid_until == NOW + HOUR
    assert responder.hits == 1


@pytest.mark.parametrize(("step", "asked_again"), [
    pytest.param(MINUTE, False, id="a-minute-within-the-clock-skew"),
    pytest.param(HOUR, True, id="an-hour"),
])
@pytest.mark.parametrize("with_shared_store", [pytest.param(False, id="in-process"),
                                               pytest.param(True, id="with-shared-store")])
def test_an_answer_fetched_before_the_clock_was_stepped_back_is_cached_no_longer_than_max_cache_time(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate, clock: FixedClock,
        shared: RedisStore, step: dt.timedelta, asked_again: bool, with_shared_store: bool) -> None:
    """max_cache_time counts from the fetch. An answer fetched before the clock was stepped back (NTP correcting a
    clock that ran ahead) has a fetch time in the future of the clock now: counted from it, the answer was relied on
    for max_cache_time plus the size of the step. Beyond the clock skew such an answer is asked for again."""
    responder.validity = 7 * DAY
    pol = policy([ca.certificate], ocsp_url=responder.url, max_cache_time=3600)
    engine = checker(clock, shared=shared if with_shared_store else None)
    try:
        assert check(engine, cert, ca, pol).valid_until == NOW + HOUR
        clock.set(NOW - step)
        responder.now = clock.now()
        outcome = check(engine, cert, ca, pol)
        assert outcome.checked[0].cached is not asked_again
        assert responder.hits == (2 if asked_again else 1)
        assert outcome.valid_until == NOW - step + HOUR
    finally:
        engine.close()


def test_a_path_holds_until_its_first_answer_expires(root: CertificateAuthority, engine: RevocationChecker,
                                                    files: FileServer) -> None:
    issuing = issuing_under(root, crl_url=files.url("/root.crl"))
    files.put_crl("/root.crl", root.crl(next_update=NOW + 20 * MINUTE))
    with OcspResponder(issuing, now=NOW, validity=DAY) as responder:
        cert = leaf(issuing).certificate
        pol = policy([root.certificate, issuing.certificate], methods=("ocsp", "crl"), ocsp_url=responder.url)
        engine.register(pol)
        outcome = engine.check((cert, issuing.certificate, root.certificate), pol)
    assert [c.method for c in outcome.checked] == ["ocsp", "crl"]
    assert outcome.valid_until == NOW + 20 * MINUTE


@pytest.mark.parametrize(("nocheck", "listed", "expect_refused"), [
    pytest.param(False, True, True, id="revoked-delegate"),
    pytest.param(False, False, False, id="delegate-in-good-standing"),
    pytest.param(True, True, False, id="revoked-delegate-exempt-by-ocsp-nocheck"),
])
def test_a_delegated_responder_a_held_crl_lists_signs_nothing(
        engine: RevocationChecker, tmp_path: Path, nocheck: bool, listed: bool, expect_refused: bool) -> None:
    """RFC 6960 §4.2.2.2.1: without id-pkix-ocsp-nocheck a delegate's own status is the client's policy to
    check; the broker asks the CA's CRL it holds (a compromised responder key would otherwise vouch for any card)."""
    ca = person_ca()
    cert = leaf(ca).certificate
    with OcspResponder(ca, now=NOW) as responder:
        delegate = responder.use_delegate()
        if nocheck:
            responder.delegate = Issued(reissue(delegate.certificate, ca, extra=[x509.OCSPNoCheck()]), delegate.key)
        if listed:
            ca.revoke(responder.delegate.certificate, NOW - DAY)
        crl = ca.crl()
        path = tmp_path / "ca.crl"
        path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        pol = policy([ca.certificate], methods=("ocsp",), ocsp_url=responder.url, crl_files=[(path, crl)])
        if expect_refused:
            exc = refused(engine, cert, ca, pol)
            assert exc.reason == "revocation_response_invalid"
            assert "the delegated responder's certificate" in exc.detail
            assert "is revoked" in exc.detail
        else:
            assert check(engine, cert, ca, pol).summary == "ocsp"


def test_the_delegates_status_fetches_nothing_on_the_login_path(engine: RevocationChecker, files: FileServer) -> None:
    """Only CRLs held already are asked: an OCSP-only municipality's login must not wait for a CRL download (the
    delegate's distribution point, a configured URL not fetched yet)."""
    ca = person_ca()
    cert = leaf(ca).certificate
    with OcspResponder(ca, now=NOW) as responder:
        delegate = responder.use_delegate()
        responder.delegate = Issued(reissue(delegate.certificate, ca, extra=[
            x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(files.url("/dp.crl"))],
                                                               None, None, None)])]), delegate.key)
        ca.revoke(responder.delegate.certificate, NOW - DAY)
        files.put_crl("/dp.crl", ca.crl())
        files.put_crl("/ca.crl", ca.crl())
        pol = policy([ca.certificate], methods=("ocsp",), ocsp_url=responder.url, crl_urls=[files.url("/ca.crl")])
        assert check(engine, cert, ca, pol).summary == "ocsp"  # no CRL held: the answer stands
    assert sum(files.hits.values()) == 0
    assert engine.crls.refresh_due() == 1  # the configured URL only, in the background; not the delegate's point


# --- caching -----------------------------------------------------------------------------------------


def test_two_checks_ask_the_responder_once(responder: OcspResponder, engine: RevocationChecker,
                                           ca: CertificateAuthority, cert: x509.Certificate) -> None:
    pol = policy([ca.certificate], ocsp_url=responder.url)
    first = check(engine, cert, ca, pol)
    second = check(engine, cert, ca, pol)
    assert responder.hits == 1
    assert (first.checked[0].cached, second.checked[0].cached) == (False, True)
    assert second.valid_until == first.valid_until


def test_cached_revoked_answer_stays_revoked(responder: OcspResponder, engine: RevocationChecker,
                                            ca: CertificateAuthority, cert: x509.Certificate) -> None:
    responder.set_status(cert, "revoked")
    pol = policy([ca.certificate], ocsp_url=responder.url)
    assert refused(engine, cert, ca, pol).reason == "revoked"
    assert refused(engine, cert, ca, pol).reason == "revoked"
    assert responder.hits == 1


@pytest.mark.parametrize("afterwards", [
    pytest.param(lambda r, c: r.http_error(503), id="responder-down-under-soft-fail"),
    pytest.param(lambda r, c: r.set_status(c, "good"), id="responder-says-good"),
])
def test_a_revocation_answered_before_stays_final_once_the_answer_has_expired(
        responder: OcspResponder, clock: FixedClock, engine: RevocationChecker, ca: CertificateAuthority,
        cert: x509.Certificate, afterwards: Callable[[OcspResponder, x509.Certificate], None]) -> None:
    """RFC 5280 §3.3: revocation is final (only certificateHold may be lifted). An answer "revoked" held from
    before refuses the card after its nextUpdate too, as a CRL held past its nextUpdate does: a soft-fail policy
    must not let a card it knows is revoked through because the responder is down now (docs/revocation.md)."""
    _revoked(responder, cert)
    pol = policy([ca.certificate], ocsp_url=responder.url, failure="soft_fail")
    assert refused(engine, cert, ca, pol).reason == "revoked"
    clock.set(NOW + 2 * HOUR)  # past the answer's nextUpdate and the cache time
    responder.now = clock.now()
    afterwards(responder, cert)
    exc = refused(engine, cert, ca, pol)
    assert exc.reason == "revoked"
    assert dict(exc.params) == {"revocation_date": (NOW - 2 * DAY).date().isoformat()}


def test_cached_answer_of_a_ca_sharing_the_key_under_another_name_does_not_answer(engine: RevocationChecker) -> None:
    # a CertID is the issuer's name and key (RFC 6960 §4.1.1) and a serial is unique per issuer name (RFC 5280
    # §4.1.2.2): a "good" remembered for serial S of a renamed re-issue with the same key must not answer for
    # serial S of the first CA, whose responder says revoked
    h = Hierarchy.build(NOW)
    renamed = h.renamed_issuing()
    serial = 0x1234567890
    with OcspResponder(h.issuing, now=NOW) as first_responder, OcspResponder(renamed, now=NOW) as renamed_responder:
        first = leaf(h.issuing, ocsp_url=first_responder.url, serial=serial).certificate
        other = leaf(renamed, ocsp_url=renamed_responder.url, serial=serial).certificate
        first_responder.set_status(first, "revoked")
        pol = policy([h.root.certificate, h.issuing.certificate, renamed.certificate])
        engine.register(pol)
        assert engine.check((other, renamed.certificate), pol).summary == "ocsp"
        with pytest.raises(CertificateRejected) as caught:
            engine.check((first, h.issuing.certificate), pol)
        assert caught.value.reason == "revoked"
        assert (first_responder.hits, renamed_responder.hits) == (1, 1)


def test_failures_are_not_cached_as_answers(responder: OcspResponder, clock: FixedClock,
                                            engine: RevocationChecker, ca: CertificateAuthority,
                                            cert: x509.Certificate) -> None:
    pol = policy([ca.certificate], ocsp_url=responder.url)
    responder.garbage()
    assert refused(engine, cert, ca, pol).reason == "revocation_response_invalid"
    responder.reset()
    clock.advance(dt.timedelta(seconds=10))  # past the circuit breaker's retry_after
    assert check(engine, cert, ca, pol).summary == "ocsp"
    # the garbage answered a GET, so POST was asked too (and is asked from then on); the failure kept nothing
    assert responder.methods_seen == ["GET", "POST", "POST"]


@pytest.fixture
def shared(redis_url: str, redis_prefix: str) -> RedisStore:
    return RedisStore(redis_url, prefix=redis_prefix)


@pytest.fixture
def instances(clock: FixedClock, redis_url: str, redis_prefix: str) -> Iterator[tuple[RevocationChecker, ...]]:
    """Two broker instances: each its own process state, one Redis (same prefix) between them."""
    pair = tuple(checker(clock, shared=RedisStore(redis_url, prefix=redis_prefix)) for _ in range(2))
    yield pair
    for c in pair:
        c.close()


def test_second_instance_uses_the_shared_answer(responder: OcspResponder, instances: tuple[RevocationChecker, ...],
                                                ca: CertificateAuthority, cert: x509.Certificate) -> None:
    first, second = instances
    pol = policy([ca.certificate], ocsp_url=responder.url)
    check(first, cert, ca, pol)
    outcome = check(second, cert, ca, pol)
    assert responder.hits == 1
    assert [(c.status, c.source, c.cached) for c in outcome.checked] == [("good", responder.url, True)]


def test_second_instance_answers_from_the_shared_copy_while_the_responder_is_down(
        ca: CertificateAuthority, cert: x509.Certificate, instances: tuple[RevocationChecker, ...]) -> None:
    first, second = instances
    with OcspResponder(ca, now=NOW) as r:
        pol = policy([ca.certificate], ocsp_url=r.url)
        check(first, cert, ca, pol)
    assert check(second, cert, ca, pol).summary == "ocsp"


@dataclass(frozen=True)
class SharedFinality:
    """The answer the first instance fetched, what the responder does afterwards, and what the second instance,
    which never held the answer itself, concludes two hours on (past the answer's nextUpdate and cache time)."""

    reason: x509.ReasonFlags
    afterwards: Callable[[OcspResponder, x509.Certificate], object]
    outcome: str                                  # revoked, or "soft_fail" (the responder down, under soft fail)
    responder_hits: int                           # 1: the second instance took the shared copy
    nonce: bool = False
    signer: Callable[[OcspResponder], object] = lambda r: None


SHARED_FINALITY = [
    pytest.param(SharedFinality(x509.ReasonFlags.key_compromise, lambda r, c: r.http_error(503), "revoked", 1),
                 id="revoked-responder-down-under-soft-fail"),
    pytest.param(SharedFinality(x509.ReasonFlags.key_compromise, lambda r, c: r.set_status(c, "good"), "revoked", 1),
                 id="revoked-responder-says-good"),
    pytest.param(SharedFinality(x509.ReasonFlags.unspecified, lambda r, c: r.http_error(503), "revoked", 1),
                 id="revoked-without-a-reason-code"),
    # a nonce proves an answer fresh; a revocation for good needs no freshness
    pytest.param(SharedFinality(x509.ReasonFlags.key_compromise, lambda r, c: r.http_error(503), "revoked", 1,
                                nonce=True), id="revoked-under-a-nonce-policy"),
    # verified as of when it was fetched, as its fetcher did: not refused for a responder certificate ended since
    pytest.param(SharedFinality(x509.ReasonFlags.key_compromise, lambda r, c: r.http_error(503), "revoked", 1,
                                signer=lambda r: r.use_delegate(valid_until=NOW + HOUR)),
                 id="revoked-by-a-delegate-expired-since"),
    # a hold may have been lifted since: stale, asked again (the responder down now: soft fail, as configured)
    pytest.param(SharedFinality(x509.ReasonFlags.certificate_hold, lambda r, c: r.http_error(503), "soft_fail", 2),
                 id="on-hold-is-not-final"),
]


@pytest.mark.parametrize("case", SHARED_FINALITY)
def test_a_revocation_shared_by_another_instance_stays_final_once_the_answer_has_expired(
        responder: OcspResponder, clock: FixedClock, ca: CertificateAuthority, cert: x509.Certificate,
        instances: tuple[RevocationChecker, ...], redis_url: str, redis_prefix: str, case: SharedFinality) -> None:
    """RFC 5280 §3.3: revocation is final. The shared copy of an answer "revoked" (not on hold) outlives the answer's
    freshness, until the certificate's own notAfter, and an instance that did not fetch it refuses the card from it as
    the fetching one does: not a soft fail because the responder is down now, not a later "good"."""
    first, second = instances
    case.signer(responder)
    responder.set_status(cert, "revoked", revoked_at=NOW - 2 * DAY, reason=case.reason)
    pol = policy([ca.certificate], ocsp_url=responder.url, failure="soft_fail", nonce=case.nonce)
    assert refused(first, cert, ca, pol).reason == "revoked"  # on hold too, while the answer is fresh
    ttl = redis.Redis.from_url(redis_url).ttl(shared_ocsp_key(redis_url, redis_prefix, cert))
    if case.outcome == "revoked":
        assert ttl >= (cert.not_valid_after_utc - NOW).total_seconds() - 60  # kept while the card can be shown
    else:
        assert ttl <= HOUR.total_seconds()  # until the answer's freshness ends
    clock.set(NOW + 2 * HOUR)
    responder.now = clock.now()
    case.afterwards(responder, cert)

    if case.outcome == "revoked":
        exc = refused(second, cert, ca, pol)
        assert exc.reason == "revoked"
        assert dict(exc.params) == {"revocation_date": (NOW - 2 * DAY).date().isoformat()}
    else:
        outcome = check(second, cert, ca, pol)
        assert outcome.soft_fail is not None
        assert outcome.soft_fail.reason == "revocation_unavailable"
    assert responder.hits == case.responder_hits


def test_a_later_good_fetched_elsewhere_does_not_replace_a_shared_revocation(
        responder: OcspResponder, clock: FixedClock, ca: CertificateAuthority, cert: x509.Certificate,
        redis_url: str, redis_prefix: str) -> None:
    """RFC 5280 §3.3: revocation is final. An instance holding a "good" from before the revocation refreshes it in
    the background from a responder that says "good" again (a replica behind, a restored database): the shared
    revocation another instance fetched in between still refuses the card on every instance, also once every
    answer involved is stale."""
    responder.validity = 10 * MINUTE
    holder, fetcher, later = (checker(clock, shared=RedisStore(redis_url, prefix=redis_prefix), refresh_interval=30)
                              for _ in range(3))
    try:
        relaxed = policy([ca.certificate], ocsp_url=responder.url)
        strict = policy([ca.certificate], ocsp_url=responder.url, max_cache_time=60)  # a municipality sharing the CA
        assert check(holder, cert, ca, relaxed).checked[0].status == "good"
        clock.set(NOW + 2 * MINUTE)  # the shared "good" no longer serves the strict policy
        responder.now = clock.now()
        responder.set_status(cert, "revoked", revoked_at=NOW + MINUTE, reason=x509.ReasonFlags.key_compromise)
        assert refused(fetcher, cert, ca, strict).reason == "revoked"
        responder.set_status(cert, "good")
        clock.set(NOW + 9 * MINUTE)  # the holder's "good" in its last fifth: refreshed in the background
        responder.now = clock.now()
        hits = responder.hits
        assert check(holder, cert, ca, relaxed).checked[0].cached
        deadline = time.monotonic() + 5
        while responder.hits == hits and time.monotonic() < deadline:
            time.sleep(0.02)
        assert responder.hits == hits + 1
        time.sleep(0.1)  # the refreshed answer written where it is written

        clock.set(NOW + 2 * HOUR)
        responder.now = clock.now()
        assert refused(later, cert, ca, relaxed).reason == "revoked"
    finally:
        for engine in (holder, fetcher, later):
            engine.close()


def test_a_shared_revocation_is_kept_no_longer_than_the_cap(
        responder: OcspResponder, ca: CertificateAuthority, instances: tuple[RevocationChecker, ...],
        redis_url: str, redis_prefix: str) -> None:
    """A certificate valid for decades (a test card, a misissued one) does not hold its entry for as long."""
    first, _ = instances
    long_lived = leaf(ca, valid_until=NOW + 50 * 365 * DAY).certificate
    _revoked(responder, long_lived)
    assert refused(first, long_lived, ca, policy([ca.certificate], ocsp_url=responder.url)).reason == "revoked"
    ttl = redis.Redis.from_url(redis_url).ttl(shared_ocsp_key(redis_url, redis_prefix, long_lived))
    assert 5 * 365 * DAY.total_seconds() <= ttl <= 6 * 366 * DAY.total_seconds()


def shared_ocsp_key(redis_url: str, redis_prefix: str, cert: x509.Certificate) -> str:
    """The Redis key that holds the shared OCSP response for ``cert`` (found, not computed): its latest answer's, or
    a revocation for good's, which is kept apart."""
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(match=redis_prefix + "ocsp:*", count=1000)]
    found = [k for k in keys if k.endswith((f":{cert.serial_number:x}", f":{cert.serial_number:x}:final"))]
    assert len(found) == 1, keys
    return str(found[0])


def _forged_revoked(ca: CertificateAuthority, cert: x509.Certificate, url: str) -> bytes:
    """A well-formed 'revoked' answer for ``cert``, signed by a key that is not the CA's."""
    with OcspResponder(ca, now=NOW) as forger:
        forger.sign_with_unrelated_key()
        forger.set_status(cert, "revoked")
        request = ocsp.load_der_ocsp_request(build_request(cert, ca.certificate, nonce=None, cert_id_hash="sha1"))
        der = forger.respond(request).public_bytes(serialization.Encoding.DER)
    return json.dumps({"der": der.hex(), "url": url, "fetched": NOW.isoformat()}).encode()


FETCHED = NOW.isoformat()  # a shared copy names when it was fetched (a copy without it is fetched anew)


def _entry(**fields: object) -> bytes:
    return json.dumps({"fetched": FETCHED, **fields}).encode()


TAMPERED = [
    pytest.param(lambda ca, cert, other, url: _entry(der="00ff" * 40, url=url), id="der-garbage"),
    pytest.param(lambda ca, cert, other, url: _entry(der="not hex", url=url), id="der-not-hex"),
    pytest.param(lambda ca, cert, other, url: _entry(url=url), id="der-missing"),
    pytest.param(lambda ca, cert, other, url: b"{not json", id="not-json"),
    pytest.param(lambda ca, cert, other, url: _entry(der=12345, url=url), id="der-not-a-string"),
    pytest.param(lambda ca, cert, other, url: json.dumps(["der", url]).encode(), id="json-array"),
    pytest.param(lambda ca, cert, other, url: other, id="answer-for-another-serial"),
    pytest.param(lambda ca, cert, other, url: _forged_revoked(ca, cert, url), id="revoked-signed-by-unrelated-key"),
    pytest.param(lambda ca, cert, other, url: _entry(der="00ff", url=url, fetched="2026-03-02T09:30:00"),
                 id="fetched-without-zone"),
    pytest.param(lambda ca, cert, other, url: _entry(der="00ff", url=url, fetched="soon"), id="fetched-not-a-time"),
]


@pytest.mark.parametrize("fetched", ["2026-03-02T09:30:00", "soon", None], ids=["without-zone", "not-a-time",
                                                                               "missing"])
def test_a_genuine_shared_answer_without_a_usable_fetch_time_is_fetched_anew(
        responder: OcspResponder, instances: tuple[RevocationChecker, ...], ca: CertificateAuthority,
        cert: x509.Certificate, redis_url: str, redis_prefix: str, fetched: str | None) -> None:
    """The fetch time bounds how long the answer serves (max_cache_time counts from it): without a usable one,
    even a genuine answer is not taken from the store."""
    first, second = instances
    pol = policy([ca.certificate], ocsp_url=responder.url)
    check(first, cert, ca, pol)
    client = redis.Redis.from_url(redis_url)
    key = shared_ocsp_key(redis_url, redis_prefix, cert)
    raw = client.get(key)
    assert isinstance(raw, bytes)
    stored = json.loads(raw)
    if fetched is None:
        del stored["fetched"]
    else:
        stored["fetched"] = fetched
    client.set(key, json.dumps(stored).encode(), px=600_000)

    outcome = check(second, cert, ca, pol)
    assert [(c.status, c.cached) for c in outcome.checked] == [("good", False)]
    assert responder.hits == 2


@pytest.mark.parametrize("tamper", TAMPERED)
def test_tampered_shared_entry_is_not_trusted(
        responder: OcspResponder, instances: tuple[RevocationChecker, ...], ca: CertificateAuthority,
        cert: x509.Certificate, redis_url: str, redis_prefix: str,
        tamper: Callable[[CertificateAuthority, x509.Certificate, bytes, str], bytes]) -> None:
    first, second = instances
    other = leaf(ca, common_name="Bo Berg").certificate
    pol = policy([ca.certificate], ocsp_url=responder.url)
    check(first, cert, ca, pol)
    check(first, other, ca, pol)
    client = redis.Redis.from_url(redis_url)
    key = shared_ocsp_key(redis_url, redis_prefix, cert)
    other_value = client.get(shared_ocsp_key(redis_url, redis_prefix, other))
    assert isinstance(other_value, bytes)
    client.set(key, tamper(ca, cert, other_value, responder.url), px=600_000)

    outcome = check(second, cert, ca, pol)
    assert [(c.status, c.cached) for c in outcome.checked] == [("good", False)]
    assert responder.hits == 3  # the second instance asked the responder itself


@pytest.mark.parametrize("raw", [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"[1, 2]", id="json-array"),
    pytest.param(b'"last_ok"', id="json-string"),
    pytest.param(b"\xff\xfe\x00", id="not-utf-8"),
])
def test_a_corrupted_responder_record_is_written_afresh(
        responder: OcspResponder, instances: tuple[RevocationChecker, ...], ca: CertificateAuthority,
        cert: x509.Certificate, redis_url: str, redis_prefix: str, raw: bytes) -> None:
    """The record of a responder's last success and failure (`broker revocation status`) is bookkeeping: a value in
    its place that is no such record (corrupted, written by something else) neither fails the login whose lookup it
    records nor the status read; it is replaced."""
    first, _ = instances
    client = redis.Redis.from_url(redis_url)
    client.set(redis_prefix + "ocsp-status:" + hashlib.sha256(responder.url.encode()).hexdigest()[:40], raw)
    assert first.ocsp_status(responder.url) is None

    outcome = check(first, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
    assert [(c.status, c.cached) for c in outcome.checked] == [("good", False)]
    assert first.ocsp_status(responder.url) == {"responder": responder.url, "issuer": ca.certificate.subject
                                                .rfc4514_string(), "last_ok": NOW.isoformat(),
                                                "last_ok_method": "GET"}


@dataclass(frozen=True)
class Expiry:
    validity: dt.timedelta
    max_cache_time: float
    expires: dt.timedelta     # after NOW


EXPIRIES = [
    pytest.param(Expiry(10 * MINUTE, 3600, 10 * MINUTE), id="next-update"),
    pytest.param(Expiry(DAY, 600, 10 * MINUTE), id="max-cache-time"),
]


@pytest.mark.parametrize("expiry", EXPIRIES)
@pytest.mark.parametrize("with_shared_store", [pytest.param(False, id="in-process"),
                                               pytest.param(True, id="with-shared-store")])
def test_cached_answer_expires(responder: OcspResponder, clock: FixedClock, ca: CertificateAuthority,
                               cert: x509.Certificate, shared: RedisStore, expiry: Expiry,
                               with_shared_store: bool) -> None:
    """The answer is reused up to one second before it expires, and asked for again once it has."""
    responder.validity = expiry.validity
    pol = policy([ca.certificate], ocsp_url=responder.url, max_cache_time=expiry.max_cache_time)
    engine = checker(clock, shared=shared if with_shared_store else None)
    try:
        check(engine, cert, ca, pol)
        clock.set(NOW + expiry.expires - SECOND)
        assert check(engine, cert, ca, pol).checked[0].cached
        assert responder.hits == 1

        clock.set(NOW + expiry.expires)
        responder.now = clock.now()
        responder.set_status(cert, "revoked")  # what the responder says now must be what counts
        with pytest.raises(CertificateRejected) as caught:
            check(engine, cert, ca, pol)
        assert caught.value.reason == "revoked"
        assert responder.hits == 2
    finally:
        engine.close()


def test_circuit_breaker_skips_a_failed_responder_for_retry_after(
        responder: OcspResponder, clock: FixedClock, engine: RevocationChecker, ca: CertificateAuthority,
        cert: x509.Certificate) -> None:
    pol = policy([ca.certificate], ocsp_url=responder.url)
    responder.http_error(500)
    assert refused(engine, cert, ca, pol).reason == "revocation_unavailable"
    assert responder.hits == 1

    responder.reset()
    clock.advance(9 * SECOND)
    exc = refused(engine, cert, ca, pol)
    assert exc.reason == "revocation_unavailable"
    assert "failed 9 s ago" in exc.detail
    assert "HTTP 500" in exc.detail
    assert responder.hits == 1  # not contacted

    clock.advance(SECOND)  # retry_after (10 s) has passed
    assert check(engine, cert, ca, pol).summary == "ocsp"
    assert responder.hits == 2


@pytest.mark.parametrize("step", [pytest.param(MINUTE, id="a_minute"), pytest.param(HOUR, id="an_hour")])
def test_circuit_breaker_asks_again_once_the_clock_is_stepped_back(
        responder: OcspResponder, clock: FixedClock, engine: RevocationChecker, ca: CertificateAuthority,
        cert: x509.Certificate, step: dt.timedelta) -> None:
    """A failure noted before the clock was stepped back (NTP correcting a clock that ran ahead) lies in the future
    of the clock now: the responder is asked again at once, not held down for the size of the step as well."""
    pol = policy([ca.certificate], ocsp_url=responder.url)
    responder.http_error(500)
    assert refused(engine, cert, ca, pol).reason == "revocation_unavailable"
    assert responder.hits == 1

    responder.reset()
    clock.set(NOW - step)
    responder.now = clock.now()
    assert check(engine, cert, ca, pol).summary == "ocsp"
    assert responder.hits == 2


def test_circuit_breaker_falls_through_to_the_crl_at_once(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority, files: FileServer) -> None:
    files.put_crl("/ca.crl", ca.crl())
    pol = policy([ca.certificate], methods=("ocsp", "crl"), ocsp_url=responder.url, ocsp_timeout=0.3)
    responder.slow(5)
    assert check(engine, crl_leaf(ca, files), ca, pol).summary == "crl"  # after waiting 0.3 s for OCSP
    responder.reset()
    started = time.monotonic()
    assert check(engine, crl_leaf(ca, files, common_name="Bo Berg"), ca, pol).summary == "crl"
    assert time.monotonic() - started < 1.0  # room for a busy machine; that the responder is not asked is the point
    assert responder.hits == 1


def test_answer_close_to_expiry_is_refreshed_in_the_background(
        responder: OcspResponder, clock: FixedClock, ca: CertificateAuthority, cert: x509.Certificate) -> None:
    responder.validity = 10 * MINUTE
    pol = policy([ca.certificate], ocsp_url=responder.url)
    engine = checker(clock, refresh_interval=30)
    try:
        check(engine, cert, ca, pol)
        clock.set(NOW + 9 * MINUTE)  # the last fifth of the answer's lifetime
        responder.now = clock.now()
        assert check(engine, cert, ca, pol).checked[0].cached  # answered at once from the cache ...
        deadline = time.monotonic() + 5
        # ... and refreshed behind the scenes: the responder answered, and the answer is stored (the refresh stays
        # pending until then)
        while (responder.hits < 2 or engine._pending) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert responder.hits == 2
        assert not engine._pending

        clock.set(NOW + 12 * MINUTE)  # past the first answer's nextUpdate, within the refreshed one's
        outcome = check(engine, cert, ca, pol)
        assert outcome.checked[0].cached
        assert outcome.checked[0].next_update == NOW + 19 * MINUTE
        assert responder.hits == 2
    finally:
        engine.close()


# --- CRLs through the engine ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", [pytest.param("distribution-point", id="distribution-point"),
                                   pytest.param("configured-url", id="configured-url")])
def test_crl_over_http_good(engine: RevocationChecker, ca: CertificateAuthority, files: FileServer,
                            where: str) -> None:
    url = files.put_crl("/ca.crl", ca.crl())
    if where == "distribution-point":
        cert, pol = crl_leaf(ca, files), policy([ca.certificate], methods=("crl",))
    else:
        cert = leaf(ca).certificate
        pol = policy([ca.certificate], methods=("crl",), crl_urls=[url], distribution_points=False)
    outcome = check(engine, cert, ca, pol)
    assert [(c.status, c.method, c.source) for c in outcome.checked] == [("good", "crl", url)]
    assert outcome.valid_until == NOW + HOUR  # nextUpdate in 7 days, capped by max_cache_time


def test_crl_stale(engine: RevocationChecker, ca: CertificateAuthority, files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    _crl_stale(files, ca)
    exc = refused(engine, cert, ca, policy([ca.certificate], methods=("crl",)))
    assert exc.reason == "revocation_stale"
    assert dict(exc.params) == {"next_update": (NOW - DAY).date().isoformat()}


def test_crl_with_a_bad_signature(engine: RevocationChecker, ca: CertificateAuthority, files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    files.put_crl("/ca.crl", impostor(ca).crl())
    exc = refused(engine, cert, ca, policy([ca.certificate], methods=("crl",)))
    assert exc.reason == "revocation_unavailable"
    assert "signature does not verify" in exc.detail
    assert files.url("/ca.crl") in exc.detail


def test_crl_not_a_crl(engine: RevocationChecker, ca: CertificateAuthority, files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    files.put("/ca.crl", b"<html>maintenance</html>", content_type="text/html")
    assert refused(engine, cert, ca, policy([ca.certificate], methods=("crl",))).reason == "revocation_unavailable"


def test_crl_revoked_names_the_revocation_date(engine: RevocationChecker, files: FileServer) -> None:
    own = person_ca(name="Kommun D")
    cert = crl_leaf(own, files)
    own.revoke(cert, at=NOW - 3 * DAY)
    files.put_crl("/ca.crl", own.crl())
    exc = refused(engine, cert, own, policy([own.certificate], methods=("crl",)))
    assert exc.reason == "revoked"
    assert dict(exc.params) == {"revocation_date": (NOW - 3 * DAY).date().isoformat()}


def test_crl_redirect_within_http_is_followed(engine: RevocationChecker, ca: CertificateAuthority,
                                              files: FileServer) -> None:
    cert = crl_leaf(ca, files)
    files.redirect("/ca.crl", files.put_crl("/moved/ca.crl", ca.crl()))
    assert check(engine, cert, ca, policy([ca.certificate], methods=("crl",))).summary == "crl"
    assert files.hits["/moved/ca.crl"] == 1


@pytest.mark.parametrize("target", [pytest.param("https://127.0.0.1:{port}/moved/ca.crl", id="to-https"),
                                    pytest.param("ftp://127.0.0.1:{port}/moved/ca.crl", id="to-ftp")])
def test_crl_redirect_to_another_scheme_is_refused(engine: RevocationChecker, ca: CertificateAuthority,
                                                   files: FileServer, target: str) -> None:
    cert = crl_leaf(ca, files)
    files.put_crl("/moved/ca.crl", ca.crl())
    files.redirect("/ca.crl", target.format(port=files.port))
    exc = refused(engine, cert, ca, policy([ca.certificate], methods=("crl",)))
    assert exc.reason == "revocation_unavailable"
    assert "redirect to another scheme" in exc.detail
    assert files.hits["/moved/ca.crl"] == 0


BIG_REVOKED_SERIAL = 0x5EED_0001


@pytest.fixture(scope="module")
def big() -> tuple[CertificateAuthority, bytes]:
    """A CA with a CRL of 100,000 entries plus one real revocation (DER)."""
    own = person_ca(name="Kommun C")
    own.revoked[BIG_REVOKED_SERIAL] = NOW - 2 * DAY
    crl = own.crl(extra_serials=100_000)
    assert len(crl) == 100_001
    return own, crl.public_bytes(serialization.Encoding.DER)


def test_crl_with_100000_entries(engine: RevocationChecker, files: FileServer,
                                 big: tuple[CertificateAuthority, bytes]) -> None:
    own, der = big
    files.put("/big.crl", der)
    revoked = crl_leaf(own, files, "/big.crl", serial=BIG_REVOKED_SERIAL)
    good = crl_leaf(own, files, "/big.crl")
    pol = policy([own.certificate], methods=("crl",))

    exc = refused(engine, revoked, own, pol)
    assert exc.reason == "revoked"
    assert dict(exc.params) == {"revocation_date": (NOW - 2 * DAY).date().isoformat()}
    started = time.monotonic()
    outcome = check(engine, good, own, pol)
    assert time.monotonic() - started < 0.5  # a set lookup in the CRL already held
    assert [(c.status, c.method) for c in outcome.checked] == [("good", "crl")]
    assert files.hits["/big.crl"] == 1
