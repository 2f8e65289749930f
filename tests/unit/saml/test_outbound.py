"""HTTP-Redirect messages the broker sends (broker/saml/outbound.py ``MessageSender.redirect_url``; SAML Bindings
§3.4.4.1), verified the way receivers verify them.

Bindings §3.4.4.1 has the receiver verify the query octets as they arrived; pysaml2 instead decodes the values and
encodes them again with ``urlencode`` (space as ``+``) before it verifies. What the broker signs must verify both
ways, whatever the RelayState holds.
"""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from saml2.sigver import RSACrypto, verify_redirect_signature

from broker.saml.outbound import MessageSender
from broker.saml.xmldsig import XmlSigner

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
XML = b'<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" Version="2.0"/>'


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker signing")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


@pytest.mark.parametrize("relay_state", [
    pytest.param("till start", id="space"),
    pytest.param("a+b=c&d/e?f%20g", id="reserved-characters"),
    pytest.param("Åsa 🙂 ~*._-", id="non-ascii-and-unreserved"),
    pytest.param(None, id="none"),
])
def test_the_signature_verifies_over_the_octets_and_over_pysaml2s_re_encoding(
        key: rsa.RSAPrivateKey, certificate: x509.Certificate, relay_state: str | None) -> None:
    url = MessageSender(XmlSigner(certificate, key), key).redirect_url(
        "https://sp.example/slo?x=1", "SAMLResponse", XML, relay_state)
    query = urlsplit(url).query
    assert query.startswith("x=1&SAMLResponse=")

    # the octets as they arrived (Bindings §3.4.4.1): everything before &Signature=, without the SP's own x=1
    signed, signature = query.removeprefix("x=1&").split("&Signature=")
    key.public_key().verify(base64.b64decode(dict(parse_qsl("Signature=" + signature))["Signature"]),
                            signed.encode(), padding.PKCS1v15(), hashes.SHA256())

    # pysaml2: the decoded values, encoded again with urlencode
    values = dict(parse_qsl(query))
    assert values.get("RelayState") == relay_state
    # the certificate as metadata carries it (base64 DER), which is what pysaml2 takes
    body = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
    assert verify_redirect_signature(values, RSACrypto(None), cert=body) is True
