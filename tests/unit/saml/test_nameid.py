"""Persistent NameIDs (SAML Core §8.3.7): one pseudonym per person and SP, never shared by two people."""

from __future__ import annotations

import pytest

from broker.model import Identity
from broker.saml.bindings import NAMEID_PERSISTENT, NAMEID_TRANSIENT
from broker.saml.nameid import NameIdIssuer

SP, OTHER_SP = "https://sp.example/sp", "https://other-sp.example/sp"
ISSUER = NameIdIssuer(b"k" * 32)


def _id(kind: str, key: str, municipality: str) -> Identity:
    return Identity(kind=kind, key=key, municipality_id=municipality)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "key"), [
    pytest.param("hsa_id", "SE2120001009-anna", id="hsa-id"),
    pytest.param("personnummer", "191212121212", id="personnummer"),
])
def test_a_national_identifier_is_one_person_whichever_municipality_logs_them_in(kind: str, key: str) -> None:
    """The same HSA-id or personnummer through a certificate of one municipality and the IdP of another is the
    same person: the same pseudonym."""
    assert ISSUER.persistent(SP, _id(kind, key, "kommun-a")) == ISSUER.persistent(SP, _id(kind, key, "kommun-c"))


def test_an_opaque_identifier_is_the_municipalitys_own_name() -> None:
    """"anna" at two municipalities is two people: two pseudonyms."""
    at_a = ISSUER.persistent(SP, _id("opaque", "anna", "kommun-a"))
    assert at_a != ISSUER.persistent(SP, _id("opaque", "anna", "kommun-c"))
    assert at_a == ISSUER.persistent(SP, _id("opaque", "anna", "kommun-a"))


@pytest.mark.parametrize(("one", "other"), [
    pytest.param(_id("hsa_id", "SE2120001009-anna", "kommun-a"), _id("hsa_id", "SE2120001009-bertil", "kommun-a"),
                 id="another-person"),
    pytest.param(_id("hsa_id", "191212121212", "kommun-a"), _id("personnummer", "191212121212", "kommun-a"),
                 id="the-same-value-as-another-kind"),
])
def test_different_identities_get_different_pseudonyms(one: Identity, other: Identity) -> None:
    assert ISSUER.persistent(SP, one) != ISSUER.persistent(SP, other)


def test_pseudonyms_differ_between_sps_and_keys_and_reveal_nothing() -> None:
    anna = _id("hsa_id", "SE2120001009-anna", "kommun-a")
    pseudonym = ISSUER.persistent(SP, anna)
    assert pseudonym != ISSUER.persistent(OTHER_SP, anna)
    assert pseudonym != NameIdIssuer(b"j" * 32).persistent(SP, anna)
    assert "anna" not in pseudonym
    assert len(pseudonym) == 43  # 256 bits, base64url without padding


def test_issue_by_format() -> None:
    anna = _id("hsa_id", "SE2120001009-anna", "kommun-a")
    assert ISSUER.issue(NAMEID_PERSISTENT, SP, anna) == ISSUER.persistent(SP, anna)
    transient = ISSUER.issue(NAMEID_TRANSIENT, SP, anna)
    assert transient.startswith("_")
    assert transient != ISSUER.issue(NAMEID_TRANSIENT, SP, anna)
    with pytest.raises(ValueError, match="unsupported NameID format"):
        ISSUER.issue("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress", SP, anna)
