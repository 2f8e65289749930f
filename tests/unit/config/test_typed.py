"""The strict typed parser (broker.config.typed) and the plain value types, through real configuration files.

STYLE §4: unknown keys, wrong types and bad values are errors with file, line
and key path, and every problem of a file is reported, not only the first.
Each case edits one line of the example configuration and lists exactly the
issues the loader must report.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest

from broker.config import schema
from broker.config.loader import load_settings
from broker.config.reference import markdown
from broker.config.typed import json_schema
from broker.config.values import Duration
from tests.unit.config.editing import (
    BROKER,
    DEMO_SP,
    KOMMUN_A,
    KOMMUN_B,
    Edit,
    Expected,
    assert_issues,
    combined,
    load_issues,
    replacing,
)


def check(config_dir: Path, edit: Edit, expected: list[Expected]) -> None:
    edit(config_dir)
    assert_issues(load_issues(config_dir), expected, config_dir)


# --- unknown and missing keys --------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            replacing(KOMMUN_A, "trust_anchors:", "trust_anchor:"),
            [Expected(KOMMUN_A, "trust_anchor:", "certificate.trust_anchor",
                      "unknown key (allowed here: trust_anchors, policies, identity, revocation, intermediates, "
                      "max_chain_depth, organization_from); did you mean 'trust_anchors'?"),
             Expected(KOMMUN_A, "certificate:", "certificate", "missing required key 'trust_anchors'")],
            id="trust_anchor-for-trust_anchors",
        ),
        pytest.param(
            replacing(KOMMUN_A, "organization_number:", "organisation_number:"),
            [Expected(KOMMUN_A, "organisation_number:", "organisation_number",
                      "did you mean 'organization_number'?"),
             Expected(KOMMUN_A, "name:", "", "missing required key 'organization_number'")],
            id="british-spelling-at-top-level",
        ),
        pytest.param(
            replacing(BROKER, "idle_timeout: 30m", "idle_timout: 30m"),
            [Expected(BROKER, "idle_timout:", "session.idle_timout", "did you mean 'idle_timeout'?")],
            id="typo-of-an-optional-key",
        ),
        pytest.param(
            replacing(DEMO_SP, "sign_response: false", "sign_responses: false"),
            [Expected(DEMO_SP, "sign_responses:", "sign_responses", "did you mean 'sign_response'?")],
            id="plural-in-service-provider",
        ),
        pytest.param(
            replacing(KOMMUN_A, "      loa: loa3", "      loa: loa3\n      lao: loa3"),
            [Expected(KOMMUN_A, "lao: loa3", "certificate.policies[0].lao", "did you mean 'loa'?")],
            id="inside-a-list-item",
        ),
    ],
)
def test_an_unknown_key_is_an_error_that_suggests_the_close_name(
    config_dir: Path, edit: Edit, expected: list[Expected]
) -> None:
    check(config_dir, edit, expected)


def test_an_unknown_key_unlike_any_field_lists_the_allowed_keys_and_suggests_nothing(config_dir: Path) -> None:
    replacing(KOMMUN_A, "login: certificate", "login: certificate\ncolour: blue")(config_dir)

    issues = load_issues(config_dir)

    assert_issues(issues, [Expected(KOMMUN_A, "colour: blue", "colour",
                                    "unknown key (allowed here: name, organization_number, status, login, "
                                    "certificate, saml, support, readiness)")], config_dir)
    assert "did you mean" not in issues[0].message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            replacing(KOMMUN_A, "login: certificate\n", ""),
            [Expected(KOMMUN_A, "name:", "", "missing required key 'login': login method")],
            id="top-level",
        ),
        pytest.param(
            replacing(KOMMUN_A, "      loa: loa3\n", ""),
            [Expected(KOMMUN_A, "- oid: 2.999.1.3", "certificate.policies[0]", "missing required key 'loa'")],
            id="inside-a-list-item",
        ),
        pytest.param(
            replacing(BROKER, "      en: Example Region\n", ""),
            [Expected(BROKER, "name:", "idp.organization.name", "missing required key 'en'")],
            id="nested-three-deep",
        ),
        pytest.param(
            replacing(BROKER, "  nameid_key: keys/nameid.key\n", ""),
            [Expected(BROKER, "idp:", "idp", "missing required key 'nameid_key'")],
            id="file-backed-value",
        ),
    ],
)
def test_a_missing_required_key_is_reported_at_the_mapping_that_lacks_it(
    config_dir: Path, edit: Edit, expected: list[Expected]
) -> None:
    check(config_dir, edit, expected)


# --- wrong types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            replacing(KOMMUN_A, "trust_anchors:\n    - certs/kommun-a/root-ca.pem",
                      "trust_anchors: certs/kommun-a/root-ca.pem"),
            Expected(KOMMUN_A, "trust_anchors:", "certificate.trust_anchors",
                     "expected a list, got a string ('certs/kommun-a/root-ca.pem')"),
            id="string-where-list-expected",
        ),
        pytest.param(
            replacing(DEMO_SP, "municipalities: [kommun-a, kommun-b, kommun-c]", "municipalities: kommun-a"),
            Expected(DEMO_SP, "municipalities:", "municipalities", "expected a list, got a string ('kommun-a')"),
            id="single-municipality-not-in-a-list",
        ),
        pytest.param(
            replacing(BROKER, "cookie_name: __Host-broker_session", "cookie_name: 123"),
            Expected(BROKER, "cookie_name:", "session.cookie_name",
                     "expected a string, got a number (123) (quote the value in YAML)"),
            id="number-where-string-expected",
        ),
        pytest.param(
            replacing(BROKER, "technical_contact: it-support@example.se", "technical_contact: 1.5"),
            Expected(BROKER, "technical_contact:", "idp.organization.technical_contact",
                     "expected a string, got a number (1.5) (quote the value in YAML)"),
            id="float-where-string-expected",
        ),
        pytest.param(
            replacing(BROKER, "sign_metadata: true", 'sign_metadata: "yes"'),
            Expected(BROKER, "sign_metadata:", "idp.sign_metadata", "expected true or false, got a string ('yes')"),
            id="quoted-string-where-boolean-expected",
        ),
        pytest.param(
            replacing(KOMMUN_A, "max_chain_depth: 4", "max_chain_depth: true"),
            Expected(KOMMUN_A, "max_chain_depth:", "certificate.max_chain_depth",
                     "expected an integer, got a boolean (true)"),
            id="boolean-where-integer-expected",
        ),
        pytest.param(
            replacing(BROKER, "max_message_bytes: 65536", "max_message_bytes: 65536.0"),
            Expected(BROKER, "max_message_bytes: 65536.0", "idp.max_message_bytes",
                     "expected an integer, got a number (65536.0)"),
            id="float-where-integer-expected",
        ),
        pytest.param(
            replacing(KOMMUN_A, "name:\n  sv: Kommun A\n  en: Municipality A", "name: Kommun A"),
            Expected(KOMMUN_A, "name:", "name", "expected a mapping, got a string ('Kommun A')"),
            id="string-where-mapping-expected",
        ),
        pytest.param(
            replacing(KOMMUN_A, "  sv: Kommun A", '  sv: ""'),
            Expected(KOMMUN_A, 'sv: ""', "name.sv", "expected a non-empty string"),
            id="empty-string",
        ),
        pytest.param(
            replacing(KOMMUN_A, "  sv: Kommun A", "  sv: ~"),
            Expected(KOMMUN_A, "sv: ~", "name.sv", "expected a string, got nothing (null)"),
            id="null-where-string-expected",
        ),
    ],
)
def test_a_value_of_the_wrong_type_says_what_was_expected(config_dir: Path, edit: Edit, expected: Expected) -> None:
    check(config_dir, edit, [expected])


@pytest.mark.parametrize(
    ("word", "shown"),
    [
        pytest.param("no", "false", id="no"),
        pytest.param("No", "false", id="No"),
        pytest.param("off", "false", id="off"),
        pytest.param("yes", "true", id="yes"),
        pytest.param("on", "true", id="on"),
        pytest.param("TRUE", "true", id="TRUE"),
    ],
)
def test_a_yaml_1_1_boolean_word_where_a_string_is_expected_asks_for_quotes(
    config_dir: Path, word: str, shown: str
) -> None:
    # Norway's "NO" problem: the Swedish name of a municipality could well be a word YAML reads as a boolean.
    check(config_dir, replacing(KOMMUN_A, "  sv: Kommun A", f"  sv: {word}"),
          [Expected(KOMMUN_A, f"sv: {word}", "name.sv",
                    f"expected a string, got a boolean ({shown}) (quote the value in YAML)")])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            replacing(KOMMUN_A, "status: active", "status: activ"),
            Expected(KOMMUN_A, "status: activ", "status",
                     "expected one of: onboarding, active, suspended; got a string ('activ')"),
            id="status-activ",
        ),
        pytest.param(
            replacing(KOMMUN_A, "status: active", "status: Active"),
            Expected(KOMMUN_A, "status: Active", "status", "expected one of: onboarding, active, suspended"),
            id="status-capitalised",
        ),
        pytest.param(
            replacing(KOMMUN_A, "status: active", "status: 1"),
            Expected(KOMMUN_A, "status: 1", "status", "expected one of: onboarding, active, suspended; got a number"),
            id="status-number",
        ),
        pytest.param(
            replacing(KOMMUN_A, "loa: loa3", "loa: loa5"),
            Expected(KOMMUN_A, "loa: loa5", "certificate.policies[0].loa",
                     "expected one of: loa2, loa3, loa4, sambi-loa2, sambi-loa3; got a string ('loa5')"),
            id="loa-in-a-list-item",
        ),
        pytest.param(
            replacing(KOMMUN_A, "type: hsa_id", "type: hsaid"),
            Expected(KOMMUN_A, "type: hsaid", "certificate.identity.type",
                     "expected one of: hsa_id, personnummer, opaque"),
            id="identity-type",
        ),
        pytest.param(
            replacing(KOMMUN_B, "http_method: auto", "http_method: GET"),
            Expected(KOMMUN_B, "http_method: GET", "certificate.revocation.ocsp.http_method",
                     "expected one of: auto, get, post; got a string ('GET')"),
            id="ocsp-http-method",
        ),
        pytest.param(
            replacing(DEMO_SP, "nameid_formats: [persistent, transient]", "nameid_formats: [persistent, email]"),
            Expected(DEMO_SP, "nameid_formats:", "nameid_formats[1]", "expected one of: persistent, transient"),
            id="list-of-choices",
        ),
        pytest.param(
            replacing(BROKER, "client_address: clear", "client_address: no"),
            Expected(BROKER, "client_address:", "audit.client_address",
                     "expected one of: clear, truncated, pseudonymised; got a boolean (false)"),
            id="yaml-boolean-for-a-choice",
        ),
    ],
)
def test_a_value_outside_its_choices_lists_the_choices(config_dir: Path, edit: Edit, expected: Expected) -> None:
    check(config_dir, edit, [expected])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            replacing(KOMMUN_A, "trust_anchors:\n    - certs/kommun-a/root-ca.pem", "trust_anchors: []"),
            Expected(KOMMUN_A, "trust_anchors:", "certificate.trust_anchors", "expected at least 1 item(s), got 0"),
            id="no-trust-anchor",
        ),
        pytest.param(
            replacing(KOMMUN_A, "policies:\n    - oid: 2.999.1.3\n      loa: loa3", "policies: []"),
            Expected(KOMMUN_A, "policies:", "certificate.policies", "expected at least 1 item(s), got 0"),
            id="no-policy",
        ),
        pytest.param(
            replacing(BROKER, "relay_state_max_bytes: 80", "relay_state_max_bytes: 0"),
            Expected(BROKER, "relay_state_max_bytes:", "idp.relay_state_max_bytes", "expected an integer >= 1, got 0"),
            id="integer-below-minimum",
        ),
        pytest.param(
            replacing(BROKER, "max_message_bytes: 65536", "max_message_bytes: 1023"),
            Expected(BROKER, "max_message_bytes: 1023", "idp.max_message_bytes",
                     "expected an integer >= 1024, got 1023"),
            id="integer-one-below-minimum",
        ),
        pytest.param(
            replacing(KOMMUN_A, "max_chain_depth: 4", "max_chain_depth: -1"),
            Expected(KOMMUN_A, "max_chain_depth:", "certificate.max_chain_depth", "expected an integer >= 0, got -1"),
            id="negative-depth",
        ),
    ],
)
def test_lists_and_numbers_have_their_minimum(config_dir: Path, edit: Edit, expected: Expected) -> None:
    check(config_dir, edit, [expected])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # 10^30 passed, and then zlib refused every HTTP-Redirect request's inflation limit (OverflowError: a 500)
        pytest.param(
            replacing(BROKER, "max_message_bytes: 65536", "max_message_bytes: 1000000000000000000000000000000"),
            Expected(BROKER, "max_message_bytes: 1000", "idp.max_message_bytes",
                     "expected an integer <= 16777216, got a number of 31 digits"),
            id="message-limit-past-any-message"),
        pytest.param(
            replacing(BROKER, "max_message_bytes: 65536", "max_message_bytes: 16777217"),
            Expected(BROKER, "max_message_bytes: 1677", "idp.max_message_bytes",
                     "expected an integer <= 16777216, got 16777217"),
            id="one-above-maximum"),
        pytest.param(
            replacing(BROKER, "failures_per_address: 20", "failures_per_address: 1000001"),
            Expected(BROKER, "failures_per_address:", "rate_limit.failures_per_address",
                     "expected an integer <= 1000000, got 1000001"),
            id="a-count"),
        pytest.param(
            replacing(KOMMUN_A, "max_chain_depth: 4", "max_chain_depth: 17"),
            Expected(KOMMUN_A, "max_chain_depth:", "certificate.max_chain_depth", "expected an integer <= 16, got 17"),
            id="chain-depth"),
    ],
)
def test_numbers_have_their_maximum(config_dir: Path, edit: Edit, expected: Expected) -> None:
    check(config_dir, edit, [expected])


def test_the_maximum_is_in_the_json_schema_and_the_reference() -> None:
    idp = json_schema(schema.IdpConfig, "t")["$defs"]["IdpConfig"]["properties"]["max_message_bytes"]

    assert (idp["minimum"], idp["maximum"]) == (1024, 16777216)
    assert "| `idp.max_message_bytes` | integer, 1024 to 16777216 | `65536` |" in markdown()


def test_the_minimum_itself_is_accepted(config_dir: Path) -> None:
    combined(replacing(BROKER, "max_message_bytes: 65536", "max_message_bytes: 1024"),
             replacing(KOMMUN_A, "max_chain_depth: 4", "max_chain_depth: 0"))(config_dir)

    settings = load_settings(config_dir)

    assert settings.broker.idp.max_message_bytes == 1024
    assert settings.municipalities["kommun-a"].config.certificate.max_chain_depth == 0


# --- durations --------------------------------------------------------------------------

PENDING = "pending_login_timeout: 10m"  # a duration with no cross-field rule attached


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        pytest.param("30m", 1800, id="minutes"),
        pytest.param("1h30m", 5400, id="hours-and-minutes"),
        pytest.param("90", 90, id="bare-number-is-seconds"),
        pytest.param("2.5", 2.5, id="fractional-seconds"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("1d2h3m4s", 93784, id="every-unit"),
        pytest.param("1.5h", 5400, id="fractional-hours"),
    ],
)
def test_a_duration_is_seconds_or_a_string_of_units(config_dir: Path, written: str, seconds: float) -> None:
    replacing(BROKER, PENDING, f"pending_login_timeout: {written}")(config_dir)

    assert load_settings(config_dir).broker.session.pending_login_timeout == Duration(seconds)


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        pytest.param("10 minutes", "expected a duration like 30s, 10m, 8h or 1h30m, got '10 minutes'", id="words"),
        pytest.param("5 m", "expected a duration like", id="space-before-unit"),
        pytest.param("1h30", "expected a duration like", id="trailing-number-without-unit"),
        pytest.param("10M", "expected a duration like", id="upper-case-unit"),
        pytest.param("-5m", "expected a duration like", id="negative-string"),
        pytest.param('""', "expected a duration like", id="empty-string"),
        pytest.param("-30", "expected a positive duration", id="negative-number"),
        pytest.param("0", "expected a positive duration", id="zero"),
        pytest.param("0s", "expected a positive duration", id="zero-with-unit"),
        pytest.param("true", "expected a duration like 30s, 10m or 8h, got True", id="boolean"),
        pytest.param("[10m]", "expected a duration like", id="list"),
        pytest.param(".nan", "duration", id="not-a-number"),
        pytest.param(".inf", "duration", id="infinite"),
        # dates a login works out from it would overflow (every login a 500)
        pytest.param("100000000d", "expected at most 3650d (ten years), got '100000000d'", id="past-ten-years"),
        pytest.param("315360001", "expected at most 3650d", id="past-ten-years-in-seconds"),
        # past a float's range: float() raised OverflowError, a traceback in `config check` and `broker reload`
        pytest.param("9" * 400, "expected at most 3650d (ten years), got a number of 400 digits",
                     id="past-a-floats-range"),
        pytest.param("-" + "9" * 400, "expected a positive duration, got a number of 400 digits",
                     id="negative-past-a-floats-range"),
        pytest.param("9" * 400 + "s", "expected at most 3650d (ten years)", id="past-a-floats-range-with-a-unit"),
    ],
)
def test_an_invalid_duration_is_refused(config_dir: Path, written: str, fragment: str) -> None:
    check(config_dir, replacing(BROKER, PENDING, f"pending_login_timeout: {written}"),
          [Expected(BROKER, "pending_login_timeout:", "session.pending_login_timeout", fragment)])


@pytest.mark.parametrize(
    ("edit", "line", "key", "fragment"),
    [
        # YAML 1.1 would have read these as 384 seconds, 8, 16 and 5
        pytest.param(replacing(BROKER, PENDING, "pending_login_timeout: 0600"), "pending_login_timeout:",
                     "session.pending_login_timeout", "expected a duration like 30s, 10m, 8h or 1h30m, got '0600' "
                     "(a leading zero: write 600; YAML 1.1 reads a number with one as octal)", id="duration-0600"),
        pytest.param(replacing(BROKER, "failures_per_address: 20", "failures_per_address: 010"),
                     "failures_per_address:", "rate_limit.failures_per_address",
                     "expected an integer, got a string ('010') (a leading zero: write 10; YAML 1.1 reads",
                     id="integer-010"),
        pytest.param(replacing(BROKER, "failures_per_address: 20", "failures_per_address: 0x10"),
                     "failures_per_address:", "rate_limit.failures_per_address",
                     "expected an integer, got a string ('0x10') (write the number in decimal: 0x10 is the "
                     "hexadecimal form)", id="integer-hexadecimal"),
        pytest.param(replacing(BROKER, "failures_per_address: 20", "failures_per_address: 0b101"),
                     "failures_per_address:", "rate_limit.failures_per_address",
                     "(write the number in decimal: 0b101 is the binary form)", id="integer-binary"),
        pytest.param(replacing(KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: 04"), "max_chain_depth:",
                     "certificate.max_chain_depth", "(a leading zero: write 4;", id="municipality-04"),
    ],
)
def test_a_number_yaml_1_1_reads_in_another_base_is_refused_saying_so(config_dir: Path, edit: Edit, line: str,
                                                                     key: str, fragment: str) -> None:
    check(config_dir, edit, [Expected(BROKER if key.startswith(("session", "rate")) else KOMMUN_A, line, key,
                                      fragment)])


def test_a_ten_digit_organisation_number_with_a_leading_zero_is_read_as_written(config_dir: Path) -> None:
    """0120000005 was octal to YAML 1.1 (an integer, refused as unquoted); it is the string it looks like."""
    replacing(KOMMUN_A, ORGNR, "organization_number: 0120000005")(config_dir)

    assert load_settings(config_dir).municipalities["kommun-a"].config.organization_number == "0120000005"


KOMMUN_C = "municipalities/kommun-c.yaml"
ENTRA_METADATA = ("https://login.microsoftonline.com/0f7c8e3a-5b1d-4e62-9a35-1c2d3e4f5a6b/federationmetadata/"
                  "2007-06/federationmetadata.xml?appid=8a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d")


def _metadata_url(url: str) -> Edit:
    return replacing(KOMMUN_C, "    file: metadata/kommun-c-idp.xml",
                     f"    url: '{url}'\n    signing_certificates: [certs/kommun-a/root-ca.pem]")


def test_a_metadata_url_may_have_a_query(config_dir: Path) -> None:
    """Entra ID publishes each application's metadata at its tenant's URL with ?appid=<application id>."""
    _metadata_url(ENTRA_METADATA)(config_dir)

    saml = load_settings(config_dir).municipalities["kommun-c"].config.saml
    assert saml is not None
    assert saml.metadata.url == ENTRA_METADATA


def test_a_metadata_url_may_not_have_a_fragment(config_dir: Path) -> None:
    check(config_dir, _metadata_url(ENTRA_METADATA + "#top"),
          [Expected(KOMMUN_C, "url:", "saml.metadata.url", "expected an https:// URL without a fragment (#...), got")])


# --- plain value types ---------------------------------------------------------------------

ORGNR = 'organization_number: "2120001009"'


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        pytest.param('"2120001008"', "organisation number '2120001008' fails its check digit", id="bad-check-digit"),
        pytest.param('"212000100"', "expected a 10-digit organisation number, got '212000100'", id="nine-digits"),
        pytest.param('"21200010090"', "expected a 10-digit organisation number", id="eleven-digits"),
        pytest.param('"16212000-1009"', "expected a 10-digit organisation number", id="twelve-digit-form"),
        pytest.param('"21200010AB"', "expected a 10-digit organisation number", id="letters"),
        pytest.param("2120001009", 'expected the organisation number as a quoted string ("2120001234")',
                     id="unquoted-integer"),
        pytest.param("true", "expected an organisation number as a string", id="boolean"),
        # The documented form is ten digits with an optional hyphen after the sixth (schema: ^\d{6}-?\d{4}$).
        pytest.param('"2-1-2-0-0-0-1-0-0-9"', "expected a 10-digit organisation number", id="hyphens-anywhere"),
        pytest.param('"21200-01009"', "expected a 10-digit organisation number", id="hyphen-after-five"),
    ],
)
def test_an_invalid_organisation_number_is_refused(config_dir: Path, written: str, fragment: str) -> None:
    check(config_dir, replacing(KOMMUN_A, ORGNR, f"organization_number: {written}"),
          [Expected(KOMMUN_A, "organization_number:", "organization_number", fragment)])


def test_an_organisation_number_with_a_hyphen_after_six_digits_is_stored_without_it(config_dir: Path) -> None:
    replacing(KOMMUN_A, ORGNR, 'organization_number: "212000-1009"')(config_dir)

    assert load_settings(config_dir).municipalities["kommun-a"].config.organization_number == "2120001009"


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        pytest.param("3.999.1", "expected a dotted OID like 1.2.752.74.8.512, got '3.999.1'", id="first-arc-above-2"),
        pytest.param("2.999.01.3", "expected a dotted OID like", id="leading-zero"),
        pytest.param("2.999.1.3.", "expected a dotted OID like", id="trailing-dot"),
        pytest.param("2", "expected an OID as a string", id="one-arc"),
        pytest.param("'1.2.752.x'", "expected a dotted OID like", id="letter"),
        pytest.param("'urn:oid:1.2.752'", "expected a dotted OID like", id="urn-form"),
        pytest.param('"2.999.1.3\\n"', "expected a dotted OID like", id="trailing-newline"),
    ],
)
def test_an_invalid_policy_oid_is_refused(config_dir: Path, written: str, fragment: str) -> None:
    check(config_dir, replacing(KOMMUN_A, "oid: 2.999.1.3", f"oid: {written}"),
          [Expected(KOMMUN_A, "- oid:", "certificate.policies[0].oid", fragment)])


def test_a_duplicate_key_does_not_hide_the_files_other_problems(config_dir: Path) -> None:
    """Every problem of the file at once: the duplicate key, and the rest of the file checked as well."""
    check(config_dir, combined(
        replacing(KOMMUN_A, "login: certificate\n", "login: certificate\nlogin: certificate\n"),
        replacing(KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: four"),
    ), [Expected(KOMMUN_A, 10, "login", "duplicate key"),
        Expected(KOMMUN_A, "max_chain_depth:", "certificate.max_chain_depth", "expected an integer")])


def test_a_key_that_is_no_string_does_not_hide_its_siblings_problems(config_dir: Path) -> None:
    check(config_dir, replacing(KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: four\n  7: seven"),
          [Expected(KOMMUN_A, "7: seven", "certificate", "must be a string"),
           Expected(KOMMUN_A, "max_chain_depth:", "certificate.max_chain_depth", "expected an integer")])


def test_a_duplicate_key_does_not_hide_the_kept_values_own_problem(config_dir: Path) -> None:
    """The first value is the one kept: its own type error is another problem, said at once."""
    check(config_dir, replacing(KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: four\n  max_chain_depth: 4"),
          [Expected(KOMMUN_A, "max_chain_depth: 4", "certificate.max_chain_depth", "duplicate key"),
           Expected(KOMMUN_A, "max_chain_depth: four", "certificate.max_chain_depth", "expected an integer")])


def test_a_merge_the_yaml_reading_refused_is_reported_once(config_dir: Path) -> None:
    """The mapping is left empty: its keys are not reported missing as well. The line is the merged value's."""
    check(config_dir, replacing(KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: 4\n  <<: 5"),
          [Expected(KOMMUN_A, "<<: 5", "certificate", "YAML merge error: expected a mapping or list of mappings")])


def test_an_integer_too_long_for_python_to_read_is_refused_without_repeating_it(config_dir: Path) -> None:
    check(config_dir, replacing(KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: " + "9" * 5000),
          [Expected(KOMMUN_A, "max_chain_depth:", "certificate.max_chain_depth",
                    "an integer of 5000 digits is far past any setting")])


def test_a_value_the_yaml_reading_refused_is_not_reported_again(config_dir: Path) -> None:
    """``!!int four`` is one problem, said once: not also as a value that is missing or of the wrong type."""
    check(config_dir, replacing(KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: !!int four"),
          [Expected(KOMMUN_A, "max_chain_depth:", "certificate.max_chain_depth", "does not fit its tag")])


def test_any_policy_stands_for_no_assurance_level(config_dir: Path) -> None:
    """RFC 5280 §4.2.1.4: anyPolicy is "any policy": mapped to a LoA, a card asserting only it would prove one."""
    check(config_dir, replacing(KOMMUN_A, "oid: 2.999.1.3", "oid: 2.5.29.32.0"),
          [Expected(KOMMUN_A, "- oid:", "certificate.policies[0].oid",
                    "anyPolicy (2.5.29.32.0) stands for no assurance level: name the CA's own policy OID")])


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        pytest.param("http://www.example.se", "expected an https:// URL without query or fragment, "
                                              "got 'http://www.example.se'", id="http-refused"),
        pytest.param("https://www.example.se/?lang=sv", "expected an https:// URL without query", id="query"),
        pytest.param("https://www.example.se/#top", "expected an https:// URL without query", id="fragment"),
        pytest.param("www.example.se", "expected an https:// URL", id="no-scheme"),
        pytest.param("https://", "expected an https:// URL", id="no-host"),
        pytest.param("https://www.example .se", "expected an https:// URL", id="space-in-host"),
        # every client would refuse these later: said once, at load, with the line
        pytest.param("https://www.example.se:99999", "Port out of range", id="port-past-65535"),
        pytest.param("https://www.example.se:0", "a port from 1 to 65535", id="port-zero"),
        pytest.param("https://a:b:c", "Port could not be cast", id="two-colons"),
        pytest.param("https://[[x]", "does not appear to be an IPv4 or IPv6 address", id="broken-brackets"),
        pytest.param('"https://www.example.se\\n"', "expected an https:// URL", id="trailing-newline"),
        # a host no resolver looks up (RFC 1123 §2.1: labels of letters, digits and inner hyphens)
        pytest.param("https://www..example.se", "not a host name", id="empty-label"),
        pytest.param("https://-www.example.se", "not a host name", id="label-starting-with-a-hyphen"),
        pytest.param("https://[::1]8443", "after the IPv6 address", id="port-without-its-colon"),
    ],
)
def test_an_organisation_url_must_be_https(config_dir: Path, written: str, fragment: str) -> None:
    check(config_dir, replacing(BROKER, "url: https://www.example.se", f"url: {written}"),
          [Expected(BROKER, "url:", "idp.organization.url", fragment)])


def test_an_https_url_loses_its_trailing_slash(config_dir: Path) -> None:
    replacing(BROKER, "base_url: https://localhost:8443", "base_url: https://localhost:8443/")(config_dir)

    assert load_settings(config_dir).broker.idp.base_url == "https://localhost:8443"


@pytest.mark.parametrize(
    ("file", "old", "new", "line", "key"),
    [
        pytest.param(BROKER, "entity_id: https://localhost:8443/saml/idp/metadata", "entity_id: broker",
                     "entity_id: broker", "idp.entity_id", id="broker-not-a-uri"),
        pytest.param(DEMO_SP, "entity_id: https://localhost:8443/demo-sp/metadata", "entity_id: ftp://sp",
                     "entity_id: ftp://sp", "entity_id", id="sp-other-scheme"),
    ],
)
def test_an_entity_id_must_be_an_https_url_or_urn(
    config_dir: Path, file: str, old: str, new: str, line: str, key: str
) -> None:
    check(config_dir, replacing(file, old, new),
          [Expected(file, line, key, "expected an entity ID (an https:// URL or urn:")])


@pytest.mark.parametrize(("written", "network"), [
    pytest.param("'::ffff:10.0.4.0/120'", "10.0.4.0/24", id="ipv4-mapped-network"),
    pytest.param("'::ffff:10.0.4.5'", "10.0.4.5/32", id="ipv4-mapped-host"),
    pytest.param("'2001:db8::/64'", "2001:db8::/64", id="ipv6"),
])
def test_a_trusted_network_in_ipv4_mapped_form_is_its_ipv4_network(config_dir: Path, written: str,
                                                                    network: str) -> None:
    """A dual-stack listener shows an IPv4 proxy as ::ffff:a.b.c.d, which the broker compares as a.b.c.d
    (RFC 4291 §2.5.5.2): an entry copied from the log in that form must match it, not never."""
    replacing(BROKER, "trusted_networks: []", f"trusted_networks: [{written}]")(config_dir)
    proxy = load_settings(config_dir).broker.client_certificate.proxy
    assert [str(n.network) for n in proxy.trusted_networks] == [network]


# --- nested paths and all problems at once -----------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            replacing(BROKER, "      sv: Exempelregionen", "      sv: 17"),
            Expected(BROKER, "sv: 17", "idp.organization.name.sv", "expected a string, got a number (17)"),
            id="four-levels",
        ),
        pytest.param(
            replacing(BROKER, "trusted_networks: []", "trusted_networks: [10.0.0.0/8, 10.0.0.1/8]"),
            Expected(BROKER, "trusted_networks:", "client_certificate.proxy.trusted_networks[1]",
                     "expected a network like 10.0.0.0/24 or 127.0.0.1, got '10.0.0.1/8'"),
            id="item-of-a-list-four-levels-down",
        ),
        pytest.param(
            replacing(KOMMUN_B, "type: personnummer", "type: personnummer\n    pattern: '^19'"),
            Expected(KOMMUN_B, "pattern:", "certificate.identity.pattern",
                     "personnummer is checked by date and check digit; no pattern applies"),
            id="cross-field-rule-of-a-nested-dataclass",
        ),
        pytest.param(
            replacing(KOMMUN_A, "      loa: loa3\n", "      loa: loa3\n    - {oid: 2.999.1.3, loa: loa2}\n"),
            Expected(KOMMUN_A, "- {oid: 2.999.1.3", "certificate.policies[1].oid",
                     "duplicate policy OID (also policies[0])"),
            id="duplicate-policy-second-item",
        ),
        pytest.param(
            replacing(KOMMUN_A, "type: hsa_id ", "type: opaque "),
            Expected(KOMMUN_A, "identity:", "certificate.identity.pattern", "an opaque identity needs a pattern"),
            id="absent-key-named-by-a-cross-field-rule",
        ),
        pytest.param(
            replacing(DEMO_SP, "  - givenName\n", "  - givenname\n"),
            Expected(DEMO_SP, "- givenname", "release[2]", "unknown attribute 'givenname'"),
            id="service-provider-release-item",
        ),
        pytest.param(
            replacing(KOMMUN_C, "    attribute: employeeHsaId", "    attribute: employeeHSAId"),
            Expected(KOMMUN_C, "attribute: employeeHSAId", "saml.identity.attribute",
                     "unknown attribute 'employeeHSAId': write the canonical name 'employeeHsaId'"),
            id="upstream-identity-attribute-in-other-letter-cases",
        ),
        pytest.param(
            replacing(KOMMUN_C, "    attribute: employeeHsaId", "    attribute: urn:oid:1.2.752.29.6.2.1"),
            Expected(KOMMUN_C, "attribute: urn:oid", "saml.identity.attribute",
                     "unknown attribute 'urn:oid:1.2.752.29.6.2.1': write the canonical name 'employeeHsaId'"),
            id="upstream-identity-attribute-by-its-uri",
        ),
        pytest.param(
            replacing(KOMMUN_C, "required_attributes: [givenName, sn]", "required_attributes: [givenName, mail]"),
            Expected(KOMMUN_C, "required_attributes:", "saml.required_attributes[1]",
                     "unknown attribute 'mail' (known: personalIdentityNumber, employeeHsaId, givenName, sn, "
                     "displayName, o, ou, organizationIdentifier, orgAffiliation, transactionIdentifier)"),
            id="upstream-required-attribute",
        ),
        pytest.param(
            replacing(KOMMUN_C, "      canonical: displayName\n",
                      "      canonical: displayName\n    - {upstream: http://schemas.xmlsoap.org/ws/2005/05/identity/"
                      "claims/givenname, canonical: displayName}\n"),
            Expected(KOMMUN_C, "- {upstream:", "saml.attributes[3].upstream",
                     "mapped already (attributes[0]): an attribute the IdP sends has one name here"),
            id="upstream-attribute-mapped-to-two-names",
        ),
        pytest.param(
            replacing(KOMMUN_C, "      canonical: displayName\n",
                      "      canonical: displayName\n    - {upstream: http://schemas.xmlsoap.org/ws/2005/05/identity/"
                      "claims/surname, canonical: sn}\n"),
            Expected(KOMMUN_C, "- {upstream:", "saml.attributes[3].upstream",
                     "mapped already (attributes[1]): an attribute the IdP sends has one name here"),
            id="upstream-attribute-mapped-twice",
        ),
        # identities are matched with re.ASCII (broker.pki.identity, broker.saml.upstream_mapping), which a
        # pattern's own (?u) contradicts: every login would fail with a ValueError
        pytest.param(
            replacing(KOMMUN_A, "    source: subject_serial_number",
                      "    source: subject_serial_number\n    pattern: '(?u)SE[0-9]{10}-[A-Za-z0-9]+'"),
            Expected(KOMMUN_A, "pattern:", "certificate.identity.pattern",
                     "invalid regular expression: ASCII and UNICODE flags are incompatible"),
            id="identity-pattern-unicode-flag",
        ),
        pytest.param(
            replacing(KOMMUN_C, "    type: hsa_id\n", "    type: hsa_id\n    pattern: '(?u)SE2120003005-\\w+'\n"),
            Expected(KOMMUN_C, "pattern:", "saml.identity.pattern",
                     "invalid regular expression: ASCII and UNICODE flags are incompatible"),
            id="upstream-identity-pattern-unicode-flag",
        ),
    ],
)
def test_a_nested_error_is_reported_at_its_full_key_path(config_dir: Path, edit: Edit, expected: Expected) -> None:
    check(config_dir, edit, [expected])


def test_a_login_method_without_its_section_is_reported_at_the_login_line(config_dir: Path) -> None:
    """The missing section has no line of its own; the choice that needs it has one. Reported at the top of the
    file (the line of `name:`) under the key `saml`, the problem pointed at neither."""
    check(config_dir, replacing(KOMMUN_A, "login: certificate", "login: saml"), [
        Expected(KOMMUN_A, "login: saml", "login", "saml needs a saml section"),
        Expected(KOMMUN_A, "certificate:", "certificate", "a certificate section is only used with login: certificate"),
    ])


def test_every_problem_of_a_file_is_reported_together(config_dir: Path) -> None:
    combined(
        replacing(KOMMUN_A, 'organization_number: "2120001009"', "organization_number: 2120001009"),
        replacing(KOMMUN_A, "status: active", "status: activ"),
        replacing(KOMMUN_A, "trust_anchors:", "trust_anchor:"),
        replacing(KOMMUN_A, "loa: loa3", "loa: loa5"),
        replacing(KOMMUN_A, "mode: check", "mode: crl"),
    )(config_dir)

    assert_issues(load_issues(config_dir), [
        Expected(KOMMUN_A, "organization_number:", "organization_number", "as a quoted string"),
        Expected(KOMMUN_A, "status: activ", "status", "expected one of: onboarding, active, suspended"),
        Expected(KOMMUN_A, "certificate:", "certificate", "missing required key 'trust_anchors'"),
        Expected(KOMMUN_A, "trust_anchor:", "certificate.trust_anchor", "did you mean 'trust_anchors'?"),
        Expected(KOMMUN_A, "loa: loa5", "certificate.policies[0].loa", "expected one of: loa2, loa3"),
        Expected(KOMMUN_A, "mode: crl", "certificate.revocation.mode", "expected one of: check, none"),
    ], config_dir)


def test_problems_in_several_files_are_reported_together(config_dir: Path) -> None:
    combined(
        replacing(BROKER, "cookie_name: __Host-broker_session", "cookie_name: 123"),
        replacing(BROKER, "clock_skew: 60s", "clock_skew: a minute"),
        replacing(KOMMUN_B, "status: active", "status: activ"),
        replacing(DEMO_SP, "accept_onboarding: false", "accept_onboarding: nope"),
    )(config_dir)

    assert_issues(load_issues(config_dir), [
        Expected(BROKER, "clock_skew:", "idp.clock_skew", "expected a duration like"),
        Expected(BROKER, "cookie_name:", "session.cookie_name", "quote the value in YAML"),
        Expected(KOMMUN_B, "status: activ", "status", "expected one of: onboarding, active, suspended"),
        Expected(DEMO_SP, "accept_onboarding:", "accept_onboarding", "expected true or false, got a string ('nope')"),
    ], config_dir)


# --- the JSON Schema generator -------------------------------------------------------------

ROOTS = [
    pytest.param(schema.BrokerConfig, id="broker"),
    pytest.param(schema.MunicipalityConfig, id="municipality"),
    pytest.param(schema.ServiceProviderConfig, id="service-provider"),
]


def _dataclasses_under(cls: type[Any], seen: dict[str, type[Any]]) -> dict[str, type[Any]]:
    seen[cls.__name__] = cls
    for tp in typing.get_type_hints(cls).values():
        stack = [tp]
        while stack:
            t = stack.pop()
            stack.extend(typing.get_args(t))
            if dataclasses.is_dataclass(t) and isinstance(t, type) and t.__name__ not in seen \
                    and not hasattr(t, "from_config"):
                _dataclasses_under(t, seen)
    return seen


@pytest.mark.parametrize("root", ROOTS)
def test_the_schema_has_one_closed_definition_per_dataclass_with_its_required_keys(root: type[Any]) -> None:
    doc = json_schema(root, "title")
    expected = _dataclasses_under(root, {})

    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$ref"] == f"#/$defs/{root.__name__}"
    assert set(doc["$defs"]) == set(expected)
    for name, cls in expected.items():
        definition = doc["$defs"][name]
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        assert definition["type"] == "object"
        assert definition["additionalProperties"] is False, name
        assert list(definition["properties"]) == [f.name for f in fields], name
        assert definition.get("required", []) == required, name


def test_the_municipality_schema_spells_out_choices_and_minimums() -> None:
    defs = json_schema(schema.MunicipalityConfig, "t")["$defs"]

    assert defs["MunicipalityConfig"]["properties"]["status"]["enum"] == ["onboarding", "active", "suspended"]
    assert defs["MunicipalityConfig"]["required"] == ["name", "organization_number", "status", "login"]
    assert defs["PolicyMapping"]["properties"]["loa"]["enum"] == ["loa2", "loa3", "loa4", "sambi-loa2", "sambi-loa3"]
    assert defs["CertificateLogin"]["properties"]["trust_anchors"]["minItems"] == 1
    assert defs["CertificateLogin"]["properties"]["policies"]["minItems"] == 1
    assert defs["CertificateLogin"]["properties"]["max_chain_depth"] == {
        "type": "integer", "minimum": 0, "maximum": 16, "description": "maximum intermediates in a path",
        "default": 4}


def test_the_broker_schema_gives_defaults_and_documentation() -> None:
    defs = json_schema(schema.BrokerConfig, "t")["$defs"]

    assert defs["SessionConfig"]["properties"]["cookie_name"]["default"] == "__Host-broker_session"
    assert defs["AuditConfig"]["properties"]["client_address"]["default"] == "clear"
    assert defs["IdpConfig"]["properties"]["relay_state_max_bytes"]["minimum"] == 1
    assert defs["IdpConfig"]["properties"]["base_url"]["examples"] == ["https://idp.region.example.se"]
    assert defs["BrokerConfig"]["properties"]["redis"]["anyOf"][1] == {"type": "null"}
    assert all("description" in prop for d in defs.values() for prop in d["properties"].values())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("30m", id="30m"), pytest.param("1h30m", id="1h30m"), pytest.param("500ms", id="500ms"),
        pytest.param("7d", id="7d"), pytest.param("1.5h", id="1.5h"), pytest.param("10 minutes", id="words"),
        pytest.param("1h30", id="no-unit"), pytest.param("-5m", id="negative"), pytest.param("", id="empty"),
    ],
)
def test_the_duration_pattern_of_the_schema_agrees_with_the_parser(text: str) -> None:
    pattern = json_schema(schema.SessionConfig, "t")["$defs"]["SessionConfig"]["properties"]["idle_timeout"][
        "oneOf"][1]["pattern"]
    try:
        Duration.parse(text)
    except ValueError:
        parses = False
    else:
        parses = True

    assert bool(re.search(pattern, text)) is parses


def _ecma_matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern`` as a JSON Schema validator reads it: an ECMA-262 regular expression
    (JSON Schema 2020-12 Validation §6.3.3), compiled as ajv and the YAML language server compile it (flag u)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("the schema's patterns are checked as ECMA-262 regular expressions under Node.js 20 or later "
                    "(node on PATH), which is not installed")
    script = "const [p, v] = JSON.parse(process.argv[1]); process.stdout.write(String(new RegExp(p, 'u').test(v)))"
    result = subprocess.run([node, "-e", script, json.dumps([pattern, value])], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, f"{pattern!r} is no ECMA-262 regular expression: {result.stderr.strip()}"
    return result.stdout == "true"


@pytest.mark.parametrize(
    ("root", "definition", "key", "value"),
    [
        pytest.param(schema.MunicipalityConfig, "PolicyMapping", "oid", "1.2.752.74.8.512", id="policy-oid"),
        pytest.param(schema.BrokerConfig, "SentinelConfig", "addresses", "10.0.0.11:26379", id="sentinel-ipv4"),
        pytest.param(schema.BrokerConfig, "SentinelConfig", "addresses", "[fd00::1]:26379", id="sentinel-ipv6"),
        pytest.param(schema.BrokerConfig, "ClusterConfig", "addresses", "redis-1.example.se:6379", id="cluster-name"),
    ],
)
def test_the_schema_patterns_are_ecma_262_and_take_what_the_loader_takes(
        root: type[Any], definition: str, key: str, value: str) -> None:
    prop = json_schema(root, "t")["$defs"][definition]["properties"][key]
    pattern = prop.get("items", prop)["pattern"]

    assert re.search(pattern, value)  # the loader's own reading
    assert _ecma_matches(pattern, value)
