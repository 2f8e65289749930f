"""EncryptedAssertions (XML Encryption 1.1 as profiled by SAML Core §6), in process.

Decrypting (the broker as SP, through libxmlsec1): algorithms are allow-listed before anything is
decrypted: RSA-OAEP key transport (never RSA PKCS#1 v1.5, which is open to
padding-oracle attacks) and AES in CBC or GCM mode (never 3DES). Several keys
are tried in order, so a key rollover can publish the new certificate while the
old key still decrypts.

Encrypting (the broker as IdP, for SPs configured with ``encrypt_assertions``):
AES-GCM only (authenticated: CBC is open to the chosen-ciphertext attacks of
Jager and Somorovsky on XML Encryption) with a fresh key per assertion, the key
transported by RSA-OAEP to the SP's encryption certificate from its metadata
(:class:`AssertionEncrypter`, on cryptography's primitives).
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import quoteattr

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import PublicKeyAlgorithmOID
from lxml import etree

from broker.saml.metadata import EncryptionKey, EncryptionMethod
from broker.saml.xmlparse import UnsafeXml, parse_untrusted

XENC: Final = "http://www.w3.org/2001/04/xmlenc#"
SAML: Final = "urn:oasis:names:tc:SAML:2.0:assertion"
DS: Final = "http://www.w3.org/2000/09/xmldsig#"
XENC11: Final = "http://www.w3.org/2009/xmlenc11#"
_NS = {"xenc": XENC, "ds": DS}

# libxmlsec1 reads URIs through libxml2's I/O callbacks (files, and HTTP where built in): nothing the broker
# verifies or decrypts may point outside the message, so there is nothing for them to do (defence in depth
# beside _refuse_references and the same-document Reference checks of broker.saml.xmldsig)
xmlsec.cleanup_callbacks()

ALLOWED_DATA: Final = frozenset({
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2009/xmlenc11#aes192-gcm",
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
})
MAX_ENCRYPTED_KEYS: Final = 4

ALLOWED_KEY_TRANSPORT: Final = frozenset({
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
})


# What the broker encrypts with, in order of preference (the first the SP's metadata allows is used)
ENCRYPTION_DATA: Final = (
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
)
RSA_OAEP_MGF1P: Final = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
RSA_OAEP: Final = "http://www.w3.org/2009/xmlenc11#rsa-oaep"
ENCRYPTION_KEY_TRANSPORT: Final = (RSA_OAEP_MGF1P, RSA_OAEP)
_AES_KEY_BYTES: Final = {
    "http://www.w3.org/2009/xmlenc11#aes256-gcm": 32,
    "http://www.w3.org/2009/xmlenc11#aes128-gcm": 16,
}
# The kinds of algorithm an EncryptionMethod may name: a KeyDescriptor that names none of a kind leaves that kind
# to the broker (as OpenSAML does), one that names some but none the broker uses rules the key out
_DATA_KIND: Final = ALLOWED_DATA | {"http://www.w3.org/2001/04/xmlenc#tripledes-cbc"}
_KEY_TRANSPORT_KIND: Final = ALLOWED_KEY_TRANSPORT | {"http://www.w3.org/2001/04/xmlenc#rsa-1_5"}
# RSA-OAEP's settings (XML Encryption 1.1 §5.5.2): without a DigestMethod SHA-1, without an MGF MGF1 with SHA-1;
# rsa-oaep-mgf1p always uses MGF1 with SHA-1
SHA1_DIGEST: Final = "http://www.w3.org/2000/09/xmldsig#sha1"
MGF1_SHA1: Final = "http://www.w3.org/2009/xmlenc11#mgf1sha1"
_OAEP_DIGESTS: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    SHA1_DIGEST: hashes.SHA1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashes.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashes.SHA512,
}
_MGF_DIGESTS: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    MGF1_SHA1: hashes.SHA1,
    "http://www.w3.org/2009/xmlenc11#mgf1sha224": hashes.SHA224,
    "http://www.w3.org/2009/xmlenc11#mgf1sha256": hashes.SHA256,
    "http://www.w3.org/2009/xmlenc11#mgf1sha384": hashes.SHA384,
    "http://www.w3.org/2009/xmlenc11#mgf1sha512": hashes.SHA512,
}
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 16384   # OpenSSL's limit for RSA operations (OPENSSL_RSA_MAX_MODULUS_BITS)


class EncryptionUnsupported(ValueError):
    """An SP's encryption key or algorithms are ones the broker does not encrypt for (an operator's message)."""


@dataclass(frozen=True)
class EncryptionChoice:
    data: str                      # EncryptedData's EncryptionMethod
    key_transport: str             # EncryptedKey's EncryptionMethod
    digest: str = SHA1_DIGEST      # RSA-OAEP's digest
    mgf: str = MGF1_SHA1           # RSA-OAEP's mask generation function


def _usable_transport(method: EncryptionMethod) -> EncryptionChoice | None:
    """The RSA-OAEP settings ``method`` names, if the broker can use them (data left to the caller)."""
    digest = method.digest or SHA1_DIGEST
    mgf = method.mgf or MGF1_SHA1
    if method.oaep_params or digest not in _OAEP_DIGESTS or mgf not in _MGF_DIGESTS:
        return None
    if method.algorithm == RSA_OAEP_MGF1P and mgf != MGF1_SHA1:
        return None   # the identifier fixes MGF1 with SHA-1
    return EncryptionChoice("", method.algorithm, digest, mgf)


def choose_encryption(listed: Sequence[EncryptionMethod]) -> EncryptionChoice:
    """The algorithms to encrypt for a key whose metadata KeyDescriptor lists ``listed`` EncryptionMethods.

    SAML Metadata §2.4.1.1: the EncryptionMethods of a KeyDescriptor name the algorithms, with their settings,
    that the entity supports with that key. Data encryption and key transport are chosen apart: for a kind the
    list does not name at all, the broker's first preference; for one it names, the broker's first preference
    among those named, with the RSA-OAEP digest and MGF named with it. Raises :class:`EncryptionUnsupported`
    when what the list names of a kind leaves out everything the broker encrypts with.
    """
    data_named = [m.algorithm for m in listed if m.algorithm in _DATA_KIND]
    data = next((a for a in ENCRYPTION_DATA if not data_named or a in data_named), None)
    if data is None:
        raise EncryptionUnsupported(f"the metadata's EncryptionMethods name data encryption {', '.join(data_named)} "
                                    f"only; the broker encrypts with {', '.join(ENCRYPTION_DATA)}")
    transports = [m for m in listed if m.algorithm in _KEY_TRANSPORT_KIND]
    if not transports:
        return EncryptionChoice(data, ENCRYPTION_KEY_TRANSPORT[0])
    for algorithm in ENCRYPTION_KEY_TRANSPORT:
        for method in transports:
            usable = _usable_transport(method) if method.algorithm == algorithm else None
            if usable is not None:
                return EncryptionChoice(data, usable.key_transport, usable.digest, usable.mgf)
    named = ", ".join(m.algorithm + (f" (digest {m.digest})" if m.digest else "") + (f" (MGF {m.mgf})" if m.mgf else "")
                      + (" (OAEPparams)" if m.oaep_params else "") for m in transports)
    raise EncryptionUnsupported(f"the metadata's EncryptionMethods name key transport {named} only; the broker "
                                f"uses {', '.join(ENCRYPTION_KEY_TRANSPORT)} with digest SHA-1/256/384/512 and "
                                "MGF1 with SHA-1/224/256/384/512, without OAEPparams")


def check_encryption_certificate(certificate: x509.Certificate) -> None:
    """Raise :class:`EncryptionUnsupported` unless the certificate holds an RSA key of at least 2048 bits (key
    transport is RSA-OAEP; the broker does no key agreement)."""
    if certificate.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS:
        # RFC 4055 §1.2: an id-RSASSA-PSS key is for PSS signatures only; the SP's own library will not decrypt
        raise EncryptionUnsupported("the encryption certificate holds an RSASSA-PSS key, which is for signatures "
                                    "only (RFC 4055); RSA-OAEP key transport needs an rsaEncryption key")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise EncryptionUnsupported(f"the encryption certificate holds a {type(key).__name__.lstrip('_')}; "
                                    "the broker encrypts only for RSA keys (RSA-OAEP key transport)")
    if key.key_size < MIN_RSA_BITS:
        raise EncryptionUnsupported(f"the encryption certificate's RSA key has {key.key_size} bits; at least "
                                    f"{MIN_RSA_BITS} are required")
    if key.key_size > MAX_RSA_BITS:
        raise EncryptionUnsupported(f"the encryption certificate's RSA key has {key.key_size} bits; OpenSSL "
                                    f"encrypts with at most {MAX_RSA_BITS}")


def encrypter_for(keys: Sequence[EncryptionKey], recipient: str) -> AssertionEncrypter:
    """The encrypter for the first of an SP's metadata encryption ``keys`` the broker can encrypt for.

    Only one key gets the assertion's key: the first usable one in the metadata's order (an SP rolling its key
    over keeps the old key until it has stopped listing it). Raises :class:`EncryptionUnsupported` naming why
    each key is unusable.
    """
    if not keys:
        raise EncryptionUnsupported('the metadata has no encryption key (a KeyDescriptor with use="encryption" '
                                    "or without use)")
    problems = []
    for key in keys:
        try:
            return AssertionEncrypter(key.certificate, choose_encryption(key.methods), recipient)
        except EncryptionUnsupported as exc:
            problems.append(str(exc))
    raise EncryptionUnsupported("; ".join(dict.fromkeys(problems)))


class AssertionEncrypter:
    """Encrypts assertions for one SP (SAML Core §2.3.4, §6.1; XML Encryption 1.1 §3, §5.2.4, §5.5.2).

    The primitives are cryptography's (OpenSSL): a fresh AES key and 96-bit IV per assertion, AES-GCM over the
    Assertion's serialisation, RSA-OAEP for the AES key (by default SHA-1 and MGF1 with SHA-1, no label: the
    ``rsa-oaep-mgf1p`` identifier's defaults, which every SAML stack reads; the digest and MGF the SP's metadata
    names otherwise, written into the EncryptedKey); the XML around them is built with lxml. libxmlsec1's own
    encryption costs about 0.25 ms per assertion, most of it setting the RSA key up again each time; this about
    0.05 ms. Tests decrypt what it writes with libxmlsec1 (the broker's
    :class:`Decrypter`, python-xmlsec alone, and the ``xmlsec1`` program of the pysaml2 SP).
    """

    def __init__(self, certificate: x509.Certificate, choice: EncryptionChoice, recipient: str) -> None:
        check_encryption_certificate(certificate)
        key = certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)  # checked just above
        self.choice = choice
        self.certificate = certificate
        self._key = key
        self._recipient = recipient
        self._key_bytes = _AES_KEY_BYTES[choice.data]
        # SHA-1 inside OAEP (the default both identifiers name without parameters) is no signature digest: OAEP's
        # security rests on neither hash's collision resistance
        self._padding = padding.OAEP(mgf=padding.MGF1(_MGF_DIGESTS[choice.mgf]()),
                                     algorithm=_OAEP_DIGESTS[choice.digest](), label=None)
        try:
            # a key that reads but does not encrypt (an even modulus, say) is found at load, not at each login
            key.encrypt(bytes(self._key_bytes), self._padding)
        except ValueError as exc:
            raise EncryptionUnsupported(f"the encryption certificate's RSA key does not encrypt ({exc})") from None

    def encrypt(self, assertion: etree._Element) -> etree._Element:
        """Replace the (signed) ``assertion`` in its Response by ``<saml:EncryptedAssertion>``; return that.

        The plaintext is the Assertion serialised on its own, every prefix it uses declared on it (lxml adds
        the declarations of its ancestors): SPs parse what they decrypt as a document of its own. The
        EncryptedKey sits in the EncryptedData's KeyInfo (SAML Core §6.2), its Recipient naming the SP.
        """
        parent = assertion.getparent()
        if parent is None:
            raise ValueError("the Assertion to encrypt is not inside a Response")
        plaintext = etree.tostring(assertion, with_tail=False)
        session_key = AESGCM.generate_key(self._key_bytes * 8)
        iv = os.urandom(12)
        # XML Encryption 1.1 §5.2.4: the CipherValue of AES-GCM is the IV, the ciphertext and the 128-bit tag
        ciphertext = iv + AESGCM(session_key).encrypt(iv, plaintext, None)
        wrapped_key = self._key.encrypt(session_key, self._padding)

        # made inside the Response, so that it takes the Response's prefix for the assertion namespace
        wrapper = etree.SubElement(parent, f"{{{SAML}}}EncryptedAssertion")
        parent.replace(assertion, wrapper)
        data = etree.SubElement(wrapper, f"{{{XENC}}}EncryptedData", nsmap={"xenc": XENC}, Type=XENC + "Element")
        etree.SubElement(data, f"{{{XENC}}}EncryptionMethod", Algorithm=self.choice.data)
        key_info = etree.SubElement(data, f"{{{DS}}}KeyInfo", nsmap={"ds": DS})
        encrypted_key = etree.SubElement(key_info, f"{{{XENC}}}EncryptedKey", Recipient=self._recipient)
        method = etree.SubElement(encrypted_key, f"{{{XENC}}}EncryptionMethod", Algorithm=self.choice.key_transport)
        # XML Encryption 1.1 §5.5.2: the settings that differ from the defaults, in the schema's order
        if self.choice.digest != SHA1_DIGEST:
            etree.SubElement(method, f"{{{DS}}}DigestMethod", Algorithm=self.choice.digest)
        if self.choice.mgf != MGF1_SHA1:
            etree.SubElement(method, f"{{{XENC11}}}MGF", nsmap={"xenc11": XENC11}, Algorithm=self.choice.mgf)
        _cipher_value(encrypted_key, wrapped_key)
        _cipher_value(data, ciphertext)
        return wrapper


def _cipher_value(parent: etree._Element, value: bytes) -> None:
    cipher_data = etree.SubElement(parent, f"{{{XENC}}}CipherData")
    etree.SubElement(cipher_data, f"{{{XENC}}}CipherValue").text = base64.b64encode(value).decode("ascii")


class DecryptionRefused(Exception):
    """Decryption was not attempted or failed; ``algorithm`` when an algorithm is refused."""

    def __init__(self, message: str, *, algorithm: bool = False) -> None:
        super().__init__(message)
        self.algorithm = algorithm


class Decrypter:
    """Holds the broker's decryption keys (loaded once) and decrypts EncryptedAssertion elements."""

    def __init__(self, key_pems: Sequence[bytes]) -> None:
        # one keys manager per key, made once: a fresh manager per message costs ~9 ms (libxmlsec1 sets the
        # RSA key up again), a kept one ~0.5 ms; the lock serialises libxmlsec1's use of it across threads
        self._managers = []
        for pem in key_pems:
            manager = xmlsec.KeysManager()
            manager.add_key(xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem))
            self._managers.append(manager)
        self._lock = threading.Lock()

    def decrypt(self, encrypted: etree._Element, max_bytes: int = 1 << 20) -> etree._Element:
        """Replace ``encrypted`` (an EncryptedAssertion) in its tree by the decrypted element; return it."""
        element = self.decrypt_detached(encrypted, max_bytes)
        parent = encrypted.getparent()
        if parent is None:
            raise DecryptionRefused("the EncryptedAssertion has no parent")
        parent.replace(encrypted, element)
        return element

    def decrypt_detached(self, encrypted: etree._Element, max_bytes: int = 1 << 20) -> etree._Element:
        """The element ``encrypted`` holds, decrypted, in a document of its own that declares around it the
        namespaces in scope at ``encrypted`` (:func:`_parse_in_context`); ``encrypted`` stays where it is.

        A signature inside the element is to be verified here, before the element moves into ``encrypted``'s
        document: lxml rebinds a moved element to whichever prefix its new ancestors declare for its namespace (it
        matches namespaces by URI), and the canonical form a signature covers holds the prefixes as written
        (exc-c14n §3, C14N 1.0 §2.3). An Assertion in the default namespace, or under another prefix than the one
        the Response declares for it (``<Assertion xmlns="urn:...:assertion">`` in a Response declaring ``saml``, as
        .NET writes it), would otherwise no longer verify once it had moved."""
        data = encrypted.findall("xenc:EncryptedData", _NS)
        if len(data) != 1:
            raise DecryptionRefused(f"expected one EncryptedData, found {len(data)}")
        method = data[0].find("xenc:EncryptionMethod", _NS)
        algorithm = method.get("Algorithm") if method is not None else None
        if algorithm not in ALLOWED_DATA:
            raise DecryptionRefused(f"data encryption {str(algorithm)[:100]} is not allowed (AES only)", algorithm=True)
        _refuse_references(encrypted)
        keys = encrypted.findall(".//xenc:EncryptedKey", _NS)
        if not keys:
            raise DecryptionRefused("no EncryptedKey for the broker")
        if len(keys) > MAX_ENCRYPTED_KEYS:
            # each is an RSA decryption attempt: a message full of them is work for an attacker's price
            raise DecryptionRefused(f"{len(keys)} EncryptedKeys; at most {MAX_ENCRYPTED_KEYS} are tried")
        for encrypted_key in keys:
            key_method = encrypted_key.find("xenc:EncryptionMethod", _NS)
            transport = key_method.get("Algorithm") if key_method is not None else None
            if transport not in ALLOWED_KEY_TRANSPORT:
                raise DecryptionRefused(f"key transport {str(transport)[:100]} is not allowed (RSA-OAEP only)",
                                        algorithm=True)
        errors = []
        plaintext = None
        for manager in self._managers:
            # decrypt to octets (Type removed from a copy): xmlsec would parse the plaintext itself, with
            # libxml2's defaults; the broker's hardened parser must see it instead (below)
            attempt = _copy(data[0])
            if "Type" in attempt.attrib:
                del attempt.attrib["Type"]
            _inline_sibling_keys(attempt, encrypted)
            try:
                with self._lock:
                    result = xmlsec.EncryptionContext(manager).decrypt(attempt)
            except xmlsec.Error as exc:
                errors.append(str(exc))
                continue
            if isinstance(result, bytes):
                plaintext = result
                break
            raise DecryptionRefused("the decrypted content is not octets")
        if plaintext is None:
            raise DecryptionRefused("none of the broker's keys decrypts it" + (f" ({errors[-1]})" if errors else ""))
        return _parse_in_context(plaintext, encrypted, max_bytes)


def _refuse_references(encrypted: etree._Element) -> None:
    """Refuse anything that would have libxmlsec1 fetch data from elsewhere while decrypting: a CipherReference
    (XML Encryption §3.3.1: the ciphertext at a URI, with Transforms), or a RetrievalMethod that is no same-document
    reference (XML-DSig §4.4.3). Either would read a local file (``file:///dev/zero``: memory without end) on
    behalf of anyone who can post to the ACS, before any signature is checked. SAML Core §6 carries the
    ciphertext in CipherValue and the key in or beside the EncryptedData, and needs neither."""
    if encrypted.find(".//xenc:CipherReference", _NS) is not None:
        raise DecryptionRefused("a CipherReference (SAML Core §6 carries the ciphertext in CipherValue)")
    for retrieval in encrypted.iterfind(".//ds:RetrievalMethod", _NS):
        if not (retrieval.get("URI") or "").startswith("#"):
            raise DecryptionRefused("a RetrievalMethod that is no same-document reference")
        if len(retrieval):  # Transforms: only ever needed to fetch from elsewhere
            raise DecryptionRefused("a RetrievalMethod with Transforms")


def _inline_sibling_keys(data: etree._Element, encrypted: etree._Element) -> None:
    """SAML Core §6.2 lets the EncryptedKey sit beside the EncryptedData (pointed at by a RetrievalMethod, as
    some IdPs send it): copy it into this copy's KeyInfo, where libxmlsec1 looks."""
    siblings = encrypted.findall("xenc:EncryptedKey", _NS)
    if not siblings or data.find(".//xenc:EncryptedKey", _NS) is not None:
        return
    key_info = data.find("ds:KeyInfo", _NS)
    if key_info is None:  # its place: after EncryptionMethod, before CipherData (XML Encryption §3.1)
        key_info = etree.Element(f"{{{_NS['ds']}}}KeyInfo")
        method = data.find("xenc:EncryptionMethod", _NS)
        data.insert(data.index(method) + 1 if method is not None else 0, key_info)
    for retrieval in key_info.findall("ds:RetrievalMethod", _NS):
        key_info.remove(retrieval)
    for key in siblings:
        key_info.append(_copy(key))


def _copy(element: etree._Element) -> etree._Element:
    """A copy of ``element`` (an untrusted message's) in a document of its own, the namespaces in scope at it
    declared on it, as the hardened parser makes documents (broker.saml.xmlparse): a copy made through lxml's tree
    API puts every name it holds into the names dictionary of the calling thread, a request thread of the worker,
    which keeps them for its life."""
    serialised = etree.tostring(element, with_tail=False)
    return parse_untrusted(serialised, len(serialised))


def _parse_in_context(plaintext: bytes, encrypted: etree._Element, max_bytes: int) -> etree._Element:
    """Parse decrypted XML with the hardened parser, its prefixes bound as at the EncryptedAssertion.

    The plaintext is an element serialised inside its document (XML Encryption §4.1): it may use
    prefixes declared further up, which a wrapper carrying the in-scope declarations supplies.
    Entities, DTDs and comments are refused or dropped as for any inbound message.
    """
    text = plaintext.lstrip()
    if text.startswith(b"<?xml"):
        end = text.find(b"?>")
        text = text[end + 2:] if end >= 0 else text
    declarations = "".join(f" xmlns:{prefix}={quoteattr(uri)}" if prefix else f" xmlns={quoteattr(uri)}"
                           for prefix, uri in encrypted.nsmap.items())
    wrapped = f"<broker-decrypted{declarations}>".encode() + text + b"</broker-decrypted>"
    try:
        wrapper = parse_untrusted(wrapped, max_bytes)
    except UnsafeXml as exc:
        raise DecryptionRefused(f"the decrypted content: {exc}") from None
    children = [c for c in wrapper if isinstance(c.tag, str)]
    if len(children) != 1 or (wrapper.text or "").strip() or any((c.tail or "").strip() for c in children):
        raise DecryptionRefused("the decrypted content is not exactly one element")
    return children[0]
