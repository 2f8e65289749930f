"""Canonical attributes and their SAML names (Swedish eID framework, "Attributspecifikation").

The broker emits every attribute with NameFormat ``uri`` and the canonical URI
below; upstream aliases (Sambi/Inera names, ADFS claim URIs) are accepted on
input only (issue: federation) and mapped onto these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class AttributeDef:
    name: str
    uri: str
    aliases: tuple[str, ...] = ()


_DEFS = (
    AttributeDef("personalIdentityNumber", "urn:oid:1.2.752.29.4.13"),
    AttributeDef("employeeHsaId", "urn:oid:1.2.752.29.6.2.1", ("http://sambi.se/attributes/1/employeeHsaId",)),
    AttributeDef("givenName", "urn:oid:2.5.4.42"),
    AttributeDef("sn", "urn:oid:2.5.4.4"),
    AttributeDef("displayName", "urn:oid:2.16.840.1.113730.3.1.241"),
    AttributeDef("o", "urn:oid:2.5.4.10"),
    AttributeDef("ou", "urn:oid:2.5.4.11"),
    AttributeDef("organizationIdentifier", "urn:oid:2.5.4.97"),
    AttributeDef("orgAffiliation", "urn:oid:1.2.752.201.3.1"),
    AttributeDef("transactionIdentifier", "urn:oid:1.2.752.201.3.2"),
)

ATTRIBUTES: Final = {d.name: d for d in _DEFS}
ATTRIBUTE_NAMES: Final = tuple(ATTRIBUTES)
BY_URI: Final = {alias: d for d in _DEFS for alias in (d.uri, *d.aliases)}
