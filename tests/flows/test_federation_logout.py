"""Single logout across the federation (SAML Profiles §4.4; broker/flow/logout.py is the contract).

Two regional SPs take part (the demo SP and a second pysaml2 SP configured here; a third whose metadata has no
SingleLogoutService), and, for federated logins, Kommun C's pysaml2 IdP. Every peer is a real pysaml2 entity:
the SPs answer the broker's LogoutRequests with ``handle_logout_request`` (signed HTTP-Redirect
LogoutResponses); the IdP's messages are made by its own pysaml2 ``Server`` (``idp_logout_url``,
``idp_answers``), because ``DemoIdp.logout_request`` and ``DemoIdp.handle_slo`` cannot take part in a signed
logout (the two ``test_demo_idp_*`` tests at the end say so); ``DemoIdp.handle_slo`` does check the broker's
final LogoutResponses. The browser follows every hop by hand; the tests check each message on the way and the
audit trail at the end.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
import secrets
import time
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT, samlp
from saml2.saml import NAMEID_FORMAT_ENTITY, NAMEID_FORMAT_PERSISTENT, Issuer, NameID
from saml2.time_util import instant
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.audit.schema import validate
from broker.clock import SystemClock
from broker.config.loader import Settings
from broker.demo.idp import DemoIdp, FormPost
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from broker.errors import AuditUnavailable, CertificateRejected, SessionStoreUnavailable
from broker.model import KNOWN_LOAS
from broker.saml.xmltime import format_instant
from broker.session.sessions import SessionManager
from broker.session.store import RedisStore
from tests.corpus.upstream.generate import XENC, KeyPair, encrypt_element
from tests.factories.authnrequests import (
    DIGEST_SHA256,
    NS,
    RSA_SHA256,
    RedirectedMessage,
    assert_refused,
    load_key,
    open_browser,
    posted_response,
    redirect_message,
    redirect_url,
    status_codes,
    with_issuer,
)
from tests.factories.idp import IDP_ENTITY_ID, KARIN, discovery_login_id, federated_login, to_idp
from tests.factories.saml import BASE_URL, Browser, forms, saml_response_form, xmlsec_binary
from tests.flows.conftest import audit_lines

BROKER_IDP = BASE_URL + "/saml/idp/metadata"     # the broker toward the SPs
BROKER_SP = BASE_URL + "/saml/sp/metadata"       # the broker toward the municipal IdPs
IDP_SLO = BASE_URL + "/saml/idp/slo"             # the broker's SLO for the SPs
SP_SLO = BASE_URL + "/saml/sp/slo"               # the broker's SLO for the municipal IdPs
SP1 = BASE_URL + "/demo-sp/metadata"
SP2 = BASE_URL + "/second-sp/metadata"
SP3 = BASE_URL + "/third-sp/metadata"            # no SingleLogoutService in the metadata the broker has
SP1_SLO = BASE_URL + "/demo-sp/slo"
SP2_SLO = BASE_URL + "/second-sp/slo"
KOMMUN_C_SLO = BASE_URL + "/demo-idp/slo"

SUCCESS = samlp.STATUS_SUCCESS
PARTIAL = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"
LOGOUT_REQUEST = "{urn:oasis:names:tc:SAML:2.0:protocol}LogoutRequest"
LOGOUT_RESPONSE = "{urn:oasis:names:tc:SAML:2.0:protocol}LogoutResponse"
COOKIE = "__Host-broker_session"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"


# --- configuration: a second (and a third, SLO-less) regional SP ------------------------------------------


def _sp_settings(demo_material, name: str) -> DemoSpSettings:  # type: ignore[no-untyped-def]
    root = demo_material.root / "sp"
    return DemoSpSettings(base_url=f"{BASE_URL}/{name}", key_file=root / "sp.key", cert_file=root / "sp.crt",
                          xmlsec_binary=xmlsec_binary())


def _without_slo(metadata: bytes) -> bytes:
    root = etree.fromstring(metadata)
    for element in root.iter(f"{{{MD}}}SingleLogoutService"):
        element.getparent().remove(element)  # type: ignore[union-attr]
    return bytes(etree.tostring(root))


def _add_sp(config_dir: Path, name: str, display: str, metadata: bytes) -> None:
    (config_dir / "metadata" / f"{name}.xml").write_bytes(metadata)
    template = (config_dir / "service-providers" / "demo-sp.yaml").read_text()
    text = template.replace("https://localhost:8443/demo-sp/metadata", f"{BASE_URL}/{name}/metadata")
    text = text.replace("metadata/demo-sp.xml", f"metadata/{name}.xml")
    text = re.sub(r"name:\n  sv: [^\n]*\n  en: [^\n]*\n", f"name:\n  sv: {display} (sv)\n  en: {display}\n", text)
    assert text.count(name) == 2, text
    assert display in text, text
    (config_dir / "service-providers" / f"{name}.yaml").write_text(text)


@pytest.fixture
def config_dir(config_dir: Path, demo_material) -> Path:  # type: ignore[no-untyped-def]
    """The example configuration plus the second SP (with SLO) and a third SP whose metadata has none."""
    _add_sp(config_dir, "second-sp", "Andra tjänsten", sp_metadata(_sp_settings(demo_material, "second-sp")))
    _add_sp(config_dir, "third-sp", "Tredje tjänsten",
            _without_slo(sp_metadata(_sp_settings(demo_material, "third-sp"))))
    return config_dir


def _pysaml2_sp(app: Flask, settings: Settings, demo_material, name: str) -> DemoSp:  # type: ignore[no-untyped-def]
    metadata = app.extensions["broker"].metadata.document()
    return DemoSp(_sp_settings(demo_material, name), metadata, settings.broker.idp.entity_id)


@pytest.fixture
def sp2(app: Flask, settings: Settings, demo_material) -> DemoSp:  # type: ignore[no-untyped-def]
    return _pysaml2_sp(app, settings, demo_material, "second-sp")


@pytest.fixture
def sp3(app: Flask, settings: Settings, demo_material) -> DemoSp:  # type: ignore[no-untyped-def]
    return _pysaml2_sp(app, settings, demo_material, "third-sp")


# --- logging in -----------------------------------------------------------------------------------------


def sso_login(browser: Browser, sp: DemoSp) -> NameID:
    """A login at ``sp`` answered by the broker (certificate or SSO session); pysaml2 accepts it."""
    posted = posted_response(browser.get(sp.login_url()))
    assert posted.action == sp.settings.base_url + "/acs"
    sp.accept(posted.fields["SAMLResponse"])
    return name_id_at(sp)


def karin_login(browser: Browser, sp: DemoSp, idp: DemoIdp) -> NameID:
    """Karin through the discovery page and Kommun C's IdP."""
    browser.certificate_pem = None
    _, fields = saml_response_form(federated_login(browser, sp, idp, KARIN))
    sp.accept(fields["SAMLResponse"])
    return name_id_at(sp)


def name_id_at(sp: DemoSp) -> NameID:
    """The NameID pysaml2 keeps for its one logged-in user."""
    subjects = sp.client.users.subjects()
    assert len(subjects) == 1, subjects
    return subjects[0]


def cookie(browser: Browser) -> str:
    found = browser.client.get_cookie(COOKIE)
    assert found is not None, "no broker session cookie"
    return found.value


def with_cookie(app: Flask, token: str) -> Browser:
    """A browser without a certificate that presents ``token`` as its broker session cookie (the session as
    the server sees it, whatever the logout did to the real browser's cookie jar)."""
    other = open_browser(app, None)
    other.client.set_cookie(COOKIE, token)
    return other


# --- single logout messages -------------------------------------------------------------------------------


def sp_logout_url(sp: DemoSp, name_id: NameID) -> str:
    """The SP's own signed HTTP-Redirect LogoutRequest to the broker (pysaml2 ``global_logout``)."""
    (binding, info), = sp.client.global_logout(name_id, sign=True, sign_alg=RSA_SHA256,
                                               digest_alg=DIGEST_SHA256).values()
    assert binding == BINDING_HTTP_REDIRECT
    return str(dict(info["headers"])["Location"])


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass(frozen=True)
class Hop:
    """A 303 that sends the browser on with an HTTP-Redirect message: the whole URL and the decoded message."""

    location: str
    message: RedirectedMessage

    @property
    def root(self) -> etree._Element:
        return self.message.root

    @property
    def parameters(self) -> dict[str, str]:
        return self.message.parameters


def hop(response: TestResponse, endpoint: str, parameter: str) -> Hop:
    """The broker's 303 to ``endpoint`` carrying ``parameter`` (SAMLRequest or SAMLResponse)."""
    assert response.status_code == 303, (response.status_code, response.headers.get("X-Broker-Reason"))
    location = response.headers["Location"]
    message = redirect_message(location, parameter)
    assert message.url == endpoint, message.url
    return Hop(location, message)


def assert_signed_by(sent: Hop, certificate: Path) -> None:
    """Bindings §3.4.4.1: RSA-SHA256 over SAMLRequest|SAMLResponse=..&RelayState=..&SigAlg=.."""
    message = sent.message
    assert message.parameters["SigAlg"] == RSA_SHA256
    key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(message.parameters["Signature"]), message.signed_octets, padding.PKCS1v15(),
               hashes.SHA256())


def sp_answers(sp: DemoSp, url: str, name_id: NameID | None = None) -> str:
    """pysaml2 SP handles the broker's LogoutRequest (checking its query signature) and answers with a signed
    HTTP-Redirect LogoutResponse; another ``name_id`` than its user's makes it answer UnknownPrincipal."""
    q = query(url)
    args = sp.client.handle_logout_request(q["SAMLRequest"], name_id or name_id_at(sp), BINDING_HTTP_REDIRECT,
                                           sign=True, sign_alg=RSA_SHA256, relay_state=q.get("RelayState"),
                                           sigalg=q["SigAlg"], signature=q["Signature"])
    location = str(dict(args["headers"])["Location"])
    assert location.startswith(IDP_SLO + "?"), location
    return location


def idp_logout_url(idp: DemoIdp, *, session_indexes: list[str] | None = None, relay_state: str = "idp-slo") -> str:
    """Kommun C's IdP-initiated LogoutRequest for Karin, signed (HTTP-Redirect), built with the IdP's own
    pysaml2 Server. (``DemoIdp.logout_request`` would do this, but its URL is not signed: see
    test_demo_idp_logout_request_is_accepted.)"""
    login = idp.logins["karin"]
    _, message = idp.server.create_logout_request(
        SP_SLO, idp.entity_id, name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=login.name_id),
        session_indexes=[login.session_index] if session_indexes is None else session_indexes,
        reason="urn:oasis:names:tc:SAML:2.0:logout:user", sign=False)
    args = idp.server.apply_binding(BINDING_HTTP_REDIRECT, str(message), SP_SLO, relay_state=relay_state, sign=True,
                                    sigalg=RSA_SHA256)
    return str(dict(args["headers"])["Location"])


def idp_answers(idp: DemoIdp, url: str) -> str:
    """Kommun C's IdP (pysaml2) checks the broker's LogoutRequest, query signature included, forgets the login
    and answers with a signed HTTP-Redirect LogoutResponse. (``DemoIdp.handle_slo`` would do this, but it
    refuses every signed HTTP-Redirect request: see test_demo_idp_answers_the_brokers_logout_request.)"""
    q = query(url)
    request = idp.server.parse_logout_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT, relay_state=q.get("RelayState"),
                                              sigalg=q["SigAlg"], signature=q["Signature"])
    assert request is not None
    for name, login in list(idp.logins.items()):
        if login.name_id == request.message.name_id.text:
            del idp.logins[name]
    response = idp.server.create_logout_response(request.message, [BINDING_HTTP_REDIRECT], sign=False)
    args = idp.server.apply_binding(BINDING_HTTP_REDIRECT, str(response), SP_SLO, relay_state=q.get("RelayState"),
                                    response=True, sign=True, sigalg=RSA_SHA256)
    location = str(dict(args["headers"])["Location"])
    assert location.startswith(SP_SLO + "?"), location
    return location


def logout_response_url(issuer: str, in_response_to: str, relay_state: str, *, key: rsa.RSAPrivateKey | None,
                        status: str = SUCCESS, destination: str = IDP_SLO, endpoint: str = IDP_SLO) -> str:
    """A LogoutResponse built by the test (for the cases pysaml2 would not produce)."""
    message = samlp.LogoutResponse(
        id="_" + secrets.token_hex(16), version="2.0", issue_instant=instant(), destination=destination,
        in_response_to=in_response_to, issuer=Issuer(text=issuer, format=NAMEID_FORMAT_ENTITY),
        status=samlp.Status(status_code=samlp.StatusCode(value=status)))
    return redirect_url(str(message).encode(), relay_state=relay_state, key=key, parameter="SAMLResponse",
                        endpoint=endpoint)


def events(config_dir: Path, *names: str) -> list[dict[str, object]]:
    return [e for e in audit_lines(config_dir) if e["event"] in names]


def data(event: dict[str, object]) -> dict[str, object]:
    found = event["data"]
    assert isinstance(found, dict)
    return found


def goes_to_login(browser: Browser, sp: DemoSp) -> None:
    """No SSO from this browser: an AuthnRequest gets the discovery page (the user must log in again)."""
    page = browser.get(sp.login_url())
    assert page.status_code == 200, (page.status_code, page.headers.get("X-Broker-Reason"))
    assert "X-Broker-Reason" not in page.headers
    discovery_login_id(page)
    assert not [f for _, f in forms(page) if "SAMLResponse" in f]


# --- 1. SP-initiated, federated: SP2 and the IdP hear of it --------------------------------------------------


def test_sp_logout_propagates_to_other_sp_and_idp(app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp,
                                                  idp: DemoIdp, config_dir: Path) -> None:
    at_sp1 = karin_login(browser, sp, idp)
    at_sp2 = sso_login(browser, sp2)
    assert at_sp1.text != at_sp2.text  # a pairwise NameID per SP
    upstream = idp.logins["karin"]
    token = cookie(browser)
    posted_response(with_cookie(app, token).get(sp.login_url()))  # the cookie alone yields SSO (before logout)

    start = sp_logout_url(sp, at_sp1)
    sent = redirect_message(start, "SAMLRequest")
    relay = sent.parameters["RelayState"]

    # hop 1: the broker ends the session at once, then asks SP2
    to_sp2 = hop(browser.get(start), SP2_SLO, "SAMLRequest")
    goes_to_login(with_cookie(app, token), sp2)  # the old cookie yields no SSO any more
    assert to_sp2.root.tag == LOGOUT_REQUEST
    assert_signed_by(to_sp2, config_dir / "keys" / "idp-signing.crt")
    assert to_sp2.root.find("saml:Issuer", NS).text == BROKER_IDP  # type: ignore[union-attr]
    assert to_sp2.root.find("saml:NameID", NS).text == at_sp2.text  # type: ignore[union-attr]
    assert to_sp2.root.get("Destination") == SP2_SLO
    assert to_sp2.parameters["RelayState"] != relay  # the broker's own state id

    # hop 2: SP2 (pysaml2) logs her out and answers; the broker asks Kommun C's IdP
    to_idp = hop(browser.get(sp_answers(sp2, to_sp2.location)), KOMMUN_C_SLO, "SAMLRequest")
    assert not sp2.client.users.subjects()
    assert to_idp.root.tag == LOGOUT_REQUEST
    assert_signed_by(to_idp, config_dir / "keys" / "sp-signing.crt")
    assert to_idp.root.find("saml:Issuer", NS).text == BROKER_SP  # type: ignore[union-attr]
    assert to_idp.root.find("saml:NameID", NS).text == upstream.name_id  # type: ignore[union-attr]
    assert [e.text for e in to_idp.root.findall("samlp:SessionIndex", NS)] == [upstream.session_index]

    # hop 3: the IdP (pysaml2) verifies the request and answers; SP1 gets Success with its own RelayState
    answer = idp_answers(idp, to_idp.location)
    assert "karin" not in idp.logins
    final = hop(browser.get(answer), SP1_SLO, "SAMLResponse")
    assert final.root.tag == LOGOUT_RESPONSE
    assert status_codes(final.root) == (SUCCESS, None)
    assert final.root.get("InResponseTo") == sent.root.get("ID")
    assert final.parameters["RelayState"] == relay
    assert_signed_by(final, config_dir / "keys" / "idp-signing.crt")
    parsed = sp.client.parse_logout_request_response(final.parameters["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert parsed is not None
    assert parsed.response.status.status_code.value == SUCCESS

    goes_to_login(browser, sp2)
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], data(logout)["initiator"], data(logout)["peer"]) == ("success", "sp", SP1)
    assert (data(logout)["session_ended"], data(logout)["sessions"]) == (True, 1)
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP2}", f"idp:{IDP_ENTITY_ID}"]  # type: ignore[call-overload]
    propagated = events(config_dir, "logout_propagated")
    assert [(e["outcome"], data(e)["side"], data(e)["peer"]) for e in propagated] == [
        ("success", "sp", SP2), ("success", "idp", IDP_ENTITY_ID)]
    completed, = events(config_dir, "logout_completed")
    assert completed["outcome"] == "success"
    assert list(data(completed)["confirmed"]) == [SP2, IDP_ENTITY_ID]  # type: ignore[call-overload]
    assert list(data(completed)["failed"]) == []  # type: ignore[call-overload]
    assert {e["correlation_id"] for e in [logout, *propagated, completed]} == {logout["correlation_id"]}


def test_sp_logout_of_her_sessions_in_two_browsers_asks_her_idp_once(app: Flask, browser: Browser, sp: DemoSp,
                                                                      idp: DemoIdp, config_dir: Path,
                                                                      demo_material) -> None:  # type: ignore[no-untyped-def]
    """Karin in two browsers, each with its own session at Kommun C's IdP; SP1's LogoutRequest names both of its
    SessionIndexes (SAML Core §3.7.1). The IdP gets one LogoutRequest naming both of its own, as SP1 would were
    another SP the initiator; it was asked once per session, and an IdP that ended her sessions at the first
    answers UnknownPrincipal to the second, which made SP1's logout partial."""
    at_sp1, upstream, sp_indexes = [], [], []
    for each in (browser, open_browser(app, None)):
        each.certificate_pem = None
        _, fields = saml_response_form(federated_login(each, sp, idp, KARIN))
        sp.accept(fields["SAMLResponse"])
        statement = etree.fromstring(base64.b64decode(fields["SAMLResponse"])).find(".//saml:AuthnStatement", NS)
        sp_indexes.append(str(statement.get("SessionIndex")))  # type: ignore[union-attr]
        upstream.append(idp.logins["karin"].session_index)
        at_sp1.append(name_id_at(sp))
    assert at_sp1[0].text == at_sp1[1].text
    assert len(set(upstream)) == 2
    _, message = sp.client.create_logout_request(IDP_SLO, BROKER_IDP, name_id=at_sp1[0], session_indexes=sp_indexes)
    key = load_key(demo_material.root / "sp" / "sp.key")
    start = redirect_url(str(message).encode(), relay_state="sp1-slo", key=key, endpoint=IDP_SLO)

    other = open_browser(app, None)  # a third browser, with neither session's cookie: the SessionIndexes find them
    to_idp = hop(other.get(start), KOMMUN_C_SLO, "SAMLRequest")
    assert to_idp.root.find("saml:NameID", NS).text == idp.logins["karin"].name_id  # type: ignore[union-attr]
    assert sorted(e.text for e in to_idp.root.findall("samlp:SessionIndex", NS)) == sorted(upstream)
    final = hop(other.get(idp_answers(idp, to_idp.location)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    assert final.parameters["RelayState"] == "sp1-slo"

    logout, = events(config_dir, "logout")
    assert data(logout)["sessions"] == 2
    assert list(data(logout)["propagate_to"]) == [f"idp:{IDP_ENTITY_ID}"]  # type: ignore[call-overload]
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], list(data(completed)["confirmed"])) == (  # type: ignore[call-overload]
        "success", [IDP_ENTITY_ID])


# --- 2. SP-initiated, certificate login: only the other SP, no IdP leg ------------------------------------------


def test_certificate_session_logout_asks_only_the_other_sp(app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp,
                                                           config_dir: Path) -> None:
    at_sp1 = sso_login(browser, sp)   # Anna's certificate
    at_sp2 = sso_login(browser, sp2)  # SSO
    token = cookie(browser)
    start = sp_logout_url(sp2, at_sp2)
    sent = redirect_message(start, "SAMLRequest")

    to_sp1 = hop(browser.get(start), SP1_SLO, "SAMLRequest")
    goes_to_login(with_cookie(app, token), sp)  # ended at once
    assert to_sp1.root.find("saml:NameID", NS).text == at_sp1.text  # type: ignore[union-attr]
    assert_signed_by(to_sp1, config_dir / "keys" / "idp-signing.crt")
    final = hop(browser.get(sp_answers(sp, to_sp1.location)), SP2_SLO, "SAMLResponse")
    assert not sp.client.users.subjects()
    assert status_codes(final.root) == (SUCCESS, None)
    assert final.root.get("InResponseTo") == sent.root.get("ID")
    assert final.parameters["RelayState"] == sent.parameters["RelayState"]
    assert_signed_by(final, config_dir / "keys" / "idp-signing.crt")
    assert sp2.client.parse_logout_request_response(final.parameters["SAMLResponse"], BINDING_HTTP_REDIRECT)

    logout, = events(config_dir, "logout")
    assert (logout["outcome"], data(logout)["peer"]) == ("success", SP2)
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP1}"]  # type: ignore[call-overload]
    assert [(e["outcome"], data(e)["peer"]) for e in events(config_dir, "logout_propagated")] == [("success", SP1)]
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], list(data(completed)["confirmed"])) == ("success", [SP1])  # type: ignore[call-overload]


def _card_revoked_since(app: Flask, browser: Browser, store: RedisStore, monkeypatch: pytest.MonkeyPatch,
                        held: list[bool] | None = None) -> None:
    """The browser's session's revocation answer has run out and its card is now revoked (as the revocation tests
    show with a real OCSP responder: here the validator says so of that card, and validates any other); while
    ``held[0]``, when given (a certificateHold, lifted by setting it False)."""
    sid = app.extensions["broker"].flow._d.sessions.ref(cookie(browser))
    record = json.loads(store.get("session:" + sid) or b"{}")
    record["revocation_valid_until"] = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    store.put("session:" + sid, json.dumps(record).encode(), 3600)
    validator = app.extensions["broker"].flow._d.validator
    real, revoked_der = validator.validate, base64.b64decode(record["certificate_der"])

    def validate(leaf: x509.Certificate, presented: Any = ()) -> Any:
        if leaf.public_bytes(serialization.Encoding.DER) == revoked_der and (held is None or held[0]):
            raise CertificateRejected("revoked", "the card was revoked")
        return real(leaf, presented)

    monkeypatch.setattr(validator, "validate", validate)


def _answered(browser: Browser, sp: DemoSp) -> bool:
    return bool([f for _, f in forms(browser.get(sp.login_url())) if "SAMLResponse" in f])


def test_a_session_found_revoked_stays_so_when_the_hold_is_lifted(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, store: RedisStore, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Retired, not merely refused each time: once the card is good again, the user logs in again (it answered
    SPs again without a login), and it is not validated and audited again at every request meanwhile."""
    sso_login(browser, sp)
    held = [True]
    _card_revoked_since(app, browser, store, monkeypatch, held)
    browser.certificate_pem = None
    assert not _answered(browser, sp2)
    assert not _answered(browser, sp2)
    assert [e["reason"] for e in events(config_dir, "session_revoked")] == ["revoked"]  # once
    held[0] = False
    assert not _answered(browser, sp2)


def test_a_session_whose_card_now_proves_less_answers_at_that_level(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, store: RedisStore, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's better path went (its CA certificate revoked, another of the same CA left at LoA 2): the
    session's next assertion says LoA 2, not the LoA 3 of its login."""
    sso_login(browser, sp)
    assert data(events(config_dir, "assertion_issued")[-1])["loa"] == KNOWN_LOAS["loa3"].uri
    _card_revoked_since(app, browser, store, monkeypatch, held=[False])
    validator = app.extensions["broker"].flow._d.validator
    real = validator.validate
    monkeypatch.setattr(validator, "validate",
                        lambda leaf, presented=(): dataclass_replace(real(leaf, presented), loa=KNOWN_LOAS["loa2"]))
    browser.certificate_pem = None
    sso_login(browser, sp2)
    assert data(events(config_dir, "assertion_issued")[-1])["loa"] == KNOWN_LOAS["loa2"].uri


def test_a_session_whose_card_was_revoked_keeps_its_sps_in_single_logout(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, store: RedisStore, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """It answers no SP any more, but SP1 still holds Anna: her logout at SP2 must reach it (Profiles §4.4.3.3);
    the session was deleted with its SPs, and SP2 heard Success while SP1 never did."""
    sso_login(browser, sp)
    at_sp2 = sso_login(browser, sp2)
    _card_revoked_since(app, browser, store, monkeypatch)
    browser.certificate_pem = None
    assert not [f for _, f in forms(browser.get(sp.login_url())) if "SAMLResponse" in f]  # no SSO from it
    assert [e["reason"] for e in events(config_dir, "session_revoked")] == ["revoked"]

    to_sp1 = hop(browser.get(sp_logout_url(sp2, at_sp2)), SP1_SLO, "SAMLRequest")
    final = hop(browser.get(sp_answers(sp, to_sp1.location)), SP2_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)


def test_the_next_card_login_of_the_same_user_takes_over_a_revoked_sessions_sps(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, store: RedisStore, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Anna logs in with her card again in the browser where her session was found revoked: SP1 still holds her,
    so it stays a participant of the browser's new session (SessionManager.replace), and its logout ends the new
    session too (it got UnknownPrincipal, and the new session lived on)."""
    at_sp1 = sso_login(browser, sp)
    _card_revoked_since(app, browser, store, monkeypatch)
    anna = browser.certificate_pem
    browser.certificate_pem = None
    browser.get(sp2.login_url())
    assert [e["reason"] for e in events(config_dir, "session_revoked")] == ["revoked"]
    monkeypatch.undo()  # the hold is lifted: her card logs in again
    browser.certificate_pem = anna
    sso_login(browser, sp2)
    new_token = cookie(browser)
    assert events(config_dir, "session_replaced") == []

    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    assert to_sp2.root.find("saml:NameID", NS) is not None
    goes_to_login(with_cookie(app, new_token), sp2)  # the new session ended with it


def test_another_users_card_login_keeps_a_revoked_sessions_sps_apart(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, store: RedisStore, users: Path, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bo logs in with his card in the browser where Anna's session was found revoked: SP1 holds Anna, not Bo, so
    Anna's session is kept apart for her single logout (SessionManager.replace): SP1's logout for her ends it, not
    Bo's session, and SP2 (which holds Bo) is not asked."""
    at_sp1 = sso_login(browser, sp)
    _card_revoked_since(app, browser, store, monkeypatch)
    browser.certificate_pem = None
    browser.get(sp2.login_url())
    monkeypatch.undo()
    browser.certificate_pem = (users / "bo.pem").read_text()
    sso_login(browser, sp2)
    bo_token = cookie(browser)

    final = hop(browser.get(sp_logout_url(sp, at_sp1)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    posted_response(with_cookie(app, bo_token).get(sp2.login_url()))  # Bo's session lives on
    logout, = events(config_dir, "logout")
    anna, = events(config_dir, "certificate_accepted")[:1]
    assert (logout["user"], data(logout)["sessions"], list(data(logout)["propagate_to"])) == (  # type: ignore[call-overload]
        anna["user"], 1, [])


def test_another_users_card_login_keeps_a_live_sessions_sps_apart(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, users: Path, config_dir: Path) -> None:
    """A shared PC: Anna is logged in at SP1, then Bo logs in with his card at SP2 in the same browser. Anna's
    session is not merged into Bo's (SP1's logout for Anna would end Bo's session, filed under Bo): it is kept
    apart, answering no SP, and SP1's LogoutRequest naming her SessionIndex still ends it."""
    at_sp1 = sso_login(browser, sp)
    anna_token = cookie(browser)
    browser.certificate_pem = (users / "bo.pem").read_text()
    at_sp2 = sso_login(browser, sp2)
    bo_token = cookie(browser)
    assert bo_token != anna_token
    goes_to_login(with_cookie(app, anna_token), sp)  # Anna's session answers no SP any more

    replaced, = events(config_dir, "session_replaced")
    anna, bo = (e["user"] for e in events(config_dir, "certificate_accepted"))
    assert (replaced["user"], list(data(replaced)["services"])) == (anna, [SP1])  # type: ignore[call-overload]
    issued = events(config_dir, "assertion_issued")[-1]
    assert issued["user"] == bo
    assert "another user's login" in str(issued["detail"])

    final = hop(browser.get(sp_logout_url(sp, at_sp1)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    posted_response(with_cookie(app, bo_token).get(sp2.login_url()))  # Bo's session lives on
    logout, = events(config_dir, "logout")
    assert (logout["user"], data(logout)["sessions"], list(data(logout)["propagate_to"])) == (  # type: ignore[call-overload]
        anna, 1, [])
    assert at_sp2.text != at_sp1.text


def test_a_card_login_after_another_users_federated_session_keeps_it_apart_for_her_idps_logout(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """A shared PC in home care: Karin logged in through Kommun C's IdP at SP1, then Anna logs in with her card at
    SP2 in the same browser. Karin's IdP session and SP1 are hers: her IdP's later LogoutRequest ends her session
    and reaches SP1, and leaves Anna's session alone (it ended Anna's, and the audit filed the logout under Anna)."""
    anna_pem = browser.certificate_pem
    karin_login(browser, sp, idp)
    browser.certificate_pem = anna_pem
    sso_login(browser, sp2)
    anna_token = cookie(browser)
    replaced, = events(config_dir, "session_replaced")
    karin = events(config_dir, "upstream_authn_result")[-1]["user"]
    assert (replaced["user"], list(data(replaced)["services"])) == (karin, [SP1])  # type: ignore[call-overload]

    other = open_browser(app, None)
    to_sp1 = hop(other.get(idp_logout_url(idp)), SP1_SLO, "SAMLRequest")
    to_idp = hop(other.get(sp_answers(sp, to_sp1.location)), KOMMUN_C_SLO, "SAMLResponse")
    assert status_codes(to_idp.root) == (SUCCESS, None)
    posted_response(with_cookie(app, anna_token).get(sp2.login_url()))  # Anna's session lives on
    logout, = events(config_dir, "logout")
    assert (logout["user"], data(logout)["sessions"]) == (karin, 1)
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP1}"]  # type: ignore[call-overload]


# --- 3. partial logout ------------------------------------------------------------------------------------------


class _Continue(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.items: list[str] = []
        self._in_li = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and "button" in (a.get("class") or "").split():
            self.links.append(a.get("href") or "")
        self._in_li = tag == "li"

    def handle_data(self, text: str) -> None:
        if self._in_li and text.strip():
            self.items.append(text.strip())
            self._in_li = False


@pytest.mark.parametrize("answer", ["error_status", "wrong_key", "unsigned"])
def test_partial_logout_is_reported_and_the_initiator_gets_partial_logout(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, sp3: DemoSp, config_dir: Path, answer: str) -> None:
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    sso_login(browser, sp3)  # its metadata offers no SingleLogoutService: it cannot be asked
    token = cookie(browser)
    start = sp_logout_url(sp, at_sp1)
    sent = redirect_message(start, "SAMLRequest")

    to_sp2 = hop(browser.get(start), SP2_SLO, "SAMLRequest")
    if answer == "error_status":
        url = sp_answers(sp2, to_sp2.location, NameID(text="not-her", format=NAMEID_FORMAT_PERSISTENT))
        expected = ("logout_partial", "Responder / UnknownPrincipal: Wrong user")
    else:
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048) if answer == "wrong_key" else None
        url = logout_response_url(SP2, str(to_sp2.root.get("ID")), to_sp2.parameters["RelayState"], key=stranger)
        expected = ("saml_signature_invalid", "") if stranger else ("logout_response_invalid", "")
    english = answer == "wrong_key"
    page = browser.get(url + ("&lang=en" if english else ""))

    # the last participant (SP3) needed no trip: the chain ends on the broker's page
    assert page.status_code == 200
    assert page.headers.get("X-Broker-Reason") == "logout_partial"
    parser = _Continue()
    parser.feed(page.get_data(as_text=True))
    text = page.get_data(as_text=True)
    if english:
        assert "Logout was not complete" in text
        assert 'lang="en"' in text
        assert parser.items == ["Andra tjänsten", "Tredje tjänsten"]
    else:
        assert "Utloggningen blev inte fullständig" in text
        assert 'lang="sv"' in text
        assert parser.items == ["Andra tjänsten (sv)", "Tredje tjänsten (sv)"]
    continue_url, = parser.links
    final = redirect_message(continue_url, "SAMLResponse")
    assert final.url == SP1_SLO
    assert status_codes(final.root) == (SUCCESS, PARTIAL)
    assert final.root.get("InResponseTo") == sent.root.get("ID")
    assert final.parameters["RelayState"] == sent.parameters["RelayState"]
    assert_signed_by(Hop(continue_url, final), config_dir / "keys" / "idp-signing.crt")
    parsed = sp.client.parse_logout_request_response(final.parameters["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert parsed is not None
    assert parsed.response.status.status_code.status_code.value == PARTIAL
    goes_to_login(with_cookie(app, token), sp)  # partial or not, the broker session is over

    logout, = events(config_dir, "logout")
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP2}", f"sp:{SP3}"]  # type: ignore[call-overload]
    propagated = events(config_dir, "logout_propagated")
    assert [(e["outcome"], e["reason"], data(e)["peer"]) for e in propagated] == [
        ("failure", expected[0], SP2), ("failure", "logout_partial", SP3)]
    if expected[1]:
        assert data(propagated[0])["status"] == expected[1]
    assert propagated[1]["detail"] == f"{SP3} has no SingleLogoutService"
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], completed["reason"]) == ("failure", "logout_partial")
    assert list(data(completed)["failed"]) == [SP2, SP3]  # type: ignore[call-overload]
    assert list(data(completed)["confirmed"]) == []  # type: ignore[call-overload]


@pytest.mark.parametrize("shape", ["a-30-000-character-code", "nine-nested-codes"])
def test_a_participants_status_reaches_the_audit_trail_bounded(
        browser: Browser, sp: DemoSp, sp2: DemoSp, config_dir: Path, demo_material,  # type: ignore[no-untyped-def]
        shape: str) -> None:
    """A participant's LogoutResponse status is quoted into its logout_propagated record (data.status, which the
    trail does not cut as it cuts a detail): as the ACS reads an IdP's status, at most four codes (a top-level
    one, a second-level one and one more level) and 200 characters of each, not 30 kB per logout."""
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    if shape == "a-30-000-character-code":
        codes = ["urn:oasis:names:tc:SAML:2.0:status:Responder", "urn:example:" + "a" * 30_000]
    else:
        codes = [f"urn:example:status:Level{i}" + "x" * 140 for i in range(9)]
    code = samlp.StatusCode(value=codes[-1])
    for value in reversed(codes[:-1]):
        code = samlp.StatusCode(value=value, status_code=code)
    message = samlp.LogoutResponse(
        id="_" + secrets.token_hex(16), version="2.0", issue_instant=instant(), destination=IDP_SLO,
        in_response_to=str(to_sp2.root.get("ID")), issuer=Issuer(text=SP2, format=NAMEID_FORMAT_ENTITY),
        status=samlp.Status(status_code=code))
    url = redirect_url(str(message).encode(), relay_state=to_sp2.parameters["RelayState"],
                       key=load_key(demo_material.root / "sp" / "sp.key"), parameter="SAMLResponse",
                       endpoint=IDP_SLO)
    browser.get(url)
    propagated, = events(config_dir, "logout_propagated")
    assert (propagated["outcome"], propagated["reason"], data(propagated)["peer"]) == ("failure", "logout_partial",
                                                                                      SP2)
    status = str(data(propagated)["status"])
    assert status.startswith("Responder / aaa" if shape == "a-30-000-character-code" else "Level0xxx")
    assert len(status) < 1000, len(status)
    assert len(str(propagated["detail"])) < 1000


def test_partial_logout_page_language_switch_does_not_replay_the_consumed_response(
        browser: Browser, sp: DemoSp, sp2: DemoSp) -> None:
    """The page's other-language link must show the page again, not re-send the consumed LogoutResponse."""
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    url = sp_answers(sp2, to_sp2.location, NameID(text="not-her", format=NAMEID_FORMAT_PERSISTENT))
    page = browser.get(url)
    assert page.headers.get("X-Broker-Reason") == "logout_partial"
    switch = re.search(r'<p class="lang"><a href="([^"]+)"', page.get_data(as_text=True))
    if switch is None:
        return  # no language link: nothing to replay
    english = browser.get(html.unescape(switch.group(1)))
    assert english.headers.get("X-Broker-Reason") == "logout_partial", english.headers.get("X-Broker-Reason")
    assert "Logout was not complete" in english.get_data(as_text=True)


# --- 4. IdP-initiated ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("carries_cookie", [False, True])
def test_idp_logout_ends_the_session_and_its_sps(app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp,
                                                 idp: DemoIdp, config_dir: Path, carries_cookie: bool) -> None:
    at_sp1 = karin_login(browser, sp, idp)
    at_sp2 = sso_login(browser, sp2)
    token = cookie(browser)
    start = idp_logout_url(idp)
    sent = redirect_message(start, "SAMLRequest")
    assert sent.url == SP_SLO

    other = browser if carries_cookie else open_browser(app, None)
    to_sp1 = hop(other.get(start), SP1_SLO, "SAMLRequest")
    goes_to_login(with_cookie(app, token), sp)  # ended before anyone else is asked
    assert to_sp1.root.find("saml:NameID", NS).text == at_sp1.text  # type: ignore[union-attr]
    assert_signed_by(to_sp1, config_dir / "keys" / "idp-signing.crt")
    to_sp2 = hop(other.get(sp_answers(sp, to_sp1.location)), SP2_SLO, "SAMLRequest")
    assert to_sp2.root.find("saml:NameID", NS).text == at_sp2.text  # type: ignore[union-attr]
    to_idp = hop(other.get(sp_answers(sp2, to_sp2.location)), KOMMUN_C_SLO, "SAMLResponse")
    assert not sp.client.users.subjects()
    assert not sp2.client.users.subjects()
    assert to_idp.root.tag == LOGOUT_RESPONSE
    assert status_codes(to_idp.root) == (SUCCESS, None)
    assert to_idp.root.get("InResponseTo") == sent.root.get("ID")
    assert to_idp.parameters["RelayState"] == "idp-slo"
    assert_signed_by(to_idp, config_dir / "keys" / "sp-signing.crt")
    assert idp.handle_slo(to_idp.location) == ""  # pysaml2 accepts it (and its query signature)

    goes_to_login(browser, sp)
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], data(logout)["initiator"], data(logout)["peer"]) == ("success", "idp", IDP_ENTITY_ID)
    assert (data(logout)["session_ended"], data(logout)["sessions"]) == (True, 1)
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP1}", f"sp:{SP2}"]  # type: ignore[call-overload]
    assert [(e["outcome"], data(e)["peer"]) for e in events(config_dir, "logout_propagated")] == [
        ("success", SP1), ("success", SP2)]
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], data(completed)["initiator"]) == ("success", "idp")


def test_idp_logout_without_session_index_ends_all_her_sessions(app: Flask, browser: Browser, sp: DemoSp,
                                                                idp: DemoIdp, config_dir: Path) -> None:
    """Two browsers, two broker sessions from Kommun C's IdP: a LogoutRequest naming only her NameID ends both,
    and SP1 (the same NameID in both) is asked once."""
    karin_login(browser, sp, idp)
    laptop = open_browser(app, None)
    at_sp1 = karin_login(laptop, sp, idp)
    tokens = [cookie(browser), cookie(laptop)]
    assert tokens[0] != tokens[1]
    start = idp_logout_url(idp, session_indexes=[])
    assert redirect_message(start, "SAMLRequest").root.find("samlp:SessionIndex", NS) is None

    other = open_browser(app, None)
    to_sp1 = hop(other.get(start), SP1_SLO, "SAMLRequest")
    assert to_sp1.root.find("saml:NameID", NS).text == at_sp1.text  # type: ignore[union-attr]
    for token in tokens:
        goes_to_login(with_cookie(app, token), sp)
    answer = hop(other.get(sp_answers(sp, to_sp1.location)), KOMMUN_C_SLO, "SAMLResponse")
    assert status_codes(answer.root) == (SUCCESS, None)
    assert idp.handle_slo(answer.location) == ""

    logout, = events(config_dir, "logout")
    assert (data(logout)["session_ended"], data(logout)["sessions"]) == (True, 2)
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP1}"]  # type: ignore[call-overload]


def test_idp_logout_for_an_unknown_session_index_ends_nothing(app: Flask, browser: Browser, sp: DemoSp,
                                                              idp: DemoIdp, config_dir: Path) -> None:
    karin_login(browser, sp, idp)
    start = idp_logout_url(idp, session_indexes=["_not-a-session-of-ours"])
    sent = redirect_message(start, "SAMLRequest")

    answer = hop(open_browser(app, None).get(start), KOMMUN_C_SLO, "SAMLResponse")
    # no session to end is no failure (SAML Core §3.7.3.2): Success, and nobody else is asked
    assert status_codes(answer.root) == (SUCCESS, None)
    assert answer.root.get("InResponseTo") == sent.root.get("ID")
    assert idp.handle_slo(answer.location) == ""
    posted_response(browser.get(sp.login_url()))  # her session goes on: SSO

    logout, = events(config_dir, "logout")
    assert (logout["outcome"], data(logout)["session_ended"], data(logout)["sessions"]) == ("success", False, 0)
    assert list(data(logout)["propagate_to"]) == []  # type: ignore[call-overload]
    assert events(config_dir, "logout_propagated") == []
    completed, = events(config_dir, "logout_completed")
    assert completed["outcome"] == "success"


def _in_flight(browser: Browser, sp: DemoSp, idp: DemoIdp) -> FormPost:
    """Karin's login answered by Kommun C's IdP, its Response still in her browser (not yet at the ACS)."""
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    return idp.respond(at.request, at.relay_state, KARIN)


def _idp_logs_out(app: Flask, idp: DemoIdp, session_indexes: list[str] | None = None) -> None:
    answer = hop(open_browser(app, None).get(idp_logout_url(idp, session_indexes=session_indexes)), KOMMUN_C_SLO,
                 "SAMLResponse")
    assert status_codes(answer.root) == (SUCCESS, None)


@pytest.mark.parametrize("indexes", ["hers", "none"])
def test_idp_logout_applies_to_her_assertion_that_arrives_after_it(app: Flask, browser: Browser, sp: DemoSp,
                                                                   idp: DemoIdp, config_dir: Path,
                                                                   indexes: str) -> None:
    """SAML Core §3.7.3.2: the IdP ended her session (naming its SessionIndex, or her NameID only) while its
    Response was still on the way; arriving afterwards, the Response opens no session and the SP gets nothing."""
    post = _in_flight(browser, sp, idp)
    if indexes == "none":
        time.sleep(1.1)  # a logout in the same second as her authentication counts as before it
    _idp_logs_out(app, idp, None if indexes == "hers" else [])

    late = browser.post(post.url, post.fields)

    assert_refused(late, "upstream_logged_out")
    _, fields = saml_response_form(late)  # the SP is told the login failed, and given no assertion
    told = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assert status_codes(told)[0] != SUCCESS
    assert told.find("saml:Assertion", NS) is None
    assert told.find("saml:EncryptedAssertion", NS) is None
    assert browser.client.get_cookie(COOKIE) is None
    result, = events(config_dir, "upstream_authn_result")
    assert (result["outcome"], result["reason"]) == ("failure", "upstream_logged_out")
    assert result.get("user") == "SE2120003005-K001"  # whose verified assertion arrived too late


@pytest.mark.parametrize("indexes", ["hers", "none"])
def test_idp_logout_on_another_instance_while_her_session_is_being_stored_ends_it(
        app: Flask, settings: Settings, store: RedisStore, browser: Browser, sp: DemoSp, sp2: DemoSp,
        idp: DemoIdp, config_dir: Path, monkeypatch: pytest.MonkeyPatch, indexes: str) -> None:
    """Instance A has checked the IdP's logouts for her assertion and not yet stored her session when instance B
    handles the IdP's LogoutRequest, finding no session to end: A asks again once the session is stored (each
    side writes, then reads), so the session the IdP was told had ended does not answer SP2 (Core §3.7.3.2)."""
    post = _in_flight(browser, sp, idp)
    if indexes == "none":
        time.sleep(1.1)  # a logout in the same second as her authentication counts as before it
    told = _b_logs_out_when_a_has_looked(app, settings, store, monkeypatch,
                                         idp_logout_url(idp, session_indexes=None if indexes == "hers" else []))
    late = browser.post(post.url, post.fields)

    assert status_codes(told[0].root) == (SUCCESS, None)
    assert_refused(late, "upstream_logged_out")
    assert browser.client.get_cookie(COOKIE) is None
    assert not [f for _, f in forms(browser.get(sp2.login_url())) if "SAMLResponse" in f]
    assert [e["reason"] for e in events(config_dir, "login_refused")] == ["upstream_logged_out"]
    assert events(config_dir, "assertion_issued") == []


def test_a_login_refused_after_its_session_was_stored_puts_the_replaced_session_back(
        app: Flask, settings: Settings, store: RedisStore, browser: Browser, sp: DemoSp, sp2: DemoSp,
        idp: DemoIdp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The browser's card session holds SP1 when Karin logs in at SP2 through Kommun C, and the IdP's logout of
    that login is caught only once her session is stored: the (idle) card session it replaced comes back (it was
    lost with SP1's place in it), retired: SP1 stays in single logout, and no SP is answered from it."""
    manager: SessionManager = app.extensions["broker"].flow._d.sessions
    sso_login(browser, sp)
    old = cookie(browser)
    sid = manager.ref(old)
    record = json.loads(store.get("session:" + sid) or b"{}")  # idle: the browser is asked which municipality
    record["last_seen"] = (dt.datetime.now(dt.UTC) - manager.idle_timeout - dt.timedelta(seconds=5)).isoformat()
    store.put("session:" + sid, json.dumps(record).encode(), 3600)
    post = _in_flight(browser, sp2, idp)
    told = _b_logs_out_when_a_has_looked(app, settings, store, monkeypatch, idp_logout_url(idp))
    assert_refused(browser.post(post.url, post.fields), "upstream_logged_out")
    assert status_codes(told[0].root) == (SUCCESS, None)

    session, why = manager.find(old, idle_too=True)
    assert session is not None
    assert why == "retired"
    assert [p.sp_entity_id for p in manager.participants(old)] == [SP1]
    assert not _answered(with_cookie(app, old), sp2)


def test_idp_logout_whose_own_validity_ended_still_applies_to_her_late_assertion(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    """An IdP clock 50 s behind, a LogoutRequest good for 20 s: accepted within the skew (its NotOnOrAfter bounds
    its delivery), and the session it ended stays ended for the Response still on the way."""
    post = _in_flight(browser, sp, idp)
    login = idp.logins["karin"]
    now = dt.datetime.now(dt.UTC)
    _, message = idp.server.create_logout_request(
        SP_SLO, idp.entity_id, name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=login.name_id),
        session_indexes=[login.session_index], expire=format_instant(now - dt.timedelta(seconds=30)), sign=False)
    message.issue_instant = format_instant(now - dt.timedelta(seconds=50))
    args = idp.server.apply_binding(BINDING_HTTP_REDIRECT, str(message), SP_SLO, relay_state="idp-slo", sign=True,
                                    sigalg=RSA_SHA256)
    answer = hop(open_browser(app, None).get(str(dict(args["headers"])["Location"])), KOMMUN_C_SLO, "SAMLResponse")
    assert status_codes(answer.root) == (SUCCESS, None)

    assert_refused(browser.post(post.url, post.fields), "upstream_logged_out")


def _fails_once(monkeypatch: pytest.MonkeyPatch, method: str, *, call: int = 1) -> None:
    """``SessionManager.<method>`` raises as a store timing out at its ``call``-th use, and works otherwise."""
    real = getattr(SessionManager, method)
    calls: list[int] = []

    def failing(self: SessionManager, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            raise SessionStoreUnavailable(f"Redis failed in {method}: simulated timeout")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SessionManager, method, failing)


def _b_logs_out_when_a_has_looked(app: Flask, settings: Settings, store: RedisStore, monkeypatch: pytest.MonkeyPatch,
                                  url: str) -> list[Hop]:
    """Instance B handles the IdP's LogoutRequest ``url`` right after instance A (``app``) first looked at the
    IdP's logouts for an assertion (and before A stored anything for it); B's answer to the IdP goes in the list."""
    manager = app.extensions["broker"].flow._d.sessions
    instance_b = create_app(settings, store=store, instance_id="b")
    told: list[Hop] = []
    real = SessionManager.upstream_logouts

    def b_handles_the_logout_after_a_looked(self: SessionManager, *args: Any) -> Any:
        found = real(self, *args)
        if self is manager and not told:
            told.append(hop(open_browser(instance_b, None).get(url), KOMMUN_C_SLO, "SAMLResponse"))
        return found

    monkeypatch.setattr(SessionManager, "upstream_logouts", b_handles_the_logout_after_a_looked)
    return told


def test_idp_logout_the_store_fails_to_remember_ends_nothing_and_its_retry_reaches_every_sp(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The logout is remembered before any session ends: a store failing there leaves them as they were (503,
    "try again"), and the retry ends them and asks their SPs, as the first attempt would have."""
    karin_login(browser, sp, idp)
    sso_login(browser, sp2)
    start = idp_logout_url(idp)
    _fails_once(monkeypatch, "record_upstream_logout")
    other = open_browser(app, None)
    assert other.get(start).status_code == 503
    assert events(config_dir, "logout") == []  # nothing ended, nothing said to have ended

    hop(other.get(start), SP1_SLO, "SAMLRequest")
    logout, = events(config_dir, "logout")
    assert (data(logout)["session_ended"], data(logout)["sessions"]) == (True, 1)


@pytest.mark.parametrize(("failing", "call"), [
    pytest.param("participants_ref", 2, id="reading-the-participants"),  # the first: matching the request
    pytest.param("put_logout", 1, id="storing-the-logouts-state"),
])
def test_an_sp_logout_the_store_fails_midway_is_finished_by_its_retry(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, config_dir: Path, monkeypatch: pytest.MonkeyPatch,
        failing: str, call: int) -> None:
    """The session is already ended when the store fails (503, "try again"): the retry of the same request is no
    replay, and reaches SP2 as the first attempt would have (it was refused as a replay, and SP2 never heard)."""
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    start = sp_logout_url(sp, at_sp1)
    _fails_once(monkeypatch, failing, call=call)
    token = cookie(browser)
    assert browser.get(start).status_code == 503
    goes_to_login(with_cookie(app, token), sp)  # ended by the first attempt all the same

    to_sp2 = hop(browser.get(start), SP2_SLO, "SAMLRequest")
    final = hop(browser.get(sp_answers(sp2, to_sp2.location)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    logout = events(config_dir, "logout")[-1]  # the first attempt's too, when it got as far as asking SP2
    assert (data(logout)["session_ended"], data(logout)["resumed"]) == (True, True)
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP2}"]  # type: ignore[call-overload]


def test_an_idp_logout_the_store_fails_midway_is_finished_by_its_retry(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    karin_login(browser, sp, idp)
    sso_login(browser, sp2)
    start = idp_logout_url(idp)
    _fails_once(monkeypatch, "participants_ref")
    other = open_browser(app, None)
    assert other.get(start).status_code == 503

    hop(other.get(start), SP1_SLO, "SAMLRequest")
    logout, = events(config_dir, "logout")
    assert (data(logout)["sessions"], data(logout)["resumed"]) == (1, True)
    assert validate(logout) == []  # data.resumed is in the schema (docs/audit.md)



def _audit_sync_fails_once(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit trail cannot make the next request's records durable (an fsync fails), once."""
    writer = app.extensions["broker"].audit.sink
    real = writer.sync
    failures = [AuditUnavailable("cannot sync the audit file: Input/output error")]

    def sync_failing_once(upto: int) -> None:
        if failures:
            raise failures.pop()
        real(upto)

    monkeypatch.setattr(writer, "sync", sync_failing_once)


@pytest.mark.parametrize("failure", [pytest.param("audit_unavailable", id="audit-sync"),
                                     pytest.param("session_store_unavailable", id="store-keeping-the-next-step")])
def test_a_participants_logout_response_whose_handling_fails_is_finished_by_its_retry(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    """SP2's LogoutResponse arrives and the broker fails while handling it (503, "try again"): its records cannot
    be made durable, or the store fails keeping the next step (asking Kommun C's IdP). The logout's state had been
    used up, so the retry was refused as logout_unknown (400): neither the IdP nor the initiator heard more."""
    at_sp1 = karin_login(browser, sp, idp)
    sso_login(browser, sp2)
    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    answer = sp_answers(sp2, to_sp2.location)
    if failure == "audit_unavailable":
        _audit_sync_fails_once(app, monkeypatch)
    else:
        _fails_once(monkeypatch, "put_logout")
    assert browser.get(answer).headers["X-Broker-Reason"] == failure

    to_idp = hop(browser.get(answer), KOMMUN_C_SLO, "SAMLRequest")  # the retry
    final = hop(browser.get(idp_answers(idp, to_idp.location)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], list(data(completed)["confirmed"])) == (  # type: ignore[call-overload]
        "success", [SP2, IDP_ENTITY_ID])

def test_a_completed_logout_leaves_nothing_to_resume(app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp,
                                                     store: RedisStore) -> None:
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    sid = app.extensions["broker"].flow._d.sessions.ref(cookie(browser))
    hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    assert store.members("session-sps:" + sid) == set()
    assert app.extensions["broker"].flow._d.sessions.ending(f"sp\x00{SP1}\x00x") is None


@pytest.mark.parametrize("pad", ["\u00a0", "\u3000"], ids=["no-break-space", "ideographic-space"])
def test_idp_logout_names_a_nameid_ending_in_unicode_space_as_her_assertion_did(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, monkeypatch: pytest.MonkeyPatch,
        pad: str) -> None:
    """The LogoutRequest's NameID is read as the assertion's was (XML white space only stripped): the same
    value, so the IdP's logout ends the session it opened."""
    real = DemoIdp.name_id_of
    monkeypatch.setattr(DemoIdp, "name_id_of", lambda self, user: real(self, user) + pad)
    karin_login(browser, sp, idp)
    token = cookie(browser)

    hop(open_browser(app, None).get(idp_logout_url(idp)), SP1_SLO, "SAMLRequest")

    logout, = events(config_dir, "logout")
    assert (data(logout)["session_ended"], data(logout)["sessions"]) == (True, 1)
    goes_to_login(with_cookie(app, token), sp)


def test_idp_logout_is_remembered_as_long_as_an_answer_it_ended_could_still_arrive(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, settings: Settings, store: RedisStore) -> None:
    """The ACS accepts an answer for sp.login_timeout (an unsolicited one as old at most), dated up to the IdP's
    clock_skew early; the LogoutRequest is accepted up to the broker's own skew late; the instances' clocks may
    differ by 5 minutes: the logout is remembered for all of it together."""
    _in_flight(browser, sp, idp)
    before = dt.datetime.now(dt.UTC)
    _idp_logs_out(app, idp, [])

    sessions = SessionManager(store, SystemClock(), idle_timeout=dt.timedelta(minutes=1),
                              absolute_timeout=dt.timedelta(hours=1), pending_timeout=dt.timedelta(minutes=1),
                              index_key=settings.broker.audit.pseudonym_key.value)
    remembered, = sessions.upstream_logouts(idp.entity_id, idp.logins["karin"].name_id)
    kommun_c = settings.municipalities["kommun-c"].config.saml
    assert settings.broker.sp is not None
    assert kommun_c is not None
    window = (settings.broker.sp.login_timeout.timedelta + kommun_c.clock_skew.timedelta
              + settings.broker.idp.clock_skew.timedelta + dt.timedelta(minutes=5))
    assert before + window <= remembered.until <= dt.datetime.now(dt.UTC) + window


def test_idp_logout_of_another_session_index_leaves_her_late_assertion_alone(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    post = _in_flight(browser, sp, idp)
    _idp_logs_out(app, idp, ["_another-session-at-the-idp"])

    _, fields = saml_response_form(browser.post(post.url, post.fields))
    sp.accept(fields["SAMLResponse"])


def test_idp_logout_without_session_index_leaves_a_login_after_it_alone(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """A logout naming her NameID only ends the authentications before it, not her next login at the IdP (its
    AuthnInstant is later than the LogoutRequest's IssueInstant; both have whole seconds here)."""
    _in_flight(browser, sp, idp)  # never delivered: the IdP knows her, the broker has no session to end
    _idp_logs_out(app, idp, [])
    time.sleep(1.1)

    karin_login(browser, sp, idp)
    assert [e["outcome"] for e in events(config_dir, "upstream_authn_result")] == ["success"]


# --- 5. refusals ------------------------------------------------------------------------------------------------


def _sp_logout_request(sp: DemoSp, name_id: NameID, *, destination: str = IDP_SLO) -> bytes:
    _, request = sp.client.create_logout_request(destination, BROKER_IDP, name_id=name_id, sign=False)
    return str(request).encode()


def _idp_logout_request(idp: DemoIdp, *, issuer: str | None = None, destination: str = SP_SLO) -> bytes:
    login = idp.logins["karin"]
    _, request = idp.server.create_logout_request(
        destination, idp.entity_id, name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=login.name_id),
        session_indexes=[login.session_index], sign=False)
    xml = str(request).encode()
    return with_issuer(xml, issuer) if issuer else xml


def _with_encrypted_name_id(xml: bytes, recipient: KeyPair, data: str) -> bytes:
    """The LogoutRequest ``xml`` with its NameID in an EncryptedID for ``recipient`` (SAML Core §2.2.4, §3.7.1)."""
    root = etree.fromstring(xml)
    name_id = root.find("saml:NameID", NS)
    assert name_id is not None
    encrypt_element(root, name_id, recipient, data=data, wrapper_tag="EncryptedID")
    assert root.find("saml:EncryptedID/xenc:EncryptedData", {**NS, "xenc": XENC}) is not None
    return etree.tostring(root)


def test_idp_logout_naming_her_in_an_encrypted_id_ends_the_session(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path,
        demo_material) -> None:  # type: ignore[no-untyped-def]
    """SAML Core §3.7.1: the IdP may name the principal in an EncryptedID, encrypted to the key the broker's SP
    metadata publishes for encryption (Shibboleth's IdP does so by default): her session ends as for a NameID."""
    karin_login(browser, sp, idp)
    token = cookie(browser)
    keys = config_dir / "keys"
    broker_sp = KeyPair((keys / "sp-encryption.key").read_bytes(), (keys / "sp-encryption.crt").read_bytes())
    xml = _with_encrypted_name_id(_idp_logout_request(idp), broker_sp, "aes256-gcm")
    url = redirect_url(xml, key=load_key(demo_material.root / "idp" / "idp.key"), endpoint=SP_SLO,
                       relay_state="idp-slo")
    hop(open_browser(app, None).get(url), SP1_SLO, "SAMLRequest")
    goes_to_login(with_cookie(app, token), sp)
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], data(logout)["session_ended"]) == ("success", True)


@pytest.mark.parametrize(("data", "code"), [
    pytest.param("3des-cbc", "saml_algorithm_not_allowed", id="3des"),
    pytest.param("not-for-the-broker", "logout_request_invalid", id="another-recipient"),
])
def test_idp_logout_with_an_encrypted_id_the_broker_cannot_read_is_refused(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, demo_material,  # type: ignore[no-untyped-def]
        data: str, code: str) -> None:
    karin_login(browser, sp, idp)
    keys = config_dir / "keys"
    recipient = KeyPair((keys / "sp-encryption.key").read_bytes(), (keys / "sp-encryption.crt").read_bytes())
    if data == "not-for-the-broker":
        recipient = KeyPair(b"", (keys / "idp-signing.crt").read_bytes())
    xml = _with_encrypted_name_id(_idp_logout_request(idp), recipient, "aes256-gcm" if data != "3des-cbc" else data)
    url = redirect_url(xml, key=load_key(demo_material.root / "idp" / "idp.key"), endpoint=SP_SLO,
                       relay_state="idp-slo")
    assert_refused(open_browser(app, None).get(url), code)
    posted_response(browser.get(sp.login_url()))  # Karin's session goes on


def test_unsigned_sp_logout_request_is_refused(browser: Browser, sp: DemoSp, config_dir: Path) -> None:
    at_sp1 = sso_login(browser, sp)
    assert_refused(browser.get(redirect_url(_sp_logout_request(sp, at_sp1), endpoint=IDP_SLO, relay_state="r")),
                   "logout_request_invalid")
    posted_response(browser.get(sp.login_url()))  # the session goes on
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], logout["reason"]) == ("failure", "logout_request_invalid")


@pytest.mark.parametrize(("issuer", "destination", "code"), [
    ("https://unknown.example/idp", SP_SLO, "logout_request_invalid"),
    (None, IDP_SLO, "saml_destination_mismatch"),
])
def test_idp_logout_request_refused(app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path,
                                    demo_material, issuer: str | None, destination: str,  # type: ignore[no-untyped-def]
                                    code: str) -> None:
    karin_login(browser, sp, idp)
    xml = _idp_logout_request(idp, issuer=issuer, destination=destination)
    url = redirect_url(xml, key=load_key(demo_material.root / "idp" / "idp.key"), endpoint=SP_SLO,
                       relay_state="idp-slo")
    assert_refused(open_browser(app, None).get(url), code)
    posted_response(browser.get(sp.login_url()))  # Karin's session goes on
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], logout["reason"], data(logout)["initiator"]) == ("failure", code, "idp")
    # a known IdP's request is named (its peer), an unknown issuer is not; an IdP is no SP
    assert data(logout).get("peer") == (None if issuer else IDP_ENTITY_ID)
    assert "sp" not in logout



@pytest.mark.parametrize("element", ["saml:NameID", "samlp:SessionIndex"], ids=["name-id", "session-index"])
def test_idp_logout_request_whose_identifier_holds_an_element_is_refused(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path,
        demo_material, element: str) -> None:  # type: ignore[no-untyped-def]
    """The LogoutRequest's NameID and SessionIndex are read as the assertion's were: text only. With an element
    inside (``<NameID>karin<x/>-other</NameID>``) the first text node alone is not the value the IdP named; the
    request is refused and Karin's session goes on."""
    karin_login(browser, sp, idp)
    root = etree.fromstring(_idp_logout_request(idp))
    found = root.find(element, NS)
    assert found is not None
    etree.SubElement(found, "{urn:example:extension}Part").tail = "-other"
    url = redirect_url(etree.tostring(root), key=load_key(demo_material.root / "idp" / "idp.key"), endpoint=SP_SLO,
                       relay_state="idp-slo")
    assert_refused(open_browser(app, None).get(url), "logout_request_invalid")
    posted_response(browser.get(sp.login_url()))  # Karin's session goes on
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], logout["reason"]) == ("failure", "logout_request_invalid")
    assert "child elements" in str(logout["detail"])

def test_logout_response_for_no_logout_in_progress_is_refused(browser: Browser, sp: DemoSp,
                                                              config_dir: Path, demo_material) -> None:  # type: ignore[no-untyped-def]
    sso_login(browser, sp)
    key = load_key(demo_material.root / "sp" / "sp.key")
    assert_refused(browser.get(logout_response_url(SP1, "_nothing", "no-such-logout", key=key)), "logout_unknown")
    posted_response(browser.get(sp.login_url()))
    refused, = events(config_dir, "logout_propagated")
    assert (refused["outcome"], refused["reason"]) == ("failure", "logout_unknown")


def test_replayed_logout_response_is_refused(browser: Browser, sp: DemoSp, sp2: DemoSp, config_dir: Path) -> None:
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    answer = sp_answers(sp2, to_sp2.location)
    final = hop(browser.get(answer), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)

    assert_refused(browser.get(answer), "logout_unknown")  # the logout's state was consumed
    propagated = events(config_dir, "logout_propagated")
    assert [(e["outcome"], e.get("reason")) for e in propagated] == [("success", None), ("failure", "logout_unknown")]
    assert len(events(config_dir, "logout_completed")) == 1


# --- 6. another instance continues ---------------------------------------------------------------------------


def test_logout_continues_on_another_instance(settings: Settings, browser: Browser, sp: DemoSp, sp2: DemoSp,
                                              redis_url: str, redis_prefix: str, config_dir: Path) -> None:
    """The state travels as RelayState into the shared store: SP2's answer may reach any broker instance."""
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    start = sp_logout_url(sp, at_sp1)
    sent = redirect_message(start, "SAMLRequest")
    to_sp2 = hop(browser.get(start), SP2_SLO, "SAMLRequest")

    second = create_app(settings, store=RedisStore(redis_url, prefix=redis_prefix), instance_id="test-2")
    answer = sp_answers(sp2, to_sp2.location)
    same_browser = open_browser(second, None)  # the user's browser (its cookies), at the other instance
    binding = browser.client.get_cookie("__Host-broker_binding", domain="localhost", path="/")
    assert binding is not None
    same_browser.client.set_cookie("__Host-broker_binding", binding.value, domain="localhost", path="/")
    final = hop(same_browser.get(answer), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    assert final.root.get("InResponseTo") == sent.root.get("ID")
    assert final.parameters["RelayState"] == sent.parameters["RelayState"]
    assert sp.client.parse_logout_request_response(final.parameters["SAMLResponse"], BINDING_HTTP_REDIRECT)

    assert_refused(browser.get(answer), "logout_unknown")  # consumed there, so gone here too

    completed = [e for e in audit_lines(config_dir) if e["event"] == "logout_completed"]
    assert [(e["outcome"], list(data(e)["confirmed"])) for e in completed] == [("success", [SP2])]  # type: ignore[call-overload]


# --- 7. a chain through a participant reached by HTTP-POST -----------------------------------------------------


def _slo_elsewhere(metadata: bytes, binding: str, location: str) -> bytes:
    """``metadata`` with its one SingleLogoutService at ``location`` by ``binding`` only."""
    root = etree.fromstring(metadata)
    services = list(root.iter(f"{{{MD}}}SingleLogoutService"))
    for element in services[1:]:
        element.getparent().remove(element)  # type: ignore[union-attr]
    services[0].set("Binding", binding)
    services[0].set("Location", location)
    return bytes(etree.tostring(root))


class TestAChainThroughAPostParticipant:
    """The fourth SP's SingleLogoutService is HTTP-POST only, at an origin of its own; the second SP's is
    HTTP-Redirect, at another. Participants are asked in the order of their entity IDs: the broker's page posting
    to the fourth SP starts a navigation that its answer (an HTTP-Redirect LogoutResponse back to the broker) and
    the broker's redirect to the second SP continue."""

    @pytest.fixture
    def config_dir(self, config_dir: Path, demo_material) -> Path:  # type: ignore[no-untyped-def]
        path = config_dir / "metadata" / "second-sp.xml"
        path.write_bytes(_slo_elsewhere(path.read_bytes(), BINDING_HTTP_REDIRECT, "https://sp2.example:8443/saml/slo"))
        _add_sp(config_dir, "fourth-sp", "Fjärde tjänsten",
                _slo_elsewhere(sp_metadata(_sp_settings(demo_material, "fourth-sp")),
                               "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "https://sp4.example/slo"))
        return config_dir

    @pytest.fixture
    def sp4(self, app: Flask, settings: Settings, demo_material) -> DemoSp:  # type: ignore[no-untyped-def]
        return _pysaml2_sp(app, settings, demo_material, "fourth-sp")

    def test_the_page_posting_to_a_participant_lets_the_chain_go_on_to_the_others(
            self, browser: Browser, sp: DemoSp, sp2: DemoSp, sp4: DemoSp) -> None:
        """CSP form-action applies to the redirects after a form's submission too (Chrome, Safari: see
        broker.web.pages.security_headers): the page must name the origins the rest of the logout goes to, or the
        browser stops before the second SP and the initiator never hears back."""
        at_sp1 = sso_login(browser, sp)
        sso_login(browser, sp2)
        sso_login(browser, sp4)
        page = browser.get(sp_logout_url(sp, at_sp1))
        assert page.status_code == 200, (page.status_code, page.headers.get("Location"))
        (action, fields), = forms(page)
        assert action == "https://sp4.example/slo"
        assert "SAMLRequest" in fields
        policy = dict(directive.strip().split(" ", 1) for directive in
                      page.headers["Content-Security-Policy"].split(";"))
        allowed = policy["form-action"].split()
        assert {"'self'", "https://sp4.example", "https://sp2.example:8443"} <= set(allowed)


# --- the demo IdP's own single logout (broker/demo/idp.py) --------------------------------------------------


def test_demo_idp_logout_request_is_accepted(app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    """``DemoIdp.logout_request`` promises "a signed LogoutRequest"; the broker requires one."""
    karin_login(browser, sp, idp)
    start = idp.logout_request(KARIN)
    assert "Signature" in query(start), "the demo IdP's LogoutRequest is not signed"
    hop(open_browser(app, None).get(start), SP1_SLO, "SAMLRequest")


def test_demo_idp_answers_the_brokers_logout_request(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                     config_dir: Path) -> None:
    """``DemoIdp.handle_slo`` must accept the broker's signed LogoutRequest and answer so the broker accepts it."""
    at_sp1 = karin_login(browser, sp, idp)
    to_idp = hop(browser.get(sp_logout_url(sp, at_sp1)), KOMMUN_C_SLO, "SAMLRequest")
    answer = idp.handle_slo(to_idp.location)
    assert "karin" not in idp.logins
    final = hop(browser.get(answer), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    assert [(e["outcome"], e.get("reason")) for e in events(config_dir, "logout_propagated")] == [("success", None)]


@pytest.mark.parametrize(("relay_state", "refused"), [
    pytest.param("x" * 80, False, id="80-bytes"),
    pytest.param("x" * 81, True, id="81-bytes"),
    pytest.param("x" * 4000, True, id="4000-bytes"),
])
def test_an_sps_logout_relay_state_has_the_sso_endpoints_limit(browser: Browser, sp: DemoSp, config_dir: Path,
                                                                demo_material, relay_state: str,  # type: ignore[no-untyped-def]
                                                                refused: bool) -> None:
    # SAML Bindings §3.4.3: at most 80 bytes (idp.relay_state_max_bytes); it is stored with the logout and sent back
    given = sso_login(browser, sp)
    _, request = sp.client.create_logout_request(IDP_SLO, BROKER_IDP, name_id=given, sign=False)
    url = redirect_url(str(request).encode(), key=load_key(demo_material.root / "sp" / "sp.key"), endpoint=IDP_SLO,
                       relay_state=relay_state)
    page = browser.get(url)
    if refused:
        assert page.headers.get("X-Broker-Reason") == "relay_state_too_long"
        assert page.status_code == 400
    else:
        assert redirect_message(page.headers["Location"], "SAMLResponse").parameters["RelayState"] == relay_state


@pytest.mark.parametrize("relay_state", ["a\nb", "a\x00b"], ids=["lf", "nul"])
def test_an_idps_logout_relay_state_a_browser_would_change_is_refused(app: Flask, browser: Browser, sp: DemoSp,
                                                                      idp: DemoIdp, relay_state: str) -> None:
    """No length limit toward the IdPs, but the same rule as toward the SPs: it must come back exactly."""
    karin_login(browser, sp, idp)
    page = open_browser(app, None).get(idp_logout_url(idp, relay_state=relay_state))
    assert page.headers.get("X-Broker-Reason") == "saml_request_malformed"
    assert page.status_code == 400


def test_an_idps_logout_relay_state_may_be_long(app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    karin_login(browser, sp, idp)
    hop(open_browser(app, None).get(idp_logout_url(idp, relay_state="r" * 200)), SP1_SLO, "SAMLRequest")


@pytest.mark.parametrize(("qualifiers", "ends"), [
    pytest.param({}, True, id="value-only"),
    pytest.param({"name_qualifier": BROKER_IDP, "sp_name_qualifier": "the SP"}, True, id="as-given"),
    pytest.param({"sp_name_qualifier": "https://some-other-sp.example/metadata"}, False, id="another-sps-namespace"),
    pytest.param({"name_qualifier": "https://some-other-idp.example/metadata"}, False, id="another-idps-namespace"),
])
def test_an_sps_logout_request_must_name_the_identifier_with_its_qualifiers(
        browser: Browser, sp: DemoSp, config_dir: Path, demo_material, qualifiers: dict[str, str],  # type: ignore[no-untyped-def]
        ends: bool) -> None:
    # SAML Core §3.7.3.2, §8.3.7: a persistent identifier is its value within the namespace its qualifiers name
    given = sso_login(browser, sp)
    qualifiers = {k: sp.client.config.entityid if v == "the SP" else v for k, v in qualifiers.items()}
    name_id = NameID(text=given.text, format=given.format, **qualifiers)
    _, request = sp.client.create_logout_request(IDP_SLO, BROKER_IDP, name_id=name_id, sign=False)
    url = redirect_url(str(request).encode(), key=load_key(demo_material.root / "sp" / "sp.key"), endpoint=IDP_SLO,
                       relay_state="r")
    browser.get(url)
    (logout,) = events(config_dir, "logout")
    assert data(logout)["session_ended"] is ends


@pytest.mark.parametrize(("name_id", "ends"), [
    pytest.param({}, True, id="as-given"),
    pytest.param({"name_qualifier": "https://elsewhere.example/idp"}, False, id="another-namespace"),
    pytest.param({"format": "urn:oasis:names:tc:SAML:2.0:nameid-format:emailAddress"}, False, id="another-format"),
])
def test_an_idps_logout_request_must_name_the_identifier_it_gave(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, demo_material,  # type: ignore[no-untyped-def]
        config_dir: Path, name_id: dict[str, str], ends: bool) -> None:
    karin_login(browser, sp, idp)
    login = idp.logins["karin"]
    _, request = idp.server.create_logout_request(SP_SLO, idp.entity_id, name_id=NameID(text=login.name_id, **name_id),
                                                  session_indexes=[], sign=False)
    url = redirect_url(str(request).encode(), key=load_key(demo_material.root / "idp" / "idp.key"), endpoint=SP_SLO,
                       relay_state="x")
    open_browser(app, None).get(url)
    (logout,) = events(config_dir, "logout")
    assert (data(logout)["sessions"] == 1) is ends
