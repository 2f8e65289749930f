"""A CA that issues to several municipalities (Efos, SITHS e-id): the certificate names its municipality's
organisation number where each municipality's ``certificate.organization_from`` says (the HSA-id's prefix or
the subject's organizationIdentifier), and is refused when it names none of theirs (``organization_mismatch``).
A municipality that says where its certificates name it gets only those, even from a CA of its own."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography import x509

from broker.config.schema import IdentityRule
from broker.config.values import Regex
from broker.errors import CertificateRejected
from broker.pki.identity import named_organization
from broker.pki.truststore import TrustDomain, TrustIndex
from tests.factories.pki import Hierarchy
from tests.factories.pki_cases import NOW, validator, with_subject_attribute

ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")
KOMMUN_A, KOMMUN_D = "2120001009", "2120004003"
HSA = IdentityRule(type="hsa_id")


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


def sharing(h: Hierarchy, source: str) -> tuple[TrustDomain, TrustDomain]:
    """Kommun A and Kommun D, both on ``h``'s CAs, telling their certificates apart by ``source``."""
    crls = h.fresh_crls()
    return (replace(h.domain(crls=crls), id="kommun-a", organization_number=KOMMUN_A, organization_from=source),
            replace(h.domain(crls=crls), id="kommun-d", organization_number=KOMMUN_D, organization_from=source))


@pytest.mark.parametrize(("hsa_id", "chosen"), [
    (f"SE{KOMMUN_A}-anna", "kommun-a"),
    (f"SE{KOMMUN_D}-dora", "kommun-d"),
], ids=["kommun-a-card", "kommun-d-card"])
def test_the_hsa_id_names_the_municipality(h: Hierarchy, hsa_id: str, chosen: str) -> None:
    result = validator(*sharing(h, "hsa_id")).validate(h.leaf(serial_number=hsa_id).certificate)
    assert (result.municipality_id, result.identity.key) == (chosen, hsa_id)


def test_a_card_of_another_organisation_is_refused(h: Hierarchy) -> None:
    with pytest.raises(CertificateRejected) as caught:
        validator(*sharing(h, "hsa_id")).validate(h.leaf(serial_number="SE2120002007-bo").certificate)
    assert caught.value.reason == "organization_mismatch"
    assert caught.value.detail.endswith(f"issues to kommun-a ({KOMMUN_A}, by hsa_id), kommun-d ({KOMMUN_D}, by "
                                        "hsa_id); the certificate names 2120002007 by hsa_id")


@pytest.mark.parametrize(("hsa_id", "reason"), [("SE212000100-anna", "identity_invalid"),
                                                ("anna", "identity_invalid"), (None, "identity_missing")],
                         ids=["nine-digits", "no-organisation", "no-hsa-id"])
def test_a_card_whose_hsa_id_is_no_good_gets_the_identity_rules_reason(h: Hierarchy, hsa_id: str | None,
                                                                       reason: str) -> None:
    """The HSA-id that should name the organisation is itself refused: that says more than "names none"."""
    leaf = h.leaf(serial_number=hsa_id).certificate if hsa_id else h.leaf(serial_number=None).certificate
    with pytest.raises(CertificateRejected) as caught:
        validator(*sharing(h, "hsa_id")).validate(leaf)
    assert caught.value.reason == reason


@pytest.mark.parametrize("written", [f"SE{KOMMUN_D}", f"NTRSE-{KOMMUN_D}", KOMMUN_D, "212000-4003",
                                     f"ntrse-{KOMMUN_D}"],
                         ids=["se-prefix", "etsi-semantics-identifier", "plain", "with-hyphen", "lower-case"])
def test_the_organization_identifier_names_the_municipality(h: Hierarchy, written: str) -> None:
    cert = with_subject_attribute(h.leaf(serial_number=f"SE{KOMMUN_A}-dora").certificate, h.issuing,
                                  ORGANIZATION_IDENTIFIER, written)
    assert validator(*sharing(h, "organization_identifier")).validate(cert).municipality_id == "kommun-d"


@pytest.mark.parametrize("written", ["SE2120002007", "NTRNO-912345678", "SE21200040031", ""],
                         ids=["another-organisation", "another-country", "eleven-digits", "empty"])
def test_an_organization_identifier_of_none_of_them_is_refused(h: Hierarchy, written: str) -> None:
    cert = with_subject_attribute(h.leaf().certificate, h.issuing, ORGANIZATION_IDENTIFIER, written)
    with pytest.raises(CertificateRejected) as caught:
        validator(*sharing(h, "organization_identifier")).validate(cert)
    assert caught.value.reason == "organization_mismatch"


def test_a_certificate_without_an_organization_identifier_is_refused(h: Hierarchy) -> None:
    assert named_organization(h.leaf().certificate, "organization_identifier", HSA) is None
    with pytest.raises(CertificateRejected) as caught:
        validator(*sharing(h, "organization_identifier")).validate(h.leaf().certificate)
    assert caught.value.reason == "organization_mismatch"


def test_a_municipality_that_says_where_its_cards_name_it_takes_only_those(h: Hierarchy) -> None:
    """Its CA is its own, yet a card of another organisation from it is no card of this municipality's."""
    alone = replace(h.domain(crls=h.fresh_crls()), id="kommun-a", organization_number=KOMMUN_A,
                    organization_from="hsa_id")
    assert validator(alone).validate(h.leaf(serial_number=f"SE{KOMMUN_A}-anna").certificate).municipality_id \
        == "kommun-a"
    with pytest.raises(CertificateRejected) as caught:
        validator(alone).validate(h.leaf(serial_number="SE2120002007-bo").certificate)
    assert caught.value.reason == "organization_mismatch"


def test_an_unknown_issuer_is_still_issuer_unknown(h: Hierarchy) -> None:
    stranger = Hierarchy.build(NOW, "Kommun X")
    with pytest.raises(CertificateRejected) as caught:
        validator(*sharing(h, "hsa_id")).validate(stranger.leaf().certificate)
    assert caught.value.reason == "issuer_unknown"


def test_a_shared_ca_without_a_way_to_tell_its_municipalities_apart_is_refused_when_built(h: Hierarchy) -> None:
    a, d = sharing(h, "hsa_id")
    with pytest.raises(ValueError, match="kommun-d does not say how its certificates name it"):
        TrustIndex([a, replace(d, organization_from="none")])


def test_a_refused_hsa_id_among_municipalities_looking_in_different_places_gives_its_own_reason(
        h: Hierarchy) -> None:
    a, d = sharing(h, "hsa_id")
    with pytest.raises(CertificateRejected) as caught:
        validator(a, replace(d, organization_from="organization_identifier")).validate(
            h.leaf(serial_number="anna").certificate)
    assert caught.value.reason == "identity_invalid"


def test_a_card_of_a_third_organisation_is_no_card_of_theirs_whatever_one_rule_refuses(h: Hierarchy) -> None:
    """Kommun A's stricter HSA-id pattern refuses Bo's valid HSA-id of another organisation: the reason is still
    that his organisation is none of theirs, not Kommun A's pattern."""
    a, d = sharing(h, "hsa_id")
    a = replace(a, identity=IdentityRule(type="hsa_id", pattern=Regex(rf"^SE{KOMMUN_A}-[A-Za-z0-9]+$")))
    assert validator(a, d).validate(h.leaf(serial_number=f"SE{KOMMUN_D}-dora").certificate).municipality_id \
        == "kommun-d"
    with pytest.raises(CertificateRejected) as caught:
        validator(a, d).validate(h.leaf(serial_number="SE2120002007-bo").certificate)
    assert caught.value.reason == "organization_mismatch"
    assert caught.value.detail.endswith("the certificate names 2120002007 by hsa_id")
