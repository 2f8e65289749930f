"""Four gaps in pysaml2 7.5's Response handling that the broker closes itself (broker/saml/upstream_response.py).

Each test feeds the same corpus file (tests/corpus/upstream) first to a real pysaml2 SP, ``Saml2Client``,
configured as the broker's SP toward the corpus IdP (its metadata, the ACS URL, assertions must be signed,
no unsolicited Responses), through ``parse_authn_request_response`` as an SP application would call it; then
to the broker's validator, which must refuse the same bytes with the specific reason.

Time: the corpus has fixed instants (January 2026) and pysaml2 judges time by the wall clock only, so the
client is given ``accepted_time_diff`` of 20 years. That switches off nothing but the time checks; the
control tests below show this client still refuses a wrong audience, a foreign signing key, a wrapped
Assertion and an unknown InResponseTo, and accepts the baseline.
"""

from __future__ import annotations

import base64
from importlib.metadata import version
from typing import Any

import pytest
from saml2 import BINDING_HTTP_POST
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.response import AuthnResponse, UnsolicitedResponse, VerificationError
from saml2.sigver import SignatureError

from broker.errors import UpstreamRejected
from broker.saml.upstream_response import Expectations, ResponseValidator, parse_response
from broker.saml.xmldsig import XmlVerifier
from broker.saml.xmlenc import Decrypter
from tests.corpus.upstream import generate as corpus
from tests.factories.saml import xmlsec_binary

TWENTY_YEARS = 20 * 365 * 24 * 3600
DS = "http://www.w3.org/2000/09/xmldsig#"
RSA_SHA1 = DS + "rsa-sha1"
SHA1 = DS + "sha1"


def test_this_is_pysaml2_7_5() -> None:
    assert version("pysaml2").startswith("7.5."), "re-check every gap below against the new pysaml2"


@pytest.fixture(scope="module")
def client() -> Saml2Client:
    conf: dict[str, Any] = {
        "entityid": corpus.SP_ENTITY_ID,
        "key_file": str(corpus.KEYS / "sp-encryption.key"),
        "cert_file": str(corpus.KEYS / "sp-encryption.crt"),
        "xmlsec_binary": xmlsec_binary(),
        "accepted_time_diff": TWENTY_YEARS,
        "allow_unknown_attributes": True,
        "service": {"sp": {
            "endpoints": {"assertion_consumer_service": [(corpus.ACS_URL, BINDING_HTTP_POST)]},
            "want_assertions_signed": True,
            "want_response_signed": False,
            "allow_unsolicited": False,
        }},
        "metadata": {"inline": [(corpus.KEYS / "idp-metadata.xml").read_text(encoding="utf-8")]},
    }
    config = SPConfig()
    config.load(conf)
    return Saml2Client(config=config)


@pytest.fixture(scope="module")
def validator() -> ResponseValidator:
    keys = corpus.load_keys()
    return ResponseValidator(XmlVerifier([keys.idp.certificate]), Decrypter([keys.sp.key_pem]))


def corpus_file(name: str) -> bytes:
    return (corpus.HERE / name).read_bytes()


def pysaml2_parse(client: Saml2Client, xml: bytes, **kwargs: Any) -> AuthnResponse | None:
    """What an application gets from pysaml2 for ``xml`` posted to its ACS, answering REQUEST_ID."""
    response: AuthnResponse | None = client.parse_authn_request_response(
        base64.b64encode(xml).decode(), BINDING_HTTP_POST, {corpus.REQUEST_ID: "/"}, **kwargs)
    return response


def broker_reason(validator: ResponseValidator, xml: bytes) -> str | None:
    """The broker's reason for refusing ``xml`` (None: accepted), at the corpus's fixed NOW."""
    expect = Expectations(idp_entity_id=corpus.IDP_ENTITY_ID, sp_entity_id=corpus.SP_ENTITY_ID,
                          acs_url=corpus.ACS_URL, request_id=corpus.REQUEST_ID, signed_element="assertion",
                          skew=corpus.SKEW, now=corpus.NOW)
    try:
        validator.validate(parse_response(xml, corpus.MAX_BYTES), expect)
    except UpstreamRejected as exc:
        return exc.reason
    return None


# --- controls: the pysaml2 client is set up to validate -----------------------------------------------


def test_control_pysaml2_accepts_the_baseline(client: Saml2Client, validator: ResponseValidator) -> None:
    xml = corpus_file("valid.xml")
    response = pysaml2_parse(client, xml)
    assert response is not None
    assert response.assertion is not None
    assert response.name_id.text == corpus.NAME_ID
    assert response.ava[corpus.HSA_ATTRIBUTE] == [corpus.HSA_ID]
    assert broker_reason(validator, xml) is None


@pytest.mark.parametrize(("name", "error", "message"), [
    ("audience_wrong.xml", Exception, "AudienceRestrictions conditions not satisfied"),
    ("foreign_key_embedded_cert.xml", SignatureError, "Failed to verify signature"),
    ("wrap_extensions.xml", SignatureError, "Signature missing for assertion"),
    ("in_response_to_mismatch.xml", UnsolicitedResponse, "_corpus-request-never-sent"),
])
def test_control_pysaml2_refuses_what_it_does_check(client: Saml2Client, name: str, error: type[Exception],
                                                     message: str) -> None:
    with pytest.raises(error, match=message):
        pysaml2_parse(client, corpus_file(name))


# --- the gaps --------------------------------------------------------------------------------------------


def test_gap_recipient_is_not_checked_unless_the_expected_entity_is_passed_in(
        client: Saml2Client, validator: ResponseValidator) -> None:
    """pysaml2 checks SubjectConfirmationData Recipient only when the caller passes ``conv_info`` (its
    ``verify_recipient`` returns True when conv_info is empty); ``parse_authn_request_response`` defaults it to
    None. The same call with conv_info naming the SP refuses the file, which shows the file is what it says."""
    xml = corpus_file("recipient_wrong.xml")
    response = pysaml2_parse(client, xml)
    assert response is not None
    assert response.assertion is not None, "pysaml2 accepts the assertion"
    assert response.name_id.text == corpus.NAME_ID
    data = response.assertion.subject.subject_confirmation[0].subject_confirmation_data
    assert data.recipient == "https://sp.elsewhere.example/acs"

    with pytest.raises(VerificationError, match="No valid recipient"):
        pysaml2_parse(client, xml, conv_info={"entity_id": corpus.SP_ENTITY_ID})

    assert broker_reason(validator, xml) == "upstream_recipient_mismatch"


def test_gap_wrong_destination_comes_back_as_a_response_without_assertion(
        client: Saml2Client, validator: ResponseValidator) -> None:
    """pysaml2 notices the Destination (it logs "destination ... not in return addresses") but its ``_verify``
    returns None, which ``_parse_response`` ignores: the application gets an AuthnResponse object, no
    exception, with no assertion, no NameID and no attributes; session_info() fails only later."""
    xml = corpus_file("destination_wrong.xml")
    response = pysaml2_parse(client, xml)
    assert isinstance(response, AuthnResponse), "no error: a response object comes back"
    assert response.assertion is None
    assert response.name_id is None
    assert response.in_response_to == corpus.REQUEST_ID
    assert response.response.destination == "https://sp.elsewhere.example/acs"

    assert broker_reason(validator, xml) == "upstream_destination_mismatch"


def test_gap_sha1_signatures_are_accepted(client: Saml2Client, validator: ResponseValidator) -> None:
    """pysaml2 (xmlsec1 backend) verifies an RSA-SHA1 signature with a SHA-1 digest and accepts the Assertion;
    it has no algorithm allow-list for what it receives."""
    xml = corpus_file("sha1_signature.xml")
    assert f'Algorithm="{RSA_SHA1}"'.encode() in xml
    assert f'Algorithm="{SHA1}"'.encode() in xml
    response = pysaml2_parse(client, xml)
    assert response is not None
    assert response.assertion is not None, "pysaml2 accepts the SHA-1 signed assertion"
    assert response.name_id.text == corpus.NAME_ID

    assert broker_reason(validator, xml) == "upstream_algorithm_not_allowed"


def test_gap_assertion_version_other_than_2_0_is_accepted(client: Saml2Client, validator: ResponseValidator) -> None:
    """pysaml2 checks the Response's Version only; a (validly signed) Assertion with Version="1.1" is accepted."""
    xml = corpus_file("version_1_1_assertion.xml")
    response = pysaml2_parse(client, xml)
    assert response is not None
    assert response.response.version == "2.0"
    assert response.assertion is not None, "pysaml2 accepts the assertion"
    assert response.assertion.version == "1.1"
    assert response.name_id.text == corpus.NAME_ID

    assert broker_reason(validator, xml) == "upstream_version_unsupported"
