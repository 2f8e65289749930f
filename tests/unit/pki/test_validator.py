"""Certificate login validation through the municipalities' trust domains (broker.pki.validator)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from broker.clock import FixedClock
from broker.config.schema import IdentityRule
from broker.config.values import Regex
from broker.errors import CertificateRejected
from broker.model import LOA2, LOA3, LOA4, CertificateFacts, Loa, certificate_der, issuer_der
from broker.pki.revocation.crls import CrlStore
from broker.pki.revocation.engine import RevocationChecker
from broker.pki.truststore import TrustDomain, TrustIndex
from broker.pki.validator import CertificateValidator
from tests.factories.pki import HSA_ID, POLICY_LOA2, POLICY_LOA3, Hierarchy
from tests.factories.pki_cases import (
    NOW,
    PERSONNUMMER_BAD_CHECK_DIGIT,
    SAMORDNINGSNUMMER_VALID,
    policies,
    policy_mappings,
    resigned,
    revoking,
    validator,
)

DAY = dt.timedelta(days=1)
POLICY_UNKNOWN = "2.999.9.9"
POLICY_LOCAL = "2.999.7.1"  # the issuing CA's own name for LOA3, through a policy mapping
ANY_POLICY = "2.5.29.32.0"
PNR = IdentityRule(type="personnummer")

Case = tuple[x509.Certificate, TrustDomain]
Build = Callable[[Hierarchy, Hierarchy], Case]  # (municipality's hierarchy, a stranger's hierarchy)


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


@pytest.fixture(scope="module")
def stranger() -> Hierarchy:
    return Hierarchy.build(NOW, "Elsewhere")


def leaf(identity: IdentityRule | None = None, **overrides: object) -> Build:
    """A leaf with ``overrides`` in kommun-a's active domain with fresh CRLs."""
    def build(h: Hierarchy, _stranger: Hierarchy) -> Case:
        return h.leaf(**overrides).certificate, h.domain(identity=identity, crls=h.fresh_crls())
    return build


def other_hierarchy(h: Hierarchy, stranger: Hierarchy) -> Case:
    return stranger.leaf().certificate, h.domain(crls=h.fresh_crls())


def suspended(h: Hierarchy, _stranger: Hierarchy) -> Case:
    return h.leaf().certificate, h.domain(status="suspended", crls=h.fresh_crls())


def suspended_and_expired(h: Hierarchy, _stranger: Hierarchy) -> Case:
    cert = h.leaf(valid_from=NOW - 400 * DAY, valid_until=NOW - DAY).certificate
    return cert, h.domain(status="suspended", crls=h.fresh_crls())


def revoked(h: Hierarchy, _stranger: Hierarchy) -> Case:
    cert = h.leaf().certificate
    return cert, h.domain(crls=[revoking(h.issuing, cert).crl(), h.root.crl()])


def revoked_with_invalid_identity(h: Hierarchy, _stranger: Hierarchy) -> Case:
    cert = h.leaf(serial_number="not-an-hsa-id").certificate
    return cert, h.domain(crls=[revoking(h.issuing, cert).crl(), h.root.crl()])


def revoked_with_no_policy(h: Hierarchy, _stranger: Hierarchy) -> Case:
    cert = h.leaf(policies=()).certificate
    return cert, h.domain(crls=[revoking(h.issuing, cert).crl(), h.root.crl()])


def under_ca(ca_policies: tuple[str, ...], *extensions: x509.ExtensionType, **overrides: object) -> Build:
    """A leaf with ``overrides`` from an issuing CA (kommun-a's name, a key of its own) that asserts
    ``ca_policies`` (none: no certificatePolicies) and has ``extensions`` (non-critical)."""
    def build(h: Hierarchy, _stranger: Hierarchy) -> Case:
        issuing = h.root.subordinate("Kommun A Test Person CA", organization="Kommun A", policies=ca_policies)
        if extensions:
            issuing = resigned(issuing, *extensions)
        own = replace(h, issuing=issuing)
        return own.leaf(**overrides).certificate, own.domain(crls=own.fresh_crls())
    return build


def stale_crl(h: Hierarchy, _stranger: Hierarchy) -> Case:
    crls = [h.issuing.crl(this_update=NOW - 8 * DAY, next_update=NOW - DAY), h.root.crl()]
    return h.leaf().certificate, h.domain(crls=crls)


REJECTED = [
    pytest.param(other_hierarchy, "issuer_unknown", id="issuer-of-another-hierarchy"),
    pytest.param(suspended, "municipality_suspended", id="municipality-suspended"),
    pytest.param(leaf(policies=()), "policy_not_accepted", id="no-certificate-policies"),
    pytest.param(leaf(policies=(POLICY_UNKNOWN,)), "policy_not_accepted", id="unknown-policy"),
    pytest.param(leaf(policies=(ANY_POLICY,)), "policy_not_accepted", id="any-policy-only"),
    pytest.param(leaf(serial_number=None), "identity_missing", id="no-subject-serial-number"),
    pytest.param(leaf(identity=IdentityRule(type="opaque", source="san_upn", pattern=Regex(".+"))),
                 "identity_missing", id="san-upn-rule-without-subject-alt-name"),
    pytest.param(leaf(serial_number="SE21200010-anna"), "identity_invalid", id="hsa-id-pattern-mismatch"),
    pytest.param(leaf(identity=PNR, serial_number=PERSONNUMMER_BAD_CHECK_DIGIT), "identity_invalid",
                 id="personnummer-bad-check-digit"),
    # --- the policy must be valid on the path (RFC 5280 §6.1), not only asserted by the leaf ---
    pytest.param(under_ca((POLICY_LOA2,)), "policy_not_accepted", id="loa3-leaf-under-a-loa2-only-ca"),
    pytest.param(under_ca(()), "policy_not_accepted", id="ca-without-certificate-policies"),
    pytest.param(under_ca((POLICY_LOA3,), policy_mappings((POLICY_LOA3, POLICY_LOCAL))), "policy_not_accepted",
                 id="leaf-policy-mapped-away-by-its-ca"),
    pytest.param(under_ca((POLICY_LOA3,), policy_mappings((POLICY_LOA3, ANY_POLICY))), "chain_invalid",
                 id="ca-maps-to-any-policy"),
    pytest.param(revoked, "revoked", id="leaf-revoked"),
    pytest.param(stale_crl, "revocation_stale", id="crl-stale"),
    # --- the order of the checks: cheap and most explanatory first, revocation last ---
    pytest.param(suspended_and_expired, "municipality_suspended", id="order-suspension-before-validity"),
    pytest.param(leaf(valid_from=NOW - 400 * DAY, valid_until=NOW - DAY, policies=()), "certificate_expired",
                 id="order-path-before-policy"),
    pytest.param(leaf(policies=(), serial_number=None), "policy_not_accepted", id="order-policy-before-identity"),
    pytest.param(revoked_with_invalid_identity, "identity_invalid", id="order-identity-before-revocation"),
    pytest.param(revoked_with_no_policy, "policy_not_accepted", id="order-policy-before-revocation"),
]


@pytest.mark.parametrize(("build", "reason"), REJECTED)
def test_rejected_with_reason(h: Hierarchy, stranger: Hierarchy, build: Build, reason: str) -> None:
    cert, domain = build(h, stranger)
    with pytest.raises(CertificateRejected) as caught:
        validator(domain).validate(cert)
    assert caught.value.reason == reason


def test_suspension_names_the_municipality(h: Hierarchy) -> None:
    with pytest.raises(CertificateRejected) as caught:
        validator(h.domain(status="suspended")).validate(h.leaf().certificate)
    assert caught.value.params == {"municipality": "kommun-a"}


ACCEPTED = [
    pytest.param(leaf(), LOA3, POLICY_LOA3, HSA_ID, id="default-profile-without-subject-alt-name"),
    pytest.param(leaf(policies=(POLICY_LOA2,)), LOA2, POLICY_LOA2, HSA_ID, id="loa-from-policy-not-issuer"),
    pytest.param(leaf(policies=(POLICY_LOA2, POLICY_LOA3)), LOA3, POLICY_LOA3, HSA_ID,
                 id="highest-loa-of-several-policies"),
    pytest.param(leaf(policies=(POLICY_LOA3, POLICY_LOA2)), LOA3, POLICY_LOA3, HSA_ID,
                 id="highest-loa-of-several-policies-listed-first"),
    pytest.param(leaf(policies=(POLICY_UNKNOWN, ANY_POLICY, POLICY_LOA2)), LOA2, POLICY_LOA2, HSA_ID,
                 id="unknown-policies-beside-an-accepted-one"),
    pytest.param(leaf(identity=PNR, serial_number=SAMORDNINGSNUMMER_VALID), LOA3, POLICY_LOA3,
                 SAMORDNINGSNUMMER_VALID, id="samordningsnummer"),
    pytest.param(leaf(identity=IdentityRule(type="hsa_id", source="san_upn"), serial_number=None, san_upn=HSA_ID),
                 LOA3, POLICY_LOA3, HSA_ID, id="hsa-id-from-san-upn"),
    pytest.param(leaf(identity=IdentityRule(type="opaque", source="san_email",
                                            pattern=Regex(r"[a-z]+@kommun-a\.example\.se")),
                      san_email="anna@kommun-a.example.se"),
                 LOA3, POLICY_LOA3, "anna@kommun-a.example.se", id="opaque-id-from-san-email"),
    pytest.param(under_ca((POLICY_LOA2,), policies=(POLICY_LOA3, POLICY_LOA2)), LOA2, POLICY_LOA2, HSA_ID,
                 id="loa2-only-ca-caps-the-leaf-at-loa2"),
    pytest.param(under_ca((POLICY_LOA3, POLICY_LOA2)), LOA3, POLICY_LOA3, HSA_ID, id="ca-asserts-the-leafs-policy"),
    pytest.param(under_ca((POLICY_LOA3,), policy_mappings((POLICY_LOA3, POLICY_LOCAL)), policies=(POLICY_LOCAL,)),
                 LOA3, POLICY_LOA3, HSA_ID, id="leaf-policy-mapped-from-loa3"),
    pytest.param(under_ca((POLICY_LOA3, POLICY_LOA2), policy_mappings((POLICY_LOA3, POLICY_LOCAL)),
                          policies=(POLICY_LOA2, POLICY_LOCAL)),
                 LOA3, POLICY_LOA3, HSA_ID, id="mapped-policy-beside-an-unmapped-one"),
    pytest.param(leaf(key="ec384"), LOA3, POLICY_LOA3, HSA_ID, id="ecdsa-p384-leaf"),
    pytest.param(leaf(key="rsa2048"), LOA3, POLICY_LOA3, HSA_ID, id="rsa-2048-leaf"),
]


@pytest.mark.parametrize(("build", "loa", "policy", "key"), ACCEPTED)
def test_accepted(h: Hierarchy, stranger: Hierarchy, build: Build, loa: Loa, policy: str, key: str) -> None:
    cert, domain = build(h, stranger)
    validated = validator(domain).validate(cert)
    assert validated.municipality_id == "kommun-a"
    assert (validated.loa, validated.policy_oid, validated.identity.key) == (loa, policy, key)
    assert validated.revocation.summary == "crl"
    assert [(c.status, c.method) for c in validated.revocation.checked] == [("good", "crl"), ("good", "crl")]


def test_highest_loa_wins_with_three_levels(h: Hierarchy) -> None:
    h4 = replace(h, policies={POLICY_LOA2: "loa2", POLICY_LOA3: "loa4", POLICY_UNKNOWN: "loa3"})
    cert = h4.leaf(policies=(POLICY_UNKNOWN, POLICY_LOA3, POLICY_LOA2)).certificate
    validated = validator(h4.domain(crls=h4.fresh_crls())).validate(cert)
    assert (validated.loa, validated.policy_oid) == (LOA4, POLICY_LOA3)


def test_validated_certificate_records_facts_not_the_subject(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    validated = validator(h.domain(crls=h.fresh_crls())).validate(cert)
    assert validated.facts == CertificateFacts.of(cert)
    assert validated.path.chain[0] == cert


def test_certificate_facts_are_worked_out_once_per_certificate(h: Hierarchy) -> None:
    """The same certificate object gets its facts worked out once; an equal one (the same DER, parsed again) gets
    equal facts; another certificate has its own."""
    cert = h.leaf().certificate
    again = x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
    facts = CertificateFacts.of(cert)
    assert CertificateFacts.of(cert) is facts
    assert CertificateFacts.of(again) == facts
    assert facts.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert facts.serial_hex == format(cert.serial_number, "x")
    assert facts.issuer == cert.issuer.rfc4514_string()
    other = h.leaf().certificate
    assert CertificateFacts.of(other).fingerprint_sha256 == other.fingerprint(hashes.SHA256()).hex()


def test_validator_reads_the_clock_at_each_validation(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    clock = FixedClock(NOW)
    revocation = RevocationChecker(clock, crls=CrlStore(clock, fetcher=None, shared=None), fetcher=None,
                                   shared=None, refresh_interval=0)
    checker = CertificateValidator(TrustIndex([h.domain(crls=h.fresh_crls())]), clock, revocation)
    assert checker.validate(cert).path.checked_at == NOW
    clock.set(cert.not_valid_after_utc + dt.timedelta(seconds=1))
    with pytest.raises(CertificateRejected) as caught:
        checker.validate(cert)
    assert caught.value.reason == "certificate_expired"


def test_revocation_follows_the_validators_clock(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    clock = FixedClock(NOW)
    revocation = RevocationChecker(clock, crls=CrlStore(clock, fetcher=None, shared=None), fetcher=None,
                                   shared=None, refresh_interval=0)
    checker = CertificateValidator(TrustIndex([h.domain(crls=h.fresh_crls())]), clock, revocation)
    assert checker.validate(cert).revocation.summary == "crl"
    clock.set(NOW + 8 * DAY)  # the certificate is still valid, its CRLs (nextUpdate NOW + 7 days) are not
    with pytest.raises(CertificateRejected) as caught:
        checker.validate(cert)
    assert caught.value.reason == "revocation_stale"


def test_each_municipality_validates_its_own_certificates(h: Hierarchy, stranger: Hierarchy) -> None:
    other = replace(stranger.domain(crls=stranger.fresh_crls()), id="kommun-x")
    checker = validator(h.domain(crls=h.fresh_crls()), other)
    assert checker.validate(h.leaf().certificate).municipality_id == "kommun-a"
    assert checker.validate(stranger.leaf().certificate).municipality_id == "kommun-x"


# --- the chain a trusted proxy forwarded: hints for the path, never trust -------------------------------------

Forwarded = Callable[[Hierarchy, Hierarchy, Hierarchy], tuple[x509.Certificate, tuple[x509.Certificate, ...]]]


@pytest.mark.parametrize(("make", "reason"), [
    # the client's own "root" (self-signed, same names as the municipality's CAs) signs its issuing CA
    pytest.param(lambda h, twin, far: (twin.leaf().certificate, (twin.issuing.certificate, twin.root.certificate)),
                 "chain_invalid", id="self-signed-root-with-the-anchors-name"),
    pytest.param(lambda h, twin, far: (twin.leaf().certificate, (twin.root.certificate, twin.issuing.certificate)),
                 "chain_invalid", id="self-signed-root-first"),
    # a hierarchy no municipality uses, sent complete with its root
    pytest.param(lambda h, twin, far: (far.leaf().certificate, (far.issuing.certificate, far.root.certificate)),
                 "issuer_unknown", id="foreign-root-in-the-chain"),
    # the real issuing CA in the chain does not help a leaf the impostor issued
    pytest.param(lambda h, twin, far: (twin.leaf().certificate, (h.issuing.certificate, twin.root.certificate)),
                 "chain_invalid", id="real-intermediate-impostors-leaf"),
])
def test_forwarded_chain_does_not_make_a_certificate_trusted(h: Hierarchy, stranger: Hierarchy, make: Forwarded,
                                                             reason: str) -> None:
    twin = Hierarchy.build(NOW)  # the same names as h ("Kommun A Test Root CA" ...), other keys
    leaf, chain = make(h, twin, stranger)
    checker = validator(h.domain())  # the municipality's root and issuing CA
    with pytest.raises(CertificateRejected) as caught:
        checker.validate(leaf, chain)
    assert caught.value.reason == reason


def test_a_forwarded_chain_does_not_admit_an_issuing_ca_the_municipality_did_not_configure(h: Hierarchy) -> None:
    """A sibling CA under the same root (in SITHS: the Function, Mobile or level-2 CAs next to the one the
    municipality uses) is not accepted because a browser sends it along: the leaf's issuer must be configured."""
    leaf = h.leaf().certificate
    checker = validator(h.domain(intermediates=()))  # the root only; the issuing CA is not configured
    for chain in ((), (h.issuing.certificate,), (h.issuing.certificate, h.root.certificate)):
        with pytest.raises(CertificateRejected) as caught:
            checker.validate(leaf, chain)
        assert caught.value.reason == "issuer_unknown"


def test_a_forwarded_intermediate_still_helps_build_the_path(h: Hierarchy) -> None:
    """The configured issuing CA's own issuer is missing from the configuration (a cross-certified or
    re-keyed intermediate): the one the client sent completes the path to the anchor."""
    sub = h.root.subordinate("Kommun A Test Policy CA", organization="Kommun A", path_length=1)
    issuing = sub.subordinate("Kommun A Test Person CA 2", organization="Kommun A")
    leaf = issuing.issue(h.profile()).certificate
    checker = validator(h.domain(intermediates=(issuing.certificate,)))  # not the middle CA
    with pytest.raises(CertificateRejected) as caught:
        checker.validate(leaf)
    assert caught.value.reason == "chain_invalid"
    validated = checker.validate(leaf, (sub.certificate,))
    assert validated.path.chain == (leaf, issuing.certificate, sub.certificate, h.root.certificate)


def test_forwarded_root_equal_to_the_anchor_changes_nothing(h: Hierarchy) -> None:
    leaf = h.leaf().certificate
    validated = validator(h.domain(crls=h.fresh_crls())).validate(leaf, (h.issuing.certificate, h.root.certificate))
    assert validated.path.chain == (leaf, h.issuing.certificate, h.root.certificate)


# --- what a certificate proves is worked out once per certificate and configuration ---------------------------


@pytest.fixture
def profile_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The leaves (serial numbers) for which the profile (policy → LoA, identity) was really worked out."""
    from broker.pki import validator as validator_module

    seen: list[str] = []
    real = validator_module.extract_identity

    def counting(leaf: x509.Certificate, rule: IdentityRule, domain_id: str, today: dt.date | None = None) -> object:
        seen.append(format(leaf.serial_number, "x"))
        return real(leaf, rule, domain_id, today)

    monkeypatch.setattr(validator_module, "extract_identity", counting)
    return seen


def test_the_profile_of_a_card_seen_before_is_reused(h: Hierarchy, profile_calls: list[str]) -> None:
    checker, cert = validator(h.domain(crls=h.fresh_crls())), h.leaf().certificate
    first, second = checker.validate(cert), checker.validate(cert)
    assert profile_calls == [format(cert.serial_number, "x")]
    assert (second.identity, second.loa, second.policy_oid, second.facts) == \
        (first.identity, first.loa, first.policy_oid, first.facts)
    assert second.revocation.summary == "crl"  # revocation is still checked every time


def test_a_refused_profile_is_worked_out_again_each_time(h: Hierarchy) -> None:
    checker = validator(h.domain(crls=h.fresh_crls()))
    cert = h.leaf(policies=(POLICY_UNKNOWN,)).certificate
    for _ in range(2):
        with pytest.raises(CertificateRejected) as caught:
            checker.validate(cert)
        assert caught.value.reason == "policy_not_accepted"
    assert checker.validate(h.leaf().certificate).loa == LOA3


def test_each_configuration_has_its_own_profiles(h: Hierarchy) -> None:
    """A reload builds a new validator: a changed identity rule applies at once to cards seen before."""
    cert = h.leaf().certificate
    assert validator(h.domain(crls=h.fresh_crls())).validate(cert).identity.kind == "hsa_id"
    with pytest.raises(CertificateRejected) as caught:
        validator(h.domain(crls=h.fresh_crls(), identity=PNR)).validate(cert)
    assert caught.value.reason == "identity_invalid"


# --- the LoA follows the path: policies the CAs above the leaf assert (RFC 5280 §6.1) -------------------------

ISSUING = "CN=Kommun A Test Person CA,O=Kommun A,C=SE"
UPPER = "CN=Kommun A Test Policy CA,O=Kommun A,C=SE"
ISSUING_2 = "CN=Kommun A Test Person CA 2,O=Kommun A,C=SE"
MAPS_LOA3_TO_LOCAL = policy_mappings((POLICY_LOA3, POLICY_LOCAL))


@pytest.mark.parametrize(("build", "detail"), [
    pytest.param(under_ca((POLICY_LOA2,)),
                 f"certificate policies: {POLICY_LOA3}; {POLICY_LOA3} is not valid on the path: "
                 f"{ISSUING} does not assert it (its certificatePolicies: {POLICY_LOA2})",
                 id="the-issuing-ca-does-not-assert-it"),
    pytest.param(under_ca(()),
                 f"certificate policies: {POLICY_LOA3}; {POLICY_LOA3} is not valid on the path: "
                 f"{ISSUING} has no certificatePolicies",
                 id="the-issuing-ca-has-no-policies"),
    pytest.param(under_ca((POLICY_LOA3,), policy_mappings((POLICY_LOA3, POLICY_LOCAL))),
                 f"certificate policies: {POLICY_LOA3}; {POLICY_LOA3} is not valid on the path: "
                 f"{ISSUING} does not pass it on (its certificatePolicies: {POLICY_LOA3}); "
                 f"{ISSUING} maps {POLICY_LOA3} to {POLICY_LOCAL}",
                 id="the-issuing-ca-maps-it-away"),
    pytest.param(leaf(policies=(POLICY_UNKNOWN,)),
                 f"certificate policies: {POLICY_UNKNOWN}; the municipality accepts {POLICY_LOA3}, {POLICY_LOA2}",
                 id="a-policy-not-configured-beside-the-configured-ones"),
    pytest.param(leaf(policies=()),
                 f"certificate policies: none; the municipality accepts {POLICY_LOA3}, {POLICY_LOA2}",
                 id="no-policy-beside-the-configured-ones"),
])
def test_a_policy_refusal_names_the_ca_and_the_policy(h: Hierarchy, stranger: Hierarchy, build: Build,
                                                       detail: str) -> None:
    cert, domain = build(h, stranger)
    with pytest.raises(CertificateRejected) as caught:
        validator(domain).validate(cert)
    assert (caught.value.reason, caught.value.detail) == ("policy_not_accepted", detail)


@pytest.mark.parametrize(("upper", "issuing", "leaf_policies", "expected"), [
    pytest.param(policies(POLICY_LOA2), [policies(POLICY_LOA3, POLICY_LOA2)], (POLICY_LOA3, POLICY_LOA2), LOA2,
                 id="upper-ca-caps-the-loa"),
    pytest.param(policies(POLICY_LOA2), [policies(POLICY_LOA3, POLICY_LOA2)], (POLICY_LOA3,),
                 f"{POLICY_LOA3} is not valid on the path: {UPPER} does not assert it (its certificatePolicies: "
                 f"{POLICY_LOA2})",
                 id="upper-ca-does-not-assert-the-leafs-policy"),
    pytest.param(x509.InhibitAnyPolicy(0), [policies(ANY_POLICY)], (POLICY_LOA3,),
                 f"{POLICY_LOA3} is not valid on the path: {ISSUING_2} does not pass it on (its certificatePolicies: "
                 f"{ANY_POLICY}); {ISSUING_2} asserts anyPolicy, which inhibitAnyPolicy sets aside there",
                 id="upper-ca-inhibits-any-policy-below"),
    pytest.param(x509.InhibitAnyPolicy(0), [policies(POLICY_LOA3)], (POLICY_LOA3,), LOA3,
                 id="inhibit-any-policy-leaves-named-policies"),
    pytest.param(policies(ANY_POLICY), [policies(POLICY_LOA3), MAPS_LOA3_TO_LOCAL], (POLICY_LOCAL,), LOA3,
                 id="issuing-ca-maps-loa3-to-the-leafs-policy"),
    pytest.param(x509.PolicyConstraints(None, 0), [policies(POLICY_LOA3), MAPS_LOA3_TO_LOCAL], (POLICY_LOCAL,),
                 f"certificate policies: {POLICY_LOCAL}; the municipality accepts {POLICY_LOA3}, {POLICY_LOA2}; "
                 f"{ISSUING_2} maps {POLICY_LOA3} to {POLICY_LOCAL}, but "
                 "policy mapping is inhibited there (policyConstraints inhibitPolicyMapping)",
                 id="upper-ca-inhibits-policy-mapping"),
])
def test_two_intermediates(h: Hierarchy, upper: x509.ExtensionType, issuing: list[x509.ExtensionType],
                           leaf_policies: tuple[str, ...], expected: Loa | str) -> None:
    """The upper CA (anyPolicy, with ``upper`` added or in its place) decides what the issuing CA below it (with
    the ``issuing`` extensions) passes on to the leaf: the LoA, or the refusal's detail."""
    top = resigned(h.root.subordinate("Kommun A Test Policy CA", organization="Kommun A", path_length=1), upper)
    below = resigned(top.subordinate("Kommun A Test Person CA 2", organization="Kommun A"), *issuing)
    checker = validator(h.domain(intermediates=(top.certificate, below.certificate)))
    cert = below.issue(h.profile(policies=leaf_policies)).certificate
    if isinstance(expected, Loa):
        assert checker.validate(cert).loa == expected
        return
    with pytest.raises(CertificateRejected) as caught:
        checker.validate(cert)
    assert caught.value.reason == "policy_not_accepted"
    assert expected in caught.value.detail


def test_the_profile_is_kept_per_path_not_per_card(h: Hierarchy, profile_calls: list[str]) -> None:
    """The same card through two certificates of its CA's issuer (re-issued, or cross-certified: same name and
    key, other policies), one allowing anyPolicy and one only LOA2: each path gets its own LoA, and a loa3
    answer worked out on one path is not reused on the other."""
    upper = h.root.subordinate("Kommun A Test Policy CA", organization="Kommun A", path_length=1)
    narrow = resigned(upper, policies(POLICY_LOA2))
    issuing = upper.subordinate("Kommun A Test Person CA 2", organization="Kommun A",
                                policies=(POLICY_LOA3, POLICY_LOA2))
    cert = issuing.issue(h.profile(policies=(POLICY_LOA3, POLICY_LOA2))).certificate
    checker = validator(h.domain(intermediates=(issuing.certificate,)))  # the client sends the upper CA
    assert checker.validate(cert, (upper.certificate,)).loa == LOA3
    assert checker.validate(cert, (narrow.certificate,)).loa == LOA2
    assert checker.validate(cert, (upper.certificate,)).loa == LOA3
    assert checker.validate(cert, (narrow.certificate,)).loa == LOA2
    assert len(profile_calls) == 2  # once per path


def test_a_certificates_der_and_issuer_name_are_encoded_once_per_certificate_object(h: Hierarchy) -> None:
    """The card's DER (kept in the session) and its issuer name's (which chooses the municipality) are written out
    once per certificate object, not at every login: the same bytes as cryptography's, the same object again."""
    cert = h.leaf().certificate
    assert certificate_der(cert) == cert.public_bytes(serialization.Encoding.DER)
    assert certificate_der(cert) is certificate_der(cert)
    assert issuer_der(cert) == cert.issuer.public_bytes()
    assert issuer_der(cert) is issuer_der(cert)
    again = x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
    assert certificate_der(again) == certificate_der(cert)
    assert TrustIndex([h.domain()]).for_issuer(again).id == TrustIndex([h.domain()]).for_issuer(cert).id
