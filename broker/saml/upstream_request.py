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

# RequesterIDs passed upstream, in characters: an SP may name up to 32 of 1,024 characters each, which would make
# the Redirect URL to the IdP tens of kilobytes long, past what web servers accept (nginx: 8 KiB per header line)
_MAX_REQUESTER_CHARS = 2048

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
    None when the SP set no limit) and the RequesterIDs on whose behalf it asks (the SP's, then the SP). RequesterID
    is informational (§3.4.1.2): the SP itself is always named, its own RequesterIDs only those first few that fit
    in ``_MAX_REQUESTER_CHARS`` characters."""
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
            requester_id=[samlp.RequesterID(text=requester) for requester in _within_budget(requester_ids)] or None)
    root = parse_untrusted(request.to_string(), 1 << 20)
    message = sender.encode(root, endpoint.binding, endpoint.location, "SAMLRequest", None)
    return UpstreamRequest(request_id, message)


def _within_budget(requester_ids: tuple[str, ...]) -> list[str]:
    """The last of ``requester_ids`` (the SP) and, before it, the first of the others that fit the budget."""
    if not requester_ids:
        return []
    *earlier, last = requester_ids
    budget = _MAX_REQUESTER_CHARS - len(last)
    kept = []
    for requester in earlier:
        if len(requester) > budget:
            break
        kept.append(requester)
        budget -= len(requester)
    return [*kept, last]
