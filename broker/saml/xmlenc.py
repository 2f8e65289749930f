"""Decrypting EncryptedAssertions (XML Encryption 1.1 as profiled by SAML Core §6), in process via libxmlsec1.

Algorithms are allow-listed before anything is decrypted: RSA-OAEP key
transport (never RSA PKCS#1 v1.5, which is open to padding-oracle attacks) and
AES in CBC or GCM mode (never 3DES). Several keys are tried in order, so a key
rollover can publish the new certificate while the old key still decrypts.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Final
from xml.sax.saxutils import quoteattr

import xmlsec
from lxml import etree

from broker.saml.xmlparse import UnsafeXml, parse_untrusted

XENC: Final = "http://www.w3.org/2001/04/xmlenc#"
_NS = {"xenc": XENC, "ds": "http://www.w3.org/2000/09/xmldsig#"}

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
        data = encrypted.findall("xenc:EncryptedData", _NS)
        if len(data) != 1:
            raise DecryptionRefused(f"expected one EncryptedData, found {len(data)}")
        method = data[0].find("xenc:EncryptionMethod", _NS)
        algorithm = method.get("Algorithm") if method is not None else None
        if algorithm not in ALLOWED_DATA:
            raise DecryptionRefused(f"data encryption {algorithm} is not allowed (AES only)", algorithm=True)
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
                raise DecryptionRefused(f"key transport {transport} is not allowed (RSA-OAEP only)", algorithm=True)
        errors = []
        plaintext = None
        for manager in self._managers:
            # decrypt to octets (Type removed from a copy): xmlsec would parse the plaintext itself, with
            # libxml2's defaults; the broker's hardened parser must see it instead (below)
            attempt = copy.deepcopy(data[0])
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
        element = _parse_in_context(plaintext, encrypted, max_bytes)
        parent = encrypted.getparent()
        if parent is None:
            raise DecryptionRefused("the EncryptedAssertion has no parent")
        parent.replace(encrypted, element)
        return element


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
        key_info.append(copy.deepcopy(key))


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
