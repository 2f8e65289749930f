"""Mapping a certificate to an identity by the municipality's rule (broker.pki.identity)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from broker.config.schema import IdentityRule
from broker.config.values import Regex
from broker.errors import CertificateRejected
from broker.pki.identity import check_personnummer, display_identity, extract_identity
from broker.pki.naming import display_subject
from broker.readiness.trust import name_of
from tests.factories.pki import HSA_ID, Hierarchy
from tests.factories.pki_cases import (
    NOW,
    PERSONNUMMER_BAD_CHECK_DIGIT,
    PERSONNUMMER_IMPOSSIBLE_DATE,
    PERSONNUMMER_LEAP_DAY,
    PERSONNUMMER_NOT_LEAP_YEAR,
    PERSONNUMMER_VALID,
    SAMORDNINGSNUMMER_VALID,
    with_subject_attribute,
)

HSA = IdentityRule(type="hsa_id")
PNR = IdentityRule(type="personnummer")
UPN = IdentityRule(type="opaque", source="san_upn", pattern=Regex(r"[a-z.]+@kommun-a\.example\.se"))
EMAIL = IdentityRule(type="opaque", source="san_email", pattern=Regex(r"[a-z.]+@kommun-a\.example\.se"))
HSA_IN_UPN = IdentityRule(type="hsa_id", source="san_upn")

MakeCert = Callable[[Hierarchy], x509.Certificate]


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


def leaf(**overrides: object) -> MakeCert:
    return lambda h: h.leaf(**overrides).certificate


def two_serial_numbers(h: Hierarchy) -> x509.Certificate:
    return with_subject_attribute(h.leaf().certificate, h.issuing, NameOID.SERIAL_NUMBER, "SE2120001009-bo")


ACCEPTED = [
    pytest.param(leaf(), HSA, "hsa_id", HSA_ID, id="hsa-id-in-subject-serial-number"),
    pytest.param(leaf(serial_number=PERSONNUMMER_VALID), PNR, "personnummer", PERSONNUMMER_VALID,
                 id="personnummer"),
    pytest.param(leaf(serial_number=SAMORDNINGSNUMMER_VALID), PNR, "personnummer", SAMORDNINGSNUMMER_VALID,
                 id="samordningsnummer-day-plus-60"),
    pytest.param(leaf(serial_number=PERSONNUMMER_LEAP_DAY), PNR, "personnummer", PERSONNUMMER_LEAP_DAY,
                 id="personnummer-born-on-leap-day"),
    pytest.param(leaf(serial_number=None, san_upn="anna.andersson@kommun-a.example.se"), UPN, "opaque",
                 "anna.andersson@kommun-a.example.se", id="san-upn"),
    pytest.param(leaf(serial_number=None, san_upn=HSA_ID), HSA_IN_UPN, "hsa_id", HSA_ID, id="hsa-id-in-san-upn"),
    # 300 bytes: the demo builder's long-form length is only minimal DER from 256 bytes on
    pytest.param(leaf(serial_number=None, san_upn="a" * 300 + "@kommun-a.example.se"), UPN, "opaque",
                 "a" * 300 + "@kommun-a.example.se", id="san-upn-with-long-form-der-length"),
    pytest.param(leaf(serial_number=None, san_email="anna@kommun-a.example.se",
                      san_upn="other@elsewhere.example"), EMAIL, "opaque", "anna@kommun-a.example.se",
                 id="san-email-beside-an-upn"),
    pytest.param(leaf(serial_number=f" {HSA_ID} "), HSA, "hsa_id", HSA_ID, id="surrounding-spaces-stripped"),
    # an HSA-id is at most 31 characters long: SE, the organisation number, the hyphen and up to 18 more
    pytest.param(leaf(serial_number="SE2120001009-" + "a" * 18), HSA, "hsa_id", "SE2120001009-" + "a" * 18,
                 id="hsa-id-of-31-characters"),
]


@pytest.mark.parametrize(("make", "rule", "kind", "key"), ACCEPTED)
def test_identity_extracted(h: Hierarchy, make: MakeCert, rule: IdentityRule, kind: str, key: str) -> None:
    identity = extract_identity(make(h), rule, "kommun-a", NOW.date())
    assert (identity.kind, identity.key, identity.municipality_id) == (kind, key, "kommun-a")


def test_identity_carries_names_from_subject(h: Hierarchy) -> None:
    identity = extract_identity(h.leaf().certificate, HSA, "kommun-a", NOW.date())
    assert (identity.given_name, identity.surname, identity.display_name) == ("Anna", "Andersson", "Anna Andersson")


REJECTED = [
    # --- identity_missing ---
    pytest.param(leaf(serial_number=None), HSA, "identity_missing", id="no-subject-serial-number"),
    pytest.param(leaf(serial_number=" "), HSA, "identity_missing", id="blank-subject-serial-number"),
    pytest.param(leaf(), UPN, "identity_missing", id="san-upn-rule-without-subject-alt-name"),
    pytest.param(leaf(san_email="anna@kommun-a.example.se"), UPN, "identity_missing",
                 id="san-upn-rule-with-only-an-email-in-san"),
    pytest.param(leaf(san_upn="anna@kommun-a.example.se"), EMAIL, "identity_missing",
                 id="san-email-rule-with-only-a-upn-in-san"),
    # --- identity_invalid ---
    pytest.param(leaf(serial_number="SE212000100-anna"), HSA, "identity_invalid", id="hsa-id-nine-digits"),
    pytest.param(leaf(serial_number="anna.andersson"), HSA, "identity_invalid", id="hsa-id-no-prefix"),
    pytest.param(leaf(serial_number="SE2120001009-" + "a" * 19), HSA, "identity_invalid",
                 id="hsa-id-longer-than-31-characters"),
    pytest.param(leaf(serial_number=HSA_ID), IdentityRule(type="hsa_id", pattern=Regex(r"SE2321000016-[0-9]+")),
                 "identity_invalid", id="hsa-id-outside-configured-pattern"),
    pytest.param(leaf(serial_number=PERSONNUMMER_BAD_CHECK_DIGIT), PNR, "identity_invalid",
                 id="personnummer-bad-check-digit"),
    pytest.param(leaf(serial_number=PERSONNUMMER_IMPOSSIBLE_DATE), PNR, "identity_invalid",
                 id="personnummer-impossible-date"),
    pytest.param(leaf(serial_number=PERSONNUMMER_NOT_LEAP_YEAR), PNR, "identity_invalid",
                 id="personnummer-29-february-not-leap-year"),
    pytest.param(leaf(serial_number="19121212-1212"), PNR, "identity_invalid", id="personnummer-with-hyphen"),
    pytest.param(leaf(serial_number="1212121212"), PNR, "identity_invalid", id="personnummer-ten-digits"),
    pytest.param(leaf(), PNR, "identity_invalid", id="hsa-id-where-personnummer-expected"),
    pytest.param(two_serial_numbers, HSA, "identity_invalid", id="two-subject-serial-numbers"),
    # A UPN is a UTF8String, so it can carry digits from other scripts; a personnummer is ASCII digits only.
    pytest.param(leaf(serial_number=None, san_upn="1912121212\uff112"),
                 IdentityRule(type="personnummer", source="san_upn"), "identity_invalid",
                 id="personnummer-with-fullwidth-digit-in-san-upn"),
    pytest.param(leaf(serial_number=None, san_upn="anna@elsewhere.example"), UPN, "identity_invalid",
                 id="san-upn-outside-pattern"),
    # names become SAML attribute values: XML 1.0 cannot carry control characters (a 500 otherwise)
    pytest.param(leaf(given_name="An\x01na"), HSA, "identity_invalid", id="control-character-in-given-name"),
    pytest.param(leaf(surname="Anders\x1bson"), HSA, "identity_invalid", id="escape-character-in-surname"),
    pytest.param(leaf(common_name="Anna\x00Andersson"), HSA, "identity_invalid", id="nul-in-common-name"),
]


@pytest.mark.parametrize(("make", "rule", "reason"), REJECTED)
def test_identity_rejected(h: Hierarchy, make: MakeCert, rule: IdentityRule, reason: str) -> None:
    with pytest.raises(CertificateRejected) as caught:
        extract_identity(make(h), rule, "kommun-a", NOW.date())
    assert caught.value.reason == reason


def test_missing_identity_names_the_field(h: Hierarchy) -> None:
    with pytest.raises(CertificateRejected) as caught:
        extract_identity(h.leaf(serial_number=None).certificate, HSA, "kommun-a", NOW.date())
    assert caught.value.params == {"field": "subject serialNumber"}


@pytest.mark.parametrize(("value", "rule"), [
    pytest.param(PERSONNUMMER_BAD_CHECK_DIGIT, PNR, id="bad-check-digit"),
    pytest.param(PERSONNUMMER_IMPOSSIBLE_DATE, PNR, id="impossible-date"),
    # a valid personnummer where the municipality's rule wants an HSA-id is personal data all the same
    pytest.param(PERSONNUMMER_VALID, HSA, id="personnummer-under-an-hsa-id-rule"),
])
def test_invalid_personnummer_is_not_repeated_in_the_error(h: Hierarchy, value: str, rule: IdentityRule) -> None:
    with pytest.raises(CertificateRejected) as caught:
        extract_identity(h.leaf(serial_number=value).certificate, rule, "kommun-a", NOW.date())
    assert caught.value.reason == "identity_invalid"
    assert value not in str(caught.value)
    assert value not in caught.value.detail
    assert value not in caught.value.params.values()


def test_a_refused_hsa_id_is_described_by_its_shape(h: Hierarchy) -> None:
    with pytest.raises(CertificateRejected) as caught:
        extract_identity(h.leaf(serial_number=PERSONNUMMER_VALID).certificate, HSA, "kommun-a", NOW.date())
    assert "(12 characters: digits)" in caught.value.detail


# --- display_subject: what /diagnose and the CLI show of the subject ---


@pytest.mark.parametrize(("serial", "shown"), [
    pytest.param(PERSONNUMMER_VALID, "serialNumber=19121212-****", id="personnummer"),
    # the identity rule strips the padding and logs the user in with it: the page must not show it whole
    pytest.param(f" {PERSONNUMMER_VALID} ", "serialNumber=\\ 19121212-****\\ ", id="padded-personnummer"),
    pytest.param("19121212-1212", "serialNumber=19121212-****", id="with-hyphen"),
    pytest.param("PNOSE-" + PERSONNUMMER_VALID, "serialNumber=PNOSE-19121212-****", id="etsi-semantics-prefix"),
    # the ten-digit form without the century (YYMMDD-NNNN), as the personnummer is most often written
    pytest.param("121212-1212", "serialNumber=121212-****", id="ten-digit-form-with-hyphen"),
    pytest.param("1212121212", "serialNumber=121212-****", id="ten-digit-form"),
    pytest.param("121272+1235", "serialNumber=121272-****", id="ten-digit-samordningsnummer-over-100-years-old"),
    # named serialNumber, as a masked one is (cryptography's RFC 4514 text writes 2.5.4.5=)
    pytest.param(HSA_ID, f"serialNumber={HSA_ID},", id="hsa-id-shown-as-is"),
    pytest.param("SE2120001009-bo", "serialNumber=SE2120001009-bo,", id="organisation-number-shown-as-is"),
])
def test_display_subject_masks_a_personnummer_however_written(h: Hierarchy, serial: str, shown: str) -> None:
    subject = display_subject(h.leaf(serial_number=serial).certificate)
    assert shown in subject
    assert PERSONNUMMER_VALID not in subject
    assert "1212-1212" not in subject
    assert "1212121212" not in subject
    assert "1235" not in subject


@pytest.mark.parametrize(("common_name", "shown"), [
    pytest.param(f"Anna Andersson {PERSONNUMMER_VALID}", "CN=Anna Andersson 19121212-****", id="after-the-name"),
    pytest.param("Anna Andersson (19121212-1212)", "CN=Anna Andersson (19121212-****)", id="with-hyphen"),
    # a commonName at its 64-character limit is longer once masked
    pytest.param("A" * 52 + PERSONNUMMER_VALID, "CN=" + "A" * 52 + "19121212-****", id="at-the-length-limit"),
    pytest.param("Anna Andersson", "CN=Anna Andersson", id="a-name-as-is"),
])
def test_display_subject_masks_a_personnummer_in_the_common_name(h: Hierarchy, common_name: str, shown: str) -> None:
    """Some CAs put the personnummer in the commonName as well as in the serialNumber (broker.pki.naming): shown
    whole beside the masked serialNumber, the page gave away what it masked."""
    leaf = h.leaf(common_name=common_name, serial_number=PERSONNUMMER_VALID).certificate
    subject = display_subject(leaf)
    assert shown in subject.split(",")
    assert "serialNumber=19121212-****" in subject
    assert PERSONNUMMER_VALID not in subject
    assert "1212-1212" not in subject
    # `broker readiness` names a sample certificate by its CN
    assert name_of(leaf) == shown.removeprefix("CN=")


# --- check_personnummer on its own ---


@pytest.mark.parametrize("value", [
    pytest.param(PERSONNUMMER_VALID, id="personnummer"),
    pytest.param(SAMORDNINGSNUMMER_VALID, id="samordningsnummer"),
    pytest.param(PERSONNUMMER_LEAP_DAY, id="leap-day"),
])
def test_check_personnummer_accepts(value: str) -> None:
    check_personnummer(value, NOW.date())


@pytest.mark.parametrize(("value", "message"), [
    pytest.param(PERSONNUMMER_BAD_CHECK_DIGIT, "check digit", id="bad-check-digit"),
    pytest.param(PERSONNUMMER_IMPOSSIBLE_DATE, "not a valid date", id="30-february"),
    pytest.param(PERSONNUMMER_NOT_LEAP_YEAR, "not a valid date", id="29-february-2011"),
    pytest.param("191213121210", "not a valid date", id="month-13"),
    pytest.param("191212921232", "not a valid date", id="samordningsnummer-day-32"),
    pytest.param("19121212121", "12 digits", id="eleven-digits"),
    pytest.param("1912121212\uff112", "12 digits", id="fullwidth-digit"),
    pytest.param("19121212121\u0662", "12 digits", id="arabic-indic-digit"),
])
def test_check_personnummer_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_personnummer(value, NOW.date())


@pytest.mark.parametrize(("kind", "key", "shown"), [
    pytest.param("personnummer", "191212121212", "19121212-****", id="personnummer"),
    pytest.param("opaque", "191212121212", "19121212-****", id="opaque-that-is-a-personnummer"),
    pytest.param("opaque", "191212121212@kommun.se", "19121212-****@kommun.se", id="opaque-holding-one"),
    pytest.param("hsa_id", "SE2321000016-1234", "SE2321000016-1234", id="hsa-id-as-is"),
    pytest.param("opaque", "anna.andersson@kommun.se", "anna.andersson@kommun.se", id="opaque-as-is"),
])
def test_an_identity_is_shown_with_any_personnummer_in_it_masked(kind: str, key: str, shown: str) -> None:
    """`broker cert check` and the readiness report show whose a certificate is; an opaque rule's account named by
    the personnummer was shown whole there, while the audit trail records it as its pseudonym."""
    assert display_identity(kind, key) == shown
