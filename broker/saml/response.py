"""Building signed SAML Responses (SAML Core §2.3.3, §3.2.2, §3.3.3; Profiles §4.1.4.2).

The XML object model is pysaml2's; signing is :class:`XmlSigner` (RSA-SHA256
with SHA-256 digests, asserted by tests on the produced XML, since pysaml2's own
signing silently falls back to SHA-1 when configured in the wrong section).
The Assertion is always signed; the Response too when the SP asks for it.
Times come from the injected clock.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree
from saml2 import saml, samlp

from broker.clock import Clock
from broker.model import ReplyTarget
from broker.saml.authnrequest import NS
from broker.saml.bindings import (
    ATTRNAME_URI,
    CM_BEARER,
    NAMEID_ENTITY,
    STATUS_REQUESTER,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
)
from broker.saml.xmldsig import XmlSigner
from broker.saml.xmlparse import parse_untrusted
from broker.saml.xmltime import format_instant

# Second-level codes whose top-level code is Requester (the SP's fault); others: Responder.
_REQUESTER_FAULTS = frozenset({
    "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy",
    "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding",
    "urn:oasis:names:tc:SAML:2.0:status:RequestUnsupported",
    "urn:oasis:names:tc:SAML:2.0:status:RequestDenied",
})


def new_id() -> str:
    """An xs:ID with 160 random bits (SAML Core §1.3.4: IDs must be unguessable)."""
    return "_" + secrets.token_hex(20)


@dataclass(frozen=True)
class ReleasedAttribute:
    uri: str
    friendly_name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class AssertionContent:
    """Everything the assertion states about the user and the login."""

    name_id: str
    name_id_format: str
    loa_uri: str
    authn_instant: dt.datetime
    session_index: str
    session_not_on_or_after: dt.datetime
    attributes: Sequence[ReleasedAttribute]


class ResponseBuilder:
    """Issues Responses as the broker's IdP entity."""

    def __init__(self, entity_id: str, signer: XmlSigner, clock: Clock, *,
                 assertion_lifetime: dt.timedelta, clock_skew: dt.timedelta) -> None:
        self._entity_id = entity_id
        self._signer = signer
        self._clock = clock
        self._lifetime = assertion_lifetime
        self._skew = clock_skew

    def _issuer(self) -> saml.Issuer:
        return saml.Issuer(text=self._entity_id, format=NAMEID_ENTITY)

    def success(self, target: ReplyTarget, content: AssertionContent, *, sign_response: bool) -> bytes:
        """A Response with one signed bearer Assertion for ``target`` (Profiles §4.1.4.2)."""
        now = self._clock.now()
        not_on_or_after = format_instant(now + self._lifetime)
        # NotBefore slightly in the past so that an SP whose clock lags a little accepts it
        not_before = format_instant(now - self._skew)
        issued = format_instant(now)
        statements = []
        if content.attributes:
            statements.append(saml.AttributeStatement(attribute=[
                saml.Attribute(
                    name=a.uri,
                    name_format=ATTRNAME_URI,
                    friendly_name=a.friendly_name,
                    attribute_value=[_string_value(v) for v in a.values],
                )
                for a in content.attributes
            ]))
        assertion = saml.Assertion(
            id=new_id(),
            version="2.0",
            issue_instant=issued,
            issuer=self._issuer(),
            subject=saml.Subject(
                name_id=saml.NameID(
                    text=content.name_id,
                    format=content.name_id_format,
                    name_qualifier=self._entity_id,
                    sp_name_qualifier=target.sp_entity_id,
                ),
                subject_confirmation=[saml.SubjectConfirmation(
                    method=CM_BEARER,
                    subject_confirmation_data=saml.SubjectConfirmationData(
                        in_response_to=target.in_response_to or None,  # empty: unsolicited (Profiles §4.1.5)
                        not_on_or_after=not_on_or_after,
                        recipient=target.acs_url,
                    ),
                )],
            ),
            conditions=saml.Conditions(
                not_before=not_before,
                not_on_or_after=not_on_or_after,
                audience_restriction=[saml.AudienceRestriction(audience=[saml.Audience(text=target.sp_entity_id)])],
            ),
            authn_statement=[saml.AuthnStatement(
                authn_instant=format_instant(content.authn_instant),
                session_index=content.session_index,
                session_not_on_or_after=format_instant(content.session_not_on_or_after),
                authn_context=saml.AuthnContext(
                    authn_context_class_ref=saml.AuthnContextClassRef(text=content.loa_uri)
                ),
            )],
            attribute_statement=statements,
        )
        response = samlp.Response(
            id=new_id(),
            version="2.0",
            issue_instant=issued,
            destination=target.acs_url,
            in_response_to=target.in_response_to or None,  # empty: unsolicited (Profiles §4.1.5)
            issuer=self._issuer(),
            status=samlp.Status(status_code=samlp.StatusCode(value=STATUS_SUCCESS)),
            assertion=assertion,
        )
        root = self._tree(response)
        assertion_el = root.find("saml:Assertion", NS)
        assert assertion_el is not None
        self._sign(assertion_el)
        if sign_response:
            self._sign(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def error(self, target: ReplyTarget, status: str, message: str | None = None) -> bytes:
        """A signed Response without assertion, carrying ``status`` (SAML Core §3.2.2.2)."""
        now = self._clock.now()
        top = STATUS_REQUESTER if status in _REQUESTER_FAULTS else STATUS_RESPONDER
        response = samlp.Response(
            id=new_id(),
            version="2.0",
            issue_instant=format_instant(now),
            destination=target.acs_url,
            in_response_to=target.in_response_to or None,  # empty: unsolicited (Profiles §4.1.5)
            issuer=self._issuer(),
            status=samlp.Status(
                status_code=samlp.StatusCode(value=top, status_code=samlp.StatusCode(value=status)),
                status_message=samlp.StatusMessage(text=message) if message else None,
            ),
        )
        root = self._tree(response)
        self._sign(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def _tree(self, element: saml.SamlBase) -> etree._Element:
        # pysaml2 serialises through ElementTree; re-parse our own output into lxml for signing
        return parse_untrusted(element.to_string(), 1 << 24)

    def _sign(self, element: etree._Element) -> None:
        issuer = element.find("saml:Issuer", NS)
        self._signer.sign(element, after=issuer)


def _string_value(value: str) -> saml.AttributeValue:
    av = saml.AttributeValue()
    av.set_text(str(value))  # plain str: pysaml2 derives xsi:type from the exact Python type
    return av
