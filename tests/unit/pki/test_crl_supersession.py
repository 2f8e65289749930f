"""Which CRL decides, when the broker holds several of one CA (RFC 5280 §3.3, §5.2.3, §5.3.1, §6.3.3).

* Revocation is final: a CRL that lists the card for good refuses it, whether it is the freshest usable one or
  not. A later CRL with a shorter life (an emergency CRL) that has gone stale must not be hidden by an older
  one still inside its validity: the older one is superseded.
* A hold on a later, stale CRL supersedes an older CRL's "good": the status is not known (``revocation_stale``).
* removeFromCRL (§5.3.1: for delta CRLs) in a complete CRL is no revocation (§6.3.3 (k): UNREVOKED).
* A certificate whose CRL distribution points each cover only some reasons (§4.2.1.13 ``reasons``) cannot be
  settled for the others (§6.3.3: the reasons mask never reaches all-reasons): ``revocation_unavailable``.

The CRLs are configured files (tests/factories/pki.py ``crl_policy``), judged by the engine a login uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.clock import FixedClock
from broker.errors import CertificateRejected
from broker.pki.revocation.crls import CrlStore
from broker.pki.revocation.engine import RevocationOutcome
from tests.factories.pki import Hierarchy, checker, crl_policy
from tests.factories.pki_cases import NOW, reissue
from tests.factories.pki_cases import crl as scoped_crl

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


def _crl(h: Hierarchy, *, this_update: dt.datetime, next_update: dt.datetime, number: int,
         entries: Sequence[x509.RevokedCertificate] = ()) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(h.issuing.certificate.subject)
               .last_update(this_update).next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False))
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(h.issuing.key, hashes.SHA256())


def _entry(cert: x509.Certificate, reason: x509.ReasonFlags | None) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(NOW - 3 * DAY)
    if reason is not None:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    return builder.build()


def outcome(h: Hierarchy, crls: Sequence[x509.CertificateRevocationList], cert: x509.Certificate) -> str:
    """The reason code, or ``good`` (the CA's own status from a fresh root CRL)."""
    policy = crl_policy((h.root.certificate, h.issuing.certificate), [*crls, h.root.crl()])
    engine = checker(NOW)
    engine.register(policy)
    try:
        result: RevocationOutcome = engine.check([cert, h.issuing.certificate, h.root.certificate], policy)
    except CertificateRejected as exc:
        return exc.reason
    assert [c.status for c in result.checked] == ["good", "good"]
    return "good"


OLDER_USABLE = {"this_update": NOW - 10 * DAY, "next_update": NOW + 20 * DAY}
NEWER_STALE = {"this_update": NOW - 2 * DAY, "next_update": NOW - DAY}


@pytest.mark.parametrize(("reason", "expected"), [
    (x509.ReasonFlags.key_compromise, "revoked"),
    (None, "revoked"),
    (x509.ReasonFlags.certificate_hold, "revocation_stale"),
], ids=["key-compromise", "no-reason", "on-hold"])
def test_a_later_stale_crl_listing_the_card_is_not_hidden_by_an_older_usable_one(
        h: Hierarchy, reason: x509.ReasonFlags | None, expected: str) -> None:
    """An emergency CRL (short life) lists the card, then its server is blocked: the regular CRL, older and
    still valid, says nothing about the card and is superseded (§5.2.3)."""
    cert = h.leaf().certificate
    older = _crl(h, **OLDER_USABLE, number=1)
    newer = _crl(h, **NEWER_STALE, number=2, entries=[_entry(cert, reason)])

    assert outcome(h, [older, newer], cert) == expected
    assert outcome(h, [newer, older], cert) == expected  # the order of the sources says nothing


def test_an_older_crl_listing_the_card_for_good_still_refuses_it(h: Hierarchy) -> None:
    """A CRL that lists a card for good refuses it whatever a later one leaves out (revocation is final; a CA
    drops entries only once the certificate has expired)."""
    cert = h.leaf().certificate
    older = _crl(h, this_update=NOW - 10 * DAY, next_update=NOW - 5 * DAY, number=1,
                 entries=[_entry(cert, x509.ReasonFlags.key_compromise)])
    newer = _crl(h, this_update=NOW - DAY, next_update=NOW + DAY, number=2)

    assert outcome(h, [older, newer], cert) == "revoked"


def test_an_older_crls_hold_lifted_by_the_usable_crl_is_good(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    older = _crl(h, this_update=NOW - 10 * DAY, next_update=NOW - 5 * DAY, number=1,
                 entries=[_entry(cert, x509.ReasonFlags.certificate_hold)])
    newer = _crl(h, this_update=NOW - DAY, next_update=NOW + DAY, number=2)

    assert outcome(h, [older, newer], cert) == "good"


def test_the_freshest_usable_crl_still_decides_when_nothing_later_is_held(h: Hierarchy) -> None:
    cert, other = h.leaf().certificate, h.leaf(common_name="Bo").certificate
    usable = _crl(h, this_update=NOW - DAY, next_update=NOW + DAY, number=3, entries=[_entry(other, None)])

    assert outcome(h, [usable], cert) == "good"
    assert outcome(h, [usable], other) == "revoked"


def test_a_later_crl_listing_a_responders_certificate_counts_for_it(h: Hierarchy) -> None:
    """``CrlStore.held_revocation`` (a delegated OCSP responder's certificate): the same rule."""
    responder = h.leaf(common_name="OCSP responder").certificate
    older = _crl(h, **OLDER_USABLE, number=1)
    newer = _crl(h, **NEWER_STALE, number=2, entries=[_entry(responder, x509.ReasonFlags.certificate_hold)])
    policy = crl_policy((h.root.certificate, h.issuing.certificate), [older, newer])
    store = CrlStore(FixedClock(NOW), fetcher=None, shared=None)
    for source in policy.crl_sources:
        store.add(source, dict(policy.preloaded)[source.id])

    assert store.held_revocation(responder, h.issuing.certificate, policy.crl_sources, NOW,
                                 dt.timedelta(minutes=5)) == NOW - 3 * DAY


# --- entries and distribution points that settle less than they seem to ------------------------------------------


def test_remove_from_crl_in_a_complete_crl_is_no_revocation(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    crl = _crl(h, this_update=NOW - DAY, next_update=NOW + DAY, number=5,
               entries=[_entry(cert, x509.ReasonFlags.remove_from_crl)])

    assert outcome(h, [crl], cert) == "good"


POINT = x509.UniformResourceIdentifier("http://crl.kommun-a.example.se/keycompromise.crl")


def _scoped_to_point(h: Hierarchy) -> x509.CertificateRevocationList:
    idp = x509.IssuingDistributionPoint(full_name=[POINT], relative_name=None, only_contains_user_certs=False,
                                        only_contains_ca_certs=False, only_some_reasons=None, indirect_crl=False,
                                        only_contains_attribute_certs=False)
    return scoped_crl(h.issuing, extensions=[(idp, True)])


def _with_points(h: Hierarchy, *points: x509.DistributionPoint) -> x509.Certificate:
    return reissue(h.leaf().certificate, h.issuing, extra=[x509.CRLDistributionPoints(list(points))])


def test_distribution_points_for_some_reasons_only_settle_nothing(h: Hierarchy) -> None:
    partial = x509.DistributionPoint(full_name=[POINT], relative_name=None, crl_issuer=None,
                                     reasons=frozenset({x509.ReasonFlags.key_compromise}))

    assert outcome(h, [_scoped_to_point(h)], _with_points(h, partial)) == "revocation_unavailable"


def test_a_distribution_point_for_all_reasons_beside_a_partial_one_settles_it(h: Hierarchy) -> None:
    partial = x509.DistributionPoint(full_name=[x509.UniformResourceIdentifier("http://crl.example/other.crl")],
                                     relative_name=None, crl_issuer=None,
                                     reasons=frozenset({x509.ReasonFlags.ca_compromise}))
    whole = x509.DistributionPoint(full_name=[POINT], relative_name=None, crl_issuer=None, reasons=None)

    assert outcome(h, [_scoped_to_point(h)], _with_points(h, partial, whole)) == "good"


def test_a_complete_crl_settles_a_certificate_whose_points_cover_some_reasons(h: Hierarchy) -> None:
    """The CRLs "not specified in a distribution point but issued by the certificate issuer" count for every
    reason (RFC 5280 §6.3.3): a configured complete CRL settles the card, good or revoked, under any policy."""
    partial = x509.DistributionPoint(full_name=[POINT], relative_name=None, crl_issuer=None,
                                     reasons=frozenset({x509.ReasonFlags.key_compromise}))
    cert = _with_points(h, partial)
    listed = _crl(h, this_update=NOW - DAY, next_update=NOW + DAY, number=7,
                  entries=[_entry(cert, x509.ReasonFlags.key_compromise)])

    assert outcome(h, [_crl(h, this_update=NOW - DAY, next_update=NOW + DAY, number=7)], cert) == "good"
    assert outcome(h, [listed], cert) == "revoked"
    assert outcome(h, [_scoped_to_point(h)], cert) == "revocation_unavailable"  # only the point's CRL


def test_a_held_complete_crl_settles_the_card_when_its_points_crl_is_fresher(h: Hierarchy) -> None:
    """With distribution points fetched beside a configured complete CRL, the point's own CRL is often the
    fresher: the complete one still settles the card (good, or revoked when it lists it)."""
    partial = x509.DistributionPoint(full_name=[POINT], relative_name=None, crl_issuer=None,
                                     reasons=frozenset({x509.ReasonFlags.key_compromise}))
    cert = _with_points(h, partial)
    complete = _crl(h, this_update=NOW - 2 * DAY, next_update=NOW + 5 * DAY, number=7)
    on_hold = _crl(h, this_update=NOW - 2 * DAY, next_update=NOW + 5 * DAY, number=7,
                   entries=[_entry(cert, x509.ReasonFlags.certificate_hold)])

    assert outcome(h, [complete, _scoped_to_point(h)], cert) == "good"
    assert outcome(h, [on_hold, _scoped_to_point(h)], cert) == "revoked"


def test_a_point_crl_for_some_reasons_does_not_lift_a_later_complete_crls_hold(h: Hierarchy) -> None:
    """The card's point covers key compromise only: its CRL, however fresh, says nothing of a certificateHold that
    a complete CRL later than the one deciding lists (that one gone stale): the status is not known."""
    partial = x509.DistributionPoint(full_name=[POINT], relative_name=None, crl_issuer=None,
                                     reasons=frozenset({x509.ReasonFlags.key_compromise}))
    cert = _with_points(h, partial)
    older_complete = _crl(h, **OLDER_USABLE, number=1)
    later_on_hold = _crl(h, **NEWER_STALE, number=2, entries=[_entry(cert, x509.ReasonFlags.certificate_hold)])

    assert outcome(h, [older_complete, later_on_hold], cert) == "revocation_stale"
    assert outcome(h, [older_complete, later_on_hold, _scoped_to_point(h)], cert) == "revocation_stale"
