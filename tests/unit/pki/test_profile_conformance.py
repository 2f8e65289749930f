"""RFC 5280 profile rules at the edges a conformance corpus probes: what an empty subject demands of the
subjectAltName (§4.2.1.6), extensions the broker processes itself marked critical (§4.2.1.4, §4.2.1.12), a policy
OID named twice (§4.2.1.4), a weak trust-anchor key, and identity values that only look like a valid one (a
personnummer born in the future, an HSA-id with Unicode space or a control character after it).

Each case is one certificate from the demo hierarchy (tests/factories/pki.py) changed in one respect and signed
for real; the assertions name the broker's reason code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.config.schema import IdentityRule
from broker.config.values import luhn_valid
from broker.demo.certificates import UPN_OID, CertificateAuthority, _utf8_string
from broker.errors import CertificateRejected
from broker.pki.identity import check_personnummer, extract_identity
from broker.pki.naming import not_a_ca
from tests.factories.pki import HSA_ID, POLICY_LOA3, Hierarchy
from tests.factories.pki_cases import CRL_SIGN_ONLY, NOW, policies, reissue, validator

DAY = dt.timedelta(days=1)
HSA_IN_UPN = IdentityRule(type="hsa_id", source="san_upn")
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
                     x509.NameAttribute(NameOID.SERIAL_NUMBER, HSA_ID),
                     x509.NameAttribute(NameOID.COMMON_NAME, "Anna Andersson")])


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


def leaf(h: Hierarchy, *, subject: x509.Name = SUBJECT,
         extra: tuple[tuple[x509.ExtensionType, bool], ...] = (),
         without: tuple[x509.ObjectIdentifier, ...] = (), issuer: x509.Name | None = None) -> x509.Certificate:
    """A login certificate from ``h.issuing`` (digitalSignature, clientAuth, the LoA 3 policy), each of ``extra``
    (value, critical) added or replacing the extension of its type, those of ``without`` left out, and the issuer
    name written as ``issuer`` (default: the CA's subject as its certificate encodes it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    extensions: dict[x509.ObjectIdentifier, tuple[x509.ExtensionType, bool]] = {
        x509.BasicConstraints.oid: (x509.BasicConstraints(ca=False, path_length=None), True),
        x509.AuthorityKeyIdentifier.oid: (
            x509.AuthorityKeyIdentifier.from_issuer_public_key(h.issuing.key.public_key()), False),
        x509.SubjectKeyIdentifier.oid: (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        x509.KeyUsage.oid: (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
        x509.ExtendedKeyUsage.oid: (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        x509.CertificatePolicies.oid: (policies(POLICY_LOA3), False),
    }
    for value, critical in extra:
        extensions[value.oid] = (value, critical)
    for oid in without:
        del extensions[oid]
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or h.issuing.certificate.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - DAY).not_valid_after(NOW + 365 * DAY))
    for value, critical in extensions.values():
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(h.issuing.key, hashes.SHA256())


def refused(h: Hierarchy, cert: x509.Certificate, **domain: object) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as caught:
        validator(h.domain(**domain)).validate(cert)  # type: ignore[arg-type]
    return caught.value


UPN = x509.SubjectAlternativeName([x509.OtherName(UPN_OID, _utf8_string(HSA_ID))])


# --- RFC 5280 §4.2.1.6: an empty subject needs a critical subjectAltName ----------------------------------------


@pytest.mark.parametrize("san", ["non-critical", "absent"])
def test_an_empty_subject_without_a_critical_subject_alt_name_is_refused(h: Hierarchy, san: str) -> None:
    cert = leaf(h, subject=x509.Name([]), extra=((UPN, False),) if san == "non-critical" else ())
    rejected = refused(h, cert, identity=HSA_IN_UPN)
    assert rejected.reason == "chain_invalid"
    assert "the subject is empty" in rejected.detail
    assert "RFC 5280 §4.2.1.6" in rejected.detail


def test_an_empty_subject_with_a_critical_subject_alt_name_logs_in(h: Hierarchy) -> None:
    result = validator(h.domain(identity=HSA_IN_UPN)).validate(leaf(h, subject=x509.Name([]), extra=((UPN, True),)))
    assert (result.identity.key, result.loa.name) == (HSA_ID, "loa3")


# --- extensions the broker processes itself may be critical --------------------------------------------------------


@pytest.mark.parametrize("extension", [
    pytest.param(policies(POLICY_LOA3), id="certificate-policies"),  # RFC 5280 §4.2.1.4
    pytest.param(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), id="client-auth-eku"),  # §4.2.1.12
])
def test_a_login_certificate_may_mark_critical_what_the_broker_processes(h: Hierarchy,
                                                                         extension: x509.ExtensionType) -> None:
    result = validator(h.domain()).validate(leaf(h, extra=((extension, True),)))
    assert (result.identity.key, result.loa.name) == (HSA_ID, "loa3")


def test_a_critical_eku_without_client_auth_is_still_refused(h: Hierarchy) -> None:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])
    assert refused(h, leaf(h, extra=((eku, True),))).reason == "eku_not_client_auth"


def test_a_ca_may_mark_its_certificate_policies_critical(h: Hierarchy) -> None:
    ca = replace(h.issuing, certificate=reissue(h.issuing.certificate, h.root, extra=[policies("2.5.29.32.0")],
                                                critical=True))
    result = validator(h.domain(intermediates=(ca.certificate,))).validate(ca.issue(h.profile()).certificate)
    assert result.loa.name == "loa3"


def test_an_unknown_critical_extension_is_still_refused(h: Hierarchy) -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    assert refused(h, leaf(h, extra=((unknown, True),))).reason == "chain_invalid"


# --- RFC 5280 §4.2.1.4: a policy OID appears once -------------------------------------------------------------------


def test_a_policy_named_twice_is_refused(h: Hierarchy) -> None:
    rejected = refused(h, leaf(h, extra=((policies(POLICY_LOA3, POLICY_LOA3), False),)))
    assert rejected.reason == "chain_invalid"
    assert f"certificatePolicies names {POLICY_LOA3} more than once (RFC 5280 §4.2.1.4)" in rejected.detail


# --- a weak key at the trust anchor ---------------------------------------------------------------------------------


def test_an_rsa_1024_trust_anchor_is_named_as_a_weak_key() -> None:
    weak = Hierarchy.build(NOW, key="rsa1024")
    rejected = refused(weak, weak.leaf().certificate)
    assert rejected.reason == "weak_key"
    assert "1024" in rejected.detail


# --- identity values ----------------------------------------------------------------------------------------------


def _with_check_digit(first11: str) -> str:
    return next(first11 + d for d in "0123456789" if luhn_valid(first11[2:] + d))


@pytest.mark.parametrize("first11", [
    pytest.param("20260303123", id="born-tomorrow"),
    pytest.param("20991231123", id="born-2099"),
    pytest.param("20260363123", id="samordningsnummer-born-tomorrow"),
])
def test_a_personnummer_born_in_the_future_is_refused(h: Hierarchy, first11: str) -> None:
    value = _with_check_digit(first11)
    with pytest.raises(ValueError, match="lies in the future"):
        check_personnummer(value, NOW.date())
    with pytest.raises(CertificateRejected) as caught:
        validator(h.domain(identity=IdentityRule(type="personnummer"))).validate(
            h.leaf(serial_number=value).certificate)
    assert caught.value.reason == "identity_invalid"
    assert value not in caught.value.detail  # personal data stays out of the detail


def test_a_personnummer_born_today_is_accepted() -> None:
    check_personnummer(_with_check_digit("20260302123"), NOW.date())


@pytest.mark.parametrize("suffix", [
    pytest.param("\u3000", id="ideographic-space"),
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\u00a0", id="no-break-space"),
    pytest.param("\x1f", id="unit-separator-control-character"),
])
def test_an_identity_with_unicode_space_or_a_control_character_is_refused(h: Hierarchy, suffix: str) -> None:
    """Python's str.strip() takes all of these off, so the value would become the plain HSA-id: another value
    in the certificate must not map to the same user."""
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, HSA_ID + suffix, _type=_ASN1Type.UTF8String)])
    with pytest.raises(CertificateRejected) as caught:
        extract_identity(leaf(h, subject=subject), IdentityRule(type="hsa_id"), "kommun-a", NOW.date())
    assert caught.value.reason == "identity_invalid"


@pytest.mark.parametrize("padding", [" ", "\t", "  \r\n"], ids=["space", "tab", "line-break"])
def test_xml_white_space_around_an_identity_is_padding(h: Hierarchy, padding: str) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, padding + HSA_ID + padding,
                                            _type=_ASN1Type.UTF8String)])
    identity = extract_identity(leaf(h, subject=subject), IdentityRule(type="hsa_id"), "kommun-a", NOW.date())
    assert identity.key == HSA_ID


# --- what path validation asks of the CA's and the certificate's own extensions (PKITS 4.6.4; §4.2.1.1) ------------


def _issuing_with(h: Hierarchy, constraints: x509.BasicConstraints, *, critical: bool) -> CertificateAuthority:
    return replace(h.issuing, certificate=reissue(h.issuing.certificate, h.root, extra=[constraints],
                                                  critical=critical))


def test_a_ca_whose_basic_constraints_are_not_marked_critical_is_still_a_ca(h: Hierarchy) -> None:
    """§6.1.4 (k) asks whether the certificate is a CA; marking the extension critical is the CA's duty
    (§4.2.1.9), not something path validation checks (PKITS 4.6.4 "Valid basicConstraints Not Critical")."""
    ca = _issuing_with(h, x509.BasicConstraints(ca=True, path_length=0), critical=False)
    result = validator(h.domain(intermediates=(ca.certificate,))).validate(ca.issue(h.profile()).certificate)
    assert (result.identity.key, result.loa.name) == (HSA_ID, "loa3")


def test_a_non_critical_basic_constraints_without_ca_is_still_no_ca(h: Hierarchy) -> None:
    ca = _issuing_with(h, x509.BasicConstraints(ca=False, path_length=None), critical=False)
    rejected = refused(h, ca.issue(h.profile()).certificate, intermediates=(ca.certificate,))
    assert rejected.reason == "chain_invalid"
    assert "cA must be asserted" in rejected.detail


def test_a_non_critical_path_length_constraint_still_holds(h: Hierarchy) -> None:
    ca = _issuing_with(h, x509.BasicConstraints(ca=True, path_length=0), critical=False)
    below = ca.subordinate("Kommun A Test Sub CA", organization="Kommun A")
    rejected = refused(h, below.issue(h.profile()).certificate, intermediates=(ca.certificate, below.certificate))
    assert rejected.reason == "chain_invalid"


def _without_key_usage(h: Hierarchy, which: str) -> Hierarchy:
    """``h`` with the issuing CA's or the trust anchor's certificate re-signed without keyUsage."""
    if which == "issuing-ca":
        return replace(h, issuing=replace(h.issuing, certificate=reissue(h.issuing.certificate, h.root,
                                                                         without=[x509.KeyUsage])))
    root = replace(h.root, certificate=reissue(h.root.certificate, h.root, without=[x509.KeyUsage]))
    return Hierarchy(NOW, root, root.subordinate("Kommun A Test Person CA", organization="Kommun A"))


@pytest.mark.parametrize("which", ["issuing-ca", "trust-anchor"])
def test_a_ca_certificate_without_key_usage_is_still_a_ca(h: Hierarchy, which: str) -> None:
    """§6.1.4 (n) checks keyCertSign where a key usage extension is present; including one is the CA's duty
    (§4.2.1.3), not something path validation checks, and the configuration takes such a CA as a trust anchor or
    intermediate (broker.pki.naming.not_a_ca): the logins through it must not all fail."""
    bare = _without_key_usage(h, which)
    ca = bare.issuing if which == "issuing-ca" else bare.root
    assert not_a_ca(ca.certificate) is None
    result = validator(bare.domain()).validate(bare.leaf().certificate)
    assert (result.identity.key, result.loa.name) == (HSA_ID, "loa3")


def test_a_ca_key_usage_without_key_cert_sign_is_still_refused(h: Hierarchy) -> None:
    ca = replace(h.issuing, certificate=reissue(h.issuing.certificate, h.root, extra=[CRL_SIGN_ONLY], critical=True))
    rejected = refused(h, ca.issue(h.profile()).certificate, intermediates=(ca.certificate,))
    assert rejected.reason == "chain_invalid"
    assert "keyCertSign" in rejected.detail


def test_a_login_certificate_without_an_authority_key_identifier_logs_in(h: Hierarchy) -> None:
    """§4.2.1.1 binds the CA; the issuer's name and signature decide the path."""
    result = validator(h.domain()).validate(leaf(h, without=(x509.AuthorityKeyIdentifier.oid,)))
    assert (result.identity.key, result.loa.name) == (HSA_ID, "loa3")


def test_a_critical_authority_key_identifier_is_refused(h: Hierarchy) -> None:
    """§4.2.1.1: "Conforming CAs MUST mark this extension as non-critical"."""
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(h.issuing.key.public_key())
    rejected = refused(h, leaf(h, extra=((aki, True),)))
    assert rejected.reason == "chain_invalid"
    assert "the login certificate marks its authorityKeyIdentifier critical" in rejected.detail
    assert "RFC 5280 §4.2.1.1" in rejected.detail


@pytest.mark.parametrize("depth", [pytest.param(1, id="issuing-ca"), pytest.param(2, id="ca-above-the-issuing-ca")])
def test_a_ca_certificate_with_a_critical_authority_key_identifier_is_refused_by_name(h: Hierarchy,
                                                                                      depth: int) -> None:
    """The same rule for a CA (§4.2.1.1 binds every conforming CA), the detail naming the CA that broke it rather
    than the verifier's "incorrect criticality"."""
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(h.root.key.public_key())
    upper = _issuing_with(h, x509.BasicConstraints(ca=True, path_length=None if depth == 2 else 0), critical=True)
    upper = replace(upper, certificate=reissue(upper.certificate, h.root, extra=[aki], critical=True))
    issuing = upper.subordinate("Kommun A Test Sub CA", organization="Kommun A") if depth == 2 else upper
    intermediates = (upper.certificate, issuing.certificate) if depth == 2 else (upper.certificate,)
    rejected = refused(h, issuing.issue(h.profile()).certificate, intermediates=intermediates)
    assert rejected.reason == "chain_invalid"
    assert f"{upper.certificate.subject.rfc4514_string()} marks its authorityKeyIdentifier critical" in rejected.detail
    assert "RFC 5280 §4.2.1.1" in rejected.detail


@pytest.mark.parametrize("rewrite", [
    pytest.param(lambda a: x509.NameAttribute(a.oid, a.value, _ASN1Type.PrintableString), id="printable-string"),
    pytest.param(lambda a: x509.NameAttribute(a.oid, a.value.upper(), a._type), id="upper-case"),
    pytest.param(lambda a: x509.NameAttribute(a.oid, a.value.replace(" ", "  "), a._type), id="doubled-spaces"),
])
def test_an_issuer_name_written_otherwise_than_the_ca_writes_it_names_the_ca(h: Hierarchy, rewrite: Any) -> None:
    """RFC 5280 §7.1 calls these the same name; the path validator compares names as encoded (a deviation
    inherited from cryptography, broker.pki.path): refused, and the detail names the configured CA and why."""
    issuer = x509.Name([a if a.oid == NameOID.COUNTRY_NAME else rewrite(a) for a in h.issuing.certificate.subject])
    rejected = refused(h, leaf(h, issuer=issuer))
    assert rejected.reason == "issuer_unknown"
    assert f"the configured CA {h.issuing.certificate.subject.rfc4514_string()} of " in rejected.detail
    assert "other string types, letter case or spacing" in rejected.detail


def test_an_unrelated_issuer_name_is_just_unknown(h: Hierarchy) -> None:
    other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Somewhere Else CA")])
    rejected = refused(h, leaf(h, issuer=other))
    assert (rejected.reason, rejected.detail) == ("issuer_unknown", "issuer CN=Somewhere Else CA")
