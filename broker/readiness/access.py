"""Will any regional service provider let the municipality's users in? (check ``access.service_providers``)

The certificate chain, the endpoint and revocation can all be right and every login still end at the SP's rules
(:meth:`broker.flow.answers.Answers.check_access`): no SP lists the municipality (``municipality_not_allowed``),
an onboarding municipality meets no SP that accepts onboarding users (``municipality_not_active``: nobody can try
a real login before the switch), or an SP asks for a higher assurance level than the municipality's cards or IdP
ever give (``loa_insufficient``); a suspended municipality, named in the run, refuses them all. All of it is in
the configuration, so it is checked offline.
"""

from __future__ import annotations

from broker.config.loader import Municipality, ServiceProvider, Settings
from broker.model import KNOWN_LOAS, Loa
from broker.readiness.model import Check

_ID = "access.service_providers"


def highest_loa(municipality: Municipality) -> Loa | None:
    """The highest assurance level the municipality's logins can give: its certificate policies' LoAs, or those of
    its IdP's AuthnContextClassRefs."""
    config = municipality.config
    names = [p.loa for p in config.certificate.policies] if config.certificate is not None else []
    if config.saml is not None:
        names += [m.loa for m in config.saml.authn_contexts]
    levels = [KNOWN_LOAS[name] for name in names]
    return max(levels, key=lambda loa: loa.rank, default=None)


def access_check(municipality: Municipality, settings: Settings) -> Check:
    mid = municipality.id
    if municipality.status == "suspended":  # asked about by name: a run over all leaves it out
        return Check(_ID, "fail", "the municipality is suspended",
                     f"{mid} has status: suspended: every login of its users is refused (municipality_suspended)",
                     "Set status: onboarding (to try logins at an SP with accept_onboarding) or active for go-live.")
    listing = [sp for sp in settings.service_providers.values() if mid in sp.config.municipalities]
    if not listing:
        return Check(_ID, "fail", "no service provider accepts its users",
                     f"no service-providers/*.yaml lists {mid} under municipalities: its users are refused "
                     "everywhere (municipality_not_allowed)",
                     f"Add {mid} to the municipalities of each SP its staff will use.")
    best = highest_loa(municipality)
    too_high = [sp for sp in listing if sp.config.minimum_loa is not None and best is not None
                and KNOWN_LOAS[sp.config.minimum_loa].rank > best.rank]
    usable = [sp for sp in listing if sp not in too_high]
    level = best.name if best is not None else "no level"
    if not usable:
        return Check(_ID, "fail", "every service provider asks for more than its logins give",
                     f"its logins give at most {level}; " + _minimums(too_high) + " (loa_insufficient)",
                     "Map a policy OID (or the IdP's AuthnContextClassRef) that gives the level the SPs require, "
                     "or lower the SPs' minimum_loa if that is what was agreed.")
    if municipality.status == "onboarding" and not any(sp.config.accept_onboarding for sp in usable):
        return Check(_ID, "warn", "no service provider lets onboarding users in",
                     f"{mid} is onboarding, and none of {_names(usable)} has accept_onboarding: no real login can "
                     "be tried before status: active (municipality_not_active)",
                     "Set accept_onboarding: true on a test or acceptance SP, and log in there before go-live.")
    if too_high:
        return Check(_ID, "warn", "some service providers ask for more than its logins give",
                     f"accepted by {_names(usable)}; its logins give at most {level}, but " + _minimums(too_high)
                     + " (loa_insufficient)",
                     "Map a policy OID that gives the level those SPs require, or take the municipality off them.")
    return Check(_ID, "pass", "service providers accept its users",
                 f"accepted by {_names(usable)} (its logins give up to {level})")


def _names(sps: list[ServiceProvider]) -> str:
    return ", ".join(sp.id for sp in sps)


def _minimums(sps: list[ServiceProvider]) -> str:
    return ", ".join(f"{sp.id} requires {sp.config.minimum_loa}" for sp in sps)
