"""XML Signature for SAML (XML-DSig 1.0 as profiled by SAML Core §5), in process.

Signatures are made in process (:class:`XmlSigner`: libxmlsec1's template, libxml2's
canonicalisation, OpenSSL's SHA-256 and RSA/ECDSA) and verified by libxmlsec1 through
python-xmlsec, the library pysaml2's default backend runs as the ``xmlsec1`` program;
in process there are no process starts per signature. Keys are loaded once and reused.

Verification is deliberately narrow (SAML Core §5.4): exactly one enveloped
signature as a direct child of the element it signs, one Reference whose URI
is ``#`` + that element's ID, only the enveloped-signature and exclusive
canonicalisation transforms, and algorithms from an allow-list (no SHA-1).
The element ID must be unique in the document. Together these close the
signature-wrapping attacks: the caller reads data only from the element that
this module verified. What libxmlsec1 is given to canonicalise is bounded
first (:func:`_check_namespace_load`): it computes the digest before it checks
the SignatureValue, and namespaces multiplied over elements cost it seconds.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

if TYPE_CHECKING:
    from xmlsec.constants import __Transform as Transform

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
EXC_C14N_WITH_COMMENTS: Final = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
C14N: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"

ALLOWED_SIGNATURE_METHODS: Final = frozenset(
    {RSA_SHA256, RSA_SHA384, RSA_SHA512, ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512}
)
ALLOWED_DIGEST_METHODS: Final = frozenset({SHA256, SHA384, SHA512})
# SAML Core §5.4.3-5.4.4: exclusive canonicalisation "with or without comments" (xml-crypto, and so samlify,
# signs with comments). It signs no comment in SAML: a same-document Reference (URI="#ID") selects the element
# without comments (XML-DSig §4.4.3.3), and the parser drops them (broker.saml.xmlparse), so the text the broker
# reads is the whole text the signature covers.
ALLOWED_TRANSFORMS: Final = frozenset({ENVELOPED, EXC_C14N, EXC_C14N_WITH_COMMENTS, C14N})
ALLOWED_C14N: Final = frozenset({EXC_C14N, EXC_C14N_WITH_COMMENTS, C14N})


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
    """Signs SAML elements with one preloaded key (RSA-SHA256 or ECDSA-SHA256, SHA-256 digests), in process.

    The ds:Signature is libxmlsec1's own template, made once and copied for each signature; its two values
    are computed as XML-DSig §3.1.1-3.1.2 (core generation) prescribes. The Reference's DigestValue is SHA-256
    over the exclusive canonical form (exc-c14n, "xs" in the PrefixList, no comments: §4.3.3.3 for a
    same-document URI) of the element before the signature is inserted, which is what the enveloped-signature
    transform (§6.6.4) leaves of it; the SignatureValue is the key's signature over the exclusive canonical
    form of SignedInfo. Canonicalisation is libxml2's (through lxml), the code libxmlsec1 itself calls;
    SHA-256, RSA and ECDSA are OpenSSL's (through cryptography). RSA PKCS#1 v1.5 is deterministic, so the
    signature is byte for byte the one libxmlsec1 writes for the same element and key (a test holds them
    equal); libxmlsec1 spends 0.3-0.5 ms more per signature on node sets, transform buffers and its
    per-signature context (:class:`Libxmlsec1Signer`, ``idp.signing.backend: libxmlsec1``; docs/performance.md).
    Thread-safe: nothing is shared but the key and the template, which is only copied.
    """

    def __init__(self, certificate: x509.Certificate,
                 private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self._private_key = private_key
        if isinstance(private_key, rsa.RSAPrivateKey):
            self.signature_method, transform = RSA_SHA256, xmlsec.constants.TransformRsaSha256
        else:
            self.signature_method, transform = ECDSA_SHA256, xmlsec.constants.TransformEcdsaSha256
        self.digest_method = SHA256
        self.certificate = certificate
        self._prototype = _signature_template(transform, certificate)
        # where the filled-in parts sit in every copy of the template, as child indexes (found once: a find()
        # per signature parses its path again)
        self._signed_info = _position(self._prototype, "SignedInfo")
        self._reference = _position(self._prototype, "SignedInfo", "Reference")
        self._digest_value = _position(self._prototype, "SignedInfo", "Reference", "DigestValue")
        self._signature_value = _position(self._prototype, "SignatureValue")

    def template(self, element: etree._Element, *, after: etree._Element | None = None) -> etree._Element:
        """Insert the empty ds:Signature (exc-c14n, RSA/ECDSA-SHA256, one Reference to the element's ID with
        the enveloped-signature and exc-c14n transforms, the signing certificate in KeyInfo/X509Data) and
        return it."""
        element_id = element.get("ID")
        if not element_id:
            raise ValueError("the element to sign has no ID")
        if element.find("ds:Signature", _NS) is not None:
            # the enveloped-signature transform removes only the signature that holds it: a second one
            # would be signed over, and verifiers refuse an element with two (as XmlVerifier does)
            raise ValueError("the element is signed already")
        template = copy.deepcopy(self._prototype)
        _at(template, self._reference).set("URI", "#" + element_id)
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
        canonical = _exc_c14n(element, _PREFIX_LIST)
        template = self.template(element, after=after)
        signed_info = _at(template, self._signed_info)
        _at(template, self._digest_value).text = _base64(hashlib.sha256(canonical).digest())
        data = _exc_c14n(signed_info, ())
        key = self._private_key
        if isinstance(key, rsa.RSAPrivateKey):
            value = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            # XML-DSig 1.1 §6.4.3: r and s as fixed-length octet strings, not DER
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            size = (key.curve.key_size + 7) // 8
            value = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        _at(template, self._signature_value).text = _base64(value)


class Libxmlsec1Signer(XmlSigner):
    """:class:`XmlSigner`'s contract, each signature computed by libxmlsec1 through python-xmlsec
    (``idp.signing.backend: libxmlsec1``): the same bytes, more CPU per signature."""

    def __init__(self, key_pem: bytes, certificate: x509.Certificate,
                 private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        super().__init__(certificate, private_key)
        # The certificate is not loaded into the key: libxmlsec1 would duplicate it (and export the RSA key's
        # parameters) at every signature just to write it out; the template carries it instead, encoded once.
        self._key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
        # python-xmlsec keys are not documented as thread-safe; signing is serialised per key.
        self._lock = threading.Lock()

    def sign(self, element: etree._Element, *, after: etree._Element | None = None) -> None:
        template = self.template(element, after=after)
        ctx = xmlsec.SignatureContext()
        with self._lock:
            ctx.key = self._key
            ctx.register_id(element, "ID")
            ctx.sign(template)


# xs is used only inside attribute values (xsi:type="xs:string"), which exclusive c14n does not count as use:
# without the PrefixList its declaration would lie outside the signature
_PREFIX_LIST: Final = ("xs",)
_BASE64_LINE: Final = 64  # libxmlsec1's line length for base64 content


def _signature_template(transform: Transform, certificate: x509.Certificate) -> etree._Element:
    """libxmlsec1's signature template, with the certificate and a placeholder Reference URI."""
    holder = etree.Element("holder", ID="placeholder")
    template = xmlsec.template.create(holder, xmlsec.constants.TransformExclC14N, transform, ns="ds")
    ref = xmlsec.template.add_reference(template, xmlsec.constants.TransformSha256, uri="#placeholder")
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    c14n = xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    xmlsec.template.transform_add_c14n_inclusive_namespaces(c14n, " ".join(_PREFIX_LIST))
    key_info = xmlsec.template.ensure_key_info(template)
    x509_data = xmlsec.template.add_x509_data(key_info)
    der = certificate.public_bytes(serialization.Encoding.DER)
    etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = base64.b64encode(der).decode()
    holder.append(template)
    return copy.deepcopy(template)  # a document of its own


def _position(template: etree._Element, *path: str) -> tuple[int, ...]:
    """The child indexes from ``template`` down to its ds:``path`` element."""
    found = template.find("/".join(f"ds:{name}" for name in path), _NS)
    if found is None:
        raise ValueError(f"the signature template has no {'/'.join(path)}")
    indexes: list[int] = []
    while found is not template:
        parent = found.getparent()
        assert parent is not None
        indexes.insert(0, parent.index(found))
        found = parent
    return tuple(indexes)


def _at(template: etree._Element, position: tuple[int, ...]) -> etree._Element:
    element = template
    for index in position:
        element = element[index]
    return element


def _exc_c14n(element: etree._Element, inclusive_prefixes: Sequence[str]) -> bytes:
    """Exclusive XML Canonicalization 1.0 of ``element``'s subtree, without comments."""
    for prefix in inclusive_prefixes:
        _intern(element, prefix)
    canonical = etree.tostring(element, method="c14n", exclusive=True, with_comments=False,
                               inclusive_ns_prefixes=list(inclusive_prefixes) or None)
    for prefix in inclusive_prefixes:
        # a PrefixList prefix in scope anywhere below the apex is rendered at least once (exc-c14n §3): if not,
        # lxml dropped it, and a signature over this would not verify anywhere
        if f" xmlns:{prefix}=".encode() not in canonical and _in_scope(prefix)(element):
            raise RuntimeError(f"exc-c14n left out the PrefixList namespace {prefix!r}")
    return canonical


@functools.cache
def _in_scope(prefix: str) -> etree.XPath:
    """Whether a namespace with ``prefix`` is in scope at the element or any element below it."""
    return etree.XPath(f"boolean(descendant-or-self::*[namespace::{prefix}])")


def _intern(element: etree._Element, prefix: str) -> None:
    """Put ``prefix`` into the names dictionaries lxml's canonicalisation looks it up in.

    lxml hands libxml2 only those PrefixList entries that the document's names dictionary already holds
    (``xmlDictExists``); a prefix declared only through ``nsmap`` never enters it, and the PrefixList would be
    silently dropped: the digest would leave out the xs declarations the serialised document carries, and no
    verifier would accept it. The dictionary is the current thread's for an element below the root (lxml
    canonicalises a copy of the document) and the document's own for the root. Making an element of that
    name, in a new document and in ``element``'s own, adds the name to both."""
    etree.Element(prefix)
    scratch = etree.SubElement(element, prefix)
    element.remove(scratch)


def _base64(value: bytes) -> str:
    encoded = base64.b64encode(value).decode()
    return "\n".join(encoded[i:i + _BASE64_LINE] for i in range(0, len(encoded), _BASE64_LINE))


MAX_NAMESPACE_LOAD: Final = 1_000_000
"""The most namespace work a signed element may ask of libxmlsec1 (:func:`_check_namespace_load`): about 20 ms of
it on a slow machine; a large Assertion (a thousand elements, ten namespaces in scope at each) is a tenth of it."""


def _check_namespace_load(element: etree._Element, limit: int) -> None:
    """Refuse an element whose digest would cost libxmlsec1 seconds of CPU before any key is tried.

    For the enveloped-signature transform, libxmlsec1 builds a node set of the element that holds every namespace
    in scope at every element, and its canonicalisation weighs each against the others: its cost grows with the
    sum, over the elements, of the square of the namespaces in scope at each (measured: 1,000 elements with 200
    namespaces each took 0.8 s, 10,000 took 9 s, for a 50 kB message). The digest is computed before the
    SignatureValue is checked, and a genuine signature copied from any message of the sender's (one that passed
    through a browser) makes the message look signed for as long as it takes, so the bound comes first, for
    every message: that sum, counted with an early stop, may not pass ``limit``. SAML messages have a handful of
    namespaces in scope at each element."""
    load = 0
    for node in element.iter():
        in_scope = len(node.nsmap) + 1  # and the xml namespace, in scope everywhere
        load += in_scope * in_scope
        if load > limit:
            raise SignatureRejected(f"the signed element declares too many namespaces for its size (more than "
                                    f"{limit:,} namespace pairs to canonicalise; SAML messages need a few thousand)")


@dataclass(frozen=True)
class _VerificationKey:
    certificate: x509.Certificate
    key: xmlsec.Key


class XmlVerifier:
    """Verifies enveloped signatures against a fixed set of certificates (from metadata)."""

    def __init__(self, certificates: Sequence[x509.Certificate], *,
                 max_namespace_load: int | None = MAX_NAMESPACE_LOAD) -> None:
        """``max_namespace_load``: see :func:`_check_namespace_load`; None for documents from a configured source
        that may be large by nature (a metadata aggregate), never for messages anyone can post."""
        self._keys = tuple(
            _VerificationKey(c, xmlsec.Key.from_memory(_pem(c), xmlsec.constants.KeyDataFormatCertPem))
            for c in certificates
        )
        self._lock = threading.Lock()
        self._max_namespace_load = max_namespace_load

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
        if self._max_namespace_load is not None:
            _check_namespace_load(element, self._max_namespace_load)
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
    transforms = ref.findall("ds:Transforms/ds:Transform", _NS)
    for transform in transforms:
        if transform.get("Algorithm") not in ALLOWED_TRANSFORMS:
            raise SignatureRejected(f"transform {transform.get('Algorithm')} is not allowed", algorithm=True)
        _only_prefix_list(transform)
    _check_transform_chain([t.get("Algorithm") for t in transforms])
    digest = ref.find("ds:DigestMethod", _NS)
    if digest is None or digest.get("Algorithm") not in ALLOWED_DIGEST_METHODS:
        alg = digest.get("Algorithm") if digest is not None else None
        raise SignatureRejected(f"digest algorithm {alg} is not allowed", algorithm=True)


def _check_transform_chain(algorithms: Sequence[str | None]) -> None:
    """SAML Core §5.4.3-5.4.4: an enveloped signature (the enveloped-signature transform, exactly once) and at
    most one canonicalisation transform besides it. Each further transform would make libxmlsec1 canonicalise
    the whole element once more before the key is even tried: hundreds of them in one message cost seconds
    of CPU, under the peer's verification lock, for anyone who can post a message naming a known peer."""
    enveloped = sum(1 for algorithm in algorithms if algorithm == ENVELOPED)
    if enveloped != 1 or len(algorithms) > 2:
        shown = ", ".join(str(a) for a in algorithms[:3]) or "none"
        if len(algorithms) > 3:
            shown += f" and {len(algorithms) - 3} more"
        raise SignatureRejected("the Reference must carry the enveloped-signature transform and at most one "
                                f"canonicalisation transform (found: {shown})")


def _only_prefix_list(method: etree._Element) -> None:
    """A transform or canonicalisation method may carry nothing but exc-c14n's InclusiveNamespaces PrefixList
    (Shibboleth sends it): other parameters, e.g. an XPath expression, open wrapping attacks."""
    for child in method:
        if not isinstance(child.tag, str):
            continue
        if child.tag != f"{{{EXC_C14N}}}InclusiveNamespaces" or len(child) or \
                method.get("Algorithm") not in (EXC_C14N, EXC_C14N_WITH_COMMENTS):
            raise SignatureRejected("transform parameters are not allowed")
