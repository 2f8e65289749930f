"""Federated login through a municipality's own IdP (DESIGN.md, flow 2), with real peers on both sides: the
regional SP is the pysaml2 demo SP, Kommun C's IdP is the pysaml2 demo IdP. The user's browser carries no
client certificate, so the broker sends it on to the municipality's IdP (after discovery or a hint)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.response import StatusNoAuthnContext, StatusNoPassive
from werkzeug.test import TestResponse

from broker.app import create_app, reload_configuration
from broker.config.loader import Settings, load_settings
from broker.demo.idp import CLAIMS, CLASS_PASSWORD, CLASS_X509, DemoIdp, FormPost, IdpUser
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from broker.reasons import NO_AUTHN_CONTEXT, NO_PASSIVE
from broker.saml.xmlenc import ALLOWED_DATA, ALLOWED_KEY_TRANSPORT
from broker.session.store import RedisStore
from broker.web.services import CORRELATION_ENVIRON
from tests.corpus.upstream.generate import proxy_restriction
from tests.factories.authnrequests import (
    ACS_URL as SP_ACS_URL,
)
from tests.factories.authnrequests import (
    NS,
    SP_ENTITY_ID,
    AuthnRequests,
    assert_refused,
    open_browser,
    posted_response,
    sp_accepts,
    status_codes,
    with_attributes,
)
from tests.factories.idp import KARIN, LARS, AtIdp, back_to_broker, discovery_form, federated_login, to_idp
from tests.factories.saml import BASE_URL, Browser, saml_response_form, xmlsec_binary
from tests.flows.conftest import FEDERATED_LOGIN, audit_lines, correlation_of, events_of, request_id_of
from tests.flows.test_federation_hardening import resigned

LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
LOA4 = "http://id.elegnamnden.se/loa/1.0/loa4"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
CLASS_KERBEROS = "urn:oasis:names:tc:SAML:2.0:ac:classes:Kerberos"
IDP_ENTITY_ID = BASE_URL + "/saml/idp/metadata"       # the broker as IdP toward the SPs
COOKIE = "__Host-broker_session"
SECOND_SP_BASE = BASE_URL + "/second-sp"
SECOND_SP_ENTITY_ID = SECOND_SP_BASE + "/metadata"



@pytest.fixture(autouse=True)
def without_certificate(browser: Browser) -> None:
    """Kommun C's staff log in at their own IdP: no client certificate reaches the broker."""
    browser.certificate_pem = None


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


# --- helpers ----------------------------------------------------------------------------------


@contextmanager
def environs_seen_by(browser: Browser) -> Iterator[list[dict[str, Any]]]:
    """The WSGI environ of each request the app serves meanwhile, as the app left it."""
    app = browser.client.application
    inner, seen = app.wsgi_app, []

    def capture(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ)
        return inner(environ, start_response)

    app.wsgi_app = capture  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        app.wsgi_app = inner  # type: ignore[method-assign]


def records_of(config_dir: Path, correlation_id: str, event: str) -> list[dict[str, object]]:
    return [e for e in audit_lines(config_dir) if e.get("correlation_id") == correlation_id and e["event"] == event]


def session_cookies(response: TestResponse) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "=")]


def response_xml(post: FormPost) -> bytes:
    return base64.b64decode(post.fields["SAMLResponse"])


def with_response_xml(post: FormPost, xml: bytes) -> FormPost:
    return FormPost(post.url, {**post.fields, "SAMLResponse": base64.b64encode(xml).decode()})


def back_form_status(page: TestResponse) -> tuple[str | None, str | None]:
    """The status of the signed error Response that an error page offers to take back to the SP."""
    _, fields = saml_response_form(page)
    return status_codes(etree.fromstring(base64.b64decode(fields["SAMLResponse"])))


def upstream_result(config_dir: Path, correlation_id: str) -> dict[str, object]:
    found = records_of(config_dir, correlation_id, "upstream_authn_result")
    assert len(found) == 1, found
    return found[0]


def start(browser: Browser, idp: DemoIdp, url: str) -> AtIdp:
    """The SP's AuthnRequest (URL) to the broker, discovery (Kommun C) and on to Kommun C's IdP."""
    return to_idp(browser, idp, browser.get(url))


def requested(*class_refs: str, comparison: str = "exact") -> dict[str, object]:
    return {"authn_context_class_ref": list(class_refs), "comparison": comparison}


def set_municipality_option(config_dir: Path, key: str, value: str) -> None:
    """Change one top-level key of kommun-c.yaml's saml section (before the app is built)."""
    path = config_dir / "municipalities" / "kommun-c.yaml"
    text = path.read_text()
    lines = [f"  {key}: {value}" if line.startswith(f"  {key}:") else line for line in text.splitlines()]
    assert lines != text.splitlines(), f"no saml.{key} in {path}"
    path.write_text("\n".join(lines) + "\n")


# --- 1. the ordinary login ---------------------------------------------------------------------


@pytest.mark.parametrize(("user", "loa", "attributes"), [
    pytest.param(KARIN, LOA3, {"employeeHsaId": ["SE2120003005-K001"], "givenName": ["Karin"],
                               "sn": ["Kommunsson"], "displayName": ["Karin Kommunsson"]}, id="karin-x509-loa3"),
    pytest.param(LARS, LOA2, {"employeeHsaId": ["SE2120003005-L002"], "givenName": ["Lars"], "sn": ["Larsson"]},
                 id="lars-password-loa2"),
])
def test_staff_log_in_at_their_municipal_idp(browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path,
                                             user: IdpUser, loa: str, attributes: dict[str, list[str]]) -> None:
    url = sp.login_url()
    at = start(browser, idp, url)
    with environs_seen_by(browser) as seen:
        answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, user))

    assert answer.status_code == 200, answer.headers.get("X-Broker-Reason")
    action, fields = saml_response_form(answer)
    assert action == SP_ACS_URL
    result = sp.accept(fields["SAMLResponse"])
    assert result.loa == loa
    for name, values in attributes.items():
        assert result.attributes.get(name) == values, name
    assert result.attributes["o"] == ["Kommun C"]
    assert result.attributes["organizationIdentifier"] == ["2120003005"]

    cookie, = session_cookies(answer)
    assert {"Secure", "HttpOnly"} <= {part.strip() for part in cookie.split(";")}

    cid = correlation_of(config_dir, request_id_of(url))
    assert events_of(config_dir, cid) == FEDERATED_LOGIN
    # the ACS request's access line (broker.access_log) names the login, not an ID of the request's own
    assert [environ[CORRELATION_ENVIRON] for environ in seen] == [cid]
    requested_event, = records_of(config_dir, cid, "upstream_authn_requested")
    assert requested_event["municipality"] == "kommun-c"
    assert requested_event["data"]["request_id"] == at.request.message.id  # type: ignore[index]
    result_event = upstream_result(config_dir, cid)
    assert (result_event["user"], result_event["municipality"]) == (attributes["employeeHsaId"][0], "kommun-c")
    assert result_event["data"]["loa"] == loa  # type: ignore[index]
    issued, = records_of(config_dir, cid, "assertion_issued")
    assert (issued["data"]["loa"], issued["data"]["session"]) == (loa, "new")  # type: ignore[index]


# --- 2. encryption ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("encrypt", "refusal"), [
    pytest.param("aes", None, id="aes-gcm-rsa-oaep-accepted"),
    pytest.param("pysaml2-3des", "upstream_algorithm_not_allowed", id="pysaml2-3des-refused"),
])
def test_encrypted_assertion(browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, encrypt: str,
                             refusal: str | None) -> None:
    url = sp.login_url()
    at = start(browser, idp, url)
    post = idp.respond(at.request, at.relay_state, KARIN, encrypt=encrypt)  # type: ignore[arg-type]
    root = etree.fromstring(response_xml(post))
    assert root.find("saml:EncryptedAssertion", NS) is not None
    assert root.find("saml:Assertion", NS) is None
    answer = back_to_broker(browser, post)

    cid = correlation_of(config_dir, request_id_of(url))
    if refusal is None:
        _, fields = saml_response_form(answer)
        result = sp.accept(fields["SAMLResponse"])
        assert (result.loa, result.attributes["givenName"]) == (LOA3, ["Karin"])
        assert upstream_result(config_dir, cid)["outcome"] == "success"
    else:
        assert_refused(answer, refusal)
        event = upstream_result(config_dir, cid)
        assert (event["outcome"], event["reason"]) == ("failure", refusal)
        assert "assertion_issued" not in [e for e, _, _ in events_of(config_dir, cid)]


def test_the_sp_metadata_asks_for_authenticated_encryption_first(browser: Browser) -> None:
    """SAML Metadata §2.4.1.1: the encryption key's EncryptionMethods, in the broker's order of preference: AES-GCM
    (authenticated) before AES-CBC (malleable: the oracles of XML Encryption 1.0), RSA-OAEP for the key; each one
    the broker also decrypts, and nothing weaker (no RSA 1.5, no 3DES)."""
    md = {"md": "urn:oasis:names:tc:SAML:2.0:metadata"}
    root = etree.fromstring(browser.get("/saml/sp/metadata").data)
    (descriptor,) = root.findall(".//md:SPSSODescriptor/md:KeyDescriptor[@use='encryption']", md)
    methods = [m.get("Algorithm") for m in descriptor.findall("md:EncryptionMethod", md)]
    assert methods == [
        "http://www.w3.org/2009/xmlenc11#aes256-gcm", "http://www.w3.org/2009/xmlenc11#aes128-gcm",
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc", "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
        "http://www.w3.org/2009/xmlenc11#rsa-oaep", "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"]
    assert set(methods) <= ALLOWED_DATA | ALLOWED_KEY_TRANSPORT
    (signing,) = root.findall(".//md:SPSSODescriptor/md:KeyDescriptor[@use='signing']", md)
    assert signing.find("md:EncryptionMethod", md) is None


# --- 3. what the IdP must sign -------------------------------------------------------------------


class TestSignedElement:
    @pytest.fixture
    def settings(self, config_dir: Path, signed_element: str) -> Settings:
        set_municipality_option(config_dir, "signed_element", signed_element)
        return load_settings(config_dir)

    @pytest.mark.parametrize(("signed_element", "sign_assertion", "sign_response", "refusal"), [
        pytest.param("assertion", True, True, None, id="assertion-required/both-signed"),
        pytest.param("assertion", True, False, None, id="assertion-required/assertion-signed"),
        pytest.param("assertion", False, True, "upstream_unsigned", id="assertion-required/only-response-signed"),
        pytest.param("either", False, True, None, id="either/only-response-signed"),
        pytest.param("either", False, False, "upstream_unsigned", id="either/nothing-signed"),
        pytest.param("both", True, False, "upstream_unsigned", id="both-required/assertion-signed"),
        pytest.param("both", True, True, None, id="both-required/both-signed"),
    ])
    def test_signatures_required_by_the_municipality_file(self, browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                          config_dir: Path, signed_element: str,
                                                          sign_assertion: bool, sign_response: bool,
                                                          refusal: str | None) -> None:
        url = sp.login_url()
        at = start(browser, idp, url)
        post = idp.respond(at.request, at.relay_state, KARIN, sign_assertion=sign_assertion,
                           sign_response=sign_response)
        root = etree.fromstring(response_xml(post))
        assert (root.find("ds:Signature", NS) is not None) == sign_response
        assert (root.find("saml:Assertion/ds:Signature", NS) is not None) == sign_assertion
        answer = back_to_broker(browser, post)

        cid = correlation_of(config_dir, request_id_of(url))
        if refusal is None:
            _, fields = saml_response_form(answer)
            assert sp.accept(fields["SAMLResponse"]).loa == LOA3
        else:
            assert_refused(answer, refusal)
            assert upstream_result(config_dir, cid)["reason"] == refusal


# --- 4. single sign-on across SPs ----------------------------------------------------------------


class TestSecondServiceProvider:
    @pytest.fixture
    def second_sp_settings(self, demo_material) -> DemoSpSettings:  # type: ignore[no-untyped-def]
        return DemoSpSettings(base_url=SECOND_SP_BASE, key_file=demo_material.root / "sp" / "sp.key",
                              cert_file=demo_material.root / "sp" / "sp.crt", xmlsec_binary=xmlsec_binary())

    @pytest.fixture
    def settings(self, config_dir: Path, second_sp_settings: DemoSpSettings) -> Settings:
        (config_dir / "metadata" / "second-sp.xml").write_bytes(sp_metadata(second_sp_settings))
        (config_dir / "service-providers" / "second-sp.yaml").write_text(yaml.safe_dump({
            "entity_id": SECOND_SP_ENTITY_ID,
            "name": {"sv": "Andra tjänsten", "en": "The second service"},
            "metadata": "metadata/second-sp.xml",
            "municipalities": ["kommun-c"],
            "release": ["employeeHsaId", "givenName"],
            "nameid_formats": ["persistent"],
            "require_signed_requests": True,
        }, allow_unicode=True))
        return load_settings(config_dir)

    @pytest.fixture
    def second_sp(self, app: Flask, second_sp_settings: DemoSpSettings) -> DemoSp:
        return DemoSp(second_sp_settings, app.extensions["broker"].metadata.document(), IDP_ENTITY_ID)

    def test_second_sp_is_answered_from_the_federated_session(self, browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                              second_sp: DemoSp, config_dir: Path) -> None:
        first = federated_login(browser, sp, idp, KARIN)
        _, fields = saml_response_form(first)
        assert sp.accept(fields["SAMLResponse"]).loa == LOA3
        assert session_cookies(first)

        url = second_sp.login_url()
        answer = browser.get(url)  # no discovery, no trip to the IdP: the form to the second SP at once
        action, fields = saml_response_form(answer)
        assert answer.status_code == 200
        assert action == SECOND_SP_BASE + "/acs"
        result = second_sp.accept(fields["SAMLResponse"])
        assert result.loa == LOA3
        assert result.attributes == {"employeeHsaId": ["SE2120003005-K001"], "givenName": ["Karin"]}

        cid = correlation_of(config_dir, request_id_of(url))
        assert events_of(config_dir, cid) == [
            ("login_started", "info", None),
            ("session_reused", "success", None),
            ("assertion_issued", "success", None),
        ]
        reused, = records_of(config_dir, cid, "session_reused")
        assert (reused["sp"], reused["user"]) == (SECOND_SP_ENTITY_ID, "SE2120003005-K001")
        assert len([e for e in audit_lines(config_dir) if e["event"] == "upstream_authn_requested"]) == 1

    def test_a_second_sp_outside_the_idps_proxy_restriction_is_refused_and_no_reuse_is_recorded(
            self, browser: Browser, sp: DemoSp, idp: DemoIdp, second_sp: DemoSp, config_dir: Path,
            demo_material: Any) -> None:
        """The IdP's assertion may go on to the first SP only (ProxyRestriction, SAML Core §2.5.1.6): the session
        answers the second SP nothing, and the audit trail says so, without a session_reused ("an SSO session
        answered a new AuthnRequest") for an answer that was never given."""
        at = to_idp(browser, idp, browser.get(sp.login_url()))
        post = idp.respond(at.request, at.relay_state, KARIN)
        first = browser.post(post.url, resigned(post.fields, demo_material, proxy_restriction(None, SP_ENTITY_ID)))
        _, fields = saml_response_form(first)
        assert sp.accept(fields["SAMLResponse"]).loa == LOA3

        url = second_sp.login_url()
        assert_refused(browser.get(url), "upstream_proxy_restricted")
        assert events_of(config_dir, correlation_of(config_dir, request_id_of(url))) == [
            ("login_started", "info", None),
            ("login_refused", "failure", "upstream_proxy_restricted"),
        ]


# --- 5. ForceAuthn and IsPassive go upstream -----------------------------------------------------


def test_force_authn_goes_upstream_even_with_a_session(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                       config_dir: Path) -> None:
    at = start(browser, idp, sp.login_url())
    assert at.request.message.force_authn != "true"
    first = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN))
    sp.accept(saml_response_form(first)[1]["SAMLResponse"])
    assert session_cookies(first)

    url = sp.login_url(force_authn=True)
    at = start(browser, idp, url)  # the session does not answer: the user is back at the IdP
    assert at.request.message.force_authn == "true"
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN))
    assert sp.accept(saml_response_form(answer)[1]["SAMLResponse"]).loa == LOA3

    cid = correlation_of(config_dir, request_id_of(url))
    events = [e for e, _, _ in events_of(config_dir, cid)]
    assert events == ["login_started", "upstream_authn_requested", "upstream_authn_result", "assertion_issued"]
    requested_event, = records_of(config_dir, cid, "upstream_authn_requested")
    assert requested_event["data"]["force_authn"] is True  # type: ignore[index]


def test_a_session_at_a_lower_level_goes_back_to_the_idp_for_the_level_asked(
        browser: Browser, sp: DemoSp, idp: DemoIdp, craft: AuthnRequests, config_dir: Path) -> None:
    """Lars has a LoA 2 session (a password at Kommun C's IdP); an SP asking for LoA 3 in the same browser is
    not answered NoAuthnContext at once (SAML Core §3.3.2.2.1: that is for a responder that cannot satisfy the
    request): the IdP, which can, is asked for the X509 class."""
    at = start(browser, idp, sp.login_url())
    first = back_to_broker(browser, idp.respond(at.request, at.relay_state, LARS))
    assert sp.accept(saml_response_form(first)[1]["SAMLResponse"]).loa == LOA2

    crafted = craft.build(requested_authn_context=requested(LOA3))
    at = to_idp(browser, idp, browser.get(craft.redirect(crafted)))
    context = at.request.message.requested_authn_context
    assert context is not None
    assert [ref.text for ref in context.authn_context_class_ref] == [CLASS_X509]
    posted = posted_response(back_to_broker(browser, idp.respond(at.request, at.relay_state, LARS,
                                                                  class_ref=CLASS_X509)))
    result = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    assert result.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == LOA3
    cid = correlation_of(config_dir, crafted.request_id)
    assert [e for e, _, _ in events_of(config_dir, cid)] == [
        "login_started", "session_insufficient", "upstream_authn_requested", "upstream_authn_result",
        "assertion_issued"]
    insufficient, = records_of(config_dir, cid, "session_insufficient")
    assert insufficient["reason"] == "authn_context_unsupported"
    assert insufficient["data"]["loa"] == LOA2  # type: ignore[index]


def test_a_request_for_a_lower_level_does_not_trade_the_session_down(
        browser: Browser, sp: DemoSp, idp: DemoIdp, craft: AuthnRequests, config_dir: Path) -> None:
    """Karin's LoA 3 session and an SP asking for exactly LoA 2: a new login could only replace the stronger
    session with a weaker one, so the SP gets NoAuthnContext and the session stays as it is."""
    at = start(browser, idp, sp.login_url())
    sp.accept(saml_response_form(back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN)))[1][
        "SAMLResponse"])
    crafted = craft.build(requested_authn_context=requested(LOA2))
    posted = posted_response(browser.get(craft.redirect(crafted)))
    assert posted.status == (RESPONDER, NO_AUTHN_CONTEXT)
    assert "session_insufficient" not in [e["event"] for e in audit_lines(config_dir)]
    assert sp.accept(saml_response_form(browser.get(sp.login_url()))[1]["SAMLResponse"]).loa == LOA3


def test_a_session_below_the_sps_minimum_asks_the_idp_for_that_level(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The SP's minimum_loa, not its request, wants more than Lars's LoA 2 session: the IdP is asked for the
    classes worth the minimum (without them an IdP with a session would answer with the same password login)."""
    at = start(browser, idp, sp.login_url())
    sp.accept(saml_response_form(back_to_broker(browser, idp.respond(at.request, at.relay_state, LARS)))[1][
        "SAMLResponse"])
    path = config_dir / "service-providers" / "demo-sp.yaml"
    data = yaml.safe_load(path.read_text())
    data["minimum_loa"] = "loa3"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert reload_configuration(app) is True

    at = to_idp(browser, idp, browser.get(sp.login_url()))
    context = at.request.message.requested_authn_context
    assert context is not None
    assert [ref.text for ref in context.authn_context_class_ref] == [CLASS_X509]
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, LARS, class_ref=CLASS_X509))
    assert sp.accept(saml_response_form(answer)[1]["SAMLResponse"]).loa == LOA3


def test_a_session_whose_municipalitys_idp_configuration_changed_goes_back_to_the_idp(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """Karin's session rests on the X509 class, which Kommun C's mapping made LoA 3 at her login. A reload that
    changes what the IdP's answers are worth (its authn_contexts, identity or attribute rules, the IdP itself)
    leaves the session nothing to stand on: it is not answered from at the old level, her IdP is asked again
    and its answer is judged by the configuration in force."""
    first = federated_login(browser, sp, idp, KARIN)
    assert sp.accept(saml_response_form(first)[1]["SAMLResponse"]).loa == LOA3
    path = config_dir / "municipalities" / "kommun-c.yaml"
    data = yaml.safe_load(path.read_text())
    data["saml"]["authn_contexts"][0]["loa"] = "loa2"  # X509 is worth LoA 2 from now on
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert reload_configuration(app) is True

    url = sp.login_url()
    at = to_idp(browser, idp, browser.get(url))  # not answered from the session: back at the IdP
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN, class_ref=CLASS_X509))
    assert sp.accept(saml_response_form(answer)[1]["SAMLResponse"]).loa == LOA2
    cid = correlation_of(config_dir, request_id_of(url))
    assert [e for e, _, _ in events_of(config_dir, cid)] == [
        "login_started", "session_insufficient", "upstream_authn_requested", "upstream_authn_result",
        "assertion_issued"]
    changed, = records_of(config_dir, cid, "session_insufficient")
    assert changed["reason"] == "session_configuration_changed"
    assert changed["data"]["loa"] == LOA3  # type: ignore[index]


def pysaml2_no_passive(idp: DemoIdp, at: AtIdp) -> FormPost:
    """NoPassive as pysaml2 7.5's ``create_error_response`` wants it: (second-level code, message); pysaml2
    puts Responder on top itself."""
    args = idp.server.response_args(at.request.message, [BINDING_HTTP_POST])
    response = idp.server.create_error_response(args["in_response_to"], args["destination"],
                                                (NO_PASSIVE, "no session at Kommun C"), sign=True)
    fields = {"SAMLResponse": base64.b64encode(str(response).encode()).decode()}
    if at.relay_state is not None:
        fields["RelayState"] = at.relay_state
    return FormPost(args["destination"], fields)


@pytest.mark.parametrize("no_passive", [
    pytest.param(lambda idp, at: idp.error(at.request, at.relay_state, NO_PASSIVE), id="demo-idp-error"),
    pytest.param(pysaml2_no_passive, id="pysaml2-error-response"),
])
def test_is_passive_goes_upstream_and_no_passive_comes_back_to_the_sp(
        browser: Browser, sp: DemoSp, idp: DemoIdp, craft: AuthnRequests, config_dir: Path,
        no_passive: Callable[[DemoIdp, AtIdp], FormPost]) -> None:
    crafted = craft.build(is_passive="true")
    # IsPassive allows no discovery page: the SP names the municipality
    at = start(browser, idp, craft.redirect(crafted, relay_state="p") + "&municipality=kommun-c")
    assert at.request.message.is_passive == "true"

    answer = back_to_broker(browser, no_passive(idp, at))
    posted = posted_response(answer)  # a form to the SP, not a page for the user
    assert posted.action == SP_ACS_URL
    assert posted.status == (RESPONDER, NO_PASSIVE)
    assert posted.root.get("InResponseTo") == crafted.request_id
    assert posted.fields["RelayState"] == "p"
    with pytest.raises(StatusNoPassive):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)

    cid = correlation_of(config_dir, crafted.request_id)
    assert events_of(config_dir, cid) == [
        ("login_started", "info", None),
        ("upstream_authn_requested", "info", None),
        ("upstream_authn_result", "failure", "passive_login_impossible"),
        ("error_response_issued", "failure", "passive_login_impossible"),
    ]


# --- 6. RequestedAuthnContext --------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "comparison", "upstream"), [
    pytest.param([LOA3], "exact", [CLASS_X509], id="exact-loa3"),
    pytest.param([LOA3], "minimum", [CLASS_X509], id="minimum-loa3"),
    pytest.param([LOA2], "minimum", [CLASS_X509, CLASS_PASSWORD], id="minimum-loa2"),
])
def test_requested_context_is_mapped_to_the_idps_class_refs(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                            craft: AuthnRequests, asked: list[str], comparison: str,
                                                            upstream: list[str]) -> None:
    crafted = craft.build(requested_authn_context=requested(*asked, comparison=comparison))
    at = start(browser, idp, craft.redirect(crafted))
    context = at.request.message.requested_authn_context
    assert context is not None
    assert [ref.text for ref in context.authn_context_class_ref] == upstream
    assert context.comparison == "exact"

    posted = posted_response(back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN)))
    result = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    assert result.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == LOA3


def test_weaker_context_than_requested_is_refused(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                  craft: AuthnRequests, config_dir: Path) -> None:
    crafted = craft.build(requested_authn_context=requested(LOA3))
    at = start(browser, idp, craft.redirect(crafted))
    # the IdP ignores the request and logs Karin in with a password
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN, class_ref=CLASS_PASSWORD))

    assert_refused(answer, "upstream_authn_context_insufficient")
    assert back_form_status(answer) == (RESPONDER, NO_AUTHN_CONTEXT)
    with pytest.raises(StatusNoAuthnContext):
        sp_accepts(sp, saml_response_form(answer)[1]["SAMLResponse"], crafted.request_id)
    cid = correlation_of(config_dir, crafted.request_id)
    result = upstream_result(config_dir, cid)
    assert result["reason"] == "upstream_authn_context_insufficient"
    # whose signed assertion it was, for `audit query --user`
    assert (result["user"], result["user_kind"], result["municipality"]) == ("SE2120003005-K001", "hsa_id",
                                                                             "kommun-c")
    assert "assertion_issued" not in [e for e, _, _ in events_of(config_dir, cid)]


def test_the_idps_no_authn_context_reaches_the_sp_as_such(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                           craft: AuthnRequests, config_dir: Path) -> None:
    """The IdP answers NoAuthnContext (it cannot give the class asked for): the SP gets NoAuthnContext (SAML Core
    §3.2.2.2), not a plain AuthnFailed, and the IdP's own status counts against no failed-login limit."""
    crafted = craft.build(requested_authn_context=requested(LOA3))
    at = start(browser, idp, craft.redirect(crafted))
    answer = back_to_broker(browser, idp.error(at.request, at.relay_state, NO_AUTHN_CONTEXT))
    assert_refused(answer, "upstream_authn_context_insufficient")
    assert back_form_status(answer) == (RESPONDER, NO_AUTHN_CONTEXT)
    result = upstream_result(config_dir, correlation_of(config_dir, crafted.request_id))
    assert "NoAuthnContext" in str(result["detail"])


_ST = "urn:oasis:names:tc:SAML:2.0:status:"


@pytest.mark.parametrize(("second_level", "words"), [
    pytest.param("AuthnFailed", "Inloggningen hos din kommun misslyckades.", id="authn-failed"),
    pytest.param("RequestDenied", "Din kommun nekade inloggningen.", id="request-denied"),
    pytest.param("NoPassive", "Din kommun kunde inte logga in dig utan att fråga dig.", id="no-passive-unasked"),
    pytest.param("UnknownPrincipal", "Din kommun känner inte igen användaren.", id="unknown-principal"),
    pytest.param("urn:example:idp:LockedOut", "Din kommuns inloggning avbröts eller nekades.",
                 id="the-idps-own-code"),
])
def test_the_idps_error_status_is_told_to_the_user_in_words(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, second_level: str, words: str) -> None:
    """Responder with a second-level code (SAML Core §3.2.2.2): the page says what the IdP answered, not only that
    the login was "cancelled or refused"; the audit trail keeps the codes and the IdP's message. A code of the
    IdP's own is not shown as it came (anyone can post a status), nor its message: the general words are."""
    status = second_level if second_level.startswith("urn:") else _ST + second_level
    url = sp.login_url()
    at = start(browser, idp, url)
    page = back_to_broker(browser, idp.error(at.request, at.relay_state, status, "Kontot är spärrat"))

    assert_refused(page, "upstream_status")
    text = page.get_data(as_text=True)
    assert f"<p>{words}</p>" in text
    assert "LockedOut" not in text
    assert "spärrat" not in text
    result = upstream_result(config_dir, correlation_of(config_dir, request_id_of(url)))
    assert result["reason"] == "upstream_status"
    assert f"{RESPONDER} / {status}: Kontot är spärrat" == result["detail"]


@pytest.mark.parametrize("route", [pytest.param("hint", id="municipality-hint"),
                                   pytest.param("discovery", id="chosen-on-discovery")])
def test_context_the_municipality_cannot_give_is_refused_before_the_idp(browser: Browser, sp: DemoSp,
                                                                        craft: AuthnRequests, config_dir: Path,
                                                                        route: str) -> None:
    crafted = craft.build(requested_authn_context=requested(LOA4))
    if route == "hint":
        answer = browser.get(craft.redirect(crafted) + "&municipality=kommun-c")
    else:
        page = browser.get(craft.redirect(crafted))
        answer = browser.post("/discovery", {**discovery_form(page), "municipality": "kommun-c"})

    posted = posted_response(answer)  # SAML Core §3.3.2.2.1: NoAuthnContext to the SP at once
    assert posted.action == SP_ACS_URL
    assert posted.status == (RESPONDER, NO_AUTHN_CONTEXT)
    with pytest.raises(StatusNoAuthnContext):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    cid = correlation_of(config_dir, crafted.request_id)
    assert events_of(config_dir, cid) == [
        ("login_started", "info", None),
        ("login_refused", "failure", "authn_context_unsupported"),
        ("error_response_issued", "failure", "authn_context_unsupported"),
    ]


def test_class_ref_the_municipality_does_not_map_is_refused(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                            config_dir: Path) -> None:
    url = sp.login_url()
    at = start(browser, idp, url)
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN, class_ref=CLASS_KERBEROS))
    assert_refused(answer, "upstream_authn_context_unknown")
    event = upstream_result(config_dir, correlation_of(config_dir, request_id_of(url)))
    assert (event["outcome"], event["reason"]) == ("failure", "upstream_authn_context_unknown")
    assert (event["user"], event["municipality"]) == ("SE2120003005-K001", "kommun-c")


# --- 7. attributes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("accept_language", "lang", "words"), [
    pytest.param(None, "sv", "skickade inte uppgiften givenName", id="default-swedish"),
    pytest.param("en", "en", "did not send givenName", id="english"),
])
def test_missing_required_attribute_is_named_on_the_page(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                         config_dir: Path, accept_language: str | None, lang: str,
                                                         words: str) -> None:
    if accept_language:
        browser.headers["Accept-Language"] = accept_language
    url = sp.login_url()
    at = start(browser, idp, url)
    without_given_name = {k: v for k, v in KARIN.attributes.items() if k != f"{CLAIMS}/givenname"}
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN, attributes=without_given_name))

    assert_refused(answer, "upstream_attribute_missing")
    page = answer.get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    assert words in page
    event = upstream_result(config_dir, correlation_of(config_dir, request_id_of(url)))
    assert event["reason"] == "upstream_attribute_missing"
    assert "givenName" in str(event["detail"])
    assert not session_cookies(answer)


@pytest.mark.parametrize("empty", [pytest.param([""], id="one-empty-value"),
                                   pytest.param(["", " "], id="blank-values")])
def test_a_required_attribute_with_only_empty_values_is_missing(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                                config_dir: Path, empty: list[str]) -> None:
    """A claim rule with nothing to fill in sends the attribute empty: that is no givenName either."""
    url = sp.login_url()
    at = start(browser, idp, url)
    attributes = {**KARIN.attributes, f"{CLAIMS}/givenname": empty}
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN, attributes=attributes))
    assert_refused(answer, "upstream_attribute_missing")
    assert "givenName" in str(upstream_result(config_dir, correlation_of(config_dir, request_id_of(url)))["detail"])


def test_a_blank_value_before_a_real_one_is_not_released(browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    """Blank values are dropped: the SP gets the real givenName, not the first (empty) one."""
    at = start(browser, idp, sp.login_url())
    attributes = {**KARIN.attributes, f"{CLAIMS}/givenname": ["", " ", "Karin"]}
    answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN, attributes=attributes))
    assert sp.accept(saml_response_form(answer)[1]["SAMLResponse"]).attributes["givenName"] == ["Karin"]


# --- 8. replay and unsolicited Responses ---------------------------------------------------------


@pytest.mark.parametrize("replayer", [pytest.param("same-browser", id="double-submit"),
                                      pytest.param("other-browser", id="stolen-response")])
def test_the_same_response_twice_is_refused_the_second_time(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                            config_dir: Path, replayer: str) -> None:
    url = sp.login_url()
    at = start(browser, idp, url)
    post = idp.respond(at.request, at.relay_state, KARIN)
    first = back_to_broker(browser, post)
    sp.accept(saml_response_form(first)[1]["SAMLResponse"])

    again = back_to_broker(browser if replayer == "same-browser" else open_browser(browser.client.application, None),
                           post)
    # the pending request was consumed by the first Response: the second answers nothing the broker asked
    assert_refused(again, "upstream_in_response_to_mismatch")
    failures = [e for e in audit_lines(config_dir)
                if e["event"] == "upstream_authn_result" and e["outcome"] == "failure"]
    assert [e["reason"] for e in failures] == ["upstream_in_response_to_mismatch"]
    assert len([e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]) == 1


def test_unsolicited_response_is_refused(browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    at = start(browser, idp, sp.login_url())
    post = idp.respond(at.request, at.relay_state, KARIN)  # only the Assertion is signed
    unsolicited = with_response_xml(post, with_attributes(response_xml(post), InResponseTo=None))
    assert etree.fromstring(response_xml(unsolicited)).get("InResponseTo") is None

    assert_refused(back_to_broker(browser, unsolicited), "upstream_unsolicited")
    assert [e["reason"] for e in audit_lines(config_dir) if e["event"] == "upstream_authn_result"] == [
        "upstream_unsolicited"]
    # it consumed nothing: the real Response still completes the login
    answer = back_to_broker(browser, post)
    assert sp.accept(saml_response_form(answer)[1]["SAMLResponse"]).loa == LOA3


# --- 9. several broker instances -----------------------------------------------------------------


class TestTwoInstances:
    @pytest.fixture
    def app(self, settings: Settings, store: RedisStore) -> Flask:
        return create_app(settings, store=store, instance_id="a")

    @pytest.fixture
    def app_b(self, settings: Settings, redis_url: str, redis_prefix: str) -> Flask:
        return create_app(settings, store=RedisStore(redis_url, prefix=redis_prefix), instance_id="b")

    def test_response_may_arrive_at_another_instance(self, browser: Browser, app_b: Flask, sp: DemoSp,
                                                     idp: DemoIdp, config_dir: Path) -> None:
        url = sp.login_url()
        at = start(browser, idp, url)  # instance a: AuthnRequest, discovery, on to the IdP
        # the same browser (its cookies) reaches instance b
        on_b = open_browser(app_b, None)
        binding = browser.client.get_cookie("__Host-broker_binding", domain="localhost", path="/")
        assert binding is not None
        on_b.client.set_cookie("__Host-broker_binding", binding.value, domain="localhost", path="/")
        answer = back_to_broker(on_b, idp.respond(at.request, at.relay_state, KARIN))  # instance b: the ACS
        result = sp.accept(saml_response_form(answer)[1]["SAMLResponse"])
        assert (result.loa, result.attributes["employeeHsaId"]) == (LOA3, ["SE2120003005-K001"])

        cid = correlation_of(config_dir, request_id_of(url))
        by_instance = [(e["event"], e["instance"]) for e in audit_lines(config_dir) if e.get("correlation_id") == cid]
        assert by_instance == [("login_started", "a"), ("upstream_authn_requested", "a"),
                               ("upstream_authn_result", "b"), ("assertion_issued", "b")]

        # the session instance b opened answers on instance a
        cookie, = session_cookies(answer)
        browser.client.set_cookie(COOKIE, cookie.split(";")[0].split("=", 1)[1], domain="localhost")
        again = browser.get(sp.login_url())
        assert sp.accept(saml_response_form(again)[1]["SAMLResponse"]).loa == LOA3
        assert "session_reused" in [e["event"] for e in audit_lines(config_dir) if e["instance"] == "a"]
