"""CRLs verified once and indexed by serial (broker.pki.crl; RFC 5280 §5, §6.3)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from broker.errors import CertificateRejected
from broker.pki.crl import CrlIndex, VerifiedCrl, spki, verify_crl
from tests.factories.pki import Hierarchy
from tests.factories.pki_cases import NOW, SECOND, crl, impostor, revoking

DAY = dt.timedelta(days=1)
URI = x509.UniformResourceIdentifier("http://crl.kommun-a.example.se/person-ca.crl")


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


def cas(h: Hierarchy) -> tuple[x509.Certificate, ...]:
    return (h.root.certificate, h.issuing.certificate)


def chain(h: Hierarchy, leaf: x509.Certificate) -> list[x509.Certificate]:
    return [leaf, h.issuing.certificate, h.root.certificate]


def idp(*, user: bool = False, ca: bool = False, attribute: bool = False, indirect: bool = False,
        reasons: frozenset[x509.ReasonFlags] | None = None) -> tuple[x509.ExtensionType, bool]:
    """An IssuingDistributionPoint extension (always critical, RFC 5280 §5.2.5)."""
    value = x509.IssuingDistributionPoint(
        full_name=[URI], relative_name=None, only_contains_user_certs=user, only_contains_ca_certs=ca,
        only_some_reasons=reasons, indirect_crl=indirect, only_contains_attribute_certs=attribute,
    )
    return value, True


# --- verify_crl ---

REFUSED = [
    pytest.param(lambda h: h.issuing.crl(), lambda h: (Hierarchy.build(NOW, "Kommun B").issuing.certificate,),
                 "is not a configured CA", id="issuer-not-a-configured-ca"),
    pytest.param(lambda h: impostor(h.issuing).crl(), cas, "signature does not verify",
                 id="signed-by-another-key-with-same-issuer-name"),
    pytest.param(lambda h: crl(h.issuing, extensions=[(x509.DeltaCRLIndicator(41), True)]), cas,
                 "delta CRLs are not supported", id="delta-crl"),
    pytest.param(lambda h: crl(h.issuing, extensions=[
                     (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)]),
                 cas, "unsupported critical extension 1.3.6.1.4.1.99999.1", id="unknown-critical-extension"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(user=True)]), cas, "partitioned or indirect",
                 id="partitioned-only-user-certs"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(ca=True)]), cas, "partitioned or indirect",
                 id="partitioned-only-ca-certs"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(attribute=True)]), cas, "partitioned or indirect",
                 id="partitioned-only-attribute-certs"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(reasons=frozenset({x509.ReasonFlags.key_compromise}))]),
                 cas, "partitioned or indirect", id="partitioned-only-some-reasons"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(indirect=True)]), cas, "partitioned or indirect",
                 id="indirect-crl"),
]


@pytest.mark.parametrize(("make_crl", "make_cas", "message"), REFUSED)
def test_verify_crl_refuses(h: Hierarchy, make_crl: Callable[[Hierarchy], x509.CertificateRevocationList],
                            make_cas: Callable[[Hierarchy], tuple[x509.Certificate, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        verify_crl(make_crl(h), make_cas(h))


@pytest.mark.parametrize("make_crl", [
    pytest.param(lambda h: h.issuing.crl(), id="plain-full-crl"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp()]), id="issuing-distribution-point-full-scope"),
])
def test_verify_crl_accepts(h: Hierarchy, make_crl: Callable[[Hierarchy], x509.CertificateRevocationList]) -> None:
    verified = verify_crl(make_crl(h), cas(h))
    assert verified.issuer_der == h.issuing.certificate.subject.public_bytes()
    assert verified.signer_spki == spki(h.issuing.certificate)


def test_verified_crl_holds_times_and_revocations(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    revoked_at = NOW - 3 * DAY
    ca = revoking(h.issuing, cert, at=revoked_at)
    verified = verify_crl(ca.crl(this_update=NOW - DAY, next_update=NOW + 6 * DAY), cas(h))
    assert (verified.this_update, verified.next_update) == (NOW - DAY, NOW + 6 * DAY)
    assert dict(verified.revoked) == {cert.serial_number: revoked_at}


# --- CrlIndex.check_path ---


def index(h: Hierarchy, *crls: x509.CertificateRevocationList) -> CrlIndex:
    return CrlIndex([verify_crl(c, cas(h)) for c in crls])


THIS_UPDATE = NOW - 3600 * SECOND
NEXT_UPDATE = NOW + 7 * DAY


@pytest.fixture(scope="module")
def bounded(h: Hierarchy) -> tuple[CrlIndex, list[x509.Certificate]]:
    crls = [h.issuing.crl(this_update=THIS_UPDATE, next_update=NEXT_UPDATE),
            h.root.crl(this_update=THIS_UPDATE - DAY, next_update=NEXT_UPDATE + DAY)]
    return index(h, *crls), chain(h, h.leaf(valid_until=NOW + 30 * DAY).certificate)


@pytest.mark.parametrize("at", [
    pytest.param(THIS_UPDATE, id="exactly-this-update"),
    pytest.param(NEXT_UPDATE, id="exactly-next-update"),
])
def test_crl_usable_from_this_update_through_next_update(bounded: tuple[CrlIndex, list[x509.Certificate]],
                                                         at: dt.datetime) -> None:
    crls, path = bounded
    assert crls.check_path(path, at) == NEXT_UPDATE


@pytest.mark.parametrize(("at", "reason"), [
    pytest.param(THIS_UPDATE - SECOND, "revocation_unavailable", id="one-second-before-this-update"),
    pytest.param(NEXT_UPDATE + SECOND, "revocation_stale", id="one-second-after-next-update"),
])
def test_crl_outside_its_window(bounded: tuple[CrlIndex, list[x509.Certificate]], at: dt.datetime,
                                reason: str) -> None:
    crls, path = bounded
    with pytest.raises(CertificateRejected) as caught:
        crls.check_path(path, at)
    assert caught.value.reason == reason


def test_stale_crl_names_its_next_update_for_the_error_page(bounded: tuple[CrlIndex, list[x509.Certificate]]) -> None:
    crls, path = bounded
    with pytest.raises(CertificateRejected) as caught:
        crls.check_path(path, NEXT_UPDATE + DAY)
    assert caught.value.params == {"next_update": NEXT_UPDATE.date().isoformat()}


def test_revoked_leaf_gives_revocation_date(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    crls = index(h, revoking(h.issuing, cert, at=dt.datetime(2026, 2, 27, 8, tzinfo=dt.UTC)).crl(), h.root.crl())
    with pytest.raises(CertificateRejected) as caught:
        crls.check_path(chain(h, cert), NOW)
    assert caught.value.reason == "revoked"
    assert caught.value.params == {"revocation_date": "2026-02-27"}


def test_revoked_intermediate_is_named_in_detail(h: Hierarchy) -> None:
    crls = index(h, h.issuing.crl(), revoking(h.root, h.issuing.certificate).crl())
    with pytest.raises(CertificateRejected) as caught:
        crls.check_path(chain(h, h.leaf().certificate), NOW)
    assert caught.value.reason == "revoked"
    assert h.issuing.certificate.subject.rfc4514_string() in caught.value.detail


@pytest.mark.parametrize("newest_first", [pytest.param(True, id="newest-first"),
                                          pytest.param(False, id="newest-last")])
def test_most_recent_crl_of_an_issuer_decides(h: Hierarchy, newest_first: bool) -> None:
    cert = h.leaf().certificate
    older = h.issuing.crl(this_update=NOW - 2 * DAY, next_update=NOW + 5 * DAY)  # before the revocation
    newer = revoking(h.issuing, cert).crl(this_update=NOW - 3600 * SECOND, next_update=NOW + 7 * DAY)
    crls = index(h, *((newer, older) if newest_first else (older, newer)), h.root.crl())
    assert len(crls) == 3
    with pytest.raises(CertificateRejected) as caught:
        crls.check_path(chain(h, cert), NOW)
    assert caught.value.reason == "revoked"


def test_crl_of_previous_ca_key_does_not_cover_certificates_of_new_key(h: Hierarchy) -> None:
    # Key rollover: a new CA certificate with the same name. The old key's CRL says nothing about its certificates.
    renewed = h.root.subordinate("Kommun A Test Person CA", organization="Kommun A")
    assert renewed.certificate.subject == h.issuing.certificate.subject
    all_cas = (*cas(h), renewed.certificate)
    crls = CrlIndex([verify_crl(h.issuing.crl(), all_cas), verify_crl(h.root.crl(), all_cas)])
    cert = renewed.issue(h.profile()).certificate
    with pytest.raises(CertificateRejected) as caught:
        crls.check_path([cert, renewed.certificate, h.root.certificate], NOW)
    assert caught.value.reason == "revocation_unavailable"


def test_path_of_anchor_alone_needs_no_crl(h: Hierarchy) -> None:
    assert CrlIndex([]).check_path([h.root.certificate], NOW) == NOW


# --- a large CRL: verified once, then looked up by serial ---

EXTRA_SERIALS = 100_000


@pytest.fixture(scope="module")
def large() -> tuple[Hierarchy, VerifiedCrl, x509.Certificate, x509.Certificate]:
    h = Hierarchy.build(NOW, "Kommun Stor")
    revoked_cert, good_cert = h.leaf().certificate, h.leaf().certificate
    # tests.factories.pki_cases.crl, not CertificateAuthority.crl(extra_serials=...): same entries, but the
    # demo builder adds them one at a time, which is quadratic (~20 s here).
    big = crl(revoking(h.issuing, revoked_cert), extra_serials=EXTRA_SERIALS)
    return h, verify_crl(big, (h.root.certificate, h.issuing.certificate)), revoked_cert, good_cert


def test_large_crl_is_indexed_by_serial(large: tuple[Hierarchy, VerifiedCrl, x509.Certificate, x509.Certificate],
                                        ) -> None:
    _h, verified, revoked_cert, good_cert = large
    assert len(verified.revoked) == EXTRA_SERIALS + 1
    assert revoked_cert.serial_number in verified.revoked
    assert 10**30 + EXTRA_SERIALS - 1 in verified.revoked
    assert good_cert.serial_number not in verified.revoked


def test_large_crl_answers_revoked_and_not_revoked(
        large: tuple[Hierarchy, VerifiedCrl, x509.Certificate, x509.Certificate]) -> None:
    h, verified, revoked_cert, good_cert = large
    crls = CrlIndex([verified, verify_crl(h.root.crl(), (h.root.certificate, h.issuing.certificate))])
    assert crls.check_path(chain(h, good_cert), NOW) == verified.next_update
    with pytest.raises(CertificateRejected) as caught:
        crls.check_path(chain(h, revoked_cert), NOW)
    assert caught.value.reason == "revoked"
