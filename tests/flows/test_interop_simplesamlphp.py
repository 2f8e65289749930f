"""Interoperability with SimpleSAMLphp 1.19 (Debian's simplesamlphp), the PHP SAML implementation many Nordic
municipalities and universities run, in both of the broker's roles.

One stack per module, on loopback: the example configuration (generated demo material) with the broker's public
URL at nginx's port, `broker serve` behind the nginx that `broker proxy-config nginx` configures (it asks for the
client certificate in the TLS handshake and forwards it from the trusted address 127.0.0.1), and one SimpleSAMLphp
(tests/factories/simplesamlphp.py: PHP's built-in server behind nginx's TLS) that is at once

1. **service providers of the region** (``saml:SP`` sources), each an SP of its own at the broker with the metadata
   SimpleSAMLphp publishes for it (SAML 1.1 and Artifact endpoints included, as published); the sources sign their
   AuthnRequests and LogoutRequests (RSA-SHA256), which the broker's files require:

   * ``default``: asks for a persistent NameID; the broker signs the Assertion only;
   * ``signed``: SimpleSAMLphp's default NameIDPolicy (transient); the broker signs the Response too
     (``sign_response: true``);
   * ``sealed``: the broker encrypts the signed Assertion (``encrypt_assertions: true``, AES-256-GCM and
     RSA-OAEP) for the certificate of SimpleSAMLphp's metadata, and SimpleSAMLphp refuses any assertion that is
     not encrypted (``assertion.encryption``);
   * ``loa4``: asks for LoA 4 (``AuthnContextClassRef``), which no card of the demo gives;
   * ``unsigned``: an operator who left SimpleSAMLphp's default (unsigned AuthnRequests), refused by the broker.

   SimpleSAMLphp takes the broker's IdP metadata from /saml/idp/metadata, believed only with the broker's signature
   (``SAMLParser::validateSignature``, as metarefresh does). A small PHP application behind the sources prints
   what SimpleSAMLphp hands an application (attributes, NameID, AuthnContext, SessionIndex, logout status, the
   error of a failed login);

2. **Kommun C's own IdP** (``saml20-idp-hosted``, users of an ``exampleauth:UserPass`` source) upstream of the
   broker: its published metadata is Kommun C's metadata file in the test's copy of the configuration, and it
   trusts the broker's SP metadata from /saml/sp/metadata (signature checked likewise). It verifies the broker's
   signed AuthnRequests (``validate.authnrequest``, from the broker's AuthnRequestsSigned) and LogoutRequests
   (``validate.logout``), signs its Responses and Assertions (RSA-SHA256), sends the Swedish eID framework's
   attribute names (NameFormat uri) and a persistent NameID (``saml:PersistentNameID``), and, served over https,
   reports the AuthnContextClassRef PasswordProtectedTransport, which Kommun C maps to LoA 2. What it signs and
   whether it encrypts are its operator's settings for the broker's SP, changed per test (``idp_settings``). The
   regional SP of these logins is the pysaml2 demo SP (in the test process: the broker's answers to it are handed
   to pysaml2).

Where SimpleSAMLphp 1.19 departs from the specifications, the tests say so and show what the broker does about it:
its SP sends the whole URL to return to as RelayState (the broker refuses more than 80 bytes, SAML Bindings
§3.4.3); its IdP ignores RequestedAuthnContext (the broker refuses the weaker login it gets, SAML Core
§3.3.2.2.1); and its SP treats a Response signature that fails as absent when the Assertion's holds (its log is
the evidence that the broker's Response signature verifies).

The browser is ``requests`` with one cookie jar, following each hop itself so that every message can be read on the
way; it presents a card only where a step says so (only nginx, in front of the broker, asks for one).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import pytest
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT
from saml2.saml import AuthnContextClassRef, NameID
from saml2.samlp import RequestedAuthnContext

from broker.demo.sp import DemoSp, LoginResult
from broker.reasons import reason as reason_row
from tests.factories.authnrequests import (
    DIGEST_SHA256,
    NS,
    RedirectedMessage,
    redirect_message,
    redirect_url,
    signature_algorithms,
    status_codes,
)
from tests.factories.https_client import discovery_form, page, reason
from tests.factories.metadata import SigningKey
from tests.factories.public_broker import Posted, PublicBroker, Visitor, posted
from tests.factories.saml import BASE_URL, make_sp
from tests.factories.simplesamlphp import (
    PERSISTENT,
    RSA_SHA256,
    URI_FORMAT,
    HostedIdp,
    MetadataSet,
    Options,
    PhpValue,
    SimpleSamlPhp,
    SimpleSamlPhpRefused,
    SpSource,
    Trusted,
    User,
)
from tests.factories.sp_files import register_sp
from tests.flows.conftest import correlation_of, events_of

pytestmark = pytest.mark.slow

LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
LOA4 = "http://id.elegnamnden.se/loa/1.0/loa4"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
CLASS_X509 = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
SUCCESS = STATUS + "Success"
RESPONDER = STATUS + "Responder"
NO_AUTHN_CONTEXT = STATUS + "NoAuthnContext"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
XENC = "http://www.w3.org/2001/04/xmlenc#"
ENC_NS = {**NS, "xenc": XENC}
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES128_CBC = XENC + "aes128-cbc"
RSA_OAEP_MGF1P = XENC + "rsa-oaep-mgf1p"

# the Swedish eID framework's attribute names (NameFormat uri)
PERSONAL_IDENTITY_NUMBER = "urn:oid:1.2.752.29.4.13"
EMPLOYEE_HSA_ID = "urn:oid:1.2.752.29.6.2.1"
GIVEN_NAME = "urn:oid:2.5.4.42"
SURNAME = "urn:oid:2.5.4.4"
DISPLAY_NAME = "urn:oid:2.16.840.1.113730.3.1.241"
ORGANIZATION = "urn:oid:2.5.4.10"
ORGANIZATION_IDENTIFIER = "urn:oid:2.5.4.97"
ORG_AFFILIATION = "urn:oid:1.2.752.201.3.1"
TRANSACTION_IDENTIFIER = "urn:oid:1.2.752.201.3.2"
RELEASE = ["employeeHsaId", "personalIdentityNumber", "givenName", "sn", "displayName", "o",
           "organizationIdentifier", "orgAffiliation", "transactionIdentifier"]

SSP_IDP = "https://idp.kommun-c.example.se/simplesamlphp"
DEMO_SP = BASE_URL + "/demo-sp"    # the regional SP's endpoints (its messages are handed to pysaml2 in the test)
SP_ENTITY_IDS = {source: f"https://sp.region.example.se/simplesamlphp/{source}"
                 for source in ("default", "signed", "sealed", "loa4", "unsigned")}
# the broker's file for each source: (sign_response, encrypt_assertions)
BROKER_FILES = {"default": (False, False), "signed": (True, False), "sealed": (False, True), "loa4": (False, False),
                "unsigned": (False, False)}

# Sigrid, home-care nurse at Kommun C, with her HSA-id from Kommun C's own series (SE + its organisation number)
SIGRID_HSA_ID = "SE2120003005-SSP1"
SIGRID = User("sigrid", "kommun-c-lösen", (
    (EMPLOYEE_HSA_ID, (SIGRID_HSA_ID,)),
    (GIVEN_NAME, ("Sigrid",)),
    (SURNAME, ("Simplesson",)),
    (DISPLAY_NAME, ("Sigrid Simplesson",)),
))
# Kommun C's IdP also has accounts the broker must not let in: one with an HSA-id of Kommun A's series, one
# without the surname Kommun C's file requires (required_attributes: [givenName, sn])
OLLE = User("olle", "kommun-c-lösen", (
    (EMPLOYEE_HSA_ID, ("SE2120001009-olle",)), (GIVEN_NAME, ("Olle",)), (SURNAME, ("Annansson",))))
ULLA = User("ulla", "kommun-c-lösen", ((EMPLOYEE_HSA_ID, ("SE2120003005-SSP2",)), (GIVEN_NAME, ("Ulla",))))


# --- the stack -------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    broker: PublicBroker
    ssp: SimpleSamlPhp
    sp: DemoSp                       # the regional SP of the federated logins (pysaml2)
    idp_metadata: Trusted            # the broker's IdP metadata, as SimpleSAMLphp's SPs hold it
    sp_metadata: Trusted             # the broker's SP metadata, as SimpleSAMLphp's IdP holds it
    sp_metadata_xml: bytes

    def trust_broker_sp(self, **settings: PhpValue) -> Trusted:
        return trust_broker_sp(self.ssp, self.sp_metadata_xml, self.broker.config, **settings)


def trust_broker_idp(ssp: SimpleSamlPhp, document: bytes, config: Path) -> Trusted:
    """What the SPs' operator writes for the broker's IdP: its metadata as published (believed with the broker's
    IdP signing certificate), and verify its LogoutRequests and LogoutResponses (SimpleSAMLphp reads that from no
    metadata element; the broker signs them)."""
    return ssp.trust("saml20-idp-remote", document, signed_by=config / "keys" / "idp-signing.crt",
                     options={"validate.logout": True})


def trust_broker_sp(ssp: SimpleSamlPhp, document: bytes, config: Path, **settings: PhpValue) -> Trusted:
    """What the IdP's operator writes for the broker's SP: its metadata as published (believed with the broker's SP
    signing certificate), and local settings: sign and verify logout messages (the broker requires and signs them;
    SimpleSAMLphp reads that from no metadata element), attribute names as URIs (the eID framework's NameFormat),
    and ``settings`` (what to sign, whether to encrypt assertions for the broker's encryption key ...)."""
    return ssp.trust("saml20-sp-remote", document, signed_by=config / "keys" / "sp-signing.crt",
                     options={"sign.logout": True, "validate.logout": True, "attributes.NameFormat": URI_FORMAT,
                              **settings})


def sp_sources(idp_entity_id: str) -> list[SpSource]:
    # what every source's operator sets: sign AuthnRequests and LogoutRequests with RSA-SHA256 (the broker's files
    # require signed requests; SimpleSAMLphp signs only when told to)
    signing: Options = (("sign.authnrequest", True), ("sign.logout", True), ("signature.algorithm", RSA_SHA256))
    persistent: PhpValue = {"Format": PERSISTENT, "AllowCreate": True}
    return [
        SpSource("default", SP_ENTITY_IDS["default"], idp_entity_id, (*signing, ("NameIDPolicy", persistent))),
        SpSource("signed", SP_ENTITY_IDS["signed"], idp_entity_id, signing),
        SpSource("sealed", SP_ENTITY_IDS["sealed"], idp_entity_id, (*signing, ("assertion.encryption", True))),
        SpSource("loa4", SP_ENTITY_IDS["loa4"], idp_entity_id, (*signing, ("AuthnContextClassRef", LOA4))),
        # an operator who left out sign.authnrequest (SimpleSAMLphp's default): the broker's file requires signing
        SpSource("unsigned", SP_ENTITY_IDS["unsigned"], idp_entity_id, (("sign.authnrequest", False),)),
    ]


def hosted_idp() -> HostedIdp:
    return HostedIdp(SSP_IDP, (SIGRID, OLLE, ULLA), (
        ("signature.algorithm", RSA_SHA256),
        ("sign.logout", True),
        ("NameIDFormat", PERSISTENT),
        # a persistent NameID needs a generator: SimpleSAMLphp's own, a hash of the HSA-id, the SP and a secret
        ("authproc", {10: {"class": "saml:PersistentNameID", "attribute": EMPLOYEE_HSA_ID}}),
    ))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_material: Any, redis_url: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("simplesamlphp-stack")
    broker = PublicBroker.prepare(root, demo_material, redis_url)
    config, tls = broker.config, broker.tls
    now = dt.datetime.now(dt.UTC)
    ssp = SimpleSamlPhp(root / "simplesamlphp", tls_certificate=tls / "server.pem", tls_key=tls / "server.key",
                        tls_ca=tls / "ca.pem", sp_key=SigningKey.generate("SimpleSAMLphp SP", now),
                        idp_key=SigningKey.generate("Kommun C IdP (SimpleSAMLphp)", now),
                        sources=sp_sources(broker.idp_entity_id), idp=hosted_idp())
    with ssp:
        # each source is an SP of the broker, registered with the metadata SimpleSAMLphp publishes for it
        for source, (sign_response, encrypt) in BROKER_FILES.items():
            register_sp(config, f"simplesamlphp-{source}", entity_id=SP_ENTITY_IDS[source],
                        name=f"SimpleSAMLphp ({source})", metadata=ssp.sp_metadata(source), release=RELEASE,
                        sign_response=sign_response, encrypt_assertions=encrypt)
        # Kommun C logs in at SimpleSAMLphp's IdP: its published metadata is the municipality's metadata file
        (config / "metadata" / "kommun-c-simplesamlphp.xml").write_bytes(ssp.idp_metadata())
        kommun_c = config / "municipalities" / "kommun-c.yaml"
        document = yaml.safe_load(kommun_c.read_text(encoding="utf-8"))
        document["saml"].update(entity_id=SSP_IDP, metadata={"file": "metadata/kommun-c-simplesamlphp.xml"})
        kommun_c.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

        with broker.running():
            idp_xml = requests.get(broker.serve.url + "/saml/idp/metadata", timeout=10).content
            sp_xml = requests.get(broker.serve.url + "/saml/sp/metadata", timeout=10).content
            yield Stack(broker, ssp, make_sp(Path(demo_material.root), idp_xml, broker.idp_entity_id),
                        trust_broker_idp(ssp, idp_xml, config), trust_broker_sp(ssp, sp_xml, config), sp_xml)


# --- reading the way ------------------------------------------------------------------------------------------


def redirected(response: requests.Response, endpoint: str, parameter: str) -> RedirectedMessage:
    """The SAML message of a redirect (HTTP-Redirect binding) to ``endpoint``."""
    assert response.status_code in (302, 303), (response.status_code, reason(response), response.text[-1500:])
    message = redirect_message(response.headers["Location"], parameter)
    assert message.url == endpoint, message.url
    return message


def application(response: requests.Response) -> dict[str, Any]:
    """What the PHP application behind SimpleSAMLphp printed (JSON)."""
    assert response.status_code == 200, (response.status_code, response.text[-3000:])
    found: dict[str, Any] = response.json()
    return found


# --- 1. SimpleSAMLphp as the region's SP ------------------------------------------------------------------------


@dataclass(frozen=True)
class SpLogin:
    request: RedirectedMessage     # SimpleSAMLphp's AuthnRequest, as it reached the broker
    response: Posted               # the broker's answer, as the browser posts it to SimpleSAMLphp's ACS
    landed: requests.Response      # SimpleSAMLphp's answer to the post, its redirects followed


def sp_login(stack: Stack, visitor: Visitor, source: str) -> SpLogin:
    """Open the source's protected page; take the AuthnRequest to the broker, post its answer to the ACS."""
    first = visitor.get(stack.ssp.app(source, "attributes"))
    request = redirected(first, stack.broker.url + "/saml/idp/sso", "SAMLRequest")
    response = posted(visitor.get(first.headers["Location"]))
    return SpLogin(request, response, visitor.follow(visitor.post(response.action, response.fields)))


def session_at(stack: Stack, visitor: Visitor, source: str) -> bool:
    """Does SimpleSAMLphp hold a login of ``source`` in this browser?"""
    return bool(application(visitor.get(stack.ssp.app(source, "session")))["authenticated"])


@pytest.mark.parametrize(("metadata_set", "path"), [
    pytest.param("saml20-idp-remote", "/saml/idp/metadata", id="idp-metadata"),
    pytest.param("saml20-sp-remote", "/saml/sp/metadata", id="sp-metadata"),
])
def test_simplesamlphp_believes_the_brokers_metadata_by_its_signature(stack: Stack, metadata_set: MetadataSet,
                                                                       path: str) -> None:
    """The broker signs both its metadata documents; SimpleSAMLphp's parser (as metarefresh uses it) verifies the
    signature with the certificate regional IT hands out, refuses the same document against another certificate,
    and reads from it what the logins below rely on."""
    document = requests.get(stack.broker.serve.url + path, timeout=10).content
    with pytest.raises(SimpleSamlPhpRefused) as refused:
        stack.ssp.trust(metadata_set, document, signed_by=stack.ssp.workdir / "cert" / "sp.crt")
    assert str(refused.value) == f"the metadata of {stack.broker.url + path} is not signed by " \
                                 f"{stack.ssp.workdir / 'cert' / 'sp.crt'}"
    assert "Could not validate signature" in refused.value.log    # SAMLParser::validateSignature's own word

    if metadata_set == "saml20-idp-remote":
        held = trust_broker_idp(stack.ssp, document, stack.broker.config).metadata
        assert held["entityid"] == stack.broker.idp_entity_id
        assert held["sign.authnrequest"] is True    # from WantAuthnRequestsSigned
        assert held["SingleSignOnService"][0] == {"Binding": HTTP_REDIRECT,
                                                  "Location": stack.broker.url + "/saml/idp/sso"}
        assert held["SingleLogoutService"][0] == {"Binding": HTTP_REDIRECT,
                                                  "Location": stack.broker.url + "/saml/idp/slo"}
        assert [(k["signing"], k["encryption"]) for k in held["keys"]] == [(True, False)]
    else:
        held = stack.trust_broker_sp().metadata
        assert held["entityid"] == stack.broker.sp_entity_id
        assert (held["validate.authnrequest"], held["saml20.sign.assertion"]) == (True, True)
        assert held["AssertionConsumerService"] == [{"Binding": HTTP_POST, "Location": stack.broker.url
                                                     + "/saml/sp/acs", "index": 0, "isDefault": True}]
        assert [(k["signing"], k["encryption"]) for k in held["keys"]] == [(True, False), (False, True)]
    assert held["expire"] > dt.datetime.now(dt.UTC).timestamp()     # the document's validUntil


@dataclass(frozen=True)
class Person:
    user: str
    loa: str
    attributes: dict[str, list[str]]   # what the application gets, transactionIdentifier aside (new every login)


PEOPLE = [
    pytest.param(Person("anna", LOA3, {
        EMPLOYEE_HSA_ID: ["SE2120001009-anna"], GIVEN_NAME: ["Anna"], SURNAME: ["Demosson"],
        DISPLAY_NAME: ["Anna Demosson"], ORGANIZATION: ["Kommun A"], ORGANIZATION_IDENTIFIER: ["2120001009"],
        ORG_AFFILIATION: ["SE2120001009-anna@2120001009"],
    }), id="anna-hsa-id-loa3"),
    pytest.param(Person("bo", LOA2, {
        PERSONAL_IDENTITY_NUMBER: ["191212121212"], GIVEN_NAME: ["Bo"], SURNAME: ["Demosson"],
        DISPLAY_NAME: ["Bo Demosson"], ORGANIZATION: ["Kommun B"], ORGANIZATION_IDENTIFIER: ["2120002007"],
    }), id="bo-personnummer-loa2"),
]


@pytest.mark.parametrize("person", PEOPLE)
def test_sp_initiated_certificate_login(stack: Stack, person: Person) -> None:
    visitor = stack.broker.visitor(person.user)
    ssp, entity_id = stack.ssp, SP_ENTITY_IDS["default"]

    # 1. SimpleSAMLphp's AuthnRequest, signed in the query (SAML Bindings §3.4.4.1) with RSA-SHA256
    login = sp_login(stack, visitor, "default")
    request = login.request.root
    assert request.tag == "{urn:oasis:names:tc:SAML:2.0:protocol}AuthnRequest"
    assert request.findtext("saml:Issuer", namespaces=NS) == entity_id
    assert (request.get("Destination"), request.get("AssertionConsumerServiceURL"), request.get("ProtocolBinding")) \
        == (login.request.url, ssp.acs("default"), HTTP_POST)
    assert request.find("samlp:NameIDPolicy", NS).get("Format") == PERSISTENT  # type: ignore[union-attr]
    assert login.request.parameters["SigAlg"] == RSA_SHA256
    assert login.request.parameters["Signature"]
    # SimpleSAMLphp's RelayState is the page to return to (within the broker's 80 bytes, Bindings §3.4.3)
    assert login.request.parameters["RelayState"] == ssp.app("default", "attributes")

    # 2. the broker's Response for SimpleSAMLphp's ACS: the Assertion signed, the Response not (sign_response: false)
    response = login.response
    assert (response.action, response.fields["RelayState"]) == (ssp.acs("default"), ssp.app("default", "attributes"))
    assert response.root.get("InResponseTo") == request.get("ID")
    assert response.root.find("ds:Signature", NS) is None
    assert signature_algorithms(response.assertion())["signature"] == RSA_SHA256

    # 3. what SimpleSAMLphp gives the application: the eID framework's attributes by URI, the NameID, the LoA
    got = application(login.landed)
    transaction = response.text(f"saml:AttributeStatement/saml:Attribute[@Name='{TRANSACTION_IDENTIFIER}']/"
                                "saml:AttributeValue")
    assert got["attributes"] == {**person.attributes, TRANSACTION_IDENTIFIER: [transaction]}
    assert got["name_id"] == {"value": response.text("saml:Subject/saml:NameID"), "format": PERSISTENT,
                              "name_qualifier": stack.broker.idp_entity_id, "sp_name_qualifier": entity_id}
    assert (got["authn_context"], got["idp"]) == (person.loa, stack.broker.idp_entity_id)
    assert got["session_index"] == response.assertion().find("saml:AuthnStatement", NS).get("SessionIndex")  # type: ignore[union-attr]


def test_signed_response_is_accepted(stack: Stack) -> None:
    """The ``signed`` source: the broker signs Response and Assertion. The same browser logs in at ``default`` first,
    so the second login is single sign-on (no card); SimpleSAMLphp's default NameIDPolicy asks for a transient
    NameID, and the two sources, two SPs to the broker, get different ones."""
    visitor = stack.broker.visitor("anna")
    first = application(sp_login(stack, visitor, "default").landed)
    mark = stack.ssp.log_size()
    second = sp_login(stack, Visitor(visitor.browser, card=None), "signed")

    response, assertion = second.response.root, second.response.assertion()
    assert second.request.root.find("samlp:NameIDPolicy", NS).get("Format") == TRANSIENT  # type: ignore[union-attr]
    for signed in (response, assertion):
        used = signature_algorithms(signed)
        assert (used["reference"], used["signature"], used["digest"]) == ("#" + signed.get("ID", ""), RSA_SHA256,
                                                                          DIGEST_SHA256)
    got = application(second.landed)
    assert got["attributes"][EMPLOYEE_HSA_ID] == ["SE2120001009-anna"]
    assert got["authn_context"] == LOA3
    assert got["name_id"]["format"] == TRANSIENT
    assert got["name_id"]["value"] == second.response.text("saml:Subject/saml:NameID") != first["name_id"]["value"]
    # SimpleSAMLphp verified both signatures, the Response's first (Message::checkSign, once for each element). It
    # would not refuse a Response whose own signature fails while the Assertion's holds (SAML2\Message ignores a
    # failing message signature and checks the Assertion's alone), so its log is the evidence that the broker's
    # Response signature verifies
    checks = [line.split("] ", 1)[1] for line in stack.ssp.log(mark).splitlines() if "Validation with key" in line]
    assert checks == ["Validation with key #0 succeeded."] * 2, checks


def test_encrypted_assertion_is_decrypted_by_simplesamlphp(stack: Stack) -> None:
    """The ``sealed`` source: the browser carries the Assertion encrypted (AES-256-GCM, the key by RSA-OAEP for the
    certificate in SimpleSAMLphp's metadata); SimpleSAMLphp decrypts it with its key (xmlseclibs), checks the
    broker's signature inside and gives the application Bo's attributes."""
    visitor = stack.broker.visitor("bo")
    mark = stack.ssp.log_size()
    sealed = sp_login(stack, visitor, "sealed")

    root = sealed.response.root
    assert root.findall("saml:Assertion", NS) == []
    (data,) = root.findall("saml:EncryptedAssertion/xenc:EncryptedData", ENC_NS)
    assert data.find("xenc:EncryptionMethod", ENC_NS).get("Algorithm") == AES256_GCM  # type: ignore[union-attr]
    (key,) = data.findall("ds:KeyInfo/xenc:EncryptedKey", ENC_NS)
    assert key.get("Recipient") == SP_ENTITY_IDS["sealed"]
    assert key.find("xenc:EncryptionMethod", ENC_NS).get("Algorithm") == RSA_OAEP_MGF1P  # type: ignore[union-attr]
    xml = etree.tostring(root)
    for readable in (b"191212121212", b"Demosson", b"NameID", b"AttributeValue"):
        assert readable not in xml, readable

    got = application(sealed.landed)
    assert got["attributes"][PERSONAL_IDENTITY_NUMBER] == ["191212121212"]
    assert got["attributes"][DISPLAY_NAME] == ["Bo Demosson"]
    assert got["authn_context"] == LOA2
    assert "Decryption with key #0 succeeded." in stack.ssp.log(mark)


def test_simplesamlphp_refuses_an_assertion_changed_after_the_broker_signed_it(stack: Stack) -> None:
    """The control for the acceptances above: SimpleSAMLphp does check the broker's signature on the Assertion
    (xmlseclibs' reference validation), and shows its error page instead of logging the user in."""
    visitor = stack.broker.visitor("anna")
    first = visitor.get(stack.ssp.app("default", "attributes"))
    response = posted(visitor.get(first.headers["Location"]))
    value = response.assertion().find(
        f"saml:AttributeStatement/saml:Attribute[@Name='{EMPLOYEE_HSA_ID}']/saml:AttributeValue", NS)
    assert value is not None
    value.text = "SE2120001009-mallory"
    forged = {**response.fields, "SAMLResponse": base64.b64encode(etree.tostring(response.root)).decode()}

    refused = visitor.post(response.action, forged)
    assert "<title>Unhandled exception</title>" in refused.text, refused.text[-2000:]
    assert "Caused by: Exception: Reference validation failed" in refused.text, refused.text[-2000:]
    assert "SAML2\\Assertion::parseSignature" in refused.text
    assert not session_at(stack, visitor, "default")


def test_unsatisfiable_requested_authn_context_reaches_simplesamlphp_as_no_authn_context(stack: Stack) -> None:
    """The ``loa4`` source asks for LoA 4; Anna's card gives LoA 3: the broker answers with its error status (SAML Core
    §3.3.2.2.1), which SimpleSAMLphp hands the application's error page instead of a login."""
    visitor = stack.broker.visitor("anna")
    login = sp_login(stack, visitor, "loa4")
    requested = login.request.root.find("samlp:RequestedAuthnContext", NS)
    assert requested is not None
    assert requested.get("Comparison") is None     # absent: exact (SAML Core §3.3.2.2.1)
    assert [e.text for e in requested.findall("saml:AuthnContextClassRef", NS)] == [LOA4]

    assert login.response.root.find("saml:Assertion", NS) is None
    assert status_codes(login.response.root) == (RESPONDER, NO_AUTHN_CONTEXT)
    assert login.landed.url.startswith(stack.ssp.app("loa4", "error") + "?")
    assert application(login.landed) == {"authenticated": False, "error": {
        "class": "SimpleSAML\\Module\\saml\\Error", "message": "Responder/NoAuthnContext: authn_context_unsupported",
        "status": RESPONDER, "sub_status": NO_AUTHN_CONTEXT, "status_message": "authn_context_unsupported"}}
    correlation = correlation_of(stack.broker.config, str(login.request.root.get("ID")))
    assert ("error_response_issued", "failure", "authn_context_unsupported") in \
        events_of(stack.broker.config, correlation)


def test_unsigned_authn_request_is_refused(stack: Stack) -> None:
    """The control for the signed requests above: the ``unsigned`` source's operator left SimpleSAMLphp's default
    (no ``sign.authnrequest``), so its metadata says AuthnRequestsSigned="false"; the broker's file for it requires
    signed requests, and the broker shows its error page instead of answering SimpleSAMLphp."""
    metadata = etree.fromstring((stack.broker.config / "metadata" / "simplesamlphp-unsigned.xml").read_bytes())
    assert metadata.find("{*}SPSSODescriptor").get("AuthnRequestsSigned") == "false"  # type: ignore[union-attr]
    visitor = stack.broker.visitor("anna")
    first = visitor.get(stack.ssp.app("unsigned", "attributes"))
    request = redirected(first, stack.broker.url + "/saml/idp/sso", "SAMLRequest")
    assert not {"SigAlg", "Signature"} & set(request.parameters)

    refused = visitor.get(first.headers["Location"])
    assert (refused.status_code, reason(refused)) == (403, "saml_request_unsigned")
    assert "SAMLResponse" not in refused.text
    # the page's reference number is the correlation ID of the refusal in the audit trail
    rejected, = [e for e in stack.broker.audit() if e["event"] == "saml_request_rejected"
                 and e["correlation_id"] in refused.text]
    assert (rejected["outcome"], rejected["reason"], rejected["detail"]) == (
        "failure", "saml_request_unsigned", "no query-string signature")


@pytest.mark.parametrize(("length", "refusal"), [
    pytest.param(80, None, id="80-bytes-accepted"),
    pytest.param(81, "relay_state_too_long", id="81-bytes-refused"),
])
def test_relay_state_is_the_page_to_return_to_and_at_most_80_bytes(stack: Stack, length: int,
                                                                    refusal: str | None) -> None:
    """SimpleSAMLphp 1.19 sends the URL to return to as RelayState (``saml:SP`` startSSO2), however long; SAML Bindings
    §3.4.3 says RelayState "MUST NOT exceed 80 bytes", and the broker (``relay_state_max_bytes: 80``) refuses a longer
    one rather than cut it. An application behind SimpleSAMLphp keeps the URLs that start a login short (here: the
    protected page with a query string, 80 and 81 bytes of URL)."""
    visitor = stack.broker.visitor("anna")
    page_url = stack.ssp.app("default", "attributes?patient=")
    page_url += "x" * (length - len(page_url.encode()))
    first = visitor.get(page_url)
    request = redirected(first, stack.broker.url + "/saml/idp/sso", "SAMLRequest")
    assert (request.parameters["RelayState"], len(request.parameters["RelayState"].encode())) == (page_url, length)

    answered = visitor.get(first.headers["Location"])
    if refusal is None:
        response = posted(answered)
        assert response.fields["RelayState"] == page_url
        landed = visitor.follow(visitor.post(response.action, response.fields))
        assert landed.url == page_url
        assert application(landed)["attributes"][EMPLOYEE_HSA_ID] == ["SE2120001009-anna"]
        return
    assert (answered.status_code, reason(answered)) == (400, refusal)
    assert "SAMLResponse" not in answered.text
    # the page's reference number is the correlation ID of the refusal in the audit trail
    rejected, = [e for e in stack.broker.audit() if e["event"] == "saml_request_rejected"
                 and e["correlation_id"] in answered.text]
    assert (rejected["outcome"], rejected["reason"]) == ("failure", refusal)


def test_single_logout_started_at_simplesamlphp(stack: Stack) -> None:
    """Anna logs in at ``default`` and, by single sign-on, at ``signed``; then she logs out at ``default``: its
    LogoutRequest reaches the broker, which ends her session, asks ``signed`` (SimpleSAMLphp as the responder: it
    verifies the broker's signature and answers) and answers ``default`` with a LogoutResponse that SimpleSAMLphp
    verifies and reports to the application as Success. Nothing of the session is left on either side."""
    with_card = stack.broker.visitor("anna")
    issued = sp_login(stack, with_card, "default").response
    visitor = Visitor(with_card.browser, card=None)   # the same browser, no card from now on
    application(sp_login(stack, visitor, "signed").landed)
    assert session_at(stack, visitor, "default")
    assert session_at(stack, visitor, "signed")

    # 1. SimpleSAMLphp's LogoutRequest, signed in the query
    started = visitor.get(stack.ssp.app("default", "logout"))
    request = redirected(started, stack.broker.url + "/saml/idp/slo", "SAMLRequest")
    assert (request.parameters["SigAlg"], bool(request.parameters["Signature"])) == (RSA_SHA256, True)
    assert request.root.findtext("saml:Issuer", namespaces=NS) == SP_ENTITY_IDS["default"]
    name_id = request.root.find("saml:NameID", NS)
    assert name_id is not None
    assert (name_id.text, name_id.get("Format"), name_id.get("SPNameQualifier")) == (
        issued.text("saml:Subject/saml:NameID"), PERSISTENT, SP_ENTITY_IDS["default"])
    assert request.root.findtext("samlp:SessionIndex", namespaces=NS) == \
        issued.assertion().find("saml:AuthnStatement", NS).get("SessionIndex")  # type: ignore[union-attr]

    # 2. the broker asks the other source, which verifies the request and answers Success, signed
    propagated = visitor.get(started.headers["Location"])
    asked = redirected(propagated, stack.ssp.sp_slo("signed"), "SAMLRequest")
    assert asked.root.find("saml:NameID", NS).get("SPNameQualifier") == SP_ENTITY_IDS["signed"]  # type: ignore[union-attr]
    at_signed = visitor.get(propagated.headers["Location"])
    answer = redirected(at_signed, stack.broker.url + "/saml/idp/slo", "SAMLResponse")
    assert (status_codes(answer.root), answer.root.get("InResponseTo")) == ((SUCCESS, None), asked.root.get("ID"))
    assert answer.parameters["SigAlg"] == RSA_SHA256

    # 3. the broker's LogoutResponse to ``default``, which SimpleSAMLphp verifies and reports to the application
    final = visitor.get(at_signed.headers["Location"])
    response = redirected(final, stack.ssp.sp_slo("default"), "SAMLResponse")
    assert (status_codes(response.root), response.root.get("InResponseTo")) == ((SUCCESS, None),
                                                                               request.root.get("ID"))
    assert response.parameters["RelayState"] == request.parameters["RelayState"]
    assert application(visitor.follow(visitor.get(final.headers["Location"]))) == {
        "logged_out": True, "status": {"Code": SUCCESS, "SubCode": None, "Message": None}}

    # nothing is left: not at SimpleSAMLphp, not at the broker (its cookie is gone, and without the card it has
    # nothing to answer the next AuthnRequest from)
    assert not session_at(stack, visitor, "default")
    assert not session_at(stack, visitor, "signed")
    assert "__Host-broker_session" not in {c.name for c in visitor.browser.session.cookies}
    again = visitor.get(stack.ssp.app("default", "attributes"))
    redirected(again, stack.broker.url + "/saml/idp/sso", "SAMLRequest")
    assert reason(visitor.get(again.headers["Location"])) == "certificate_missing"

    audit = stack.broker.audit()
    logout, = [e for e in audit if e["event"] == "logout" and e["data"]["peer"] == SP_ENTITY_IDS["default"]]
    assert (logout["outcome"], logout["data"]["session_ended"]) == ("success", True)
    mine = [e for e in audit if e.get("correlation_id") == logout["correlation_id"]]
    assert [(e["event"], e["outcome"]) for e in mine] == [
        ("logout", "success"), ("logout_propagated", "success"), ("logout_completed", "success")]
    assert list(mine[-1]["data"]["confirmed"]) == [SP_ENTITY_IDS["signed"]]


# --- 2. SimpleSAMLphp as Kommun C's IdP ----------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    sp_request: str                # the regional SP's AuthnRequest URL
    message: RedirectedMessage     # the broker's AuthnRequest to SimpleSAMLphp's IdP
    location: str                  # the URL the broker sends the browser to

    @property
    def sp_request_id(self) -> str:
        return str(redirect_message(self.sp_request, "SAMLRequest").root.get("ID"))


@dataclass(frozen=True)
class FederatedLogin:
    upstream: Upstream             # the SP's request, and the broker's AuthnRequest as it reached SimpleSAMLphp
    idp_response: Posted           # SimpleSAMLphp's Response, as the browser posts it to the broker's ACS
    answer: Posted                 # the broker's Response for the regional SP
    result: LoginResult            # what pysaml2 (the regional SP) made of it

    def subject_at_sp(self, sp: DemoSp) -> NameID:
        """The user's NameID as the regional SP keeps it (for its logout)."""
        subject, = [s for s in sp.client.users.subjects() if s.text == self.result.name_id]
        assert isinstance(subject, NameID)
        return subject


def to_simplesamlphp(stack: Stack, visitor: Visitor, url: str | None = None) -> Upstream:
    """SP → broker → discovery (Kommun C): the broker's redirect with its AuthnRequest to SimpleSAMLphp's IdP. ``url``:
    the SP's AuthnRequest (HTTP-Redirect), by default the demo SP's plain one."""
    url = url or stack.sp.login_url()
    choose = visitor.get(url)
    form = discovery_form(choose)
    to_idp = visitor.post(urljoin(choose.url, form.action), {**form.fields, "municipality": "kommun-c"})
    return Upstream(url, redirected(to_idp, stack.ssp.idp_sso, "SAMLRequest"), to_idp.headers["Location"])


def log_in_at_simplesamlphp(stack: Stack, visitor: Visitor, upstream: Upstream, user: User) -> Posted:
    """At SimpleSAMLphp's IdP: its login form, the user's credentials, its auto-posting Response form."""
    login_page = visitor.follow(visitor.get(upstream.location))
    assert login_page.url.startswith(stack.ssp.login_form + "?"), (login_page.url, login_page.text[-2000:])
    (form,) = [f for f in page(login_page).forms if "username" in f.fields]
    return posted(visitor.post(urljoin(login_page.url, form.action),
                               {**form.fields, "username": user.username, "password": user.password}))


def federated_login(stack: Stack, visitor: Visitor, user: User = SIGRID) -> FederatedLogin:
    """SP → broker → discovery (Kommun C) → SimpleSAMLphp (its login form) → broker → SP."""
    upstream = to_simplesamlphp(stack, visitor)
    idp_response = log_in_at_simplesamlphp(stack, visitor, upstream, user)
    answer = posted(visitor.post(idp_response.action, idp_response.fields))
    assert answer.action == DEMO_SP + "/acs"
    return FederatedLogin(upstream, idp_response, answer, stack.sp.accept(answer.fields["SAMLResponse"]))


@pytest.fixture
def idp_settings(stack: Stack, request: pytest.FixtureRequest) -> Iterator[dict[str, PhpValue]]:
    """Settings of SimpleSAMLphp's IdP for the broker's SP (``saml20-sp-remote``) for one test, then back to none:
    ``assertion.encryption``, ``saml20.sign.response``, ``saml20.sign.assertion`` (both signed by default)."""
    settings: dict[str, PhpValue] = dict(request.param)
    stack.trust_broker_sp(**settings)
    try:
        yield settings
    finally:
        stack.trust_broker_sp()


@pytest.mark.parametrize("idp_settings", [
    pytest.param({}, id="response-and-assertion-signed"),
    pytest.param({"saml20.sign.response": False}, id="assertion-signed"),
    pytest.param({"assertion.encryption": True}, id="assertion-encrypted-aes128-cbc-rsa-oaep"),
], indirect=True)
def test_federated_login_through_simplesamlphp(stack: Stack, idp_settings: dict[str, PhpValue]) -> None:
    """Sigrid of Kommun C opens the regional SP without a card, chooses Kommun C and logs in at SimpleSAMLphp's
    IdP. SimpleSAMLphp verifies the broker's signed AuthnRequest, answers with a signed Response (its Assertion
    signed too, and encrypted for the broker's encryption certificate when its operator says so: SimpleSAMLphp's
    only algorithms, AES-128-CBC and RSA-OAEP-MGF1P, both within the broker's allow-list); the broker validates it,
    maps the eID framework's attributes and the ClassRef, and answers the regional SP, which accepts it."""
    visitor = stack.broker.visitor()
    login = federated_login(stack, visitor)

    # the broker's AuthnRequest, verified by SimpleSAMLphp with the key of the broker's SP metadata
    request = login.upstream.message.root
    assert request.findtext("saml:Issuer", namespaces=NS) == stack.broker.sp_entity_id
    assert (request.get("Destination"), request.get("AssertionConsumerServiceURL")) == (
        stack.ssp.idp_sso, stack.broker.url + "/saml/sp/acs")
    assert login.upstream.message.parameters["SigAlg"] == RSA_SHA256
    assert request.find("samlp:NameIDPolicy", NS).get("Format") == PERSISTENT  # type: ignore[union-attr]

    # SimpleSAMLphp's Response: signed (RSA-SHA256, SHA-256 digests), the Assertion signed inside and, when told
    # to, encrypted with its defaults (AES-128-CBC, the key by RSA-OAEP)
    response = login.idp_response.root
    assert login.idp_response.action == stack.broker.url + "/saml/sp/acs"
    assert (response.get("Destination"), response.get("InResponseTo")) == (login.idp_response.action,
                                                                          request.get("ID"))
    if idp_settings.get("saml20.sign.response", True):
        used = signature_algorithms(response)
        assert (used["signature"], used["digest"]) == (RSA_SHA256, DIGEST_SHA256)
    else:
        assert response.find("ds:Signature", NS) is None
    if idp_settings.get("assertion.encryption"):
        assert response.find("saml:Assertion", NS) is None
        methods = response.xpath("saml:EncryptedAssertion//xenc:EncryptionMethod/@Algorithm", namespaces=ENC_NS)
        assert methods == [AES128_CBC, RSA_OAEP_MGF1P]
    else:
        assertion = login.idp_response.assertion()
        assert signature_algorithms(assertion)["signature"] == RSA_SHA256
        assert login.idp_response.text("saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef") == \
            PASSWORD_PROTECTED
        names = assertion.findall("saml:AttributeStatement/saml:Attribute", NS)
        assert {(a.get("Name"), a.get("NameFormat")) for a in names} == {
            (name, URI_FORMAT) for name, _ in SIGRID.attributes}
        assert assertion.find("saml:Subject/saml:NameID", NS).get("Format") == PERSISTENT  # type: ignore[union-attr]

    # the broker mapped it (PasswordProtectedTransport → LoA 2) and answered the regional SP, which accepts it
    assert (login.result.loa, login.result.attributes["employeeHsaId"]) == (LOA2, [SIGRID_HSA_ID])
    assert (login.result.attributes["givenName"], login.result.attributes["sn"]) == (["Sigrid"], ["Simplesson"])
    correlation = correlation_of(stack.broker.config, login.upstream.sp_request_id)
    result, = [e for e in stack.broker.audit() if e["event"] == "upstream_authn_result"
               and e["correlation_id"] == correlation]
    assert (result["outcome"], result["user"]) == ("success", SIGRID_HSA_ID)


def _signed_by_another_key(url: str) -> str:
    message = redirect_message(url, "SAMLRequest")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return redirect_url(message.xml, key=stranger, relay_state=message.parameters.get("RelayState"),
                        endpoint=message.url)


def _signature_removed(url: str) -> str:
    return re.sub(r"&(SigAlg|Signature)=[^&]*", "", url)


@pytest.mark.parametrize(("tamper", "error"), [
    pytest.param(_signed_by_another_key, "Exception: Unable to validate signature on query string.",
                 id="another-key"),
    pytest.param(_signature_removed, "Validation of received messages enabled, but no signature found on message.",
                 id="signature-removed"),
])
def test_simplesamlphp_refuses_an_authn_request_whose_signature_does_not_hold(
        stack: Stack, tamper: Callable[[str], str], error: str) -> None:
    """The verification in the logins above is real: SimpleSAMLphp's IdP (``validate.authnrequest``, from the
    AuthnRequestsSigned of the broker's SP metadata) refuses the broker's request with a query signature by any
    other key than the broker's, and without one (SAML Bindings §3.4.4.1)."""
    visitor = stack.broker.visitor()
    upstream = to_simplesamlphp(stack, visitor)
    refused = visitor.get(tamper(upstream.location))
    assert "<title>Unhandled exception</title>" in refused.text, refused.text[-2000:]
    assert error in refused.text, refused.text[-2000:]
    assert not any(f for f in page(refused).forms if "SAMLResponse" in f.fields)
    assert idp_session(stack, visitor)["authenticated"] is False


def assert_upstream_refused(stack: Stack, refused: requests.Response, upstream: Upstream,
                            code: str) -> dict[str, Any]:
    """The user got the broker's page for ``code``, with the signed error Response for the SP that the reason table
    gives (Responder and its second-level code); the audit trail says why and issued no assertion. The audited
    ``upstream_authn_result``."""
    assert (refused.status_code, reason(refused)) == (403, code)
    (form,) = [f for f in page(refused).forms if "SAMLResponse" in f.fields]
    assert form.action == DEMO_SP + "/acs"
    assert status_codes(etree.fromstring(base64.b64decode(form.fields["SAMLResponse"]))) == (
        RESPONDER, reason_row(code).saml_status)
    correlation = correlation_of(stack.broker.config, upstream.sp_request_id)
    result, = [e for e in stack.broker.audit() if e["event"] == "upstream_authn_result"
               and e["correlation_id"] == correlation]
    assert (result["outcome"], result["reason"]) == ("failure", code)
    assert "assertion_issued" not in [event for event, _, _ in events_of(stack.broker.config, correlation)]
    return result


@pytest.mark.parametrize(("user", "code", "detail"), [
    # the value itself is never written (it could as well be a personnummer): what it looks like is
    pytest.param(OLLE, "upstream_identity_invalid", "(17 characters: digits, letters, 1 other) does not match",
                 id="hsa-id-of-another-municipality"),
    pytest.param(ULLA, "upstream_attribute_missing", "sn", id="surname-missing"),
])
def test_the_broker_refuses_a_user_kommun_c_may_not_assert(stack: Stack, user: User, code: str,
                                                           detail: str) -> None:
    """SimpleSAMLphp's Response is sound, but what it says about the user is not what Kommun C's file allows: an
    HSA-id outside Kommun C's own series (SE2120003005-...), or no surname. The broker refuses the login with the
    reason, audits it, and offers the SP a signed AuthnFailed Response instead of an assertion."""
    visitor = stack.broker.visitor()
    upstream = to_simplesamlphp(stack, visitor)
    idp_response = log_in_at_simplesamlphp(stack, visitor, upstream, user)
    assert status_codes(idp_response.root) == (SUCCESS, None)

    refused = visitor.post(idp_response.action, idp_response.fields)
    result = assert_upstream_refused(stack, refused, upstream, code)
    assert detail in str(result["detail"])


def test_an_idp_ignoring_the_requested_authn_context_is_caught(stack: Stack) -> None:
    """The regional SP asks for LoA 3; the broker asks SimpleSAMLphp for the ClassRef Kommun C's file maps to LoA 3
    (X509, exact). SimpleSAMLphp 1.19's IdP does not look at RequestedAuthnContext (SAML Core §3.3.2.2.1 would have
    it authenticate so, or answer NoAuthnContext) and answers with its password login, PasswordProtectedTransport,
    worth LoA 2: the broker refuses (``upstream_authn_context_insufficient``) and the SP gets NoAuthnContext."""
    wanted = RequestedAuthnContext(authn_context_class_ref=[AuthnContextClassRef(text=LOA3)], comparison="exact")
    request_id, info = stack.sp.client.prepare_for_authenticate(
        entityid=stack.broker.idp_entity_id, relay_state="/", binding=BINDING_HTTP_REDIRECT, nameid_format=PERSISTENT,
        sign=True, sigalg=RSA_SHA256, digest_alg=DIGEST_SHA256, requested_authn_context=wanted)
    visitor = stack.broker.visitor()
    upstream = to_simplesamlphp(stack, visitor, str(dict(info["headers"])["Location"]))
    asked = upstream.message.root.find("samlp:RequestedAuthnContext", NS)
    assert asked is not None
    assert (asked.get("Comparison"), [e.text for e in asked.findall("saml:AuthnContextClassRef", NS)]) == (
        "exact", [CLASS_X509])

    idp_response = log_in_at_simplesamlphp(stack, visitor, upstream, SIGRID)
    assert idp_response.text("saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef") == PASSWORD_PROTECTED
    refused = visitor.post(idp_response.action, idp_response.fields)
    result = assert_upstream_refused(stack, refused, upstream, "upstream_authn_context_insufficient")
    assert PASSWORD_PROTECTED in str(result["detail"])
    assert reason_row("upstream_authn_context_insufficient").saml_status == NO_AUTHN_CONTEXT
    assert upstream.sp_request_id == request_id


def idp_session(stack: Stack, visitor: Visitor) -> dict[str, Any]:
    """SimpleSAMLphp's IdP session in this browser: logged in at its source, and the SPs it answered."""
    return application(visitor.get(stack.ssp.app(HostedIdp.source, "session")))


def test_single_logout_started_at_simplesamlphps_idp(stack: Stack) -> None:
    """Sigrid logs out at her municipality's IdP: SimpleSAMLphp's LogoutRequest reaches the broker's SP side, which
    ends her session, tells the regional SP, and answers SimpleSAMLphp with a signed LogoutResponse that it
    verifies before it returns her to the page named by ReturnTo."""
    visitor = stack.broker.visitor()
    login = federated_login(stack, visitor)
    at_sp = login.subject_at_sp(stack.sp)
    assert idp_session(stack, visitor) == {"authenticated": True,
                                           "idp_associations": [f"saml:{stack.broker.sp_entity_id}"]}

    back = stack.ssp.app(HostedIdp.source, "session")
    mark, audited = stack.ssp.log_size(), len(stack.broker.audit())
    # SimpleSAMLphp goes through its own resumelogout.php before it sends the LogoutRequest
    started = visitor.follow(visitor.get(stack.ssp.idp_slo + "?ReturnTo=" + quote(back, safe="")),
                             within=stack.ssp.base_url)
    request = redirected(started, stack.broker.url + "/saml/sp/slo", "SAMLRequest")
    assert (request.parameters["SigAlg"], request.root.findtext("saml:Issuer", namespaces=NS)) == (RSA_SHA256,
                                                                                                   SSP_IDP)
    name_id = request.root.find("saml:NameID", NS)
    assert name_id is not None
    assert (name_id.text, name_id.get("Format"), name_id.get("SPNameQualifier")) == (
        login.idp_response.text("saml:Subject/saml:NameID"), PERSISTENT, stack.broker.sp_entity_id)
    assert request.root.findtext("samlp:SessionIndex", namespaces=NS) == \
        login.idp_response.assertion().find("saml:AuthnStatement", NS).get("SessionIndex")  # type: ignore[union-attr]

    # the broker tells the regional SP (pysaml2 answers in the test process), then answers SimpleSAMLphp
    to_sp = visitor.get(started.headers["Location"])
    asked = redirected(to_sp, DEMO_SP + "/slo", "SAMLRequest")
    q = asked.parameters
    sp_answer = stack.sp.client.handle_logout_request(q["SAMLRequest"], at_sp, BINDING_HTTP_REDIRECT, sign=True,
                                                      sign_alg=RSA_SHA256, relay_state=q.get("RelayState"),
                                                      sigalg=q["SigAlg"], signature=q["Signature"])
    assert at_sp not in stack.sp.client.users.subjects()
    to_idp = visitor.get(str(dict(sp_answer["headers"])["Location"]))
    answer = redirected(to_idp, stack.ssp.idp_slo, "SAMLResponse")
    assert (status_codes(answer.root), answer.root.get("InResponseTo")) == ((SUCCESS, None), request.root.get("ID"))
    assert answer.parameters["SigAlg"] == RSA_SHA256

    # SimpleSAMLphp accepts it and sends her to ReturnTo, logged out
    assert application(visitor.follow(visitor.get(to_idp.headers["Location"]))) == {
        "authenticated": False, "idp_associations": []}
    log = stack.ssp.log(mark)
    assert f"Logged out of 'saml:{stack.broker.sp_entity_id}'." in log
    assert "Error received from" not in log
    logout, *rest = stack.broker.audit()[audited:]
    assert (logout["event"], logout["outcome"], logout["data"]["initiator"], logout["data"]["peer"]) == (
        "logout", "success", "idp", SSP_IDP)
    assert (logout["data"]["session_ended"], list(logout["data"]["propagate_to"])) == (True, [
        f"sp:{DEMO_SP}/metadata"])
    assert [(e["event"], e["outcome"], e["correlation_id"]) for e in rest] == [
        ("logout_propagated", "success", logout["correlation_id"]),
        ("logout_completed", "success", logout["correlation_id"])]


def test_single_logout_started_at_the_regional_sp_reaches_simplesamlphp(stack: Stack) -> None:
    """The regional SP's logout reaches SimpleSAMLphp's IdP as a LogoutRequest signed with the broker's SP key;
    SimpleSAMLphp verifies it, ends its session and answers with a signed LogoutResponse, which the broker accepts
    before it answers the SP with Success."""
    visitor = stack.broker.visitor()
    name_id = federated_login(stack, visitor).subject_at_sp(stack.sp)
    audited = len(stack.broker.audit())
    (binding, info), = stack.sp.client.global_logout(name_id, sign=True, sign_alg=RSA_SHA256,
                                                     digest_alg=DIGEST_SHA256).values()
    assert binding == BINDING_HTTP_REDIRECT
    start = str(dict(info["headers"])["Location"])

    to_idp = visitor.get(start)
    request = redirected(to_idp, stack.ssp.idp_slo, "SAMLRequest")
    assert (request.parameters["SigAlg"], request.root.findtext("saml:Issuer", namespaces=NS)) == (
        RSA_SHA256, stack.broker.sp_entity_id)
    back = visitor.follow(visitor.get(to_idp.headers["Location"]), within=stack.ssp.base_url)
    answer = redirected(back, stack.broker.url + "/saml/sp/slo", "SAMLResponse")
    assert (status_codes(answer.root), answer.root.get("InResponseTo")) == ((SUCCESS, None), request.root.get("ID"))
    assert answer.parameters["SigAlg"] == RSA_SHA256
    assert idp_session(stack, visitor) == {"authenticated": False, "idp_associations": []}

    final = redirected(visitor.get(back.headers["Location"]), DEMO_SP + "/slo", "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    assert final.root.get("InResponseTo") == redirect_message(start, "SAMLRequest").root.get("ID")
    assert stack.sp.client.parse_logout_request_response(final.parameters["SAMLResponse"],
                                                         BINDING_HTTP_REDIRECT) is not None
    logout, propagated, completed = stack.broker.audit()[audited:]
    assert (logout["event"], logout["outcome"], logout["data"]["peer"]) == ("logout", "success", f"{DEMO_SP}/metadata")
    assert (propagated["event"], propagated["outcome"], propagated["data"]["side"], propagated["data"]["peer"]) == (
        "logout_propagated", "success", "idp", SSP_IDP)
    assert (completed["event"], completed["outcome"], list(completed["data"]["confirmed"])) == (
        "logout_completed", "success", [SSP_IDP])



@pytest.mark.parametrize("idp_settings", [
    pytest.param({"saml20.sign.assertion": False}, id="response-signed"),
    pytest.param({"saml20.sign.assertion": False, "assertion.encryption": True}, id="response-signed-encrypted"),
], indirect=True)
def test_the_broker_requires_the_assertion_signed_as_kommun_c_says(stack: Stack,
                                                                    idp_settings: dict[str, PhpValue]) -> None:
    """SimpleSAMLphp's operator turns the Assertion's signature off (``saml20.sign.assertion: false``) and signs the
    Response alone; Kommun C's file says ``signed_element: assertion``, so the broker refuses: ``upstream_unsigned``
    (not ``upstream_decryption_failed`` for the encrypted one, whose ciphertext the verified Response signature
    covers), with an AuthnFailed Response offered to the SP."""
    visitor = stack.broker.visitor()
    upstream = to_simplesamlphp(stack, visitor)
    idp_response = log_in_at_simplesamlphp(stack, visitor, upstream, SIGRID)
    assert signature_algorithms(idp_response.root)["signature"] == RSA_SHA256
    encrypted = idp_response.root.find("saml:EncryptedAssertion", NS)
    assert (encrypted is not None) is bool(idp_settings.get("assertion.encryption"))
    if encrypted is None:
        assert idp_response.assertion().find("ds:Signature", NS) is None

    refused = visitor.post(idp_response.action, idp_response.fields)
    result = assert_upstream_refused(stack, refused, upstream, "upstream_unsigned")
    assert result["detail"] == "the IdP must sign: assertion"
