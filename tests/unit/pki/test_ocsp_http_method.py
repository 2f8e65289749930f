"""How OCSP requests travel: GET or POST (RFC 5019 §5, RFC 6960 Appendix A.1), against the tests' real responder.

``ocsp.http_method``: ``auto`` (GET for a request without a nonce whose URL is at most 255 bytes), ``get`` (GET
whenever the URL fits) or ``post``; a method refused with 405 or 501 is retried once by the other within the same
deadline, and remembered per responder for the process.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Literal
from urllib.parse import quote, unquote

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from broker.clock import FixedClock
from broker.config.schema import OcspConfig
from broker.demo.certificates import CertificateAuthority
from broker.pki.revocation.engine import RevocationChecker, RevocationOutcome, RevocationPolicy
from broker.pki.revocation.http import FetchError, FetchLimits, HttpFetcher
from broker.pki.revocation.ocsp import GET_URL_MAX_BYTES, build_request, get_url
from broker.pki.revocation.transport import OcspTransport
from tests.factories.ocsp_responder import OcspResponder
from tests.factories.revocation import NOW, check, checker, leaf, person_ca, policy, refused

REQUEST = bytes(range(256))[:75]   # a DER request's size (a SHA-1 CertID, no nonce): 100 characters of base64
ENCODED = quote(base64.b64encode(REQUEST).decode(), safe="")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return person_ca()


def method_policy(ca: CertificateAuthority, url: str, http_method: Literal["auto", "get", "post"], *,
                  nonce: bool = False) -> RevocationPolicy:
    return policy([ca.certificate], ocsp_url=url, nonce=nonce, http_method=http_method)



def asked_by(outcome: RevocationOutcome) -> str | None:
    (status,) = outcome.checked
    assert (status.status, status.method) == ("good", "ocsp")
    return status.http_method


# --- the GET URL (RFC 6960 Appendix A.1, RFC 5019 §5) ------------------------------------------


@pytest.mark.parametrize(("responder", "expected"), [
    pytest.param("http://ocsp.example/", "http://ocsp.example/" + ENCODED, id="root-with-slash"),
    pytest.param("http://ocsp.example", "http://ocsp.example/" + ENCODED, id="root-without-slash"),
    pytest.param("http://ocsp.example/siths/ocsp", "http://ocsp.example/siths/ocsp/" + ENCODED, id="path"),
    pytest.param("http://ocsp.example/siths/ocsp/", "http://ocsp.example/siths/ocsp/" + ENCODED,
                 id="path-with-slash"),
    pytest.param("https://ocsp.example:8443/a", "https://ocsp.example:8443/a/" + ENCODED, id="https-port"),
    pytest.param("http://[2001:db8::5]:8080/ocsp", "http://[2001:db8::5]:8080/ocsp/" + ENCODED, id="ipv6-port"),
    pytest.param("http://ocsp.example/ocsp?ca=3", None, id="query-post-only"),
    pytest.param("http://ocsp.example/ocsp#ca", None, id="fragment-post-only"),
])
def test_get_url_appends_the_url_encoded_base64_request(responder: str, expected: str | None) -> None:
    assert get_url(responder, REQUEST) == expected


def test_get_url_percent_encodes_what_base64_adds() -> None:
    """"+", "/" and "=" of standard base64 would change a URL's meaning: %2B, %2F, %3D (RFC 3986 §2.1)."""
    request = b"\xfb\xff\xbf\xfe"   # base64 "+/+//g=="
    assert get_url("http://ocsp.example/", request) == "http://ocsp.example/%2B%2F%2B%2F%2Fg%3D%3D"


def test_get_url_at_most_255_bytes_in_all() -> None:
    """RFC 5019 §5: requests of at most 255 bytes after encoding, scheme and host included, go by GET."""
    host = "http://ocsp.example/"
    fits = host + "a" * (GET_URL_MAX_BYTES - len(host) - 1 - len(ENCODED))
    assert len(get_url(fits, REQUEST) or "") == GET_URL_MAX_BYTES
    assert get_url(fits + "a", REQUEST) is None


# --- which method the engine uses --------------------------------------------------------------


def test_auto_asks_a_request_without_nonce_by_get(responder: OcspResponder, engine: RevocationChecker,
                                                  ca: CertificateAuthority, cert: x509.Certificate) -> None:
    """The default: GET, its path the URL-encoded base64 of the very request the broker builds."""
    assert OcspConfig().http_method == "auto"
    outcome = check(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
    assert asked_by(outcome) == "GET"
    ((method, path),) = responder.seen
    assert method == "GET"
    (request,) = responder.requests
    sent = base64.b64decode(unquote(path.lstrip("/")), validate=True)
    assert ocsp.load_der_ocsp_request(sent).serial_number == cert.serial_number == request.serial_number
    assert path == "/" + quote(base64.b64encode(sent).decode(), safe="")


@pytest.mark.parametrize("path", ["/ocsp", "/ocsp/"], ids=["path", "path-with-slash"])
def test_get_to_a_responder_with_a_path(ca: CertificateAuthority, engine: RevocationChecker,
                                        cert: x509.Certificate, path: str) -> None:
    with OcspResponder(ca, now=NOW, path=path) as responder:
        outcome = check(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
        assert asked_by(outcome) == "GET"
        assert responder.seen[0][1].startswith("/ocsp/M")   # no "//": the base64 of a DER SEQUENCE (0x30)
        assert len(responder.requests) == 1


def test_auto_with_a_nonce_posts(responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority,
                                 cert: x509.Certificate) -> None:
    """A nonce makes the answer one of a kind: no cache can serve it, so GET buys nothing."""
    outcome = check(engine, cert, ca, method_policy(ca, responder.url, "auto", nonce=True))
    assert asked_by(outcome) == "POST"
    assert responder.methods_seen == ["POST"]


def test_get_with_a_nonce_gets(responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority,
                               cert: x509.Certificate) -> None:
    outcome = check(engine, cert, ca, method_policy(ca, responder.url, "get", nonce=True))
    assert asked_by(outcome) == "GET"
    assert responder.methods_seen == ["GET"]


@pytest.mark.parametrize("http_method", ["auto", "get"])
def test_a_url_longer_than_255_bytes_posts(ca: CertificateAuthority, engine: RevocationChecker,
                                           cert: x509.Certificate, http_method: Literal["auto", "get"]) -> None:
    with OcspResponder(ca, now=NOW, path="/" + "long" * 40) as responder:
        request = build_request(cert, ca.certificate, nonce=None, cert_id_hash="sha1")
        assert get_url(responder.url, request) is None
        outcome = check(engine, cert, ca, method_policy(ca, responder.url, http_method))
        assert asked_by(outcome) == "POST"
        assert responder.methods_seen == ["POST"]


def test_post_always_posts(responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority,
                           cert: x509.Certificate) -> None:
    outcome = check(engine, cert, ca, method_policy(ca, responder.url, "post"))
    assert asked_by(outcome) == "POST"
    assert responder.methods_seen == ["POST"]


# --- a responder that refuses a method -----------------------------------------------------------


@pytest.mark.parametrize("code", [405, 501, 400, 404])
def test_get_refused_falls_back_to_post_and_is_remembered(responder: OcspResponder, engine: RevocationChecker,
                                                          ca: CertificateAuthority, code: int) -> None:
    responder.refuse_method("GET", code)
    pol = policy([ca.certificate], ocsp_url=responder.url)
    first = check(engine, leaf(ca).certificate, ca, pol)
    assert asked_by(first) == "POST"
    assert responder.methods_seen == ["GET", "POST"]
    # the next login, about another card: straight to POST
    second = check(engine, leaf(ca).certificate, ca, pol)
    assert asked_by(second) == "POST"
    assert responder.methods_seen == ["GET", "POST", "POST"]


def test_get_read_as_a_post_without_body_falls_back_to_post(responder: OcspResponder, engine: RevocationChecker,
                                                            ca: CertificateAuthority) -> None:
    """A responder built for POST alone that reads no request from a GET answers malformedRequest: POST is asked."""
    responder.read_get_as_empty_post()
    pol = policy([ca.certificate], ocsp_url=responder.url)
    assert asked_by(check(engine, leaf(ca).certificate, ca, pol)) == "POST"
    assert asked_by(check(engine, leaf(ca).certificate, ca, pol)) == "POST"
    assert responder.methods_seen == ["GET", "POST", "POST"]


def test_a_page_answering_get_falls_back_to_post(responder: OcspResponder, engine: RevocationChecker,
                                                 ca: CertificateAuthority) -> None:
    """A server whose responder serves POST alone may answer a GET at that path with a page of its own (HTTP 200):
    no OCSP answer at all, so POST is asked, as for a refusal, and remembered."""
    responder.answer_get_with_page()
    pol = policy([ca.certificate], ocsp_url=responder.url)
    assert asked_by(check(engine, leaf(ca).certificate, ca, pol)) == "POST"
    assert asked_by(check(engine, leaf(ca).certificate, ca, pol)) == "POST"
    assert responder.methods_seen == ["GET", "POST", "POST"]


def test_malformed_request_by_post_is_the_answer(responder: OcspResponder, engine: RevocationChecker,
                                                 ca: CertificateAuthority, cert: x509.Certificate) -> None:
    responder.error_status("malformedRequest")
    exc = refused(engine, cert, ca, method_policy(ca, responder.url, "auto", nonce=True))
    assert exc.reason == "revocation_response_invalid"
    assert f"OCSP responder {responder.url} (by POST): " in exc.detail
    assert "malformed_request" in exc.detail
    assert responder.methods_seen == ["POST"]


@pytest.mark.parametrize("code", [400, 404])
def test_a_post_not_found_is_not_retried_by_get(responder: OcspResponder, engine: RevocationChecker,
                                                ca: CertificateAuthority, cert: x509.Certificate, code: int) -> None:
    """Only a refusal of the method itself sends a POST again by GET: 400 and 404 are about the request."""
    responder.refuse_method("POST", code)
    exc = refused(engine, cert, ca, method_policy(ca, responder.url, "auto", nonce=True))
    assert exc.reason == "revocation_unavailable"
    assert f"POST {responder.url}: HTTP {code}" in exc.detail
    assert responder.methods_seen == ["POST"]


def test_what_one_process_learnt_is_its_own(responder: OcspResponder, clock: FixedClock,
                                            ca: CertificateAuthority) -> None:
    """In-process memory: another process (a checker of its own) pays for the refusal once itself."""
    responder.refuse_method("GET")
    pol = policy([ca.certificate], ocsp_url=responder.url)
    for _ in range(2):
        other = checker(clock)
        try:
            assert asked_by(check(other, leaf(ca).certificate, ca, pol)) == "POST"
        finally:
            other.close()
    assert responder.methods_seen == ["GET", "POST", "GET", "POST"]


def test_a_responder_that_answers_get_only(responder: OcspResponder, engine: RevocationChecker,
                                           ca: CertificateAuthority) -> None:
    """POST → 405: auto and get never meet the refusal for a request without nonce; a nonced one falls back
    to GET (the nonce goes with it and is checked)."""
    responder.refuse_method("POST")
    assert asked_by(check(engine, leaf(ca).certificate, ca, method_policy(ca, responder.url, "auto"))) == "GET"
    assert asked_by(check(engine, leaf(ca).certificate, ca, method_policy(ca, responder.url, "get"))) == "GET"
    assert responder.methods_seen == ["GET", "GET"]
    nonced = method_policy(ca, responder.url, "auto", nonce=True)
    assert asked_by(check(engine, leaf(ca).certificate, ca, nonced)) == "GET"
    assert responder.methods_seen == ["GET", "GET", "POST", "GET"]
    assert asked_by(check(engine, leaf(ca).certificate, ca, nonced)) == "GET"   # remembered
    assert responder.methods_seen == ["GET", "GET", "POST", "GET", "GET"]


def test_post_is_not_overruled_by_a_refusal(responder: OcspResponder, engine: RevocationChecker,
                                            ca: CertificateAuthority, cert: x509.Certificate) -> None:
    """``post`` is the operator's word that GET must not be used: a refused POST is the answer."""
    responder.refuse_method("POST")
    exc = refused(engine, cert, ca, method_policy(ca, responder.url, "post"))
    assert exc.reason == "revocation_unavailable"
    assert f"OCSP responder {responder.url}: POST {responder.url}: HTTP 405" in exc.detail
    assert responder.methods_seen == ["POST"]


def test_both_methods_refused_names_both(responder: OcspResponder, engine: RevocationChecker,
                                         ca: CertificateAuthority, cert: x509.Certificate) -> None:
    """Each attempt is named by its method and the responder's URL, never by the GET URL with the request in it."""
    responder.refuse_method("GET")
    responder.refuse_method("POST", 501)
    exc = refused(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
    assert exc.reason == "revocation_unavailable"
    assert exc.detail == (f"ocsp: OCSP responder {responder.url}: GET {responder.url}: HTTP 405; "
                          f"then POST {responder.url}: HTTP 501")
    assert responder.methods_seen == ["GET", "POST"]


def test_other_failures_are_not_retried(responder: OcspResponder, engine: RevocationChecker,
                                        ca: CertificateAuthority, cert: x509.Certificate) -> None:
    responder.http_error(500)
    exc = refused(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url))
    assert exc.reason == "revocation_unavailable"
    assert exc.detail == f"ocsp: OCSP responder {responder.url}: GET {responder.url}: HTTP 500"
    assert responder.methods_seen == ["GET"]


def test_the_fallback_shares_the_deadline(responder: OcspResponder, engine: RevocationChecker,
                                          ca: CertificateAuthority, cert: x509.Certificate) -> None:
    """ocsp.timeout bounds the refused GET and the POST after it together, not each."""
    responder.refuse_method("GET")
    responder.slow(0.8)  # each answer: the refusal at 0.8 s, the POST's (which, given a whole timeout, would come)
    started = time.monotonic()
    exc = refused(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url, ocsp_timeout=1.2))
    elapsed = time.monotonic() - started
    assert exc.reason == "revocation_unavailable"
    assert "GET" in exc.detail
    assert "then POST" in exc.detail
    assert "timed out" in exc.detail
    assert elapsed < 1.2 + 0.6  # each its own timeout: 0.8 + 1.2 s
    assert responder.methods_seen == ["GET", "POST"]


def test_a_cached_answer_says_how_it_was_asked_for(responder: OcspResponder, engine: RevocationChecker,
                                                  ca: CertificateAuthority, cert: x509.Certificate) -> None:
    """The verified answer carries how it was asked for into the cache, for the audit trail and cert verify."""
    pol = policy([ca.certificate], ocsp_url=responder.url)
    assert asked_by(check(engine, cert, ca, pol)) == "GET"
    cached = check(engine, cert, ca, pol)
    assert (cached.checked[0].cached, cached.checked[0].http_method) == (True, "GET")
    assert cached.checked[0].as_dict()["http_method"] == "GET"


def test_a_fallback_is_logged_once(responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority,
                                   caplog: pytest.LogCaptureFixture) -> None:
    responder.refuse_method("GET")
    pol = policy([ca.certificate], ocsp_url=responder.url)
    with caplog.at_level(logging.INFO, logger="broker.revocation"):
        check(engine, leaf(ca).certificate, ca, pol)
        check(engine, leaf(ca).certificate, ca, pol)
    assert [r.getMessage() for r in caplog.records] == [
        f"OCSP responder {responder.url} refused GET (HTTP 405): asked by POST, as this process will ask it from now "
        "on"]


def test_a_fetchers_cap_bounds_the_fallback_too(responder: OcspResponder, ca: CertificateAuthority,
                                                cert: x509.Certificate) -> None:
    """readiness.timeout caps a municipality's ocsp.timeout per network check (HttpFetcher's max_timeout): the
    refused GET and the POST after it share the cap, as they share ocsp.timeout; the POST was given what was left
    of ocsp.timeout, capped again, and the check took up to twice readiness.timeout."""
    responder.refuse_method("GET")
    responder.slow(0.8)
    transport = OcspTransport(HttpFetcher(max_timeout=1.2))
    request = build_request(cert, ca.certificate, nonce=None, cert_id_hash="sha1")
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        transport.ask(responder.url, request, setting="auto", nonced=False,
                      limits=FetchLimits(connect_timeout=2, total_timeout=3, max_bytes=65536))
    elapsed = time.monotonic() - started
    assert str(caught.value).startswith(f"GET {responder.url}: HTTP 405; then POST {responder.url}: timed out")
    assert caught.value.timeout
    assert elapsed < 1.2 + 0.6  # each its own cap: 0.8 + 1.2 s
    assert responder.methods_seen == ["GET", "POST"]
