"""Single logout initiated by the SP (SAML Core §3.7, Profiles §4.4): the LogoutRequest comes from the real
pysaml2 SP (or is crafted from its parts), the LogoutResponse goes back to the SP's SingleLogoutService
(HTTP-Redirect in its metadata) and is checked by the test and by pysaml2."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from lxml import etree
from saml2 import BINDING_HTTP_REDIRECT
from saml2.saml import NameID
from werkzeug.test import TestResponse

from broker.demo.sp import DemoSp
from broker.errors import AuditUnavailable, SessionStoreUnavailable
from broker.session.sessions import SessionManager
from broker.session.store import RedisStore
from tests.factories.authnrequests import (
    DIGEST_SHA256,
    NS,
    RSA_SHA256,
    SLO_URL,
    SP_ENTITY_ID,
    SP_SLO_URL,
    AuthnRequests,
    RedirectedMessage,
    assert_refused,
    login,
    open_browser,
    post_fields,
    posted_response,
    redirect_message,
    redirect_url,
    redirected_message,
    replace_parameter,
    sp_accepts,
    status_codes,
)
from tests.factories.municipality_choice import choose
from tests.factories.saml import BASE_URL, Browser
from tests.flows.conftest import audit_lines

IDP_ENTITY_ID = BASE_URL + "/saml/idp/metadata"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
COOKIE = "__Host-broker_session"
PARTIAL_LOGOUT = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


@pytest.fixture
def logged_in(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> NameID:
    """Anna has logged in at the SP (pysaml2 remembers her NameID and SessionIndex); returns the NameID."""
    crafted, posted = login(browser, craft)
    return sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id).name_id


def pysaml2_logout_url(sp: DemoSp, name_id: NameID) -> str:
    """The SP's own signed HTTP-Redirect LogoutRequest to the broker."""
    (binding, info), = sp.client.global_logout(name_id, sign=True, sign_alg=RSA_SHA256,
                                               digest_alg=DIGEST_SHA256).values()
    assert binding == BINDING_HTTP_REDIRECT
    return str(dict(info["headers"])["Location"])


def logout_request_xml(sp: DemoSp, name_id: NameID, *, sign: bool = False, destination: str = SLO_URL,
                       session_indexes: list[str] | None = None) -> bytes:
    _, request = sp.client.create_logout_request(destination, IDP_ENTITY_ID, name_id=name_id, sign=sign,
                                                 sign_alg=RSA_SHA256 if sign else None,
                                                 digest_alg=DIGEST_SHA256 if sign else None,
                                                 session_indexes=session_indexes)
    return str(request).encode()


def assert_query_signed_by_broker(message: RedirectedMessage, config_dir: Path) -> None:
    """Bindings §3.4.4.1: the broker's RSA-SHA256 signature over SAMLResponse=..&RelayState=..&SigAlg=.."""
    assert message.parameters["SigAlg"] == RSA_SHA256
    cert = x509.load_pem_x509_certificate((config_dir / "keys" / "idp-signing.crt").read_bytes())
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(message.parameters["Signature"]), message.signed_octets, padding.PKCS1v15(),
               hashes.SHA256())


def session_alive(browser: Browser, craft: AuthnRequests) -> TestResponse:
    """An AuthnRequest from this browser without a certificate: answered only from a live session."""
    saved, browser.certificate_pem = browser.certificate_pem, None
    try:
        return browser.get(craft.redirect(craft.build()))
    finally:
        browser.certificate_pem = saved


def logged_out(browser: Browser, craft: AuthnRequests) -> TestResponse:
    """Without a live session an AuthnRequest from this browser without a certificate gets the discovery page
    (the demo SP also accepts Kommun C, which has its own IdP); the answer to choosing Kommun A there."""
    saved, browser.certificate_pem = browser.certificate_pem, None
    try:
        return choose(browser, browser.get(craft.redirect(craft.build())))
    finally:
        browser.certificate_pem = saved


def test_signed_logout_request_ends_the_session_and_gets_success(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                                 logged_in: NameID, config_dir: Path) -> None:
    url = pysaml2_logout_url(sp, logged_in)
    request = redirect_message(url, "SAMLRequest")
    assert request.root.find("samlp:SessionIndex", NS) is not None  # pysaml2 names the session it knows

    response = browser.get(url)
    message = redirected_message(response)
    assert message.url == SP_SLO_URL
    assert message.root.tag == "{urn:oasis:names:tc:SAML:2.0:protocol}LogoutResponse"
    assert status_codes(message.root) == (SUCCESS, None)
    assert (message.root.get("InResponseTo"), message.root.get("Destination")) == (request.root.get("ID"), SP_SLO_URL)
    assert message.parameters["RelayState"] == request.parameters["RelayState"]
    assert message.root.find("saml:Issuer", NS).text == IDP_ENTITY_ID  # type: ignore[union-attr]
    assert_query_signed_by_broker(message, config_dir)
    parsed = sp.client.parse_logout_request_response(message.parameters["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert parsed is not None
    assert parsed.response.status.status_code.value == SUCCESS

    cleared = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "=")]
    assert len(cleared) == 1
    assert "Expires=Thu, 01 Jan 1970" in cleared[0]
    assert_refused(logged_out(browser, craft), "certificate_missing")
    logouts = [e for e in audit_lines(config_dir) if e["event"] == "logout"]
    assert [(e["outcome"], e["data"]["session_ended"]) for e in logouts] == [("success", True)]  # type: ignore[index]


def test_signed_post_logout_request_ends_the_session(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                     logged_in: NameID) -> None:
    xml = logout_request_xml(sp, logged_in, sign=True)
    message = redirected_message(browser.post(SLO_URL, post_fields(xml)))
    assert status_codes(message.root) == (SUCCESS, None)
    assert_refused(logged_out(browser, craft), "certificate_missing")


def test_logout_request_from_a_browser_without_the_cookie_ends_the_session_it_names(
        app: Flask, browser: Browser, sp: DemoSp, craft: AuthnRequests, logged_in: NameID, config_dir: Path) -> None:
    """SAML Core §3.7.3.2: the session authority ends the sessions the request names. Delivered by a browser
    without the session's cookie (another device, a blocked cookie), it still ends the session its SessionIndex
    names; before, it was told Success while the session went on answering."""
    cookieless = open_browser(app, None)
    message = redirected_message(cookieless.get(pysaml2_logout_url(sp, logged_in)))
    assert status_codes(message.root) == (SUCCESS, None)
    assert_refused(logged_out(browser, craft), "certificate_missing")
    logouts = [e for e in audit_lines(config_dir) if e["event"] == "logout"]
    assert [(e["outcome"], e["data"]["session_ended"]) for e in logouts] == [("success", True)]  # type: ignore[index]


def test_logout_request_without_the_cookie_naming_someone_else_at_a_session_index_ends_nothing(
        app: Flask, browser: Browser, sp: DemoSp, craft: AuthnRequests, logged_in: NameID) -> None:
    """The NameID must be the one the SP was given in the session the SessionIndex names."""
    xml = logout_request_xml(sp, NameID(text="not-annas-nameid", format=logged_in.format),
                             session_indexes=[_session_index(browser, craft)])
    cookieless = open_browser(app, None)
    message = redirected_message(cookieless.get(redirect_url(xml, key=craft.key, endpoint=SLO_URL)))
    assert status_codes(message.root) == (SUCCESS, None)  # nothing of its to end
    posted_response(session_alive(browser, craft))


def test_logout_request_without_the_cookie_or_a_session_index_gets_partial_logout(
        app: Flask, browser: Browser, sp: DemoSp, craft: AuthnRequests, logged_in: NameID, config_dir: Path) -> None:
    """Without a SessionIndex the request means all of the principal's sessions (SAML Core §3.7.3.2); from a
    browser without the cookie they cannot be found, so the SP is not told Success outright."""
    xml = logout_request_xml(sp, logged_in)
    assert b"SessionIndex" not in xml
    cookieless = open_browser(app, None)
    message = redirected_message(cookieless.get(redirect_url(xml, key=craft.key, endpoint=SLO_URL)))
    assert status_codes(message.root) == (SUCCESS, "urn:oasis:names:tc:SAML:2.0:status:PartialLogout")
    logouts = [e for e in audit_lines(config_dir) if e["event"] == "logout"]
    assert [e["data"].get("unlocated") for e in logouts] == [True]  # type: ignore[union-attr]
    # the end of the logout is recorded as what the SP was told: partial, and why (it was recorded a success)
    completed, = (e for e in audit_lines(config_dir) if e["event"] == "logout_completed")
    assert (completed["outcome"], completed["reason"]) == ("failure", "logout_partial")
    assert completed["detail"] == "the principal's sessions could not all be found"
    assert completed["data"] == {"initiator": "sp", "peer": SP_ENTITY_ID, "confirmed": [], "failed": [],
                                 "unlocated": True}


def _session_index(browser: Browser, craft: AuthnRequests) -> str:
    """The SessionIndex the SP holds for this browser's session (it is answered again from the session)."""
    posted = posted_response(session_alive(browser, craft))
    statement = posted.root.find(".//saml:AuthnStatement", NS)
    assert statement is not None
    return str(statement.get("SessionIndex"))


def test_unsigned_redirect_logout_request_is_refused(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                    logged_in: NameID) -> None:
    url = redirect_url(logout_request_xml(sp, logged_in), endpoint=SLO_URL)
    assert_refused(browser.get(url), "logout_request_invalid")
    posted_response(session_alive(browser, craft))  # the session goes on


def test_unsigned_post_logout_request_is_refused(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                logged_in: NameID) -> None:
    assert_refused(browser.post(SLO_URL, post_fields(logout_request_xml(sp, logged_in))), "logout_request_invalid")
    posted_response(session_alive(browser, craft))


def test_logout_request_signed_with_another_key_is_refused(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                           logged_in: NameID, config_dir: Path) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the SP's metadata
    url = redirect_url(logout_request_xml(sp, logged_in), key=stranger, endpoint=SLO_URL)
    assert_refused(browser.get(url), "saml_signature_invalid")
    posted_response(session_alive(browser, craft))
    # the refusal names the registered SP whose Issuer the request names: the operator's remedy (its key) is there
    logout, = [e for e in audit_lines(config_dir) if e["event"] == "logout"]
    assert (logout["outcome"], logout["reason"], logout.get("sp")) == ("failure", "saml_signature_invalid",
                                                                       SP_ENTITY_ID)
    assert logout["data"] == {"initiator": "sp", "peer": SP_ENTITY_ID}


@pytest.mark.parametrize("issuer_format", [
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
], ids=["persistent", "unspecified"])
def test_logout_request_whose_issuer_is_no_entity_is_refused(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                             logged_in: NameID, issuer_format: str) -> None:
    """Profiles §4.4.4.1: the Issuer's Format "MUST be omitted or have a value of" entity: a signed request whose
    Issuer is any other kind of name is no request of the SP entity, and the session goes on."""
    root = etree.fromstring(logout_request_xml(sp, logged_in))
    issuer = root.find("saml:Issuer", NS)
    assert issuer is not None
    issuer.set("Format", issuer_format)
    url = redirect_url(etree.tostring(root), key=craft.key, endpoint=SLO_URL)
    assert_refused(browser.get(url), "logout_request_invalid")
    posted_response(session_alive(browser, craft))


def test_logout_request_for_another_endpoint_is_refused(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                        logged_in: NameID) -> None:
    xml = logout_request_xml(sp, logged_in, destination=BASE_URL + "/saml/idp/sso")
    url = redirect_url(xml, key=craft.key, endpoint=SLO_URL)
    assert_refused(browser.get(url), "saml_destination_mismatch")
    posted_response(session_alive(browser, craft))


@pytest.mark.parametrize("change", ["name_id", "session_index"])
def test_logout_request_for_someone_else_gets_unknown_principal(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                                logged_in: NameID, config_dir: Path,
                                                                change: str) -> None:
    name_id = logged_in
    indexes = None
    if change == "name_id":
        name_id = NameID(text="not-annas-nameid", format=logged_in.format)
    else:
        indexes = ["_not-this-session"]
    url = redirect_url(logout_request_xml(sp, name_id, session_indexes=indexes), key=craft.key, endpoint=SLO_URL,
                       relay_state="lo")
    message = redirected_message(browser.get(url))
    assert status_codes(message.root) == ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                                          "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal")
    assert message.parameters["RelayState"] == "lo"
    assert_query_signed_by_broker(message, config_dir)
    posted_response(session_alive(browser, craft))  # nobody else's logout ends Anna's session


def test_logout_request_with_tampered_query_is_refused(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                       logged_in: NameID) -> None:
    url = replace_parameter(pysaml2_logout_url(sp, logged_in), "RelayState", "changed")
    assert_refused(browser.get(url), "saml_signature_invalid")
    posted_response(session_alive(browser, craft))


# --- the Asynchronous Single Logout extension (OASIS SAML V2.0 Async SLO Profile Extension, CS01) ---------------

ASYNC_SLO = "urn:oasis:names:tc:SAML:2.0:protocol:ext:async-slo"


def asynchronous(xml: bytes) -> bytes:
    """The LogoutRequest with <aslo:Asynchronous/> in its Extensions, right after the Issuer (SAML Core §3.2.1), as
    the Shibboleth SP sends it by default."""
    root = etree.fromstring(xml)
    issuer = root.find("saml:Issuer", NS)
    assert issuer is not None
    extensions = etree.Element("{urn:oasis:names:tc:SAML:2.0:protocol}Extensions")
    etree.SubElement(extensions, f"{{{ASYNC_SLO}}}Asynchronous", nsmap={"aslo": ASYNC_SLO})
    issuer.addnext(extensions)
    return etree.tostring(root)


def test_asynchronous_logout_ends_on_the_brokers_page_without_a_logout_response(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, logged_in: NameID, config_dir: Path) -> None:
    xml = asynchronous(logout_request_xml(sp, logged_in))
    response = browser.get(redirect_url(xml, key=craft.key, endpoint=SLO_URL, relay_state="lo"))

    assert response.status_code == 200
    assert "Location" not in response.headers
    page = response.get_data(as_text=True)
    assert "SAMLResponse" not in page   # the SP asked for no answer
    assert "Du är utloggad." in page
    cleared = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "=")]
    assert len(cleared) == 1
    assert "Expires=Thu, 01 Jan 1970" in cleared[0]
    assert_refused(logged_out(browser, craft), "certificate_missing")
    events = {e["event"]: e for e in audit_lines(config_dir) if str(e["event"]).startswith("logout")}
    assert events["logout"]["outcome"] == "success"
    assert events["logout"]["data"]["asynchronous"] is True  # type: ignore[index]
    assert events["logout"]["data"]["session_ended"] is True  # type: ignore[index]
    assert events["logout_completed"]["outcome"] == "success"


def test_logout_request_id_that_is_no_xs_id_is_refused_and_ends_nothing(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, logged_in: NameID) -> None:
    root = etree.fromstring(logout_request_xml(sp, logged_in))
    root.set("ID", "1 2")
    assert_refused(browser.get(redirect_url(etree.tostring(root), key=craft.key, endpoint=SLO_URL)),
                   "logout_request_invalid")
    posted_response(session_alive(browser, craft))


@pytest.mark.parametrize(("count", "ends"), [pytest.param(32, True, id="at-the-limit"),
                                             pytest.param(33, False, id="one-too-many")])
def test_logout_request_naming_too_many_session_indexes_is_refused_before_any_lookup(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, logged_in: NameID, config_dir: Path, count: int,
        ends: bool) -> None:
    """Every SessionIndex an SP's LogoutRequest names is looked up in the store (SAML Core §3.7.1 allows several):
    at most 32 are read; a request naming more is refused, and audited, before any is looked up."""
    indexes = [_session_index(browser, craft), *(f"_other{i}" for i in range(count - 1))]
    xml = logout_request_xml(sp, logged_in, sign=True, session_indexes=indexes)
    response = browser.post(SLO_URL, post_fields(xml))
    logouts = [e for e in audit_lines(config_dir) if e["event"] == "logout"]
    if ends:
        assert status_codes(redirected_message(response).root) == (SUCCESS, None)
        assert [e["outcome"] for e in logouts] == ["success"]
        return
    assert_refused(response, "logout_request_invalid")
    assert [(e["outcome"], e["reason"], e["sp"]) for e in logouts] == [
        ("failure", "logout_request_invalid", SP_ENTITY_ID)]
    assert "33 SessionIndexes (at most 32)" in str(logouts[0]["detail"])
    posted_response(session_alive(browser, craft))  # the session goes on


def test_asynchronous_logout_for_someone_else_is_refused_and_ends_nothing(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, logged_in: NameID, config_dir: Path) -> None:
    xml = asynchronous(logout_request_xml(sp, NameID(text="not-annas-nameid", format=logged_in.format)))
    assert_refused(browser.get(redirect_url(xml, key=craft.key, endpoint=SLO_URL)), "logout_request_invalid")
    posted_response(session_alive(browser, craft))


class _Blip(RedisStore):
    """The session store failing once, on the next read of a session (armed by the test)."""

    armed = False

    def get(self, key: str) -> bytes | None:
        if self.armed and key.startswith("session:"):
            self.armed = False
            raise SessionStoreUnavailable("Redis GET failed: injected")
        return super().get(key)


class TestAStoreFailureDuringLogout:
    @pytest.fixture
    def store(self, redis_url: str, redis_prefix: str) -> _Blip:
        return _Blip(redis_url, prefix=redis_prefix)

    def test_the_retry_of_the_same_logout_request_is_no_replay(self, store: _Blip, browser: Browser, sp: DemoSp,
                                                               craft: AuthnRequests, logged_in: NameID) -> None:
        """The LogoutRequest is marked as used before its session is ended: a store failure in between gave the
        503 page, and the user's retry was refused as a replay while the session lived on."""
        url = pysaml2_logout_url(sp, logged_in)
        store.armed = True
        assert browser.get(url).headers["X-Broker-Reason"] == "session_store_unavailable"
        message = redirected_message(browser.get(url))  # the retry
        assert status_codes(message.root) == (SUCCESS, None)
        assert_refused(logged_out(browser, craft), "certificate_missing")



class TestAnAuditFailureDuringLogout:
    def test_the_retry_of_the_same_logout_request_is_no_replay(self, app: Flask, browser: Browser, sp: DemoSp,
                                                               craft: AuthnRequests, logged_in: NameID,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               config_dir: Path) -> None:
        """The logout's records cannot be made durable (an fsync fails): the 503 page asks the user to try again,
        and the retry was refused as a replay of the LogoutRequest (400), so the SP never heard the logout's
        outcome. As after a store failure, the retry finishes the logout."""
        writer = app.extensions["broker"].audit.sink
        real_sync = writer.sync
        failures = [AuditUnavailable("cannot sync the audit file: Input/output error")]

        def sync_failing_once(upto: int) -> None:
            if failures:
                raise failures.pop()
            real_sync(upto)

        monkeypatch.setattr(writer, "sync", sync_failing_once)
        url = pysaml2_logout_url(sp, logged_in)
        assert browser.get(url).headers["X-Broker-Reason"] == "audit_unavailable"
        message = redirected_message(browser.get(url))  # the retry
        assert status_codes(message.root) == (SUCCESS, None)
        assert_refused(logged_out(browser, craft), "certificate_missing")
        logouts = [e for e in audit_lines(config_dir) if e["event"] == "logout"]
        assert [(e["outcome"], e.get("reason")) for e in logouts][-1] == ("success", None)


def test_a_logout_ends_a_session_this_release_cannot_read(browser: Browser, sp: DemoSp, logged_in: NameID,
                                                         store: RedisStore, config_dir: Path) -> None:
    """Another release's session record (a field this one does not know): the logout must still end it on the
    server; its other SPs cannot be told, so the SP hears PartialLogout rather than Success."""
    cookie = browser.client.get_cookie(COOKIE, domain="localhost")
    assert cookie is not None
    key = "session:" + SessionManager.ref(cookie.value)
    stored = store.get(key)
    assert stored is not None
    store.put(key, json.dumps({**json.loads(stored), "new_release_field": "x"}).encode(), 600)

    response = browser.get(pysaml2_logout_url(sp, logged_in))

    assert status_codes(redirected_message(response).root) == (SUCCESS, PARTIAL_LOGOUT)
    assert store.get(key) is None
    assert any(h.startswith(COOKIE + "=") and "Expires=Thu, 01 Jan 1970" in h
               for h in response.headers.getlist("Set-Cookie"))
    events = [(e["event"], e["data"].get("unlocated") if e["event"] == "logout" else None)  # type: ignore[union-attr]
              for e in audit_lines(config_dir) if e["event"] in ("logout", "session_unreadable")]
    assert events == [("session_unreadable", None), ("logout", True)]
