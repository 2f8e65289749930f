"""CRLs verified once and indexed by serial (broker.pki.revocation.crls; RFC 5280 §5, §6.3), and the CRL
checks of a whole path through the revocation checker (broker.pki.revocation.engine)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ObjectIdentifier

from broker.config.schema import CrlConfig, RevocationConfig
from broker.config.values import Duration
from broker.demo.certificates import CertificateAuthority
from broker.errors import CertificateRejected
from broker.pki.revocation.crls import CrlSource, VerifiedCrl, spki, verify_crl
from broker.pki.revocation.engine import RevocationOutcome, RevocationPolicy
from broker.pki.revocation.http import FetchLimits
from tests.factories.pki import Hierarchy, checker, crl_policy
from tests.factories.pki_cases import (
    NOW,
    SECOND,
    crl,
    crl_signing_key,
    impostor,
    pss_sha1_resigned,
    reissue,
    revoking,
    window_inverted,
)

DAY = dt.timedelta(days=1)
URI = x509.UniformResourceIdentifier("http://crl.kommun-a.example.se/person-ca.crl")


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


def cas(h: Hierarchy) -> tuple[x509.Certificate, ...]:
    return (h.root.certificate, h.issuing.certificate)


def chain(h: Hierarchy, leaf: x509.Certificate) -> list[x509.Certificate]:
    return [leaf, h.issuing.certificate, h.root.certificate]


@functools.cache
def rsa_hierarchy() -> Hierarchy:
    """A hierarchy of RSA CAs (RSASSA-PSS needs one), made once when a case asks for it."""
    h = Hierarchy.build(NOW, "Kommun R", key="rsa2048")
    h.issuing = h.root.subordinate("Kommun R Test Person CA", organization="Kommun R", key="rsa2048")
    return h


def rsa_cas(_h: Hierarchy) -> tuple[x509.Certificate, ...]:
    return (rsa_hierarchy().root.certificate, rsa_hierarchy().issuing.certificate)


def idp(*, user: bool = False, ca: bool = False, attribute: bool = False, indirect: bool = False,
        reasons: frozenset[x509.ReasonFlags] | None = None, names: Sequence[x509.GeneralName] | None = (URI,),
        relative: x509.RelativeDistinguishedName | None = None) -> tuple[x509.ExtensionType, bool]:
    """An IssuingDistributionPoint extension (always critical, RFC 5280 §5.2.5)."""
    value = x509.IssuingDistributionPoint(
        full_name=list(names) if names else None, relative_name=relative, only_contains_user_certs=user,
        only_contains_ca_certs=ca, only_some_reasons=reasons, indirect_crl=indirect,
        only_contains_attribute_certs=attribute,
    )
    return value, True


def _entry_extension(ca: CertificateAuthority, cert: x509.Certificate,
                     critical: bool) -> x509.CertificateRevocationList:
    """``ca``'s CRL listing ``cert`` with a certificateIssuer entry extension (the indirect-CRL one)."""
    entry = (x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(NOW - DAY)
             .add_extension(x509.CertificateIssuer([x509.DirectoryName(ca.certificate.subject)]), critical=critical)
             .build())
    return (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject).last_update(NOW - DAY)
            .next_update(NOW + DAY).add_revoked_certificate(entry).sign(ca.key, hashes.SHA256()))


def _entry_reason_twice(ca: CertificateAuthority, cert: x509.Certificate) -> x509.CertificateRevocationList:
    """``ca``'s CRL listing ``cert`` with two reasonCode entry extensions (the builder's constructor takes them)."""
    reasons = [x509.CRLReason(x509.ReasonFlags.key_compromise), x509.CRLReason(x509.ReasonFlags.certificate_hold)]
    entry = x509.RevokedCertificateBuilder(serial_number=cert.serial_number, revocation_date=NOW - DAY,
                                           extensions=[x509.Extension(r.oid, False, r) for r in reasons]).build()
    return (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject).last_update(NOW - DAY)
            .next_update(NOW + DAY).add_revoked_certificate(entry).sign(ca.key, hashes.SHA256()))


def _without_crl_sign(h: Hierarchy) -> tuple[x509.Certificate, ...]:
    """The issuing CA's certificate again (same name and key), its keyUsage without cRLSign."""
    issuing = h.issuing.certificate
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    reissued = (x509.CertificateBuilder().subject_name(issuing.subject).issuer_name(issuing.issuer)
                .public_key(h.issuing.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(issuing.not_valid_before_utc).not_valid_after(issuing.not_valid_after_utc)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(usage, critical=True).sign(h.root.key, hashes.SHA256()))
    return (h.root.certificate, reissued)


def _issuer_value_as_bit_string(ca: CertificateAuthority) -> x509.CertificateRevocationList:
    """``ca``'s CRL with the organizationName of its issuer retagged as a BIT STRING: cryptography loads it, and
    fails with a TypeError (no ValueError) only when the issuer is first read."""
    der = ca.crl().public_bytes(Encoding.DER)
    organization = b"\x06\x03\x55\x04\x0a\x0c"  # organizationName, UTF8String
    at = der.index(organization) + len(organization) - 1
    return x509.load_der_x509_crl(der[:at] + b"\x03" + der[at + 1:])


# --- verify_crl ---

REFUSED = [
    pytest.param(lambda h: h.issuing.crl(), lambda h: (Hierarchy.build(NOW, "Kommun B").issuing.certificate,),
                 "is not a configured CA", id="issuer-not-a-configured-ca"),
    pytest.param(lambda h: impostor(h.issuing).crl(), cas, "signature does not verify",
                 id="signed-by-another-key-with-same-issuer-name"),
    pytest.param(lambda h: h.issuing.crl(), _without_crl_sign, "may not sign CRLs .*lacks cRLSign",
                 id="issuer-key-usage-without-crl-sign"),
    pytest.param(lambda h: crl(h.issuing, extensions=[(x509.DeltaCRLIndicator(41), True)]), cas,
                 "delta CRLs are not supported", id="delta-crl"),
    pytest.param(lambda h: crl(h.issuing, extensions=[(x509.DeltaCRLIndicator(41), False)]), cas,
                 "delta CRLs are not supported", id="delta-crl-indicator-not-marked-critical"),
    pytest.param(lambda h: crl(h.issuing, extensions=[
                     (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)]),
                 cas, "unsupported critical extension 1.3.6.1.4.1.99999.1", id="unknown-critical-extension"),
    pytest.param(lambda h: _entry_extension(h.issuing, h.leaf().certificate, critical=True), cas,
                 "entry for serial .* unsupported critical extension 2.5.29.29", id="critical-entry-extension"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(attribute=True)]), cas, "indirect CRLs and CRLs for only",
                 id="partitioned-only-attribute-certs"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(reasons=frozenset({x509.ReasonFlags.key_compromise}))]),
                 cas, "indirect CRLs and CRLs for only some reasons", id="partitioned-only-some-reasons"),
    pytest.param(lambda h: crl(h.issuing, extensions=[idp(indirect=True)]), cas, "indirect CRLs and CRLs for only",
                 id="indirect-crl"),
    # each extension at most once (RFC 5280 §5.2, as §4.2 for certificates): cryptography notices only when the
    # extensions are read, and says so with an exception of its own, which callers expecting ValueError let through
    # what is signed is held to SHA-256 or stronger, as certificates and OCSP answers are: cryptography refuses
    # a SHA-1 CRL under PKCS #1 v1.5 but verifies one under RSASSA-PSS
    pytest.param(lambda h: pss_sha1_resigned(rsa_hierarchy().issuing.crl(), rsa_hierarchy().issuing), rsa_cas,
                 "signed with SHA1, which is not accepted", id="rsassa-pss-with-sha1"),
    pytest.param(lambda h: crl(h.issuing, extensions=[(x509.CRLNumber(5), False)]), cas,
                 "the CRL has extension 2.5.29.20 more than once", id="crl-extension-twice"),
    pytest.param(lambda h: _entry_reason_twice(h.issuing, h.leaf().certificate), cas,
                 "the CRL entry for serial .* has extension 2.5.29.21 more than once", id="entry-extension-twice"),
    # a part cryptography reads only when first asked, and then refuses with an exception of its own
    pytest.param(lambda h: _issuer_value_as_bit_string(h.issuing), cas, "the CRL cannot be read .*TypeError",
                 id="issuer-name-value-of-a-type-no-name-holds"),
]


@pytest.mark.parametrize(("make_crl", "make_cas", "message"), REFUSED)
def test_verify_crl_refuses(h: Hierarchy, make_crl: Callable[[Hierarchy], x509.CertificateRevocationList],
                            make_cas: Callable[[Hierarchy], tuple[x509.Certificate, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        verify_crl(make_crl(h), make_cas(h))


def test_a_non_critical_entry_extension_is_fine(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    assert verify_crl(_entry_extension(h.issuing, cert, critical=False), cas(h)).revoked == {cert.serial_number}


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
    assert verified.revoked == frozenset({cert.serial_number})
    assert verified.revoked_at(cert.serial_number) == revoked_at
    assert verified.revoked_at(cert.serial_number + 1) is None


# --- a whole path through the checker (CRL-only policy, CRLs as configured files) ---

# The smallest configurable clock tolerance (1ms; the configuration refuses 0) and a long cache cap, so that the
# CRLs' own thisUpdate/nextUpdate decide to the second.
EXACT = {"clock_skew": Duration(0.001), "max_cache_time": Duration(365 * 86400)}


def check_path(h: Hierarchy, crls: Sequence[x509.CertificateRevocationList], path: Sequence[x509.Certificate],
               at: dt.datetime, *, ca_certs: Sequence[x509.Certificate] | None = None) -> RevocationOutcome:
    """Revocation of ``path`` (leaf first) at ``at`` under a CRL-only policy over ``crls``."""
    policy = crl_policy(ca_certs if ca_certs is not None else cas(h), crls, **EXACT)
    check = checker(at)
    check.register(policy)
    return check.check(path, policy)


THIS_UPDATE = NOW - 3600 * SECOND
NEXT_UPDATE = NOW + 7 * DAY


@pytest.fixture(scope="module")
def bounded(h: Hierarchy) -> tuple[list[x509.CertificateRevocationList], list[x509.Certificate]]:
    crls = [h.issuing.crl(this_update=THIS_UPDATE, next_update=NEXT_UPDATE),
            h.root.crl(this_update=THIS_UPDATE - DAY, next_update=NEXT_UPDATE + DAY)]
    return crls, chain(h, h.leaf(valid_until=NOW + 30 * DAY).certificate)


Bounded = tuple[list[x509.CertificateRevocationList], list[x509.Certificate]]


@pytest.mark.parametrize("at", [
    pytest.param(THIS_UPDATE, id="exactly-this-update"),
    pytest.param(NEXT_UPDATE, id="exactly-next-update"),
])
def test_crl_usable_from_this_update_through_next_update(h: Hierarchy, bounded: Bounded, at: dt.datetime) -> None:
    crls, path = bounded
    outcome = check_path(h, crls, path, at)
    assert outcome.summary == "crl"
    assert outcome.valid_until == NEXT_UPDATE
    assert [(c.status, c.method) for c in outcome.checked] == [("good", "crl"), ("good", "crl")]


@pytest.mark.parametrize(("at", "reason"), [
    pytest.param(THIS_UPDATE - SECOND, "revocation_unavailable", id="one-second-before-this-update"),
    pytest.param(NEXT_UPDATE + SECOND, "revocation_stale", id="one-second-after-next-update"),
])
def test_crl_outside_its_window(h: Hierarchy, bounded: Bounded, at: dt.datetime, reason: str) -> None:
    crls, path = bounded
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, crls, path, at)
    assert caught.value.reason == reason


def test_a_crl_whose_next_update_is_before_its_this_update_is_not_used(h: Hierarchy) -> None:
    """A window that holds no instant (RFC 5280 §5.1.2.5: the next CRL is issued no later than nextUpdate): with
    both ends within the clock skew of now it passed either check on its own, and its "good" was taken."""
    inverted = window_inverted(h.issuing, NOW - 60 * SECOND, NOW - 120 * SECOND)
    policy = crl_policy(cas(h), [inverted, h.root.crl()], clock_skew=Duration(300),
                        max_cache_time=EXACT["max_cache_time"])
    check = checker(NOW)
    check.register(policy)
    with pytest.raises(CertificateRejected) as caught:
        check.check(chain(h, h.leaf().certificate), policy)
    assert caught.value.reason == "revocation_response_invalid"
    assert "before its thisUpdate" in caught.value.detail


def test_a_revocation_on_a_crl_whose_window_is_inverted_still_counts(h: Hierarchy) -> None:
    """Revocation is final (RFC 5280 §3.3): a CRL that cannot be used for "good" still proves it."""
    cert = h.leaf().certificate
    inverted = window_inverted(revoking(h.issuing, cert), NOW - 60 * SECOND, NOW - 120 * SECOND)
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, [inverted, h.root.crl()], chain(h, cert), NOW)
    assert caught.value.reason == "revoked"


def test_stale_crl_names_its_next_update_for_the_error_page(h: Hierarchy, bounded: Bounded) -> None:
    crls, path = bounded
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, crls, path, NEXT_UPDATE + DAY)
    assert caught.value.params == {"next_update": NEXT_UPDATE.date().isoformat()}


def test_revoked_leaf_gives_revocation_date(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    crls = [revoking(h.issuing, cert, at=dt.datetime(2026, 2, 27, 8, tzinfo=dt.UTC)).crl(), h.root.crl()]
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, crls, chain(h, cert), NOW)
    assert caught.value.reason == "revoked"
    assert caught.value.params == {"revocation_date": "2026-02-27"}


def test_revoked_intermediate_is_named_in_detail(h: Hierarchy) -> None:
    crls = [h.issuing.crl(), revoking(h.root, h.issuing.certificate).crl()]
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, crls, chain(h, h.leaf().certificate), NOW)
    assert caught.value.reason == "revoked"
    assert h.issuing.certificate.subject.rfc4514_string() in caught.value.detail


@pytest.mark.parametrize("newest_first", [pytest.param(True, id="newest-first"),
                                          pytest.param(False, id="newest-last")])
def test_most_recent_crl_of_an_issuer_decides(h: Hierarchy, newest_first: bool) -> None:
    cert = h.leaf().certificate
    older = h.issuing.crl(this_update=NOW - 2 * DAY, next_update=NOW + 5 * DAY)  # before the revocation
    newer = revoking(h.issuing, cert).crl(this_update=NOW - 3600 * SECOND, next_update=NOW + 7 * DAY)
    crls = [*((newer, older) if newest_first else (older, newer)), h.root.crl()]
    policy = crl_policy(cas(h), crls, **EXACT)
    check = checker(NOW)
    check.register(policy)
    assert len(check.crls.states()) == 3
    assert all(state.crl is not None for state in check.crls.states())
    with pytest.raises(CertificateRejected) as caught:
        check.check(chain(h, cert), policy)
    assert caught.value.reason == "revoked"


# --- CRLs signed by another key of the CA's name: a separate CRL-signing key, the CA's other key across a key
# rollover (RFC 5280 §6.3.3 (f): the CRL issuer's path validated to the same trust anchor, keyUsage allowing
# cRLSign; PKITS 4.4.19-4.4.21, 4.5.1-4.5.7) ---

# the CRLs held, the path (leaf first), the configured CA certificates
KeySetup = tuple[list[x509.CertificateRevocationList], list[x509.Certificate], tuple[x509.Certificate, ...]]
KeyCase = Callable[[Hierarchy], KeySetup]


def _separate_key(h: Hierarchy, *, lists_card: bool = False, signer_revoked: bool = False,
                  foreign: bool = False) -> KeySetup:
    """The issuing CA's CRLs signed by a key of its own name certified by the root (by a stranger's root when
    ``foreign``), keyUsage cRLSign only; no CRL signed by the issuing CA's certificate key."""
    stranger = CertificateAuthority.root("Kommun X Test Root CA", NOW, organization="Kommun X")
    signer = crl_signing_key(h.issuing, stranger if foreign else None)
    cert = h.leaf().certificate
    root = revoking(h.root, signer.certificate) if signer_revoked else h.root
    crls = [(revoking(signer, cert) if lists_card else signer).crl(), root.crl()]
    return crls, chain(h, cert), (*cas(h), signer.certificate)


def _rollover(h: Hierarchy, *, card_of_new_key: bool, lists_card: bool) -> KeySetup:
    """The issuing CA re-keyed (a new certificate of its name from the root); only the other key's CRL is held."""
    renewed = h.root.subordinate("Kommun A Test Person CA", organization="Kommun A")
    card_ca, crl_ca = (renewed, h.issuing) if card_of_new_key else (h.issuing, renewed)
    cert = card_ca.issue(h.profile()).certificate
    crls = [(revoking(crl_ca, cert) if lists_card else crl_ca).crl(), h.root.crl()]
    return crls, [cert, card_ca.certificate, h.root.certificate], (*cas(h), renewed.certificate)


def _old_with_new(h: Hierarchy, *, lists_card: bool) -> KeySetup:
    """PKITS 4.5.1/4.5.2: the card issued by the old key, which the new key certifies (a self-issued certificate on
    the path); the CA's CRL signed by the new key only."""
    new = h.root.subordinate("Kommun A Test Person CA", organization="Kommun A")
    old_with_new = reissue(h.issuing.certificate, new)
    cert = h.leaf().certificate
    crls = [(revoking(new, cert) if lists_card else new).crl(), h.root.crl()]
    return crls, [cert, old_with_new, new.certificate, h.root.certificate], \
        (h.root.certificate, old_with_new, new.certificate)


def _self_issued_key(h: Hierarchy, *, lists_card: bool, own_crl: bool = True, key_revoked: bool = False
                     ) -> KeySetup:
    """PKITS 4.5.6/4.5.7: the issuing CA certifies a CRL-signing key of its own name (self-issued), whose CRL covers
    the CA's certificates, the CRL-signing certificate among them; the CA's own key's CRL (``own_crl``) may be
    held too, and list the CRL-signing certificate (``key_revoked``)."""
    signer = crl_signing_key(h.issuing, h.issuing)
    cert = h.leaf().certificate
    crls = [(revoking(signer, cert) if lists_card else signer).crl(), h.root.crl()]
    if own_crl:
        own = revoking(h.issuing, signer.certificate) if key_revoked else h.issuing
        crls.append(own.crl(this_update=NOW - 2 * 3600 * SECOND))
    return crls, chain(h, cert), (*cas(h), signer.certificate)


KEY_CASES: list[tuple[str, KeyCase, str | None, str]] = [
    # name, the case, the reason (None: good), what the detail says
    ("separate-crl-key-good", _separate_key, None, ""),                                          # PKITS 4.4.19
    ("separate-crl-key-lists-card", functools.partial(_separate_key, lists_card=True), "revoked", "on the CRL"),
    ("separate-crl-key-revoked", functools.partial(_separate_key, signer_revoked=True),          # PKITS 4.4.21
     "revocation_unavailable", "the CRL signing certificate"),
    ("separate-crl-key-from-another-root", functools.partial(_separate_key, foreign=True, lists_card=True),
     "revocation_unavailable", "no usable CRL"),
    ("old-key-crl-new-key-card-good", functools.partial(_rollover, card_of_new_key=True, lists_card=False),
     None, ""),
    ("old-key-crl-lists-new-key-card", functools.partial(_rollover, card_of_new_key=True, lists_card=True),
     "revoked", "on the CRL"),
    ("new-key-crl-lists-old-key-card", functools.partial(_rollover, card_of_new_key=False, lists_card=True),
     "revoked", "on the CRL"),
    ("old-with-new-good", functools.partial(_old_with_new, lists_card=False), None, ""),           # PKITS 4.5.1
    ("old-with-new-lists-card", functools.partial(_old_with_new, lists_card=True), "revoked", "on the CRL"),
    ("self-issued-crl-key-lists-card", functools.partial(_self_issued_key, lists_card=True),      # PKITS 4.5.7
     "revoked", "on the CRL"),
    ("self-issued-crl-key-alone-good", functools.partial(_self_issued_key, lists_card=False, own_crl=False),
     None, ""),                                                                                   # PKITS 4.5.6
    ("self-issued-crl-key-alone-lists-card", functools.partial(_self_issued_key, lists_card=True, own_crl=False),
     "revoked", "on the CRL"),
    # the CA's own key revoked the CRL-signing key: what that key's CRL lists is not taken, the CA's own CRL decides
    ("self-issued-crl-key-revoked", functools.partial(_self_issued_key, lists_card=True, key_revoked=True),
     None, ""),
]


@pytest.mark.parametrize("failure", ["fail_closed", "soft_fail"])
@pytest.mark.parametrize(("make", "reason", "detail"),
                         [pytest.param(make, reason, detail, id=name) for name, make, reason, detail in KEY_CASES])
def test_a_crl_signed_by_another_key_of_the_ca_answers_for_its_certificates(
        h: Hierarchy, make: KeyCase, reason: str | None, detail: str, failure: str) -> None:
    crls, path, ca_certs = make(h)
    policy = crl_policy(ca_certs, crls, failure=failure, **EXACT)
    check = checker(NOW)
    check.register(policy)
    if reason is None:
        outcome = check.check(path, policy)
        assert (outcome.summary, [c.status for c in outcome.checked]) == ("crl", ["good"] * (len(path) - 1))
        return
    if failure == "soft_fail" and reason != "revoked":
        outcome = check.check(path, policy)
        assert outcome.soft_fail is not None
        assert (outcome.summary, outcome.soft_fail.reason) == ("soft_fail", reason)
        assert detail in outcome.soft_fail.detail
        return
    with pytest.raises(CertificateRejected) as caught:
        check.check(path, policy)
    assert caught.value.reason == reason
    assert detail in caught.value.detail


def test_path_of_anchor_alone_needs_no_crl(h: Hierarchy) -> None:
    outcome = check_path(h, [], [h.root.certificate], NOW)
    assert (outcome.checked, outcome.summary, outcome.soft_fail) == ((), "not_checked", None)
    assert outcome.valid_until == NOW + EXACT["max_cache_time"].timedelta  # nothing below the anchor to look up


# --- partitioned CRLs: each answers only for the certificates in its scope (RFC 5280 §5.2.5, §6.3.3 (b)) ---

PART1 = "http://crl.kommun-a.example.se/part1.crl"
PART2 = "http://crl.kommun-a.example.se/part2.crl"


def _part(ca: CertificateAuthority, url: str, this_update: dt.datetime) -> x509.CertificateRevocationList:
    return crl(ca, this_update=this_update, next_update=NOW + 7 * DAY,
               extensions=[idp(names=[x509.UniformResourceIdentifier(url)])])


def test_a_partition_crl_does_not_answer_for_a_certificate_of_another_partition(h: Hierarchy) -> None:
    cert = h.leaf(crl_url=PART2).certificate
    part1 = _part(revoking(h.issuing, cert), PART1, NOW - DAY)  # even listing the serial: not its scope
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, [part1, h.root.crl()], chain(h, cert), NOW)
    assert caught.value.reason == "revocation_unavailable"
    assert "covers" in caught.value.detail
    assert "other distribution points" in caught.value.detail


@pytest.mark.parametrize("revoked", [pytest.param(True, id="revoked-in-own-partition"),
                                     pytest.param(False, id="good-in-own-partition")])
def test_the_certificates_own_partition_decides_though_another_is_fresher(h: Hierarchy, revoked: bool) -> None:
    cert = h.leaf(crl_url=PART2).certificate
    own = _part(revoking(h.issuing, cert) if revoked else h.issuing, PART2, NOW - 2 * DAY)
    other = _part(h.issuing, PART1, NOW - 3600 * SECOND)
    if revoked:
        with pytest.raises(CertificateRejected) as caught:
            check_path(h, [other, own, h.root.crl()], chain(h, cert), NOW)
        assert caught.value.reason == "revoked"
    else:
        outcome = check_path(h, [other, own, h.root.crl()], chain(h, cert), NOW)
        assert [(c.status, c.method) for c in outcome.checked] == [("good", "crl"), ("good", "crl")]


def test_a_certificate_without_distribution_points_is_not_covered_by_a_partition(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, [_part(h.issuing, PART1, NOW - DAY), h.root.crl()], chain(h, cert), NOW)
    assert caught.value.reason == "revocation_unavailable"


def test_a_relative_distribution_point_name_is_matched_under_the_crl_issuer(h: Hierarchy) -> None:
    rdn = x509.RelativeDistinguishedName([x509.NameAttribute(x509.NameOID.COMMON_NAME, "CRL1")])
    full = x509.DirectoryName(x509.Name([*h.issuing.certificate.subject.rdns, rdn]))
    verified = verify_crl(crl(h.issuing, extensions=[idp(names=None, relative=rdn)]), cas(h))
    assert verified.scope_names == {full}


def test_user_certificate_crl_and_authority_revocation_list_each_answer_for_their_kind(h: Hierarchy) -> None:
    """onlyContainsUserCerts for the leaf, onlyContainsCACerts (an ARL) for the issuing CA: together they cover
    the path; the user CRL alone says nothing about the CA (RFC 5280 §6.3.3 (b)(2)(ii)-(iii))."""
    cert = h.leaf().certificate
    users = crl(h.issuing, extensions=[idp(user=True, names=None)])
    arl = crl(h.root, extensions=[idp(ca=True, names=None)])
    outcome = check_path(h, [users, arl], chain(h, cert), NOW)
    assert [(c.status, c.method) for c in outcome.checked] == [("good", "crl"), ("good", "crl")]
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, [users, crl(h.root, extensions=[idp(user=True, names=None)])], chain(h, cert), NOW)
    assert caught.value.reason == "revocation_unavailable"
    assert f"CA {h.issuing.certificate.subject.rfc4514_string()}" in caught.value.detail
    with pytest.raises(CertificateRejected) as caught:
        check_path(h, [crl(h.issuing, extensions=[idp(ca=True, names=None)]), arl], chain(h, cert), NOW)
    assert caught.value.reason == "revocation_unavailable"


# --- a large CRL: verified once, then looked up by serial ---

EXTRA_SERIALS = 100_000


@pytest.fixture(scope="module")
def large() -> tuple[Hierarchy, VerifiedCrl, x509.Certificate, x509.Certificate]:
    h = Hierarchy.build(NOW, "Kommun Stor")
    revoked_cert, good_cert = h.leaf().certificate, h.leaf().certificate
    # tests.factories.pki_cases.crl, not CertificateAuthority.crl(extra_serials=...): the entries are handed to the
    # builder in one list.
    big = crl(revoking(h.issuing, revoked_cert), extra_serials=EXTRA_SERIALS)
    return h, verify_crl(big, (h.root.certificate, h.issuing.certificate)), revoked_cert, good_cert


def test_large_crl_is_indexed_by_serial(large: tuple[Hierarchy, VerifiedCrl, x509.Certificate, x509.Certificate],
                                        ) -> None:
    _h, verified, revoked_cert, good_cert = large
    assert len(verified.revoked) == EXTRA_SERIALS + 1
    assert revoked_cert.serial_number in verified.revoked
    assert 10**30 + EXTRA_SERIALS - 1 in verified.revoked
    assert good_cert.serial_number not in verified.revoked


def preloaded_policy(ca_certs: Sequence[x509.Certificate], crls: Sequence[VerifiedCrl]) -> RevocationPolicy:
    """A CRL-only policy holding already verified CRLs (as the loader's preloaded files), each its own source."""
    config = RevocationConfig(mode="check", methods=("crl",), crl=CrlConfig(distribution_points=False),
                              clock_skew=EXACT["clock_skew"], max_cache_time=EXACT["max_cache_time"])
    limits = FetchLimits(1, 1, 1024)
    sources = tuple(CrlSource(f"/nonexistent/large-{i}.crl", "file", tuple(ca_certs), limits, DAY)
                    for i in range(len(crls)))
    return RevocationPolicy(config, sources, tuple((s.id, c) for s, c in zip(sources, crls, strict=True)))


def test_large_crl_answers_revoked_and_not_revoked(
        large: tuple[Hierarchy, VerifiedCrl, x509.Certificate, x509.Certificate]) -> None:
    h, verified, revoked_cert, good_cert = large
    ca_certs = (h.root.certificate, h.issuing.certificate)
    policy = preloaded_policy(ca_certs, [verified, verify_crl(h.root.crl(), ca_certs)])
    check = checker(NOW)
    check.register(policy)
    assert check.check(chain(h, good_cert), policy).valid_until == verified.next_update
    with pytest.raises(CertificateRejected) as caught:
        check.check(chain(h, revoked_cert), policy)
    assert caught.value.reason == "revoked"
