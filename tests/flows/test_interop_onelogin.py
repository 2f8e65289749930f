"""Interoperability with a second, independent SAML SP: OneLogin's python3-saml (tests/factories/onelogin_sp.py).

The SP runs in strict mode, wants signed assertions (and signed Responses where the broker's file for it says
``sign_response: true``), signs its requests with RSA-SHA256 and refuses SHA-1 (``rejectDeprecatedAlgorithm``).
It takes the broker's IdP settings from /saml/idp/metadata (``OneLogin_Saml2_IdPMetadataParser``); the broker
takes the SP from the metadata python3-saml generates. The browser is the test client with Anna's (or Bo's)
card, as in the other flow tests. Each outcome is python3-saml's own verdict, then checked by the test:

1. metadata both ways, and the broker's metadata signature under ``validate_metadata_sign`` (Metadata §3.1);
2. an SP-initiated certificate login (signed HTTP-Redirect AuthnRequest, HTTP-POST Response) that
   ``process_response`` accepts: NameID, SessionIndex, Swedish eID framework attributes, LoA (Profiles §4.1);
3. RelayState, ForceAuthn, RequestedAuthnContext, and the error statuses python3-saml sees (Core §3.2.2.2);
4. single logout started by python3-saml and started by another SP, the pysaml2 demo SP (Profiles §4.4);
5. where two implementations commonly disagree: an HTTP-POST request signed by python3-saml's own XML-DSig
   code, the validity window at ±1 s, Destination and InResponseTo, and how the octets of a Redirect
   signature are rebuilt from the query (Bindings §3.4.4.1).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from flask import Flask
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth  # type: ignore[import-untyped]
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser  # type: ignore[import-untyped]
from onelogin.saml2.utils import OneLogin_Saml2_Utils  # type: ignore[import-untyped]
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML  # type: ignore[import-untyped]
from saml2 import BINDING_HTTP_REDIRECT
from werkzeug.test import TestResponse

from broker.config.loader import Settings, load_settings
from broker.demo.sp import DemoSp
from tests.factories.authnrequests import assert_refused, open_browser, redirect_message, status_codes
from tests.factories.onelogin_sp import (
    PERSISTENT,
    RSA_SHA256,
    SHA256,
    SP_ACS_URL,
    SP_BASE,
    SP_ENTITY_ID,
    SP_ID,
    SP_LOGIN_URL,
    SP_SLO_URL,
    TRANSIENT,
    OneLoginSp,
    SentRequest,
    SpKeys,
    SpPolicy,
    certificate_body,
    logout_request_fields,
    register_with_broker,
    settings_from_idp_metadata,
    sp_metadata,
)
from tests.factories.saml import BASE_URL, Browser, forms, saml_response_form
from tests.flows.test_federation_logout import data, events, hop, sp_answers, sp_logout_url, sso_login

IDP_ENTITY_ID = BASE_URL + "/saml/idp/metadata"
SSO_URL = BASE_URL + "/saml/idp/sso"
SLO_URL = BASE_URL + "/saml/idp/slo"
DEMO_SP = BASE_URL + "/demo-sp/metadata"
DEMO_SP_SLO = BASE_URL + "/demo-sp/slo"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
LOA4 = "http://id.elegnamnden.se/loa/1.0/loa4"

# Swedish eID framework attribute names (REFERENCE.md, "SAML attribute names")
PERSONAL_IDENTITY_NUMBER = "urn:oid:1.2.752.29.4.13"
EMPLOYEE_HSA_ID = "urn:oid:1.2.752.29.6.2.1"
GIVEN_NAME = "urn:oid:2.5.4.42"
SURNAME = "urn:oid:2.5.4.4"
DISPLAY_NAME = "urn:oid:2.16.840.1.113730.3.1.241"

STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
SUCCESS = STATUS + "Success"
LIVE = (SUCCESS, None)                                  # see session_at_broker
ENDED = (STATUS + "Responder", STATUS + "NoPassive")
SESSION_COOKIE = "__Host-broker_session"


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sp_keys() -> SpKeys:
    return SpKeys.generate(dt.datetime.now(dt.UTC))


@pytest.fixture
def policy() -> SpPolicy:
    """The SP's security section; a test parametrises ``policy`` for another."""
    return SpPolicy()


@pytest.fixture
def signed_messages() -> bool:
    """``sign_response`` in the broker's file for the SP; a test parametrises ``signed_messages``."""
    return True


@pytest.fixture
def settings(config_dir: Path, sp_keys: SpKeys, policy: SpPolicy, signed_messages: bool) -> Settings:
    """The example configuration plus python3-saml's SP, registered from the metadata it generated."""
    register_with_broker(config_dir, sp_metadata(sp_keys, policy), sign_response=signed_messages,
                         encrypt_assertions=policy.want_assertions_encrypted)
    return load_settings(config_dir)


@pytest.fixture
def idp_metadata(app: Flask) -> bytes:
    """The broker's IdP metadata, as an integrator downloads it from /saml/idp/metadata."""
    response = open_browser(app, None).get(IDP_ENTITY_ID)
    assert (response.status_code, response.headers["Content-Type"]) == (200, "application/samlmetadata+xml")
    return response.get_data()


@pytest.fixture
def onelogin(idp_metadata: bytes, sp_keys: SpKeys, policy: SpPolicy) -> OneLoginSp:
    return OneLoginSp(settings_from_idp_metadata(idp_metadata, sp_keys, policy))


@pytest.fixture
def idp_certificate(config_dir: Path) -> str:
    """The broker's signing certificate (PEM) from its key directory: what the operator hands out of band."""
    return (config_dir / "keys" / "idp-signing.crt").read_text()


# --- helpers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """A request python3-saml sent, the form of the broker's answer, and python3-saml's Auth after
    ``process_response``."""

    sent: SentRequest
    action: str
    fields: dict[str, str]
    auth: OneLogin_Saml2_Auth

    @property
    def root(self) -> etree._Element:
        return etree.fromstring(base64.b64decode(self.fields["SAMLResponse"]))

    def the(self, path: str) -> etree._Element:
        """The one element at ``path`` (python3-saml's XPath helper and namespace prefixes)."""
        found = OneLogin_Saml2_XML.query(self.root, path)
        assert len(found) == 1, f"expected one {path}, found {len(found)}"
        element: etree._Element = found[0]
        return element


def response_page(browser: Browser, sent: SentRequest) -> TestResponse:
    """The browser takes ``sent`` to the broker: Redirect, or POST when it has form fields."""
    page = browser.post(sent.url, sent.fields) if sent.fields else browser.get(sent.url)
    assert page.status_code == 200, (page.status_code, page.headers.get("X-Broker-Reason"))
    return page


def answered(browser: Browser, onelogin: OneLoginSp, sent: SentRequest) -> Answered:
    """The broker's Response, posted where its page's form says, processed by python3-saml."""
    action, fields = saml_response_form(response_page(browser, sent))
    return Answered(sent, action, fields, onelogin.acs(action, fields, sent.request_id))


def accepted(browser: Browser, onelogin: OneLoginSp, sent: SentRequest | None = None) -> Answered:
    """A login python3-saml accepts: no errors, no error reason, authenticated, in response to ``sent``."""
    result = answered(browser, onelogin, sent or onelogin.login())
    assert (result.auth.get_errors(), result.auth.get_last_error_reason()) == ([], None)
    assert result.auth.is_authenticated()
    assert result.auth.get_last_response_in_response_to() == result.sent.request_id
    return result


def statuses(auth: OneLogin_Saml2_Auth) -> tuple[str, str | None]:
    """(top-level, second-level) StatusCode of the Response python3-saml processed last: the top one by
    python3-saml's ``get_status``, the second by its XPath helper (``get_status`` shows only a message)."""
    document = OneLogin_Saml2_XML.to_etree(auth.get_last_response_xml())
    second = OneLogin_Saml2_XML.query(document, "/samlp:Response/samlp:Status/samlp:StatusCode/samlp:StatusCode")
    return str(OneLogin_Saml2_Utils.get_status(document)["code"]), str(second[0].get("Value")) if second else None


def session_at_broker(browser: Browser, onelogin: OneLoginSp) -> tuple[str, str | None]:
    """Does the broker hold this browser's session? An IsPassive login without the card is answered LIVE
    (Success) from a session and ENDED (NoPassive) without one."""
    saved, browser.certificate_pem = browser.certificate_pem, None
    try:
        return statuses(answered(browser, onelogin, onelogin.login(is_passive=True)).auth)
    finally:
        browser.certificate_pem = saved


def session_cookie(browser: Browser) -> str:
    found = browser.client.get_cookie(SESSION_COOKIE)
    assert found is not None, "no broker session cookie"
    return found.value


def signature_algorithms(root: etree._Element) -> tuple[str | None, str | None]:
    """(SignatureMethod, DigestMethod) of the enveloped signature that is a child of ``root``."""
    method = OneLogin_Saml2_XML.query(root, "./ds:Signature/ds:SignedInfo/ds:SignatureMethod")
    digest = OneLogin_Saml2_XML.query(root, "./ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestMethod")
    return method[0].get("Algorithm"), digest[0].get("Algorithm")


# --- 1. metadata, both ways ------------------------------------------------------------------------------------


def test_python3_saml_takes_the_idp_settings_from_the_brokers_metadata(idp_metadata: bytes, onelogin: OneLoginSp,
                                                                        idp_certificate: str) -> None:
    """The metadata at /saml/idp/metadata is schema-valid (SAML Metadata §2) for python3-saml's own copy of the
    schema, and its parser finds the entity ID, the SSO and SLO endpoints for both bindings and the one signing
    certificate, which is the key the broker signs with."""
    valid = OneLogin_Saml2_XML.validate_xml(idp_metadata, "saml-schema-metadata-2.0.xsd")
    assert not isinstance(valid, str), f"python3-saml finds the metadata schema-invalid: {valid}"
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(idp_metadata)
    assert parsed["idp"] == {
        "entityId": IDP_ENTITY_ID,
        "singleSignOnService": {"url": SSO_URL, "binding": REDIRECT},
        "singleLogoutService": {"url": SLO_URL, "binding": REDIRECT},
        "x509cert": certificate_body(idp_certificate),   # one signing key, the one the broker signs with
    }
    assert parsed["sp"] == {"NameIDFormat": PERSISTENT}   # the first NameIDFormat the broker offers
    post = OneLogin_Saml2_IdPMetadataParser.parse(idp_metadata, required_sso_binding=POST, required_slo_binding=POST)
    assert (post["idp"]["singleSignOnService"]["url"], post["idp"]["singleLogoutService"]["url"]) == (SSO_URL, SLO_URL)
    # what the SP runs with: the IdP part read from metadata, its own security policy over it
    assert (onelogin.settings.get_idp_sso_url(), onelogin.settings.get_idp_slo_url()) == (SSO_URL, SLO_URL)
    assert onelogin.settings.get_idp_cert() == OneLogin_Saml2_Utils.format_cert(certificate_body(idp_certificate))
    assert onelogin.settings.get_security_data()["authnRequestsSigned"] is True


def test_sp_set_up_as_python3_saml_intends_signs_its_requests(browser: Browser, idp_metadata: bytes,
                                                               sp_keys: SpKeys) -> None:
    """SAML Metadata §2.4.3: WantAuthnRequestsSigned states the IdP's requirement. The broker requires this SP's
    AuthnRequests to be signed (``require_signed_requests: true``, as config/example's demo-sp.yaml has), so its
    metadata must say "true": python3-saml, set up as it intends (the IdP metadata merged over the SP's
    settings), takes ``authnRequestsSigned`` from it. Published "false", the SP would stop signing and every user
    would get the saml_request_unsigned page."""
    sp = OneLoginSp(settings_from_idp_metadata(idp_metadata, sp_keys, SpPolicy(), metadata_wins=True))
    assert sp.settings.get_security_data()["authnRequestsSigned"] is True, (
        "the broker's metadata tells python3-saml that AuthnRequests need not be signed")
    accepted(browser, sp)


@pytest.mark.parametrize(("certificate", "tamper", "verified"), [
    pytest.param("broker", False, True, id="broker-signing-certificate"),
    pytest.param("other", False, False, id="another-certificate"),
    pytest.param("broker", True, False, id="sso-location-changed-after-signing"),
])
def test_metadata_signature_verifies_with_the_brokers_certificate_only(
        idp_metadata: bytes, idp_certificate: str, sp_keys: SpKeys, certificate: str, tamper: bool,
        verified: bool) -> None:
    """SAML Metadata §3.1: the EntityDescriptor carries an enveloped signature; python3-saml's
    ``validate_metadata_sign`` checks it with the certificate the operator was given out of band."""
    xml = idp_metadata.replace(SSO_URL.encode(), b"https://attacker.example/sso") if tamper else idp_metadata
    assert (xml != idp_metadata) is tamper
    cert = idp_certificate if certificate == "broker" else sp_keys.cert_pem
    assert OneLogin_Saml2_Utils.validate_metadata_sign(xml, cert) is verified


def test_broker_reads_the_metadata_python3_saml_generates(settings: Settings, sp_keys: SpKeys) -> None:
    meta = settings.service_providers[SP_ID].metadata
    assert meta.entity_id == SP_ENTITY_ID
    assert (meta.authn_requests_signed, meta.want_assertions_signed) == (True, True)
    assert [(e.binding, e.location, e.index) for e in meta.assertion_consumer_services] == [(POST, SP_ACS_URL, 1)]
    assert [(e.binding, e.location) for e in meta.single_logout_services] == [(REDIRECT, SP_SLO_URL)]
    assert meta.signing_certificates == (x509.load_pem_x509_certificate(sp_keys.cert_pem.encode()),)
    assert meta.nameid_formats == (PERSISTENT,)


# --- 2. an SP-initiated certificate login -----------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    card: str
    identifier: str                    # the HSA-id or personnummer the card carries
    loa: str
    attributes: dict[str, list[str]]   # by Name: the Swedish eID framework's URIs
    friendly: dict[str, list[str]]     # by FriendlyName: the broker's canonical names


ANNA = User("anna.pem", "SE2120001009-anna", LOA3,
            {EMPLOYEE_HSA_ID: ["SE2120001009-anna"], GIVEN_NAME: ["Anna"], SURNAME: ["Demosson"],
             DISPLAY_NAME: ["Anna Demosson"]},
            {"employeeHsaId": ["SE2120001009-anna"], "givenName": ["Anna"], "sn": ["Demosson"],
             "displayName": ["Anna Demosson"]})
BO = User("bo.pem", "191212121212", LOA2,
          {PERSONAL_IDENTITY_NUMBER: ["191212121212"], GIVEN_NAME: ["Bo"], SURNAME: ["Demosson"],
           DISPLAY_NAME: ["Bo Demosson"]},
          {"personalIdentityNumber": ["191212121212"], "givenName": ["Bo"], "sn": ["Demosson"],
           "displayName": ["Bo Demosson"]})


@pytest.mark.parametrize("user", [pytest.param(ANNA, id="anna-hsa-id-loa3"), pytest.param(BO, id="bo-pnr-loa2")])
@pytest.mark.parametrize(("signed_messages", "policy"), [
    pytest.param(False, SpPolicy(want_messages_signed=False), id="assertion-signed"),
    pytest.param(True, SpPolicy(want_messages_signed=True), id="response-and-assertion-signed"),
])
def test_certificate_login_is_accepted_by_python3_saml(browser: Browser, onelogin: OneLoginSp, users: Path,
                                                       settings: Settings, user: User, signed_messages: bool) -> None:
    browser.certificate_pem = (users / user.card).read_text()
    sent = onelogin.login()
    assert redirect_message(sent.url, "SAMLRequest").parameters["SigAlg"] == RSA_SHA256
    result = accepted(browser, onelogin, sent)
    auth = result.auth

    assert result.action == SP_ACS_URL
    assert (auth.get_nameid_format(), auth.get_nameid_nq(), auth.get_nameid_spnq()) == (
        PERSISTENT, IDP_ENTITY_ID, SP_ENTITY_ID)
    assert auth.get_nameid() == result.the("/samlp:Response/saml:Assertion/saml:Subject/saml:NameID").text
    assert user.identifier not in auth.get_nameid()   # a pseudonym (REFERENCE: persistent NameIDs per SP)
    statement = result.the("/samlp:Response/saml:Assertion/saml:AuthnStatement")
    assert auth.get_session_index() == statement.get("SessionIndex")
    assert len(auth.get_session_index()) >= 16
    assert auth.get_last_authn_contexts() == [user.loa]
    assert auth.get_attributes() == user.attributes
    assert auth.get_friendlyname_attributes() == user.friendly
    # SessionNotOnOrAfter (Core §2.7.2) = AuthnInstant + the broker's absolute session timeout, as python3-saml reads
    authn_instant = OneLogin_Saml2_Utils.parse_SAML_to_time(statement.get("AuthnInstant"))
    absolute = settings.broker.session.absolute_timeout.timedelta.total_seconds()
    assert auth.get_session_expiration() == authn_instant + absolute
    root = result.root
    signed = [e for e in (root, *OneLogin_Saml2_XML.query(root, "/samlp:Response/saml:Assertion"))
              if OneLogin_Saml2_XML.query(e, "./ds:Signature")]
    assert [etree.QName(e).localname for e in signed] == (["Response", "Assertion"] if signed_messages
                                                          else ["Assertion"])
    assert len(OneLogin_Saml2_XML.query(root, "//ds:Signature")) == len(signed)
    for element in signed:
        assert signature_algorithms(element) == (RSA_SHA256, SHA256)


@pytest.mark.parametrize("policy", [pytest.param(SpPolicy(want_assertions_encrypted=True), id="encrypted")])
@pytest.mark.parametrize("signed_messages", [pytest.param(False, id="assertion-signed"),
                                             pytest.param(True, id="response-signed-too")])
def test_encrypted_assertion_is_decrypted_by_python3_saml(browser: Browser, onelogin: OneLoginSp, users: Path,
                                                         signed_messages: bool) -> None:
    """``wantAssertionsEncrypted``: python3-saml's metadata publishes its certificate for encryption, the broker's
    file says ``encrypt_assertions``; python3-saml decrypts with its key (python-xmlsec) and checks the broker's
    signature on what it decrypted. ``wantMessagesSigned`` follows the broker's ``sign_response``."""
    onelogin.settings.get_security_data()["wantMessagesSigned"] = signed_messages
    browser.certificate_pem = (users / "bo.pem").read_text()
    result = accepted(browser, onelogin)
    assert OneLogin_Saml2_XML.query(result.root, "/samlp:Response/saml:Assertion") == []
    assert len(OneLogin_Saml2_XML.query(result.root, "/samlp:Response/saml:EncryptedAssertion")) == 1
    assert b"191212121212" not in etree.tostring(result.root)
    assert result.auth.get_attributes()["urn:oid:1.2.752.29.4.13"] == ["191212121212"]
    assert result.auth.get_last_authn_contexts() == [LOA2]
    assert result.auth.get_nameid_format() == PERSISTENT


@pytest.mark.parametrize("signed_messages", [pytest.param(False, id="sign-response-false")])
def test_sp_wanting_signed_messages_needs_sign_response(browser: Browser, onelogin: OneLoginSp,
                                                        signed_messages: bool) -> None:
    """``sign_response: false`` (the default) signs only the Assertion; python3-saml with wantMessagesSigned then
    refuses the Response, so such an SP needs ``sign_response: true`` in its file."""
    result = answered(browser, onelogin, onelogin.login())
    assert result.auth.get_errors() == ["invalid_response"]
    assert result.auth.get_last_error_reason() == "The Message of the Response is not signed and the SP require it"


@pytest.mark.parametrize("policy", [pytest.param(SpPolicy(nameid_format=TRANSIENT), id="transient")])
def test_transient_nameid_is_new_at_each_login(browser: Browser, onelogin: OneLoginSp, policy: SpPolicy) -> None:
    """SAML Core §8.3.8: NameIDPolicy transient gets a new identifier each time, even from one session."""
    first, second = accepted(browser, onelogin).auth, accepted(browser, onelogin).auth
    assert first.get_nameid_format() == second.get_nameid_format() == TRANSIENT
    assert first.get_nameid() != second.get_nameid()
    assert first.get_session_index() == second.get_session_index()   # one broker session answered both


@pytest.mark.parametrize(("message", "reason"), [
    pytest.param("authn-request", "saml_request_unsigned", id="authn-request"),
    pytest.param("logout-request", "logout_request_invalid", id="logout-request"),
])
def test_unsigned_requests_are_refused(browser: Browser, idp_metadata: bytes, sp_keys: SpKeys, onelogin: OneLoginSp,
                                       message: str, reason: str) -> None:
    """The SP's metadata says AuthnRequestsSigned="true" (and its file require_signed_requests); logout messages
    must be signed whatever the metadata (Profiles §4.4.4.1). An SP that stopped signing, e.g. because it let the
    IdP metadata's WantAuthnRequestsSigned decide (see tests/factories/onelogin_sp.py), gets a page, no Response."""
    careless = OneLoginSp(settings_from_idp_metadata(
        idp_metadata, sp_keys, SpPolicy(authn_requests_signed=False, sign_logout_messages=False)))
    if message == "authn-request":
        sent = careless.login()
    else:
        auth = accepted(browser, onelogin).auth
        sent = careless.logout(name_id=auth.get_nameid(), session_index=auth.get_session_index())
    assert "Signature=" not in sent.url
    page = browser.get(sent.url)
    assert_refused(page, reason)
    assert not [f for _, f in forms(page) if "SAMLResponse" in f]


# --- 3. RelayState, ForceAuthn, RequestedAuthnContext, error statuses --------------------------------------------


@pytest.mark.parametrize(("relay_state", "expected"), [
    pytest.param(None, SP_LOGIN_URL, id="python3-saml-default-the-login-page-url"),
    pytest.param("/ärende 42?flik=ö&x=a+b%20c#top", "/ärende 42?flik=ö&x=a+b%20c#top",
                 id="non-ascii-space-plus-percent-and-reserved"),
    pytest.param("r" * 80, "r" * 80, id="80-bytes-the-bindings-limit"),
])
def test_relay_state_comes_back_unchanged(browser: Browser, onelogin: OneLoginSp, relay_state: str | None,
                                          expected: str) -> None:
    """Bindings §3.4.3 (sent on the query string, quote_plus-encoded by python3-saml) and §3.5.3 (returned as the
    form field of the HTTP-POST Response): exactly the value the SP sent."""
    result = accepted(browser, onelogin, onelogin.login(relay_state=relay_state))
    assert result.fields["RelayState"] == expected


def test_relay_state_over_80_bytes_is_refused(browser: Browser, onelogin: OneLoginSp) -> None:
    page = browser.get(onelogin.login(relay_state="r" * 81).url)
    assert_refused(page, "relay_state_too_long")
    assert not [f for _, f in forms(page) if "SAMLResponse" in f]


def test_the_session_answers_a_second_login_without_the_card(browser: Browser, onelogin: OneLoginSp) -> None:
    first = accepted(browser, onelogin)
    browser.certificate_pem = None
    second = accepted(browser, onelogin)
    assert second.auth.get_nameid() == first.auth.get_nameid()
    assert second.auth.get_session_index() == first.auth.get_session_index()
    path = "/samlp:Response/saml:Assertion/saml:AuthnStatement"
    assert second.the(path).get("AuthnInstant") == first.the(path).get("AuthnInstant")   # no new authentication


def test_force_authn_reads_the_card_again(browser: Browser, onelogin: OneLoginSp) -> None:
    """SAML Core §3.4.1: ForceAuthn="true" is not answered from the session: the card is read again and a new
    session begins (new cookie, new SessionIndex, an AuthnInstant not before the request)."""
    first = accepted(browser, onelogin)
    before = session_cookie(browser)
    sent = onelogin.login(force_authn=True)
    assert sent.root.get("ForceAuthn") == "true"
    second = accepted(browser, onelogin, sent)
    assert session_cookie(browser) != before
    assert second.auth.get_session_index() != first.auth.get_session_index()
    assert second.auth.get_nameid() == first.auth.get_nameid()   # the same person at the same SP
    authn_instant = second.the("/samlp:Response/saml:Assertion/saml:AuthnStatement").get("AuthnInstant")
    assert (OneLogin_Saml2_Utils.parse_SAML_to_time(authn_instant)
            >= OneLogin_Saml2_Utils.parse_SAML_to_time(sent.root.get("IssueInstant")))


def test_force_authn_without_the_card_gets_no_assertion(browser: Browser, onelogin: OneLoginSp) -> None:
    """With a live session but no card, ForceAuthn ends at the certificate_missing page; the way back to the
    service it offers carries an error Response, AuthnFailed, which python3-saml sees as such."""
    accepted(browser, onelogin)
    sent = onelogin.login(force_authn=True)
    browser.certificate_pem = None
    page = browser.get(sent.url)
    assert_refused(page, "certificate_missing")
    action, fields = saml_response_form(page)
    auth = onelogin.acs(action, fields, sent.request_id)
    assert auth.get_errors() == ["invalid_response"]
    assert auth.get_last_error_reason() == (
        "The status code of the Response was not Success, was Responder -> certificate_missing")
    assert statuses(auth) == (STATUS + "Responder", STATUS + "AuthnFailed")
    assert not auth.is_authenticated()


@pytest.mark.parametrize("policy", [
    pytest.param(SpPolicy(requested_authn_context=(LOA3,), comparison="exact", fail_on_authn_context_mismatch=True),
                 id="exact-loa3-with-python3-saml-mismatch-check"),
    # python3-saml's failOnAuthnContextMismatch compares as if every Comparison were exact (a set difference), so
    # an integrator asking for "minimum" leaves it off, as here
    pytest.param(SpPolicy(requested_authn_context=(LOA2,), comparison="minimum"), id="minimum-loa2"),
])
def test_requested_authn_context_the_login_meets(browser: Browser, onelogin: OneLoginSp, policy: SpPolicy) -> None:
    """SAML Core §3.3.2.2.1: Anna's loa3 meets each of these; the ClassRef is the LoA URI."""
    sent = onelogin.login()
    requested = OneLogin_Saml2_XML.query(sent.root, "/samlp:AuthnRequest/samlp:RequestedAuthnContext")
    assert requested[0].get("Comparison") == policy.comparison
    assert accepted(browser, onelogin, sent).auth.get_last_authn_contexts() == [LOA3]


@dataclass(frozen=True)
class Refusal:
    """What python3-saml must see when the broker answers an AuthnRequest with an error status."""

    top: str
    second: str
    reason: str                            # the broker's reason code, sent as StatusMessage
    login: dict[str, Any] = field(default_factory=dict)
    card: bool = True


@pytest.mark.parametrize(("policy", "refusal"), [
    pytest.param(SpPolicy(requested_authn_context=(LOA4,)),
                 Refusal("Responder", "NoAuthnContext", "authn_context_unsupported"), id="exact-loa4-above-annas-loa3"),
    pytest.param(SpPolicy(requested_authn_context=True),
                 Refusal("Responder", "NoAuthnContext", "authn_context_unsupported"),
                 id="python3-saml-default-password-protected-transport"),
    pytest.param(SpPolicy(), Refusal("Responder", "NoPassive", "passive_login_impossible", {"is_passive": True},
                                     card=False), id="is-passive-without-session-or-card"),
    pytest.param(SpPolicy(nameid_format=EMAIL),
                 Refusal("Requester", "InvalidNameIDPolicy", "nameid_format_unsupported"),
                 id="nameid-policy-email-address"),
    pytest.param(SpPolicy(), Refusal("Requester", "RequestUnsupported", "saml_feature_unsupported",
                                     {"subject": "SE2120001009-anna"}), id="requested-subject"),
])
def test_python3_saml_sees_the_brokers_error_status(browser: Browser, onelogin: OneLoginSp, policy: SpPolicy,
                                                    refusal: Refusal) -> None:
    """SAML Core §3.2.2.2: a Response without assertion, with the top-level code (Requester for the SP's own
    fault) and the specific second-level code, signed, to the SP's ACS, in response to its request."""
    if not refusal.card:
        browser.certificate_pem = None
    sent = onelogin.login(**refusal.login)
    result = answered(browser, onelogin, sent)
    auth = result.auth
    assert auth.get_errors() == ["invalid_response"]
    assert auth.get_last_error_reason() == (
        f"The status code of the Response was not Success, was {refusal.top} -> {refusal.reason}")
    assert not auth.is_authenticated()
    assert statuses(auth) == (STATUS + refusal.top, STATUS + refusal.second)
    root = result.root
    assert (root.get("InResponseTo"), root.get("Destination"), result.action) == (
        sent.request_id, SP_ACS_URL, SP_ACS_URL)
    assert not OneLogin_Saml2_XML.query(root, "//saml:Assertion")
    # python3-saml reports a status before it looks at signatures; its own verifier, with the key it read from
    # the broker's metadata, shows that the error Response is authentic too, and it is schema-valid
    assert OneLogin_Saml2_Utils.validate_sign(root, onelogin.settings.get_idp_cert(),
                                              xpath=OneLogin_Saml2_Utils.RESPONSE_SIGNATURE_XPATH) is True
    assert not isinstance(OneLogin_Saml2_XML.validate_xml(root, "saml-schema-protocol-2.0.xsd"), str)


# --- 4. single logout -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logout:
    """How python3-saml sends its LogoutRequest and checks the broker's LogoutResponse."""

    binding: str = "redirect"          # "redirect": ``logout()``; "post": signed by ``add_sign``, posted
    session_index: bool = True         # name the SessionIndex it got (Core §3.7.1: none means every session)
    qualifiers: bool = False           # NameQualifier and SPNameQualifier as the broker issued them
    raw_query: bool = True             # python3-saml checks the query signature over the raw query string


@pytest.mark.parametrize("how", [
    pytest.param(Logout(), id="redirect"),
    pytest.param(Logout(session_index=False), id="redirect-without-session-index"),
    pytest.param(Logout(qualifiers=True), id="redirect-with-name-qualifiers"),
    pytest.param(Logout(raw_query=False), id="signature-checked-over-re-encoded-values"),
    pytest.param(Logout(binding="post"), id="http-post"),
])
def test_logout_started_by_python3_saml(browser: Browser, onelogin: OneLoginSp, config_dir: Path,
                                        idp_certificate: str, how: Logout) -> None:
    auth = accepted(browser, onelogin).auth
    index = auth.get_session_index() if how.session_index else None
    if how.binding == "post":
        sent = onelogin.logout_post(name_id=auth.get_nameid(), session_index=index,
                                    name_id_format=auth.get_nameid_format(), relay_state="/utloggad")
        response = browser.post(sent.url, sent.fields)
    else:
        sent = onelogin.logout(name_id=auth.get_nameid(), session_index=index, name_id_format=auth.get_nameid_format(),
                               nq=auth.get_nameid_nq() if how.qualifiers else None,
                               spnq=auth.get_nameid_spnq() if how.qualifiers else None, relay_state="/utloggad")
        response = browser.get(sent.url)
    assert logout_request_fields(sent.xml)[2] == ([index] if index else [])
    name_id = OneLogin_Saml2_XML.query(sent.root, "/samlp:LogoutRequest/saml:NameID")[0]
    assert (name_id.get("NameQualifier"), name_id.get("SPNameQualifier")) == (
        (IDP_ENTITY_ID, SP_ENTITY_ID) if how.qualifiers else (None, None))

    back = hop(response, SP_SLO_URL, "SAMLResponse")   # HTTP-Redirect: the only SLO binding in the SP's metadata
    answer = onelogin.slo(back.location, request_id=sent.request_id, raw_query=how.raw_query)
    assert (answer.auth.get_errors(), answer.auth.get_last_error_reason()) == ([], None)
    assert answer.session_deleted
    assert status_codes(back.root) == LIVE
    assert (back.root.get("InResponseTo"), back.root.get("Destination")) == (sent.request_id, SP_SLO_URL)
    assert back.parameters["RelayState"] == "/utloggad"
    assert OneLogin_Saml2_Utils.validate_binary_sign(back.message.signed_octets,
                                                     base64.b64decode(back.parameters["Signature"]),
                                                     idp_certificate, back.parameters["SigAlg"]) is True

    assert session_at_broker(browser, onelogin) == ENDED
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], data(logout)["peer"], data(logout)["session_ended"]) == ("success", SP_ENTITY_ID, True)


@pytest.mark.parametrize("raw_query", [
    pytest.param(True, id="over-the-raw-query-as-bindings-require"),
    pytest.param(False, id="over-values-re-encoded-by-python3-saml"),
])
def test_a_space_in_relay_state_verifies_however_python3_saml_checks(browser: Browser, onelogin: OneLoginSp,
                                                                      raw_query: bool) -> None:
    """Bindings §3.4.4.1: the receiver verifies the octets as they arrived (python3-saml's
    ``validate_signature_from_qs``); python3-saml's default rebuilds them from the decoded values with
    ``quote_plus`` (space as +). The broker form-encodes what it signs, so both verify its LogoutResponse."""
    auth = accepted(browser, onelogin).auth
    sent = onelogin.logout(name_id=auth.get_nameid(), session_index=auth.get_session_index(), relay_state="till start")
    assert "RelayState=till+start" in sent.url   # python3-saml's own encoding
    back = hop(browser.get(sent.url), SP_SLO_URL, "SAMLResponse")
    assert "RelayState=till+start" in back.location
    assert back.parameters["RelayState"] == "till start"
    answer = onelogin.slo(back.location, request_id=sent.request_id, raw_query=raw_query)
    assert answer.auth.get_errors() == []
    assert answer.session_deleted


def test_logout_for_another_name_id_gets_unknown_principal(browser: Browser, onelogin: OneLoginSp) -> None:
    """SAML Core §3.7.3.2: a NameID that is not the one this SP was given in this browser's session ends nothing;
    python3-saml sees the status (its error 'logout_not_success') and keeps its own session."""
    auth = accepted(browser, onelogin).auth
    sent = onelogin.logout(name_id="not-annas-nameid", session_index=auth.get_session_index(),
                           name_id_format=PERSISTENT)
    back = hop(browser.get(sent.url), SP_SLO_URL, "SAMLResponse")
    assert status_codes(back.root) == (STATUS + "Requester", STATUS + "UnknownPrincipal")
    answer = onelogin.slo(back.location, request_id=sent.request_id)
    assert answer.auth.get_errors() == ["logout_not_success"]
    assert not answer.session_deleted
    assert session_at_broker(browser, onelogin) == LIVE


def test_broker_logs_python3_saml_out_when_another_sp_logs_out(browser: Browser, sp: DemoSp, onelogin: OneLoginSp,
                                                               config_dir: Path) -> None:
    """The pysaml2 demo SP starts the logout; the broker sends python3-saml a signed LogoutRequest naming what it
    was given (NameID, its Format, its SessionIndex), python3-saml's ``process_slo`` accepts it and answers with a
    signed LogoutResponse that the broker accepts, and the demo SP gets Success."""
    at_demo = sso_login(browser, sp)             # Anna's card
    ours = accepted(browser, onelogin).auth     # single sign-on
    start = sp_logout_url(sp, at_demo)

    to_us = hop(browser.get(start), SP_SLO_URL, "SAMLRequest")
    answer = onelogin.slo(to_us.location)
    assert (answer.auth.get_errors(), answer.auth.get_last_error_reason()) == ([], None)
    assert answer.session_deleted
    request_xml = answer.auth.get_last_request_xml()
    assert logout_request_fields(request_xml) == (ours.get_nameid(), PERSISTENT, [ours.get_session_index()])
    not_on_or_after = OneLogin_Saml2_Utils.parse_SAML_to_time(to_us.root.get("NotOnOrAfter"))
    assert not_on_or_after > OneLogin_Saml2_Utils.now()
    assert answer.redirect is not None
    reply = redirect_message(answer.redirect)
    assert reply.url == SLO_URL
    assert (reply.root.get("InResponseTo"), reply.parameters["RelayState"]) == (to_us.root.get("ID"),
                                                                                to_us.parameters["RelayState"])
    assert reply.parameters["SigAlg"] == RSA_SHA256

    final = hop(browser.get(answer.redirect), DEMO_SP_SLO, "SAMLResponse")
    assert status_codes(final.root) == LIVE     # no PartialLogout: python3-saml's answer counted
    assert final.root.get("InResponseTo") == redirect_message(start, "SAMLRequest").root.get("ID")
    parsed = sp.client.parse_logout_request_response(final.parameters["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert parsed is not None
    propagated, = events(config_dir, "logout_propagated")
    assert (propagated["outcome"], data(propagated)["peer"], data(propagated)["status"]) == (
        "success", SP_ENTITY_ID, "Success")
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], list(data(completed)["confirmed"])) == ("success", [SP_ENTITY_ID])  # type: ignore[call-overload]


def test_python3_saml_logout_reaches_the_other_sp(browser: Browser, sp: DemoSp, onelogin: OneLoginSp,
                                                  config_dir: Path) -> None:
    """python3-saml starts; the broker asks the pysaml2 demo SP on the way and then answers python3-saml, whose
    ``process_slo`` accepts the final LogoutResponse (Success, no PartialLogout)."""
    ours = accepted(browser, onelogin).auth
    sso_login(browser, sp)
    sent = onelogin.logout(name_id=ours.get_nameid(), session_index=ours.get_session_index(),
                           name_id_format=ours.get_nameid_format())

    to_demo = hop(browser.get(sent.url), DEMO_SP_SLO, "SAMLRequest")
    back = hop(browser.get(sp_answers(sp, to_demo.location)), SP_SLO_URL, "SAMLResponse")
    assert not sp.client.users.subjects()
    answer = onelogin.slo(back.location, request_id=sent.request_id)
    assert (answer.auth.get_errors(), answer.auth.get_last_error_reason()) == ([], None)
    assert answer.session_deleted
    assert status_codes(back.root) == LIVE
    assert back.parameters["RelayState"] == SP_BASE + "/logout"   # python3-saml's default: the page it logged out on
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], list(data(completed)["confirmed"])) == ("success", [DEMO_SP])  # type: ignore[call-overload]


# --- 5. where implementations commonly disagree ------------------------------------------------------------------


def test_http_post_authn_request_signed_by_python3_saml(browser: Browser, onelogin: OneLoginSp) -> None:
    """Bindings §3.5: the enveloped signature python3-saml's ``add_sign`` makes (libxmlsec1; exclusive C14N,
    RSA-SHA256, SHA-256, its certificate in KeyInfo) verifies at the broker with the key from the SP's metadata."""
    sent = onelogin.login_post(relay_state="post-rs")
    assert signature_algorithms(sent.root) == (RSA_SHA256, SHA256)
    assert sent.root.get("Destination") == SSO_URL
    result = accepted(browser, onelogin, sent)
    assert result.fields["RelayState"] == "post-rs"
    assert result.auth.get_last_authn_contexts() == [LOA3]


@pytest.mark.parametrize(("at", "error"), [
    pytest.param("issue-instant-1s", None, id="sp-clock-1s-behind-the-brokers"),
    pytest.param("not-on-or-after-1s", None, id="1s-before-not-on-or-after"),
    pytest.param("not-on-or-after", "A valid SubjectConfirmation was not found on this Response",
                 id="at-not-on-or-after"),
])
def test_validity_window_as_python3_saml_reads_it(browser: Browser, onelogin: OneLoginSp, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch, at: str, error: str | None) -> None:
    """The broker's instants (``YYYY-MM-DDThh:mm:ssZ``) parsed by python3-saml: NotOnOrAfter of the bearer
    SubjectConfirmationData is IssueInstant + assertion_lifetime, Conditions NotBefore lies clock_skew before
    IssueInstant; python3-saml, its clock set by the test, accepts up to 1 s before NotOnOrAfter (Profiles
    §4.1.4.2, Core §2.5.1.2)."""
    sent = onelogin.login()
    action, fields = saml_response_form(response_page(browser, sent))
    root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    parse = OneLogin_Saml2_Utils.parse_SAML_to_time
    issued = parse(root.get("IssueInstant"))
    assertion = OneLogin_Saml2_XML.query(root, "/samlp:Response/saml:Assertion")[0]
    assert parse(assertion.get("IssueInstant")) == issued
    conditions = OneLogin_Saml2_XML.query(assertion, "./saml:Conditions")[0]
    confirmation = OneLogin_Saml2_XML.query(assertion, "./saml:Subject/saml:SubjectConfirmation/"
                                                       "saml:SubjectConfirmationData")[0]
    idp = settings.broker.idp
    lifetime, skew = (int(d.timedelta.total_seconds()) for d in (idp.assertion_lifetime, idp.clock_skew))
    not_on_or_after = parse(confirmation.get("NotOnOrAfter"))
    assert not_on_or_after == parse(conditions.get("NotOnOrAfter")) == issued + lifetime
    assert parse(conditions.get("NotBefore")) == issued - skew

    now = {"issue-instant-1s": issued - 1, "not-on-or-after-1s": not_on_or_after - 1,
           "not-on-or-after": not_on_or_after}[at]
    monkeypatch.setattr(OneLogin_Saml2_Utils, "now", staticmethod(lambda: now))
    auth = onelogin.acs(action, fields, sent.request_id)
    assert auth.get_last_error_reason() == error
    assert auth.is_authenticated() is (error is None)


def test_python3_saml_holds_the_response_to_where_it_arrived(browser: Browser, onelogin: OneLoginSp) -> None:
    """The acceptances above are not vacuous: python3-saml compares the broker's Destination (Bindings §3.5.5.2)
    with the URL the Response arrived at (and, in ``accepted``, its InResponseTo with the request it sent)."""
    sent = onelogin.login()
    _, fields = saml_response_form(response_page(browser, sent))
    auth = onelogin.acs(SP_BASE + "/other/acs", fields, sent.request_id)
    assert auth.get_errors() == ["invalid_response"]
    assert auth.get_last_error_reason() == f"The response was received at {SP_BASE}/other/acs instead of {SP_ACS_URL}"
