"""From what a municipal IdP says to what the broker asserts: attribute names, identity, assurance level."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping

from broker.config.schema import UpstreamIdpConfig
from broker.errors import UpstreamRejected
from broker.model import KNOWN_LOAS, Identity, Loa, satisfies
from broker.pki.identity import IDENTITY_SPACE, check_personnummer, value_shape
from broker.saml.attributes import BY_URI


def configuration_digest(config: UpstreamIdpConfig, organization_number: str) -> str:
    """A digest of what decides who a municipal IdP's answer logs in and at what level: the IdP, the identity
    rule, the attribute mapping, the authentication contexts and their LoA, the organisation number. A session
    from the IdP keeps the digest it was judged under (:attr:`broker.session.sessions.SsoSession.trust`); when a
    reload changes it, the session answers no SP at its old judgement and the IdP is asked again."""
    described = {
        "idp": config.entity_id,
        "identity": [config.identity.attribute, config.identity.type, config.identity.pattern],
        "attributes": sorted([m.upstream, m.canonical] for m in config.attributes),
        "authn_contexts": sorted([m.upstream, m.loa] for m in config.authn_contexts),
        "organization_number": organization_number,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def canonical_attributes(config: UpstreamIdpConfig,
                         upstream: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Upstream attribute names (the municipality's mapping first, then the standard URIs and their Sambi
    aliases) to the broker's names. Names nobody maps are dropped.

    Each value is read without the XML white space around it (as the identity is), and a value said again, under
    another name that maps to the same attribute (the standard URI beside its Sambi alias, as an IdP serving SPs of
    both kinds sends it) or twice in one Attribute, is one value: a multi-valued attribute is a set of values (SAML
    Core §2.7.3.1 gives repeats no meaning), and counted twice, one HSA-id would be refused as two."""
    mapping = {m.upstream: m.canonical for m in config.attributes}
    out: dict[str, tuple[str, ...]] = {}
    for name, values in upstream.items():
        canonical = mapping.get(name) or (BY_URI[name].name if name in BY_URI else None)
        if canonical is None:
            continue
        # blank values say nothing (a claim rule with nothing to fill in): dropped, so that neither a required
        # attribute nor the first value released can be one
        present = tuple(trimmed for v in values if (trimmed := v.strip(IDENTITY_SPACE)))
        if present:
            out[canonical] = tuple(dict.fromkeys(out.get(canonical, ()) + present))  # in order sent, once each
    return out


def own_hsa_id_pattern(organization_number: str) -> str:
    """HSA-ids the municipality itself issues: ``SE`` + its organisation number + ``-`` + the local part, 1 to 18
    letters or digits (at most 31 characters in all, as :data:`broker.pki.identity.DEFAULT_HSA_ID_PATTERN`)."""
    return f"SE{re.escape(organization_number)}-[A-Za-z0-9]{{1,18}}"


def identity_of(config: UpstreamIdpConfig, attributes: Mapping[str, tuple[str, ...]],
                municipality_id: str, organization_number: str, today: dt.date) -> Identity:
    """The user, by the municipality's identity rule; every required attribute must be there (``today``: a
    personnummer born after it is refused).

    An HSA-id names one person nationally, so a municipality's IdP may only assert the municipality's own
    (:func:`own_hsa_id_pattern`) unless its configuration gives another pattern: otherwise one municipality's
    IdP (misconfigured, or passing on an attribute its local administrators can edit) could assert another
    municipality's staff, and the SP would get that person's persistent NameID and HSA-id."""
    rule = config.identity
    for name in (rule.attribute, *config.required_attributes):
        if not attributes.get(name):
            raise UpstreamRejected("upstream_attribute_missing", f"the IdP sent no {name}",
                                   params={"attribute": name})
    values = attributes[rule.attribute]
    if len(values) != 1:
        raise UpstreamRejected("upstream_identity_invalid", f"{rule.attribute} has {len(values)} values")
    key = values[0].strip(IDENTITY_SPACE)
    if rule.type == "personnummer":
        try:
            check_personnummer(key, today)
        except ValueError as exc:
            raise UpstreamRejected("upstream_identity_invalid", f"{rule.attribute}: {exc}") from None
    else:
        pattern = rule.pattern or own_hsa_id_pattern(organization_number)
        if not re.fullmatch(pattern, key, re.ASCII):
            raise UpstreamRejected("upstream_identity_invalid",  # not the value: it may be a personnummer
                                   f"{rule.attribute} ({value_shape(key)}) does not match the {rule.type} "
                                   f"pattern {pattern}")

    def first(name: str) -> str | None:
        found = attributes.get(name)
        return found[0] if found else None

    given, surname = first("givenName"), first("sn")
    display = first("displayName") or (" ".join(p for p in (given, surname) if p) or None)
    return Identity(kind=rule.type, key=key, municipality_id=municipality_id, given_name=given, surname=surname,
                    display_name=display)


def loa_of(config: UpstreamIdpConfig, class_ref: str | None) -> Loa:
    """The LoA of the AuthnContextClassRef the IdP returned, by the municipality's mapping only."""
    for mapping in config.authn_contexts:
        if mapping.upstream == class_ref:
            return KNOWN_LOAS[mapping.loa]
    raise UpstreamRejected("upstream_authn_context_unknown", f"AuthnContextClassRef {class_ref!r} is not mapped")


def upstream_class_refs(config: UpstreamIdpConfig, requested: tuple[str, ...], comparison: str,
                        minimum: Loa | None = None) -> tuple[str, ...] | None:
    """The IdP's ClassRefs that meet the SP's RequestedAuthnContext and its ``minimum`` level (``minimum_loa``):
    () when every ClassRef the IdP may answer with does (the IdP decides), None when none of them can (the SP
    gets NoAuthnContext at once)."""
    def meets(loa: Loa) -> bool:
        return ((not requested or satisfies(loa, requested, comparison))
                and (minimum is None or loa.rank >= minimum.rank))

    refs = tuple(m.upstream for m in config.authn_contexts if meets(KNOWN_LOAS[m.loa]))
    if not refs:
        return None
    if not requested and len(refs) == len(config.authn_contexts):
        return ()  # nothing to ask for: whatever the IdP answers will do
    return refs
