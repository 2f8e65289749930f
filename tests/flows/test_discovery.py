"""Choosing the municipality (discovery) when no client certificate arrives: the page, search, the remembered
choice, hints from the SP (``?municipality=``, Scoping/IDPList), and what cannot be shown (IsPassive).

The regional SP is the real pysaml2 demo SP; Kommun C's IdP is the real pysaml2 demo IdP."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from lxml import etree
from saml2.response import StatusNoPassive
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.config.loader import Settings, load_settings
from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from broker.reasons import NO_PASSIVE
from broker.session.store import RedisStore
from tests.factories.authnrequests import (
    ACS_URL as SP_ACS_URL,
)
from tests.factories.authnrequests import (
    NS,
    AuthnRequests,
    assert_refused,
    edit,
    error_page,
    open_browser,
    post_fields,
    posted_response,
    sp_accepts,
)
from tests.factories.idp import (
    FORM_TOKEN,
    FORM_TOKEN_COOKIE,
    IDP_ENTITY_ID,
    back_to_broker,
    discovery_login_id,
    form_token,
)
from tests.factories.municipality_choice import offered
from tests.factories.saml import BASE_URL, Browser, make_sp
from tests.flows.conftest import audit_lines

IDP_SSO = BASE_URL + "/demo-idp/sso?"
MUNICIPALITY_COOKIE = "__Host-broker_municipality"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
SAMLP = NS["samlp"]


@pytest.fixture(autouse=True)
def without_certificate(browser: Browser) -> None:
    browser.certificate_pem = None


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


# --- reading the page ----------------------------------------------------------------------------


@dataclass
class DiscoveryPage:
    lang: str | None = None
    inputs: list[dict[str, str | None]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # for= -> text (without the login method's span)
    methods: dict[str, str] = field(default_factory=dict)  # for= -> the login method's text
    _label_for: str | None = None
    _in_method: bool = False

    def options(self) -> dict[str, str]:
        """municipality id -> its label's text (without the login method)."""
        return {str(i["value"]): self.labels[str(i["id"])].strip()
                for i in self.inputs if i.get("type") == "radio"}

    def checked(self) -> list[str]:
        return [str(i["value"]) for i in self.inputs if i.get("type") == "radio" and "checked" in i]

    def visible_inputs(self) -> list[dict[str, str | None]]:
        return [i for i in self.inputs if i.get("type") != "hidden"]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = DiscoveryPage()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.page.lang = a.get("lang")
        elif tag == "input":
            self.page.inputs.append(a)
        elif tag == "label" and a.get("for"):
            self.page._label_for = a["for"]
            self.page.labels[str(a["for"])] = ""
        elif tag == "span" and "method" in (a.get("class") or "").split():
            self.page._in_method = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.page._label_for = None
        elif tag == "span":
            self.page._in_method = False

    def handle_data(self, data: str) -> None:
        target = self.page._label_for
        if target is None:
            return
        if self.page._in_method:
            self.page.methods[target] = self.page.methods.get(target, "") + data
        else:
            self.page.labels[target] += data


def discovery_page(response: TestResponse) -> DiscoveryPage:
    assert response.status_code == 200, (response.status_code, response.headers.get("X-Broker-Reason"))
    parser = _Parser()
    parser.feed(response.get_data(as_text=True))
    return parser.page


def at_idp(response: TestResponse) -> str:
    """The broker sent the browser straight to Kommun C's IdP (no page in between)."""
    assert response.status_code == 303, (response.status_code, response.headers.get("X-Broker-Reason"))
    location = response.headers["Location"]
    assert location.startswith(IDP_SSO), location
    return location


def choose(browser: Browser, login_id: str, municipality: str, remember: bool = False) -> TestResponse:
    form = {"login": login_id, "municipality": municipality, FORM_TOKEN: form_token(browser)}
    if remember:
        form["remember"] = "1"
    return browser.post("/discovery", form)


def cookie_attributes(response: TestResponse, name: str) -> tuple[str, set[str]] | None:
    """(value, attribute names in lower case) of the Set-Cookie for ``name``, or None."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = [p.strip() for p in header.split(";")]
        key, _, value = first.partition("=")
        if key == name:
            return value, {a.split("=", 1)[0].lower() for a in attributes}
    return None


def with_scoping(xml: bytes, provider_id: str) -> bytes:
    """The AuthnRequest with <samlp:Scoping><samlp:IDPList><samlp:IDPEntry ProviderID=.../> (SAML Core §3.4.1.2),
    the last child as the schema orders it."""
    def change(root: etree._Element) -> None:
        scoping = etree.SubElement(root, f"{{{SAMLP}}}Scoping")
        idp_list = etree.SubElement(scoping, f"{{{SAMLP}}}IDPList")
        etree.SubElement(idp_list, f"{{{SAMLP}}}IDPEntry", ProviderID=provider_id)

    return edit(xml, change)


def set_demo_sp_municipalities(config_dir: Path, municipalities: list[str]) -> None:
    path = config_dir / "service-providers" / "demo-sp.yaml"
    text = path.read_text()
    lines = [f"municipalities: [{', '.join(municipalities)}]" if line.startswith("municipalities:") else line
             for line in text.splitlines()]
    assert lines != text.splitlines()
    path.write_text("\n".join(lines) + "\n")


# --- 10. the page ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang_query", "lang", "names", "own_login"), [
    pytest.param("", "sv", {"kommun-a": "Kommun A", "kommun-b": "Kommun B", "kommun-c": "Kommun C"},
                 "kommunens egen inloggning", id="swedish-by-default"),
    pytest.param("&lang=en", "en", {"kommun-a": "Municipality A", "kommun-b": "Municipality B",
                                    "kommun-c": "Municipality C"}, "the municipality's own login", id="english"),
])
def test_discovery_lists_the_sps_municipalities(browser: Browser, sp: DemoSp, lang_query: str, lang: str,
                                                names: dict[str, str], own_login: str) -> None:
    first = browser.get(sp.login_url())
    assert first.headers.get("X-Broker-Reason") is None
    login_id = discovery_login_id(first)
    response = browser.get(f"/discovery?login={login_id}{lang_query}")
    page = discovery_page(response)

    assert page.lang == lang
    assert page.options() == names
    assert list(page.options()) == ["kommun-a", "kommun-b", "kommun-c"]
    assert page.checked() == []  # nothing chosen for the user
    assert own_login in page.methods["m-kommun-c"]
    assert own_login not in page.methods["m-kommun-a"]  # Kommun A's staff log in with their card
    search = [i for i in page.visible_inputs() if i.get("type") == "search"]
    assert len(search) == 1
    assert search[0]["name"] == "q"
    for visible in page.visible_inputs():  # every field has its label
        assert visible.get("id") in page.labels, visible
        assert page.labels[str(visible["id"])].strip()
    if lang == "sv":
        assert discovery_page(first).options() == names  # the first page, at the SSO endpoint, too


def test_search_filters_and_does_not_consume_the_login(browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    login_id = discovery_login_id(browser.get(sp.login_url()))

    found = discovery_page(browser.get(f"/discovery?login={login_id}&q={quote('kommun c')}"))
    assert found.options() == {"kommun-c": "Kommun C"}
    found = discovery_page(browser.get(f"/discovery?login={login_id}&q=municipality%20c&lang=en"))
    assert found.options() == {"kommun-c": "Municipality C"}
    nothing = discovery_page(browser.get(f"/discovery?login={login_id}&q=stockholm"))
    assert nothing.options() == {}

    request, _ = idp.parse_redirect(at_idp(choose(browser, login_id, "kommun-c")))  # still pending after GETs
    assert request.message.issuer.text == BASE_URL + "/saml/sp/metadata"


@pytest.mark.parametrize(("lang", "words", "names"), [
    pytest.param("sv", "Visa alla kommuner", ["Kommun A", "Kommun B", "Kommun C"], id="sv"),
    pytest.param("en", "Show all municipalities", ["Municipality A", "Municipality B", "Municipality C"], id="en"),
])
def test_a_search_that_finds_nothing_offers_the_whole_list_not_an_empty_choice(
        browser: Browser, sp: DemoSp, lang: str, words: str, names: list[str]) -> None:
    """With no municipality to choose there is no Continue button: it posted no municipality, and the pending
    login ended refused (municipality_unknown, "the chosen municipality cannot log in"). The page links to the
    whole list instead, for the same login."""
    login_id = discovery_login_id(browser.get(sp.login_url()))
    body = browser.get(f"/discovery?login={login_id}&q=stockholm&lang={lang}").get_data(as_text=True)
    assert 'method="post"' not in body
    assert 'name="municipality"' not in body
    link = re.search(r'<a href="(/discovery\?login=[^"]+)">' + words + "</a>", body)
    assert link is not None
    assert list(discovery_page(browser.get(link.group(1).replace("&amp;", "&"))).options().values()) == names


@pytest.mark.parametrize("typed", [
    pytest.param("västerås", id="composed"),
    pytest.param(unicodedata.normalize("NFD", "västerås"), id="decomposed-as-pasted-from-a-pdf"),
    pytest.param("VÄSTERÅS", id="upper-case"),
    pytest.param(unicodedata.normalize("NFD", "VÄSTERÅS STAD"), id="upper-case-decomposed"),
])
def test_search_finds_a_name_whatever_unicode_form_it_is_typed_in(config_dir: Path, store: RedisStore,
                                                                  demo_material: Any, typed: str) -> None:
    path = config_dir / "municipalities" / "kommun-c.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["name"] = {"sv": "Västerås stad", "en": "Västerås municipality"}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    app = create_app(load_settings(config_dir), store=store, instance_id="test")
    svc = app.extensions["broker"]
    sp = make_sp(demo_material.root, svc.metadata.document(), svc.settings.broker.idp.entity_id)
    browser = open_browser(app, None)
    login_id = discovery_login_id(browser.get(sp.login_url()))

    assert offered(browser.get(f"/discovery?login={login_id}&q={quote(typed)}")) == ["kommun-c"]


# --- 11. the choice, remembered; hints; refusals ---------------------------------------------------


@pytest.mark.parametrize("remember", [pytest.param(True, id="remember"), pytest.param(False, id="do-not-remember")])
def test_choice_is_remembered_only_when_asked(browser: Browser, sp: DemoSp, remember: bool) -> None:
    login_id = discovery_login_id(browser.get(sp.login_url()))
    response = choose(browser, login_id, "kommun-c", remember=remember)
    at_idp(response)
    cookie = cookie_attributes(response, MUNICIPALITY_COOKIE)
    if not remember:
        assert cookie is None
        return
    assert cookie is not None
    value, attributes = cookie
    assert value == "kommun-c"
    assert {"secure", "httponly"} <= attributes


def test_remember_my_choice_is_not_ticked_until_the_user_ticks_it(browser: Browser, sp: DemoSp) -> None:
    """The cookie is kept for a year and skips the page for whoever uses the browser next (a shared PC in home
    care): it is stored only at the user's own request, so the box starts unticked (a ticked box is no request,
    CJEU C-673/17 Planet49 on consent to storing information in the browser)."""
    page = discovery_page(browser.get(f"/discovery?login={discovery_login_id(browser.get(sp.login_url()))}"))
    [box] = [i for i in page.inputs if i.get("name") == "remember"]
    assert box.get("type") == "checkbox"
    assert "checked" not in box
    assert page.labels[str(box["id"])].strip()


def test_a_choice_without_remember_forgets_the_one_remembered_before(browser: Browser, sp: DemoSp,
                                                                     idp: DemoIdp) -> None:
    """Kommun C was remembered (on a shared PC: by the previous user); its IdP refuses, and the user chooses again
    on the page, without "remember my choice". The remembered choice is forgotten: it went on skipping the page
    for Kommun C at every later login in this browser."""
    browser.client.set_cookie(MUNICIPALITY_COOKIE, "kommun-c", domain="localhost")
    request, relay_state = idp.parse_redirect(at_idp(browser.get(sp.login_url())))
    page = back_to_broker(browser, idp.error(request, relay_state, "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"))
    link = re.search(r'<a href="(/discovery\?login=[^"]+)">', page.get_data(as_text=True))
    assert link is not None
    again = browser.get(html.unescape(link.group(1)))
    response = choose(browser, discovery_login_id(again), "kommun-a", remember=False)
    assert_refused(response, "certificate_missing")  # the new choice is taken
    forgotten = cookie_attributes(response, MUNICIPALITY_COOKIE)
    assert forgotten is not None
    assert forgotten[0] == ""
    assert {"expires", "secure", "httponly"} <= forgotten[1]
    assert browser.client.get_cookie(MUNICIPALITY_COOKIE) is None
    assert discovery_page(browser.get(sp.login_url())).options()  # the next login asks again


def test_remembered_choice_skips_discovery_in_a_new_browser_session(browser: Browser, sp: DemoSp,
                                                                     idp: DemoIdp) -> None:
    response = choose(browser, discovery_login_id(browser.get(sp.login_url())), "kommun-c", remember=True)
    remembered = cookie_attributes(response, MUNICIPALITY_COOKIE)
    assert remembered is not None

    later = open_browser(browser.client.application, None)  # browser restarted: only the lasting cookie is left
    later.client.set_cookie(MUNICIPALITY_COOKIE, remembered[0], domain="localhost")
    request, _ = idp.parse_redirect(at_idp(later.get(sp.login_url())))
    assert request.message.destination == IDP_SSO.rstrip("?")


def test_remembered_choice_comes_with_an_sps_cross_site_post(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                             craft: AuthnRequests) -> None:
    """An SP with the HTTP-POST binding delivers its AuthnRequest by a cross-site POST from its own page, and a
    browser sends only its SameSite=None cookies with that (RFC 6265bis §5.8.3.7: a Lax cookie comes with a
    cross-site top-level navigation only when its method is safe). The remembered choice must come along, or it
    would skip discovery for HTTP-Redirect SPs only and be silently ignored for every POST one."""
    response = choose(browser, discovery_login_id(browser.get(sp.login_url())), "kommun-c", remember=True)
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(MUNICIPALITY_COOKIE + "="))
    first, *attributes = [part.strip() for part in header.split(";")]
    flags = {a.split("=", 1)[0].lower(): a.partition("=")[2].lower() for a in attributes}

    later = open_browser(browser.client.application, None)  # what the browser sends with the SP's page's POST
    if flags.get("samesite") == "none":
        later.client.set_cookie(MUNICIPALITY_COOKIE, first.partition("=")[2], domain="localhost")
    crafted = craft.build(sign=True)
    request, _ = idp.parse_redirect(at_idp(later.post("/saml/idp/sso", post_fields(crafted.xml, "/"))))
    assert request.message.destination == IDP_SSO.rstrip("?")


def test_a_discovery_page_for_an_sps_cross_site_post_keeps_the_other_tabs_pages_valid(
        browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    """Two SPs' logins in two tabs, the second by HTTP-POST: the browser sends no Lax cookie with that cross-site
    POST, so a discovery page made in answer to it could not see the form secret the first tab's page is bound to,
    and a new one would replace it (docs/security.md: the secret is kept so that pages in several tabs stay
    valid). The broker sends the POST's browser on to the page by a redirect (a top-level GET, which carries
    Lax cookies), and the first tab's choice still counts."""
    first_tab = browser.get(sp.login_url())
    first_login, first_token = discovery_login_id(first_tab), form_token(browser)
    secret = browser.client.get_cookie(FORM_TOKEN_COOKIE)
    assert secret is not None

    browser.client.delete_cookie(FORM_TOKEN_COOKIE, domain="localhost")  # withheld from the cross-site POST
    answer = browser.post("/saml/idp/sso", post_fields(craft.build(sign=True).xml, "/"))
    if browser.client.get_cookie(FORM_TOKEN_COOKIE) is None:  # not replaced: still in the browser's jar
        browser.client.set_cookie(FORM_TOKEN_COOKIE, secret.value, domain="localhost")
    if answer.status_code == 303:
        answer = browser.get(answer.headers["Location"])
    assert discovery_login_id(answer) != first_login  # the second tab's page

    response = browser.post("/discovery", {"login": first_login, "municipality": "kommun-c", FORM_TOKEN: first_token})
    at_idp(response)


def test_the_chosen_language_holds_on_the_page_answering_an_sps_cross_site_post(
        browser: Browser, craft: AuthnRequests, users: Path) -> None:
    """The user chose English on a broker page; an SP's HTTP-POST AuthnRequest then comes by a cross-site POST,
    with the browser's SameSite=None cookies only. The page answering it (here: her card is refused) must still be
    in the language she chose, not in the one her browser's Accept-Language names."""
    app = browser.client.application  # browsers of their own: the fixture's keeps its last request's context
    chosen = open_browser(app, None).get("/diagnose?lang=en")
    header = next(h for h in chosen.headers.getlist("Set-Cookie") if h.startswith("broker_lang="))
    first, *attributes = [part.strip() for part in header.split(";")]
    flags = {a.split("=", 1)[0].lower(): a.partition("=")[2].lower() for a in attributes}

    later = open_browser(app, (users / "fatima.pem").read_text())
    later.headers = {"Accept-Language": "sv-SE,sv;q=0.9"}
    if flags.get("samesite") == "none":
        later.client.set_cookie("broker_lang", first.partition("=")[2], domain="localhost")
    page = later.post("/saml/idp/sso", post_fields(craft.build(sign=True).xml, "/"))
    assert_refused(page, "issuer_unknown")
    assert '<html lang="en">' in page.get_data(as_text=True)


@pytest.mark.parametrize("hint", [pytest.param("kommun-c", id="municipality-id"),
                                  pytest.param(IDP_ENTITY_ID, id="idp-entity-id")])
@pytest.mark.parametrize("key", [pytest.param("municipality", id="key-as-written"),
                                 pytest.param("%6Dunicipality", id="key-percent-encoded")])
def test_municipality_hint_on_the_sso_url_skips_discovery(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                          hint: str, key: str) -> None:
    # the query is parsed for the hint only when a key may decode to it (broker.web.services.query_parameter)
    response = browser.get(sp.login_url() + f"&{key}=" + quote(hint, safe=""))
    request, _ = idp.parse_redirect(at_idp(response))
    assert request.message.assertion_consumer_service_url == BASE_URL + "/saml/sp/acs"


@pytest.mark.parametrize("login_id", [pytest.param("unknown", id="unknown"), pytest.param("used", id="used")])
def test_discovery_post_with_unknown_or_used_login(browser: Browser, sp: DemoSp, login_id: str,
                                                   config_dir: Path) -> None:
    real = discovery_login_id(browser.get(sp.login_url()))
    if login_id == "used":
        at_idp(choose(browser, real, "kommun-c"))
        login_id = real
    else:
        login_id = "x" * len(real)
    assert_refused(choose(browser, login_id, "kommun-c"), "login_unknown")
    rejected = [e for e in audit_lines(config_dir) if e["event"] == "saml_request_rejected"]
    assert [e["reason"] for e in rejected] == ["login_unknown"]


def test_discovery_get_with_unknown_login(browser: Browser, config_dir: Path) -> None:
    page = browser.get("/discovery?login=nosuchlogin")
    assert_refused(page, "login_unknown")
    # the reference ID the page shows leads to the audit record, as for the POST
    reference, _ = error_page(page)
    rejected = [e for e in audit_lines(config_dir) if e["event"] == "saml_request_rejected"]
    assert [(e["reason"], e["correlation_id"]) for e in rejected] == [("login_unknown", reference)]


def test_choosing_a_municipality_that_does_not_exist(browser: Browser, sp: DemoSp, config_dir: Path) -> None:
    login_id = discovery_login_id(browser.get(sp.login_url()))
    assert_refused(choose(browser, login_id, "kommun-x"), "municipality_unknown")
    refused = [e for e in audit_lines(config_dir) if e["event"] == "login_refused"]
    assert [e["reason"] for e in refused] == ["municipality_unknown"]


def test_a_refusal_after_the_choice_names_the_municipality_in_the_audit_trail(browser: Browser, sp: DemoSp,
                                                                              config_dir: Path) -> None:
    """Kommun A chosen, no card: the refusal is Kommun A's (`broker audit query --municipality kommun-a`, the
    report's failures by municipality); it was recorded without a municipality, though the page named it."""
    login_id = discovery_login_id(browser.get(sp.login_url()))
    page = choose(browser, login_id, "kommun-a")
    assert_refused(page, "certificate_missing")
    reference, _ = error_page(page)
    refused = [e for e in audit_lines(config_dir) if e["event"] == "login_refused"]
    assert [(e["reason"], e["correlation_id"], e.get("municipality")) for e in refused] == [
        ("certificate_missing", reference, "kommun-a")]


def test_a_remembered_municipality_whose_card_the_browser_lacks_can_be_changed(browser: Browser, sp: DemoSp,
                                                                              idp: DemoIdp) -> None:
    """On a shared PC the previous user's municipality (Kommun A, card login) is remembered; the next user has no
    such card and logs in through her own municipality's IdP. The certificate_missing page links to the choice for
    the same pending login: without it she could go on only by clearing the browser's cookies."""
    browser.client.set_cookie(MUNICIPALITY_COOKIE, "kommun-a", domain="localhost")
    page = browser.get(sp.login_url())
    assert_refused(page, "certificate_missing")
    link = re.search(r'<a href="(/discovery\?login=[^"]+)">Välj en annan kommun</a>', page.get_data(as_text=True))
    assert link is not None
    again = browser.get(html.unescape(link.group(1)))
    assert list(discovery_page(again).options()) == ["kommun-a", "kommun-b", "kommun-c"]
    request, _ = idp.parse_redirect(at_idp(choose(browser, discovery_login_id(again), "kommun-c")))
    assert request.message.assertion_consumer_service_url == BASE_URL + "/saml/sp/acs"


class TestRestrictedServiceProvider:
    @pytest.fixture
    def settings(self, config_dir: Path, municipalities: list[str]) -> Settings:
        set_demo_sp_municipalities(config_dir, municipalities)
        return load_settings(config_dir)

    @pytest.mark.parametrize("municipalities", [["kommun-c"]], ids=["only-kommun-c"])
    def test_sp_with_one_municipality_never_shows_discovery(self, browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                            municipalities: list[str]) -> None:
        # even a remembered choice of another municipality does not matter
        browser.client.set_cookie(MUNICIPALITY_COOKIE, "kommun-a", domain="localhost")
        request, _ = idp.parse_redirect(at_idp(browser.get(sp.login_url())))
        assert request.message.assertion_consumer_service_url == BASE_URL + "/saml/sp/acs"

    @pytest.mark.parametrize("municipalities", [
        pytest.param(["kommun-a"], id="only-kommun-a"),
        pytest.param(["kommun-a", "kommun-b"], id="card-logins-only"),
    ])
    def test_without_another_way_to_log_in_the_certificate_page_offers_no_other_choice(
            self, browser: Browser, sp: DemoSp, municipalities: list[str]) -> None:
        browser.client.set_cookie(MUNICIPALITY_COOKIE, "kommun-a", domain="localhost")
        page = browser.get(sp.login_url())
        assert_refused(page, "certificate_missing")
        assert "/discovery?login=" not in page.get_data(as_text=True)

    @pytest.mark.parametrize("municipalities", [["kommun-a", "kommun-c"]], ids=["kommun-a-and-c"])
    def test_choosing_a_municipality_the_sp_does_not_accept(self, browser: Browser, sp: DemoSp, config_dir: Path,
                                                            municipalities: list[str]) -> None:
        first = browser.get(sp.login_url())
        assert discovery_page(first).options() == {"kommun-a": "Kommun A", "kommun-c": "Kommun C"}
        response = choose(browser, discovery_login_id(first), "kommun-b")  # a real municipality, not offered
        assert_refused(response, "municipality_unknown")
        assert cookie_attributes(response, MUNICIPALITY_COOKIE) is None


# --- 12. IsPassive --------------------------------------------------------------------------------


def test_is_passive_with_a_choice_to_make_gets_no_passive(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                          config_dir: Path) -> None:
    crafted = craft.build(is_passive="true")
    posted = posted_response(browser.get(craft.redirect(crafted, relay_state="q")))  # no page: a form to the SP
    assert posted.action == SP_ACS_URL
    assert posted.status == (RESPONDER, NO_PASSIVE)
    assert posted.fields["RelayState"] == "q"
    with pytest.raises(StatusNoPassive):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    events = [(e["event"], e.get("reason")) for e in audit_lines(config_dir)]
    assert events == [("login_started", None), ("login_refused", "passive_login_impossible"),
                      ("error_response_issued", "passive_login_impossible")]


# --- 13. Scoping ----------------------------------------------------------------------------------


def test_scoping_idp_list_skips_discovery(browser: Browser, craft: AuthnRequests, idp: DemoIdp) -> None:
    xml = with_scoping(craft.build().xml, IDP_ENTITY_ID)
    request, _ = idp.parse_redirect(at_idp(browser.get(craft.redirect(xml))))
    assert request.message.issuer.text == BASE_URL + "/saml/sp/metadata"


def test_scoping_naming_an_unknown_idp_shows_discovery(browser: Browser, craft: AuthnRequests) -> None:
    xml = with_scoping(craft.build().xml, "https://idp.elsewhere.example/metadata")
    page = discovery_page(browser.get(craft.redirect(xml)))
    assert list(page.options()) == ["kommun-a", "kommun-b", "kommun-c"]


def test_the_discovery_page_again_is_recorded_under_its_reference(browser: Browser, sp: DemoSp, app: Any,
                                                                  config_dir: Path) -> None:
    """A search or language switch continues the pending login, as the choice does: what the request records (a
    certificate header from outside the trusted proxies, here) is filed under the reference the page shows."""
    first = browser.get(sp.login_url())
    login_id = discovery_login_id(first)
    browser.headers[app.extensions["broker"].flow.certificate_sources.header] = "forged"
    again = browser.get(f"/discovery?login={login_id}&lang=en")
    reference = re.search(r'class="refid">([0-9A-F-]+)<', again.get_data(as_text=True))
    assert reference is not None
    forged = [e for e in audit_lines(config_dir) if e["event"] == "proxy_header_untrusted"]
    assert [(e["reason"], e["correlation_id"]) for e in forged] == [("proxy_header_untrusted", reference.group(1))]


def test_a_remembered_choice_can_be_changed_when_its_idp_refuses(browser: Browser, sp: DemoSp,
                                                                 idp: DemoIdp) -> None:
    """A remembered municipality skips the page, and its IdP's refusal page offered only "try again" (the same
    IdP) and the way back: a wrong remembered choice could not be undone without clearing cookies. The page
    links to the choice for the same pending login."""
    browser.client.set_cookie(MUNICIPALITY_COOKIE, "kommun-c", domain="localhost")
    request, relay_state = idp.parse_redirect(at_idp(browser.get(sp.login_url())))
    page = back_to_broker(browser, idp.error(request, relay_state, "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"))
    assert_refused(page, "upstream_status")
    link = re.search(r'<a href="(/discovery\?login=[^"]+)">Välj en annan kommun</a>', page.get_data(as_text=True))
    assert link is not None
    again = browser.get(link.group(1).replace("&amp;", "&"))
    assert list(discovery_page(again).options()) == ["kommun-a", "kommun-b", "kommun-c"]
    # the new choice is taken (Kommun A logs in with its card, which this browser lacks), not the remembered IdP
    assert_refused(choose(browser, discovery_login_id(again), "kommun-a"), "certificate_missing")
