"""The municipal IdP of the federation tests: Kommun C's pysaml2 IdP (the demo's own class), and a
browser walk from the regional SP through the broker to that IdP and back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saml2.request import AuthnRequest
from werkzeug.test import TestResponse

from broker.demo.idp import DEMO_IDP_USERS, DemoIdp, DemoIdpSettings, FormPost, IdpUser
from broker.demo.sp import DemoSp
from broker.web.csrf import COOKIE as FORM_TOKEN_COOKIE
from broker.web.csrf import DISCOVERY
from broker.web.csrf import FIELD as FORM_TOKEN
from tests.factories.saml import BASE_URL, Browser, forms, xmlsec_binary

KARIN, LARS = DEMO_IDP_USERS  # LoA 3 (X509 ClassRef) and LoA 2 (PasswordProtectedTransport)
IDP_ENTITY_ID = BASE_URL + "/demo-idp/metadata"
ACS_URL = BASE_URL + "/saml/sp/acs"


def make_idp(layout_root: Path, broker_sp_metadata: bytes) -> DemoIdp:
    settings = DemoIdpSettings(base_url=BASE_URL + "/demo-idp", key_file=layout_root / "idp" / "idp.key",
                               cert_file=layout_root / "idp" / "idp.crt", xmlsec_binary=xmlsec_binary())
    return DemoIdp(settings, broker_sp_metadata)


@dataclass
class AtIdp:
    """The browser has arrived at the municipal IdP with the broker's AuthnRequest."""

    request: AuthnRequest
    relay_state: str | None
    url: str


def discovery_login_id(page: TestResponse) -> str:
    """The pending login's id on a discovery page."""
    for _, fields in forms(page):
        if "login" in fields:
            return fields["login"]
    raise AssertionError(f"not a discovery page (status {page.status_code})")


def discovery_form(page: TestResponse) -> dict[str, str]:
    """The hidden fields of a discovery page's choice form (the pending login and the form token): what a
    browser posts along with the choice."""
    for _, fields in forms(page):
        if FORM_TOKEN in fields:
            return {"login": fields["login"], FORM_TOKEN: fields[FORM_TOKEN]}
    raise AssertionError(f"not a discovery page (status {page.status_code})")


def form_token(browser: Browser) -> str:
    """The form token the broker's discovery pages carry for this browser (its form-token cookie), for a test
    that posts a choice with a pending login's id it holds rather than a page it parsed."""
    cookie = browser.client.get_cookie(FORM_TOKEN_COOKIE)
    assert cookie is not None, "the browser has seen no discovery page (no form-token cookie)"
    tokens = browser.client.application.extensions["broker"].form_tokens
    return str(tokens.token(cookie.value, DISCOVERY))


def to_idp(browser: Browser, idp: DemoIdp, first: TestResponse, municipality: str = "kommun-c") -> AtIdp:
    """From the broker's answer to the SP's AuthnRequest (discovery page or redirect) to the IdP."""
    response = first
    if response.status_code == 200:  # the discovery page: choose the municipality
        response = browser.post("/discovery", {**discovery_form(response), "municipality": municipality})
    assert response.status_code == 303, (response.status_code, response.headers.get("X-Broker-Reason"))
    url = response.headers["Location"]
    assert url.startswith(BASE_URL + "/demo-idp/sso?"), url
    request, relay_state = idp.parse_redirect(url)
    return AtIdp(request, relay_state, url)


def back_to_broker(browser: Browser, post: FormPost) -> TestResponse:
    """The IdP's HTTP-POST form submitted to the broker's ACS."""
    assert post.url == ACS_URL, post.url
    return browser.post(post.url, post.fields)


def federated_login(browser: Browser, sp: DemoSp, idp: DemoIdp, user: IdpUser = KARIN,
                    **respond: Any) -> TestResponse:
    """SP → broker → (discovery) → IdP → broker: the broker's answer to the IdP's Response."""
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    return back_to_broker(browser, idp.respond(at.request, at.relay_state, user, **respond))
