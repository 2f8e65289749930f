"""The broker's own SP metadata toward municipal IdPs (SAML Metadata 2.0), signed, with a bounded validUntil.

Published at ``/saml/sp/metadata``: the signing key and those of ``sp.signing.also_published`` (a key rollover),
the current decryption key (the first in ``sp.decryption``), the ACS (HTTP-POST) and the SLO endpoints.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from saml2 import md, xmldsig

from broker.clock import Clock
from broker.config.schema import SpConfig
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT, NAMEID_PERSISTENT, NAMEID_TRANSIENT
from broker.saml.metadata_window import Window, content_id, window
from broker.saml.xmldsig import XmlSigner
from broker.saml.xmlparse import parse_untrusted
from broker.saml.xmltime import format_instant

PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"


# What the broker asks municipal IdPs to encrypt with, in its order of preference (SAML Metadata §2.4.1.1: the
# EncryptionMethods of an encryption KeyDescriptor; an IdP that reads them, as OpenSAML's does, takes the first it
# supports). AES-GCM first: it is authenticated, so a tampered ciphertext fails before anything is parsed, while a
# CBC ciphertext is malleable (the padding and timing oracles of XML Encryption 1.0); AES-CBC stays listed for IdPs
# without GCM, which the broker still accepts (broker.saml.xmlenc.ALLOWED_DATA). RSA-OAEP for the key, never
# RSA 1.5.
PREFERRED_ENCRYPTION: Final = (
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
)


def key_descriptor(use: str, cert: x509.Certificate, methods: tuple[str, ...] = ()) -> md.KeyDescriptor:
    """A KeyDescriptor for ``use`` holding ``cert``, with the EncryptionMethods ``methods`` (SAML Metadata
    §2.4.1.1)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return md.KeyDescriptor(use=use, key_info=xmldsig.KeyInfo(x509_data=[xmldsig.X509Data(
        x509_certificate=xmldsig.X509Certificate(text=base64.b64encode(der).decode()))]),
        encryption_method=[md.EncryptionMethod(algorithm=m) for m in methods])


class SpMetadataDocument:
    def __init__(self, config: SpConfig, clock: Clock, signer: XmlSigner, *, acs_url: str, slo_url: str,
                 validity: dt.timedelta) -> None:
        self._config = config
        self._clock = clock
        self._signer = signer
        self._acs_url = acs_url
        self._slo_url = slo_url
        self._validity = validity
        self._lock = threading.Lock()
        self._cached: tuple[Window, bytes] | None = None

    def document(self) -> bytes:
        return self.current()[0]

    def current(self) -> tuple[bytes, dt.timedelta]:
        """The current document (:mod:`broker.saml.metadata_window`) and how long a cache may keep it."""
        now = self._clock.now()
        current = window(now, self._validity)
        with self._lock:
            if self._cached is None or self._cached[0] != current:
                self._cached = (current, self._build(current.valid_until))
            return self._cached[1], current.cacheable_until - now

    def _build(self, valid_until: dt.datetime) -> bytes:
        cfg = self._config
        descriptor = md.EntityDescriptor(
            entity_id=cfg.entity_id,
            valid_until=format_instant(valid_until),
            spsso_descriptor=[md.SPSSODescriptor(
                protocol_support_enumeration=PROTOCOL,
                authn_requests_signed="true",
                want_assertions_signed="true",
                key_descriptor=[*(key_descriptor("signing", cert) for cert in cfg.signing.published_certificates()),
                                key_descriptor("encryption", cfg.decryption[0].certificate.certificate,
                                               PREFERRED_ENCRYPTION)],
                single_logout_service=[
                    md.SingleLogoutService(binding=HTTP_REDIRECT, location=self._slo_url),
                    md.SingleLogoutService(binding=HTTP_POST, location=self._slo_url),
                ],
                name_id_format=[md.NameIDFormat(text=NAMEID_PERSISTENT), md.NameIDFormat(text=NAMEID_TRANSIENT)],
                assertion_consumer_service=[md.AssertionConsumerService(
                    binding=HTTP_POST, location=self._acs_url, index="0", is_default="true")],
            )],
        )
        root = parse_untrusted(descriptor.to_string(), 1 << 22)
        root.set("ID", content_id(root))
        self._signer.sign(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
