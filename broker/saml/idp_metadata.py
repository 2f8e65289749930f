"""The broker's own IdP metadata (SAML Metadata 2.0), signed and with a bounded validUntil.

Published at ``/saml/idp/metadata``. Built anew every minute, its validUntil
counted from the minute's start, so that every instance serves the same
document (:mod:`broker.saml.metadata_window`) and none serves expired metadata. The
assurance levels the broker can assert are listed as the
``assurance-certification`` entity attribute (SAML V2.0 Identity Assurance
Profiles), from the LoAs the municipalities' policies map to.
"""

from __future__ import annotations

import datetime as dt
import threading

from lxml import etree
from saml2 import md, saml
from saml2.extension import mdattr

from broker.clock import Clock
from broker.config.loader import Settings
from broker.config.schema import MunicipalityConfig
from broker.model import KNOWN_LOAS
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT, NAMEID_PERSISTENT, NAMEID_TRANSIENT
from broker.saml.metadata_window import Window, content_id, window
from broker.saml.sp_metadata import key_descriptor
from broker.saml.xmldsig import XmlSigner
from broker.saml.xmlparse import parse_untrusted
from broker.saml.xmltime import format_instant

PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
ASSURANCE_CERTIFICATION = "urn:oasis:names:tc:SAML:attribute:assurance-certification"


class IdpMetadata:
    def __init__(self, settings: Settings, clock: Clock, signer: XmlSigner, *, sso_url: str, slo_url: str) -> None:
        self._settings = settings
        self._clock = clock
        self._signer = signer
        self._sso_url = sso_url
        self._slo_url = slo_url
        self._lock = threading.Lock()
        self._cached: tuple[Window, bytes] | None = None

    def document(self) -> bytes:
        """The current metadata document (built once per window, :mod:`broker.saml.metadata_window`)."""
        return self.current()[0]

    def current(self) -> tuple[bytes, dt.timedelta]:
        """The current metadata document and how long a cache may keep it: until half its validity has passed,
        so that a copy kept no longer than that is still half its validity from validUntil."""
        now = self._clock.now()
        current = window(now, self._settings.broker.idp.metadata_validity.timedelta)
        with self._lock:
            if self._cached is None or self._cached[0] != current:
                self._cached = (current, self._build(current.valid_until))
            return self._cached[1], current.cacheable_until - now

    def _build(self, valid_until: dt.datetime) -> bytes:
        idp = self._settings.broker.idp
        loas = sorted({KNOWN_LOAS[loa] for m in self._settings.municipalities.values() for loa in _loas(m.config)},
                      key=lambda loa: (loa.rank, loa.uri))
        extensions = None
        if loas:
            extensions = md.Extensions(extension_elements=[])
            attrs = mdattr.EntityAttributes(attribute=[saml.Attribute(
                name=ASSURANCE_CERTIFICATION, name_format="urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
                attribute_value=[_value(loa.uri) for loa in loas])])
            extensions.add_extension_element(attrs)
        org = idp.organization
        descriptor = md.EntityDescriptor(
            entity_id=idp.entity_id,
            valid_until=format_instant(valid_until),
            extensions=extensions,
            idpsso_descriptor=[md.IDPSSODescriptor(
                protocol_support_enumeration=PROTOCOL,
                # Metadata §2.4.3: the requirement SPs read to decide whether to sign (python3-saml lets the IdP's
                # metadata decide). One document serves every SP, so it says "true" when any SP must sign; an SP
                # that need not sign may still sign (signatures are verified whenever present), or keep its own
                # setting (a python3-saml SP without a key must not take this one from the metadata)
                want_authn_requests_signed="true" if any(
                    sp.requires_signed_requests for sp in self._settings.service_providers.values()) else "false",
                key_descriptor=[key_descriptor("signing", cert) for cert in idp.signing.published_certificates()],
                single_logout_service=[
                    md.SingleLogoutService(binding=HTTP_REDIRECT, location=self._slo_url),
                    md.SingleLogoutService(binding=HTTP_POST, location=self._slo_url),
                ],
                name_id_format=[md.NameIDFormat(text=NAMEID_PERSISTENT), md.NameIDFormat(text=NAMEID_TRANSIENT)],
                single_sign_on_service=[
                    md.SingleSignOnService(binding=HTTP_REDIRECT, location=self._sso_url),
                    md.SingleSignOnService(binding=HTTP_POST, location=self._sso_url),
                ],
            )],
            organization=md.Organization(
                organization_name=[md.OrganizationName(text=org.name.sv, lang="sv"),
                                   md.OrganizationName(text=org.name.en, lang="en")],
                organization_display_name=[md.OrganizationDisplayName(text=org.name.sv, lang="sv"),
                                           md.OrganizationDisplayName(text=org.name.en, lang="en")],
                organization_url=[md.OrganizationURL(text=org.url, lang="sv")],
            ),
            contact_person=[md.ContactPerson(contact_type="technical",
                                             email_address=[md.EmailAddress(text="mailto:" + org.technical_contact)])],
        )
        root = parse_untrusted(descriptor.to_string(), 1 << 24)
        root.set("ID", content_id(root))
        if idp.sign_metadata:
            self._signer.sign(root)  # Metadata §3.1: ds:Signature is the first child
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _value(text: str) -> saml.AttributeValue:
    av = saml.AttributeValue()
    av.set_text(text)
    return av


def _loas(config: MunicipalityConfig) -> list[str]:
    """The LoAs a municipality's logins can reach: its certificate policies' or its IdP's contexts'."""
    if config.certificate is not None:
        return [p.loa for p in config.certificate.policies]
    if config.saml is not None:
        return [c.loa for c in config.saml.authn_contexts]
    return []
