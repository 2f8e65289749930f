"""Decrypting EncryptedAssertions (XML Encryption 1.1 as profiled by SAML Core §6), in process via libxmlsec1.

Algorithms are allow-listed before anything is decrypted: RSA-OAEP key
transport (never RSA PKCS#1 v1.5, which is open to padding-oracle attacks) and
AES in CBC or GCM mode (never 3DES). Several keys are tried in order, so a key
rollover can publish the new certificate while the old key still decrypts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Final

import xmlsec
from lxml import etree

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
        self._keys = [xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem) for pem in key_pems]

    def decrypt(self, encrypted: etree._Element) -> etree._Element:
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
        for encrypted_key in keys:
            key_method = encrypted_key.find("xenc:EncryptionMethod", _NS)
            transport = key_method.get("Algorithm") if key_method is not None else None
            if transport not in ALLOWED_KEY_TRANSPORT:
                raise DecryptionRefused(f"key transport {transport} is not allowed (RSA-OAEP only)", algorithm=True)
        errors = []
        for key in self._keys:
            # decrypt a copy: a failed attempt may leave the tree half changed
            attempt = copy.deepcopy(encrypted)
            target = attempt.find("xenc:EncryptedData", _NS)
            assert target is not None  # checked above on the original
            manager = xmlsec.KeysManager()
            manager.add_key(key)
            context = xmlsec.EncryptionContext(manager)
            try:
                result = context.decrypt(target)
            except xmlsec.Error as exc:
                errors.append(str(exc))
                continue
            if not isinstance(result, etree._Element):
                raise DecryptionRefused("the decrypted content is not an XML element")
            parent = encrypted.getparent()
            if parent is None:
                raise DecryptionRefused("the EncryptedAssertion has no parent")
            parent.replace(encrypted, result)
            return result
        raise DecryptionRefused("none of the broker's keys decrypts it" + (f" ({errors[-1]})" if errors else ""))
