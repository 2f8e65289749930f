"""Which attributes an SP receives, and their values (the per-SP release policy)."""

from __future__ import annotations

from collections.abc import Sequence

from broker.config.schema import MunicipalityConfig
from broker.model import Identity
from broker.saml.attributes import ATTRIBUTES
from broker.saml.response import ReleasedAttribute


def available_attributes(identity: Identity, municipality: MunicipalityConfig,
                         transaction_id: str) -> dict[str, tuple[str, ...]]:
    """Every canonical attribute the broker can state about this login, by name.

    ``orgAffiliation`` (uid@orgnr) is only formed from an HSA-id or opaque id:
    built from a personnummer it would leak the number to SPs that were not
    granted ``personalIdentityNumber``.
    """
    values: dict[str, tuple[str, ...]] = {}
    if identity.kind == "hsa_id":
        values["employeeHsaId"] = (identity.key,)
    elif identity.kind == "personnummer":
        values["personalIdentityNumber"] = (identity.key,)
    if identity.given_name:
        values["givenName"] = (identity.given_name,)
    if identity.surname:
        values["sn"] = (identity.surname,)
    if identity.display_name:
        values["displayName"] = (identity.display_name,)
    values["o"] = (municipality.name.sv,)
    values["organizationIdentifier"] = (municipality.organization_number,)
    if identity.kind != "personnummer":
        values["orgAffiliation"] = (f"{identity.key}@{municipality.organization_number}",)
    values["transactionIdentifier"] = (transaction_id,)
    return values


def release(allowed: Sequence[str], available: dict[str, tuple[str, ...]]) -> list[ReleasedAttribute]:
    """The attributes in ``allowed`` that have values, in the SP's configured order."""
    return [
        ReleasedAttribute(ATTRIBUTES[name].uri, name, available[name])
        for name in allowed
        if name in available
    ]
