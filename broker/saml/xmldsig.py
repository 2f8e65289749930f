"""XML Signature for SAML (XML-DSig 1.0 as profiled by SAML Core §5), in process via libxmlsec1.

python-xmlsec binds the same libxmlsec1 that pysaml2's default backend runs as
a subprocess; calling it in process avoids two process starts per signature.
Keys are loaded once and reused.

Verification is deliberately narrow (SAML Core §5.4): exactly one enveloped
signature as a direct child of the element it signs, one Reference whose URI
is ``#`` + that element's ID, only the enveloped-signature and exclusive
canonicalisation transforms, and algorithms from an allow-list (no SHA-1).
The element ID must be unique in the document. Together these close the
signature-wrapping attacks: the caller reads data only from the element that
this module verified.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

DS: Final = "http://www.w3.org/2000/09/xmldsig#"
_NS = {"ds": DS}

RSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
ECDSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
ECDSA_SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
ECDSA_SHA512: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512: Final = "http://www.w3.org/2001/04/xmlenc#sha512"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"

ALLOWED_SIGNATURE_METHODS: Final = frozenset(
    {RSA_SHA256, RSA_SHA384, RSA_SHA512, ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512}
)
ALLOWED_DIGEST_METHODS: Final = frozenset({SHA256, SHA384, SHA512})
ALLOWED_TRANSFORMS: Final = frozenset({ENVELOPED, EXC_C14N, C14N})
ALLOWED_C14N: Final = frozenset({EXC_C14N, C14N})


class SignatureMissing(Exception):
    """The element carries no signature."""


class SignatureRejected(Exception):
    """The signature is malformed, uses a refused algorithm or feature, or does not verify.

    ``algorithm`` is True when the refusal is about the algorithm allow-list.
    """

    def __init__(self, message: str, *, algorithm: bool = False) -> None:
        super().__init__(message)
        self.algorithm = algorithm


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class XmlSigner:
    """Signs SAML elements with one preloaded key (RSA-SHA256 or ECDSA-SHA256, SHA-256 digests)."""

    def __init__(self, key_pem: bytes, certificate: x509.Certificate,
                 private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        # The certificate is not loaded into the key: libxmlsec1 would duplicate it (and export the RSA key's
        # parameters) at every signature just to write it out; the template carries it instead, encoded once.
        self._key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
        self._certificate_b64 = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
        if isinstance(private_key, rsa.RSAPrivateKey):
            self.signature_method, self._transform = RSA_SHA256, xmlsec.constants.TransformRsaSha256
        else:
            self.signature_method, self._transform = ECDSA_SHA256, xmlsec.constants.TransformEcdsaSha256
        self.digest_method = SHA256
        self.certificate = certificate
        # python-xmlsec keys are not documented as thread-safe; signing is serialised per key.
        self._lock = threading.Lock()

    def template(self, element: etree._Element, *, after: etree._Element | None = None) -> etree._Element:
        """Insert the empty ds:Signature (exc-c14n, RSA/ECDSA-SHA256, one Reference to the element's ID with
        the enveloped-signature and exc-c14n transforms, the signing certificate in KeyInfo/X509Data) and
        return it."""
        element_id = element.get("ID")
        if not element_id:
            raise ValueError("the element to sign has no ID")
        template = xmlsec.template.create(element, xmlsec.constants.TransformExclC14N, self._transform, ns="ds")
        ref = xmlsec.template.add_reference(template, xmlsec.constants.TransformSha256, uri="#" + element_id)
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
        c14n = xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
        # xs is used only inside attribute values (xsi:type="xs:string"), which exclusive c14n does not count
        # as use: without the PrefixList its declaration would lie outside the signature
        xmlsec.template.transform_add_c14n_inclusive_namespaces(c14n, "xs")
        key_info = xmlsec.template.ensure_key_info(template)
        x509_data = xmlsec.template.add_x509_data(key_info)
        etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = self._certificate_b64
        if after is not None:
            after.addnext(template)
        else:
            element.insert(0, template)
        return template

    def sign(self, element: etree._Element, *, after: etree._Element | None = None) -> None:
        """Add an enveloped signature to ``element`` (which must carry an ``ID``).

        SAML's schemas put ds:Signature right after the Issuer (SAML Core
        §2.3.3, §3.2.1): pass that element as ``after``.
        """
        template = self.template(element, after=after)
        ctx = xmlsec.SignatureContext()
        with self._lock:
            ctx.key = self._key
            ctx.register_id(element, "ID")
            ctx.sign(template)


@dataclass(frozen=True)
class _VerificationKey:
    certificate: x509.Certificate
    key: xmlsec.Key


class XmlVerifier:
    """Verifies enveloped signatures against a fixed set of certificates (from metadata)."""

    def __init__(self, certificates: Sequence[x509.Certificate]) -> None:
        self._keys = tuple(
            _VerificationKey(c, xmlsec.Key.from_memory(_pem(c), xmlsec.constants.KeyDataFormatCertPem))
            for c in certificates
        )
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._keys)

    def verify(self, element: etree._Element, *, signed_parts: bool = False) -> x509.Certificate:
        """Verify the signature that envelops ``element``; return the certificate that verified it.

        Raises :class:`SignatureMissing` if there is none, :class:`SignatureRejected` otherwise. A
        signature deeper inside an unsigned element is refused (it signs something else) unless
        ``signed_parts``: a Response whose Assertion is signed (SAML Core §5.3).
        """
        signatures = element.findall("ds:Signature", _NS)
        if not signatures:
            if not signed_parts and element.find(".//ds:Signature", _NS) is not None:
                raise SignatureRejected("a signature is present but not as a direct child of the signed element")
            raise SignatureMissing("the element is not signed")
        if len(signatures) > 1:
            raise SignatureRejected("more than one signature on the element")
        signature = signatures[0]
        element_id = element.get("ID")
        if not element_id:
            raise SignatureRejected("the signed element has no ID")
        _check_structure(signature, element_id)
        same_id = element.getroottree().getroot().xpath("//*[@ID=$id]", id=element_id)
        if not isinstance(same_id, list) or len(same_id) != 1:
            count = len(same_id) if isinstance(same_id, list) else "?"
            raise SignatureRejected(f"the ID {element_id!r} occurs {count} times in the document")
        if not self._keys:
            raise SignatureRejected("no signing certificate is known for the sender")
        for candidate in self._keys:
            ctx = xmlsec.SignatureContext()
            with self._lock:
                ctx.key = candidate.key
                try:
                    ctx.register_id(element, "ID")
                    ctx.verify(signature)
                except xmlsec.Error:
                    continue
            return candidate.certificate
        raise SignatureRejected("the signature does not verify with the sender's metadata keys")


def _check_structure(signature: etree._Element, element_id: str) -> None:
    signed_info = signature.find("ds:SignedInfo", _NS)
    if signed_info is None:
        raise SignatureRejected("the signature has no SignedInfo")
    c14n = signed_info.find("ds:CanonicalizationMethod", _NS)
    if c14n is None or c14n.get("Algorithm") not in ALLOWED_C14N:
        raise SignatureRejected("canonicalisation method not allowed", algorithm=True)
    method = signed_info.find("ds:SignatureMethod", _NS)
    if method is None or method.get("Algorithm") not in ALLOWED_SIGNATURE_METHODS:
        alg = method.get("Algorithm") if method is not None else None
        raise SignatureRejected(f"signature algorithm {alg} is not allowed", algorithm=True)
    references = signed_info.findall("ds:Reference", _NS)
    if len(references) != 1:
        raise SignatureRejected(f"expected one Reference, found {len(references)}")
    ref = references[0]
    if ref.get("URI") != "#" + element_id:
        raise SignatureRejected("the signature's Reference does not point at the signed element")
    _only_prefix_list(c14n)
    for transform in ref.findall("ds:Transforms/ds:Transform", _NS):
        if transform.get("Algorithm") not in ALLOWED_TRANSFORMS:
            raise SignatureRejected(f"transform {transform.get('Algorithm')} is not allowed", algorithm=True)
        _only_prefix_list(transform)
    digest = ref.find("ds:DigestMethod", _NS)
    if digest is None or digest.get("Algorithm") not in ALLOWED_DIGEST_METHODS:
        alg = digest.get("Algorithm") if digest is not None else None
        raise SignatureRejected(f"digest algorithm {alg} is not allowed", algorithm=True)


def _only_prefix_list(method: etree._Element) -> None:
    """A transform or canonicalisation method may carry nothing but exc-c14n's InclusiveNamespaces PrefixList
    (Shibboleth sends it): other parameters, e.g. an XPath expression, open wrapping attacks."""
    for child in method:
        if not isinstance(child.tag, str):
            continue
        if child.tag != f"{{{EXC_C14N}}}InclusiveNamespaces" or method.get("Algorithm") != EXC_C14N or len(child):
            raise SignatureRejected("transform parameters are not allowed")
