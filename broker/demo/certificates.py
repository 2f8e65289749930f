"""Building certificate hierarchies: the demo PKI and the tests' PKI factory.

Not used by the broker at run time. Keys are generated fresh each time;
nothing here is meant for production certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
EMAIL_PROTECTION = ExtendedKeyUsageOID.EMAIL_PROTECTION
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def new_key(kind: str = "ec256") -> PrivateKey:
    """``ec256``/``ec384`` (fast) or ``rsaNNNN`` (e.g. rsa2048, rsa1024 for weak-key cases)."""
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ec192":
        return ec.generate_private_key(ec.SECP192R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(f"unknown key kind {kind!r}")


def _utf8_string(text: str) -> bytes:
    """DER UTF8String (X.690 §8.1.3: short form below 128, else the fewest length octets)."""
    body = text.encode("utf-8")
    if len(body) < 0x80:
        return bytes([0x0C, len(body)]) + body
    if len(body) < 0x100:
        return bytes([0x0C, 0x81, len(body)]) + body
    return bytes([0x0C, 0x82]) + len(body).to_bytes(2, "big") + body


@dataclass(frozen=True)
class LeafProfile:
    """What a client certificate looks like. Defaults give a valid SITHS-like authentication certificate."""

    common_name: str
    serial_number: str | None = None          # subject serialNumber (HSA-id or personnummer)
    given_name: str | None = None
    surname: str | None = None
    organization: str | None = None
    policies: tuple[str, ...] = ()
    eku: tuple[x509.ObjectIdentifier, ...] | None = (CLIENT_AUTH,)
    digital_signature: bool = True
    non_repudiation: bool = False
    key_encipherment: bool = True
    san_upn: str | None = None
    san_email: str | None = None
    san_dns: str | None = None
    san_ip: str | None = None
    ocsp_url: str | None = None               # Authority Information Access: OCSP responder
    crl_url: str | None = None                # CRL distribution point
    valid_from: dt.datetime | None = None     # default: issuer's "now" minus one day
    valid_until: dt.datetime | None = None    # default: "now" plus one year
    key: str = "ec256"
    is_ca: bool = False


@dataclass
class Issued:
    certificate: x509.Certificate
    key: PrivateKey

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def pkcs12(self, password: bytes, friendly_name: str, chain: Sequence[x509.Certificate] = ()) -> bytes:
        return pkcs12.serialize_key_and_certificates(
            friendly_name.encode(), self.key, self.certificate, list(chain) or None,
            serialization.BestAvailableEncryption(password),
        )


@dataclass
class CertificateAuthority:
    """A CA that issues sub-CAs, leaf certificates and CRLs, all at a chosen instant ``now``."""

    certificate: x509.Certificate
    key: PrivateKey
    now: dt.datetime
    parent: CertificateAuthority | None = None
    revoked: dict[int, dt.datetime] = field(default_factory=dict)

    @classmethod
    def root(cls, name: str, now: dt.datetime, *, key: str = "ec256", organization: str | None = None,
             valid_days: int = 3650, path_length: int | None = None,
             valid_from: dt.datetime | None = None) -> CertificateAuthority:
        k = new_key(key)
        subject = _name(name, organization)
        cert = _ca_builder(subject, subject, k, k, now, valid_days, path_length, valid_from).sign(
            k, _hash_for(k))
        return cls(cert, k, now)

    def subordinate(self, name: str, *, key: str = "ec256", organization: str | None = None,
                    valid_days: int = 1825, path_length: int | None = 0,
                    valid_from: dt.datetime | None = None,
                    policies: Sequence[str] = ("2.5.29.32.0",)) -> CertificateAuthority:
        k = new_key(key)
        builder = _ca_builder(_name(name, organization), self.certificate.subject, k, self.key, self.now,
                              valid_days, path_length, valid_from)
        if policies:
            builder = builder.add_extension(
                x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(p), None)
                                          for p in policies]), critical=False)
        return CertificateAuthority(builder.sign(self.key, _hash_for(self.key)), k, self.now, parent=self)

    def chain(self) -> list[x509.Certificate]:
        """This CA and its ancestors, this one first."""
        out: list[x509.Certificate] = []
        ca: CertificateAuthority | None = self
        while ca is not None:
            out.append(ca.certificate)
            ca = ca.parent
        return out

    def issue(self, profile: LeafProfile, serial: int | None = None) -> Issued:
        key = new_key(profile.key)
        attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "SE")]
        if profile.organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.organization))
        if profile.surname:
            attrs.append(x509.NameAttribute(NameOID.SURNAME, profile.surname))
        if profile.given_name:
            attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, profile.given_name))
        if profile.serial_number:
            attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, profile.serial_number))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, profile.common_name))
        not_before = profile.valid_from or (self.now - dt.timedelta(days=1))
        not_after = profile.valid_until or (self.now + dt.timedelta(days=365))
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=profile.is_ca, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=profile.digital_signature,
                    content_commitment=profile.non_repudiation,
                    key_encipherment=profile.key_encipherment and isinstance(key, rsa.RSAPrivateKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=profile.is_ca,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        if profile.eku is not None:
            b = b.add_extension(x509.ExtendedKeyUsage(list(profile.eku)), critical=False)
        if profile.policies:
            b = b.add_extension(
                x509.CertificatePolicies(
                    [x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in profile.policies]
                ),
                critical=False,
            )
        if profile.ocsp_url:
            b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(profile.ocsp_url))]),
                critical=False)
        if profile.crl_url:
            b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(profile.crl_url)], None, None, None)]), critical=False)
        names: list[x509.GeneralName] = []
        if profile.san_upn:
            names.append(x509.OtherName(UPN_OID, _utf8_string(profile.san_upn)))
        if profile.san_email:
            names.append(x509.RFC822Name(profile.san_email))
        if profile.san_dns:
            names.append(x509.DNSName(profile.san_dns))
        if profile.san_ip:
            names.append(x509.IPAddress(ipaddress.ip_address(profile.san_ip)))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return Issued(b.sign(self.key, _hash_for(self.key)), key)

    def revoke(self, cert: x509.Certificate, at: dt.datetime | None = None) -> None:
        self.revoked[cert.serial_number] = at or self.now

    def crl(self, *, this_update: dt.datetime | None = None, next_update: dt.datetime | None = None,
            extra_serials: int = 0) -> x509.CertificateRevocationList:
        """A CRL of this CA's revocations; ``extra_serials`` pads it (for size benchmarks)."""
        this = this_update or self.now - dt.timedelta(hours=1)
        nxt = next_update or self.now + dt.timedelta(days=7)
        entries = [x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
                   for serial, at in self.revoked.items()]
        entries += [x509.RevokedCertificateBuilder().serial_number(10**30 + i).revocation_date(this).build()
                    for i in range(extra_serials)]
        # one builder with every entry: adding entries one by one copies the list each time
        b = (
            x509.CertificateRevocationListBuilder(revoked_certificates=entries)
            .issuer_name(self.certificate.subject)
            .last_update(this)
            .next_update(nxt)
            .add_extension(x509.CRLNumber(int(this.timestamp())), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        return b.sign(self.key, _hash_for(self.key))

    def with_now(self, now: dt.datetime) -> CertificateAuthority:
        return replace(self, now=now)


def _name(cn: str, organization: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "SE")]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _hash_for(key: PrivateKey) -> hashes.SHA256:
    return hashes.SHA256()


def _ca_builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey, signer: PrivateKey,
                now: dt.datetime, valid_days: int, path_length: int | None,
                valid_from: dt.datetime | None) -> x509.CertificateBuilder:
    start = valid_from or (now - dt.timedelta(days=30))
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                       critical=False)
    )


def write_pem(path: Path, *objs: x509.Certificate | x509.CertificateRevocationList) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objs))
    return path


def write_key(path: Path, key: PrivateKey | Ed25519PrivateKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path
