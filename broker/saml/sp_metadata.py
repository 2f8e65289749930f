"""The broker's own SP metadata toward municipal IdPs (SAML Metadata 2.0), signed, with a bounded validUntil.

Published at ``/saml/sp/metadata``: the signing key, the current decryption key
(the first in ``sp.decryption``), the ACS (HTTP-POST) and the SLO endpoints.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from saml2 import md, xmldsig

from broker.clock import Clock
from broker.config.schema import SpConfig
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT, NAMEID_PERSISTENT, NAMEID_TRANSIENT
from broker.saml.response import new_id
from broker.saml.xmldsig import XmlSigner
from broker.saml.xmlparse import parse_untrusted
from broker.saml.xmltime import format_instant

PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"


def key_descriptor(use: str, cert: x509.Certificate) -> md.KeyDescriptor:
    """A KeyDescriptor for ``use`` holding ``cert`` (SAML Metadata §2.4.1.1)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return md.KeyDescriptor(use=use, key_info=xmldsig.KeyInfo(x509_data=[xmldsig.X509Data(
        x509_certificate=xmldsig.X509Certificate(text=base64.b64encode(der).decode()))]))


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
        self._cached: tuple[dt.datetime, bytes] | None = None

    def document(self) -> bytes:
        now = self._clock.now()
        with self._lock:
            if self._cached is None or now >= self._cached[0]:
                self._cached = (now + self._validity / 2, self._build(now + self._validity))
            return self._cached[1]

    def _build(self, valid_until: dt.datetime) -> bytes:
        cfg = self._config
        descriptor = md.EntityDescriptor(
            entity_id=cfg.entity_id,
            id=new_id(),
            valid_until=format_instant(valid_until),
            spsso_descriptor=[md.SPSSODescriptor(
                protocol_support_enumeration=PROTOCOL,
                authn_requests_signed="true",
                want_assertions_signed="true",
                key_descriptor=[key_descriptor("signing", cfg.signing.certificate.certificate),
                                key_descriptor("encryption", cfg.decryption[0].certificate.certificate)],
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
        self._signer.sign(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
