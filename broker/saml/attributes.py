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


# Sambi's attribute names (http://sambi.se/attributes/1/<friendlyName>, each defined by reference to the OID beside
# it) are what IdPs in the Sambi federation and Inera's send; urn:sambi:names:attribute:employeeHsaId is the name
# Inera's earlier IdP sent the HSA-id under
_SAMBI = "http://sambi.se/attributes/1/"

_DEFS = (
    AttributeDef("personalIdentityNumber", "urn:oid:1.2.752.29.4.13", (_SAMBI + "personalIdentityNumber",)),
    AttributeDef("employeeHsaId", "urn:oid:1.2.752.29.6.2.1",
                 (_SAMBI + "employeeHsaId", "urn:sambi:names:attribute:employeeHsaId")),
    AttributeDef("givenName", "urn:oid:2.5.4.42", (_SAMBI + "givenName",)),
    AttributeDef("sn", "urn:oid:2.5.4.4", (_SAMBI + "surname",)),
    AttributeDef("displayName", "urn:oid:2.16.840.1.113730.3.1.241"),
    AttributeDef("o", "urn:oid:2.5.4.10"),
    AttributeDef("ou", "urn:oid:2.5.4.11"),
    AttributeDef("organizationIdentifier", "urn:oid:2.5.4.97", (_SAMBI + "organizationIdentifier",)),
    AttributeDef("orgAffiliation", "urn:oid:1.2.752.201.3.1"),
    AttributeDef("transactionIdentifier", "urn:oid:1.2.752.201.3.2"),
)

ATTRIBUTES: Final = {d.name: d for d in _DEFS}
ATTRIBUTE_NAMES: Final = tuple(ATTRIBUTES)
BY_URI: Final = {alias: d for d in _DEFS for alias in (d.uri, *d.aliases)}
