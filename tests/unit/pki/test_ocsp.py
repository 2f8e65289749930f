"""OCSP requests and response verification (RFC 6960), pure: bytes in, a verified answer or a reason out.

Responses are made by the tests' real responder (tests/factories/ocsp_responder.py) from the request
``build_request`` produced, without HTTP; the network path is test_revocation_engine.py's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from broker.demo.certificates import CertificateAuthority, Issued, LeafProfile, new_key
from broker.errors import CertificateRejected
from broker.pki.revocation.ocsp import OcspAnswer, build_request, responder_urls, verify_response
from tests.factories.ocsp_responder import OCSP_SIGNING, Entry, OcspResponder, with_oid_renamed
from tests.factories.pki_cases import pss_sha1_resigned, with_duplicate_extension
from tests.factories.revocation import HOUR, MINUTE, NOW, SECOND, impostor, leaf, person_ca, with_pointers

SKEW = dt.timedelta(minutes=5)
MAX_AGE = dt.timedelta(minutes=5)
THIS_UPDATE = NOW - MINUTE        # the responder's thisUpdate
NEXT_UPDATE = NOW + HOUR          # and nextUpdate (validity one hour)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return person_ca()


@pytest.fixture(scope="module")
def cert(ca: CertificateAuthority) -> x509.Certificate:
    return leaf(ca).certificate


@pytest.fixture
def responder(ca: CertificateAuthority) -> Iterator[OcspResponder]:
    with OcspResponder(ca, now=NOW) as r:
        yield r
    assert r.errors == []


def answer(responder: OcspResponder, cert: x509.Certificate, issuer: x509.Certificate, *,
           nonce: bytes | None = None, cert_id_hash: str = "sha1") -> bytes:
    """The DER response ``responder`` gives to the request the broker builds for ``cert``."""
    request = ocsp.load_der_ocsp_request(build_request(cert, issuer, nonce=nonce,
                                                       cert_id_hash=cert_id_hash))  # type: ignore[arg-type]
    return responder.respond(request).public_bytes(serialization.Encoding.DER)


def answer_with(responder: OcspResponder, cert: x509.Certificate, issuer: x509.Certificate,
                entries: Sequence[Entry]) -> bytes:
    """The DER response carrying ``entries`` as its SingleResponses, to the request the broker builds for ``cert``."""
    request = ocsp.load_der_ocsp_request(build_request(cert, issuer, nonce=None, cert_id_hash="sha1"))
    return responder.respond_entries(request, entries).public_bytes(serialization.Encoding.DER)


def verify(der: bytes, cert: x509.Certificate, issuer: x509.Certificate, *, at: dt.datetime = NOW,
           nonce: bytes | None = None, skew: dt.timedelta = SKEW) -> OcspAnswer:
    return verify_response(der, cert, issuer, now=at, skew=skew, max_age_without_next_update=MAX_AGE, nonce=nonce)


def rejected(der: bytes, cert: x509.Certificate, issuer: x509.Certificate, **kwargs: object) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as caught:
        verify(der, cert, issuer, **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- build_request -----------------------------------------------------------------------------


@pytest.mark.parametrize(("cert_id_hash", "algorithm"), [
    pytest.param("sha1", hashes.SHA1, id="sha1-cert-id"),
    pytest.param("sha256", hashes.SHA256, id="sha256-cert-id"),
])
def test_request_names_the_certificate_by_serial_and_issuer_hashes(
        ca: CertificateAuthority, cert: x509.Certificate, cert_id_hash: str, algorithm: type) -> None:
    request = ocsp.load_der_ocsp_request(build_request(cert, ca.certificate, nonce=None,
                                                       cert_id_hash=cert_id_hash))  # type: ignore[arg-type]
    name = hashlib.new(cert_id_hash, ca.certificate.subject.public_bytes()).digest()
    assert request.serial_number == cert.serial_number
    assert isinstance(request.hash_algorithm, algorithm)
    assert request.issuer_name_hash == name
    if cert_id_hash == "sha1":  # the key hash of RFC 6960 §4.1.1 is what the SubjectKeyIdentifier method 1 uses
        assert request.issuer_key_hash == x509.SubjectKeyIdentifier.from_public_key(ca.certificate.public_key()).digest
    assert list(request.extensions) == []


def test_request_carries_the_nonce_it_is_given(ca: CertificateAuthority, cert: x509.Certificate) -> None:
    nonce = os.urandom(16)
    request = ocsp.load_der_ocsp_request(build_request(cert, ca.certificate, nonce=nonce, cert_id_hash="sha1"))
    assert request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


# --- responder_urls (RFC 5280 §4.2.2.1) ------------------------------------------------------------


def _aia(method: x509.ObjectIdentifier, uri: str) -> x509.AccessDescription:
    return x509.AccessDescription(method, x509.UniformResourceIdentifier(uri))


OCSP_AD = AuthorityInformationAccessOID.OCSP
CA_ISSUERS_AD = AuthorityInformationAccessOID.CA_ISSUERS


@pytest.mark.parametrize(("ocsp_url", "access", "expected"), [
    pytest.param(None, (), (), id="no-aia"),
    pytest.param("http://ocsp.kommun-a.example.se/", (), ("http://ocsp.kommun-a.example.se/",), id="one-http"),
    pytest.param("https://ocsp.example.se/a", (_aia(OCSP_AD, "http://ocsp2.example.se/"),),
                 ("https://ocsp.example.se/a", "http://ocsp2.example.se/"), id="two-in-order"),
    pytest.param(None, (_aia(CA_ISSUERS_AD, "http://ca.example.se/ca.cer"),), (), id="ca-issuers-only"),
    pytest.param(None, (_aia(OCSP_AD, "ldap://ldap.example.se/cn=ocsp"),), (), id="ldap-ignored"),
    pytest.param("http://ocsp.example.se/", (_aia(CA_ISSUERS_AD, "http://ca.example.se/ca.cer"),),
                 ("http://ocsp.example.se/",), id="ocsp-beside-ca-issuers"),
])
def test_responder_urls_from_authority_information_access(
        ca: CertificateAuthority, cert: x509.Certificate, ocsp_url: str | None,
        access: tuple[x509.AccessDescription, ...], expected: tuple[str, ...]) -> None:
    subject = with_pointers(cert, ca.key, ocsp_url=ocsp_url, access=access) if (ocsp_url or access) else cert
    assert responder_urls(subject) == expected


# --- answers that are accepted -------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    pytest.param("good", ("good", None, None), id="good"),
    pytest.param("revoked", ("revoked", NOW - dt.timedelta(days=2), "key_compromise"), id="revoked"),
    pytest.param("unknown", ("unknown", None, None), id="unknown"),
])
def test_the_answers_own_status_is_returned(responder: OcspResponder, ca: CertificateAuthority,
                                            cert: x509.Certificate, status: str,
                                            expected: tuple[str, dt.datetime | None, str | None]) -> None:
    responder.set_status(cert, status, revoked_at=NOW - dt.timedelta(days=2),  # type: ignore[arg-type]
                         reason=x509.ReasonFlags.key_compromise)
    got = verify(answer(responder, cert, ca.certificate), cert, ca.certificate)
    assert (got.status, got.revoked_at, got.revocation_reason) == expected
    assert (got.this_update, got.next_update, got.produced_at) == (THIS_UPDATE, NEXT_UPDATE, NOW)
    assert got.responder == "the issuing CA"


def _delegate_with_eku(r: OcspResponder) -> None:
    r.use_delegate(eku=True)


def _mismatching_nonce(r: OcspResponder) -> None:
    r.nonce_mismatch()


def _by_name(r: OcspResponder) -> None:
    r.responder_encoding = ocsp.OCSPResponderEncoding.NAME


@pytest.mark.parametrize(("configure", "cert_id_hash", "send_nonce", "responder_is"), [
    pytest.param(lambda r: None, "sha1", False, "the issuing CA", id="issuer-signed"),
    pytest.param(_by_name, "sha1", False, "the issuing CA", id="issuer-named-by-name"),
    pytest.param(lambda r: None, "sha256", False, "the issuing CA", id="sha256-cert-id"),
    pytest.param(lambda r: None, "sha1", True, "the issuing CA", id="nonce-echoed"),
    pytest.param(_delegate_with_eku, "sha1", False, "delegated responder", id="delegate-with-ocsp-signing-eku"),
    # without a nonce of ours, whatever nonce the responder adds is not ours to check
    pytest.param(_mismatching_nonce, "sha1", False, "the issuing CA", id="foreign-nonce-when-none-sent"),
])
def test_accepted_answers(responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate,
                          configure: Callable[[OcspResponder], None], cert_id_hash: str, send_nonce: bool,
                          responder_is: str) -> None:
    configure(responder)
    nonce = os.urandom(16) if send_nonce else None
    der = answer(responder, cert, ca.certificate, nonce=nonce, cert_id_hash=cert_id_hash)
    got = verify(der, cert, ca.certificate, nonce=nonce)
    assert got.status == "good"
    assert got.responder.startswith(responder_is)


def test_rsa_issuer_signature_verifies(cert: x509.Certificate) -> None:
    rsa_ca = CertificateAuthority.root("Kommun R Person CA", NOW, key="rsa2048")
    rsa_leaf = leaf(rsa_ca).certificate
    with OcspResponder(rsa_ca, now=NOW) as r:
        assert verify(answer(r, rsa_leaf, rsa_ca.certificate), rsa_leaf, rsa_ca.certificate).status == "good"


# --- answers that are refused ---------------------------------------------------------------------

OTHER_CA = CertificateAuthority.root("Kommun B Person CA", NOW, organization="Kommun B")


def _unrelated(r: OcspResponder) -> None:
    r.sign_with_unrelated_key()


def _delegate_without_eku(r: OcspResponder) -> None:
    r.use_delegate(eku=False)


def _delegate_of_other_ca(r: OcspResponder) -> None:
    r.use_delegate(eku=True, issued_by=OTHER_CA)


def _delegate_of_impostor(r: OcspResponder) -> None:
    r.use_delegate(eku=True, issued_by=impostor(r.issuer))


def _delegate_expired(r: OcspResponder) -> None:
    r.use_delegate(eku=True, valid_from=NOW - dt.timedelta(days=30), valid_until=NOW - dt.timedelta(days=1))


def _sha1(r: OcspResponder) -> None:
    r.sha1_signature()


def _future(r: OcspResponder) -> None:
    r.future()


def _stale(r: OcspResponder) -> None:
    r.stale()


@pytest.mark.parametrize(("configure", "send_nonce", "reason", "detail"), [
    # the unrelated signer's self-signed certificate rides along, so it is judged as a would-be delegate
    pytest.param(_unrelated, False, "revocation_response_invalid",
                 "Unrelated OCSP Responder is not issued by the certificate's CA", id="signed-by-unrelated-key"),
    pytest.param(_delegate_without_eku, False, "revocation_response_invalid", "lacks id-kp-OCSPSigning",
                 id="delegate-without-ocsp-signing-eku"),
    pytest.param(_delegate_of_other_ca, False, "revocation_response_invalid",
                 "is not issued by the certificate's CA", id="delegate-issued-by-another-ca"),
    pytest.param(_delegate_of_impostor, False, "revocation_response_invalid",
                 "is not signed by the certificate's CA", id="delegate-signed-by-a-ca-of-the-same-name"),
    pytest.param(_delegate_expired, False, "revocation_response_invalid", "is not valid now",
                 id="delegate-certificate-expired"),
    pytest.param(_sha1, False, "revocation_response_invalid", "SHA-256 or stronger is required",
                 id="sha1-signature"),
    pytest.param(_future, False, "revocation_response_invalid", "is in the future", id="this-update-in-future"),
    pytest.param(_stale, False, "revocation_stale", "expired at", id="next-update-passed"),
    pytest.param(_mismatching_nonce, True, "revocation_response_invalid", "nonce does not match",
                 id="nonce-mismatch"),
    pytest.param(lambda r: r.drop_nonce(), True, "revocation_response_invalid", "did not return the request's nonce",
                 id="nonce-dropped"),
])
def test_refused_answers(responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate,
                         configure: Callable[[OcspResponder], None], send_nonce: bool, reason: str,
                         detail: str) -> None:
    configure(responder)
    nonce = os.urandom(16) if send_nonce else None
    exc = rejected(answer(responder, cert, ca.certificate, nonce=nonce), cert, ca.certificate, nonce=nonce)
    assert exc.reason == reason
    assert detail in exc.detail


@pytest.mark.parametrize(("status", "reason"), [
    pytest.param(ocsp.OCSPResponseStatus.TRY_LATER, "revocation_unavailable", id="tryLater"),
    pytest.param(ocsp.OCSPResponseStatus.INTERNAL_ERROR, "revocation_unavailable", id="internalError"),
    pytest.param(ocsp.OCSPResponseStatus.MALFORMED_REQUEST, "revocation_response_invalid", id="malformedRequest"),
    pytest.param(ocsp.OCSPResponseStatus.SIG_REQUIRED, "revocation_response_invalid", id="sigRequired"),
    pytest.param(ocsp.OCSPResponseStatus.UNAUTHORIZED, "revocation_response_invalid", id="unauthorized"),
])
def test_unsuccessful_response_status(ca: CertificateAuthority, cert: x509.Certificate,
                                      status: ocsp.OCSPResponseStatus, reason: str) -> None:
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
    exc = rejected(der, cert, ca.certificate)
    assert exc.reason == reason
    assert status.name.lower() in exc.detail


@pytest.mark.parametrize("der", [
    pytest.param(b"", id="empty"),
    pytest.param(b"garbage:" + bytes(range(56)), id="garbage"),
    pytest.param(b"\x30\x03\x0a\x01", id="truncated-der"),
])
def test_unparseable_response(ca: CertificateAuthority, cert: x509.Certificate, der: bytes) -> None:
    exc = rejected(der, cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert "not a DER OCSP response" in exc.detail


def test_answer_about_another_certificate_is_refused(responder: OcspResponder, ca: CertificateAuthority,
                                                     cert: x509.Certificate) -> None:
    other = leaf(ca, common_name="Bo Berg").certificate
    exc = rejected(answer(responder, other, ca.certificate), cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert f"does not cover serial {cert.serial_number:x}" in exc.detail


def test_answer_about_the_same_serial_from_another_issuer_is_refused(cert: x509.Certificate,
                                                                     ca: CertificateAuthority) -> None:
    """Same serial, another CA: the CertID's issuer hashes differ, so the answer does not cover ours."""
    twin = OTHER_CA.issue(LeafProfile(common_name="Anna Andersson"), serial=cert.serial_number).certificate
    with OcspResponder(OTHER_CA, now=NOW) as r:
        der = answer(r, twin, OTHER_CA.certificate)
    exc = rejected(der, cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert "neither the issuing CA nor an authorised responder" in exc.detail


# --- several SingleResponses about the certificate (RFC 6960 §3.2, §4.2.2.3) ---------------------------

OTHER_SERIAL = 0x0BAD             # not the 159-bit random serial of ``cert``
REVOKED_AT = NOW - dt.timedelta(days=2)
STALE_THIS_UPDATE = NOW - 2 * HOUR
FRESH_GOOD = Entry("good", THIS_UPDATE, NEXT_UPDATE)
STALE_GOOD = Entry("good", STALE_THIS_UPDATE, NOW - HOUR)
FRESH_REVOKED = Entry("revoked", THIS_UPDATE, NEXT_UPDATE, revoked_at=REVOKED_AT,
                      reason=x509.ReasonFlags.key_compromise)
FRESH_UNKNOWN = Entry("unknown", THIS_UPDATE, NEXT_UPDATE)
STALE_UNKNOWN = Entry("unknown", STALE_THIS_UPDATE, NOW - HOUR)
REVOKED = ("revoked", THIS_UPDATE, REVOKED_AT, "key_compromise")
GOOD = ("good", THIS_UPDATE, None, None)


@pytest.mark.parametrize(("entries", "expected"), [
    pytest.param((FRESH_GOOD, FRESH_REVOKED), REVOKED, id="good-then-revoked"),
    # revocation is final (RFC 5280 §3.3): a stale answer still proves it, beside a fresh "good" too
    pytest.param((FRESH_GOOD, replace(FRESH_REVOKED, this_update=STALE_THIS_UPDATE, next_update=NOW - HOUR)),
                 ("revoked", STALE_THIS_UPDATE, REVOKED_AT, "key_compromise"), id="stale-revoked-beside-fresh-good"),
    pytest.param((replace(FRESH_REVOKED, this_update=STALE_THIS_UPDATE, next_update=NOW - HOUR),),
                 ("revoked", STALE_THIS_UPDATE, REVOKED_AT, "key_compromise"), id="only-a-stale-revoked"),
    pytest.param((FRESH_REVOKED, FRESH_GOOD), REVOKED, id="revoked-then-good"),
    # a hold may be lifted, a revocation for good not (RFC 5280 §3.3, §5.3.1): the fresher hold beside it does not
    # decide, else the answer would stop refusing the card once it is stale
    pytest.param((replace(FRESH_REVOKED, reason=x509.ReasonFlags.certificate_hold),
                  replace(FRESH_REVOKED, this_update=STALE_THIS_UPDATE, next_update=NOW - HOUR)),
                 ("revoked", STALE_THIS_UPDATE, REVOKED_AT, "key_compromise"), id="fresh-hold-beside-stale-revoked"),
    pytest.param((replace(FRESH_REVOKED, this_update=STALE_THIS_UPDATE, next_update=NOW - HOUR, reason=None),
                  replace(FRESH_REVOKED, reason=x509.ReasonFlags.certificate_hold)),
                 ("revoked", STALE_THIS_UPDATE, REVOKED_AT, None), id="stale-revoked-without-a-reason-then-fresh-hold"),
    pytest.param((FRESH_GOOD, replace(FRESH_REVOKED, cert_id_hash="sha256")), REVOKED,
                 id="good-then-revoked-under-a-sha256-cert-id"),
    pytest.param((STALE_GOOD, FRESH_GOOD), GOOD, id="stale-good-then-fresh-good"),
    pytest.param((FRESH_GOOD, STALE_GOOD), GOOD, id="fresh-good-then-stale-good"),
    pytest.param((replace(FRESH_REVOKED, serial=OTHER_SERIAL), FRESH_GOOD), GOOD,
                 id="another-serial-revoked-then-ours-good"),
    pytest.param((FRESH_GOOD, replace(FRESH_REVOKED, serial=OTHER_SERIAL)), GOOD,
                 id="ours-good-then-another-serial-revoked"),
    pytest.param((FRESH_UNKNOWN, FRESH_GOOD), GOOD, id="unknown-then-good"),
    pytest.param((FRESH_GOOD, FRESH_UNKNOWN), GOOD, id="good-then-unknown"),
    pytest.param((STALE_UNKNOWN, FRESH_UNKNOWN), ("unknown", THIS_UPDATE, None, None), id="only-unknowns"),
    # a revocation for good stands whatever its window says (RFC 5280 §3.3): never turned into a refusal of the
    # answer, which a soft-fail policy would let through
    pytest.param((replace(FRESH_REVOKED, this_update=NOW - MINUTE, next_update=NOW - 2 * MINUTE),),
                 ("revoked", NOW - MINUTE, REVOKED_AT, "key_compromise"),
                 id="revoked-with-next-update-before-this-update"),
])
def test_several_entries_for_the_certificate_give_one_answer(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate, entries: tuple[Entry, ...],
        expected: tuple[str, dt.datetime, dt.datetime | None, str | None]) -> None:
    """Any "revoked" entry decides, else the freshest "good" one; entries about other serials are ignored."""
    got = verify(answer_with(responder, cert, ca.certificate, entries), cert, ca.certificate)
    assert (got.status, got.this_update, got.revoked_at, got.revocation_reason) == expected


SINGLE_EXTENSION = "1.3.6.1.4.1.99999.1"
NONCE_OID = "1.3.6.1.5.5.7.48.1.2"


@pytest.mark.parametrize(("entries", "refused"), [
    pytest.param((replace(FRESH_GOOD, extensions=((SINGLE_EXTENSION, True),)),), True, id="one-entry-critical"),
    pytest.param((replace(FRESH_GOOD, extensions=((SINGLE_EXTENSION, True),)),
                  replace(FRESH_GOOD, serial=OTHER_SERIAL)), True, id="ours-critical-beside-another"),
    pytest.param((replace(FRESH_GOOD, serial=OTHER_SERIAL, extensions=((SINGLE_EXTENSION, True),)),
                  FRESH_GOOD), True, id="another-entry-critical"),
    pytest.param((FRESH_GOOD, replace(FRESH_GOOD, serial=OTHER_SERIAL,
                                      extensions=((SINGLE_EXTENSION, False), (NONCE_OID, True)))),
                 False, id="non-critical-and-a-critical-nonce"),
    pytest.param((replace(FRESH_GOOD, next_update=None, extensions=((SINGLE_EXTENSION, False),)),
                  replace(FRESH_GOOD, serial=OTHER_SERIAL)), False, id="non-critical-without-next-update"),
])
def test_critical_single_extensions_of_every_entry_are_seen(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate, entries: tuple[Entry, ...],
        refused: bool) -> None:
    """RFC 6960 §4.4, RFC 5280 §4.2: a critical extension the broker does not process refuses the answer, in any
    SingleResponse (cryptography shows an entry's extensions only when the response holds one)."""
    der = answer_with(responder, cert, ca.certificate, entries)
    if refused:
        exc = rejected(der, cert, ca.certificate)
        assert exc.reason == "revocation_response_invalid"
        assert f"critical extension {SINGLE_EXTENSION}," in exc.detail
    else:
        assert verify(der, cert, ca.certificate).status == "good"


@pytest.mark.parametrize(("entries", "reason", "detail"), [
    pytest.param((replace(FRESH_GOOD, serial=OTHER_SERIAL), replace(FRESH_REVOKED, serial=OTHER_SERIAL + 1)),
                 "revocation_response_invalid", "does not cover serial", id="only-other-serials"),
    pytest.param((STALE_GOOD, replace(STALE_GOOD, this_update=STALE_THIS_UPDATE - HOUR)), "revocation_stale",
                 "expired at", id="every-good-entry-stale"),
    # the revocation decides, and is judged by its own times: never a way for the "good" entry through; a hold
    # may have been lifted since, so a stale one proves nothing (a revocation for good does: the table above)
    pytest.param((FRESH_GOOD, replace(FRESH_REVOKED, this_update=STALE_THIS_UPDATE, next_update=NOW - HOUR,
                                      reason=x509.ReasonFlags.certificate_hold)),
                 "revocation_stale", "expired at", id="stale-hold-beside-fresh-good"),
    # "unknown" only when no entry says good, so the stale "good" entry is the one judged
    pytest.param((STALE_GOOD, FRESH_UNKNOWN), "revocation_stale", "expired at", id="stale-good-beside-fresh-unknown"),
    pytest.param((STALE_GOOD, replace(FRESH_GOOD, this_update=NOW + HOUR, next_update=NOW + 2 * HOUR)),
                 "revocation_response_invalid", "is in the future", id="freshest-good-from-the-future"),
    # a responder whose clock is broken: picking the freshest entry must not add the age limit past year 9999
    pytest.param((Entry("good", dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), None),),
                 "revocation_response_invalid", "is in the future", id="this-update-in-year-9999-no-next-update"),
    pytest.param((STALE_GOOD, Entry("good", dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), None)),
                 "revocation_response_invalid", "is in the future", id="beside-a-stale-one"),
    # a window that holds no instant (nextUpdate before thisUpdate, RFC 6960 §2.4): within the skew of both ends it
    # passed either check on its own, and its "good" was taken
    pytest.param((Entry("good", NOW - MINUTE, NOW - 2 * MINUTE),), "revocation_response_invalid",
                 "is before its thisUpdate", id="next-update-before-this-update"),
    pytest.param((Entry("good", NOW + MINUTE, NOW),), "revocation_response_invalid", "is before its thisUpdate",
                 id="next-update-before-a-this-update-within-the-skew-ahead"),
    pytest.param((replace(FRESH_REVOKED, this_update=NOW - MINUTE, next_update=NOW - 2 * MINUTE,
                          reason=x509.ReasonFlags.certificate_hold),),
                 "revocation_response_invalid", "is before its thisUpdate",
                 id="hold-with-next-update-before-this-update"),
])
def test_several_entries_refused(responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate,
                                 entries: tuple[Entry, ...], reason: str, detail: str) -> None:
    exc = rejected(answer_with(responder, cert, ca.certificate, entries), cert, ca.certificate)
    assert exc.reason == reason
    assert detail in exc.detail


# --- the delegated responder's certificate (RFC 6960 §4.2.2.2; RFC 5280 §4.2, §4.2.1.3) -------------------


def _key_usage(*, digital_signature: bool = False, non_repudiation: bool = False, key_encipherment: bool = False,
               key_cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=non_repudiation,
                         key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
                         key_cert_sign=key_cert_sign, crl_sign=False, encipher_only=False, decipher_only=False)


DIGITAL_SIGNATURE = _key_usage(digital_signature=True)
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")
OTHER_UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.2")
UNKNOWN_EXTENSION = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
ANY_POLICY = x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.5.29.32.0"), None)])


@dataclass(frozen=True)
class Delegate:
    """A responder certificate issued directly by the CA, with id-kp-OCSPSigning, valid now, and these."""

    key_usage: x509.KeyUsage | None = DIGITAL_SIGNATURE
    is_ca: bool = False
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()   # (value, critical)
    not_after: dt.datetime = NOW + dt.timedelta(days=30)

    def install(self, r: OcspResponder) -> Issued:
        key = new_key("ec256")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kommun A OCSP Responder")]))
            .issuer_name(r.issuer.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=self.is_ca, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([OCSP_SIGNING]), critical=False)
        )
        if self.key_usage is not None:
            builder = builder.add_extension(self.key_usage, critical=True)
        for value, critical in self.extensions:
            builder = builder.add_extension(value, critical=critical)
        r.delegate = Issued(builder.sign(r.issuer.key, hashes.SHA256()), key)
        r.signer = "delegate"
        return r.delegate


@pytest.mark.parametrize("delegate", [
    pytest.param(Delegate(extensions=((x509.OCSPNoCheck(), False),)), id="digital-signature-and-ocsp-nocheck"),
    # RFC 6960 §4.2.2.2.1 says it SHOULD be non-critical; critical, it is still one the broker recognises
    pytest.param(Delegate(extensions=((x509.OCSPNoCheck(), True),)), id="critical-ocsp-nocheck"),
    pytest.param(Delegate(key_usage=_key_usage(digital_signature=True, non_repudiation=True)),
                 id="digital-signature-and-non-repudiation"),
    pytest.param(Delegate(key_usage=None), id="no-key-usage"),
    # RFC 5280 §4.2: only critical extensions that are not understood make a certificate unusable
    pytest.param(Delegate(extensions=((UNKNOWN_EXTENSION, False),)), id="unknown-non-critical-extension"),
    pytest.param(Delegate(extensions=((x509.SubjectAlternativeName([x509.DNSName("ocsp.kommun-a.example.se")]),
                                       True),)), id="critical-subject-alt-name"),
    # RFC 6960 §4.2.2.2 asks for id-kp-OCSPSigning and direct issue by the CA, not for cA=false
    pytest.param(Delegate(is_ca=True, key_usage=_key_usage(digital_signature=True, key_cert_sign=True)),
                 id="delegate-that-is-also-a-ca"),
    # RFC 5280 §4.1.2.5: 99991231235959Z, "no well-defined expiration date" (the clock skew must not be added to it)
    pytest.param(Delegate(not_after=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                          extensions=((x509.OCSPNoCheck(), False),)), id="no-well-defined-expiration-date"),
])
def test_delegated_responder_certificates_accepted(responder: OcspResponder, ca: CertificateAuthority,
                                                   cert: x509.Certificate, delegate: Delegate) -> None:
    issued = delegate.install(responder)
    got = verify(answer(responder, cert, ca.certificate), cert, ca.certificate)
    assert got.status == "good"
    assert got.responder == f"delegated responder {issued.certificate.subject.rfc4514_string()}"


@pytest.mark.parametrize(("delegate", "detail"), [
    pytest.param(Delegate(extensions=((UNKNOWN_EXTENSION, True),)),
                 f"carries critical extension {UNKNOWN_OID.dotted_string}, which the broker does not process",
                 id="unknown-critical-extension"),
    # critical certificatePolicies must be interpreted, qualifiers included (RFC 5280 §4.2.1.4): no policy
    # processing is done for a responder, so it is not in the recognised set
    pytest.param(Delegate(extensions=((ANY_POLICY, True),)), "carries critical extension 2.5.29.32,",
                 id="critical-certificate-policies"),
    pytest.param(Delegate(key_usage=_key_usage(non_repudiation=True)), "has a KeyUsage without digitalSignature",
                 id="key-usage-non-repudiation-only"),
    pytest.param(Delegate(key_usage=_key_usage(key_encipherment=True)), "has a KeyUsage without digitalSignature",
                 id="key-usage-key-encipherment-only"),
    pytest.param(Delegate(is_ca=True, key_usage=_key_usage(key_cert_sign=True)),
                 "has a KeyUsage without digitalSignature", id="key-usage-key-cert-sign-only"),
])
def test_delegated_responder_certificates_refused(responder: OcspResponder, ca: CertificateAuthority,
                                                  cert: x509.Certificate, delegate: Delegate, detail: str) -> None:
    delegate.install(responder)
    exc = rejected(answer(responder, cert, ca.certificate), cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert detail in exc.detail
    assert "delegated responder CN=Kommun A OCSP Responder" in exc.detail


def _response_extension_twice(responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate) -> bytes:
    for oid in (UNKNOWN_OID, OTHER_UNKNOWN_OID):
        responder.add_response_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False)
    built = ocsp.load_der_ocsp_response(answer(responder, cert, ca.certificate))
    return with_oid_renamed(built, OTHER_UNKNOWN_OID.dotted_string, UNKNOWN_OID.dotted_string, ca.key,
                            NOW).public_bytes(serialization.Encoding.DER)


def _delegate_key_usage_twice(responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate) -> bytes:
    issued = Delegate(extensions=((x509.SubjectAlternativeName([x509.DNSName("ocsp.kommun-a.example.se")]),
                                   False),)).install(responder)
    responder.delegate = Issued(with_duplicate_extension(issued.certificate, ca), issued.key)
    return answer(responder, cert, ca.certificate)


@pytest.mark.parametrize(("make", "detail"), [
    pytest.param(_response_extension_twice, "the response has unreadable extensions", id="response-extension-twice"),
    pytest.param(_delegate_key_usage_twice, "delegated responder CN=Kommun A OCSP Responder has unreadable extensions",
                 id="delegate-key-usage-twice"),
])
def test_an_extension_given_twice_refuses_the_answer(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate,
        make: Callable[[OcspResponder, CertificateAuthority, x509.Certificate], bytes], detail: str) -> None:
    """Each extension at most once (RFC 6960 §4.4 takes RFC 5280's Extensions, §4.2): cryptography notices a
    repeated one only when the extensions are read, with an exception of its own, which must refuse the answer
    (revocation_response_invalid), not end the login with an error."""
    exc = rejected(make(responder, ca, cert), cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert detail in exc.detail


# A certificate in the response's certs field lies outside the signed ResponseData (RFC 6960 §4.2.1), so anyone
# on the path to a plain-HTTP responder can swap one in; whose public key cryptography cannot read (another key
# algorithm, a curve it does not know) is no responder's, and the answer is invalid, not an error of the broker's.
ID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")   # 1.2.840.10045.2.1
P256 = bytes.fromhex("06082a8648ce3d030107")              # 1.2.840.10045.3.1.7


@pytest.mark.parametrize(("original", "replacement"), [
    pytest.param(ID_EC_PUBLIC_KEY, bytes.fromhex("06072a8648ce3d0209"), id="unknown-key-algorithm"),
    pytest.param(P256, bytes.fromhex("06082a8648ce3d030109"), id="unknown-curve"),
])
def test_a_responder_certificate_whose_key_cannot_be_read_is_refused(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate, original: bytes,
        replacement: bytes) -> None:
    issued = Delegate().install(responder)
    der = answer(responder, cert, ca.certificate)
    delegate = issued.certificate.public_bytes(serialization.Encoding.DER)
    assert der.count(delegate) == 1
    assert delegate.count(original) == 1
    exc = rejected(der.replace(delegate, delegate.replace(original, replacement)), cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert "signed by neither the issuing CA nor an authorised responder" in exc.detail


# the same for a certificate whose names cannot be read (a UTF8String that is no UTF-8): cryptography reads a
# certificate's name when first asked, and raises ValueError
ISSUER_CN = b"\x0c\x12Kommun A Person CA"                    # UTF8String, the issuer's common name
RESPONDER_CN = b"\x0c\x17Kommun A OCSP Responder"            # UTF8String, the subject's common name


@pytest.mark.parametrize(("original", "replacement"), [
    pytest.param(ISSUER_CN, ISSUER_CN.replace(b"Person", b"\xff\xfe\xfd\xfc\xfb\xfa"), id="issuer-name"),
    pytest.param(RESPONDER_CN, RESPONDER_CN.replace(b"OCSP", b"\xff\xfe\xfd\xfc"), id="subject-name"),
])
@pytest.mark.parametrize("responder_id", [pytest.param(ocsp.OCSPResponderEncoding.HASH, id="by-key"),
                                          pytest.param(ocsp.OCSPResponderEncoding.NAME, id="by-name")])
def test_a_responder_certificate_whose_names_cannot_be_read_is_refused(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate, original: bytes,
        replacement: bytes, responder_id: ocsp.OCSPResponderEncoding) -> None:
    responder.responder_encoding = responder_id
    issued = Delegate().install(responder)
    der = answer(responder, cert, ca.certificate)
    delegate = issued.certificate.public_bytes(serialization.Encoding.DER)
    assert der.count(delegate) == 1
    assert delegate.count(original) == 1
    exc = rejected(der.replace(delegate, delegate.replace(original, replacement)), cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert "cannot be read" in exc.detail


def test_a_delegate_certificate_signed_with_sha1_is_refused() -> None:
    """The delegate's certificate is what makes its key the CA's word, so its signature is held to the floor of the
    path's (SHA-256 or stronger), as its key is: cryptography's check that the CA signed it accepts SHA-1 under
    RSASSA-PSS (RFC 4055 §3.1 default parameters)."""
    rsa_ca = CertificateAuthority.root("Kommun R Person CA", NOW, key="rsa2048")
    rsa_leaf = leaf(rsa_ca).certificate
    with OcspResponder(rsa_ca, now=NOW) as r:
        issued = Delegate().install(r)
        r.delegate = Issued(pss_sha1_resigned(issued.certificate, rsa_ca), issued.key)
        exc = rejected(answer(r, rsa_leaf, rsa_ca.certificate), rsa_leaf, rsa_ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert "delegated responder CN=Kommun A OCSP Responder: its certificate is signed with SHA1" in exc.detail


def _named_by_name(cert: x509.Certificate, issuer: x509.Certificate, signer: Issued,
                   certs: Sequence[x509.Certificate]) -> bytes:
    """A "good" answer about ``cert`` signed by ``signer``, its responderID byName, carrying ``certs``."""
    return (ocsp.OCSPResponseBuilder()
            .add_response(cert, issuer, hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, THIS_UPDATE, NEXT_UPDATE, None, None)
            .responder_id(ocsp.OCSPResponderEncoding.NAME, signer.certificate).certificates(list(certs))
            .sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def _unreadable_key(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` with its P-256 curve named as one cryptography does not know: a public key that cannot be read."""
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(P256) == 1
    return x509.load_der_x509_certificate(der.replace(P256, bytes.fromhex("06082a8648ce3d030109")))


@pytest.mark.parametrize(("order", "previous_key"), [
    pytest.param("previous-first", "readable", id="previous-certificate-first"),
    pytest.param("signer-first", "readable", id="signer-first"),
    # outside the signed ResponseData: anyone on the way can put one there
    pytest.param("previous-first", "unreadable", id="a-certificate-of-the-name-whose-key-cannot-be-read-first"),
])
def test_a_responder_named_by_name_is_the_certificate_of_its_name_that_signed(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate, order: str,
        previous_key: str) -> None:
    """RFC 6960 §4.2.1, §4.2.2.2: a responder named byName may send another certificate of its name beside its own
    (its previous one, across a renewal); the one whose key made the signature signs, in whatever order they
    come (the first of the name was taken, and the answer refused as not verifying)."""
    previous, signer = Delegate().install(responder), Delegate().install(responder)
    assert previous.certificate.subject == signer.certificate.subject
    certs = [previous.certificate if previous_key == "readable" else _unreadable_key(previous.certificate),
             signer.certificate]
    got = verify(_named_by_name(cert, ca.certificate, signer, certs if order == "previous-first" else certs[::-1]),
                 cert, ca.certificate)
    assert (got.status, got.responder) == ("good", f"delegated responder {signer.certificate.subject.rfc4514_string()}")


def test_a_responder_named_by_name_without_its_own_certificate_is_refused(
        responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate) -> None:
    previous, signer = Delegate().install(responder), Delegate().install(responder)
    exc = rejected(_named_by_name(cert, ca.certificate, signer, [previous.certificate]), cert, ca.certificate)
    assert exc.reason == "revocation_response_invalid"
    assert "signature does not verify" in exc.detail


# --- time boundaries (±1 s, with the configured skew) -----------------------------------------------


@pytest.mark.parametrize(("at", "reason"), [
    pytest.param(NEXT_UPDATE + SKEW, None, id="at-next-update-plus-skew"),
    pytest.param(NEXT_UPDATE + SKEW + SECOND, "revocation_stale", id="one-second-later"),
    pytest.param(THIS_UPDATE - SKEW, None, id="at-this-update-minus-skew"),
    pytest.param(THIS_UPDATE - SKEW - SECOND, "revocation_response_invalid", id="one-second-earlier"),
])
def test_validity_window_boundaries(responder: OcspResponder, ca: CertificateAuthority, cert: x509.Certificate,
                                    at: dt.datetime, reason: str | None) -> None:
    der = answer(responder, cert, ca.certificate)
    if reason is None:
        assert verify(der, cert, ca.certificate, at=at).status == "good"
    else:
        assert rejected(der, cert, ca.certificate, at=at).reason == reason


def test_stale_answer_names_its_next_update_for_the_error_page(responder: OcspResponder, ca: CertificateAuthority,
                                                               cert: x509.Certificate) -> None:
    der = answer(responder, cert, ca.certificate)
    exc = rejected(der, cert, ca.certificate, at=NEXT_UPDATE + SKEW + SECOND)
    assert dict(exc.params) == {"next_update": NEXT_UPDATE.date().isoformat()}


@pytest.mark.parametrize(("at", "reason"), [
    pytest.param(THIS_UPDATE + MAX_AGE + SKEW, None, id="at-max-age-plus-skew"),
    pytest.param(THIS_UPDATE + MAX_AGE + SKEW + SECOND, "revocation_stale", id="one-second-later"),
])
def test_answer_without_next_update_is_fresh_for_max_age(responder: OcspResponder, ca: CertificateAuthority,
                                                         cert: x509.Certificate, at: dt.datetime,
                                                         reason: str | None) -> None:
    responder.no_next_update()
    der = answer(responder, cert, ca.certificate)
    if reason is None:
        got = verify(der, cert, ca.certificate, at=at)
        assert (got.status, got.next_update) == ("good", None)
    else:
        assert rejected(der, cert, ca.certificate, at=at).reason == reason
