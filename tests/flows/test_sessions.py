"""SSO sessions across AuthnRequests (DESIGN flow 4; SAML Core §3.4.1 ForceAuthn and IsPassive) and the
one-time pending login behind an error page's "try again".

Without a session and a certificate the demo SP's user is asked for the municipality (the SP also accepts
Kommun C, which logs in with its own IdP); choosing Kommun A there ends at ``certificate_missing``."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from saml2.response import AuthnResponse, StatusNoAuthnContext
from werkzeug.test import TestResponse

from broker.demo.sp import DemoSp
from broker.session.sessions import SessionManager
from broker.session.store import RedisStore
from tests.factories.authnrequests import (
    NS,
    AuthnRequests,
    PostedResponse,
    assert_refused,
    error_page,
    login,
    open_browser,
    posted_response,
    sp_accepts,
)
from tests.factories.municipality_choice import choose
from tests.factories.saml import Browser
from tests.flows.conftest import audit_lines

COOKIE = "__Host-broker_session"  # session.cookie_name in config/example/broker.yaml
PNR_ATTRIBUTE = "urn:oid:1.2.752.29.4.13"
HSA_ID_ATTRIBUTE = "urn:oid:1.2.752.29.6.2.1"


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


def session_cookie(response: TestResponse) -> str | None:
    """The raw Set-Cookie header that sets the session cookie, if the response sets one."""
    found = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "=")]
    assert len(found) <= 1
    return found[0] if found else None


def cookie_value(header: str) -> str:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(header)
    return cookie[COOKIE].value


def released(result: AuthnResponse) -> dict[str, list[str]]:
    """Attribute Name -> values, as pysaml2 read them."""
    return {a.name: [v.text for v in a.attribute_value]
            for statement in result.assertion.attribute_statement for a in statement.attribute}


def session_index(posted: PostedResponse) -> str | None:
    statement = posted.root.find("saml:Assertion/saml:AuthnStatement", NS)
    assert statement is not None
    return statement.get("SessionIndex")


def events_of(config_dir: Path, correlation_id: str) -> list[str]:
    return [str(e["event"]) for e in audit_lines(config_dir) if e["correlation_id"] == correlation_id]


def correlation_of(config_dir: Path, request_id: str) -> str:
    started = [e for e in audit_lines(config_dir)
               if e["event"] == "login_started" and e["data"]["request_id"] == request_id]  # type: ignore[index]
    assert len(started) == 1
    return str(started[0]["correlation_id"])


def sso(browser: Browser, craft: AuthnRequests, **fields: Any) -> tuple[TestResponse, str]:
    crafted = craft.build(**fields)
    return browser.get(craft.redirect(crafted)), crafted.request_id


# --- the session cookie ----------------------------------------------------------------------


def test_session_cookie_is_secure_httponly_samesite_none(browser: Browser, craft: AuthnRequests) -> None:
    response, _ = sso(browser, craft)
    header = session_cookie(response)
    assert header is not None
    attributes = {part.strip().split("=", 1)[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes["samesite"] == "SameSite=None"
    assert attributes["path"] == "Path=/"
    assert len(cookie_value(header)) >= 43  # 256 random bits, URL-safe base64


# --- single sign-on --------------------------------------------------------------------------


def test_second_request_is_answered_from_the_session_without_a_certificate(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, config_dir: Path) -> None:
    _, first = login(browser, craft)
    browser.certificate_pem = None
    response, request_id = sso(browser, craft)
    posted = posted_response(response)
    result = sp_accepts(sp, posted.fields["SAMLResponse"], request_id)
    assert released(result)[HSA_ID_ATTRIBUTE] == ["SE2120001009-anna"]
    assert session_index(posted) == session_index(first)
    assert session_cookie(response) is None  # the same session goes on
    second = correlation_of(config_dir, request_id)
    assert events_of(config_dir, second) == ["login_started", "session_reused", "assertion_issued"]
    issued = [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]
    assert [e["data"]["session"] for e in issued] == ["new", "reused"]  # type: ignore[index]


def test_passive_request_is_answered_from_the_session(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    login(browser, craft)
    browser.certificate_pem = None
    response, request_id = sso(browser, craft, is_passive="true")
    posted = posted_response(response)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Success", None)
    sp_accepts(sp, posted.fields["SAMLResponse"], request_id)


def test_session_too_weak_for_the_requested_context_gets_no_authn_context(browser: Browser, sp: DemoSp,
                                                                          craft: AuthnRequests) -> None:
    login(browser, craft)  # a loa3 session
    browser.certificate_pem = None
    response, request_id = sso(browser, craft, requested_authn_context={
        "authn_context_class_ref": ["http://id.elegnamnden.se/loa/1.0/loa4"], "comparison": "exact"})
    posted = posted_response(response)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Responder",
                             "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext")
    with pytest.raises(StatusNoAuthnContext):
        sp_accepts(sp, posted.fields["SAMLResponse"], request_id)
    posted_response(sso(browser, craft)[0])  # the session itself goes on


def test_force_authn_without_a_certificate_is_refused(browser: Browser, craft: AuthnRequests,
                                                      config_dir: Path) -> None:
    login(browser, craft)
    browser.certificate_pem = None
    response, request_id = sso(browser, craft, force_authn="true")
    # re-authentication at the session's municipality, Kommun A, without asking: it needs the card
    assert_refused(response, "certificate_missing")
    assert "session_reused" not in events_of(config_dir, correlation_of(config_dir, request_id))


def test_force_authn_with_the_certificate_starts_a_new_session(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                               config_dir: Path) -> None:
    first_response, _ = sso(browser, craft)
    first_cookie = session_cookie(first_response)
    assert first_cookie is not None
    first = posted_response(first_response)

    response, request_id = sso(browser, craft, force_authn="true")
    posted = posted_response(response)
    sp_accepts(sp, posted.fields["SAMLResponse"], request_id)
    new_cookie = session_cookie(response)
    assert new_cookie is not None
    assert cookie_value(new_cookie) != cookie_value(first_cookie)
    assert session_index(posted) != session_index(first)
    assert events_of(config_dir, correlation_of(config_dir, request_id)) == [
        "login_started", "certificate_presented", "certificate_accepted", "assertion_issued"]


def test_the_session_replaced_by_force_authn_is_ended(browser: Browser, craft: AuthnRequests, app: Flask) -> None:
    first_response, _ = sso(browser, craft)
    old = cookie_value(session_cookie(first_response) or "")
    second_response, _ = sso(browser, craft, force_authn="true")
    new = cookie_value(session_cookie(second_response) or "")

    def without_certificate(cookie: str) -> tuple[Browser, TestResponse]:
        other = open_browser(app, None)
        other.client.set_cookie(COOKIE, cookie, domain="localhost")
        return other, sso(other, craft)[0]

    other, response = without_certificate(old)
    assert_refused(choose(other, response), "certificate_missing")  # not logged in: asked for the municipality
    posted_response(without_certificate(new)[1])  # the replacement session does carry SSO


def test_another_certificate_than_the_sessions_starts_a_new_login(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                                  users: Path, config_dir: Path) -> None:
    _, first = login(browser, craft)
    browser.certificate_pem = (users / "bo.pem").read_text()
    response, request_id = sso(browser, craft)
    posted = posted_response(response)
    result = sp_accepts(sp, posted.fields["SAMLResponse"], request_id)
    assert released(result)[PNR_ATTRIBUTE] == ["191212121212"]
    assert HSA_ID_ATTRIBUTE not in released(result)
    assert session_index(posted) != session_index(first)
    assert session_cookie(response) is not None
    # Anna's session is another user's: kept apart for her single logout, and said so under her name
    assert events_of(config_dir, correlation_of(config_dir, request_id)) == [
        "login_started", "certificate_presented", "certificate_accepted", "session_replaced", "assertion_issued"]


def test_a_certificate_session_below_the_level_asked_gets_no_authn_context(browser: Browser, craft: AuthnRequests,
                                                                          users: Path) -> None:
    """A certificate's level is the certificate's: the same card cannot give more, so the session's refusal
    stands (another card starts a new login)."""
    browser.certificate_pem = (users / "bo.pem").read_text()  # LoA 2
    login(browser, craft)
    response, _ = sso(browser, craft, requested_authn_context={
        "authn_context_class_ref": ["http://id.elegnamnden.se/loa/1.0/loa3"], "comparison": "exact"})
    assert posted_response(response).status == ("urn:oasis:names:tc:SAML:2.0:status:Responder",
                                                "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext")


def test_a_refused_certificate_does_not_fall_back_to_the_session(browser: Browser, craft: AuthnRequests,
                                                                 users: Path) -> None:
    login(browser, craft)
    browser.certificate_pem = (users / "cecilia.pem").read_text()  # revoked
    response, _ = sso(browser, craft)
    assert_refused(response, "revoked")


# --- pending logins are used once ------------------------------------------------------------


def test_try_again_link_works_once(browser: Browser, sp: DemoSp, craft: AuthnRequests, users: Path,
                                   config_dir: Path) -> None:
    browser.certificate_pem = None
    response, request_id = sso(browser, craft)
    response = choose(browser, response)
    assert_refused(response, "certificate_missing")
    refid, retry = error_page(response)
    assert retry is not None
    assert retry.startswith("/saml/idp/login/")

    browser.certificate_pem = (users / "anna.pem").read_text()
    again = posted_response(browser.get(retry))
    sp_accepts(sp, again.fields["SAMLResponse"], request_id)  # answers the original AuthnRequest

    used = browser.get(retry)
    assert_refused(used, "login_unknown")
    assert error_page(used)[1] is None  # nothing left to retry
    # the retried login continues under the reference the user was shown
    assert events_of(config_dir, refid or "") == [
        "login_started", "login_refused", "certificate_presented", "certificate_accepted", "assertion_issued"]


def test_head_on_the_try_again_link_leaves_the_pending_login(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                             users: Path) -> None:
    """RFC 9110 §9.3.2: HEAD is safe. A link checker or proxy sending HEAD must not use the link up."""
    browser.certificate_pem = None
    response, request_id = sso(browser, craft)
    _, retry = error_page(choose(browser, response))
    assert retry is not None
    head = browser.client.head(retry, environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert head.status_code == 405
    assert head.headers["Allow"] == "GET"
    browser.certificate_pem = (users / "anna.pem").read_text()
    sp_accepts(sp, posted_response(browser.get(retry)).fields["SAMLResponse"], request_id)


def test_head_on_the_discovery_page_writes_no_audit_record(browser: Browser, config_dir: Path) -> None:
    head = browser.client.head("/discovery?login=nosuchlogin", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert head.status_code == 405
    assert not [e for e in audit_lines(config_dir) if e["event"] == "saml_request_rejected"]


def test_head_on_the_discovery_page_names_the_choice_as_allowed(browser: Browser) -> None:
    """RFC 9110 §15.5.6: a 405 names every method the resource supports; /discovery also takes the choice (POST),
    as the 405 to another method says."""
    head = browser.client.head("/discovery?login=nosuchlogin", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    put = browser.client.put("/discovery", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert head.status_code == put.status_code == 405
    assert head.headers["Allow"] == "GET, POST"
    assert {m.strip() for m in put.headers["Allow"].split(",")} - {"OPTIONS"} == {"GET", "POST"}


def test_head_on_the_sso_endpoint_logs_nobody_in(browser: Browser, craft: AuthnRequests, config_dir: Path) -> None:
    url = craft.redirect(craft.build())
    head = browser.client.head(url.removeprefix("https://localhost:8443"), environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert head.status_code == 405
    assert head.headers["Allow"] == "GET, POST"
    assert not [e for e in audit_lines(config_dir) if e["event"] in ("login_started", "assertion_issued")]


@pytest.mark.parametrize("path", [
    pytest.param("/saml/idp/sso", id="sso"),
    pytest.param("/saml/idp/slo", id="idp-slo"),
    pytest.param("/saml/sp/slo", id="sp-slo"),
    pytest.param("/saml/idp/login/abc", id="try-again"),
    pytest.param("/discovery", id="discovery"),
    pytest.param("/diagnose", id="diagnose"),
    pytest.param("/saml/idp/diagnose", id="diagnose-below-saml"),
])
@pytest.mark.parametrize("method", ["OPTIONS", "PUT"])
def test_endpoints_that_refuse_head_do_not_name_it_as_allowed(browser: Browser, path: str, method: str) -> None:
    """RFC 9110 §10.2.1: Allow lists the methods the resource supports; HEAD is refused where GET has effects
    (above), so neither the answer to OPTIONS nor a 405 names it."""
    response = browser.client.open(path, method=method, environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert response.status_code == (200 if method == "OPTIONS" else 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "HEAD" not in allowed
    assert "GET" in allowed


@pytest.mark.parametrize("path", ["/saml/idp/sso", "/saml/idp/slo", "/saml/sp/slo", "/saml/idp/login/abc",
                                  "/discovery", "/diagnose", "/saml/idp/diagnose"])
def test_head_where_it_is_refused_carries_the_reason(browser: Browser, path: str) -> None:
    """README, Reason codes: every refusal names its code in X-Broker-Reason, as a 405 for another method does."""
    head = browser.client.head(path, environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert (head.status_code, head.headers.get("X-Broker-Reason")) == (405, "method_not_allowed")


@pytest.mark.parametrize("method", ["OPTIONS", "PUT"])
def test_endpoints_that_answer_head_still_name_it(browser: Browser, method: str) -> None:
    response = browser.client.open("/saml/idp/metadata", method=method)
    assert "HEAD" in {m.strip() for m in response.headers["Allow"].split(",")}


def test_unknown_login_id_is_login_unknown(browser: Browser) -> None:
    assert_refused(browser.get("/saml/idp/login/not-a-pending-login"), "login_unknown")


# --- a session record this release cannot read ---------------------------------------------------------------


def _dated_without_offset(stored: bytes) -> bytes:
    record = json.loads(stored)
    return json.dumps({**record, "expires_at": record["expires_at"].split("+")[0]}).encode()


@pytest.mark.parametrize("stored", [
    b"{not json",
    b'{"identity": {"municipality_id": "kommun-a"}}',
    b"[]",
    _dated_without_offset,
], ids=["damaged", "another-releases-form", "not-an-object", "instant-without-utc-offset"])
def test_an_unreadable_session_is_a_fresh_login_not_an_error(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                             store: RedisStore, config_dir: Path,
                                                             stored: Any) -> None:
    """A record another release wrote during a rolling upgrade (or a damaged one) is no session: the user logs in
    again with the card, audited, and the record stays for the release that can read it."""
    first, _ = sso(browser, craft)
    token = cookie_value(session_cookie(first) or "")
    key = "session:" + SessionManager.ref(token)
    if callable(stored):  # a change to the record the login stored
        stored = stored(store.get(key))
    store.put(key, stored, 600)

    response, request_id = sso(browser, craft)

    sp_accepts(sp, posted_response(response).fields["SAMLResponse"], request_id)
    assert session_cookie(response) is not None  # a new session
    assert events_of(config_dir, correlation_of(config_dir, request_id)) == [
        "login_started", "session_unreadable", "certificate_presented", "certificate_accepted", "assertion_issued"]
    assert store.get(key) == stored


def test_without_a_certificate_an_unreadable_session_asks_for_the_municipality(
        browser: Browser, craft: AuthnRequests, store: RedisStore) -> None:
    first, _ = sso(browser, craft)
    store.put("session:" + SessionManager.ref(cookie_value(session_cookie(first) or "")), b"\xff\xfe", 600)
    browser.certificate_pem = None

    response, _ = sso(browser, craft)

    assert_refused(choose(browser, response), "certificate_missing")  # no session answers; no error page
