"""The pages people see: language, plain-words errors with a reference ID, and strict headers.

The service provider here lives on its own origin (https://sp.example.org), so
that the Content-Security-Policy's form-action has to name it explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from flask import Flask, make_response
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.config.loader import load_settings
from broker.config.schema import LocalizedText
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from broker.errors import BrokerError
from broker.flow import PostToSp
from broker.flow.results import LogoutDone
from broker.reasons import REASONS
from broker.session.store import RedisStore
from broker.web.i18n import CATALOG, UI, explain
from broker.web.pages import (
    LANG_COOKIE,
    _render,
    error_page,
    hidden_inputs,
    logged_out_page,
    message_page,
    post_page,
    security_headers,
)
from tests.factories.municipality_choice import choose
from tests.factories.saml import BASE_URL, Browser, forms, saml_response_form, xmlsec_binary
from tests.flows.conftest import audit_lines

SP_BASE = "https://sp.example.org/demo-sp"
SP_ORIGIN = "https://sp.example.org"
REFID = re.compile(r'class="refid"[^>]*>([0-9A-F]{4}(?:-[0-9A-F]{4}){3})<')
STACK_TRACE = ("Traceback", 'File "', "line ", ".py")


@pytest.fixture
def app(config_dir: Path, demo_material: Any, redis_url: str, redis_prefix: str) -> Flask:
    settings = DemoSpSettings(base_url=SP_BASE, key_file=demo_material.root / "sp" / "sp.key",
                              cert_file=demo_material.root / "sp" / "sp.crt")
    (config_dir / "metadata" / "demo-sp.xml").write_bytes(sp_metadata(settings))
    sp_yaml = config_dir / "service-providers" / "demo-sp.yaml"
    data = yaml.safe_load(sp_yaml.read_text(encoding="utf-8"))
    data["entity_id"] = SP_BASE + "/metadata"
    sp_yaml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return create_app(load_settings(config_dir), store=RedisStore(redis_url, prefix=redis_prefix),
                      instance_id="test")


@pytest.fixture(scope="module")
def render_app(demo_material: Any, redis_url: str) -> Flask:
    """For rendering only (no request reaches the store or the audit trail; starting writes the chain's
    configuration_loaded into the shared demo material's audit directory): built once, from the generated
    configuration as it is."""
    return create_app(load_settings(demo_material.config), store=RedisStore(redis_url, prefix="test:unused:"),
                      instance_id="test")


@pytest.fixture
def sp(app: Flask, demo_material: Any) -> DemoSp:
    settings = DemoSpSettings(base_url=SP_BASE, key_file=demo_material.root / "sp" / "sp.key",
                              cert_file=demo_material.root / "sp" / "sp.crt", xmlsec_binary=xmlsec_binary())
    svc = app.extensions["broker"]
    return DemoSp(settings, svc.metadata.document(), svc.settings.broker.idp.entity_id)


@pytest.fixture
def users(demo_material: Any) -> Path:
    return Path(demo_material.users)


@pytest.fixture
def browser(app: Flask) -> Iterator[Browser]:
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        yield Browser(client)


def as_user(browser: Browser, users: Path, name: str) -> Browser:
    browser.certificate_pem = (users / f"{name}.pem").read_text()
    return browser


def html_lang(response: TestResponse) -> str:
    found = re.search(r'<html lang="([a-z]+)">', response.get_data(as_text=True))
    assert found is not None
    return found.group(1)


def h1(response: TestResponse) -> str:
    found = re.search(r"<h1>(.*?)</h1>", response.get_data(as_text=True), re.S)
    assert found is not None, "the page has no heading"
    return found.group(1).strip()


def csp(response: TestResponse) -> dict[str, str]:
    directives = {}
    for part in response.headers["Content-Security-Policy"].split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value
    return directives


# --- language ------------------------------------------------------------------------------


def test_error_pages_are_swedish_by_default(browser: Browser) -> None:
    response = browser.get("/saml/idp/sso")
    assert response.status_code == 400
    assert response.headers["X-Broker-Reason"] == "saml_request_missing"
    assert html_lang(response) == "sv"
    assert h1(response) == CATALOG["sv"]["saml_request_missing"].title
    assert "Referensnummer" in response.get_data(as_text=True)


def test_error_pages_follow_accept_language(browser: Browser) -> None:
    browser.headers["Accept-Language"] = "en-GB,en;q=0.9"
    response = browser.get("/saml/idp/sso")
    assert html_lang(response) == "en"
    assert h1(response) == CATALOG["en"]["saml_request_missing"].title
    assert "Reference number" in response.get_data(as_text=True)


def test_accept_language_weights_decide(browser: Browser) -> None:
    browser.headers["Accept-Language"] = "en;q=0.4, sv-SE;q=0.8"
    assert html_lang(browser.get("/saml/idp/sso")) == "sv"


def test_lang_query_overrides_and_is_remembered_in_a_cookie(browser: Browser) -> None:
    browser.headers["Accept-Language"] = "sv-SE,sv;q=0.9"
    chosen = browser.get("/saml/idp/sso?lang=en")
    assert html_lang(chosen) == "en"
    cookies = chosen.headers.getlist("Set-Cookie")
    (cookie,) = [c for c in cookies if c.startswith(f"{LANG_COOKIE}=")]
    assert cookie.startswith(f"{LANG_COOKIE}=en;")
    assert "Secure" in cookie
    assert "HttpOnly" in cookie

    later = browser.get("/no/such/page")  # no ?lang: the cookie beats Accept-Language
    assert later.status_code == 404
    assert html_lang(later) == "en"
    assert not [c for c in later.headers.getlist("Set-Cookie") if c.startswith(f"{LANG_COOKIE}=")]

    back = browser.get("/saml/idp/sso?lang=sv")
    assert html_lang(back) == "sv"
    assert html_lang(browser.get("/no/such/page")) == "sv"


def test_unknown_lang_query_is_ignored(browser: Browser) -> None:
    browser.headers["Accept-Language"] = "en"
    response = browser.get("/no/such/page?lang=de")
    assert html_lang(response) == "en"
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{LANG_COOKIE}=")]


@pytest.mark.parametrize(("cookie", "headers", "lang"), [
    pytest.param(None, {"Accept-Language": "en-GB,en;q=0.9"}, "en", id="accept-language"),
    pytest.param("en", {"Accept-Language": "sv"}, "en", id="language-cookie"),
    pytest.param(None, {}, "sv", id="nothing-asked-swedish"),
])
def test_a_query_that_is_not_utf_8_gets_its_page_in_the_browsers_language(browser: Browser, cookie: str | None,
                                                                          headers: dict[str, str], lang: str) -> None:
    """The query itself is refused whole (request_malformed, its ?lang= unread), but the browser's cookie and
    Accept-Language still choose the page's language."""
    if cookie is not None:
        browser.client.set_cookie(LANG_COOKIE, cookie, domain="localhost")
    response = browser.client.get("/diagnose", environ_overrides={"QUERY_STRING": "x=\xff"}, headers=headers)
    assert response.status_code == 400
    assert response.headers["X-Broker-Reason"] == "request_malformed"
    assert html_lang(response) == lang
    assert h1(response) == CATALOG[lang]["request_malformed"].title


def test_page_links_to_the_other_language(browser: Browser) -> None:
    """A query-only link: the browser keeps the page's path (RFC 3986 §5.2.2) and the query it came with."""
    body = browser.get("/no/such/page?x=1&lang=sv").get_data(as_text=True)
    assert 'href="?x=1&amp;lang=en"' in body
    assert 'hreflang="en"' in body


@pytest.mark.parametrize("path", [
    pytest.param("/%5Cevil.example/phish", id="encoded-backslash"),
    pytest.param("/%5C%5Cevil.example/phish", id="two-encoded-backslashes"),
    pytest.param("//evil.example/phish", id="two-slashes"),
    pytest.param("/diagnose%3Fformat=json%23", id="encoded-question-mark-and-hash"),
])
def test_the_language_link_never_leads_elsewhere(browser: Browser, path: str) -> None:
    """The decoded path written back into the link made "/\\evil.example" (another host for browsers) or a
    different page; the link names no path at all."""
    body = browser.get(path).get_data(as_text=True)
    links = re.findall(r'<a href="([^"]*)" lang="en"', body)
    assert links == ["?lang=en"]


# --- what the error pages say ------------------------------------------------------------


@pytest.mark.parametrize(("lang", "accept"), [("sv", "sv"), ("en", "en")])
def test_expired_certificate_page_shows_the_expiry_date(browser: Browser, users: Path, sp: DemoSp,
                                                        lang: str, accept: str) -> None:
    not_after = x509.load_pem_x509_certificate((users / "david.pem").read_bytes()).not_valid_after_utc
    browser.headers["Accept-Language"] = accept
    response = as_user(browser, users, "david").get(sp.login_url())
    assert response.status_code == 403
    assert response.headers["X-Broker-Reason"] == "certificate_expired"
    assert html_lang(response) == lang
    body = response.get_data(as_text=True)
    expected = CATALOG[lang]["certificate_expired"].what.format(not_after=not_after.date().isoformat())
    assert expected in body
    assert not_after.date().isoformat() in body


def _missing_saml_request(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
    return browser.get("/saml/idp/sso")


def _malformed_saml_request(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
    return browser.get("/saml/idp/sso?SAMLRequest=%%%not-base64")


def _unknown_path(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
    return browser.get("/saml/idp/nothing-here")


def _put(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
    return browser.client.put("/saml/idp/sso", environ_base={"REMOTE_ADDR": "192.0.2.10"})


def _too_large(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
    limit = browser.client.application.config["MAX_CONTENT_LENGTH"]  # from the larger of idp/sp max_message_bytes
    return browser.post("/saml/idp/sso", {"SAMLRequest": "A" * (limit + 1)})


def _login_as(name: str) -> Any:
    def run(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
        return as_user(browser, users, name).get(sp.login_url())
    return run


def _without_certificate(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
    """No card: the SP also accepts Kommun C (its own IdP), so the broker asks; Kommun A needs a card."""
    return choose(browser, browser.get(sp.login_url()), "kommun-a")


def _unknown_login(browser: Browser, users: Path, sp: DemoSp) -> TestResponse:
    return browser.get("/saml/idp/login/no-such-login")


ERROR_CASES = [
    pytest.param(_missing_saml_request, 400, "saml_request_missing", id="saml_request_missing"),
    pytest.param(_malformed_saml_request, 400, "saml_request_malformed", id="saml_request_malformed"),
    pytest.param(_unknown_path, 404, "page_not_found", id="page_not_found"),
    pytest.param(_put, 405, "method_not_allowed", id="method_not_allowed"),
    pytest.param(_too_large, 413, "request_too_large", id="request_too_large"),
    pytest.param(_unknown_login, 400, "login_unknown", id="login_unknown"),
    pytest.param(_without_certificate, 401, "certificate_missing", id="certificate_missing"),
    pytest.param(_login_as("david"), 403, "certificate_expired", id="certificate_expired"),
    pytest.param(_login_as("cecilia"), 403, "revoked", id="revoked"),
    pytest.param(_login_as("erik"), 403, "eku_not_client_auth", id="eku_not_client_auth"),
    pytest.param(_login_as("fatima"), 403, "issuer_unknown", id="issuer_unknown"),
]


@pytest.mark.parametrize(("request_page", "status", "reason"), ERROR_CASES)
def test_every_error_page_explains_with_reference_and_without_trace(browser: Browser, users: Path, sp: DemoSp,
                                                                    request_page: Any, status: int,
                                                                    reason: str) -> None:
    response = request_page(browser, users, sp)
    assert response.status_code == status
    assert response.headers["X-Broker-Reason"] == reason
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = response.get_data(as_text=True)
    assert REFID.search(body) is not None
    assert f'data-reason="{reason}"' in body
    assert 'role="alert"' in body
    assert h1(response) == explain(reason, REASONS[reason].family, "sv", {}).title
    for marker in STACK_TRACE:
        assert marker not in body
    assert response.headers["Cache-Control"] == "no-cache, no-store"


def test_each_page_gets_its_own_reference_id(browser: Browser) -> None:
    ids = {REFID.search(browser.get("/saml/idp/sso").get_data(as_text=True)).group(1)  # type: ignore[union-attr]
           for _ in range(3)}
    assert len(ids) == 3


def test_unknown_path_renders_the_friendly_404(browser: Browser) -> None:
    response = browser.get("/wp-login.php")
    assert response.status_code == 404
    assert response.headers["X-Broker-Reason"] == "page_not_found"
    assert h1(response) == "Sidan finns inte"


def test_put_on_sso_is_method_not_allowed(browser: Browser) -> None:
    response = browser.client.put("/saml/idp/sso", data="x")
    assert response.status_code == 405
    assert response.headers["X-Broker-Reason"] == "method_not_allowed"
    assert h1(response) == CATALOG["sv"]["method_not_allowed"].title


def test_unsatisfiable_range_on_a_static_file_is_a_416_page(browser: Browser) -> None:
    # RFC 9110 §15.5.17: 416 with the file's length in Content-Range; a client error, never a 500
    response = browser.client.get("/static/broker.css", headers={"Range": "bytes=999999-"})
    assert response.status_code == 416
    assert response.headers["X-Broker-Reason"] == "range_not_satisfiable"
    assert re.fullmatch(r"bytes \*/[0-9]+", response.headers["Content-Range"])
    assert REFID.search(response.get_data(as_text=True)) is not None
    assert response.headers["Cache-Control"] == "no-cache, no-store"  # an error page, though at a static path
    with browser.client.get("/static/broker.css") as whole:
        assert whole.status_code == 200
        assert "no-store" not in whole.headers.get("Cache-Control", "")


def test_another_client_error_keeps_its_status_on_the_friendly_page(browser: Browser) -> None:
    # a werkzeug HTTPException without a reason of its own (here 400 from an unparseable form body) and one
    # that is neither 400 nor a known code: the page, the reference ID, the status as raised
    response = browser.client.post("/discovery", data=b"--x\r\n", content_type="multipart/form-data")
    assert response.status_code in (400, 403)
    assert "X-Broker-Reason" in response.headers
    assert REFID.search(response.get_data(as_text=True)) is not None


def test_an_unexpected_error_is_a_page_whose_reference_leads_to_the_audit_trail(
        app: Flask, browser: Browser, config_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A defect (here a view that divides by zero) gives the friendly 500 page without a trace; its reference ID
    names a ``login_refused`` / ``internal_error`` record in the audit trail (made durable before the page is
    sent) and the log line with the traceback."""
    def defect() -> str:
        return str(1 // 0)

    app.add_url_rule("/defect", "defect", defect)

    response = browser.client.get("/defect")

    assert response.status_code == 500
    assert response.headers["X-Broker-Reason"] == "internal_error"
    body = response.get_data(as_text=True)
    for marker in STACK_TRACE:
        assert marker not in body
    found = REFID.search(body)
    assert found is not None
    records = [r for r in audit_lines(config_dir) if r["correlation_id"] == found.group(1)]
    assert [(r["event"], r["outcome"], r["reason"]) for r in records] == [("login_refused", "failure",
                                                                           "internal_error")]
    assert records[0]["detail"] == "unexpected ZeroDivisionError; the log has the details under this reference"
    assert f"[{found.group(1)}] unexpected error" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_method_not_allowed_names_the_allowed_methods(browser: Browser) -> None:
    # RFC 9110 §15.5.6: a 405 response MUST carry an Allow header listing the supported methods
    response = browser.client.put("/saml/idp/sso", data="x")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
    assert {"GET", "POST"} <= allowed
    assert "PUT" not in allowed


def test_certificate_refusal_offers_retry_and_a_way_back_to_the_sp(browser: Browser, users: Path,
                                                                   sp: DemoSp) -> None:
    response = as_user(browser, users, "david").get(sp.login_url())
    body = response.get_data(as_text=True)
    assert re.search(r'href="/saml/idp/login/[^"]+"', body)
    (back,) = [(action, fields) for action, fields in forms(response) if "SAMLResponse" in fields]
    assert back[0] == SP_BASE + "/acs"
    assert "Tillbaka till Demotjänsten" in body
    assert "Kontaktcenter" not in body  # david belongs to Kommun A
    assert "Support för Kommun A" in body


# --- security headers --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/saml/idp/sso", "/no/such/page", "/diagnose"])
def test_strict_security_headers_on_every_page(browser: Browser, path: str) -> None:
    response = browser.get(path)
    policy = csp(response)
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'self'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert "X-Form-Target" not in response.headers


def test_post_page_has_no_language_link(browser: Browser, users: Path, sp: DemoSp) -> None:
    """The page submits itself at once; a link back to the SSO URL would send the SP's request again."""
    body = as_user(browser, users, "anna").get(sp.login_url()).get_data(as_text=True)
    assert "hreflang" not in body
    assert "SAMLRequest" not in body


def test_post_page_allows_only_the_sps_origin_as_form_target(browser: Browser, users: Path, sp: DemoSp) -> None:
    response = as_user(browser, users, "anna").get(sp.login_url())
    assert response.status_code == 200
    action, fields = saml_response_form(response)
    assert action == SP_BASE + "/acs"
    sp.accept(fields["SAMLResponse"])
    policy = csp(response)
    assert policy["form-action"].split() == ["'self'", SP_ORIGIN]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'"  # the auto-submit script is a file, no inline script
    assert "<script>" not in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "X-Form-Target" not in response.headers


def test_error_page_with_a_way_back_allows_the_sps_origin(browser: Browser, users: Path, sp: DemoSp) -> None:
    response = as_user(browser, users, "fatima").get(sp.login_url())
    assert response.status_code == 403
    assert csp(response)["form-action"].split() == ["'self'", SP_ORIGIN]


def test_session_cookie_is_secure_httponly_and_cross_site(browser: Browser, users: Path, sp: DemoSp) -> None:
    response = as_user(browser, users, "anna").get(sp.login_url())
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("__Host-broker_session=")]
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= attributes
    assert "SameSite=None" in cookie


# --- the rendering functions themselves ---------------------------------------------------------


@pytest.mark.parametrize("code", sorted(REASONS))
@pytest.mark.parametrize("lang", ["sv", "en"])
def test_error_page_renders_every_reason_code(render_app: Flask, code: str, lang: str) -> None:
    with render_app.test_request_context(f"/x?lang={lang}"):
        response = error_page(BrokerError(code), "ABCD-0123-4567-89EF")
    row = REASONS[code]
    assert response.status_code == row.http_status
    assert response.headers["X-Broker-Reason"] == code
    body = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in body
    assert 'role="alert"' in body
    assert 'class="refid" data-reason="' + code + '">ABCD-0123-4567-89EF<' in body
    assert re.search(r"<h1>\s*\S", body)
    assert "{" not in body.split("<main", 1)[1]  # every placeholder was filled


@pytest.mark.parametrize(("lang", "words"), [("sv", "Se vad inloggningstjänsten tar emot"),
                                             ("en", "See what the login service receives")])
def test_no_certificate_page_links_to_the_diagnosis(render_app: Flask, lang: str, words: str) -> None:
    with render_app.test_request_context(f"/x?lang={lang}"):
        body = error_page(BrokerError("certificate_missing"), "ABCD-0123-4567-89EF").get_data(as_text=True)
    assert re.search(r'<a class="diagnose" href="/diagnose">' + words, body)


def test_error_page_escapes_parameters(render_app: Flask) -> None:
    error = BrokerError("certificate_expired", params={"not_after": "<script>alert(1)</script>"})
    with render_app.test_request_context("/x"):
        body = error_page(error, "ABCD-0123-4567-89EF").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body


def test_security_headers_turn_the_form_target_into_form_action(render_app: Flask) -> None:
    with render_app.test_request_context("/saml/idp/sso"):
        response = make_response("page")
        response.headers["X-Form-Target"] = "https://sp.example.org"
        security_headers(response)
    assert "X-Form-Target" not in response.headers
    assert "form-action 'self' https://sp.example.org;" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-cache, no-store"


def test_static_files_are_cacheable(render_app: Flask) -> None:
    with render_app.test_request_context("/static/broker.css"):
        response = security_headers(make_response("css"))
    assert "Cache-Control" not in response.headers
    assert response.headers["X-Frame-Options"] == "DENY"


def _luminance(hex_colour: str) -> float:
    """WCAG 2.2 relative luminance of ``#rrggbb``."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_focus_outline_stands_out_from_the_page(render_app: Flask) -> None:
    """WCAG 2.2 SC 1.4.11 (non-text contrast, AA): the focus ring of the discovery choice, the search, the
    buttons and links needs 3:1 against what it is drawn on (the outline is offset from the control, so that is
    the page)."""
    css = (Path(str(render_app.static_folder)) / "broker.css").read_text(encoding="utf-8")
    variables = dict(re.findall(r"(--[a-z]+):\s*(#[0-9a-fA-F]{6})", css))
    found = re.search(r"(?m)^:focus-visible\s*\{[^}]*outline:\s*\S+\s+\S+\s+(#[0-9a-fA-F]{6})", css)
    assert found is not None, "no :focus-visible outline"
    assert _contrast(found.group(1), variables["--bg"]) >= 3.0


HOSTILE = '"><script>alert(1)</script><x a=\'&amp;'


@pytest.mark.parametrize("lang", ["sv", "en"])
@pytest.mark.parametrize(("url", "fields", "sp_name"), [
    pytest.param("https://sp.example.org/acs", {"SAMLResponse": "PHNhbWw+", "RelayState": "r/1?a=b&c"},
                 {"sv": "Vårdsystemet", "en": "The care system"}, id="response-and-relay-state"),
    pytest.param("https://sp.example.org/acs", {"SAMLResponse": "PHNhbWw+"}, None, id="no-relay-state-no-sp-name"),
    pytest.param("https://sp.example.org/acs?x=" + HOSTILE, {"SAMLResponse": HOSTILE, HOSTILE: HOSTILE},
                 {"sv": HOSTILE, "en": HOSTILE}, id="hostile-values"),
])
def test_pre_rendered_post_page_is_the_template_rendered(render_app: Flask, lang: str, url: str,
                                                         fields: dict[str, str], sp_name: dict[str, str] | None
                                                         ) -> None:
    """The post page is filled into post.html rendered once per language: byte for byte what Jinja renders
    for the same values, every value escaped."""
    name = LocalizedText(**sp_name) if sp_name else None
    with render_app.test_request_context(f"/saml/idp/sso?lang={lang}"):
        fast = post_page(PostToSp(url, fields, "c", name))
        sending = UI[lang]["sending_to"].format(sp=name.get(lang) if name else UI[lang]["back_to_sp_generic"])
        reference = _render("post.html", 200, switch_url="", url=url, inputs=hidden_inputs(fields),
                            sending_to=sending, title=sending.rstrip("."))
    assert fast.get_data(as_text=True) == reference.get_data(as_text=True)
    assert fast.headers.get_all("Set-Cookie") == reference.headers.get_all("Set-Cookie")
    assert fast.status_code == 200
    body = fast.get_data(as_text=True)
    assert "\x00" not in body
    assert "<script>alert" not in body
    assert f'<html lang="{lang}">' in body


def _title_and_h1(body: str) -> tuple[str, str]:
    title = re.search(r"<title>(.*?)</title>", body, re.S)
    heading = re.search(r"<h1>(.*?)</h1>", body, re.S)
    assert title is not None
    assert heading is not None
    return title.group(1).strip(), heading.group(1).strip()


SP_NAME = LocalizedText(sv="Vårdsystemet", en="The care system")


@pytest.mark.parametrize("lang", ["sv", "en"])
@pytest.mark.parametrize("page", [
    pytest.param(lambda: post_page(PostToSp("https://sp.example.org/acs", {"SAMLResponse": "PHNhbWw+"}, "c",
                                            SP_NAME)), id="post"),
    pytest.param(lambda: logged_out_page(LogoutDone("ABCD-0123-4567-89EF")), id="logged-out"),
    pytest.param(lambda: logged_out_page(LogoutDone("ABCD-0123-4567-89EF", partial=(SP_NAME,))),
                 id="logged-out-partial"),
    pytest.param(lambda: message_page("index_title", ["index_text"]), id="index"),
    pytest.param(lambda: error_page(BrokerError("certificate_expired"), "ABCD-0123-4567-89EF"), id="error"),
])
def test_each_page_is_titled_by_what_it_says(render_app: Flask, lang: str, page: Any) -> None:
    """WCAG 2.1 SC 2.4.2 (Page Titled): the title, which a screen reader reads first and the tab shows, names the
    page as its heading does, then the service; the service's name alone told every page apart from none."""
    with render_app.test_request_context(f"/x?lang={lang}"):
        body = page().get_data(as_text=True)
    title, heading = _title_and_h1(body)
    assert title == f"{heading.rstrip('.')} \N{EN DASH} {UI[lang]['service']}"
