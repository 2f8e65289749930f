"""Attacks on the broker's ACS that only the whole flow can judge (the corpus cases marked ``decided_by: flow``,
and the size limit): replay, unsolicited Responses, InResponseTo that names no pending request, oversized
messages.

Each test starts a real federated login (demo SP → broker → Kommun C's pysaml2 IdP), takes the IdP's real
Response to THAT request, tampers with it where the case needs (decode, change, re-sign with the IdP's own key
where the change is inside the signed Assertion, re-encode) and posts it to /saml/sp/acs. The verdict is read
from the broker's page (X-Broker-Reason; these refusals are pages, never SAML error Responses) and from the
audit trail's ``upstream_authn_result`` record.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from lxml import etree
from saml2 import saml
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.clock import FixedClock
from broker.config.loader import load_settings
from broker.demo.idp import DemoIdp, FormPost
from broker.demo.sp import DemoSp
from broker.reasons import reason
from broker.session.store import RedisStore
from tests.corpus.upstream.generate import NS, SAML, SAMLP, KeyPair, sign
from tests.factories.authnrequests import open_browser
from tests.factories.idp import ACS_URL, IDP_ENTITY_ID, KARIN, AtIdp, make_idp, to_idp
from tests.factories.saml import BASE_URL, Browser, saml_response_form
from tests.flows.conftest import audit_lines

SP_ENTITY_ID = BASE_URL + "/demo-sp/metadata"
BROKER_SP = BASE_URL + "/saml/sp/metadata"
MAX_MESSAGE_BYTES = 262144  # broker.sp.max_message_bytes in config/example/broker.yaml


# --- helpers ---------------------------------------------------------------------------------------


def idp_keys(demo_material: Any) -> KeyPair:
    """Kommun C's IdP signing key and certificate (what its metadata names)."""
    root = Path(demo_material.root) / "idp"
    return KeyPair((root / "idp.key").read_bytes(), (root / "idp.crt").read_bytes())


def start_login(browser: Browser, sp: DemoSp, idp: DemoIdp) -> AtIdp:
    """A fresh login at the SP, through discovery, to the IdP: a pending request at the broker."""
    return to_idp(browser, idp, browser.get(sp.login_url()))


def xml_of(post: FormPost) -> bytes:
    return base64.b64decode(post.fields["SAMLResponse"])


def repost(post: FormPost, xml: bytes) -> dict[str, str]:
    """The IdP's form with ``xml`` as the SAMLResponse (RelayState kept)."""
    return {**post.fields, "SAMLResponse": base64.b64encode(xml).decode()}


def tampered(post: FormPost, change: Callable[[etree._Element], None]) -> dict[str, str]:
    root = etree.fromstring(xml_of(post))
    change(root)
    return repost(post, etree.tostring(root))


def assertion_of(root: etree._Element) -> etree._Element:
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    return assertion


def assertion_id(post: FormPost) -> str:
    return str(assertion_of(etree.fromstring(xml_of(post))).get("ID"))


def logged_in(page: TestResponse) -> None:
    assert "X-Broker-Reason" not in page.headers, page.headers.get("X-Broker-Reason")
    action, _ = saml_response_form(page)
    assert action == BASE_URL + "/demo-sp/acs"


def refused(page: TestResponse, config_dir: Path, code: str) -> None:
    """The user got the broker's error page for ``code``, and the audit trail says why the IdP's answer failed."""
    got = (page.headers.get("X-Broker-Reason"), page.status_code)
    assert got == (code, reason(code).http_status), f"got {got}, expected {code}"
    results = upstream_results(config_dir)
    assert results[-1:] == [("failure", code)], results


def upstream_results(config_dir: Path) -> list[tuple[object, object]]:
    return [(r["outcome"], r.get("reason")) for r in audit_lines(config_dir) if r["event"] == "upstream_authn_result"]


def app_allowing_unsolicited(config_dir: Path, store: RedisStore, clock: FixedClock | None = None) -> Flask:
    path = config_dir / "municipalities" / "kommun-c.yaml"
    text = path.read_text(encoding="utf-8")
    assert "allow_unsolicited: false" in text
    path.write_text(text.replace("allow_unsolicited: false", "allow_unsolicited: true"), encoding="utf-8")
    if clock is None:
        return create_app(load_settings(config_dir), store=store, instance_id="test")
    return create_app(load_settings(config_dir), store=store, instance_id="test", clock=clock)


def idp_initiated(idp: DemoIdp) -> dict[str, str]:
    """Kommun C's signed Response for Karin that answers no request, for the demo SP (RelayState names it)."""
    response = idp.server.create_authn_response(
        KARIN.attributes, in_response_to=None, destination=ACS_URL, sp_entity_id=BROKER_SP,
        name_id=saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT, text=idp.name_id_of(KARIN)),
        authn={"class_ref": KARIN.class_ref, "authn_auth": idp.entity_id}, sign_assertion=True)
    xml = str(response).encode()
    assert b"InResponseTo" not in xml
    return {"SAMLResponse": base64.b64encode(xml).decode(), "RelayState": SP_ENTITY_ID}


# --- control --------------------------------------------------------------------------------------------


def test_control_decoded_and_reencoded_response_logs_in(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """Decoding the IdP's Response, re-serialising it unchanged and re-encoding it (what every tampering test
    below does) keeps its signature valid: a refusal below comes from the change, not from the handling."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)
    logged_in(browser.post(ACS_URL, tampered(post, lambda root: None)))
    assert upstream_results(config_dir) == [("success", None)]


def test_an_assertion_valid_until_the_end_of_time_logs_in(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, demo_material: Any) -> None:
    """Conditions NotOnOrAfter 9999-12-31T23:59:59Z, signed by the IdP: valid, and the replay cache keeps its ID
    a year at most (the TTL arithmetic overflowed into a 500 before)."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)

    def until_the_end_of_time(root: etree._Element) -> None:
        assertion = assertion_of(root)
        conditions = assertion.find("saml:Conditions", NS)
        assert conditions is not None
        conditions.set("NotOnOrAfter", "9999-12-31T23:59:59Z")
        sign(assertion, idp_keys(demo_material))

    logged_in(browser.post(ACS_URL, tampered(post, until_the_end_of_time)))
    assert upstream_results(config_dir) == [("success", None)]


@pytest.mark.parametrize("where", ["AuthnStatement/AuthnInstant", "IssueInstant"])
def test_an_assertion_from_the_future_is_refused(browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path,
                                                 demo_material: Any, where: str) -> None:
    """A login that has not happened yet (an IdP whose clock is an hour ahead, past the skew): passed on, the
    AuthnInstant would defeat the SP's own checks of how recent the login is."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def from_the_future(root: etree._Element) -> None:
        assertion = assertion_of(root)
        element = assertion.find("saml:AuthnStatement", NS) if "/" in where else assertion
        assert element is not None
        element.set(where.rsplit("/", 1)[-1], later)
        sign(assertion, idp_keys(demo_material))

    refused(browser.post(ACS_URL, tampered(post, from_the_future)), config_dir, "upstream_not_yet_valid")


def test_an_assertion_without_issue_instant_is_refused(browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path,
                                                     demo_material: Any) -> None:
    """SAML Core §2.3.3: the Assertion's IssueInstant is required; signed without it by the IdP, still refused."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)

    def undated(root: etree._Element) -> None:
        assertion = assertion_of(root)
        del assertion.attrib["IssueInstant"]
        sign(assertion, idp_keys(demo_material))

    refused(browser.post(ACS_URL, tampered(post, undated)), config_dir, "upstream_assertion_invalid")


# --- replay ----------------------------------------------------------------------------------------------


def test_same_response_posted_twice_is_refused_the_second_time(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """A solicited Response names its request; the pending request is used up by the first post, so the replay
    answers no pending request (the reason covers "unknown, used or expired InResponseTo")."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)
    logged_in(browser.post(ACS_URL, post.fields))
    refused(browser.post(ACS_URL, post.fields), config_dir, "upstream_in_response_to_mismatch")
    assert upstream_results(config_dir) == [("success", None), ("failure", "upstream_in_response_to_mismatch")]


# login_timeout 10 min plus Kommun C's clock_skew of 60 s: 11 minutes is the boundary itself, so the cases stay a
# minute either side of it (the IdP writes whole seconds, the test clock does not)
@pytest.mark.parametrize(("minutes", "outcome"), [(9, None), (12, "upstream_expired")],
                         ids=["within-the-login-timeout", "past-it"])
def test_an_unsolicited_response_is_as_old_as_a_login_may_take_at_most(
        config_dir: Path, store: RedisStore, demo_material: Any, monkeypatch: pytest.MonkeyPatch, minutes: int,
        outcome: str | None) -> None:
    """An answer to a pending login is at most sp.login_timeout (10 min) old; an unsolicited one, whose IdP may
    make it valid for hours, is held to the same (plus the skew), so that no answer outlives what the broker
    remembers of the IdP's logouts (SAML Core §3.7.3.2)."""
    from saml2.assertion import Policy
    monkeypatch.setattr(Policy, "get_lifetime", lambda self, sp_entity_id: {"hours": 2})
    clock = FixedClock(dt.datetime.now(dt.UTC))
    app = app_allowing_unsolicited(config_dir, store, clock)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    fields = idp_initiated(idp)

    clock.advance(dt.timedelta(minutes=minutes))
    answer = open_browser(app, None).post(ACS_URL, fields)

    if outcome is None:
        logged_in(answer)
    else:
        refused(answer, config_dir, outcome)


def test_replayed_idp_initiated_response_is_refused(config_dir: Path, store: RedisStore, demo_material: Any) -> None:
    """An unsolicited Response names no request, so only the one-use cache of Assertion IDs stops its replay
    (corpus: replay.xml). Kommun C is allowed to send unsolicited Responses here."""
    app = app_allowing_unsolicited(config_dir, store)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    browser = open_browser(app, None)
    fields = idp_initiated(idp)
    logged_in(browser.post(ACS_URL, fields))
    refused(browser.post(ACS_URL, fields), config_dir, "upstream_replay")
    # another browser (the attacker's) fares no better
    refused(open_browser(app, None).post(ACS_URL, fields), config_dir, "upstream_replay")
    # whose assertion was replayed, for `audit query --user`: its signature was verified
    replays = [r for r in audit_lines(config_dir)
               if r["event"] == "upstream_authn_result" and r.get("reason") == "upstream_replay"]
    assert [(r.get("user"), r.get("municipality")) for r in replays] == [("SE2120003005-K001", "kommun-c")] * 2


def test_the_replay_cache_keeps_an_id_while_any_bearer_confirmation_could_hold(
        config_dir: Path, store: RedisStore, demo_material: Any, redis_prefix: str) -> None:
    """Two bearer SubjectConfirmations, valid for two minutes and for an hour, and no Conditions NotOnOrAfter (SAML
    Core §2.5.1: optional): the ID is kept for the hour (Profiles §4.1.4.5), or the unsolicited Response could be
    posted again, through the second confirmation, once the first has passed."""
    app = app_allowing_unsolicited(config_dir, store)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    fields = idp_initiated(idp)
    root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assertion = assertion_of(root)
    conditions = assertion.find("saml:Conditions", NS)
    assert conditions is not None
    del conditions.attrib["NotOnOrAfter"]
    first = assertion.find("saml:Subject/saml:SubjectConfirmation", NS)
    assert first is not None
    second = copy.deepcopy(first)
    now = dt.datetime.now(dt.UTC)
    for confirmation, lifetime in ((first, dt.timedelta(minutes=2)), (second, dt.timedelta(hours=1))):
        data = confirmation.find("saml:SubjectConfirmationData", NS)
        assert data is not None
        data.set("NotOnOrAfter", (now + lifetime).strftime("%Y-%m-%dT%H:%M:%SZ"))
    first.addnext(second)
    sign(assertion, idp_keys(demo_material))

    logged_in(open_browser(app, None).post(ACS_URL, {**fields, "SAMLResponse": base64.b64encode(
        etree.tostring(root)).decode()}))

    (key,) = store.client.keys(f"{redis_prefix}replay:*")
    assert store.client.ttl(key) > 3600 - 60


def test_an_unsigned_unsolicited_response_may_leave_its_issuer_out(config_dir: Path, store: RedisStore,
                                                                   demo_material: Any) -> None:
    """SAML Profiles §4.1.4.2: the Response's Issuer MAY be omitted when the Response is not signed; the signed
    Assertion's Issuer then names the IdP (and its key must have signed it)."""
    app = app_allowing_unsolicited(config_dir, store)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    fields = idp_initiated(idp)
    root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assert root.find("ds:Signature", NS) is None  # only the Assertion is signed
    issuer = root.find("saml:Issuer", NS)
    assert issuer is not None
    root.remove(issuer)

    logged_in(open_browser(app, None).post(ACS_URL, {**fields, "SAMLResponse": base64.b64encode(
        etree.tostring(root)).decode()}))


def test_a_signed_response_without_an_issuer_is_refused(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, demo_material: Any) -> None:
    """Profiles §4.1.4.2: a signed Response MUST carry its Issuer."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)

    def signed_without_issuer(root: etree._Element) -> None:
        issuer = root.find("saml:Issuer", NS)
        assert issuer is not None
        root.remove(issuer)
        sign(root, idp_keys(demo_material))

    refused(browser.post(ACS_URL, tampered(post, signed_without_issuer)), config_dir, "upstream_issuer_mismatch")


def test_assertion_reissued_for_a_new_request_is_refused_as_a_replay(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, demo_material: Any) -> None:
    """Defence in depth for solicited logins: an Assertion whose ID was already used is refused even inside a
    Response to a new, pending request, correctly signed (here with the IdP's own key, as an IdP that reissues
    an Assertion would)."""
    browser.certificate_pem = None
    first = start_login(browser, sp, idp)
    used = idp.respond(first.request, first.relay_state, KARIN)
    logged_in(browser.post(ACS_URL, used.fields))

    another = open_browser(app, None)  # no SSO session there: the broker asks the IdP again
    second = start_login(another, sp, idp)
    fresh = idp.respond(second.request, second.relay_state, KARIN)
    old_id = assertion_id(used)
    assert old_id != assertion_id(fresh)

    def reuse_id(root: etree._Element) -> None:
        assertion = assertion_of(root)
        assertion.set("ID", old_id)
        sign(assertion, idp_keys(demo_material))

    refused(another.post(ACS_URL, tampered(fresh, reuse_id)), config_dir, "upstream_replay")


# --- unsolicited and InResponseTo ------------------------------------------------------------------------


def test_response_stripped_of_in_response_to_is_refused_as_unsolicited(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The Response element is not signed (Kommun C signs the Assertion): an attacker can remove its
    InResponseTo. Kommun C may not send unsolicited Responses (corpus: unsolicited.xml)."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)

    def strip(root: etree._Element) -> None:
        del root.attrib["InResponseTo"]

    refused(browser.post(ACS_URL, tampered(post, strip)), config_dir, "upstream_unsolicited")


def test_idp_initiated_response_is_refused_when_not_allowed(idp: DemoIdp, browser: Browser, config_dir: Path) -> None:
    """A genuinely unsolicited Response (no InResponseTo anywhere, signed by the IdP), RelayState naming the SP."""
    browser.certificate_pem = None
    refused(browser.post(ACS_URL, idp_initiated(idp)), config_dir, "upstream_unsolicited")


def test_response_to_a_request_never_sent_is_refused(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)

    def retarget(root: etree._Element) -> None:
        root.set("InResponseTo", "_never-sent-by-the-broker")

    refused(browser.post(ACS_URL, tampered(post, retarget)), config_dir, "upstream_in_response_to_mismatch")


def test_response_moved_to_another_pending_request_is_refused(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The attacker points the (unsigned) Response's InResponseTo at another login that is pending; the signed
    SubjectConfirmationData still names the original request."""
    browser.certificate_pem = None
    first = start_login(browser, sp, idp)
    post = idp.respond(first.request, first.relay_state, KARIN)
    other = start_login(browser, sp, idp)

    def retarget(root: etree._Element) -> None:
        root.set("InResponseTo", other.request.message.id)

    refused(browser.post(ACS_URL, tampered(post, retarget)), config_dir, "upstream_in_response_to_mismatch")


# --- size ------------------------------------------------------------------------------------------------


def padded(post: FormPost, total: int) -> dict[str, str]:
    """The IdP's Response grown to ``total`` bytes by a samlp:Extensions element (outside the signed Assertion)."""
    root = etree.fromstring(xml_of(post))
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    padding = etree.SubElement(extensions, "{urn:example:padding}Padding")
    root.find(f"{{{SAML}}}Issuer").addnext(extensions)  # type: ignore[union-attr]
    padding.text = "A"
    padding.text = "A" * (total - len(etree.tostring(root)) + 1)
    xml = etree.tostring(root)
    assert len(xml) == total
    return repost(post, xml)


def test_oversized_response_is_refused_for_its_size(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """Just over broker.sp.max_message_bytes (corpus: oversized.xml)."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)
    refused(browser.post(ACS_URL, padded(post, MAX_MESSAGE_BYTES + 1)), config_dir, "upstream_response_too_large")


def test_response_within_the_size_limit_is_accepted(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The counterpart: a Response of 200 000 bytes, below max_message_bytes (262144, "largest Response
    accepted"), padded outside the signed Assertion, logs Karin in."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)
    logged_in(browser.post(ACS_URL, padded(post, 200_000)))
    assert upstream_results(config_dir) == [("success", None)]


_LONG = "a" * 100_000
_NOT_A_RESPONSE = f'<x:Response xmlns:x="urn:{_LONG}"/>'
# a LogoutRequest naming Kommun C's IdP (public), its signature's algorithm 100 000 characters long
_LONG_ALGORITHM = (
    f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_x" Version="2.0" '
    f'IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>{IDP_ENTITY_ID}</saml:Issuer>'
    f'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
    f'<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    f'<ds:SignatureMethod Algorithm="urn:{_LONG}"/></ds:SignedInfo><ds:SignatureValue>AA==</ds:SignatureValue>'
    f'</ds:Signature><saml:NameID>x</saml:NameID></samlp:LogoutRequest>')


@pytest.mark.parametrize(("endpoint", "parameter", "xml", "event"), [
    pytest.param(ACS_URL, "SAMLResponse", _NOT_A_RESPONSE, "upstream_authn_result", id="acs"),
    pytest.param(BASE_URL + "/saml/sp/slo", "SAMLRequest", _NOT_A_RESPONSE, "logout", id="sp-slo"),
    pytest.param(BASE_URL + "/saml/sp/slo", "SAMLRequest", _LONG_ALGORITHM, "logout", id="sp-slo-algorithm"),
])
def test_what_anyone_posts_reaches_the_audit_trail_bounded(
        browser: Browser, config_dir: Path, endpoint: str, parameter: str, xml: str, event: str) -> None:
    """Any web page can make its visitors' browsers post to these endpoints, before any signature or pending
    login is looked at: a root element with a 100 000-character namespace, or a signature naming a 100 000-character
    algorithm (well inside max_message_bytes), is refused as what it is, and the name reaches the audit record cut
    short, as every other value such a post carries does, not 100 kB of it per post."""
    page = browser.post(endpoint, {parameter: base64.b64encode(xml.encode()).decode()})
    assert page.status_code >= 400
    [record] = [r for r in audit_lines(config_dir) if r["event"] == event]
    assert record["outcome"] == "failure"
    assert "urn:aaaa" in str(record["detail"])
    assert len(str(record["detail"])) < 500, len(str(record["detail"]))


def _set_issuer(root: etree._Element, text: str) -> None:
    issuer = root.find("saml:Issuer", NS)
    assert issuer is not None
    issuer.text = text


def _set_status(root: etree._Element, value: str) -> None:
    status = root.find("samlp:Status/samlp:StatusCode", NS)
    assert status is not None
    status.set("Value", value)
    for assertion in root.findall("saml:Assertion", NS):
        root.remove(assertion)


@pytest.mark.parametrize(("change", "code"), [
    pytest.param(lambda root: root.set("Destination", ACS_URL + "?" + _LONG), "upstream_destination_mismatch",
                 id="destination"),
    pytest.param(lambda root: root.set("Version", "2." + _LONG), "upstream_version_unsupported", id="version"),
    pytest.param(lambda root: root.set("IssueInstant", "2026-" + _LONG), "upstream_response_malformed",
                 id="issue-instant"),
    pytest.param(lambda root: _set_issuer(root, "urn:" + _LONG), "upstream_issuer_mismatch", id="issuer"),
    pytest.param(lambda root: _set_status(root, "urn:" + _LONG), "upstream_status", id="status-code"),
])
def test_what_a_response_to_ones_own_login_says_reaches_the_audit_trail_bounded(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, change: Callable[[etree._Element], None],
        code: str) -> None:
    """Anyone can start a login of their own and post to the ACS, in that browser, a Response answering it: its
    own fields (Version, IssueInstant, Destination, Issuer) and its status are read before any signature is, and
    a refusal names them. A 100 000-character value reaches the audit record cut short, not 100 kB per post."""
    browser.certificate_pem = None
    at = start_login(browser, sp, idp)
    post = idp.respond(at.request, at.relay_state, KARIN)
    refused(browser.post(ACS_URL, tampered(post, change)), config_dir, code)
    [record] = [r for r in audit_lines(config_dir) if r["event"] == "upstream_authn_result"]
    assert "aaaa" in str(record["detail"])
    assert len(str(record["detail"])) < 1000, len(str(record["detail"]))
