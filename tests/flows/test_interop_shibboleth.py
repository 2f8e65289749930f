"""Interoperability with the Shibboleth Service Provider 3.4 (Debian's libapache2-mod-shib and shibd), the SP most
federations in research and the public sector run, with the broker as its IdP.

One stack per module, on loopback: the example configuration (generated demo material) with the broker's public
URL at nginx's port, `broker serve` behind the nginx that `broker proxy-config nginx` configures (it asks for the
client certificate in the TLS handshake and forwards it from the trusted address 127.0.0.1), and Apache with
mod_shib and shibd (tests/factories/shibboleth_sp.py) in front of an echo of the environment mod_shib exports.
Shibboleth has two applications, each an SP of its own at the broker, with the metadata `shib-metagen` wrote for
it (signed AuthnRequests required by the broker):

* ``default``: the broker signs the Assertion only (``sign_response: false``), Shibboleth requires it signed (its
  security policy refuses an unsigned Response carrying an unsigned Assertion); the SP waits for the broker's
  answer to its LogoutRequest (``asynchronous="false"``);
* ``signed``: the broker signs the Response too (``sign_response: true``) and Shibboleth requires the Assertion
  itself signed as well (``requireSignedAssertions``); Shibboleth's default asynchronous logout;
* ``sealed``: the broker encrypts the signed Assertion (``encrypt_assertions: true``) for the key of
  shib-metagen's metadata (a KeyDescriptor without use, no EncryptionMethods: AES-256-GCM and RSA-OAEP), which
  shibd decrypts with its own key.

shibd reads the broker's metadata from /saml/idp/metadata and believes it only with the broker's signature
(``Signature`` MetadataFilter with the broker's signing certificate). Shibboleth itself runs with
``encryption="false"``: it encrypts nothing it sends (the broker's IdP metadata has no encryption key).

The browser is ``requests`` with one cookie jar, following each hop itself so that every message can be read on
the way: the SP's HTTP-Redirect AuthnRequest, the broker's auto-posting page, the post to Shibboleth's ACS, the
page of the protected resource.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from lxml import etree

from tests.factories.authnrequests import (
    NS,
    RSA_SHA256,
    RedirectedMessage,
    redirect_message,
    signature_algorithms,
    status_codes,
)
from tests.factories.https_client import reason
from tests.factories.metadata import SigningKey
from tests.factories.public_broker import Posted, PublicBroker, Visitor
from tests.factories.public_broker import posted as auto_post
from tests.factories.shibboleth_sp import Application, IdpSource, MappedAttribute, Resource, ShibbolethSp
from tests.factories.sp_files import register_sp

pytestmark = pytest.mark.slow

LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
LOA4 = "http://id.elegnamnden.se/loa/1.0/loa4"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
XENC = "http://www.w3.org/2001/04/xmlenc#"
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
ASYNC_SLO = "{urn:oasis:names:tc:SAML:2.0:protocol:ext:async-slo}Asynchronous"

# the Swedish eID framework's attribute names (NameFormat uri) and the ids Shibboleth exports them as
ATTRIBUTE_MAP = (
    MappedAttribute("urn:oid:1.2.752.29.4.13", "personalIdentityNumber"),
    MappedAttribute("urn:oid:1.2.752.29.6.2.1", "employeeHsaId"),
    MappedAttribute("urn:oid:2.5.4.42", "givenName"),
    MappedAttribute("urn:oid:2.5.4.4", "sn"),
    MappedAttribute("urn:oid:2.16.840.1.113730.3.1.241", "displayName"),
    MappedAttribute("urn:oid:2.5.4.10", "o"),
    MappedAttribute("urn:oid:2.5.4.97", "organizationIdentifier"),
    MappedAttribute("urn:oid:1.2.752.201.3.1", "orgAffiliation"),
    MappedAttribute("urn:oid:1.2.752.201.3.2", "transactionIdentifier"),
)
RELEASE = [a.id for a in ATTRIBUTE_MAP]

SECURE = "/secure/attributes"            # application "default"
SIGNED = "/signed/attributes"            # application "signed"
SEALED = "/sealed/attributes"            # application "sealed"
HIGH_ASSURANCE = "/loa4/attributes"      # application "default", RequestedAuthnContext LoA 4
RESOURCES = {"default": SECURE, "signed": SIGNED, "sealed": SEALED}


@dataclass
class Stack:
    broker: PublicBroker
    sp: ShibbolethSp


@dataclass(frozen=True)
class Login:
    request: RedirectedMessage     # the AuthnRequest, as Shibboleth sent it to the broker
    posted: Posted                 # the broker's answer, as the browser posts it to Shibboleth's ACS
    landed: requests.Response      # Shibboleth's answer to the post, its redirects followed


def to_broker(stack: Stack, response: requests.Response, parameter: str = "SAMLRequest") -> RedirectedMessage:
    """The message of Shibboleth's redirect to the broker (HTTP-Redirect binding)."""
    assert response.status_code == 302, (response.status_code, response.text[-1500:])
    location = response.headers["Location"]
    assert location.startswith(stack.broker.url + "/saml/idp/"), location
    return redirect_message(location, parameter)


def login(stack: Stack, visitor: Visitor, resource: str) -> Login:
    """Open ``resource``, take the AuthnRequest to the broker, post its answer to Shibboleth's ACS."""
    first = visitor.get(stack.sp.url(resource))
    request = to_broker(stack, first)
    posted = auto_post(visitor.get(first.headers["Location"]))
    return Login(request, posted, visitor.follow(visitor.post(posted.action, posted.fields)))


def exported(response: requests.Response) -> dict[str, str]:
    """The environment the protected resource got from mod_shib (NUL-separated NAME=value pairs)."""
    assert (response.status_code, response.headers.get("Content-Type")) == (200, "application/octet-stream"), \
        (response.status_code, response.text[-2000:])
    pairs = [item.decode().split("=", 1) for item in response.content.split(b"\0") if item]
    return dict(pairs)


def attributes(environment: dict[str, str]) -> dict[str, str]:
    """The mapped SAML attributes among the exported variables."""
    return {a.id: environment[a.id] for a in ATTRIBUTE_MAP if a.id in environment}


def shibboleth_page(response: requests.Response) -> dict[str, str]:
    """The ``name=value`` lines of one of Shibboleth's templates (tests/factories/shibboleth_sp.py)."""
    lines = [line.split("=", 1) for line in response.text.splitlines() if "=" in line and not line.startswith("<")]
    return {name: html.unescape(value) for name, value in lines}


def session_of(stack: Stack, visitor: Visitor, application: str) -> dict[str, Any]:
    """Shibboleth's Session handler for the application (JSON; ``{}`` without a session)."""
    answer = visitor.get(stack.sp.handler(application) + "/Session")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_material: Any, redis_url: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("shibboleth-stack")
    broker = PublicBroker.prepare(root, demo_material, redis_url)
    config, tls = broker.config, broker.tls
    signing = SigningKey.generate("Shibboleth SP", dt.datetime.now(dt.UTC))
    sp_key, sp_certificate = signing.write(root / "sp-keys", "sp-signing")
    sp = ShibbolethSp(
        root / "shibboleth",
        idp=IdpSource(broker.idp_entity_id, broker.serve.url + "/saml/idp/metadata",
                      config / "keys" / "idp-signing.crt"),
        certificate=tls / "server.pem", key=tls / "server.key", tls_ca=tls / "ca.pem",
        signing_key=sp_key, signing_certificate=sp_certificate,
        applications=[
            # asynchronous="false": the SP waits for the IdP's LogoutResponse and shows its outcome, as a
            # deployment does that wants the IdP to confirm the logout (Shibboleth's default does not wait)
            Application(logout=(("asynchronous", "false"),)),
            Application("signed", "/signed", settings=(("requireSignedAssertions", "true"),)),
            Application("sealed", "/sealed"),
        ],
        resources=[Resource(SECURE), Resource(SIGNED, "signed"), Resource(SEALED, "sealed"),
                   Resource(HIGH_ASSURANCE, settings=(("authnContextClassRef", LOA4),))],
        attributes=ATTRIBUTE_MAP,
    )
    for application, sign_response, encrypt in (("default", False, False), ("signed", True, False),
                                                ("sealed", False, True)):
        # shib-metagen writes no AuthnRequestsSigned: register_sp requires signed requests in the broker's file
        register_sp(config, f"shibboleth-{application}", entity_id=sp.entity_id(application),
                    name=f"Shibboleth ({application})", metadata=sp.metadata(application), release=RELEASE,
                    nameid_formats=["persistent", "transient"], sign_response=sign_response,
                    encrypt_assertions=encrypt)

    with broker.running(), sp:  # shibd fetches the metadata from the running broker
        yield Stack(broker, sp)


# --- metadata -------------------------------------------------------------------------------------------------


def test_shibd_believes_the_brokers_metadata_by_its_signature(stack: Stack) -> None:
    published = etree.fromstring(requests.get(stack.broker.serve.url + "/saml/idp/metadata", timeout=10).content)
    assert published.get("entityID") == stack.broker.idp_entity_id
    assert signature_algorithms(published)["reference"] == "#" + published.get("ID", "")

    log = [line for line in stack.sp.shibd_log().splitlines() if " OpenSAML.Metadata" in line]
    assert f"loaded XML resource ({stack.broker.serve.url}/saml/idp/metadata)" in "\n".join(log), stack.sp.logs()
    assert any(line.endswith("applying metadata filter (Signature)") for line in log), log
    assert [line for line in log if " INFO " not in line] == []  # no warning: nothing filtered out, no backup used

    # the control: the same configuration trusting another certificate (the SP's own) refuses the document
    refused = stack.sp.check(idp_certificate=stack.sp.signing_certificate)
    assert "SignatureMetadataFilter unable to verify signature at root of metadata instance" in refused, refused
    accepted = stack.sp.check()
    assert "overall configuration is loadable" in accepted
    assert "unable to verify" not in accepted, accepted
    assert "filtering out" not in accepted, accepted


# --- SP-initiated certificate login ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    user: str
    loa: str
    attributes: dict[str, str]   # what Shibboleth exports, transactionIdentifier aside (new for every login)


PEOPLE = [
    pytest.param(Person("anna", LOA3, {
        "employeeHsaId": "SE2120001009-anna", "givenName": "Anna", "sn": "Demosson", "displayName": "Anna Demosson",
        "o": "Kommun A", "organizationIdentifier": "2120001009", "orgAffiliation": "SE2120001009-anna@2120001009",
    }), id="anna-hsa-id-loa3"),
    pytest.param(Person("bo", LOA2, {
        "personalIdentityNumber": "191212121212", "givenName": "Bo", "sn": "Demosson", "displayName": "Bo Demosson",
        "o": "Kommun B", "organizationIdentifier": "2120002007",
    }), id="bo-personnummer-loa2"),
]


@pytest.mark.parametrize("person", PEOPLE)
def test_sp_initiated_certificate_login(stack: Stack, person: Person) -> None:
    visitor = stack.broker.visitor(person.user)
    sp, acs = stack.sp.entity_id(), stack.sp.handler() + "/SAML2/POST"

    # 1. no session at the SP: Shibboleth sends a signed AuthnRequest to the broker by HTTP-Redirect
    first = visitor.get(stack.sp.url(SECURE))
    request = to_broker(stack, first)
    assert request.url == stack.broker.url + "/saml/idp/sso"
    assert request.root.tag == "{urn:oasis:names:tc:SAML:2.0:protocol}AuthnRequest"
    assert request.root.findtext("saml:Issuer", namespaces=NS) == sp
    assert (request.root.get("AssertionConsumerServiceURL"), request.root.get("Destination")) == (acs, request.url)
    assert request.parameters["SigAlg"] == RSA_SHA256
    assert request.parameters["Signature"]
    relay_state = request.parameters["RelayState"]
    assert relay_state.startswith("ss:mem:")
    assert len(relay_state) <= 80

    # 2. the broker, with the card from nginx's handshake: the auto-posting page for Shibboleth's ACS
    posted = auto_post(visitor.get(first.headers["Location"]))
    assert (posted.action, posted.fields["RelayState"]) == (acs, relay_state)
    assert posted.root.get("InResponseTo") == request.root.get("ID")
    assert posted.root.find("ds:Signature", NS) is None            # sign_response: false
    assert signature_algorithms(posted.assertion())["signature"] == RSA_SHA256
    assert posted.root.find("saml:EncryptedAssertion", NS) is None  # encrypt_assertions: false
    name_id = posted.assertion().find("saml:Subject/saml:NameID", NS)
    assert name_id is not None
    assert name_id.get("Format") == PERSISTENT

    # 3. Shibboleth accepts the Response, opens a session and sends the browser back to the resource
    accepted = visitor.post(acs, posted.fields)
    assert (accepted.status_code, accepted.headers.get("Location")) == (302, stack.sp.url(SECURE)), \
        stack.sp.logs()
    assert any(c.name.startswith("_shibsession_") for c in visitor.browser.session.cookies)

    # 4. what the protected resource gets from Shibboleth
    environment = exported(visitor.follow(accepted))
    transaction = posted.text("saml:AttributeStatement/saml:Attribute[@Name='urn:oid:1.2.752.201.3.2']/"
                              "saml:AttributeValue")
    assert attributes(environment) == {**person.attributes, "transactionIdentifier": transaction}
    assert environment["Shib_AuthnContext_Class"] == person.loa
    assert environment["Shib_Identity_Provider"] == stack.broker.idp_entity_id
    assert environment["persistent_id"] == f"{stack.broker.idp_entity_id}!{sp}!{name_id.text}"
    assert environment["REMOTE_USER"] == environment["persistent_id"]
    session_index = posted.assertion().find("saml:AuthnStatement", NS).get("SessionIndex")  # type: ignore[union-attr]
    assert (environment["Shib_Session_Index"], environment["Shib_Application_ID"]) == (session_index, "default")


def test_signed_response_is_accepted_with_signed_assertions_required(stack: Stack) -> None:
    """The ``signed`` application: the broker signs Response and Assertion, Shibboleth requires the Assertion's
    own signature on top. The same browser logs in at ``default`` first, so the second login is single sign-on
    (no card), and the two applications, two SPs to the broker, get different persistent NameIDs."""
    visitor = stack.broker.visitor("anna")
    first = exported(login(stack, visitor, SECURE).landed)
    second = login(stack, Visitor(visitor.browser, card=None), SIGNED)  # the same browser, no card this time

    response, assertion = second.posted.root, second.posted.assertion()
    assert signature_algorithms(response)["reference"] == "#" + response.get("ID", "")
    assert signature_algorithms(response)["signature"] == RSA_SHA256
    assert signature_algorithms(assertion)["reference"] == "#" + assertion.get("ID", "")
    environment = exported(second.landed)
    assert environment["Shib_Application_ID"] == "signed"
    assert environment["employeeHsaId"] == "SE2120001009-anna"
    assert environment["Shib_AuthnContext_Class"] == LOA3
    qualifier, sp_qualifier, value = environment["persistent_id"].split("!")
    assert (qualifier, sp_qualifier) == (stack.broker.idp_entity_id, stack.sp.entity_id("signed"))
    assert value == second.posted.text("saml:Subject/saml:NameID")
    assert value != first["persistent_id"].split("!")[2]


def test_encrypted_assertion_is_decrypted_by_shibboleth(stack: Stack) -> None:
    """The ``sealed`` application: the browser carries the Assertion encrypted (nothing of bo readable on the way),
    and shibd decrypts it with its own key, checks the broker's signature inside and exports the attributes."""
    visitor = stack.broker.visitor("bo")
    sealed = login(stack, visitor, SEALED)

    root = sealed.posted.root
    assert root.findall("saml:Assertion", NS) == []
    (data,) = root.findall("saml:EncryptedAssertion/xenc:EncryptedData", {**NS, "xenc": XENC})
    assert data.find("xenc:EncryptionMethod", {"xenc": XENC}).get("Algorithm") == AES256_GCM  # type: ignore[union-attr]
    (key,) = data.findall("ds:KeyInfo/xenc:EncryptedKey", {**NS, "xenc": XENC})
    assert key.get("Recipient") == stack.sp.entity_id("sealed")
    xml = etree.tostring(root)
    for readable in (b"191212121212", b"Demosson", b"NameID", b"AttributeValue"):
        assert readable not in xml, readable

    environment = exported(sealed.landed)
    assert environment["Shib_Application_ID"] == "sealed"
    assert environment["personalIdentityNumber"] == "191212121212"
    assert environment["displayName"] == "Bo Demosson"
    assert environment["Shib_AuthnContext_Class"] == LOA2
    qualifier, sp_qualifier, _ = environment["persistent_id"].split("!")
    assert (qualifier, sp_qualifier) == (stack.broker.idp_entity_id, stack.sp.entity_id("sealed"))


def test_shibboleth_refuses_an_assertion_changed_after_the_broker_signed_it(stack: Stack) -> None:
    """The control for the acceptances above: Shibboleth does check the broker's signature."""
    visitor = stack.broker.visitor("anna")
    first = visitor.get(stack.sp.url(SECURE))
    to_broker(stack, first)
    posted = auto_post(visitor.get(first.headers["Location"]))
    value = posted.assertion().find(
        "saml:AttributeStatement/saml:Attribute[@Name='urn:oid:1.2.752.29.6.2.1']/saml:AttributeValue", NS)
    assert value is not None
    value.text = "SE2120001009-mallory"
    forged = {**posted.fields, "SAMLResponse": base64.b64encode(etree.tostring(posted.root)).decode()}

    refused = visitor.post(posted.action, forged)
    shown = shibboleth_page(refused)
    assert (refused.status_code, shown["errorType"], shown["errorText"]) == (
        500, "opensaml::FatalProfileException", "Message was signed, but signature could not be verified."), shown
    assert session_of(stack, visitor, "default") == {}
    assert "SE2120001009-mallory" not in stack.sp.shibd_log()


def test_unsatisfiable_requested_authn_context_reaches_shibboleth_as_no_authn_context(stack: Stack) -> None:
    """Shibboleth asks for LoA 4 (``authnContextClassRef`` on the resource); Anna's card gives LoA 3: the broker
    answers with its error status, which Shibboleth shows instead of opening a session."""
    visitor = stack.broker.visitor("anna")
    first = visitor.get(stack.sp.url(HIGH_ASSURANCE))
    request = to_broker(stack, first)
    requested = request.root.find("samlp:RequestedAuthnContext", NS)
    assert requested is not None
    assert [e.text for e in requested.findall("saml:AuthnContextClassRef", NS)] == [LOA4]

    posted = auto_post(visitor.get(first.headers["Location"]))
    assert posted.root.find("saml:Assertion", NS) is None
    shown = shibboleth_page(visitor.post(posted.action, posted.fields))
    assert (shown["statusCode"], shown["statusCode2"], shown["statusMessage"]) == (
        RESPONDER, NO_AUTHN_CONTEXT, "authn_context_unsupported"), shown
    assert shown["errorType"] == "opensaml::FatalProfileException"
    assert session_of(stack, visitor, "default") == {}


# --- single logout ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("initiator", "other", "asynchronous"), [
    pytest.param("default", "signed", False, id="sp-waits-for-the-answer"),
    pytest.param("signed", "default", True, id="shibboleths-default-asynchronous"),
])
def test_single_logout_started_at_shibboleth(stack: Stack, initiator: str, other: str, asynchronous: bool) -> None:
    """Anna logs in at both applications (the second by single sign-on: the broker session exists), then logs out
    at one: its LogoutRequest reaches the broker, which ends her session, asks the other application (Shibboleth
    as the responder), and answers the first with a LogoutResponse it accepts, or, when the first asked for none
    (asynchronous), shows its own logged-out page."""
    with_card = stack.broker.visitor("anna")
    issued = login(stack, with_card, RESOURCES[initiator]).posted
    visitor = Visitor(with_card.browser, card=None)   # the same browser, no card from now on
    exported(login(stack, visitor, RESOURCES[other]).landed)
    assert session_of(stack, visitor, initiator)
    assert session_of(stack, visitor, other)

    started = visitor.get(stack.sp.handler(initiator) + "/Logout")
    request = to_broker(stack, started)
    assert request.url == stack.broker.url + "/saml/idp/slo"
    assert request.parameters["SigAlg"] == RSA_SHA256
    assert request.parameters["Signature"]
    assert request.root.findtext("saml:Issuer", namespaces=NS) == stack.sp.entity_id(initiator)
    name_id = request.root.find("saml:NameID", NS)
    assert name_id is not None
    assert (name_id.text, name_id.get("Format"), name_id.get("NameQualifier"), name_id.get("SPNameQualifier")) == (
        issued.text("saml:Subject/saml:NameID"), PERSISTENT, stack.broker.idp_entity_id, stack.sp.entity_id(initiator))
    assert request.root.findtext("samlp:SessionIndex", namespaces=NS) == \
        issued.assertion().find("saml:AuthnStatement", NS).get("SessionIndex")  # type: ignore[union-attr]
    # Shibboleth's default asks for no answer (SAML V2.0 Asynchronous Single Logout Profile Extension): it has
    # ended its own session already, and the broker's logged-out page ends the logout instead of a LogoutResponse
    assert (request.root.find(f"samlp:Extensions/{ASYNC_SLO}", NS) is not None) is asynchronous

    # the broker ends the session and asks the other application, which answers Success
    propagated = visitor.get(started.headers["Location"])
    assert propagated.status_code == 303, (propagated.status_code, reason(propagated))
    asked = redirect_message(propagated.headers["Location"], "SAMLRequest")
    assert asked.url == stack.sp.handler(other) + "/SLO/Redirect"
    assert asked.root.find("saml:NameID", NS).get("SPNameQualifier") == stack.sp.entity_id(other)  # type: ignore[union-attr]
    answered = visitor.get(propagated.headers["Location"])
    answer = to_broker(stack, answered, "SAMLResponse")
    assert (status_codes(answer.root), answer.root.get("InResponseTo")) == ((SUCCESS, None), asked.root.get("ID"))
    assert answer.parameters["SigAlg"] == RSA_SHA256

    final = visitor.get(answered.headers["Location"])
    if asynchronous:
        # no LogoutResponse: the broker's own page says the user is logged out
        assert (final.status_code, reason(final)) == (200, None), final.text[-1500:]
        assert "SAMLResponse" not in final.text
        assert "utloggad" in final.text or "logged out" in final.text
    else:
        # the broker's LogoutResponse to the first application, which accepts it
        assert final.status_code == 303, (final.status_code, reason(final))
        response = redirect_message(final.headers["Location"], "SAMLResponse")
        assert response.url == stack.sp.handler(initiator) + "/SLO/Redirect"
        assert (status_codes(response.root), response.root.get("InResponseTo")) == ((SUCCESS, None),
                                                                                   request.root.get("ID"))
        assert (response.parameters["RelayState"], response.parameters["SigAlg"]) == (
            request.parameters["RelayState"], RSA_SHA256)
        assert shibboleth_page(visitor.get(final.headers["Location"])) == {"shibboleth-logout": "global"}, \
            stack.sp.logs()

    # no session is left: not at Shibboleth, not at the broker (its cookie is gone, and without the card it has
    # nothing to answer the next AuthnRequest from)
    assert session_of(stack, visitor, initiator) == {} == session_of(stack, visitor, other)
    assert "__Host-broker_session" not in {c.name for c in visitor.browser.session.cookies}
    again = visitor.get(stack.sp.url(RESOURCES[initiator]))
    to_broker(stack, again)
    assert reason(visitor.get(again.headers["Location"])) == "certificate_missing"

    audit = stack.broker.audit()
    logout, = [e for e in audit if e["event"] == "logout" and e["data"]["peer"] == stack.sp.entity_id(initiator)]
    assert (logout["outcome"], logout["data"]["session_ended"]) == ("success", True)
    mine = [e for e in audit if e.get("correlation_id") == logout["correlation_id"]]
    assert [(e["event"], e["outcome"]) for e in mine] == [
        ("logout", "success"), ("logout_propagated", "success"), ("logout_completed", "success")]
    assert list(mine[-1]["data"]["confirmed"]) == [stack.sp.entity_id(other)]

