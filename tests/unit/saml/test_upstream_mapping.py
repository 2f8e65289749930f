"""From a municipal IdP's attributes to the broker's (broker.saml.upstream_mapping): the standard URIs and their
Sambi aliases, one value said twice, and two values that differ."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from broker.config.loader import load_settings
from broker.config.schema import UpstreamIdpConfig
from broker.errors import UpstreamRejected
from broker.saml.upstream_mapping import canonical_attributes, identity_of

HSA_OID = "urn:oid:1.2.752.29.6.2.1"
HSA_SAMBI = "http://sambi.se/attributes/1/employeeHsaId"
HSA_ID = "SE2120003005-K001"
TODAY = dt.date(2026, 1, 15)
NAMES = {"urn:oid:2.5.4.42": ("Karin",), "urn:oid:2.5.4.4": ("Kommunsson",)}


def _kommun_c(config_dir: Path) -> UpstreamIdpConfig:
    saml = load_settings(config_dir).municipalities["kommun-c"].config.saml
    assert saml is not None
    return saml


@pytest.mark.parametrize("sent", [
    pytest.param({HSA_OID: (HSA_ID,), HSA_SAMBI: (HSA_ID,)}, id="standard-name-and-sambi-alias"),
    pytest.param({HSA_SAMBI: (HSA_ID, HSA_ID)}, id="one-attribute-the-value-twice"),
    pytest.param({HSA_OID: (HSA_ID,), HSA_SAMBI: (f"\n  {HSA_ID}\t",)}, id="the-alias-pretty-printed"),
])
def test_one_hsa_id_under_both_names_is_one_value(config_dir: Path, sent: dict[str, tuple[str, ...]]) -> None:
    """REFERENCE.md: the Sambi name of employeeHsaId is accepted beside the standard URI, and an IdP serving SPs of
    both kinds sends both. The same HSA-id under both names (or twice in one Attribute) is one value: it was
    counted as two, and the login refused as upstream_identity_invalid ("employeeHsaId has 2 values")."""
    saml = _kommun_c(config_dir)
    mapped = canonical_attributes(saml, {**sent, **NAMES})
    assert mapped["employeeHsaId"] == (HSA_ID,)
    assert identity_of(saml, mapped, "kommun-c", "2120003005", TODAY).key == HSA_ID


def test_values_kept_in_the_order_sent_without_repeats(config_dir: Path) -> None:
    mapped = canonical_attributes(_kommun_c(config_dir), {"urn:oid:2.5.4.11": ("Vård", "IT", "Vård", " IT ")})
    assert mapped["ou"] == ("Vård", "IT")


def test_two_different_hsa_ids_are_still_refused(config_dir: Path) -> None:
    saml = _kommun_c(config_dir)
    mapped = canonical_attributes(saml, {HSA_OID: (HSA_ID,), HSA_SAMBI: ("SE2120003005-K002",), **NAMES})
    with pytest.raises(UpstreamRejected) as refused:
        identity_of(saml, mapped, "kommun-c", "2120003005", TODAY)
    assert refused.value.reason == "upstream_identity_invalid"
    assert "2 values" in refused.value.detail


@pytest.mark.parametrize(("sent", "canonical"), [
    pytest.param("http://sambi.se/attributes/1/employeeHsaId", "employeeHsaId", id="sambi-employeeHsaId"),
    pytest.param("urn:sambi:names:attribute:employeeHsaId", "employeeHsaId", id="inera-earlier-employeeHsaId"),
    pytest.param("http://sambi.se/attributes/1/personalIdentityNumber", "personalIdentityNumber",
                 id="sambi-personalIdentityNumber"),
    pytest.param("http://sambi.se/attributes/1/givenName", "givenName", id="sambi-givenName"),
    pytest.param("http://sambi.se/attributes/1/surname", "sn", id="sambi-surname"),
    pytest.param("http://sambi.se/attributes/1/organizationIdentifier", "organizationIdentifier",
                 id="sambi-organizationIdentifier"),
])
def test_sambi_names_are_understood_without_a_mapping(config_dir: Path, sent: str, canonical: str) -> None:
    """REFERENCE.md: aliases such as Sambi's are accepted on input, the canonical URIs emitted. Only Sambi's name of
    employeeHsaId was known: an IdP of the Sambi federation sending its given name and surname under Sambi's names
    had them dropped, and the login refused as upstream_attribute_missing (kommun-c requires givenName and sn)
    unless the operator mapped each name by hand."""
    assert canonical_attributes(_kommun_c(config_dir), {sent: ("value",)}) == {canonical: ("value",)}


def test_a_sambi_idp_logs_in_with_its_own_names_only(config_dir: Path) -> None:
    saml = _kommun_c(config_dir)
    mapped = canonical_attributes(saml, {"http://sambi.se/attributes/1/employeeHsaId": (HSA_ID,),
                                         "http://sambi.se/attributes/1/givenName": ("Karin",),
                                         "http://sambi.se/attributes/1/surname": ("Kommunsson",)})
    identity = identity_of(saml, mapped, "kommun-c", "2120003005", TODAY)
    assert (identity.key, identity.given_name, identity.surname) == (HSA_ID, "Karin", "Kommunsson")
