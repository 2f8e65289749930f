"""Proxying limits and hints through the whole flow (SAML Core §3.4.1.2-§3.4.1.5.1, §2.5.1.6, §3.4.1.1).

The broker proxies when a municipality logs in through its own IdP (Kommun C): an SP's Scoping (IDPList, ProxyCount,
RequesterID) steers and limits that, and the municipal IdP's ProxyRestriction limits what the broker may assert
on the strength of its assertion. Requests are crafted from the real pysaml2 SP's AuthnRequest; Kommun C is the
demo's pysaml2 IdP, whose real Responses are changed and signed again with its own key where a case needs it.
"""

from __future__ import annotations

import base64
import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from saml2 import samlp

from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from tests.corpus.upstream.generate import NS, SAML, proxy_restriction, sign
from tests.factories.authnrequests import ACS_URL as SP_ACS_URL
from tests.factories.authnrequests import (
    SP_ENTITY_ID,
    AuthnRequests,
    assert_refused,
    edit,
    post_fields,
    posted_response,
    status_codes,
)
from tests.factories.idp import ACS_URL, IDP_ENTITY_ID, KARIN, to_idp
from tests.factories.saml import Browser
from tests.flows.conftest import audit_lines
from tests.flows.test_upstream_attacks import assertion_of, idp_keys, tampered

SAMLP = NS["samlp"]
UNKNOWN_IDP = "https://idp.elsewhere.example/metadata"
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"


@pytest.fixture
def craft(sp: DemoSp, demo_material: Any) -> AuthnRequests:
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


def scoped(xml: bytes, *providers: str, proxy_count: str | None = None, requesters: tuple[str, ...] = ()) -> bytes:
    """``xml`` with a Scoping: an IDPList of ``providers``, ``proxy_count`` and RequesterIDs."""
    def change(root: etree._Element) -> None:
        scoping = etree.SubElement(root, f"{{{SAMLP}}}Scoping")
        if proxy_count is not None:
            scoping.set("ProxyCount", proxy_count)
        if providers:
            idp_list = etree.SubElement(scoping, f"{{{SAMLP}}}IDPList")
            for provider in providers:
                etree.SubElement(idp_list, f"{{{SAMLP}}}IDPEntry", ProviderID=provider)
        for requester in requesters:
            etree.SubElement(scoping, f"{{{SAMLP}}}RequesterID").text = requester
    return edit(xml, change)


def upstream_request(location: str) -> etree._Element:
    """The AuthnRequest the broker sent Kommun C's IdP (HTTP-Redirect)."""
    query = parse_qs(urlsplit(location).query)
    return etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15))


# --- the SP's Scoping ------------------------------------------------------------------------------------------


def test_proxy_count_zero_without_a_certificate_is_proxy_count_exceeded(browser: Browser,
                                                                         craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    xml = scoped(craft.build().xml, IDP_ENTITY_ID, proxy_count="0")
    posted = posted_response(browser.get(craft.redirect(xml)))
    assert status_codes(posted.root) == (STATUS + "Responder", STATUS + "ProxyCountExceeded")
    assert posted.root.find("saml:Assertion", NS) is None


def test_proxy_count_zero_still_allows_the_brokers_own_certificate_login(browser: Browser,
                                                                        craft: AuthnRequests) -> None:
    xml = scoped(craft.build().xml, proxy_count="0")
    posted = posted_response(browser.get(craft.redirect(xml)))
    assert status_codes(posted.root) == (STATUS + "Success", None)


@pytest.mark.parametrize(("proxy_count", "requesters", "expected_count", "expected_requesters"), [
    pytest.param("2", (), "1", (SP_ENTITY_ID,), id="count-2-passed-on-as-1"),
    pytest.param("1", ("https://portal.example/",), "0", ("https://portal.example/", SP_ENTITY_ID),
                 id="count-1-passed-on-as-0-with-the-sps-requesters"),
    pytest.param(None, (), None, (SP_ENTITY_ID,), id="no-limit-the-sp-named-as-requester"),
])
def test_proxied_request_carries_the_scoping_on(browser: Browser, craft: AuthnRequests, proxy_count: str | None,
                                                requesters: tuple[str, ...], expected_count: str | None,
                                                expected_requesters: tuple[str, ...]) -> None:
    browser.certificate_pem = None
    xml = scoped(craft.build().xml, IDP_ENTITY_ID, proxy_count=proxy_count, requesters=requesters)
    page = browser.get(craft.redirect(xml))
    assert page.status_code == 303, page.headers.get("X-Broker-Reason")
    scoping = upstream_request(page.headers["Location"]).find("samlp:Scoping", NS)
    assert scoping is not None
    assert scoping.get("ProxyCount") == expected_count
    assert tuple(e.text for e in scoping.findall("samlp:RequesterID", NS)) == expected_requesters


@pytest.mark.parametrize("providers", [
    pytest.param((IDP_ENTITY_ID,), id="only-entry"),
    pytest.param((UNKNOWN_IDP, IDP_ENTITY_ID), id="second-entry-the-only-known"),
    pytest.param(("kommun-c",), id="municipality-id"),
])
def test_the_one_suggested_municipality_open_to_the_sp_is_gone_to_at_once(browser: Browser, craft: AuthnRequests,
                                                                        providers: tuple[str, ...]) -> None:
    browser.certificate_pem = None
    page = browser.get(craft.redirect(scoped(craft.build().xml, *providers)))
    assert page.status_code == 303
    assert "/demo-idp/sso" in page.headers["Location"]


def test_several_suggested_municipalities_narrow_the_choice(browser: Browser, craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    page = browser.get(craft.redirect(scoped(craft.build().xml, "kommun-a", UNKNOWN_IDP, IDP_ENTITY_ID)))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'value="kommun-a"' in text
    assert 'value="kommun-c"' in text
    assert 'value="kommun-b"' not in text


def test_no_suggestion_open_to_the_sp_leaves_the_whole_choice(browser: Browser, craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    page = browser.get(craft.redirect(scoped(craft.build().xml, UNKNOWN_IDP)))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert all(f'value="{m}"' in text for m in ("kommun-a", "kommun-b", "kommun-c"))


@pytest.mark.parametrize(("scoping", "detail"), [
    pytest.param({"proxy_count": "-1"}, "ProxyCount", id="negative-proxy-count"),
    pytest.param({"proxy_count": "two"}, "ProxyCount", id="proxy-count-not-a-number"),
])
def test_an_unreadable_proxy_count_is_a_malformed_request(browser: Browser, craft: AuthnRequests, config_dir: Path,
                                                          scoping: dict[str, Any], detail: str) -> None:
    # a limit that cannot be read cannot be honoured; the SP and its ACS are known, so the SP is answered (SAML
    # Core §3.4.1.4) with the top-level Requester alone: the fault is the request's (§3.2.2.2)
    crafted = craft.build()
    posted = posted_response(browser.get(craft.redirect(scoped(crafted.xml, **scoping))))
    assert (posted.action, posted.root.get("InResponseTo")) == (SP_ACS_URL, crafted.request_id)
    assert status_codes(posted.root) == ("urn:oasis:names:tc:SAML:2.0:status:Requester", None)
    (refusal,) = [e for e in audit_lines(config_dir) if e["event"] == "saml_request_rejected"]
    assert (refusal["reason"], refusal["sp"]) == ("saml_request_malformed", SP_ENTITY_ID)
    assert detail in str(refusal["detail"])


def test_unusable_and_surplus_scoping_entries_are_passed_over(browser: Browser, craft: AuthnRequests) -> None:
    # IDPList is advisory and RequesterID informational (SAML Core §3.4.1.2-§3.4.1.3): an empty or overlong entry
    # is skipped, and of 40 only the first 32 are kept and passed on
    browser.certificate_pem = None
    requesters = ("", "https://x.example/" + "a" * 2000, *(f"https://r{n}.example/" for n in range(40)))
    page = browser.get(craft.redirect(scoped(craft.build().xml, "", IDP_ENTITY_ID, requesters=requesters)))
    assert page.status_code == 303, page.headers.get("X-Broker-Reason")
    scoping = upstream_request(page.headers["Location"]).find("samlp:Scoping", NS)
    assert scoping is not None
    passed_on = [e.text for e in scoping.findall("samlp:RequesterID", NS)]
    assert passed_on == [*(f"https://r{n}.example/" for n in range(32)), SP_ENTITY_ID]


def test_long_requester_ids_are_cut_to_keep_the_upstream_redirect_short(browser: Browser,
                                                                         craft: AuthnRequests) -> None:
    # 32 RequesterIDs of 1,000 characters each would make the Redirect URL to the IdP some 40 KB long, past what
    # web servers accept (nginx: 8 KB per header line): the first that fit in 2,048 characters are passed on, and
    # the SP itself always
    browser.certificate_pem = None
    requesters = tuple(f"https://r{n:02}.example/" + random.Random(n).randbytes(490).hex() for n in range(32))
    scoping = samlp.Scoping(idp_list=samlp.IDPList(idp_entry=[samlp.IDPEntry(provider_id=IDP_ENTITY_ID)]),
                            requester_id=[samlp.RequesterID(text=requester) for requester in requesters])
    page = browser.post("/saml/idp/sso", post_fields(craft.build(sign=True, scoping=scoping).xml))
    assert page.status_code == 303, page.headers.get("X-Broker-Reason")
    assert len(page.headers["Location"]) < 6000
    scoping = upstream_request(page.headers["Location"]).find("samlp:Scoping", NS)
    assert scoping is not None
    passed_on = [e.text for e in scoping.findall("samlp:RequesterID", NS)]
    assert passed_on == [*requesters[:2], SP_ENTITY_ID]


def test_proxy_count_zero_is_not_answered_from_a_federated_session(browser: Browser, craft: AuthnRequests,
                                                                    idp: DemoIdp, demo_material: Any) -> None:
    # the session rests on Kommun C's IdP: answering from it is a proxied login too (SAML Core §3.4.1.5.1)
    posted_response(federated(browser, craft, idp, demo_material, lambda assertion: None))
    hinted = scoped(craft.build().xml, IDP_ENTITY_ID, proxy_count="0")
    posted = posted_response(browser.get(craft.redirect(hinted)))
    assert status_codes(posted.root) == (STATUS + "Responder", STATUS + "ProxyCountExceeded")
    # not hinted: of the SP's municipalities only those with cards remain, and no card was presented
    assert_refused(browser.get(craft.redirect(scoped(craft.build().xml, proxy_count="0"))), "certificate_missing")
    # without the limit the session answers
    again = posted_response(browser.get(craft.redirect(craft.build())))
    assert status_codes(again.root) == (STATUS + "Success", None)


# --- the municipal IdP's ProxyRestriction and AuthenticatingAuthority --------------------------------------------


def federated(browser: Browser, craft: AuthnRequests, idp: DemoIdp, demo_material: Any,
              change: Callable[[etree._Element], None], *, force: bool = False) -> Any:
    """A federated login through Kommun C whose Assertion ``change`` alters; the broker's answer at the ACS
    (``force``: with ForceAuthn, past the browser's session)."""
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(craft.redirect(scoped(craft.build(force_authn=force or None).xml,
                                                                IDP_ENTITY_ID))))
    post = idp.respond(at.request, at.relay_state, KARIN)

    def resign(root: etree._Element) -> None:
        assertion = assertion_of(root)
        change(assertion)
        sign(assertion, idp_keys(demo_material))
    return browser.post(ACS_URL, tampered(post, resign))


@pytest.mark.parametrize(("restriction", "expected_count", "expected_audiences"), [
    pytest.param(proxy_restriction("2"), "1", (), id="count-2-carried-on-as-1"),
    pytest.param(proxy_restriction("1", SP_ENTITY_ID), "0", (SP_ENTITY_ID,), id="count-1-listing-the-sp"),
    pytest.param(proxy_restriction(None, SP_ENTITY_ID, "https://other.example/"), None,
                 (SP_ENTITY_ID, "https://other.example/"), id="audiences-only"),
])
def test_the_brokers_assertion_carries_the_idps_proxy_restriction_on(
        browser: Browser, craft: AuthnRequests, idp: DemoIdp, demo_material: Any,
        restriction: Callable[[etree._Element], None], expected_count: str | None,
        expected_audiences: tuple[str, ...]) -> None:
    posted = posted_response(federated(browser, craft, idp, demo_material, restriction))
    assert status_codes(posted.root) == (STATUS + "Success", None)
    carried = posted.root.find("saml:Assertion/saml:Conditions/saml:ProxyRestriction", NS)
    assert carried is not None
    assert carried.get("Count") == expected_count
    assert tuple(a.text for a in carried.findall("saml:Audience", NS)) == expected_audiences


def test_an_sp_outside_the_idps_proxy_restriction_gets_no_assertion(browser: Browser, craft: AuthnRequests,
                                                                    idp: DemoIdp, demo_material: Any) -> None:
    page = federated(browser, craft, idp, demo_material, proxy_restriction("3", "https://only-this-sp.example/metadata"))
    assert_refused(page, "upstream_proxy_restricted")
    # no session was opened on the strength of it: the next request asks the IdP again
    browser.certificate_pem = None
    again = browser.get(craft.redirect(scoped(craft.build().xml, IDP_ENTITY_ID)))
    assert again.status_code == 303
    assert "/demo-idp/sso" in again.headers["Location"]


def authorities(*names: str) -> Callable[[etree._Element], None]:
    """The IdP's Assertion naming ``names`` as its AuthenticatingAuthority entries (pysaml2 names itself)."""
    def change(assertion: etree._Element) -> None:
        context = assertion.find("saml:AuthnStatement/saml:AuthnContext", NS)
        assert context is not None
        for old in context.findall("saml:AuthenticatingAuthority", NS):
            context.remove(old)
        for name in names:
            etree.SubElement(context, f"{{{SAML}}}AuthenticatingAuthority").text = name
    return change


@pytest.mark.parametrize(("named", "expected"), [
    pytest.param((), (IDP_ENTITY_ID,), id="none-named"),
    pytest.param((IDP_ENTITY_ID,), (IDP_ENTITY_ID,), id="the-idp-names-itself"),
    pytest.param(("https://hub.example/idp",), ("https://hub.example/idp", IDP_ENTITY_ID), id="an-earlier-idp"),
])
def test_the_brokers_assertion_names_the_authenticating_idps(browser: Browser, craft: AuthnRequests,
                                                            idp: DemoIdp, demo_material: Any,
                                                            named: tuple[str, ...], expected: tuple[str, ...]) -> None:
    posted = posted_response(federated(browser, craft, idp, demo_material, authorities(*named)))
    found = posted.root.findall("saml:Assertion/saml:AuthnStatement/saml:AuthnContext/saml:AuthenticatingAuthority",
                                NS)
    assert tuple(a.text for a in found) == expected


def test_a_certificate_login_names_no_authenticating_authority(browser: Browser, craft: AuthnRequests) -> None:
    posted = posted_response(browser.get(craft.redirect(craft.build())))
    assert posted.root.find(".//saml:AuthenticatingAuthority", NS) is None
    assert posted.root.find(".//saml:ProxyRestriction", NS) is None


def test_a_certificate_login_replacing_a_federated_session_rests_on_the_certificate_alone(
        browser: Browser, idp: DemoIdp, craft: AuthnRequests, demo_material: Any, users: Path) -> None:
    # Karin logs in through Kommun C's IdP, whose assertion restricts passing it on to another SP; then Anna
    # logs in with her own card in the same browser (ForceAuthn). The replaced session's IdP record stays for
    # single logout, but Anna's assertion names no IdP and carries none of its restrictions (SAML Core §2.7.2.2)
    answer = federated(browser, craft, idp, demo_material, proxy_restriction("2", SP_ENTITY_ID))
    assert posted_response(answer).root.find(".//saml:ProxyRestriction", NS) is not None
    browser.certificate_pem = (users / "anna.pem").read_text()
    posted = posted_response(browser.get(craft.redirect(craft.build(force_authn=True))))
    assert status_codes(posted.root) == (STATUS + "Success", None)
    assert posted.root.find(".//saml:AuthenticatingAuthority", NS) is None
    assert posted.root.find(".//saml:ProxyRestriction", NS) is None


def test_a_refused_federated_login_leaves_the_browsers_session_as_it_was(
        browser: Browser, craft: AuthnRequests, idp: DemoIdp, demo_material: Any) -> None:
    # Anna is logged in with her card; in the same browser a federated login whose IdP restricts its assertion
    # to another SP is refused before her session is replaced: her session still answers
    first = posted_response(browser.get(craft.redirect(craft.build())))
    assert status_codes(first.root) == (STATUS + "Success", None)
    anna = browser.certificate_pem
    refused = federated(browser, craft, idp, demo_material,
                        proxy_restriction("3", "https://only-this-sp.example/metadata"), force=True)
    assert_refused(refused, "upstream_proxy_restricted")
    browser.certificate_pem = anna
    again = posted_response(browser.get(craft.redirect(craft.build())))
    assert status_codes(again.root) == (STATUS + "Success", None)
    assert again.root.find(".//saml:AuthenticatingAuthority", NS) is None
