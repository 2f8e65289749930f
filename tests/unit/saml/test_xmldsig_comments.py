"""Exclusive canonicalisation with comments (SAML Core §5.4.3-5.4.4: "with or without comments") in signatures the
broker verifies (broker/saml/xmldsig.py ``XmlVerifier``), as xml-crypto and so samlify sign.

Accepted as the Reference's transform and as SignedInfo's CanonicalizationMethod, with exc-c14n's PrefixList too.
"With comments" signs no comment in SAML: a same-document Reference (``URI="#ID"``) selects the element without
its comments (XML-DSig §4.4.3.3). The hardened parser drops comments too, so the text the broker reads is the text
the signature covers, whole: a comment cannot cut a NameID short (CVE-2017-11427).
"""

from __future__ import annotations

import datetime as dt

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.saml.xmldsig import EXC_C14N, EXC_C14N_WITH_COMMENTS, SignatureRejected, XmlVerifier
from broker.saml.xmlparse import parse_untrusted

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DOCUMENT = (f'<saml:Assertion xmlns:saml="{SAML}" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="_a" Version="2.0">'
            '<saml:Issuer>https://idp.example</saml:Issuer>{comment}'
            '<saml:Subject><saml:NameID>anna{inside}</saml:NameID></saml:Subject></saml:Assertion>')
TRANSFORMS = {EXC_C14N: xmlsec.constants.TransformExclC14N,
              EXC_C14N_WITH_COMMENTS: xmlsec.constants.TransformExclC14NWithComments}


class Idp:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
        self.certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=1)).sign(self.key, hashes.SHA256()))

    def sign(self, xml: str, *, c14n: str, transform: str, prefix_list: str | None = None) -> bytes:
        """xml signed as xml-crypto signs: enveloped signature after the Issuer, the given canonicalisations."""
        root = etree.fromstring(xml.encode())   # comments kept: the signer sees the document as written
        signature = xmlsec.template.create(root, TRANSFORMS[c14n], xmlsec.constants.TransformRsaSha256)
        root.insert(1, signature)
        reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri="#_a")
        xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
        node = xmlsec.template.add_transform(reference, TRANSFORMS[transform])
        if prefix_list is not None:
            xmlsec.template.transform_add_c14n_inclusive_namespaces(node, prefix_list)
        context = xmlsec.SignatureContext()
        context.key = xmlsec.Key.from_memory(
            self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), xmlsec.constants.KeyDataFormatPem)
        context.register_id(root, "ID")
        context.sign(signature)
        return etree.tostring(root)


@pytest.fixture(scope="module")
def idp() -> Idp:
    return Idp()


@pytest.mark.parametrize(("c14n", "transform", "prefix_list"), [
    pytest.param(EXC_C14N, EXC_C14N_WITH_COMMENTS, None, id="transform-with-comments"),
    pytest.param(EXC_C14N_WITH_COMMENTS, EXC_C14N_WITH_COMMENTS, None, id="both-with-comments"),
    pytest.param(EXC_C14N_WITH_COMMENTS, EXC_C14N_WITH_COMMENTS, "xs", id="with-comments-and-prefix-list"),
])
def test_exclusive_c14n_with_comments_verifies(idp: Idp, c14n: str, transform: str, prefix_list: str | None) -> None:
    xml = idp.sign(DOCUMENT.format(comment="", inside=""), c14n=c14n, transform=transform, prefix_list=prefix_list)
    assert XmlVerifier([idp.certificate]).verify(parse_untrusted(xml, 1 << 20)) == idp.certificate


@pytest.mark.parametrize(("comment", "inside"), [
    pytest.param("<!-- a note -->", "", id="comment-between-elements"),
    pytest.param("", "<!---->.evil.example", id="comment-splitting-the-nameid"),
])
def test_comments_are_neither_signed_nor_read(idp: Idp, comment: str, inside: str) -> None:
    xml = idp.sign(DOCUMENT.format(comment=comment, inside=inside), c14n=EXC_C14N_WITH_COMMENTS,
                   transform=EXC_C14N_WITH_COMMENTS)
    root = parse_untrusted(xml, 1 << 20)
    assert XmlVerifier([idp.certificate]).verify(root) == idp.certificate
    assert root.findtext(f"{{{SAML}}}Subject/{{{SAML}}}NameID") == "anna" + inside.replace("<!---->", "")
    assert not any(isinstance(node, etree._Comment) for node in root.iter())


def test_changing_the_text_around_a_comment_breaks_the_signature(idp: Idp) -> None:
    """The control: what the signature covers is the NameID's whole text, the comment's two sides together."""
    xml = idp.sign(DOCUMENT.format(comment="", inside="<!---->.evil.example"), c14n=EXC_C14N_WITH_COMMENTS,
                   transform=EXC_C14N_WITH_COMMENTS)
    with pytest.raises(SignatureRejected, match="does not verify"):
        XmlVerifier([idp.certificate]).verify(parse_untrusted(xml.replace(b".evil.example", b""), 1 << 20))
