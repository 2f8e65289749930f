"""RFC 5280 path validation and the login purpose rules (broker.pki.path), at a fixed instant; then revocation of
the validated path under the domain's policy (broker.pki.revocation), as `broker cert verify --crl` does it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import Store

from broker.config.values import Duration
from broker.demo.certificates import CLIENT_AUTH, EMAIL_PROTECTION, SERVER_AUTH, CertificateAuthority, new_key
from broker.errors import CertificateRejected
from broker.pki.path import verify_path
from broker.pki.truststore import TrustDomain
from broker.pki.validator import assurance_level
from tests.factories.pki import POLICY_LOA3, Hierarchy, checker, crl_policy, sha1_resign, verify_with_revocation
from tests.factories.pki_cases import (
    NOW,
    SECOND,
    deep_hierarchy,
    impostor,
    policies,
    policy_mappings,
    reissue,
    resigned,
    revoking,
    sha1_subordinate,
    with_subject_attribute,
    with_unreadable_key,
)

DAY = dt.timedelta(days=1)

# A case builds (leaf, domain, intermediates presented by the client) from a fresh-at-NOW hierarchy.
Case = tuple[x509.Certificate, TrustDomain, Sequence[x509.Certificate]]
Build = Callable[[Hierarchy], Case]


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


def leaf(**overrides: object) -> Build:
    """A leaf with ``overrides`` in an otherwise valid domain with fresh CRLs."""
    def build(h: Hierarchy) -> Case:
        return h.leaf(**overrides).certificate, h.domain(crls=h.fresh_crls()), ()
    return build


def crl_case(issuing_crl: Callable[[Hierarchy], x509.CertificateRevocationList | None],
             root_crl: Callable[[Hierarchy], x509.CertificateRevocationList | None]) -> Build:
    """A valid leaf in a domain whose CRLs are the given ones (None: that CA's CRL is not configured)."""
    def build(h: Hierarchy) -> Case:
        crls = [c for c in (issuing_crl(h), root_crl(h)) if c is not None]
        return h.leaf().certificate, h.domain(crls=crls), ()
    return build


def sha1_intermediate_presented(h: Hierarchy) -> Case:
    sub = sha1_subordinate(h.root, "Kommun A SHA-1 CA")
    return sub.issue(h.profile()).certificate, h.domain(), (sub.certificate,)


def sha1_intermediate_configured(h: Hierarchy) -> Case:
    sub = sha1_subordinate(h.root, "Kommun A SHA-1 CA")
    return sub.issue(h.profile()).certificate, h.domain(intermediates=(sub.certificate,)), ()


def signed_by_other_key_same_issuer_name(h: Hierarchy) -> Case:
    return impostor(h.issuing).issue(h.profile()).certificate, h.domain(crls=h.fresh_crls()), ()


def chain_longer_than_max_depth(h: Hierarchy) -> Case:
    deep, cas = deep_hierarchy(NOW, 3)
    return (deep.leaf().certificate,
            deep.domain(intermediates=[c.certificate for c in cas], max_chain_depth=2), ())


def intermediate_missing_from_domain(h: Hierarchy) -> Case:
    return h.leaf().certificate, h.domain(intermediates=()), ()


def _issuing_ca(h: Hierarchy, **validity: object) -> CertificateAuthority:
    return h.root.subordinate("Kommun A Other Person CA", organization="Kommun A", **validity)  # type: ignore[arg-type]


def issuing_ca_expired(h: Hierarchy) -> Case:
    old = _issuing_ca(h, valid_from=NOW - 400 * DAY, valid_days=365)
    leaf = old.issue(h.profile()).certificate  # the leaf itself is valid at NOW
    return leaf, h.domain(intermediates=(old.certificate,), crls=[old.crl(), h.root.crl()]), ()


def issuing_ca_not_yet_valid(h: Hierarchy) -> Case:
    early = _issuing_ca(h, valid_from=NOW + DAY)
    return early.issue(h.profile()).certificate, h.domain(intermediates=(early.certificate,)), ()


def rsa_1024_issuing_ca(h: Hierarchy) -> Case:
    weak = h.root.subordinate("Kommun A Weak CA", organization="Kommun A", key="rsa1024")
    return weak.issue(h.profile()).certificate, h.domain(intermediates=(weak.certificate,)), ()


def expired_issuing_ca_with_a_sha1_copy_sent_along(h: Hierarchy) -> Case:
    """The client sends a SHA-1 copy of its expired issuing CA: the path fails because the CA expired, and the
    weak copy (expired too) must not turn that into a hint to reissue with SHA-256."""
    old = _issuing_ca(h, valid_from=NOW - 400 * DAY, valid_days=365)
    return (old.issue(h.profile()).certificate, h.domain(intermediates=(old.certificate,)),
            (sha1_resign(old.certificate, h.root.key),))


def _legacy_cross_certificate(ca: CertificateAuthority) -> x509.Certificate:
    """``ca``'s key certified, in date, by a root no municipality trusts, and signed with SHA-1: a legacy
    cross-certificate a browser sends along from the user's certificate store."""
    bridge = Hierarchy.build(NOW, "Bridge").root
    cross = (x509.CertificateBuilder().subject_name(ca.certificate.subject).issuer_name(bridge.certificate.subject)
             .public_key(ca.key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - 10 * DAY).not_valid_after(NOW + 100 * DAY)
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .sign(bridge.key, hashes.SHA256()))
    return sha1_resign(cross, bridge.key)


def expired_issuing_ca_with_a_legacy_cross_certificate_sent_along(h: Hierarchy) -> Case:
    """The path fails because the configured issuing CA certificate expired; the SHA-1 cross-certificate the browser
    sends leads to no trust anchor, so it is no path, and not why there is none."""
    old = _issuing_ca(h, valid_from=NOW - 400 * DAY, valid_days=365)
    return (old.issue(h.profile()).certificate, h.domain(intermediates=(old.certificate,)),
            (_legacy_cross_certificate(old),))


def name_constraint_violated_with_a_legacy_cross_certificate_sent_along(h: Hierarchy) -> Case:
    constrained = resigned(h.issuing, x509.NameConstraints([x509.DNSName("kommun-a.example.se")], None),
                           critical=True)
    cert = reissue(constrained.issue(h.profile()).certificate, constrained,
                   extra=[x509.SubjectAlternativeName([x509.DNSName("evil.example")])])
    return cert, h.domain(intermediates=(constrained.certificate,)), (_legacy_cross_certificate(h.issuing),)


def name_constraint_violated_with_an_unreadable_key_copy_sent_along(h: Hierarchy) -> Case:
    """The path fails on the issuing CA's name constraint; the copy of that CA the client sends, whose public key
    cannot be read (a point off the curve), is no path, and looking for why there is none must not fail on it."""
    constrained = resigned(h.issuing, x509.NameConstraints([x509.DNSName("kommun-a.example.se")], None),
                           critical=True)
    cert = reissue(constrained.issue(h.profile()).certificate, constrained,
                   extra=[x509.SubjectAlternativeName([x509.DNSName("evil.example")])])
    return (cert, h.domain(intermediates=(constrained.certificate,)),
            (with_unreadable_key(constrained.certificate, h.root),))


def key_usage_absent(h: Hierarchy) -> Case:
    plain = h.leaf().certificate
    return reissue(plain, h.issuing, without=[x509.KeyUsage]), h.domain(crls=h.fresh_crls()), ()


def leaf_revoked(h: Hierarchy) -> Case:
    cert = h.leaf().certificate
    crls = [revoking(h.issuing, cert).crl(), h.root.crl()]
    return cert, h.domain(crls=crls), ()


def intermediate_revoked(h: Hierarchy) -> Case:
    crls = [h.issuing.crl(), revoking(h.root, h.issuing.certificate).crl()]
    return h.leaf().certificate, h.domain(crls=crls), ()


REJECTED = [
    # --- algorithms and keys ---
    pytest.param(lambda h: (h.sha1_leaf(), h.domain(crls=h.fresh_crls()), ()),
                 "weak_signature_algorithm", id="sha1-signed-leaf"),
    pytest.param(sha1_intermediate_presented, "weak_signature_algorithm",
                 id="sha1-signed-intermediate-presented-by-client"),
    # A configured SHA-1 intermediate is "a certificate in the path signed with SHA-1" just as much
    # (broker.reasons). The municipality loader refuses one, but `broker cert verify --intermediate` does not.
    pytest.param(sha1_intermediate_configured, "weak_signature_algorithm",
                 id="sha1-signed-intermediate-configured"),
    pytest.param(leaf(key="rsa1024"), "weak_key", id="rsa-1024-leaf"),
    pytest.param(rsa_1024_issuing_ca, "weak_key", id="rsa-1024-issuing-ca"),
    pytest.param(leaf(key="ec192"), "weak_key", id="ec-p192-leaf"),
    # --- validity of the leaf ---
    pytest.param(leaf(valid_from=NOW + DAY, valid_until=NOW + 400 * DAY), "certificate_not_yet_valid",
                 id="leaf-not-yet-valid"),
    pytest.param(leaf(valid_from=NOW - 400 * DAY, valid_until=NOW - DAY), "certificate_expired",
                 id="leaf-expired"),
    # --- the chain ---
    pytest.param(signed_by_other_key_same_issuer_name, "chain_invalid",
                 id="leaf-signed-by-other-key-under-same-issuer-name"),
    pytest.param(chain_longer_than_max_depth, "chain_invalid", id="chain-longer-than-max-chain-depth"),
    pytest.param(expired_issuing_ca_with_a_sha1_copy_sent_along, "chain_invalid",
                 id="expired-issuing-ca-with-a-sha1-copy-sent-along"),
    pytest.param(intermediate_missing_from_domain, "chain_invalid", id="intermediate-missing-from-domain"),
    pytest.param(expired_issuing_ca_with_a_legacy_cross_certificate_sent_along, "chain_invalid",
                 id="expired-issuing-ca-with-a-legacy-sha1-cross-certificate-sent-along"),
    pytest.param(name_constraint_violated_with_a_legacy_cross_certificate_sent_along, "chain_invalid",
                 id="name-constraint-violated-with-a-legacy-sha1-cross-certificate-sent-along"),
    pytest.param(name_constraint_violated_with_an_unreadable_key_copy_sent_along, "chain_invalid",
                 id="name-constraint-violated-with-an-unreadable-key-copy-sent-along"),
    pytest.param(issuing_ca_expired, "chain_invalid", id="issuing-ca-certificate-expired"),
    pytest.param(issuing_ca_not_yet_valid, "chain_invalid", id="issuing-ca-certificate-not-yet-valid"),
    # --- purpose: extended key usage ---
    pytest.param(leaf(eku=(SERVER_AUTH,)), "eku_not_client_auth", id="eku-server-auth-only"),
    pytest.param(leaf(eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)), "eku_not_client_auth",
                 id="eku-any-extended-key-usage-only"),
    pytest.param(leaf(eku=(EMAIL_PROTECTION,)), "eku_not_client_auth", id="eku-email-protection"),
    # --- purpose: key usage ---
    pytest.param(leaf(digital_signature=False, non_repudiation=True, key_encipherment=False),
                 "key_usage_not_digital_signature", id="key-usage-non-repudiation-only"),
    pytest.param(key_usage_absent, "key_usage_not_digital_signature", id="key-usage-absent"),
]

REVOCATION_REJECTED = [
    pytest.param(leaf_revoked, "revoked", id="leaf-in-issuing-ca-crl"),
    pytest.param(intermediate_revoked, "revoked", id="intermediate-in-root-crl"),
    pytest.param(crl_case(lambda h: h.issuing.crl(this_update=NOW - 8 * DAY, next_update=NOW - DAY),
                          lambda h: h.root.crl()),
                 "revocation_stale", id="issuing-crl-next-update-passed"),
    pytest.param(crl_case(lambda h: h.issuing.crl(), lambda h: h.root.crl(this_update=NOW - 8 * DAY,
                                                                           next_update=NOW - DAY)),
                 "revocation_stale", id="root-crl-next-update-passed"),
    pytest.param(crl_case(lambda h: h.issuing.crl(), lambda h: None), "revocation_unavailable",
                 id="root-crl-missing"),
    pytest.param(crl_case(lambda h: None, lambda h: h.root.crl()), "revocation_unavailable",
                 id="issuing-crl-missing"),
    pytest.param(crl_case(lambda h: h.issuing.crl(this_update=NOW + 3600 * SECOND, next_update=NOW + 8 * DAY),
                          lambda h: h.root.crl()),
                 "revocation_unavailable", id="issuing-crl-this-update-in-future"),
]


def _constrained(h: Hierarchy, constraints: x509.ExtensionType, *, critical: bool) -> Case:
    """A leaf of an issuing CA (same name and key as the usual one) whose certificate carries ``constraints``."""
    issuing = h.issuing.certificate
    usage = issuing.extensions.get_extension_for_class(x509.KeyUsage)
    ca_cert = (x509.CertificateBuilder().subject_name(issuing.subject).issuer_name(issuing.issuer)
               .public_key(h.issuing.key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(issuing.not_valid_before_utc).not_valid_after(issuing.not_valid_after_utc)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(usage.value, critical=usage.critical)
               .add_extension(constraints, critical=critical).sign(h.root.key, hashes.SHA256()))
    ca = replace(h.issuing, certificate=ca_cert)
    return ca.issue(h.profile()).certificate, h.domain(intermediates=(ca_cert,)), ()


_SWEDEN = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "SE")]))
_DNS = x509.DNSName("kommun-a.example.se")


_NORWAY = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "NO")]))
_KOMMUN_B = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "SE"),
                                          x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Kommun B")]))
# the leaf's subject begins C=SE (PrintableString), SN=Andersson (UTF8String): these name the same, compared as
# RFC 5280 §7.1 has names compared (RFC 4518: case and insignificant spaces aside, whichever string type)
_SWEDEN_LOWER_CASE = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "se",
                                                                      _type=_ASN1Type.UTF8String)]))
_ANDERSSON_SPACED = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "SE"),
                                                  x509.NameAttribute(x509.NameOID.SURNAME, "  ANDERSSON ")]))


@pytest.mark.parametrize("critical", [pytest.param(True, id="critical"), pytest.param(False, id="not-critical")])
@pytest.mark.parametrize(("constraints", "accepted"), [
    pytest.param(x509.NameConstraints([_SWEDEN], None), True, id="permitted-subtree-holds-the-subject"),
    pytest.param(x509.NameConstraints([_NORWAY, _SWEDEN], None), True, id="one-of-two-permitted-subtrees-holds-it"),
    pytest.param(x509.NameConstraints([_NORWAY], None), False, id="no-permitted-subtree-holds-the-subject"),
    pytest.param(x509.NameConstraints([_KOMMUN_B], None), False, id="permitted-subtree-longer-than-a-prefix"),
    pytest.param(x509.NameConstraints(None, [_SWEDEN]), False, id="excluded-subtree-holds-the-subject"),
    pytest.param(x509.NameConstraints(None, [_NORWAY]), True, id="excluded-subtree-elsewhere"),
    pytest.param(x509.NameConstraints([_SWEDEN], [_NORWAY]), True, id="permitted-and-not-excluded"),
    pytest.param(x509.NameConstraints([_SWEDEN_LOWER_CASE], None), True,
                 id="permitted-subtree-in-another-case-and-string-type-holds-the-subject"),
    pytest.param(x509.NameConstraints(None, [_SWEDEN_LOWER_CASE]), False,
                 id="excluded-subtree-in-another-case-and-string-type-holds-the-subject"),
    pytest.param(x509.NameConstraints(None, [_ANDERSSON_SPACED]), False,
                 id="excluded-subtree-with-other-case-and-spaces-holds-the-subject"),
])
def test_directory_name_constraints_are_applied(h: Hierarchy, constraints: x509.NameConstraints, critical: bool,
                                                accepted: bool) -> None:
    """RFC 5280 §4.2.1.10, §6.1.3 (b)-(c): the leaf's subject (C=SE, ...) within the CA's permitted directory
    names and outside its excluded ones. cryptography's verifier ignores them when not critical and stops at
    them when critical: the broker processes both."""
    cert, domain, presented = _constrained(h, constraints, critical=critical)
    if accepted:
        path = verify_path(cert, domain, NOW, presented)
        assert [c.subject for c in path.chain] == [cert.subject, h.issuing.certificate.subject,
                                                   h.root.certificate.subject]
        assert path.chain[1].extensions.get_extension_for_class(x509.NameConstraints).value == constraints
        return
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.reason == "chain_invalid"
    assert "directory name" in caught.value.detail
    assert "RFC 5280 §4.2.1.10" in caught.value.detail
    assert "Anna" not in caught.value.detail  # the leaf's subject is personal data


def test_a_directory_name_in_the_subject_alt_name_is_constrained_too(h: Hierarchy) -> None:
    cert, domain, presented = _constrained(h, x509.NameConstraints([_SWEDEN], None), critical=True)
    constrained = replace(h.issuing, certificate=domain.intermediates[0])  # the usual CA's name and key
    sans = x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([
        x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "NO"), x509.NameAttribute(x509.NameOID.COMMON_NAME, "Anna")]))])
    cert = reissue(cert, constrained, extra=(sans,))
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.reason == "chain_invalid"
    assert "outside every subtree" in caught.value.detail


@pytest.mark.parametrize("forged", [
    pytest.param("leaf", id="leaf-signed-by-another-key-under-the-constrained-cas-name"),
    pytest.param("ca", id="constrained-ca-signed-by-another-key-under-the-roots-name"),
    pytest.param("expired-ca", id="constrained-ca-expired"),
])
def test_a_path_through_a_directory_constrained_ca_is_still_checked(h: Hierarchy, forged: str) -> None:
    cert, domain, presented = _constrained(h, x509.NameConstraints([_SWEDEN], None), critical=True)
    constrained = replace(h.issuing, certificate=domain.intermediates[0])
    if forged == "leaf":
        cert = impostor(constrained).issue(h.profile()).certificate
    else:
        signer = impostor(h.root) if forged == "ca" else h.root
        ca_cert = reissue(domain.intermediates[0], signer)
        if forged == "expired-ca":
            ca_cert = (x509.CertificateBuilder().subject_name(ca_cert.subject).issuer_name(ca_cert.issuer)
                       .public_key(ca_cert.public_key()).serial_number(ca_cert.serial_number)  # type: ignore[arg-type]
                       .not_valid_before(NOW - 10 * DAY).not_valid_after(NOW - DAY))
            for extension in domain.intermediates[0].extensions:
                ca_cert = ca_cert.add_extension(extension.value, extension.critical)
            ca_cert = ca_cert.sign(h.root.key, hashes.SHA256())
        domain = h.domain(intermediates=(ca_cert,))
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.reason in ("chain_invalid", "issuer_unknown")


def test_a_directory_constrained_certificate_without_basic_constraints_issues_nothing(h: Hierarchy) -> None:
    # not a CA (RFC 5280 §4.2.1.9): refused as any path through a non-CA is, not with an unhandled error
    cert, domain, presented = _constrained(h, x509.NameConstraints([_SWEDEN], None), critical=True)
    not_a_ca = reissue(domain.intermediates[0], h.root, without=[x509.BasicConstraints])
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, h.domain(intermediates=(not_a_ca,)), NOW, presented)
    assert caught.value.reason in ("chain_invalid", "issuer_unknown")


def test_directory_name_constraints_on_a_ca_below_the_issuing_ca_are_still_refused() -> None:
    # supported on a trust anchor and the CAs it issues; further down the verifier's fatal error stands
    deep, (level1, level2) = deep_hierarchy(NOW, 2)
    constrained = resigned(level2, x509.NameConstraints([_SWEDEN], None), critical=True)
    cert = constrained.issue(deep.profile()).certificate
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, deep.domain(intermediates=(level1.certificate, constrained.certificate)), NOW)
    assert caught.value.reason == "chain_invalid"
    assert "directoryName" in caught.value.detail


def test_the_constrained_cas_path_length_is_still_enforced(h: Hierarchy) -> None:
    # the stand-in anchor carries the CA's pathLenConstraint 0: a CA below it issues nothing that validates
    _, domain, _ = _constrained(h, x509.NameConstraints([_SWEDEN], None), critical=True)
    constrained = replace(h.issuing, certificate=domain.intermediates[0])
    sub = constrained.subordinate("Kommun A Sub CA", organization="Kommun A")
    leaf_cert = sub.issue(h.profile()).certificate
    with pytest.raises(CertificateRejected) as caught:
        verify_path(leaf_cert, h.domain(intermediates=(domain.intermediates[0], sub.certificate)), NOW)
    assert caught.value.reason == "chain_invalid"


@pytest.mark.parametrize(("usages", "accepted"), [
    pytest.param([ExtendedKeyUsageOID.SERVER_AUTH], False, id="anchor-for-server-authentication-only"),
    pytest.param([ExtendedKeyUsageOID.CLIENT_AUTH], True, id="anchor-for-client-authentication"),
    pytest.param([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], True, id="anchor-for-any-purpose"),
])
def test_the_anchor_above_a_directory_constrained_ca_is_held_to_its_purpose(h: Hierarchy,
                                                                          usages: list[x509.ObjectIdentifier],
                                                                          accepted: bool) -> None:
    """A trust anchor whose extendedKeyUsage does not include client authentication (nor anyExtendedKeyUsage)
    issues no path to a login certificate: the verifier refuses every path below it, and the path through a CA
    with critical directoryName constraints, whose anchor is checked in the verifier's place, is no way around
    that (RFC 5280 §4.2.1.12)."""
    cert, domain, presented = _constrained(h, x509.NameConstraints([_SWEDEN], None), critical=True)
    root = reissue(h.root.certificate, h.root, extra=[x509.ExtendedKeyUsage(usages)])
    domain = replace(domain, anchors=(root,), store=Store([root]))
    plain = replace(h.domain(), anchors=(root,), store=Store([root]))
    if accepted:
        assert verify_path(cert, domain, NOW, presented).chain[-1] == root
        assert verify_path(h.leaf().certificate, plain, NOW).chain[-1] == root
        return
    for leaf, trusted in ((cert, domain), (h.leaf().certificate, plain)):
        with pytest.raises(CertificateRejected) as caught:
            verify_path(leaf, trusted, NOW, presented)
        assert caught.value.reason == "chain_invalid"


LOCAL_POLICY = "2.999.7.1"  # a policy of the issuing CA's own domain, which it maps LoA 3 to


@pytest.mark.parametrize("extension", [
    # inhibitPolicyMapping: the CA asserts no certificatePolicies here, so a requireExplicitPolicy would make the
    # path invalid (RFC 5280 §6.1.3 (f); test_cli_cert's policy-processing cases)
    pytest.param(x509.PolicyConstraints(require_explicit_policy=None, inhibit_policy_mapping=0),
                 id="policy-constraints"),
    pytest.param(x509.InhibitAnyPolicy(0), id="inhibit-any-policy"),
    pytest.param(policy_mappings((POLICY_LOA3, LOCAL_POLICY)), id="policy-mappings"),
])
def test_critical_policy_extensions_are_left_to_policy_processing(h: Hierarchy, extension: x509.ExtensionType
                                                                  ) -> None:
    """RFC 5280 has CAs mark them critical; broker.pki.policy processes them, so the verifier must take them."""
    cert, domain, presented = _constrained(h, extension, critical=True)
    assert verify_path(cert, domain, NOW, presented).chain[0] == cert


@pytest.mark.parametrize("critical", [
    pytest.param(True, id="critical-as-rfc-5280-4.2.1.5-recommends"),
    pytest.param(False, id="not-critical"),
])
def test_policy_mapping_gives_the_mapped_loa_whether_critical_or_not(h: Hierarchy, critical: bool) -> None:
    """The issuing CA maps LoA 3 to its own policy, which the leaf asserts: the path verifies and the policy
    processing over it (RFC 5280 §6.1.4 (b)) gives LoA 3, whatever the extension's criticality."""
    issuing = resigned(resigned(h.issuing, policies(POLICY_LOA3)),
                       policy_mappings((POLICY_LOA3, LOCAL_POLICY)), critical=critical)
    assert issuing.certificate.extensions.get_extension_for_oid(x509.ExtensionOID.POLICY_MAPPINGS).critical \
        is critical
    cert = issuing.issue(h.profile(policies=(LOCAL_POLICY,))).certificate
    domain = h.domain(intermediates=(issuing.certificate,))
    path = verify_path(cert, domain, NOW)
    assert assurance_level(path.chain, domain) == (POLICY_LOA3, domain.policies[POLICY_LOA3])


_UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.999.9.9"), b"\x05\x00")


def _critical_on_leaf(extension: x509.ExtensionType) -> Build:
    def build(h: Hierarchy) -> Case:
        cert = reissue(h.leaf().certificate, h.issuing, extra=[extension], critical=True)
        return cert, h.domain(), ()
    return build


@pytest.mark.parametrize("build", [
    pytest.param(lambda h: _constrained(h, _UNKNOWN, critical=True), id="unknown-critical-extension-on-ca"),
    pytest.param(_critical_on_leaf(_UNKNOWN), id="unknown-critical-extension-on-leaf"),
    # policyMappings belongs in CA certificates only (RFC 5280 §4.2.1.5): taken from CAs, not from the leaf
    pytest.param(_critical_on_leaf(policy_mappings((POLICY_LOA3, LOCAL_POLICY))),
                 id="critical-policy-mappings-on-leaf"),
])
def test_other_critical_extensions_are_still_refused(h: Hierarchy, build: Build) -> None:
    """RFC 5280 §4.2: a certificate with a critical extension the validator does not process is refused."""
    cert, domain, presented = build(h)
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.reason == "chain_invalid"
    assert "critical" in caught.value.detail


@pytest.mark.parametrize("critical", [pytest.param(True, id="critical"), pytest.param(False, id="not-critical")])
def test_other_name_constraints_are_the_verifiers(h: Hierarchy, critical: bool) -> None:
    cert, domain, presented = _constrained(h, x509.NameConstraints([_DNS], None), critical=critical)
    assert verify_path(cert, domain, NOW, presented).chain[0] == cert


# --- rfc822Name constraints on the subject's emailAddress (RFC 5280 §4.2.1.10) ---

PERMITS_HOST = x509.NameConstraints([x509.RFC822Name("kommun-a.se")], None)
PERMITS_DOMAIN = x509.NameConstraints([x509.RFC822Name(".kommun-a.se")], None)
PERMITS_MAILBOX = x509.NameConstraints([x509.RFC822Name("anna@kommun-a.se")], None)
EXCLUDES_HOST = x509.NameConstraints(None, [x509.RFC822Name("evil.example")])
EXCLUDES_DOMAIN = x509.NameConstraints(None, [x509.RFC822Name(".evil.example")])
EXCLUDES_MAILBOX = x509.NameConstraints(None, [x509.RFC822Name("anna@kommun-a.se")])
PERMITS_DNS_ONLY = x509.NameConstraints([x509.DNSName("kommun-a.example.se")], None)


def email_constrained(constraints: x509.NameConstraints, *addresses: str, san_email: str | None = None) -> Build:
    """A leaf with ``addresses`` as emailAddress attributes of its subject (and a subjectAltName only with
    ``san_email``), under an issuing CA whose certificate carries ``constraints`` (critical, as RFC 5280
    §4.2.1.10 has CAs mark them)."""
    def build(h: Hierarchy) -> Case:
        ca = resigned(h.issuing, constraints, critical=True)
        cert = ca.issue(h.profile(san_email=san_email)).certificate
        for address in addresses:
            cert = with_subject_attribute(cert, ca, NameOID.EMAIL_ADDRESS, address)
        return cert, h.domain(intermediates=(ca.certificate,)), ()
    return build


def constrained_above_the_issuer(h: Hierarchy) -> Case:
    """The constraint sits on the CA above the leaf's issuer: it still applies to the leaf (RFC 5280 §6.1.3 (b))."""
    deep, cas = deep_hierarchy(NOW, 2)
    top = resigned(cas[0], PERMITS_HOST, critical=True)
    cert = with_subject_attribute(deep.leaf().certificate, cas[1], NameOID.EMAIL_ADDRESS, "anna@evil.example")
    return cert, deep.domain(intermediates=(top.certificate, cas[1].certificate)), ()


def constrained_trust_anchor(h: Hierarchy) -> Case:
    """The constraint sits on the trust anchor itself, which the verifier applies to alternative names too."""
    root = reissue(h.root.certificate, h.root, extra=[PERMITS_HOST], critical=True)
    cert = with_subject_attribute(h.leaf().certificate, h.issuing, NameOID.EMAIL_ADDRESS, "anna@evil.example")
    return cert, replace(h.domain(), anchors=(root,), store=Store([root])), ()


EMAIL_REFUSED = [
    pytest.param(email_constrained(PERMITS_HOST, "anna@evil.example"), id="permitted-host-not-matched"),
    pytest.param(email_constrained(PERMITS_HOST, "anna@mail.kommun-a.se"),
                 id="permitted-host-does-not-cover-its-subdomains"),
    pytest.param(email_constrained(PERMITS_DOMAIN, "anna@kommun-a.se"),
                 id="permitted-subdomain-form-does-not-cover-the-host-itself"),
    pytest.param(email_constrained(PERMITS_DOMAIN, "anna@mail.evilkommun-a.se"),
                 id="permitted-subdomain-form-needs-a-whole-label"),
    pytest.param(email_constrained(PERMITS_MAILBOX, "bertil@kommun-a.se"), id="permitted-mailbox-not-matched"),
    pytest.param(email_constrained(PERMITS_MAILBOX, "Anna@kommun-a.se"),
                 id="permitted-mailbox-local-part-is-case-sensitive"),
    pytest.param(email_constrained(EXCLUDES_HOST, "anna@evil.example"), id="excluded-host-matched"),
    pytest.param(email_constrained(EXCLUDES_HOST, "anna@EVIL.Example"), id="excluded-host-matched-in-other-case"),
    pytest.param(email_constrained(EXCLUDES_DOMAIN, "anna@mail.evil.example"), id="excluded-subdomain-matched"),
    pytest.param(email_constrained(EXCLUDES_MAILBOX, "anna@Kommun-A.se"), id="excluded-mailbox-matched"),
    pytest.param(email_constrained(PERMITS_HOST, "anna@kommun-a.se", "anna@evil.example"),
                 id="second-email-address-outside"),
    pytest.param(email_constrained(PERMITS_HOST, "not-a-mailbox"), id="email-address-not-a-mailbox"),
    pytest.param(constrained_above_the_issuer, id="constraint-on-the-ca-above-the-issuer"),
    pytest.param(constrained_trust_anchor, id="constraint-on-the-trust-anchor"),
]

EMAIL_ACCEPTED = [
    pytest.param(email_constrained(PERMITS_HOST, "anna@kommun-a.se"), id="permitted-host-matched"),
    pytest.param(email_constrained(PERMITS_HOST, "anna@Kommun-A.SE"),
                 id="permitted-host-matched-case-insensitively"),
    pytest.param(email_constrained(PERMITS_DOMAIN, "anna@mail.kommun-a.se"), id="permitted-subdomain-matched"),
    pytest.param(email_constrained(PERMITS_MAILBOX, "anna@kommun-a.se"), id="permitted-mailbox-matched"),
    pytest.param(email_constrained(EXCLUDES_HOST, "anna@kommun-a.se"), id="excluded-host-not-matched"),
    pytest.param(email_constrained(EXCLUDES_DOMAIN, "anna@evil.example"),
                 id="excluded-subdomain-form-leaves-the-host-itself"),
    # with a subjectAltName, the constraint applies to it (the verifier's part), not to emailAddress
    pytest.param(email_constrained(PERMITS_HOST, "anna@evil.example", san_email="anna@kommun-a.se"),
                 id="leaf-with-subject-alt-name-email-address-not-checked"),
    pytest.param(email_constrained(PERMITS_HOST), id="no-email-address"),
    pytest.param(email_constrained(PERMITS_DNS_ONLY, "anna@evil.example"), id="no-rfc822-name-constraints"),
]


@pytest.mark.parametrize("build", EMAIL_REFUSED)
def test_email_address_outside_rfc822_name_constraints_is_refused(h: Hierarchy, build: Build) -> None:
    cert, domain, presented = build(h)
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.reason == "chain_invalid"
    assert "emailAddress" in caught.value.detail
    assert "§4.2.1.10" in caught.value.detail


@pytest.mark.parametrize("build", EMAIL_ACCEPTED)
def test_email_address_within_rfc822_name_constraints_is_accepted(h: Hierarchy, build: Build) -> None:
    cert, domain, presented = build(h)
    assert verify_path(cert, domain, NOW, presented).chain[0] == cert


def test_email_address_refusal_names_the_host_not_the_person(h: Hierarchy) -> None:
    cert, domain, presented = email_constrained(PERMITS_HOST, "anna.andersson@evil.example")(h)
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.detail == (
        f"the certificate's subject emailAddress (at evil.example) is outside the rfc822Name subtrees "
        f"{h.issuing.certificate.subject.rfc4514_string()} permits (kommun-a.se) (RFC 5280 §4.2.1.10)")


@pytest.mark.parametrize(("build", "reason"), REJECTED)
def test_path_rejected_with_reason(h: Hierarchy, build: Build, reason: str) -> None:
    cert, domain, presented = build(h)
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("build", "when"), [
    pytest.param(issuing_ca_expired, "expired", id="expired"),
    pytest.param(issuing_ca_not_yet_valid, "is not valid before", id="not-yet-valid"),
])
def test_an_issuing_ca_out_of_date_is_named_with_its_validity(h: Hierarchy, build: Build, when: str) -> None:
    """The verifier's own words ("cert is not valid at validation time") name no certificate; the operator must
    learn which CA certificate to renew or replace (RFC 5280 §6.1.3 (a)(2))."""
    cert, domain, presented = build(h)
    ca = next(c for c in domain.intermediates if c.subject == cert.issuer)
    moment = ca.not_valid_after_utc if when == "expired" else ca.not_valid_before_utc
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, NOW, presented)
    assert caught.value.reason == "chain_invalid"
    assert caught.value.detail == (
        f"CA {ca.subject.rfc4514_string()}, which issued the login certificate, {when} {moment:%Y-%m-%d %H:%M} UTC: "
        "configure the CA's current certificate from the certificate issuer")


@pytest.mark.parametrize(("build", "reason"), REVOCATION_REJECTED)
def test_path_rejected_by_revocation_with_reason(h: Hierarchy, build: Build, reason: str) -> None:
    cert, domain, presented = build(h)
    with pytest.raises(CertificateRejected) as caught:
        verify_with_revocation(cert, domain, NOW, presented)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("build", "reason"), REVOCATION_REJECTED)
def test_path_validation_alone_leaves_revocation_to_the_checker(h: Hierarchy, build: Build, reason: str) -> None:
    cert, domain, presented = build(h)
    path = verify_path(cert, domain, NOW, presented)
    assert path.chain == (cert, h.issuing.certificate, h.root.certificate)
    assert path.checked_at == NOW


def intermediate_presented_by_client(h: Hierarchy) -> Case:
    # Presented intermediates are path-building hints: the anchor still decides.
    return h.leaf().certificate, h.domain(intermediates=()), (h.issuing.certificate,)


def chain_at_max_depth(h: Hierarchy) -> Case:
    deep, cas = deep_hierarchy(NOW, 3)
    return (deep.leaf().certificate,
            deep.domain(intermediates=[c.certificate for c in cas], max_chain_depth=3), ())


def unrelated_sha1_certificate_presented(h: Hierarchy) -> Case:
    # RFC 5280 §6.1 judges the path's certificates: a SHA-1 certificate sent along but not on the path is no reason
    other = Hierarchy.build(NOW, "Kommun B")
    return h.leaf().certificate, h.domain(), (sha1_resign(other.issuing.certificate, other.root.key),)


def unreadable_key_copy_of_the_issuing_ca_presented(h: Hierarchy) -> Case:
    # RFC 5280 §6.1 judges the path's certificates: a copy of the issuing CA whose key cannot be read is on no path
    return h.leaf().certificate, h.domain(), (with_unreadable_key(h.issuing.certificate, h.root),)


def legacy_sha1_cross_certificate_presented(h: Hierarchy) -> Case:
    # the issuing CA's key also certified with SHA-1 by another root (a legacy cross-certificate browsers send)
    bridge = Hierarchy.build(NOW, "Bridge").root
    issuing = h.issuing.certificate
    cross = (x509.CertificateBuilder().subject_name(issuing.subject).issuer_name(bridge.certificate.subject)
             .public_key(h.issuing.key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(issuing.not_valid_before_utc).not_valid_after(issuing.not_valid_after_utc)
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .sign(bridge.key, hashes.SHA256()))
    return h.leaf().certificate, h.domain(), (sha1_resign(cross, bridge.key),)


ACCEPTED = [
    pytest.param(leaf(), id="default-profile-without-subject-alt-name"),
    pytest.param(leaf(eku=None), id="eku-absent"),
    pytest.param(leaf(eku=(SERVER_AUTH, CLIENT_AUTH, EMAIL_PROTECTION)), id="eku-client-auth-among-others"),
    pytest.param(leaf(digital_signature=True, non_repudiation=True), id="key-usage-digital-signature-and-nr"),
    pytest.param(leaf(san_upn="anna.andersson@kommun-a.example.se", san_email="anna@kommun-a.example.se"),
                 id="subject-alt-name-upn-and-email"),
    pytest.param(leaf(key="ec256"), id="ecdsa-p256-leaf"),
    pytest.param(leaf(key="ec384"), id="ecdsa-p384-leaf"),
    pytest.param(leaf(key="rsa2048"), id="rsa-2048-leaf"),
    pytest.param(intermediate_presented_by_client, id="intermediate-presented-by-client"),
    pytest.param(chain_at_max_depth, id="chain-exactly-at-max-chain-depth"),
    pytest.param(unrelated_sha1_certificate_presented, id="unrelated-sha1-certificate-presented"),
    pytest.param(legacy_sha1_cross_certificate_presented, id="legacy-sha1-cross-certificate-presented"),
    pytest.param(unreadable_key_copy_of_the_issuing_ca_presented, id="unreadable-key-copy-of-the-issuing-ca-presented"),
]


@pytest.mark.parametrize("build", ACCEPTED)
def test_path_accepted(h: Hierarchy, build: Build) -> None:
    cert, domain, presented = build(h)
    path = verify_path(cert, domain, NOW, presented)
    assert path.chain[0] == cert
    assert path.chain[-1] in domain.anchors
    assert path.checked_at == NOW


def test_default_profile_really_has_no_subject_alt_name(h: Hierarchy) -> None:
    # Guards the "accepted without subjectAltName" case above: the cryptography verifier requires one by
    # default, the broker deliberately does not.
    with pytest.raises(x509.ExtensionNotFound):
        h.leaf().certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)


# --- validity boundaries: RFC 5280 §4.1.2.5, notBefore and notAfter both inclusive ---

NOT_BEFORE = NOW - 1800 * SECOND
NOT_AFTER = NOW + 2 * DAY


@pytest.fixture(scope="module")
def bounded(h: Hierarchy) -> tuple[x509.Certificate, TrustDomain]:
    cert = h.leaf(valid_from=NOT_BEFORE, valid_until=NOT_AFTER).certificate
    return cert, h.domain(crls=h.fresh_crls())


@pytest.mark.parametrize("at", [
    pytest.param(NOT_BEFORE, id="exactly-not-before"),
    pytest.param(NOT_AFTER, id="exactly-not-after"),
])
def test_validity_bounds_are_inclusive(bounded: tuple[x509.Certificate, TrustDomain], at: dt.datetime) -> None:
    cert, domain = bounded
    assert verify_path(cert, domain, at).checked_at == at


@pytest.mark.parametrize(("at", "reason"), [
    pytest.param(NOT_BEFORE - SECOND, "certificate_not_yet_valid", id="one-second-before-not-before"),
    pytest.param(NOT_AFTER + SECOND, "certificate_expired", id="one-second-after-not-after"),
])
def test_validity_one_second_outside(bounded: tuple[x509.Certificate, TrustDomain], at: dt.datetime,
                                     reason: str) -> None:
    cert, domain = bounded
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, domain, at)
    assert caught.value.reason == reason


def _first_to_expire(which: str) -> tuple[x509.Certificate, TrustDomain, dt.datetime]:
    """A path on which ``which`` (leaf, issuing-ca, trust-anchor) reaches its notAfter first, ten days after NOW."""
    end = NOW + 10 * DAY
    root = CertificateAuthority.root("Kommun A Test Root CA", NOW, organization="Kommun A",
                                     valid_from=NOW - 100 * DAY, valid_days=110 if which == "trust-anchor" else 3650)
    issuing = root.subordinate("Kommun A Test Person CA", organization="Kommun A", valid_from=NOW - 50 * DAY,
                               valid_days=60 if which == "issuing-ca" else 1000)
    h = Hierarchy(NOW, root, issuing)
    cert = h.leaf(valid_until=end if which == "leaf" else NOW + 365 * DAY).certificate
    return cert, h.domain(), end


@pytest.mark.parametrize("which", [
    pytest.param("leaf", id="leaf"),
    pytest.param("issuing-ca", id="issuing-ca"),
    pytest.param("trust-anchor", id="trust-anchor"),
])
def test_a_path_is_valid_until_its_first_certificate_expires(which: str) -> None:
    """What a path proves ends where validating it again would refuse it: at the earliest notAfter of its
    certificates (RFC 5280 §4.1.2.5, §6.1.3 (a)(2)), the trust anchor's included, since the verifier judges its
    validity too (an expired root leaves no path, as x509-limbo's rfc5280::validity::expired-root expects). A
    session rests on it (SessionNotOnOrAfter)."""
    cert, domain, end = _first_to_expire(which)
    assert verify_path(cert, domain, NOW).not_after == end
    assert verify_path(cert, domain, end).checked_at == end
    with pytest.raises(CertificateRejected):
        verify_path(cert, domain, end + SECOND)


def test_rejection_params_carry_the_date_for_the_error_page(h: Hierarchy) -> None:
    cert = h.leaf(valid_from=NOW - 400 * DAY, valid_until=dt.datetime(2026, 2, 1, 12, tzinfo=dt.UTC)).certificate
    with pytest.raises(CertificateRejected) as caught:
        verify_path(cert, h.domain(), NOW)
    assert caught.value.params == {"not_after": "2026-02-01"}


# --- what the revocation check of a verified path records ---

LONG_CACHE = Duration(90 * 86400)


def test_path_with_crls_records_revocation_and_earliest_next_update(h: Hierarchy) -> None:
    issuing_next, root_next = NOW + 2 * DAY, NOW + 30 * DAY
    crls = [h.issuing.crl(next_update=issuing_next), h.root.crl(next_update=root_next)]
    domain = replace(h.domain(), revocation=crl_policy((h.root.certificate, h.issuing.certificate), crls,
                                                        max_cache_time=LONG_CACHE))
    cert = h.leaf().certificate
    path, outcome = verify_with_revocation(cert, domain, NOW)
    assert path.chain == (cert, h.issuing.certificate, h.root.certificate)
    assert outcome.summary == "crl"
    assert outcome.valid_until == issuing_next
    # a user's certificate is named by serial and issuer, never by its subject (personal data)
    assert [(c.certificate, c.status, c.method, c.next_update) for c in outcome.checked] == [
        (f"certificate serial {cert.serial_number:x} from {cert.issuer.rfc4514_string()}", "good", "crl",
         issuing_next),
        (f"CA {h.issuing.certificate.subject.rfc4514_string()}", "good", "crl", root_next)]


def test_revocation_answer_is_cached_no_longer_than_max_cache_time(h: Hierarchy) -> None:
    # the default max_cache_time (1h) is shorter than either CRL's nextUpdate
    domain = h.domain(crls=[h.issuing.crl(next_update=NOW + 2 * DAY), h.root.crl(next_update=NOW + 30 * DAY)])
    assert domain.revocation is not None
    assert domain.revocation.config.max_cache_time == Duration(3600)
    _path, outcome = verify_with_revocation(h.leaf().certificate, domain, NOW)
    assert outcome.summary == "crl"
    assert outcome.valid_until == NOW + 3600 * SECOND


def test_path_without_crls_records_revocation_not_checked(h: Hierarchy) -> None:
    domain = h.domain(crls=None)
    assert domain.revocation is None
    _path, outcome = verify_with_revocation(h.leaf().certificate, domain, NOW)
    assert (outcome.summary, outcome.valid_until, outcome.checked) == ("not_checked", None, ())


def test_revocation_is_established_after_the_path(h: Hierarchy) -> None:
    cert = h.leaf().certificate
    domain = h.domain(crls=[revoking(h.issuing, cert).crl(), h.root.crl()])
    path = verify_path(cert, domain, NOW)
    assert path.chain[0] == cert
    check = checker(NOW)
    assert domain.revocation is not None
    check.register(domain.revocation)
    with pytest.raises(CertificateRejected) as caught:
        check.check(path.chain, domain.revocation)
    assert caught.value.reason == "revoked"


ANY_POLICY = x509.ObjectIdentifier("2.5.29.32.0")


def _self_issued_rollover(ca: CertificateAuthority, path_length: int | None) -> CertificateAuthority:
    """``ca``'s key rollover certificate: subject = issuer = ``ca``'s name, a new key signed by the old one
    (self-issued, RFC 5280 §6.1)."""
    key = new_key("ec256")
    name = ca.certificate.subject
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=100))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(ANY_POLICY, None)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return CertificateAuthority(cert, key, NOW, parent=ca)


@pytest.mark.parametrize(("path_length", "reason"), [
    pytest.param(1, None, id="room-for-it-accepted"),
    # RFC 5280 §6.1.4 (l) would accept this too; cryptography's verifier counts the self-issued certificate (a
    # deviation documented in broker.pki.path): pinned, so that a verifier that stops counting it is noticed
    pytest.param(0, "chain_invalid", id="path-length-0-refused-by-the-verifier"),
])
def test_a_ca_key_rollover_certificate_under_a_path_length(path_length: int, reason: str | None) -> None:
    h = Hierarchy.build(NOW)
    issuing = h.root.subordinate("Kommun A Test Person CA", organization="Kommun A", path_length=path_length)
    rolled = _self_issued_rollover(issuing, path_length=0)
    leaf = Hierarchy(NOW, h.root, rolled).leaf().certificate
    domain = h.domain(intermediates=(issuing.certificate, rolled.certificate))
    if reason is None:
        assert verify_path(leaf, domain, NOW).chain == (leaf, rolled.certificate, issuing.certificate,
                                                        h.root.certificate)
    else:
        with pytest.raises(CertificateRejected) as refused:
            verify_path(leaf, domain, NOW)
        assert refused.value.reason == reason
