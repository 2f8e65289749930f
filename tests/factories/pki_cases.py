"""Certificates and CRLs the demo builder cannot make on its own, for the PKI rejection cases.

Everything here starts from material made by :mod:`tests.factories.pki` and
changes one thing: a certificate re-signed without an extension or with a
different subject, a CA with a stranger's key under a real CA's name, a CRL
with extensions of our choosing. Signatures are real (SHA-256, or SHA-1 via
:func:`tests.factories.pki.sha1_resign` where the case is about SHA-1).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID

from broker.clock import FixedClock
from broker.demo.certificates import CertificateAuthority, new_key
from broker.pki.truststore import TrustDomain, TrustIndex
from broker.pki.validator import CertificateValidator
from tests.factories.pki import Hierarchy, checker, sha1_resign

# A fixed instant for every PKI test: whole seconds, as certificates store them.
NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)

# Personnummer and samordningsnummer test values (last digit: Luhn over the 10-digit form).
PERSONNUMMER_VALID = "191212121212"          # Skatteverket's "Tolvan Tolvansson"
SAMORDNINGSNUMMER_VALID = "191212721235"     # day 12 + 60
PERSONNUMMER_LEAP_DAY = "201202291231"       # 2012-02-29 exists
PERSONNUMMER_BAD_CHECK_DIGIT = "191212121213"
PERSONNUMMER_IMPOSSIBLE_DATE = "191902301231"  # 30 February, check digit right
PERSONNUMMER_NOT_LEAP_YEAR = "201102291232"    # 2011-02-29, check digit right


def reissue(cert: x509.Certificate, signer: CertificateAuthority, *,
            subject: x509.Name | None = None,
            without: Sequence[type[x509.ExtensionType]] = (),
            extra: Sequence[x509.ExtensionType] = (), critical: bool = False,
            serial: int | None = None) -> x509.Certificate:
    """``cert`` rebuilt (same key, serial unless ``serial``, validity) with a new subject or without some
    extensions, signed by ``signer`` with SHA-256. ``extra`` extensions are added (marked critical when
    ``critical``), each replacing one with the same OID."""
    replaced = {value.oid for value in extra}
    b = (
        x509.CertificateBuilder()
        .subject_name(subject or cert.subject)
        .issuer_name(signer.certificate.subject)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number if serial is None else serial)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if not any(isinstance(ext.value, kind) for kind in without) and ext.oid not in replaced:
            b = b.add_extension(ext.value, critical=ext.critical)
    for value in extra:
        b = b.add_extension(value, critical=critical)
    return b.sign(signer.key, hashes.SHA256())


def with_subject_attribute(cert: x509.Certificate, signer: CertificateAuthority,
                           oid: x509.ObjectIdentifier, value: str) -> x509.Certificate:
    """``cert`` with one more subject attribute (e.g. a second serialNumber)."""
    subject = x509.Name([*cert.subject, x509.NameAttribute(oid, value)])
    return reissue(cert, signer, subject=subject)


def with_duplicate_extension(cert: x509.Certificate, signer: CertificateAuthority) -> x509.Certificate:
    """``cert`` (which must carry a subjectAltName) with that extension's OID rewritten to keyUsage's, re-signed
    by ``signer``: two keyUsage extensions, which RFC 5280 §4.2 forbids ("MUST NOT include more than one
    instance of a particular extension"). cryptography loads it and fails only when the extensions are read."""
    san, key_usage = b"\x06\x03\x55\x1d\x11", b"\x06\x03\x55\x1d\x0f"
    tbs = cert.tbs_certificate_bytes
    if tbs.count(san) != 1:
        raise ValueError("the certificate must carry exactly one subjectAltName")
    # the algorithm stays SHA-256 with the signer's key type, so _signed_again copies it from the original
    return _signed_again(cert, tbs.replace(san, key_usage), signer)


def with_unreadable_key(cert: x509.Certificate, signer: CertificateAuthority) -> x509.Certificate:
    """``cert`` (which must hold an EC key) with the last byte of its public point changed, re-signed by ``signer``
    with SHA-256: every field reads, but the point lies off the curve, so ``public_key()`` raises ValueError
    (SEC 1 §3.2.2.1, RFC 5480 §2.2), as for any certificate whose key cryptography cannot load."""
    point = cert.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    tbs = cert.tbs_certificate_bytes
    if tbs.count(point) != 1:
        raise ValueError("the certificate must hold its EC point once")
    tbs = tbs.replace(point, point[:-1] + bytes([point[-1] ^ 0x01]))
    return _signed_again(cert, tbs, signer)


def _signed_again(cert: x509.Certificate, tbs: bytes, signer: CertificateAuthority) -> x509.Certificate:
    """``cert`` with its signed part replaced by ``tbs`` (of the same signature algorithm), signed by ``signer``
    with SHA-256 (RFC 5280 §4.1: tbsCertificate, signatureAlgorithm, signatureValue)."""
    key = signer.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise TypeError(f"cannot sign with {type(key).__name__}")
    der = cert.public_bytes(Encoding.DER)
    after_tbs = der[der.index(cert.tbs_certificate_bytes) + len(cert.tbs_certificate_bytes):]
    algorithm = after_tbs[:2 + after_tbs[1]]
    return x509.load_der_x509_certificate(_der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature)))


def impostor(ca: CertificateAuthority) -> CertificateAuthority:
    """A CA with ``ca``'s certificate (so its name) but a key of its own: what it signs never chains."""
    return replace(ca, key=new_key("ec256"), revoked={})


def revoking(ca: CertificateAuthority, *certs: x509.Certificate,
             at: dt.datetime | None = None) -> CertificateAuthority:
    """A copy of ``ca`` that has also revoked ``certs`` (the original is left as it was)."""
    revoked = dict(ca.revoked)
    revoked.update({c.serial_number: at or ca.now - dt.timedelta(days=1) for c in certs})
    return replace(ca, revoked=revoked)


# keyUsage of a certificate whose key signs CRLs and nothing else
CRL_SIGN_ONLY = x509.KeyUsage(False, False, False, False, False, False, True, False, False)
CERT_SIGN_ONLY = x509.KeyUsage(False, False, False, False, False, True, False, False, False)


def crl_signing_key(ca: CertificateAuthority, signer: CertificateAuthority | None = None, *,
                    usage: x509.KeyUsage | None = CRL_SIGN_ONLY) -> CertificateAuthority:
    """Another key of ``ca``'s name, to sign its CRLs (RFC 5280 §6.3.3 (f); PKITS 4.4.19 "Separate Certificate and
    CRL Keys", 4.5.6 "Basic Self-Issued CRL Signing Key"): a certificate with ``ca``'s subject and a new key,
    issued by ``signer`` (``ca``'s parent unless given; ``ca`` itself makes it self-issued), with keyUsage
    ``usage`` (critical; none when None). Its revocations start empty."""
    parent = signer or ca.parent
    if parent is None:
        raise ValueError("a root has no parent to issue its CRL-signing certificate")
    key = new_key("ec256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca.certificate.subject)
        .issuer_name(parent.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.now - dt.timedelta(days=30))
        .not_valid_after(ca.now + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False)
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return CertificateAuthority(builder.sign(parent.key, hashes.SHA256()), key, ca.now, parent=parent)


def sha1_subordinate(parent: CertificateAuthority, name: str) -> CertificateAuthority:
    """A subordinate CA of ``parent`` whose certificate ``parent`` signed with SHA-1."""
    sub = parent.subordinate(name, organization="Kommun A")
    return replace(sub, certificate=sha1_resign(sub.certificate, parent.key))


def deep_hierarchy(now: dt.datetime, levels: int) -> tuple[Hierarchy, list[CertificateAuthority]]:
    """Root, then ``levels`` CAs each under the previous one (path lengths unconstrained);
    the Hierarchy's issuing CA is the lowest."""
    h = Hierarchy.build(now)
    cas = [h.root.subordinate("Kommun A Level 1 CA", organization="Kommun A", path_length=None)]
    for level in range(2, levels + 1):
        cas.append(cas[-1].subordinate(f"Kommun A Level {level} CA", organization="Kommun A",
                                       path_length=None))
    h.issuing = cas[-1]
    return h, cas


def crl(ca: CertificateAuthority, *, this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
        extra_serials: int = 0) -> x509.CertificateRevocationList:
    """A CRL of ``ca``'s revocations, like :meth:`CertificateAuthority.crl`, with extra extensions.

    The entries are handed to the builder in one list: adding them one by one
    (as the demo builder does) copies the builder each time and takes ~20 s
    for 100,000 entries.
    """
    this = this_update or ca.now - dt.timedelta(hours=1)
    entries = [x509.RevokedCertificateBuilder().serial_number(s).revocation_date(at).build()
               for s, at in ca.revoked.items()]
    entries += [x509.RevokedCertificateBuilder().serial_number(10**30 + i).revocation_date(this).build()
                for i in range(extra_serials)]
    exts = [
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(int(this.timestamp()))),
        x509.Extension(x509.AuthorityKeyIdentifier.oid, False,
                       x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())),
        *(x509.Extension(value.oid, critical, value) for value, critical in extensions),
    ]
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=ca.certificate.subject,
        last_update=this,
        next_update=next_update or ca.now + dt.timedelta(days=7),
        extensions=exts,
        revoked_certificates=entries,
    )
    return builder.sign(ca.key, hashes.SHA256())


def window_inverted(ca: CertificateAuthority, this_update: dt.datetime,
                     next_update: dt.datetime) -> x509.CertificateRevocationList:
    """``ca``'s CRL with thisUpdate ``this_update`` and the earlier nextUpdate ``next_update`` (cryptography's builder
    refuses to write them so: made in order, the two times swapped, signed again by ``ca``)."""
    assert next_update < this_update
    made = ca.crl(this_update=next_update, next_update=this_update)
    tbs = made.tbs_certlist_bytes
    early, late = (_utc_time(t) for t in (next_update, this_update))
    assert tbs.count(early + late) == 1
    tbs = tbs.replace(early + late, late + early)
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    signature = ca.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = made.public_bytes(Encoding.DER)
    after_tbs = der[der.index(made.tbs_certlist_bytes) + len(made.tbs_certlist_bytes):]
    algorithm = after_tbs[:2 + after_tbs[1]]
    return x509.load_der_x509_crl(_der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature)))


def _utc_time(at: dt.datetime) -> bytes:
    return _der(0x17, at.strftime("%y%m%d%H%M%SZ").encode())


_Signed = TypeVar("_Signed", x509.Certificate, x509.CertificateRevocationList)


def pss_sha1_resigned(signed: _Signed, ca: CertificateAuthority) -> _Signed:
    """``signed`` (a certificate or a CRL) signed again by ``ca`` (an RSA CA) with RSASSA-PSS and its default
    parameters (RFC 4055 §3.1: SHA-1, MGF1 with SHA-1, salt 20): what cryptography's builders refuse to make, and
    its verification of a CRL or of one certificate by another still accepts."""
    if not isinstance(ca.key, rsa.RSAPrivateKey):
        raise TypeError("RSASSA-PSS needs an RSA CA")
    pss = _der(0x30, _der_oid("1.2.840.113549.1.1.10") + _der(0x30, b""))  # every parameter its default
    der = signed.public_bytes(Encoding.DER)
    tbs = signed.tbs_certificate_bytes if isinstance(signed, x509.Certificate) else signed.tbs_certlist_bytes
    algorithm = der[der.index(tbs) + len(tbs):]
    algorithm = algorithm[:2 + algorithm[1]]  # the AlgorithmIdentifier after the signed part (short form)
    body = tbs[2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0):]  # the contents of the signed part's SEQUENCE
    if body.count(algorithm) != 1:
        raise ValueError("the signed part must name its signature algorithm once")
    tbs = _der(0x30, body.replace(algorithm, pss))
    signature = ca.key.sign(tbs, padding.PSS(padding.MGF1(hashes.SHA1()), 20), hashes.SHA1())
    resigned = _der(0x30, tbs + pss + _der(0x03, b"\x00" + signature))
    if isinstance(signed, x509.Certificate):
        return x509.load_der_x509_certificate(resigned)
    return x509.load_der_x509_crl(resigned)


def validator(*domains: TrustDomain, now: dt.datetime = NOW) -> CertificateValidator:
    return CertificateValidator(TrustIndex(domains), FixedClock(now), checker(now))


# --- certificate policy processing (RFC 5280 §6.1): CAs with policy extensions the demo builder does not add ---


def resigned(ca: CertificateAuthority, *extensions: x509.ExtensionType,
             subject: x509.Name | None = None, critical: bool = False) -> CertificateAuthority:
    """``ca`` (same key, so what it issues still chains) with its certificate re-signed by its parent with
    ``extensions`` added or replacing ones with the same OID, all non-critical unless ``critical``.
    ``subject``: a new name; the parent's own name makes the certificate self-issued (a CA key rollover)."""
    if ca.parent is None:
        raise ValueError("a root has no parent to re-sign its certificate")
    return replace(ca, certificate=reissue(ca.certificate, ca.parent, subject=subject, extra=extensions,
                                           critical=critical))


def policies(*oids: str) -> x509.CertificatePolicies:
    """A certificatePolicies extension without qualifiers."""
    return x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in oids])


def policy_mappings(*pairs: tuple[str, str]) -> x509.UnrecognizedExtension:
    """A policyMappings extension (RFC 5280 §4.2.1.5) of (issuerDomainPolicy, subjectDomainPolicy) pairs;
    cryptography has no type for it, so its DER is written here."""
    body = b"".join(_der(0x30, _der_oid(issuer) + _der_oid(subject)) for issuer, subject in pairs)
    return x509.UnrecognizedExtension(ExtensionOID.POLICY_MAPPINGS, _der(0x30, body))


def _der(tag: int, contents: bytes) -> bytes:
    """A DER element (X.690 §8.1.3: short length form below 128, else the fewest length octets)."""
    if len(contents) < 0x80:
        return bytes([tag, len(contents)]) + contents
    size = len(contents).to_bytes((len(contents).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents


def _der_oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER (X.690 §8.19: the first two arcs joined, then base-128 subidentifiers)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = b""
    for arc in (40 * arcs[0] + arcs[1], *arcs[2:]):
        chunk, rest = [arc & 0x7F], arc >> 7
        while rest:
            chunk.insert(0, 0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(chunk)
    return _der(0x06, out)
