"""Encrypting the broker's assertions for an SP (broker/saml/xmlenc.py ``AssertionEncrypter``; SAML Core §2.3.4, §6).

What an SP must be able to do with the EncryptedAssertion: decrypt it with its key to exactly one Assertion that
stands on its own (its namespaces declared on it: SPs parse what they decrypt as a document of its own), whose
signature still verifies with the broker's key; a Response signature, when asked for, covers the encrypted form.
Another key decrypts nothing. The algorithm choice follows the SP's metadata (Metadata §2.4.1.1).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.clock import FixedClock
from broker.model import ReplyTarget
from broker.saml.metadata import EncryptionMethod
from broker.saml.response import AssertionContent, ReleasedAttribute, ResponseBuilder
from broker.saml.xmldsig import DS, SignatureRejected, XmlSigner, XmlVerifier
from broker.saml.xmlenc import (
    AssertionEncrypter,
    Decrypter,
    DecryptionRefused,
    EncryptionChoice,
    EncryptionUnsupported,
    choose_encryption,
)
from broker.saml.xmlparse import parse_untrusted

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
SP = "https://sp.example/metadata"
NS = {"ds": DS, "saml2": "urn:oasis:names:tc:SAML:2.0:assertion", "saml2p": "urn:oasis:names:tc:SAML:2.0:protocol",
      "xenc": "http://www.w3.org/2001/04/xmlenc#"}
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
RSA_OAEP_11 = "http://www.w3.org/2009/xmlenc11#rsa-oaep"
RSA_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
MGF1_SHA256 = "http://www.w3.org/2009/xmlenc11#mgf1sha256"


def _certificate(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Keys:
    def __init__(self) -> None:
        self.idp = rsa.generate_private_key(65537, 2048)
        self.idp_certificate = _certificate(self.idp, "broker signing")
        self.sp = rsa.generate_private_key(65537, 2048)
        self.sp_certificate = _certificate(self.sp, "sp encryption")
        self.builder = ResponseBuilder("https://broker.example/idp", XmlSigner(self.idp_certificate, self.idp),
                                       FixedClock(NOW), assertion_lifetime=dt.timedelta(minutes=5),
                                       clock_skew=dt.timedelta(seconds=30))

    def response(self, *, sign_response: bool = False, choice: EncryptionChoice | None = None) -> etree._Element:
        encrypter = AssertionEncrypter(self.sp_certificate, choice or choose_encryption(()), SP)
        content = AssertionContent(
            name_id="pseudonym", name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            loa_uri="http://id.elegnamnden.se/loa/1.0/loa3", authn_instant=NOW, session_index="_s1",
            session_not_on_or_after=NOW + dt.timedelta(hours=8),
            attributes=[ReleasedAttribute("urn:oid:1.2.752.29.4.13", "personalIdentityNumber", ("191212121212",))])
        xml = self.builder.success(ReplyTarget(SP, "https://sp.example/acs", "_req", None), content,
                                   sign_response=sign_response, encrypter=encrypter)
        return parse_untrusted(xml, 1 << 20)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def test_the_sp_decrypts_the_assertion_the_broker_signed(keys: Keys) -> None:
    root = keys.response()
    assert [child.tag.rsplit("}", 1)[1] for child in root] == ["Issuer", "Status", "EncryptedAssertion"]
    (encrypted,) = root.findall("saml2:EncryptedAssertion", NS)
    assertion = Decrypter([_pem(keys.sp)]).decrypt(encrypted)
    assert assertion.tag == f"{{{NS['saml2']}}}Assertion"
    XmlVerifier([keys.idp_certificate]).verify(assertion)
    assert assertion.findtext(".//saml2:AttributeValue", namespaces=NS) == "191212121212"


@pytest.mark.parametrize(
    "choice",
    [
        pytest.param(EncryptionChoice(AES256_GCM, RSA_OAEP_MGF1P), id="aes256-gcm-rsa-oaep-mgf1p"),
        pytest.param(EncryptionChoice(AES128_GCM, RSA_OAEP_MGF1P), id="aes128-gcm-rsa-oaep-mgf1p"),
        pytest.param(EncryptionChoice(AES256_GCM, RSA_OAEP_11), id="aes256-gcm-xmlenc11-rsa-oaep"),
        pytest.param(EncryptionChoice(AES256_GCM, RSA_OAEP_11, SHA256, MGF1_SHA256), id="rsa-oaep-sha256-mgf1-sha256"),
        pytest.param(EncryptionChoice(AES256_GCM, RSA_OAEP_MGF1P, SHA256), id="rsa-oaep-mgf1p-sha256"),
    ],
)
def test_the_decrypted_assertion_stands_on_its_own(keys: Keys, choice: EncryptionChoice) -> None:
    """libxmlsec1 alone, without the broker's decrypter's context: the plaintext parses as a document."""
    data = keys.response(choice=choice).find("saml2:EncryptedAssertion/xenc:EncryptedData", NS)
    assert data is not None
    del data.attrib["Type"]   # octets back, not a node put in place
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(_pem(keys.sp), xmlsec.constants.KeyDataFormatPem))
    plaintext = xmlsec.EncryptionContext(manager).decrypt(data)
    assertion = parse_untrusted(plaintext, 1 << 20)
    assert assertion.tag == f"{{{NS['saml2']}}}Assertion"
    XmlVerifier([keys.idp_certificate]).verify(assertion)


def test_a_response_signature_covers_the_encrypted_form(keys: Keys) -> None:
    root = keys.response(sign_response=True)
    XmlVerifier([keys.idp_certificate]).verify(root)
    cipher = root.find(".//xenc:EncryptedData/xenc:CipherData/xenc:CipherValue", NS)
    assert cipher is not None
    assert cipher.text
    cipher.text = ("B" if cipher.text[0] != "B" else "C") + cipher.text[1:]
    with pytest.raises(SignatureRejected, match="does not verify"):
        XmlVerifier([keys.idp_certificate]).verify(root)


def test_another_key_decrypts_nothing(keys: Keys) -> None:
    (encrypted,) = keys.response().findall("saml2:EncryptedAssertion", NS)
    with pytest.raises(DecryptionRefused, match="none of the broker's keys decrypts it"):
        Decrypter([_pem(rsa.generate_private_key(65537, 2048))]).decrypt(encrypted)


def test_the_encrypted_key_names_its_recipient_and_algorithms(keys: Keys) -> None:
    data = keys.response(choice=EncryptionChoice(AES128_GCM, RSA_OAEP_MGF1P)).find(
        "saml2:EncryptedAssertion/xenc:EncryptedData", NS)
    assert data is not None
    assert data.find("xenc:EncryptionMethod", NS).get("Algorithm") == AES128_GCM  # type: ignore[union-attr]
    (key,) = data.findall("ds:KeyInfo/xenc:EncryptedKey", NS)
    assert key.get("Recipient") == SP
    assert key.find("xenc:EncryptionMethod", NS).get("Algorithm") == RSA_OAEP_MGF1P  # type: ignore[union-attr]


def _methods(*listed: str | EncryptionMethod) -> tuple[EncryptionMethod, ...]:
    return tuple(m if isinstance(m, EncryptionMethod) else EncryptionMethod(m) for m in listed)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        pytest.param((), EncryptionChoice(AES256_GCM, RSA_OAEP_MGF1P), id="nothing-listed"),
        pytest.param((AES128_GCM, RSA_OAEP_MGF1P), EncryptionChoice(AES128_GCM, RSA_OAEP_MGF1P), id="aes128-gcm"),
        pytest.param((AES256_GCM, RSA_OAEP_11), EncryptionChoice(AES256_GCM, RSA_OAEP_11), id="xmlenc11-rsa-oaep"),
        pytest.param((AES256_CBC, AES128_GCM, AES256_GCM, RSA_1_5, RSA_OAEP_MGF1P),
                     EncryptionChoice(AES256_GCM, RSA_OAEP_MGF1P), id="the-strongest-listed"),
        pytest.param((AES128_GCM,), EncryptionChoice(AES128_GCM, RSA_OAEP_MGF1P), id="data-only"),
        pytest.param((RSA_OAEP_11,), EncryptionChoice(AES256_GCM, RSA_OAEP_11), id="key-transport-only"),
        pytest.param((EncryptionMethod(RSA_OAEP_11, SHA256, MGF1_SHA256),),
                     EncryptionChoice(AES256_GCM, RSA_OAEP_11, SHA256, MGF1_SHA256), id="oaep-sha256-mgf1-sha256"),
        pytest.param((EncryptionMethod(RSA_OAEP_MGF1P, SHA256),),
                     EncryptionChoice(AES256_GCM, RSA_OAEP_MGF1P, SHA256), id="mgf1p-with-sha256"),
        pytest.param((EncryptionMethod(RSA_OAEP_MGF1P, oaep_params=True), EncryptionMethod(RSA_OAEP_11)),
                     EncryptionChoice(AES256_GCM, RSA_OAEP_11), id="a-label-rules-a-method-out"),
    ],
)
def test_the_algorithms_follow_the_metadata(listed: tuple[str | EncryptionMethod, ...],
                                            expected: EncryptionChoice) -> None:
    assert choose_encryption(_methods(*listed)) == expected


@pytest.mark.parametrize(
    ("listed", "fragment"),
    [
        pytest.param((AES256_CBC, RSA_OAEP_MGF1P), f"name data encryption {AES256_CBC} only", id="cbc-only"),
        pytest.param((AES256_GCM, RSA_1_5), f"name key transport {RSA_1_5} only", id="rsa-1_5-only"),
        pytest.param((AES256_GCM, RSA_1_5, "http://www.w3.org/2001/04/xmlenc#kw-aes256"),
                     f"name key transport {RSA_1_5} only", id="no-rsa-oaep"),
        pytest.param((EncryptionMethod(RSA_OAEP_11, "http://www.w3.org/2001/04/xmldsig-more#md5"),),
                     "(digest http://www.w3.org/2001/04/xmldsig-more#md5) only", id="oaep-with-md5"),
        pytest.param((EncryptionMethod(RSA_OAEP_MGF1P, mgf=MGF1_SHA256),), f"(MGF {MGF1_SHA256}) only",
                     id="mgf1p-with-another-mgf"),
    ],
)
def test_metadata_without_an_algorithm_the_broker_uses_is_refused(listed: tuple[str | EncryptionMethod, ...],
                                                                  fragment: str) -> None:
    with pytest.raises(EncryptionUnsupported, match=re.escape(fragment)):
        choose_encryption(_methods(*listed))


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), "only for RSA keys", id="ec-p256"),
        pytest.param(lambda: rsa.generate_private_key(65537, 1024), "has 1024 bits; at least 2048", id="rsa-1024"),
    ],
)
def test_keys_the_broker_does_not_encrypt_for(key: object, fragment: str) -> None:
    certificate = _certificate(key(), "sp encryption")  # type: ignore[operator]
    with pytest.raises(EncryptionUnsupported, match=fragment):
        AssertionEncrypter(certificate, choose_encryption(()), SP)


@pytest.mark.parametrize(("choice", "settings"), [
    pytest.param(EncryptionChoice(AES256_GCM, RSA_OAEP_MGF1P), [], id="defaults-written-as-nothing"),
    pytest.param(EncryptionChoice(AES256_GCM, RSA_OAEP_11, SHA256, MGF1_SHA256),
                 [(f"{{{DS}}}DigestMethod", SHA256), ("{http://www.w3.org/2009/xmlenc11#}MGF", MGF1_SHA256)],
                 id="sha256-and-mgf1-sha256"),
    pytest.param(EncryptionChoice(AES256_GCM, RSA_OAEP_MGF1P, SHA256), [(f"{{{DS}}}DigestMethod", SHA256)],
                 id="mgf1p-digest-only"),
])
def test_the_encrypted_key_names_the_oaep_settings_it_was_made_with(
        keys: Keys, choice: EncryptionChoice, settings: list[tuple[str, str]]) -> None:
    """XML Encryption 1.1 §5.5.2: a digest or MGF other than SHA-1 is written where the SP reads it."""
    method = keys.response(choice=choice).find(
        "saml2:EncryptedAssertion/xenc:EncryptedData/ds:KeyInfo/xenc:EncryptedKey/xenc:EncryptionMethod", NS)
    assert method is not None
    assert [(child.tag, child.get("Algorithm")) for child in method] == settings
