"""Single logout initiated by a service provider (SAML Core §3.7, Profiles §4.4).

The broker accepts a LogoutRequest only when it is signed by the SP (Profiles
§4.4.4.1 requires the requester to authenticate itself), addressed to the
broker, and names a NameID; it answers with a signed LogoutResponse to the
SP's SingleLogoutService. Propagation to the other SPs of the session comes
with the federation work; until then the response is Success when the
broker's own session has ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from saml2 import saml, samlp

from broker.clock import Clock
from broker.config.loader import ServiceProvider, Settings
from broker.config.values import SigningKey
from broker.errors import SamlRejected
from broker.saml.authnrequest import NS, SAMLP
from broker.saml.bindings import (
    HTTP_POST,
    HTTP_REDIRECT,
    NAMEID_ENTITY,
    STATUS_REQUESTER,
    InboundMessage,
    decode,
    verify_query_signature,
)
from broker.saml.outbound import MessageSender, OutboundMessage
from broker.saml.response import new_id
from broker.saml.xmldsig import SignatureMissing, SignatureRejected, XmlSigner, XmlVerifier
from broker.saml.xmlparse import UnsafeXml, parse_untrusted
from broker.saml.xmltime import format_instant, parse_instant

UNKNOWN_PRINCIPAL = "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal"


@dataclass(frozen=True)
class LogoutRequestInfo:
    request_id: str
    sp: ServiceProvider
    name_id: str
    name_id_format: str | None
    session_indexes: tuple[str, ...]
    relay_state: str | None


class LogoutHandler:
    def __init__(self, settings: Settings, clock: Clock, slo_url: str, signer: XmlSigner,
                 signing_key: SigningKey) -> None:
        self._settings = settings
        self._clock = clock
        self._slo_url = slo_url
        self._sender = MessageSender(signer, signing_key)
        self._entity_id = settings.broker.idp.entity_id
        self._max_bytes = settings.broker.idp.max_message_bytes
        self._skew = settings.broker.idp.clock_skew.timedelta
        self._max_age = settings.broker.idp.request_max_age.timedelta
        self._verifiers = {sp.entity_id: XmlVerifier(sp.metadata.signing_certificates)
                           for sp in settings.service_providers.values()}

    def parse(self, message: InboundMessage) -> LogoutRequestInfo:
        xml = decode(message, self._max_bytes)
        try:
            root = parse_untrusted(xml, self._max_bytes)
        except UnsafeXml as exc:
            raise SamlRejected("logout_request_invalid", str(exc)) from None
        if root.tag != f"{{{SAMLP}}}LogoutRequest":
            raise SamlRejected("logout_request_invalid", f"expected a LogoutRequest, got {root.tag}")
        issuer_el = root.find("saml:Issuer", NS)
        issuer = (issuer_el.text or "").strip() if issuer_el is not None else ""
        sp = self._settings.sp_by_entity_id(issuer)
        if sp is None:
            raise SamlRejected("sp_unknown", f"Issuer {issuer!r} is not a registered service provider")
        if message.binding == HTTP_REDIRECT:
            if message.signature is None:
                raise SamlRejected("logout_request_invalid", "the LogoutRequest is not signed")
            verify_query_signature(message, sp.metadata.signing_certificates)
        else:
            try:
                self._verifiers[sp.entity_id].verify(root)
            except SignatureMissing:
                raise SamlRejected("logout_request_invalid", "the LogoutRequest is not signed") from None
            except SignatureRejected as exc:
                code = "saml_algorithm_not_allowed" if exc.algorithm else "saml_signature_invalid"
                raise SamlRejected(code, str(exc)) from None
        if root.get("Version") != "2.0":
            raise SamlRejected("saml_version_unsupported", f"Version {root.get('Version')!r}")
        if root.get("Destination") != self._slo_url:
            raise SamlRejected("saml_destination_mismatch",
                               f"Destination {root.get('Destination')!r}, expected {self._slo_url}")
        request_id = root.get("ID")
        if not request_id:
            raise SamlRejected("logout_request_invalid", "no ID")
        try:
            issued = parse_instant(root.get("IssueInstant") or "")
        except ValueError as exc:
            raise SamlRejected("logout_request_invalid", f"IssueInstant: {exc}") from None
        now = self._clock.now()
        if issued > now + self._skew or issued < now - self._max_age - self._skew:
            raise SamlRejected("saml_request_stale", f"IssueInstant {issued.isoformat()}")
        not_on_or_after = root.get("NotOnOrAfter")
        if not_on_or_after is not None:
            try:
                if now - self._skew >= parse_instant(not_on_or_after):
                    raise SamlRejected("saml_request_stale", f"NotOnOrAfter {not_on_or_after}")
            except ValueError:
                raise SamlRejected("logout_request_invalid", "NotOnOrAfter is not a dateTime") from None
        name_id_el = root.find("saml:NameID", NS)
        if name_id_el is None or not (name_id_el.text or "").strip():
            raise SamlRejected("logout_request_invalid", "no NameID (encrypted NameIDs are not supported)")
        return LogoutRequestInfo(
            request_id=request_id,
            sp=sp,
            name_id=(name_id_el.text or "").strip(),
            name_id_format=name_id_el.get("Format"),
            session_indexes=tuple((e.text or "").strip() for e in root.findall("samlp:SessionIndex", NS)),
            relay_state=message.relay_state,
        )

    def response(self, request: LogoutRequestInfo, status: str, sub_status: str | None = None) -> OutboundMessage:
        """A signed LogoutResponse to the SP's SingleLogoutService, POST preferred."""
        endpoint = request.sp.metadata.slo()
        if endpoint is None:
            raise SamlRejected("logout_request_invalid", "the SP's metadata has no SingleLogoutService")
        url = endpoint.response_location or endpoint.location
        code = samlp.StatusCode(value=status)
        if sub_status:
            code = samlp.StatusCode(value=STATUS_REQUESTER, status_code=samlp.StatusCode(value=sub_status))
        message = samlp.LogoutResponse(
            id=new_id(),
            version="2.0",
            issue_instant=format_instant(self._clock.now()),
            destination=url,
            in_response_to=request.request_id,
            issuer=saml.Issuer(text=self._entity_id, format=NAMEID_ENTITY),
            status=samlp.Status(status_code=code),
        )
        root = parse_untrusted(message.to_string(), 1 << 20)
        binding = HTTP_POST if endpoint.binding == HTTP_POST else HTTP_REDIRECT
        return self._sender.encode(root, binding, url, "SAMLResponse", request.relay_state)
