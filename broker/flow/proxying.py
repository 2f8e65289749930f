"""The SP's and the municipal IdP's limits on proxying (SAML Core §3.4.1.5.1, §2.5.1.6): the broker proxies when a
municipality logs in through its own IdP, and its assertion is then issued on the strength of that IdP's."""

from __future__ import annotations

from collections.abc import Mapping

from broker.errors import SamlRejected, UpstreamRejected
from broker.model import ProxyRestriction
from broker.saml.authnrequest import AuthnRequestInfo


def proxy_count_exceeded(info: AuthnRequestInfo) -> SamlRejected:
    """The refusal of a login that would be proxied to a municipal IdP when the SP allows no proxying
    (Scoping ProxyCount="0"; SAML Core §3.4.1.5.1: a Responder / ProxyCountExceeded Response)."""
    return SamlRejected("proxy_count_exceeded", "Scoping ProxyCount=\"0\": the login would go through the "
                        "municipality's own IdP", reply_to=info.reply_target())


def check_proxy_restriction(sp_entity_id: str, upstream: Mapping[str, str] | None) -> ProxyRestriction | None:
    """The ProxyRestriction the broker's assertion for ``sp_entity_id`` must carry, from the municipal IdP's
    assertion that the session rests on (its ``upstream`` record), or None when it had none. Raises
    ``upstream_proxy_restricted`` when that restriction names audiences and the SP is not one of them (SAML Core
    §2.5.1.6: assertions issued on its strength go only to those audiences)."""
    restriction = ProxyRestriction.from_fields(upstream)
    if restriction is None:
        return None
    if not restriction.allows(sp_entity_id):
        raise UpstreamRejected("upstream_proxy_restricted", f"the IdP's ProxyRestriction allows only "
                               f"{list(restriction.audiences)[:5]}, not {sp_entity_id}")
    return restriction.onward()


def authenticating_authorities(upstream: Mapping[str, str] | None) -> tuple[str, ...]:
    """The AuthenticatingAuthority entries of the broker's assertion for a session resting on a municipal IdP's
    (SAML Core §3.4.1.5.1): those of the IdP's assertion, then the IdP itself; none for a certificate login."""
    if not upstream or not upstream.get("idp"):
        return ()
    earlier = upstream.get("authorities", "")
    names = earlier.split("\n") if earlier else []
    if not names or names[-1] != upstream["idp"]:  # an IdP may name itself last (pysaml2 does): once is enough
        names.append(upstream["idp"])
    return tuple(names)
