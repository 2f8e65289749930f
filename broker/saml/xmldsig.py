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
this module verified.

libxmlsec1 computes the Reference's digest over the whole element before it
checks the SignatureValue, and some messages make that cost seconds of CPU.
So the SignatureValue is checked over SignedInfo first, with the sender's
keys (:meth:`XmlVerifier._signers_of_signed_info`: a forged signature never
reaches the digest), and what a message may ask of the canonicalisation is
bounded (:func:`_check_work`: for a genuine signature copied onto another
message).
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

from broker.saml.xmlparse import is_ncname, parse_untrusted

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
    name, in a new document and in ``element``'s own, adds the name to both; for the root only to the document's:
    the current thread keeps a name for its life, and the verifier's PrefixList is whatever a message lists."""
    if element.getparent() is not None or element.getprevious() is not None or element.getnext() is not None:
        etree.Element(prefix)
    scratch = etree.SubElement(element, prefix)
    element.remove(scratch)


def _base64(value: bytes) -> str:
    encoded = base64.b64encode(value).decode()
    return "\n".join(encoded[i:i + _BASE64_LINE] for i in range(0, len(encoded), _BASE64_LINE))


MAX_NAMESPACE_LOAD: Final = 1_000_000
"""The most namespace work a signed message may ask of libxmlsec1 (:func:`_check_work`); a large Assertion (a
thousand elements, ten namespaces in scope at each) is a tenth of it."""
MAX_DEPTH: Final = 32
"""The deepest element a signed message may hold, counted from its root (SAML messages stay under 15)."""
MAX_ATTRIBUTES: Final = 64
"""The most attributes one element of a signed message may carry (SAML's carry a handful)."""
MAX_NAMESPACES_IN_SCOPE: Final = 100
"""More namespaces in scope at a signature than any SAML message has (a handful; pysaml2 declares two more on each
AttributeValue, below the signature): the bound on what canonicalising SignedInfo costs."""


def _check_work(element: etree._Element, max_load: int = MAX_NAMESPACE_LOAD) -> None:
    """Refuse a message (``element``: its root) whose canonicalisation would cost libxmlsec1 seconds of CPU, in one
    linear pass.

    libxmlsec1 computes the Reference's digest before the SignatureValue is checked, and only a genuine
    signature copied from another message of the sender's (one that passed through a browser) gets that far
    once :meth:`XmlVerifier._signers_of_signed_info` has refused forged ones. Its canonicalisation grows with the
    sum over the elements of the square of the namespaces in scope at each (1,000 elements with 200 namespaces:
    0.8 s), with each element's attributes squared (it sorts them by insertion: 24,000 on one element, 2.5 s),
    and with the depth (each node's visibility is decided over its ancestors: 55,000 leaves 250 levels down,
    1.8 s). SAML messages have a handful of each, and so are far inside these bounds."""
    depth = sum(1 for _ in element.iterancestors())
    parent = element.getparent()
    scopes = [len(parent.nsmap) if parent is not None else 0]
    declared = 0
    load = 0
    for event, item in etree.iterwalk(element, events=("start-ns", "start", "end")):
        if event == "start-ns":
            declared += 1
            continue
        if event == "end":
            scopes.pop()
            continue
        node: etree._Element = item
        in_scope = scopes[-1] + declared  # redeclared prefixes counted twice: an upper bound
        declared = 0
        scopes.append(in_scope)
        if depth + len(scopes) - 1 > MAX_DEPTH:
            raise SignatureRejected(f"the signed message nests elements deeper than {MAX_DEPTH} levels")
        if len(node.attrib) > MAX_ATTRIBUTES:
            raise SignatureRejected(f"an element of the signed message carries more than {MAX_ATTRIBUTES} attributes")
        load += (in_scope + 1) ** 2  # and the xml namespace, in scope everywhere
        if load > max_load:
            raise SignatureRejected(f"the signed message declares too many namespaces for its size (more than "
                                    f"{max_load:,} namespace pairs to canonicalise; SAML messages need a few thousand)")


@dataclass(frozen=True)
class _VerificationKey:
    certificate: x509.Certificate
    key: xmlsec.Key
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None   # None: a key no allowed method uses


# SignatureMethod URIs (all allowed ones) and their hashes; the RSA ones are PKCS#1 v1.5 (RFC 6931 §2.3.2)
SIGNATURE_HASHES: Final[dict[str, hashes.HashAlgorithm]] = {
    RSA_SHA256: hashes.SHA256(), RSA_SHA384: hashes.SHA384(), RSA_SHA512: hashes.SHA512(),
    ECDSA_SHA256: hashes.SHA256(), ECDSA_SHA384: hashes.SHA384(), ECDSA_SHA512: hashes.SHA512(),
}
_ECDSA_METHODS: Final = frozenset({ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512})


def signature_value_verifies(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, method: str, value: bytes,
                             data: bytes) -> bool:
    """Whether ``value`` is ``key``'s signature over ``data`` by the SignatureMethod ``method`` (one of
    :data:`SIGNATURE_HASHES`): RSA PKCS#1 v1.5, or ECDSA with the value as r || s (RFC 4051 §3.3; XML-DSig 1.1
    §6.4.3), not DER. r and s are the two halves of any even length, as libxmlsec1 reads them: Java signers
    drop leading zero octets or add a sign octet, so the halves are not always the key's size."""
    algorithm = SIGNATURE_HASHES[method]
    try:
        if method in _ECDSA_METHODS:
            if not isinstance(key, ec.EllipticCurvePublicKey) or not value or len(value) % 2:
                return False
            half = len(value) // 2
            der = encode_dss_signature(int.from_bytes(value[:half], "big"), int.from_bytes(value[half:], "big"))
            key.verify(der, data, ec.ECDSA(algorithm))
            return True
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        key.verify(value, data, padding.PKCS1v15(), algorithm)
        return True
    except InvalidSignature:
        return False


def _public_key(certificate: x509.Certificate) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
    key = certificate.public_key()
    return key if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else None


class XmlVerifier:
    """Verifies enveloped signatures against a fixed set of certificates (from metadata)."""

    def __init__(self, certificates: Sequence[x509.Certificate], *, bounded: bool = True) -> None:
        """``bounded``: refuse messages whose canonicalisation would be expensive (:func:`_check_work`); False
        for documents from a configured source that may be large by nature (a metadata aggregate), never for
        messages anyone can post."""
        self._keys = tuple(
            _VerificationKey(c, xmlsec.Key.from_memory(_pem(c), xmlsec.constants.KeyDataFormatCertPem),
                             _public_key(c))
            for c in certificates
        )
        self._lock = threading.Lock()
        self._bounded = bounded

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
        if self._bounded:
            # the whole document: libxml2's canonicalisation walks every node of it, not only the signed element's
            _check_work(element.getroottree().getroot())
        for candidate in self._signers_of_signed_info(signature):
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

    def _signers_of_signed_info(self, signature: etree._Element) -> list[_VerificationKey]:
        """The keys whose signature the SignatureValue is over the canonical SignedInfo (XML-DSig §3.2.2,
        signature validation), checked before libxmlsec1 computes the Reference's digest (§3.2.1).

        The digest is over the whole signed element, and for some allowed transform chains libxmlsec1 builds
        a node set holding every in-scope namespace of every element first: a 50 KB message with a few hundred
        namespace declarations and thousands of empty elements costs it seconds of CPU, under this peer's
        lock, whatever the signature. SignedInfo is a few hundred bytes: a forged signature is refused here at
        the cost of one canonicalisation and one public-key operation per key, and only the sender's own keys
        can make the broker compute a digest. libxmlsec1 then checks both values again, as before."""
        signed_info = signature.find("ds:SignedInfo", _NS)
        value = signature.find("ds:SignatureValue", _NS)
        if signed_info is None or value is None:
            raise SignatureRejected("the signature has no SignedInfo or no SignatureValue")
        method = signed_info.find("ds:SignatureMethod", _NS)
        c14n = signed_info.find("ds:CanonicalizationMethod", _NS)
        if method is None or c14n is None:  # (refused by _check_structure already)
            raise SignatureRejected("the signature has no SignatureMethod or no CanonicalizationMethod")
        in_scope = len(signed_info.nsmap)
        if in_scope > MAX_NAMESPACES_IN_SCOPE:
            # canonicalising SignedInfo renders (or weighs) every namespace in scope: bounded, that costs nothing
            raise SignatureRejected(f"{in_scope} namespaces are in scope at the signature (at most "
                                    f"{MAX_NAMESPACES_IN_SCOPE})")
        try:
            octets = base64.b64decode("".join((value.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureRejected("the SignatureValue is not base64") from None
        try:
            data = _canonical_signed_info(signed_info, str(c14n.get("Algorithm")), _prefix_list(c14n))
        except (ValueError, etree.Error) as exc:  # (SignatureRejected is neither)
            raise SignatureRejected(f"SignedInfo cannot be canonicalised: {str(exc)[:100]}") from None
        algorithm = str(method.get("Algorithm"))
        found = [k for k in self._keys
                 if k.public_key is not None and signature_value_verifies(k.public_key, algorithm, octets, data)]
        if not found:
            raise SignatureRejected("the signature does not verify with the sender's metadata keys")
        return found


def _prefix_list(method: etree._Element) -> tuple[str, ...]:
    """The InclusiveNamespaces PrefixList of an exclusive canonicalisation method (exc-c14n §4): NCNames, and
    "#default" for the default namespace; anything else is no prefix and refuses the signature."""
    found = method.find(f"{{{EXC_C14N}}}InclusiveNamespaces")
    prefixes = tuple((found.get("PrefixList") or "").split()) if found is not None else ()
    for prefix in prefixes:
        if prefix != "#default" and not is_ncname(prefix):
            raise SignatureRejected(f"the PrefixList names {prefix[:40]!r}, which is no namespace prefix")
    return prefixes


def _canonical_signed_info(signed_info: etree._Element, algorithm: str, prefixes: Sequence[str]) -> bytes:
    """SignedInfo in the canonical form its CanonicalizationMethod names (XML-DSig §4.3.1), as libxmlsec1 makes
    it from the document subset SignedInfo is: libxml2's canonicalisation, through lxml, of a standalone copy
    that declares every namespace in scope at SignedInfo on itself (what C14N 1.0 §2.4 renders on the apex of a
    document subset; exclusive c14n renders those used or listed). lxml's own canonicalisation of an element
    inside a document gets unprefixed children wrong when the default namespace is declared on an ancestor
    (``<Signature xmlns="...xmldsig#">``, as .NET and Entra ID write it): a copy of its own has no ancestors.
    Comments are gone at parse time (broker.saml.xmlparse), so "with comments" changes nothing."""
    in_scope = signed_info.nsmap
    if algorithm == C14N:
        if _inherits_xml_attributes(signed_info):
            # C14N 1.0 §2.4 also imports xml:lang, xml:space (...) from the ancestors into the apex element; no
            # SAML peer signs such documents
            raise SignatureRejected("inclusive canonicalisation under xml: attributes of enclosing elements is "
                                    "not supported", algorithm=True)
        return etree.tostring(_standalone(signed_info), method="c14n", exclusive=False,
                              with_comments=False)
    if "#default" in prefixes and in_scope.get(None) is not None and \
            (in_scope[None] != DS or signed_info.prefix is not None):
        # lxml cannot name the default namespace in the PrefixList; without it, it is rendered exactly when used
        # visibly, which for SignedInfo (all ds) is when it is ds's own and SignedInfo is written without a prefix:
        # any other one (ds's own too, beside a ds: SignedInfo) would differ
        raise SignatureRejected("an exclusive canonicalisation of SignedInfo listing a foreign default namespace "
                                "is not supported", algorithm=True)
    inclusive = [p for p in prefixes if p != "#default"]
    copy_ = _standalone(signed_info)
    for prefix in inclusive:
        _intern(copy_, prefix)
    return etree.tostring(copy_, method="c14n", exclusive=True, with_comments=False,
                          inclusive_ns_prefixes=inclusive or None)


def _standalone(element: etree._Element) -> etree._Element:
    """A copy of ``element`` as the root of a document of its own that declares on itself every namespace in scope
    at ``element``, every element under the prefix it is written with: its serialisation (lxml writes the
    declarations of the ancestors onto a subelement's start tag) parsed again. A copy made through lxml's tree API
    takes, for each element, whichever binding of its namespace the new tree declares first (lxml matches
    namespaces by URI, not by prefix), and the canonical forms name the prefixes as written (exc-c14n §3, C14N 1.0
    §2.3): under two bindings of the signature namespace, it refused genuine signatures."""
    serialised = etree.tostring(element, with_tail=False)
    return parse_untrusted(serialised, len(serialised))


def _inherits_xml_attributes(element: etree._Element) -> bool:
    parent = element.getparent()
    while parent is not None:
        if any(str(name).startswith("{http://www.w3.org/XML/1998/namespace}") for name in parent.attrib):
            return True
        parent = parent.getparent()
    return False


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
        # algorithm names cut short: anyone can post a signed-looking message, and refusals are audited
        raise SignatureRejected(f"signature algorithm {str(alg)[:100]} is not allowed", algorithm=True)
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
            raise SignatureRejected(f"transform {str(transform.get('Algorithm'))[:100]} is not allowed",
                                    algorithm=True)
        _only_prefix_list(transform)
    _check_transform_chain([t.get("Algorithm") for t in transforms])
    digest = ref.find("ds:DigestMethod", _NS)
    if digest is None or digest.get("Algorithm") not in ALLOWED_DIGEST_METHODS:
        alg = digest.get("Algorithm") if digest is not None else None
        raise SignatureRejected(f"digest algorithm {str(alg)[:100]} is not allowed", algorithm=True)


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
