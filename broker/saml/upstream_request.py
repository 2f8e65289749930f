"""AuthnRequests to municipal IdPs (SAML Core §3.4.1, Profiles §4.1.4.1), signed, with the SP's
ForceAuthn, IsPassive and (mapped) RequestedAuthnContext passed on."""

from __future__ import annotations

from dataclasses import dataclass

from saml2 import saml, samlp

from broker.clock import Clock
from broker.saml.bindings import HTTP_POST, NAMEID_ENTITY, NAMEID_PERSISTENT, NAMEID_TRANSIENT, NAMEID_UNSPECIFIED
from broker.saml.metadata import IdpMetadata
from broker.saml.outbound import MessageSender, OutboundMessage
from broker.saml.response import new_id
from broker.saml.xmlparse import parse_untrusted
from broker.saml.xmltime import format_instant

_FORMATS = {"persistent": NAMEID_PERSISTENT, "transient": NAMEID_TRANSIENT, "unspecified": NAMEID_UNSPECIFIED}


@dataclass(frozen=True)
class UpstreamRequest:
    request_id: str
    message: OutboundMessage


def build_authn_request(*, sender: MessageSender, clock: Clock, sp_entity_id: str, acs_url: str, idp: IdpMetadata,
                        force_authn: bool, is_passive: bool, nameid_format: str,
                        class_refs: tuple[str, ...], proxy_count: int | None = None,
                        requester_ids: tuple[str, ...] = ()) -> UpstreamRequest:
    """A signed AuthnRequest to ``idp``'s SSO endpoint (HTTP-Redirect preferred), answered over HTTP-POST.

    A proxied request (SAML Core §3.4.1.5.1) carries Scoping: ``proxy_count`` (the SP's ProxyCount less one;
    None when the SP set no limit) and the RequesterIDs on whose behalf it asks (the SP's, then the SP)."""
    endpoint = idp.sso()
    request_id = new_id()
    requested = None
    if class_refs:
        requested = samlp.RequestedAuthnContext(
            authn_context_class_ref=[saml.AuthnContextClassRef(text=ref) for ref in class_refs],
            comparison="exact")
    policy = samlp.NameIDPolicy(allow_create="true")
    if nameid_format != "unspecified":
        policy.format = _FORMATS[nameid_format]
    request = samlp.AuthnRequest(
        id=request_id,
        version="2.0",
        issue_instant=format_instant(clock.now()),
        destination=endpoint.location,
        protocol_binding=HTTP_POST,
        assertion_consumer_service_url=acs_url,
        issuer=saml.Issuer(text=sp_entity_id, format=NAMEID_ENTITY),
        name_id_policy=policy,
        force_authn="true" if force_authn else None,
        is_passive="true" if is_passive else None,
        requested_authn_context=requested,
    )
    if proxy_count is not None or requester_ids:
        request.scoping = samlp.Scoping(
            proxy_count=None if proxy_count is None else str(proxy_count),
            requester_id=[samlp.RequesterID(text=requester) for requester in requester_ids] or None)
    root = parse_untrusted(request.to_string(), 1 << 20)
    message = sender.encode(root, endpoint.binding, endpoint.location, "SAMLRequest", None)
    return UpstreamRequest(request_id, message)
