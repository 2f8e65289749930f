"""Revocation is final, and an answer serves the policy asking for it.

* A stale answer still proves a revocation for good (RFC 5280 §3.3: "revocation is final"; RFC 6960 §2.2): OCSP
  "revoked" past its nextUpdate, or a CRL past its nextUpdate that lists the card, refuse it as ``revoked``, which
  no soft-fail policy lets through; a certificateHold, which a later answer may lift, does not.
* A cached OCSP answer serves the municipality asking now by its own ``max_cache_time`` and nonce setting, not by
  those of the municipality (or the configuration before a reload) that fetched it.
* A CRL whose issuer name is the CA's in other string types (RFC 5280 §7.1: the same name) answers for the CA's
  certificates; of two CRLs from the same second, the higher cRLNumber is the later (§5.2.3), so replaying the
  earlier one is a rollback.

Real loopback OCSP responder and CRL files (tests/factories/ocsp_responder.py, tests/factories/revocation.py).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type

from broker.clock import FixedClock
from broker.demo.certificates import CertificateAuthority
from broker.errors import CertificateRejected
from broker.pki.revocation.crls import CrlSource, CrlStore, verify_crl
from broker.pki.revocation.engine import RevocationChecker, RevocationOutcome, RevocationPolicy
from broker.pki.revocation.http import FetchLimits
from tests.factories.ocsp_responder import OcspResponder
from tests.factories.revocation import HOUR, MINUTE, NOW, person_ca, policy

DAY = dt.timedelta(days=1)
SKEW = dt.timedelta(minutes=5)
LIMITS = FetchLimits(2, 5, 1 << 20)


@pytest.fixture
def ca() -> CertificateAuthority:
    """A CA of the test's own (the engine tests' is the module's): these tests revoke its cards."""
    return person_ca()


def outcome(engine: RevocationChecker, cert: x509.Certificate, ca: CertificateAuthority,
            pol: RevocationPolicy) -> str:
    """The reason code, ``soft_fail:<reason>`` or ``good:<summary>``."""
    engine.register(pol)
    try:
        result: RevocationOutcome = engine.check((cert, ca.certificate), pol)
    except CertificateRejected as exc:
        return exc.reason
    return f"soft_fail:{result.soft_fail.reason}" if result.soft_fail else f"good:{result.summary}"


# --- a stale answer still proves a revocation for good ------------------------------------------------------------


@pytest.mark.parametrize(("why", "expected"), [
    (x509.ReasonFlags.key_compromise, "revoked"),
    (None, "revoked"),
    (x509.ReasonFlags.certificate_hold, "soft_fail:revocation_stale"),
], ids=["key-compromise", "no-reason", "on-hold"])
def test_a_stale_ocsp_revocation_is_no_soft_failure(responder: OcspResponder, engine: RevocationChecker,
                                                    ca: CertificateAuthority, cert: x509.Certificate,
                                                    why: x509.ReasonFlags | None, expected: str) -> None:
    responder.set_status(cert, "revoked", revoked_at=NOW - 3 * DAY, reason=why)
    responder.stale()
    pol = policy([ca.certificate], ocsp_url=responder.url, failure="soft_fail")
    assert outcome(engine, cert, ca, pol) == expected


def _crl_file(tmp_path: Path, ca: CertificateAuthority, *, hold: x509.Certificate | None = None,
              this_update: dt.datetime, next_update: dt.datetime) -> tuple[Path, x509.CertificateRevocationList]:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
               .last_update(this_update).next_update(next_update))
    for serial, at in ca.revoked.items():
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
        if hold is not None and serial == hold.serial_number:
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags.certificate_hold), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca.key, hashes.SHA256())
    path = tmp_path / "ca.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    return path, crl


@pytest.mark.parametrize(("on_hold", "expected"), [(False, "revoked"), (True, "soft_fail:revocation_stale")],
                         ids=["revoked-for-good", "on-hold"])
def test_a_stale_crl_listing_the_card_is_no_soft_failure(tmp_path: Path, engine: RevocationChecker,
                                                         ca: CertificateAuthority, cert: x509.Certificate,
                                                         on_hold: bool, expected: str) -> None:
    ca.revoke(cert, NOW - 5 * DAY)
    path, crl = _crl_file(tmp_path, ca, hold=cert if on_hold else None, this_update=NOW - 3 * DAY,
                          next_update=NOW - DAY)
    pol = policy([ca.certificate], methods=("crl",), failure="soft_fail", distribution_points=False,
                 crl_files=[(path, crl)])
    assert outcome(engine, cert, ca, pol) == expected


HOLD, COMPROMISE = x509.ReasonFlags.certificate_hold, x509.ReasonFlags.key_compromise


@pytest.mark.parametrize(("reasons", "expected"), [
    pytest.param((HOLD, COMPROMISE), "revoked", id="on-hold-then-key-compromise"),
    pytest.param((COMPROMISE, HOLD), "revoked", id="key-compromise-then-on-hold"),
    pytest.param((HOLD, None), "revoked", id="on-hold-then-without-a-reason"),
    pytest.param((HOLD, HOLD), "soft_fail:revocation_stale", id="on-hold-twice"),
])
def test_a_serial_listed_twice_is_revoked_for_good_when_either_entry_says_so(
        tmp_path: Path, engine: RevocationChecker, ca: CertificateAuthority, cert: x509.Certificate,
        reasons: tuple[x509.ReasonFlags | None, ...], expected: str) -> None:
    """RFC 5280 §3.3, §5.3.1: a stale CRL that lists the card for good refuses it, also when an entry on hold for the
    same serial comes first (the first entry alone decided, and a soft-fail policy let the card through as stale)."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
               .last_update(NOW - 3 * DAY).next_update(NOW - DAY))
    for why in reasons:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(NOW - 5 * DAY)
        if why is not None:
            entry = entry.add_extension(x509.CRLReason(why), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca.key, hashes.SHA256())
    path = tmp_path / "ca.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    pol = policy([ca.certificate], methods=("crl",), failure="soft_fail", distribution_points=False,
                 crl_files=[(path, crl)])
    assert outcome(engine, cert, ca, pol) == expected


# --- a cached answer serves the policy asking now -----------------------------------------------------------------


def test_a_cached_answer_is_older_than_a_stricter_policy_allows(responder: OcspResponder, engine: RevocationChecker,
                                                                clock: FixedClock, ca: CertificateAuthority,
                                                                cert: x509.Certificate) -> None:
    generous = policy([ca.certificate], ocsp_url=responder.url, max_cache_time=3600)
    strict = policy([ca.certificate], ocsp_url=responder.url, max_cache_time=60)
    assert outcome(engine, cert, ca, generous) == "good:ocsp"
    responder.set_status(cert, "revoked")
    clock.advance(10 * MINUTE)
    responder.now = clock.now()

    assert outcome(engine, cert, ca, generous) == "good:ocsp"  # still within its hour
    assert outcome(engine, cert, ca, strict) == "revoked"     # fetched anew: the 10-minute-old one is too old


def test_an_answer_fetched_without_a_nonce_does_not_serve_a_policy_that_wants_one(
        responder: OcspResponder, engine: RevocationChecker, ca: CertificateAuthority, cert: x509.Certificate) -> None:
    assert outcome(engine, cert, ca, policy([ca.certificate], ocsp_url=responder.url, nonce=False)) == "good:ocsp"
    asked = responder.hits
    responder.drop_nonce()

    with_nonce = policy([ca.certificate], ocsp_url=responder.url, nonce=True)
    assert outcome(engine, cert, ca, with_nonce) == "revocation_response_invalid"
    assert responder.hits == asked + 1


# --- CRLs: the CA's name in other string types; cRLNumber ---------------------------------------------------------


def _source(location: str, ca: CertificateAuthority) -> CrlSource:
    return CrlSource(location, "file", (ca.certificate,), LIMITS, HOUR)


@pytest.mark.parametrize("encoding", ["the-cas-own", "printable-string"])
def test_a_crl_naming_its_ca_in_other_string_types_answers_for_its_certificates(
        ca: CertificateAuthority, cert: x509.Certificate, encoding: str) -> None:
    name = ca.certificate.subject
    if encoding == "printable-string":
        name = x509.Name([x509.RelativeDistinguishedName([
            x509.NameAttribute(a.oid, a.value, _type=_ASN1Type.PrintableString) if a.oid == x509.NameOID.COMMON_NAME
            else a for a in rdn]) for rdn in name.rdns])
        assert name == ca.certificate.subject
        assert name.public_bytes() != ca.certificate.subject.public_bytes()
    ca.revoke(cert, NOW - DAY)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(NOW - HOUR).next_update(NOW + DAY)
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                                    .revocation_date(NOW - DAY).build())
           .sign(ca.key, hashes.SHA256()))
    store = CrlStore(FixedClock(NOW), fetcher=None, shared=None)
    source = _source(f"/nonexistent/{encoding}.crl", ca)
    store.add(source, verify_crl(crl, [ca.certificate]))

    with pytest.raises(CertificateRejected) as caught:
        store.check(cert, ca.certificate, [source], NOW, SKEW)
    assert caught.value.reason == "revoked"


def test_an_earlier_crl_of_the_same_second_is_a_rollback(tmp_path: Path, ca: CertificateAuthority,
                                                         cert: x509.Certificate) -> None:
    """CRL #8 lists the card; #7, issued in the same second, copied back over it is refused, the card stays
    revoked."""
    this_update = NOW - HOUR

    def numbered(number: int, *revoked: x509.Certificate) -> bytes:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
                   .last_update(this_update).next_update(NOW + DAY).add_extension(x509.CRLNumber(number),
                                                                                 critical=False))
        for c in revoked:
            builder = builder.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(c.serial_number)
                                                      .revocation_date(this_update).build())
        return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    path = tmp_path / "ca.crl"
    clock = FixedClock(NOW)
    store = CrlStore(clock, fetcher=None, shared=None)
    source = _source(str(path), ca)
    state = store.add(source)
    for step, der in enumerate((numbered(8, cert), numbered(7))):
        path.write_bytes(der)
        os.utime(path, (1_000_000 + step, 1_000_000 + step))
        clock.advance(dt.timedelta(seconds=11))
        store.refresh(state, force=True)
        with pytest.raises(CertificateRejected) as caught:
            store.check(cert, ca.certificate, [source], clock.now(), SKEW)
        assert caught.value.reason == "revoked"
    assert state.last_error is not None
    assert "cRLNumber 7" in state.last_error
