"""Hardening of the web layer, through the app with real pysaml2 peers and real Redis: the security headers of every
kind of response, the form token of the discovery choice, the request size limits, and the flags of every cookie
the broker sets during a whole login and logout. (Failed-login limits: test_login_rate_limit.py.)"""

from __future__ import annotations

import base64
import io
import re
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import yaml
from flask import Flask, make_response
from gunicorn.http.errors import InvalidChunkSize, NoMoreData
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.config.loader import load_settings
from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from broker.web.csrf import COOKIE as FORM_TOKEN_COOKIE
from broker.web.csrf import DISCOVERY, FormTokens
from broker.web.csrf import FIELD as FORM_TOKEN
from broker.web.limits import MAX_FORM_PARTS, MAX_HEADER_BYTES, MAX_QUERY_BYTES
from broker.web.pages import security_headers
from tests.factories.authnrequests import assert_refused, error_page, open_browser
from tests.factories.idp import KARIN, back_to_broker, discovery_form, discovery_login_id, to_idp
from tests.factories.saml import BASE_URL, Browser, forms, saml_response_form
from tests.flows.conftest import audit_lines

ONE_YEAR = 365 * 86400
OTHER_IDP_SSO = "https://idp.kommun-c.example/sso"

# --- reading responses ----------------------------------------------------------------------------------------


def csp(response: TestResponse) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    directives = [d.strip() for d in policy.split(";") if d.strip()]
    return {name: value for name, _, value in (d.partition(" ") for d in directives)}


class _Inline(HTMLParser):
    """Inline script or style in a page: what a CSP without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self._tag = tag
        if tag == "script" and not a.get("src"):
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{name}= on <{tag}>" for name in a if name == "style" or name.startswith("on")]
        if tag == "a" and (a.get("href") or "").lower().startswith("javascript:"):
            self.found.append("javascript: link")

    def handle_data(self, data: str) -> None:
        if self._tag == "script" and data.strip():
            self.found.append("script content")


def inline_code(response: TestResponse) -> list[str]:
    parser = _Inline()
    parser.feed(response.get_data(as_text=True))
    return parser.found


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def no_certificate(browser: Browser) -> Browser:
    browser.certificate_pem = None
    return browser


def discovery_page(browser: Browser, sp: DemoSp) -> TestResponse:
    page = no_certificate(browser).get(sp.login_url())
    discovery_login_id(page)
    return page


def as_user(browser: Browser, users: Path, name: str) -> Browser:
    browser.certificate_pem = (users / f"{name}.pem").read_text()
    return browser


# --- 1. security headers on every kind of response ---------------------------------------------------------------

Request = Callable[[Browser, DemoSp, Path], TestResponse]


def _saml_post_page(browser: Browser, sp: DemoSp, users: Path) -> TestResponse:
    response = as_user(browser, users, "anna").get(sp.login_url())
    saml_response_form(response)
    return response


def _oversized_body(browser: Browser, sp: DemoSp, users: Path) -> TestResponse:
    limit = browser.client.application.config["MAX_CONTENT_LENGTH"]
    return browser.post("/saml/idp/sso", {"SAMLRequest": "A" * (limit + 1)})


NO_STORE = "no-cache, no-store"  # SAML Bindings §3.4.5.1, §3.5.5.1
HEADER_CASES = [
    pytest.param(lambda b, sp, u: b.get("/"), 200, NO_STORE, id="landing-page"),
    pytest.param(_saml_post_page, 200, NO_STORE, id="saml-post-page"),
    pytest.param(lambda b, sp, u: discovery_page(b, sp), 200, NO_STORE, id="discovery-page"),
    pytest.param(lambda b, sp, u: b.get("/saml/idp/sso"), 400, NO_STORE, id="error-page"),
    pytest.param(lambda b, sp, u: as_user(b, u, "david").get(sp.login_url()), 403, NO_STORE,
                 id="error-page-with-form-to-the-sp"),
    pytest.param(lambda b, sp, u: no_certificate(b).get(sp.login_url() + "&municipality=kommun-c"), 303, NO_STORE,
                 id="redirect-to-the-idp"),
    pytest.param(lambda b, sp, u: as_user(b, u, "anna").get("/diagnose"), 200, NO_STORE, id="diagnose"),
    pytest.param(lambda b, sp, u: as_user(b, u, "anna").get("/diagnose?format=json"), 200, NO_STORE,
                 id="diagnose-json"),
    pytest.param(lambda b, sp, u: b.get("/healthz"), 200, NO_STORE, id="healthz"),
    pytest.param(lambda b, sp, u: b.get("/saml/idp/metadata"), 200, "public, max-age=3600", id="idp-metadata"),
    # static files: revalidated (ETag), never personal
    pytest.param(lambda b, sp, u: b.get("/static/autosubmit.js"), 200, "no-cache", id="static-script"),
    pytest.param(lambda b, sp, u: b.get("/static/submitonce.js"), 200, "no-cache", id="static-script-submit-once"),
    pytest.param(lambda b, sp, u: b.get("/static/broker.css"), 200, "no-cache", id="static-stylesheet"),
    pytest.param(lambda b, sp, u: b.get("/no/such/page"), 404, NO_STORE, id="not-found"),
    pytest.param(lambda b, sp, u: b.client.put("/discovery"), 405, NO_STORE, id="method-not-allowed"),
    pytest.param(_oversized_body, 413, NO_STORE, id="body-too-large"),
    pytest.param(lambda b, sp, u: b.get("/?q=" + "a" * MAX_QUERY_BYTES), 414, NO_STORE, id="query-too-long"),
    pytest.param(lambda b, sp, u: b.client.get("/", headers={"X-Padding": "a" * MAX_HEADER_BYTES}), 431,
                 NO_STORE, id="headers-too-large"),
]


@pytest.mark.parametrize(("request_page", "status", "cache"), HEADER_CASES)
def test_every_kind_of_response_carries_the_security_headers(browser: Browser, sp: DemoSp, users: Path,
                                                             request_page: Request, status: int,
                                                             cache: str | None) -> None:
    response = request_page(browser, sp, users)
    response.close()  # a static file is streamed from disk
    assert response.status_code == status, response.headers.get("X-Broker-Reason")

    policy = csp(response)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "'self'" in policy["form-action"].split()
    sources = {source for value in policy.values() for source in value.split()}
    assert not sources & {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:", "http:", "https:"}
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    hsts = response.headers["Strict-Transport-Security"]
    assert int(re.fullmatch(r"max-age=(\d+).*", hsts).group(1)) >= ONE_YEAR  # type: ignore[union-attr]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers.get("Cache-Control") == cache
    assert "X-Form-Target" not in response.headers
    if response.mimetype == "text/html":
        assert inline_code(response) == []


def test_the_post_page_auto_submits_with_the_external_script_only(browser: Browser, sp: DemoSp,
                                                                   users: Path) -> None:
    page = _saml_post_page(browser, sp, users)
    scripts = re.findall(r"<script[^>]*>", page.get_data(as_text=True))
    # in document order, deferred: submitonce.js is listening when autosubmit.js submits the form
    assert scripts == ['<script src="/static/submitonce.js" defer>', '<script src="/static/autosubmit.js" defer>']
    assert csp(page)["form-action"].split() == ["'self'", origin(saml_response_form(page)[0])]


@pytest.mark.parametrize("request_page", [
    pytest.param(lambda b, sp, u: discovery_page(b, sp), id="discovery-choice"),
    pytest.param(_saml_post_page, id="saml-post"),
    pytest.param(lambda b, sp, u: as_user(b, u, "david").get(sp.login_url()), id="error-page-with-form-to-the-sp"),
])
def test_every_form_that_posts_is_sent_once(browser: Browser, sp: DemoSp, users: Path,
                                            request_page: Request) -> None:
    """Each carries a one-time message (the pending login's choice, a SAML Response): static/submitonce.js,
    loaded by every page, holds back a second submission (a double click, a click during the auto-submit)."""
    page = request_page(browser, sp, users).get_data(as_text=True)
    forms = re.findall(r"<form [^>]*>", page)
    posting = [f for f in forms if 'method="post"' in f]
    assert len(posting) == 1, forms
    assert posting[0].endswith(" data-submit-once>")
    assert '<script src="/static/submitonce.js" defer></script>' in page.split("</head>")[0]


def test_a_page_with_the_assertion_is_never_stored(browser: Browser, sp: DemoSp, users: Path) -> None:
    page = _saml_post_page(browser, sp, users)
    assert "SAMLResponse" in page.get_data(as_text=True)
    # SAML Bindings §3.5.5.1: "no-cache, no-store", and Pragma for HTTP/1.0 caches
    assert page.headers["Cache-Control"] == "no-cache, no-store"
    assert page.headers["Pragma"] == "no-cache"


@pytest.fixture
def idp_elsewhere(config_dir: Path) -> Path:
    """Kommun C's IdP on an origin of its own (its SSO endpoints in the metadata file moved)."""
    metadata = config_dir / "metadata" / "kommun-c-idp.xml"
    text = metadata.read_text()
    assert text.count(BASE_URL + "/demo-idp/sso") == 2
    metadata.write_text(text.replace(BASE_URL + "/demo-idp/sso", OTHER_IDP_SSO))
    return config_dir


def test_the_discovery_page_allows_the_redirect_its_choice_leads_to(idp_elsewhere: Path, browser: Browser,
                                                                     sp: DemoSp) -> None:
    """Chrome and Safari apply form-action to the redirects after a form post: the discovery page must name the
    municipal IdPs its choice may redirect to, or the browser stops at the broker."""
    page = discovery_page(browser, sp)
    allowed = csp(page)["form-action"].split()
    assert allowed == ["'self'", origin(OTHER_IDP_SSO)]

    chosen = browser.post("/discovery", {**discovery_form(page), "municipality": "kommun-c"})
    assert chosen.status_code == 303
    assert chosen.headers["Location"].startswith(OTHER_IDP_SSO + "?")
    assert origin(chosen.headers["Location"]) in allowed


@pytest.mark.parametrize("target", [
    pytest.param("https://sp.example; script-src *", id="directive-injection"),
    pytest.param("https://user:pw@sp.example", id="userinfo"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("https://sp.example/path", id="path"),
])
def test_a_form_target_that_is_not_a_plain_origin_is_left_out(app: Flask, target: str) -> None:
    with app.test_request_context("/saml/idp/sso"):
        response = make_response("page")
        response.headers["X-Form-Target"] = f"https://good.example {target}"
        security_headers(response)
    policy = response.headers["Content-Security-Policy"]
    assert "form-action 'self' https://good.example;" in policy
    assert "script-src 'self';" in policy
    assert "*" not in policy


# --- 2. the discovery choice's form token --------------------------------------------------------------------------


def _without_token(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k != FORM_TOKEN}


def _empty_token(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
    return {**fields, FORM_TOKEN: ""}


def _wrong_token(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
    return {**fields, FORM_TOKEN: "A" * len(fields[FORM_TOKEN])}


def _another_browsers_token(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
    """A genuine token, for another browser's secret (the attacker's own, say)."""
    tokens = browser.client.application.extensions["broker"].form_tokens
    return {**fields, FORM_TOKEN: tokens.token(FormTokens.new_secret(), DISCOVERY)}


def _token_for_another_form(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
    cookie = browser.client.get_cookie(FORM_TOKEN_COOKIE)
    assert cookie is not None
    tokens = browser.client.application.extensions["broker"].form_tokens
    return {**fields, FORM_TOKEN: tokens.token(cookie.value, "another-form")}


def _no_cookie(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
    browser.client.delete_cookie(FORM_TOKEN_COOKIE)
    return fields


def _planted_cookie(browser: Browser, fields: dict[str, str]) -> dict[str, str]:
    """An attacker's own secret in the cookie (only possible without the __Host- prefix's protection)."""
    browser.client.set_cookie(FORM_TOKEN_COOKIE, "C" * 43)
    return fields


@pytest.mark.parametrize(("forge", "detail"), [
    pytest.param(_without_token, "carried no", id="no-token"),
    pytest.param(_empty_token, "carried no", id="empty-token"),
    pytest.param(_wrong_token, "does not belong", id="wrong-token"),
    pytest.param(_another_browsers_token, "does not belong", id="another-browsers-token"),
    pytest.param(_token_for_another_form, "does not belong", id="token-for-another-form"),
    pytest.param(_no_cookie, "no usable", id="no-cookie"),
    pytest.param(_planted_cookie, "does not belong", id="planted-cookie"),
])
def test_a_choice_without_this_browsers_token_is_refused(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                         config_dir: Path,
                                                         forge: Callable[[Browser, dict[str, str]], dict[str, str]],
                                                         detail: str) -> None:
    """No Origin or Fetch Metadata headers (an older browser, a privacy tool): the token alone decides. The
    refusal is a page (403) and an audit event; nothing is remembered, and the pending login stays the user's."""
    page = discovery_page(browser, sp)
    login_id = discovery_login_id(page)
    fields = forge(browser, {**discovery_form(page), "municipality": "kommun-c", "remember": "1"})

    refused = browser.post("/discovery", fields)

    assert_refused(refused, "csrf_token_invalid")
    assert refused.status_code == 403
    assert not [c for c in refused.headers.getlist("Set-Cookie")
                if c.startswith(("__Host-broker_municipality=", "__Host-broker_binding=", "__Host-broker_session="))]
    events = [e for e in audit_lines(config_dir) if e["event"] == "login_refused"]
    assert [(e["reason"], e["client"]) for e in events] == [("csrf_token_invalid", browser.remote_addr)]
    assert detail in str(events[0]["detail"])

    again = browser.get(f"/discovery?login={login_id}")  # the page again: a valid token for this browser
    to_idp(browser, idp, again)


def test_a_cross_site_post_is_refused_before_its_token_is_looked_at(browser: Browser, sp: DemoSp) -> None:
    page = discovery_page(browser, sp)
    browser.headers = {"Origin": "https://evil.example"}
    assert_refused(browser.post("/discovery", {**discovery_form(page), "municipality": "kommun-c"}),
                   "cross_site_request")


def test_the_token_is_per_browser_and_stays_for_the_browsers_pages(app: Flask, browser: Browser,
                                                                   sp: DemoSp) -> None:
    first = discovery_page(browser, sp)
    second = discovery_page(browser, sp)  # another tab, another login
    assert [c for c in first.headers.getlist("Set-Cookie") if c.startswith(FORM_TOKEN_COOKIE + "=")]
    assert not [c for c in second.headers.getlist("Set-Cookie") if c.startswith(FORM_TOKEN_COOKIE + "=")]
    assert discovery_form(first)[FORM_TOKEN] == discovery_form(second)[FORM_TOKEN]

    elsewhere = discovery_page(open_browser(app, None), sp)
    assert discovery_form(elsewhere)[FORM_TOKEN] != discovery_form(first)[FORM_TOKEN]
    # the first tab's choice still goes through after the second page
    assert browser.post("/discovery", {**discovery_form(first), "municipality": "kommun-c"}).status_code == 303


def test_the_saml_forms_toward_the_sp_carry_no_token(browser: Browser, sp: DemoSp, users: Path) -> None:
    """The HTTP-POST forms toward SPs (and the error page's way back) post to the SP's endpoint, in production on
    another site: their SAML messages are signed and answer one request; a form token would mean nothing to the
    receiver (docs/security.md)."""
    for response in (_saml_post_page(browser, sp, users), as_user(browser, users, "david").get(sp.login_url())):
        (action, fields), = [(a, f) for a, f in forms(response) if "SAMLResponse" in f]
        assert origin(action) == origin(sp.settings.base_url)
        assert FORM_TOKEN not in fields


# --- 3. request size limits --------------------------------------------------------------------------------------


def test_the_body_limit_is_set_from_the_largest_message(app: Flask) -> None:
    settings = app.extensions["broker"].settings.broker
    largest = max(settings.idp.max_message_bytes, settings.sp.max_message_bytes)
    assert app.config["MAX_CONTENT_LENGTH"] == 2 * largest + 16384
    assert app.config["MAX_FORM_MEMORY_SIZE"] == app.config["MAX_CONTENT_LENGTH"]
    assert app.config["MAX_FORM_PARTS"] == MAX_FORM_PARTS


@pytest.mark.parametrize(("send", "reason"), [
    pytest.param(_oversized_body, "request_too_large", id="body"),
    pytest.param(lambda b, sp, u: b.client.post("/discovery", data={f"f{n}": "x" for n in range(MAX_FORM_PARTS + 1)},
                                                content_type="multipart/form-data"),
                 "request_too_large", id="multipart-parts"),
    pytest.param(lambda b, sp, u: b.get("/saml/idp/sso?SAMLRequest=" + "A" * MAX_QUERY_BYTES),
                 "request_uri_too_long", id="query"),
    pytest.param(lambda b, sp, u: b.client.get("/", headers={"X-Padding": "a" * MAX_HEADER_BYTES}),
                 "request_headers_too_large", id="headers"),
])
def test_requests_past_the_limits_get_the_page(browser: Browser, sp: DemoSp, users: Path, send: Request,
                                               reason: str) -> None:
    response = send(browser, sp, users)
    assert_refused(response, reason)
    body = response.get_data(as_text=True)
    assert "AAAAAAAAAAAAAAAA" not in body
    assert "aaaaaaaaaaaaaaaa" not in body


@pytest.mark.parametrize(("send", "reason"), [
    pytest.param(_oversized_body, "request_too_large", id="body-at-sso"),
    pytest.param(lambda b, sp, u: b.post("/saml/sp/acs", {"SAMLResponse": "A" * (
        b.client.application.config["MAX_CONTENT_LENGTH"] + 1)}), "request_too_large", id="body-at-acs"),
    pytest.param(lambda b, sp, u: b.get("/saml/idp/sso?SAMLRequest=" + "A" * MAX_QUERY_BYTES),
                 "request_uri_too_long", id="query-at-sso"),
    pytest.param(lambda b, sp, u: b.client.get("/saml/idp/slo?SAMLRequest=x",
                                               headers={"X-Padding": "a" * MAX_HEADER_BYTES}),
                 "request_headers_too_large", id="headers-at-slo"),
    pytest.param(lambda b, sp, u: b.client.get("/saml/idp/login/abc", environ_overrides={"QUERY_STRING": "lang=\xff"}),
                 "request_malformed", id="query-not-utf-8-at-resume"),
])
def test_a_login_request_refused_as_such_is_audited_under_its_reference(
        browser: Browser, sp: DemoSp, users: Path, config_dir: Path, send: Request, reason: str) -> None:
    """The reference a user reads out to support leads to the refusal: the page's reference is the event's."""
    response = send(browser, sp, users)
    assert_refused(response, reason)
    reference, _ = error_page(response)
    refused, = [e for e in audit_lines(config_dir) if e.get("correlation_id") == reference]
    assert (refused["event"], refused["reason"]) == ("login_refused", reason)
    assert "abc" not in str(refused["detail"])  # the route, not a pending login's id


def test_a_request_refused_as_such_elsewhere_is_not_audited(browser: Browser, config_dir: Path) -> None:
    """Not a login: a health check or landing page past the limits leaves the audit trail alone."""
    assert_refused(browser.get("/?q=" + "a" * MAX_QUERY_BYTES), "request_uri_too_long")
    assert [e for e in audit_lines(config_dir) if e["event"] == "login_refused"] == []


def _streamed(browser: Browser, path: str, body: bytes) -> TestResponse:
    """``body`` sent as a chunked request's (no Content-Length), as the server hands it on: ended by the server."""
    return browser.client.post(path, environ_overrides={
        "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "REMOTE_ADDR": browser.remote_addr})


@pytest.mark.parametrize("path", [pytest.param("/saml/idp/sso", id="sso"), pytest.param("/saml/sp/acs", id="acs")])
def test_a_streamed_body_past_the_limit_is_refused_as_too_large(browser: Browser, config_dir: Path,
                                                                path: str) -> None:
    """Without Content-Length, werkzeug read the body up to the limit and dropped the rest: the message arrived cut
    off and was refused as a broken SAML message, or as none at all."""
    limit = browser.client.application.config["MAX_CONTENT_LENGTH"]
    response = _streamed(browser, path, b"RelayState=x&SAMLResponse=" + b"A" * limit)
    assert_refused(response, "request_too_large")
    reference, _ = error_page(response)
    refused, = [e for e in audit_lines(config_dir) if e.get("correlation_id") == reference]
    assert (refused["event"], refused["reason"]) == ("login_refused", "request_too_large")


class _BrokenChunks(io.RawIOBase):
    """A chunked body as gunicorn hands it on when the client breaks the chunked coding or goes away mid-body: its
    reader raises (gunicorn.http.errors.InvalidChunkSize, NoMoreData)."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        raise self._error


@pytest.mark.parametrize("error", [
    pytest.param(InvalidChunkSize(b"zz"), id="invalid-chunk-size"),
    pytest.param(NoMoreData(b""), id="client-gone-mid-body"),
])
@pytest.mark.parametrize("path", [pytest.param("/saml/idp/sso", id="sso"), pytest.param("/saml/sp/acs", id="acs")])
def test_a_streamed_body_that_breaks_off_is_the_clients_fault(browser: Browser, config_dir: Path, path: str,
                                                              error: Exception) -> None:
    """A body in a broken chunked coding, or one the client stopped sending, is a malformed request (400); read
    ahead of the form, the reader's error was the broker's own fault (500 internal_error), and the error page,
    looking for the form's lang, read the broken stream again."""
    response = browser.client.post(path, environ_overrides={
        "wsgi.input": _BrokenChunks(error), "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "REMOTE_ADDR": browser.remote_addr})
    assert_refused(response, "request_malformed")
    reference, _ = error_page(response)
    refused, = [e for e in audit_lines(config_dir) if e.get("correlation_id") == reference]
    assert (refused["event"], refused["reason"]) == ("login_refused", "request_malformed")


def test_a_streamed_body_within_the_limit_is_read_whole(browser: Browser, sp: DemoSp) -> None:
    page = discovery_page(browser, sp)
    choice = {**discovery_form(page), "municipality": "kommun-c"}
    response = _streamed(browser, "/discovery", urlencode(choice).encode())
    assert response.status_code == 303


def test_the_query_limit_is_inclusive(browser: Browser) -> None:
    at_limit = "/saml/idp/sso?SAMLRequest=" + "A" * (MAX_QUERY_BYTES - len("SAMLRequest="))
    assert browser.get(at_limit).headers["X-Broker-Reason"] != "request_uri_too_long"
    assert_refused(browser.get(at_limit + "A"), "request_uri_too_long")


def test_the_certificate_header_has_its_own_limit_and_does_not_count(browser: Browser) -> None:
    """From an untrusted address the header is ignored (and audited); either way, its size counts against
    client_certificate.proxy.max_bytes, not against the header limit."""
    browser.headers = {"X-SSL-Client-Cert": "A" * (MAX_HEADER_BYTES + 1)}
    assert browser.get("/").status_code == 200


def test_a_certificate_header_far_past_its_own_limit_counts_like_any_header(browser: Browser) -> None:
    """Past a little over max_bytes the certificate header is no certificate (its own check refuses it, or,
    from an untrusted peer, it is ignored): the rest counts, so a client cannot make the broker take megabytes
    of headers under that name (repeated copies arrive joined)."""
    browser.headers = {"X-SSL-Client-Cert": "A" * (3 * MAX_HEADER_BYTES)}
    assert_refused(browser.get("/"), "request_headers_too_large")


# --- 5. the flags of every cookie, through a whole login and logout ----------------------------------------------

# name -> (SameSite, Path): why each, in broker.web.respond, broker.web.pages and docs/security.md
COOKIE_RULES = {
    "__Host-broker_session": ("None", "/"),        # SPs' AuthnRequests and IdPs' Responses arrive by cross-site POST
    "__Host-broker_binding": ("None", "/"),        # the IdP's cross-site POST to /saml/sp/acs must carry it
    "__Host-broker_municipality": ("None", "/"),   # HTTP-POST SPs' AuthnRequests arrive by cross-site POST
    "broker_lang": ("None", "/"),                 # pages answering cross-site POSTs keep the chosen language
    FORM_TOKEN_COOKIE: ("Lax", "/"),
}


class RecordingBrowser(Browser):
    """A browser that keeps every Set-Cookie header it receives."""

    seen: list[str]

    def get(self, url: str) -> TestResponse:
        return self._record(super().get(url))

    def post(self, url: str, data: dict[str, str]) -> TestResponse:
        return self._record(super().post(url, data))

    def _record(self, response: TestResponse) -> TestResponse:
        self.seen = [*getattr(self, "seen", []), *response.headers.getlist("Set-Cookie")]
        return response


def test_every_cookie_of_a_login_and_logout_has_its_flags(app: Flask, sp: DemoSp, idp: DemoIdp) -> None:
    from tests.flows.test_federation_logout import SP1_SLO, hop, idp_answers, name_id_at, sp_logout_url

    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        browser = RecordingBrowser(client)
        page = browser.get(sp.login_url())
        page = browser.get(f"/discovery?login={discovery_login_id(page)}&lang=en")
        at = browser.post("/discovery", {**discovery_form(page), "municipality": "kommun-c", "remember": "1"})
        request, relay_state = idp.parse_redirect(at.headers["Location"])
        answer = back_to_broker(browser, idp.respond(request, relay_state, KARIN))
        sp.accept(saml_response_form(answer)[1]["SAMLResponse"])
        to_idp_logout = browser.get(sp_logout_url(sp, name_id_at(sp)))
        assert to_idp_logout.status_code == 303
        hop(browser.get(idp_answers(idp, to_idp_logout.headers["Location"])), SP1_SLO, "SAMLResponse")

    names = set()
    for header in browser.seen:
        first, *attributes = [part.strip() for part in header.split(";")]
        name = first.split("=", 1)[0]
        names.add(name)
        flags = {a.split("=", 1)[0].lower(): a.partition("=")[2] for a in attributes}
        samesite, path = COOKIE_RULES[name]
        assert {"secure", "httponly"} <= set(flags), header
        assert flags.get("samesite") == samesite, header
        assert flags.get("path") == path, header
        assert "domain" not in flags, header  # host-only: no sibling subdomain receives it
        if name != "broker_lang":
            # whose login or choice it is: only this host may set it (RFC 6265bis §4.1.3.2), so that no sibling
            # host plants its own binding or session in a victim's browser (login CSRF; docs/security.md)
            assert name.startswith("__Host-"), header
    assert names == set(COOKIE_RULES), "a cookie set during the walk has no rule here, or one was not set"
    deleted = [h for h in browser.seen if h.startswith("__Host-broker_session=;")]
    assert deleted, "the logout did not clear the session cookie"


# --- a broker without an SP side (no municipality logs in through its own IdP) -----------------------------------


def test_a_broker_without_an_sp_side_has_no_sp_endpoints(config_dir: Path, store: RedisStore) -> None:
    """No ``sp`` section: the SP side's metadata, ACS and SLO are not found (a POST to the ACS, which any page can
    make a browser send, was answered with an error page whose reference led to nothing in the audit trail)."""
    broker_yaml = config_dir / "broker.yaml"
    data = yaml.safe_load(broker_yaml.read_text(encoding="utf-8"))
    del data["sp"]
    broker_yaml.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    (config_dir / "municipalities" / "kommun-c.yaml").unlink()
    sp_yaml = config_dir / "service-providers" / "demo-sp.yaml"
    sp_yaml.write_text(sp_yaml.read_text(encoding="utf-8").replace(", kommun-c]", "]"), encoding="utf-8")
    browser = open_browser(create_app(load_settings(config_dir), store=store, instance_id="test"), None)
    response = base64.b64encode(b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" '
                                b'Version="2.0"/>').decode()

    assert browser.get("/saml/sp/metadata").status_code == 404
    assert browser.post("/saml/sp/acs", {"SAMLResponse": response}).status_code == 404
    assert browser.get("/saml/sp/slo").status_code == 404
    # refused at login endpoints, so audited under the not-found page's reference (broker.web.app)
    assert [(e["event"], e["reason"], str(e["detail"]).split(":")[0]) for e in audit_lines(config_dir)
            if e["event"] != "configuration_loaded" and not str(e["event"]).startswith("audit_")] == [
        ("login_refused", "page_not_found", "POST /saml/sp/acs"),
        ("login_refused", "page_not_found", "GET /saml/sp/slo")]


# --- paths the router would answer with a redirect of its own -------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    pytest.param("POST", "/saml/sp//acs", id="doubled-slash-post-acs"),
    pytest.param("GET", "/saml/idp//sso?SAMLRequest=x", id="doubled-slash-get-sso"),
    pytest.param("GET", "//saml/idp/sso?SAMLRequest=x", id="leading-doubled-slash"),
    pytest.param("GET", "/static//broker.css", id="doubled-slash-static"),
])
def test_a_doubled_slash_is_not_found_never_a_redirect_to_the_host_header(browser: Browser, method: str,
                                                                       path: str) -> None:
    """Werkzeug's 308 to ``http://<Host>/...`` sent a POSTed SAML message to whatever Host the request named."""
    response = browser.client.open(path, method=method, data={"SAMLResponse": "x"} if method == "POST" else None,
                                   headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert_refused(response, "page_not_found")


def test_a_missing_trailing_slash_is_no_redirect(browser: Browser) -> None:
    response = browser.client.get("/saml/idp/sso/", headers={"Host": "evil.example"})
    assert "Location" not in response.headers
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "path", "rule"), [
    pytest.param("GET", "/saml/sp/acs?SAMLResponse=x", "/saml/sp/acs", id="response-by-redirect-at-the-acs"),
    pytest.param("PUT", "/saml/idp/sso", "/saml/idp/sso", id="put-at-sso"),
    pytest.param("DELETE", "/saml/idp/login/abc", "/saml/idp/login/<login_id>", id="delete-at-resume"),
])
def test_a_method_the_login_endpoint_does_not_take_is_audited_under_its_reference(
        browser: Browser, config_dir: Path, method: str, path: str, rule: str) -> None:
    """A municipal IdP sending its Response to the ACS by HTTP-Redirect: the reference the user reads out must
    lead the operator to the refusal."""
    response = browser.client.open(path, method=method)
    assert response.status_code == 405
    reference, _ = error_page(response)
    refused, = [e for e in audit_lines(config_dir) if e.get("correlation_id") == reference]
    assert (refused["event"], refused["reason"]) == ("login_refused", "method_not_allowed")
    assert str(refused["detail"]).startswith(f"{method} {rule}: ")


def test_a_method_not_allowed_elsewhere_is_not_audited(browser: Browser, config_dir: Path) -> None:
    assert browser.client.open("/healthz", method="POST").status_code == 405
    assert [e for e in audit_lines(config_dir) if e["event"] == "login_refused"] == []


# --- a POST whose body is no form ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "content_type"), [
    pytest.param("/saml/idp/sso", "text/plain", id="text-at-sso"),
    pytest.param("/saml/idp/sso", "application/json", id="json-at-sso"),
    pytest.param("/saml/sp/acs", "application/xml", id="xml-at-acs"),
    pytest.param("/saml/idp/slo", None, id="no-content-type-at-slo"),
    pytest.param("/saml/sp/slo", "text/plain; charset=utf-8", id="text-at-sp-slo"),
])
def test_a_saml_post_whose_body_is_no_form_is_refused_as_such(browser: Browser, config_dir: Path, path: str,
                                                              content_type: str | None) -> None:
    """SAML Bindings §3.5.4: the HTTP-POST binding's message is a form field. Another body was read as an empty
    form, and the user was told the service had sent no SAML message ("start from the service")."""
    body = b"SAMLRequest=PHNhbWxwOkF1dGhuUmVxdWVzdC8%2B"
    response = browser.client.post(path, data=body, headers={"Content-Type": content_type} if content_type else {},
                                   environ_base={"REMOTE_ADDR": browser.remote_addr})
    assert_refused(response, "request_media_type_unsupported")
    assert response.headers["Accept-Post"] == "application/x-www-form-urlencoded, multipart/form-data"
    reference, _ = error_page(response)
    refused, = [e for e in audit_lines(config_dir) if e.get("correlation_id") == reference]
    assert (refused["event"], refused["reason"]) == ("login_refused", "request_media_type_unsupported")


@pytest.mark.parametrize("coding", [pytest.param("gzip", id="gzip"), pytest.param("deflate", id="deflate"),
                                    pytest.param("br", id="brotli")])
def test_a_saml_form_in_a_content_coding_is_refused_as_such(browser: Browser, sp: DemoSp, coding: str) -> None:
    """RFC 9110 §12.5.3: the broker decodes no content coding; read as it came, a compressed form was refused as a
    SAML message it could not decode (saml_request_malformed), blaming the service."""
    body = zlib.compress(b"SAMLRequest=PHNhbWxwOkF1dGhuUmVxdWVzdC8%2B")
    response = browser.client.post("/saml/idp/sso", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": coding},
        environ_base={"REMOTE_ADDR": browser.remote_addr})
    assert_refused(response, "request_media_type_unsupported")
    assert response.headers["Accept-Encoding"] == "identity"


def test_a_form_in_the_identity_coding_is_read(browser: Browser, sp: DemoSp) -> None:
    page = discovery_page(browser, sp)
    response = browser.client.post("/discovery", data={**discovery_form(page), "municipality": "kommun-c"},
                                   headers={"Content-Encoding": "identity"},
                                   environ_base={"REMOTE_ADDR": browser.remote_addr})
    assert response.status_code == 303


def test_a_post_without_a_body_is_the_endpoints_to_explain(browser: Browser) -> None:
    assert_refused(browser.post_body("/saml/idp/sso", b"", content_type=""), "saml_request_missing")


def test_a_choice_whose_body_is_no_form_is_refused_and_loses_nothing(browser: Browser, sp: DemoSp) -> None:
    page = discovery_page(browser, sp)
    choice = {**discovery_form(page), "municipality": "kommun-c"}
    text = "&".join(f"{name}={value}" for name, value in choice.items()).encode()
    assert_refused(browser.post_body("/discovery", text, content_type="text/plain"), "request_media_type_unsupported")
    # the pending login is still there: the browser's form (multipart is one too) goes through
    chosen = browser.client.post("/discovery", data=choice, content_type="multipart/form-data",
                                 environ_base={"REMOTE_ADDR": browser.remote_addr})
    assert chosen.status_code == 303


# --- the discovery page's own origin, however base_url is written ----------------------------------------------------


@pytest.mark.parametrize(("base_url", "origin", "cross_site"), [
    pytest.param("https://idp.region.example:443", "https://idp.region.example", False, id="explicit-default-port"),
    pytest.param("https://IdP.Region.example", "https://idp.region.example", False, id="host-in-upper-case"),
    pytest.param("https://idp.region.example/", "https://IDP.region.example:443", False, id="origin-odd-form"),
    pytest.param("https://idp.region.example:8443", "https://idp.region.example", True, id="another-port"),
    pytest.param("https://idp.region.example", "http://idp.region.example", True, id="another-scheme"),
    pytest.param("https://idp.region.example", "https://idp.region.example.evil", True, id="another-host"),
    pytest.param("https://idp.region.example", "https://idp.region.example:99999", True, id="origin-bad-port"),
])
def test_the_origin_is_compared_as_an_origin(config_dir: Path, store: RedisStore, base_url: str, origin: str,
                                             cross_site: bool) -> None:
    """RFC 6454 §4-5: scheme, host (case-insensitive) and port (the scheme's default filled in); base_url as the
    loader accepts it. Compared as written, every choice on the discovery page was refused as cross-site."""
    from broker.web.sp import _cross_site

    broker_yaml = config_dir / "broker.yaml"
    data = yaml.safe_load(broker_yaml.read_text(encoding="utf-8"))
    data["idp"]["base_url"] = base_url
    broker_yaml.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    app = create_app(load_settings(config_dir), store=store, instance_id="test")
    with app.test_request_context("/discovery", method="POST", headers={"Origin": origin}):
        assert _cross_site() is cross_site


@pytest.mark.parametrize(("fetch_site", "cross_site"), [
    pytest.param("same-origin", False, id="same-origin"),
    pytest.param("same-site", True, id="same-site"),
    pytest.param("cross-site", True, id="cross-site"),
])
def test_the_browsers_fetch_metadata_decides_over_the_origin(app: Flask, fetch_site: str, cross_site: bool) -> None:
    from broker.web.sp import _cross_site

    with app.test_request_context("/discovery", method="POST",
                                  headers={"Origin": "https://elsewhere.example", "Sec-Fetch-Site": fetch_site}):
        assert _cross_site() is cross_site


# --- both languages where the page cannot link to the other -----------------------------------------------------


@pytest.mark.parametrize(("accept", "lang", "other", "heading"), [
    pytest.param("sv", "sv", "en", "In English", id="swedish-page"),
    pytest.param("en", "en", "sv", "På svenska", id="english-page"),
])
def test_an_error_page_answering_a_post_says_it_in_both_languages(browser: Browser, accept: str, lang: str,
                                                                  other: str, heading: str) -> None:
    """The ACS's refusal cannot be asked for again in the other language (no link): it says it in both."""
    page = browser.client.post("/saml/sp/acs", data={"SAMLResponse": "not base64!"},
                               headers={"Accept-Language": accept})
    text = page.get_data(as_text=True)
    reference, _ = error_page(page)
    assert f'<html lang="{lang}">' in text
    assert 'class="lang"' not in text  # no link that would re-send the POST
    section = text.split(f'<section class="other-language" lang="{other}"', 1)[1].split("</section>", 1)[0]
    assert heading in section
    assert reference in section


def test_an_error_page_answering_a_get_links_to_the_other_language_instead(browser: Browser) -> None:
    page = browser.client.get("/saml/idp/sso?SAMLRequest=x", headers={"Accept-Language": "sv"})
    text = page.get_data(as_text=True)
    assert 'class="lang"' in text
    assert "other-language" not in text
