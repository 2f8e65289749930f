"""Signing through pysaml2's default backend: the ``xmlsec1`` program, one process per signature.

This is how a plain pysaml2 IdP signs. The broker signs in process (:class:`XmlSigner`);
this backend exists so that the same flow can be measured against that baseline
(``idp.signing.backend: xmlsec1``, see docs/performance.md). The signature is the same:
the template comes from :meth:`XmlSigner.template`, ``xmlsec1 --sign`` fills it in a
temporary copy of the document, and the filled ds:Signature replaces the template.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from saml2.sigver import CryptoBackendXmlSec1, get_xmlsec_binary

from broker.saml.xmldsig import DS, XmlSigner
from broker.saml.xmlparse import parse_untrusted


class Xmlsec1Signer(XmlSigner):
    """:class:`XmlSigner`'s contract, with every signature made by a new ``xmlsec1`` process."""

    def __init__(self, key_file: Path, certificate: x509.Certificate,
                 private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        super().__init__(certificate, private_key)
        self._key_file = str(key_file)
        self._backend = CryptoBackendXmlSec1(get_xmlsec_binary())

    def sign(self, element: etree._Element, *, after: etree._Element | None = None) -> None:
        template = self.template(element, after=after)  # with the certificate, as a pysaml2 template has it
        element_id = element.get("ID", "")
        document = etree.tostring(element.getroottree().getroot())
        qname = etree.QName(element)
        signed = self._backend.sign_statement(document.decode(), f"{qname.namespace}:{qname.localname}",
                                              self._key_file, element_id)
        tree = parse_untrusted(signed.encode() if isinstance(signed, str) else signed, 1 << 24)
        found = tree.xpath("//*[@ID=$id]", id=element_id)
        if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], etree._Element):
            raise ValueError(f"xmlsec1 returned no single element with ID {element_id!r}")
        filled = found[0].find(f"{{{DS}}}Signature")
        if filled is None:
            raise ValueError("xmlsec1 returned the element without its signature")
        template.getparent().replace(template, filled)  # type: ignore[union-attr]
