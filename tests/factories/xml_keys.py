"""A signing key for libxmlsec1 (python-xmlsec) with the broker's verifier for its self-signed certificate: for
tests that sign XML the way a peer does and check what :class:`broker.saml.xmldsig.XmlVerifier` makes of it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from broker.saml.xmldsig import XmlVerifier

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class XmlSigningKey:
    xmlsec_key: xmlsec.Key
    certificate: x509.Certificate
    verifier: XmlVerifier
    method: object = xmlsec.constants.TransformRsaSha256   # the libxmlsec1 signature transform it signs with


def xml_signing_key(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                    method: object = xmlsec.constants.TransformRsaSha256) -> XmlSigningKey:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp signing")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
            .sign(private, hashes.SHA256()))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return XmlSigningKey(xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem), cert, XmlVerifier([cert]),
                         method)
