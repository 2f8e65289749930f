"""Attacks on the federated login and logout, and the edge cases of SAML's semantics through a proxy.

Each test describes the attack or the failing scenario, does it against the real app (demo SP → broker →
Kommun C's pysaml2 IdP), and asserts what the broker does about it.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from lxml import etree
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.clock import FixedClock
from broker.config.loader import Settings, load_settings
from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from tests.corpus.upstream.generate import NS, KeyPair, sign
from tests.factories.authnrequests import assert_refused, error_page, open_browser, posted_response
from tests.factories.idp import (
    ACS_URL,
    KARIN,
    LARS,
    discovery_form,
    discovery_login_id,
    federated_login,
    make_idp,
    to_idp,
)
from tests.factories.saml import BASE_URL, Browser, make_sp, saml_response_form
from tests.flows.conftest import audit_lines

COOKIE = "__Host-broker_session"
KARIN_HSA_ID = "SE2120003005-K001"


# --- helpers --------------------------------------------------------------------------------------------------


def idp_keys(demo_material: Any) -> KeyPair:
    root = Path(demo_material.root) / "idp"
    return KeyPair((root / "idp.key").read_bytes(), (root / "idp.crt").read_bytes())


def resigned(fields: dict[str, str], demo_material: Any, change: Any) -> dict[str, str]:
    """The IdP's Response with ``change`` applied to its Assertion, re-signed with the IdP's own key (what a real
    IdP would send in that situation)."""
    root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    change(assertion)
    sign(assertion, idp_keys(demo_material))
    return {**fields, "SAMLResponse": base64.b64encode(etree.tostring(root)).decode()}


def logged_in_to_sp(page: TestResponse) -> bool:
    """The broker answered with the assertion form to the demo SP's ACS (a successful login)."""
    if page.status_code != 200 or "X-Broker-Reason" in page.headers:
        return False
    try:
        action, _ = saml_response_form(page)
    except AssertionError:  # another page (discovery, a redirect to the IdP)
        return False
    return action == BASE_URL + "/demo-sp/acs"


def set_cookie_headers(page: TestResponse) -> list[str]:
    return [v for k, v in page.headers.items() if k.lower() == "set-cookie"]


def instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- login CSRF / session swapping at the ACS --------------------------------------------------------


def test_response_to_a_login_started_in_another_browser_is_refused(
        app: Flask, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The pending upstream login is found by InResponseTo alone: nothing ties it to the browser that started
    it. The attacker (Lars, a Kommun C user) starts a login in HIS browser, authenticates at Kommun C, keeps the
    IdP's auto-submit form instead of submitting it, and makes the victim's browser post it cross-site to
    /saml/sp/acs (the broker's session cookie is SameSite=None, so it goes along; no Origin/state check).

    The broker ends the victim's own session (Karin), opens one for Lars in the victim's browser (new
    __Host-broker_session cookie) and posts Lars's assertion there. Even an SP that refuses that Response (its own
    InResponseTo is bound to the attacker's browser) does not help: the victim's NEXT login at any SP is
    answered from the swapped broker session, as Lars (login CSRF / session swapping).

    Defence: the upstream request is bound to the browser that started it (a random value in a
    Secure/HttpOnly/SameSite=None cookie set with the redirect to the IdP, its hash stored with the pending
    request, compared at the ACS): a Response from another browser is refused (upstream_browser_mismatch)."""
    victim = open_browser(app, None)
    victim_at = to_idp(victim, idp, victim.get(sp.login_url()))
    assert logged_in_to_sp(victim.post(ACS_URL, idp.respond(victim_at.request, victim_at.relay_state,
                                                             KARIN).fields))   # Karin's own broker session

    attacker = open_browser(app, None)
    at = to_idp(attacker, idp, attacker.get(sp.login_url()))
    forged_form = idp.respond(at.request, at.relay_state, LARS)   # never submitted by the attacker

    csrf = victim.post(ACS_URL, forged_form.fields)               # the attacker's page auto-submits it
    later = victim.get(sp.login_url())                            # the victim logs in to an SP later on

    assert logged_in_to_sp(later)
    users = [e["user"] for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]
    assert users[-1] == KARIN_HSA_ID, \
        f"the victim's browser is now logged in as the attacker: assertions issued to it: {users}"
    assert not logged_in_to_sp(csrf)


def test_each_login_at_the_idp_renews_the_browser_binding_for_its_whole_answer_window(
        browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    """The binding cookie lives a day (docs/security.md) from when the broker sets it. A later login in the same
    browser reuses its value; unless the cookie is set again with it, one started in the cookie's last minutes
    (sp.login_timeout: 10 min) gets its IdP's answer after the browser has dropped the cookie, and is refused
    as from another browser (upstream_browser_mismatch). Each redirect to the IdP sets it again, same value."""
    browser.certificate_pem = None
    first = to_idp(browser, idp, browser.get(sp.login_url()))
    binding = browser.client.get_cookie("__Host-broker_binding", domain="localhost", path="/")
    assert binding is not None

    page = browser.get(sp.login_url(force_authn=True))   # a second login at the IdP, the cookie still held
    response = page if page.status_code == 303 else browser.post(
        "/discovery", {**discovery_form(page), "municipality": "kommun-c"})
    renewed = [c for c in set_cookie_headers(response) if c.startswith("__Host-broker_binding=")]
    assert renewed, "the binding cookie is not set again for the new login"
    assert renewed[0].startswith(f"__Host-broker_binding={binding.value};")
    assert "Max-Age=86400" in renewed[0]
    assert first.request.message.id != idp.parse_redirect(response.headers["Location"])[0].message.id


# --- ForceAuthn is passed upstream, and its result checked --------------------------------------


def test_force_authn_refuses_an_upstream_assertion_from_an_earlier_authentication(
        browser: Browser, sp: DemoSp, idp: DemoIdp, demo_material: Any, config_dir: Path) -> None:
    """SAML Core §3.4.1: with ForceAuthn the IdP MUST authenticate the presenter directly. The broker passes
    ForceAuthn upstream, but accepts whatever AuthnInstant comes back. An IdP that ignores ForceAuthn (ADFS
    with Windows integrated authentication, an IdP SSO session) answers with the authentication of two hours
    ago; the broker issues it to the SP, which asked for a fresh authentication (e.g. before signing).

    Defence: with ForceAuthn, an upstream AuthnInstant older than the upstream AuthnRequest (minus the clock
    skew) is refused (upstream_force_authn_ignored)."""
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(sp.login_url(force_authn=True)))
    assert at.request.message.force_authn == "true"
    post = idp.respond(at.request, at.relay_state, KARIN)
    two_hours_ago = instant(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))

    def old_authentication(assertion: etree._Element) -> None:
        statement = assertion.find("saml:AuthnStatement", NS)
        assert statement is not None
        statement.set("AuthnInstant", two_hours_ago)

    page = browser.post(ACS_URL, resigned(post.fields, demo_material, old_authentication))

    assert not logged_in_to_sp(page), \
        "ForceAuthn login accepted with an upstream AuthnInstant two hours old (no fresh authentication)"
    (result,) = [e for e in audit_lines(config_dir) if e["event"] == "upstream_authn_result"]
    assert (result["reason"], result.get("user")) == ("upstream_force_authn_ignored", "SE2120003005-K001")


# --- the broker's SSO session ends with the IdP's SessionNotOnOrAfter -----------------------------------


def test_sso_session_ends_at_the_upstream_session_not_on_or_after(
        settings: Settings, store: RedisStore, demo_material: Any, config_dir: Path) -> None:
    """SAML Core §2.7.2: SessionNotOnOrAfter is the instant at which the session derived from the
    assertion MUST be considered ended. Kommun C's IdP limits Karin's session to 5 minutes; the broker keeps
    its own SSO session for the absolute timeout (8 h) and, 10 minutes later (well within the 30 min idle
    timeout), answers the SP from that session without asking the IdP again - and tells the SP the session
    lasts until the broker's own 8 h expiry.

    Defence: the session's expires_at (and the SessionNotOnOrAfter the broker asserts) is capped at the
    upstream SessionNotOnOrAfter."""
    clock = FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    app = create_app(settings, clock=clock, store=store, instance_id="test")
    sp = make_sp(demo_material.root, app.extensions["broker"].metadata.document(), settings.broker.idp.entity_id)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    browser = open_browser(app, None)

    at = to_idp(browser, idp, browser.get(sp.login_url()))
    post = idp.respond(at.request, at.relay_state, KARIN)
    ends = instant(clock.now() + dt.timedelta(minutes=5))

    def short_session(assertion: etree._Element) -> None:
        statement = assertion.find("saml:AuthnStatement", NS)
        assert statement is not None
        statement.set("SessionNotOnOrAfter", ends)

    assert logged_in_to_sp(browser.post(ACS_URL, resigned(post.fields, demo_material, short_session)))

    clock.advance(dt.timedelta(minutes=10))  # the IdP's session is over
    again = browser.get(sp.login_url())

    assert not logged_in_to_sp(again), \
        "SSO from a broker session whose upstream SessionNotOnOrAfter passed 5 minutes ago"
    reused = [e for e in audit_lines(config_dir) if e["event"] == "session_reused"]
    assert reused == []


@pytest.mark.parametrize("minutes_ago", [pytest.param(7 * 60 + 45, id="sign-on-7h45m-ago"),
                                         pytest.param(8 * 60 + 1, id="sign-on-older-than-the-absolute-timeout")])
def test_sso_session_ends_at_the_absolute_timeout_after_the_upstream_sign_on(
        settings: Settings, store: RedisStore, demo_material: Any, config_dir: Path, minutes_ago: int) -> None:
    """The session's absolute end (session.absolute_timeout, 8 h) counts from the authentication, which for a
    federated login is the IdP's (AuthnInstant), not the broker's receipt of it: an IdP answering from its own
    long-lived session (a sign-on 7 h 45 min ago) gives a session, and SPs a SessionNotOnOrAfter, ending 8 hours after
    that sign-on; one older than 8 hours opens no session (upstream_expired, audited)."""
    clock = FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    app = create_app(settings, clock=clock, store=store, instance_id="test")
    sp = make_sp(demo_material.root, app.extensions["broker"].metadata.document(), settings.broker.idp.entity_id)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    browser = open_browser(app, None)
    signed_on = clock.now() - dt.timedelta(minutes=minutes_ago)

    at = to_idp(browser, idp, browser.get(sp.login_url()))
    post = idp.respond(at.request, at.relay_state, KARIN)

    def early_sign_on(assertion: etree._Element) -> None:
        statement = assertion.find("saml:AuthnStatement", NS)
        assert statement is not None
        statement.set("AuthnInstant", instant(signed_on))

    page = browser.post(ACS_URL, resigned(post.fields, demo_material, early_sign_on))
    if minutes_ago >= 8 * 60:
        assert_refused(page, "upstream_expired")
        results = [e for e in audit_lines(config_dir) if e["event"] == "upstream_authn_result"]
        assert [(e["outcome"], e["reason"]) for e in results] == [("failure", "upstream_expired")]
        return
    statement = posted_response(page).root.find(".//saml:AuthnStatement", NS)
    assert statement is not None
    assert statement.get("SessionNotOnOrAfter") == instant(signed_on + dt.timedelta(hours=8))
    results = [e for e in audit_lines(config_dir) if e["event"] == "upstream_authn_result"]
    assert [e["data"].get("authn_instant") for e in results] == [signed_on.isoformat()]  # type: ignore[union-attr]

    clock.advance(dt.timedelta(minutes=16))  # past 8 hours after the sign-on, within the idle timeout
    assert not logged_in_to_sp(browser.get(sp.login_url()))
    assert [e for e in audit_lines(config_dir) if e["event"] == "session_reused"] == []


# --- municipalities sharing an IdP ---------------------------------------------------------------------------


KOMMUN_D_ORG = "2120003021"


def _kommun_d_sharing_kommun_c_idp(config_dir: Path) -> None:
    """Kommun D is served by the same IdP as Kommun C (a shared ADFS of two municipalities, common in Sweden).
    The demo SP accepts Kommun D but NOT Kommun C."""
    text = (config_dir / "municipalities" / "kommun-c.yaml").read_text(encoding="utf-8")
    text = text.replace("sv: Kommun C", "sv: Kommun D").replace("en: Municipality C", "en: Municipality D")
    text = text.replace('organization_number: "2120003005"', f'organization_number: "{KOMMUN_D_ORG}"')
    assert KOMMUN_D_ORG in text
    assert "Kommun D" in text
    (config_dir / "municipalities" / "kommun-d.yaml").write_text(text, encoding="utf-8")
    sp_file = config_dir / "service-providers" / "demo-sp.yaml"
    sp_text = sp_file.read_text(encoding="utf-8")
    assert "municipalities: [kommun-a, kommun-b, kommun-c]" in sp_text
    sp_file.write_text(sp_text.replace("municipalities: [kommun-a, kommun-b, kommun-c]",
                                       "municipalities: [kommun-a, kommun-b, kommun-d]"), encoding="utf-8")


def test_municipalities_sharing_an_idp_must_tell_their_users_apart(config_dir: Path) -> None:
    """Certificate municipalities may not share a CA ("the choice would be ambiguous"); two ``login: saml``
    municipalities may share an IdP (a joint ADFS), but then the municipality is the user's choice on the
    discovery page, so each must say which users are its own (saml.identity.pattern)."""
    from broker.config.loader import load_settings
    from broker.errors import ConfigError
    _kommun_d_sharing_kommun_c_idp(config_dir)
    with pytest.raises(ConfigError) as raised:
        load_settings(config_dir)
    problems = {(i.file, i.key) for i in raised.value.issues}
    assert problems == {("municipalities/kommun-c.yaml", "saml.identity.pattern"),
                        ("municipalities/kommun-d.yaml", "saml.identity.pattern")}


def _identity_rules(config_dir: Path, rules: dict[str, str]) -> None:
    """Replace each municipality's ``type: hsa_id`` identity line with the YAML lines given."""
    for mid, lines in rules.items():
        path = config_dir / "municipalities" / f"{mid}.yaml"
        text = path.read_text(encoding="utf-8")
        assert text.count("    type: hsa_id\n") == 1
        path.write_text(text.replace("    type: hsa_id\n", lines), encoding="utf-8")


_OWN_C = "    type: hsa_id\n    pattern: '^SE2120003005-[A-Za-z0-9]+$'\n"
_OWN_D = f"    type: hsa_id\n    pattern: '^SE{KOMMUN_D_ORG}-[A-Za-z0-9]+$'\n"
_ANY_HSA = "    type: hsa_id\n    pattern: '^SE[0-9]{10}-[A-Za-z0-9]+$'\n"


@pytest.mark.parametrize(("rules", "expected"), [
    pytest.param({"kommun-c": _ANY_HSA, "kommun-d": _ANY_HSA},
                 {("municipalities/kommun-c.yaml", "saml.identity.pattern", "has the same pattern"),
                  ("municipalities/kommun-d.yaml", "saml.identity.pattern", "has the same pattern")},
                 id="the-same-pattern"),
    pytest.param({"kommun-c": _OWN_C, "kommun-d": _ANY_HSA},
                 {("municipalities/kommun-d.yaml", "saml.identity.pattern", "matches SE2120003005-x1")},
                 id="a-pattern-that-lets-in-the-others-hsa-ids"),
    pytest.param({"kommun-c": _OWN_C, "kommun-d": "    type: hsa_id\n    pattern: '^SE[0-9]{10}-[A-Z0-9]+$'\n"},
                 {("municipalities/kommun-d.yaml", "saml.identity.pattern", "matches SE2120003005-1")},
                 id="capitals-and-digits-only"),
    pytest.param({"kommun-c": _OWN_C, "kommun-d": "    type: hsa_id\n    pattern: '^SE\\d+-\\w{4,}$'\n"},
                 {("municipalities/kommun-d.yaml", "saml.identity.pattern", "matches SE2120003005-1234")},
                 id="four-or-more-characters"),
    pytest.param({"kommun-c": _OWN_C, "kommun-d": "    type: hsa_id\n    pattern: '(?i)se[0-9]{10}-[a-z]+'\n"},
                 {("municipalities/kommun-d.yaml", "saml.identity.pattern", "matches SE2120003005-A")},
                 id="case-insensitive"),
    pytest.param({"kommun-c": _OWN_C,
                  "kommun-d": "    type: hsa_id\n    pattern: '\\ASE2120003005-[A-Za-z0-9]+\\Z'\n"},
                 {("municipalities/kommun-c.yaml", "saml.identity.pattern", "has the same pattern"),
                  ("municipalities/kommun-d.yaml", "saml.identity.pattern", "has the same pattern")},
                 id="the-same-pattern-anchored-otherwise"),
    pytest.param({"kommun-c": "    type: personnummer\n", "kommun-d": "    type: personnummer\n"},
                 {("municipalities/kommun-c.yaml", "saml.identity.type", "a personnummer does not say"),
                  ("municipalities/kommun-d.yaml", "saml.identity.type", "a personnummer does not say")},
                 id="personnummer"),
    pytest.param({"kommun-c": _OWN_C, "kommun-d": "    type: personnummer\n    pattern: '^20[0-9]{10}$'\n"},
                 {("municipalities/kommun-d.yaml", "saml.identity.pattern", "no pattern applies")},
                 id="personnummer-with-a-pattern-never-applied"),
])
def test_a_shared_idps_municipalities_must_each_match_only_their_own_users(
        config_dir: Path, rules: dict[str, str], expected: set[tuple[str, str, str]]) -> None:
    """A rule that does not tell the municipalities apart lets a user of one log in as staff of the other by
    choosing it: refused at load, with what to write instead."""
    from broker.config.loader import load_settings
    from broker.errors import ConfigError
    _kommun_d_sharing_kommun_c_idp(config_dir)
    _identity_rules(config_dir, rules)
    with pytest.raises(ConfigError) as raised:
        load_settings(config_dir)
    found = {(i.file, i.key, i.message) for i in raised.value.issues}
    assert {(file, key) for file, key, _ in found} == {(file, key) for file, key, _ in expected}
    for file, key, fragment in expected:
        assert any(fragment in message for f, k, message in found if (f, k) == (file, key)), (fragment, found)


def test_a_user_of_one_municipality_cannot_log_in_as_another_sharing_its_idp(
        config_dir: Path, store: RedisStore, demo_material: Any) -> None:
    """Karin, a Kommun C employee (HSA-id SE2120003005-...), picks Kommun D at discovery and logs in at the
    shared IdP: Kommun D's pattern does not match her, so she is not asserted as Kommun D staff."""
    from broker.config.loader import load_settings
    _kommun_d_sharing_kommun_c_idp(config_dir)
    _identity_rules(config_dir, {"kommun-c": _OWN_C, "kommun-d": _OWN_D})
    settings = load_settings(config_dir)
    app = create_app(settings, store=store, instance_id="test")
    sp = make_sp(demo_material.root, app.extensions["broker"].metadata.document(), settings.broker.idp.entity_id)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    browser = open_browser(app, None)

    at = to_idp(browser, idp, browser.get(sp.login_url()), municipality="kommun-d")
    page = browser.post(ACS_URL, idp.respond(at.request, at.relay_state, KARIN).fields)

    assert not logged_in_to_sp(page)
    assert page.headers.get("X-Broker-Reason") == "upstream_identity_invalid"
    assert [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"] == []


SAMBI_HSA_ID = "http://sambi.se/attributes/1/employeeHsaId"


@pytest.mark.parametrize(("hsa_id", "pattern", "accepted"), [
    pytest.param("SE2120003005-K001", None, True, id="own-hsa-id"),
    pytest.param("SE2120001009-anna", None, False, id="another-municipalitys-hsa-id"),
    pytest.param("SE2120001009-anna", "^SE(2120003005|2120001009)-[A-Za-z0-9]+$", True,
                 id="another-issuer-the-configuration-allows"),
])
def test_a_municipalitys_idp_asserts_its_own_hsa_ids_unless_configured_otherwise(
        config_dir: Path, demo_material: Any, store: RedisStore, hsa_id: str, pattern: str | None,
        accepted: bool) -> None:
    """SAML Core §8.3.7: the HSA-id names one person nationally. Kommun C's IdP asserting Kommun A's Anna gave
    the SP Anna's persistent NameID and HSA-id; by default an IdP's HSA-ids must carry its municipality's
    organisation number."""
    if pattern is not None:
        path = config_dir / "municipalities" / "kommun-c.yaml"
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("    type: hsa_id\n", f"    type: hsa_id\n    pattern: '{pattern}'\n"),
                        encoding="utf-8")
    settings = load_settings(config_dir)
    app = create_app(settings, store=store, instance_id="test")
    sp = make_sp(demo_material.root, app.extensions["broker"].metadata.document(), settings.broker.idp.entity_id)
    idp = make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())
    browser = open_browser(app, None)
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    page = browser.post(ACS_URL, idp.respond(at.request, at.relay_state, KARIN,
                                             attributes={**KARIN.attributes, SAMBI_HSA_ID: [hsa_id]}).fields)
    assert logged_in_to_sp(page) == accepted
    if not accepted:
        assert page.headers.get("X-Broker-Reason") == "upstream_identity_invalid"
        assert [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"] == []


# --- smaller edges -----------------------------------------------------------------------------------------------


def test_sp_logout_request_with_a_non_ascii_session_index_is_answered_not_a_500(
        browser: Browser, sp: DemoSp, demo_material: Any, config_dir: Path) -> None:
    """flow/logout.py:_end_for_sp compares SessionIndexes with secrets.compare_digest, which raises TypeError
    for non-ASCII str: an SP's (signed) LogoutRequest with SessionIndex "é" gets a 500, the session is NOT
    ended and nothing is audited. (Same at :196 for a LogoutResponse's InResponseTo, after the logout state
    was already taken.) These values are no secrets: plain comparison."""
    from saml2.saml import NameID

    from tests.factories.authnrequests import AuthnRequests, load_key, login, redirect_url, sp_accepts
    craft = AuthnRequests(sp, demo_material.root / "sp" / "sp.key")
    crafted, posted = login(browser, craft)
    name_id: NameID = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id).name_id
    _, request = sp.client.create_logout_request(BASE_URL + "/saml/idp/slo", BASE_URL + "/saml/idp/metadata",
                                                 name_id=name_id, session_indexes=["\u00e9"])
    url = redirect_url(str(request).encode(), relay_state="r", key=load_key(demo_material.root / "sp" / "sp.key"),
                       endpoint=BASE_URL + "/saml/idp/slo")

    page = browser.get(url)

    assert page.status_code != 500, "internal_error: TypeError from secrets.compare_digest"


def test_a_response_without_status_code_is_audited_as_an_upstream_failure(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """flow/upstream.py:138 calls status_of() outside the try that audits refusals: a Response without
    StatusCode escapes to the app's BrokerError handler. The user gets a page, but the pending login is used
    up without an ``upstream_authn_result`` record (docs/federation.md: "Every refusal is audited as
    upstream_authn_result"), no retry link and no error Response for the SP."""
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    post = idp.respond(at.request, at.relay_state, KARIN)
    root = etree.fromstring(base64.b64decode(post.fields["SAMLResponse"]))
    status = root.find("{urn:oasis:names:tc:SAML:2.0:protocol}Status")
    assert status is not None
    status.remove(status[0])

    page = browser.post(ACS_URL, {**post.fields, "SAMLResponse": base64.b64encode(etree.tostring(root)).decode()})

    assert page.headers.get("X-Broker-Reason") == "upstream_response_malformed"
    results = [(e["outcome"], e.get("reason")) for e in audit_lines(config_dir)
               if e["event"] == "upstream_authn_result"]
    assert results == [("failure", "upstream_response_malformed")]


def test_an_unverified_logout_response_does_not_take_over_the_logout_in_progress(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """flow/logout.py:175 takes (GETDEL) the logout state named by RelayState BEFORE the LogoutResponse is
    verified. Whoever learns the RelayState (it is in the URL handed to each participant SP, its logs, its
    Referer-less redirects) can answer first, unsigned, from another browser: the chain continues THERE
    (the municipal IdP's final LogoutResponse goes to that browser), and the real participant's answer in the
    user's browser finds no logout ("logout_unknown"). Defence: the logout is bound to the browser it runs in
    (the binding cookie); an answer from elsewhere is refused without consuming the state."""
    from tests.flows.test_federation_logout import (
        SP1,
        SP1_SLO,
        hop,
        idp_logout_url,
        karin_login,
        logout_response_url,
        sp_answers,
    )
    karin_login(browser, sp, idp)
    to_sp = hop(browser.get(idp_logout_url(idp)), SP1_SLO, "SAMLRequest")
    forged = logout_response_url(SP1, str(to_sp.root.get("ID")), to_sp.parameters["RelayState"], key=None)
    open_browser(app, None).get(forged)   # unsigned, another browser

    real = browser.get(sp_answers(sp, to_sp.location))

    assert real.headers.get("X-Broker-Reason") != "logout_unknown", \
        "an unsigned LogoutResponse from another browser consumed the user's logout"


def test_a_logout_response_from_another_browser_shows_the_reference_it_is_recorded_under(
        app: Flask, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The refusal is filed under the logout in progress (logout_propagated); the page's reference number must
    lead there, not to an ID nothing was recorded under. (Two browsers of open_browser: the ``browser`` fixture
    keeps its last request's context, whose ``g`` the other browser's request would share.)"""
    from tests.flows.test_federation_logout import SP1, SP1_SLO, hop, idp_logout_url, karin_login, logout_response_url
    karin = open_browser(app, None)
    karin_login(karin, sp, idp)
    to_sp = hop(karin.get(idp_logout_url(idp)), SP1_SLO, "SAMLRequest")
    forged = logout_response_url(SP1, str(to_sp.root.get("ID")), to_sp.parameters["RelayState"], key=None)
    page = open_browser(app, None).get(forged)

    assert_refused(page, "logout_response_invalid")
    reference, _ = error_page(page)
    refused = [e for e in audit_lines(config_dir) if e.get("reason") == "logout_response_invalid"]
    assert [(e["event"], e["correlation_id"]) for e in refused] == [("logout_propagated", reference)]


# --- hardening of 1d707c9: cross-site discovery posts ------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "null"},  # a sandboxed iframe, a data: URL, a redirect across origins
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
], ids=["origin-evil", "sec-fetch-site-cross-site", "origin-null", "both"])
def test_a_discovery_choice_posted_from_another_site_is_refused(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                                headers: dict[str, str]) -> None:
    """An attacker's page posts a choice (and "remember my choice") into the victim's pending login: refused
    (cross_site_request), nothing remembered, and the pending login is still the user's to continue."""
    browser.certificate_pem = None
    page = browser.get(sp.login_url())
    login_id = discovery_login_id(page)

    browser.headers = headers
    refused = browser.post("/discovery", {"login": login_id, "municipality": "kommun-c", "remember": "1"})

    assert_refused(refused, "cross_site_request")
    assert not [c for c in set_cookie_headers(refused)
                if c.startswith(("__Host-broker_municipality=", "__Host-broker_binding="))]
    browser.headers = {}
    to_idp(browser, idp, page)  # the user's own choice on the broker's page goes on to the IdP


@pytest.mark.parametrize("headers", [
    {"Origin": BASE_URL},
    {},
    {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"},
], ids=["same-origin", "no-origin", "same-origin-fetch-metadata"])
def test_a_discovery_choice_from_the_brokers_own_page_is_accepted(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                                  headers: dict[str, str]) -> None:
    browser.certificate_pem = None
    page = browser.get(sp.login_url())
    browser.headers = headers
    at = to_idp(browser, idp, page)
    assert at.request.message.issuer.text == BASE_URL + "/saml/sp/metadata"


# --- hardening of 1d707c9: replayed LogoutRequests -------------------------------------------------------------


def _logout_events(config_dir: Path) -> list[tuple[object, object, object]]:
    return [(e["outcome"], e.get("reason"), e.get("detail")) for e in audit_lines(config_dir) if e["event"] == "logout"]


def test_a_replayed_sp_logout_request_is_refused(app: Flask, browser: Browser, sp: DemoSp, config_dir: Path) -> None:
    """The SP's signed LogoutRequest is in the browser's history, the SP's logs, a proxy's: sent again after the
    user logged in anew, it would end her new session (its NameID is the same persistent one). The second time
    it is refused (logout_request_invalid, the detail says replay) and the new session goes on."""
    from tests.flows.test_federation_logout import SP1_SLO, cookie, hop, sp_logout_url, sso_login, with_cookie
    start = sp_logout_url(sp, sso_login(browser, sp))
    hop(browser.get(start), SP1_SLO, "SAMLResponse")     # logged out; the SP gets its LogoutResponse
    posted_response(browser.get(sp.login_url()))         # she logs in again: a new session

    replayed = browser.get(start)

    assert_refused(replayed, "logout_request_invalid")
    posted_response(with_cookie(app, cookie(browser)).get(sp.login_url()))  # the new session goes on: SSO
    (first, _, _), (outcome, code, detail) = _logout_events(config_dir)
    assert (first, outcome, code) == ("success", "failure", "logout_request_invalid")
    assert "replay" in str(detail)


def test_a_replayed_idp_logout_request_is_refused(app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                  config_dir: Path) -> None:
    """Kommun C's signed LogoutRequest for Karin (by NameID alone, no SessionIndex), replayed after she logged in
    again, would end her new session: refused the second time."""
    from tests.flows.test_federation_logout import (
        KOMMUN_C_SLO,
        SP1_SLO,
        cookie,
        hop,
        idp_logout_url,
        karin_login,
        sp_answers,
        with_cookie,
    )
    karin_login(browser, sp, idp)
    start = idp_logout_url(idp, session_indexes=[])
    carrier = open_browser(app, None)
    to_sp1 = hop(carrier.get(start), SP1_SLO, "SAMLRequest")
    hop(carrier.get(sp_answers(sp, to_sp1.location)), KOMMUN_C_SLO, "SAMLResponse")
    karin_login(browser, sp, idp)                        # she logs in again: a new session

    replayed = open_browser(app, None).get(start)

    assert_refused(replayed, "logout_request_invalid")
    posted_response(with_cookie(app, cookie(browser)).get(sp.login_url()))  # the new session goes on: SSO
    (first, _, _), (outcome, code, detail) = _logout_events(config_dir)
    assert (first, outcome, code) == ("success", "failure", "logout_request_invalid")
    assert "replay" in str(detail)


# --- hardening of 1d707c9: an IdP logout carried by a browser with a session of its own --------------------------


def test_an_idp_logout_carried_by_another_browser_keeps_that_browsers_own_session_cookie(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """Kommun C's IdP ends Karin's session (she logged in on her own computer) through whatever browser is at the
    IdP: here Lars's, who has a broker session of his own. Karin's session ends; Lars's must not: "the browser's
    session cookie is cleared only if its own session ended" (docs/federation.md). Every answer the broker gives
    along the chain (the LogoutRequest to the SP, then the LogoutResponse to the IdP) must leave his cookie be."""
    from tests.flows.test_federation_logout import (
        KOMMUN_C_SLO,
        SP1_SLO,
        cookie,
        hop,
        idp_logout_url,
        karin_login,
        sp_answers,
        with_cookie,
    )
    karin_login(browser, sp, idp)
    lars = open_browser(app, None)
    assert logged_in_to_sp(federated_login(lars, sp, idp, LARS))   # not given to the pysaml2 SP: Karin is its user
    lars_token = cookie(lars)

    first = lars.get(idp_logout_url(idp))
    to_sp1 = hop(first, SP1_SLO, "SAMLRequest")
    last = lars.get(sp_answers(sp, to_sp1.location))
    hop(last, KOMMUN_C_SLO, "SAMLResponse")

    cleared = [(step, c) for step, page in (("LogoutRequest to the SP", first), ("LogoutResponse to the IdP", last))
               for c in set_cookie_headers(page) if c.startswith(COOKIE + "=")]
    assert cleared == [], f"Lars's __Host-broker_session cookie is touched though his session did not end: {cleared}"
    assert lars.client.get_cookie(COOKIE) is not None
    posted_response(lars.get(sp.login_url()))                # his session goes on: SSO from his own cookie
    posted_response(with_cookie(app, lars_token).get(sp.login_url()))
    logout = [e for e in audit_lines(config_dir) if e["event"] == "logout"]
    assert [(e["outcome"], e["data"]["sessions"]) for e in logout] == [("success", 1)]  # type: ignore[index]


# --- hardening of 1d707c9: raw non-ASCII bytes in an HTTP-Redirect query ------------------------------------------


def _raw_query(xml: bytes, relay_state_raw: str, key: Any) -> str:
    """An HTTP-Redirect query whose RelayState is sent as raw characters (not percent-encoded), signed over the
    octets as such a sender would (UTF-8)."""
    from urllib.parse import quote

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from tests.factories.authnrequests import RSA_SHA256, deflate
    encoded = quote(base64.b64encode(deflate(xml)).decode(), safe="")
    query = f"SAMLRequest={encoded}&RelayState={relay_state_raw}&SigAlg={quote(RSA_SHA256, safe='')}"
    signature = key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())
    return query + f"&Signature={quote(base64.b64encode(signature).decode(), safe='')}"


@pytest.mark.parametrize("endpoint", ["/saml/idp/sso", "/saml/idp/slo"])
@pytest.mark.parametrize(("raw", "reason"), [("\u00e9", "request_malformed"),
                                             ("\u00c3\u00a9", "saml_request_malformed")],
                         ids=["latin-1-octet", "utf-8-octets"])
def test_a_redirect_query_with_raw_non_ascii_octets_is_malformed(browser: Browser, sp: DemoSp, demo_material: Any,
                                                                 endpoint: str, raw: str, reason: str) -> None:
    """``RelayState=é`` not percent-encoded (a WSGI server hands the octets on as latin-1 characters): the signed
    octets cannot be rebuilt as the sender signed them; the request is malformed, not an internal error. A query
    that is not even UTF-8 is refused before any SAML handling (``request_malformed``)."""
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

    from tests.factories.authnrequests import AuthnRequests, load_key
    key = load_key(demo_material.root / "sp" / "sp.key")
    if endpoint.endswith("/sso"):
        xml = AuthnRequests(sp, demo_material.root / "sp" / "sp.key").build().xml
    else:
        _, request = sp.client.create_logout_request(BASE_URL + endpoint, BASE_URL + "/saml/idp/metadata",
                                                     name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="x"))
        xml = str(request).encode()

    page = browser.client.get(endpoint, environ_base=browser._environ(),
                              environ_overrides={"QUERY_STRING": _raw_query(xml, raw, key)})

    assert_refused(page, reason)


def test_a_percent_encoded_non_ascii_relay_state_is_fine(browser: Browser, sp: DemoSp, demo_material: Any) -> None:
    """The control: the same RelayState percent-encoded (RFC 3986) is an ordinary login."""
    from tests.factories.authnrequests import AuthnRequests
    craft = AuthnRequests(sp, demo_material.root / "sp" / "sp.key")
    posted = posted_response(browser.get(craft.redirect(craft.build(), relay_state="\u00e9")))
    assert posted.fields["RelayState"] == "\u00e9"


# --- a foreign browser's post naming another login's request ---------------------------------------------------


def _unsigned_response(in_response_to: str) -> dict[str, str]:
    """What anyone can post to the ACS: an unsigned Response naming a pending request of the broker."""
    xml = (f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_junk" Version="2.0" '
           f'IssueInstant="{instant(dt.datetime.now(dt.UTC))}" InResponseTo="{in_response_to}"><samlp:Status/>'
           "</samlp:Response>")
    return {"SAMLResponse": base64.b64encode(xml.encode()).decode()}


def test_a_post_from_another_browser_leaves_the_users_login_to_her(
        app: Flask, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The pending login was taken (GETDEL) before the browser check: a post from another browser naming Karin's
    upstream request ID destroyed her login, and the refusal handed that browser a "try again" link (a new
    pending login of HER request, with her RelayState) and a signed Response for the SP: following the link,
    the attacker's browser got a Success assertion answering Karin's request (login CSRF).

    Defence: the login is looked at, the browser checked, and only then taken. The foreign browser gets a plain
    page (upstream_browser_mismatch): no retry link, no SAMLResponse, no RelayState; Karin's own Response still
    completes her login, with her RelayState."""
    victim = open_browser(app, None)
    at = to_idp(victim, idp, victim.get(sp.login_url(relay_state="/victim/deep-link")))
    attacker = open_browser(app, None)

    foreign = attacker.post(ACS_URL, _unsigned_response(at.request.message.id))

    assert_refused(foreign, "upstream_browser_mismatch")
    refid, retry = error_page(foreign)
    assert retry is None
    body = foreign.get_data(as_text=True)
    assert "SAMLResponse" not in body
    assert "/victim/deep-link" not in body
    assert "X-Form-Target" not in foreign.headers   # no form toward the SP on the page
    own = victim.post(ACS_URL, idp.respond(at.request, at.relay_state, KARIN).fields)
    assert logged_in_to_sp(own)
    assert saml_response_form(own)[1]["RelayState"] == "/victim/deep-link"
    results = [(e["outcome"], e.get("reason"), e["correlation_id"]) for e in audit_lines(config_dir)
               if e["event"] == "upstream_authn_result"]
    assert results == [("failure", "upstream_browser_mismatch", refid), ("success", None, refid)]


def test_a_genuine_response_replayed_from_another_browser_does_not_use_up_the_login(
        app: Flask, sp: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    """The same with the IdP's genuine Response (a copy out of a proxy's log) posted first from another browser:
    refused there, no session opened there, and the user's own post of it completes."""
    victim = open_browser(app, None)
    at = to_idp(victim, idp, victim.get(sp.login_url()))
    post = idp.respond(at.request, at.relay_state, KARIN)
    attacker = open_browser(app, None)

    foreign = attacker.post(ACS_URL, post.fields)

    assert_refused(foreign, "upstream_browser_mismatch")
    assert error_page(foreign)[1] is None
    assert not [c for c in set_cookie_headers(foreign) if c.startswith(COOKIE + "=")]
    assert logged_in_to_sp(victim.post(ACS_URL, post.fields))
    assert len([e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]) == 1


def test_a_response_whose_login_another_answer_took_meanwhile_is_refused(
        app: Flask, browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two answers in the login's own browser (a double submit) both find the login and pass the browser check;
    only one can take it. The other finds it gone: upstream_in_response_to_mismatch, nothing issued."""
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    post = idp.respond(at.request, at.relay_state, KARIN)
    sessions = app.extensions["broker"].sessions
    look = sessions.peek_upstream

    def look_then_lose_the_race(request_id: str) -> dict[str, Any] | None:
        found = look(request_id)
        sessions.take_upstream(request_id)  # the other answer takes the login between the look and the take
        return found

    monkeypatch.setattr(sessions, "peek_upstream", look_then_lose_the_race)
    page = browser.post(ACS_URL, post.fields)

    assert_refused(page, "upstream_in_response_to_mismatch")
    assert not logged_in_to_sp(page)
    refid, _ = error_page(page)
    started = [e for e in audit_lines(config_dir) if e["event"] == "upstream_authn_requested"]
    assert refid == started[0]["correlation_id"]   # filed under the login it tried to answer
    assert [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"] == []


# --- the Response's own fields before its status -----------------------------------------------------------------


def _forged_error(post_fields: dict[str, str], change: dict[str, str]) -> dict[str, str]:
    """The IdP's error Response (AuthnFailed) with ``change`` made to the Response (attributes, or "Issuer"),
    unsigned: what anyone can post to the ACS in the user's browser."""
    root = etree.fromstring(base64.b64decode(post_fields["SAMLResponse"]))
    for signature in root.findall("ds:Signature", NS):
        root.remove(signature)
    for name, value in change.items():
        if name == "Issuer":
            issuer = root.find("saml:Issuer", NS)
            assert issuer is not None
            issuer.text = value
        else:
            root.set(name, value)
    return {**post_fields, "SAMLResponse": base64.b64encode(etree.tostring(root)).decode()}


@pytest.mark.parametrize(("change", "code"), [
    pytest.param({}, "upstream_status", id="control-the-idps-own-status"),
    pytest.param({"Version": "1.0"}, "upstream_version_unsupported", id="version-1.0"),
    pytest.param({"Issuer": "https://evil.example/not-the-idp"}, "upstream_issuer_mismatch", id="foreign-issuer"),
    pytest.param({"Destination": "https://evil.example/acs"}, "upstream_destination_mismatch",
                 id="wrong-destination"),
    pytest.param({"IssueInstant": instant(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))},
                 "upstream_not_yet_valid", id="issued-in-an-hour"),
])
def test_an_error_response_is_checked_as_a_response_before_its_status_counts(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, change: dict[str, str], code: str) -> None:
    """SAML Core §3.2.2, Profiles §4.1.4.3: status_of() was read before anything else of the Response, so an
    unsigned "AuthnFailed" with a foreign Issuer, a wrong Destination or Version 1.0 was taken as the IdP's
    answer and its StatusMessage passed on as the IdP's. The Response-level checks of the validator now come
    first; such a Response is refused with their own reason, and its status is not reported as the IdP's."""
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    error = idp.error(at.request, at.relay_state, "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed",
                      "forged by anyone")

    page = browser.post(ACS_URL, _forged_error(error.fields, change))

    assert_refused(page, code)
    results = [(e.get("reason"), str(e.get("detail"))) for e in audit_lines(config_dir)
               if e["event"] == "upstream_authn_result"]
    assert [reason for reason, _ in results] == [code]
    assert ("forged by anyone" in results[0][1]) == (code == "upstream_status")


# --- HTTP-Redirect parameters that are not UTF-8 -----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["/saml/idp/sso", "/saml/idp/slo"])
def test_a_relay_state_that_is_not_utf8_is_refused_not_altered(browser: Browser, sp: DemoSp, demo_material: Any,
                                                               config_dir: Path, endpoint: str) -> None:
    """Bindings §3.4.3: RelayState goes back exactly as received. ``RelayState=%FF%FE`` (signed as sent) was
    decoded with U+FFFD for the invalid octets, and the SP got "\\ufffd\\ufffd" back. Such a parameter cannot be
    returned as it came: refused as malformed, the detail naming it."""
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

    from tests.factories.authnrequests import AuthnRequests, load_key
    key = load_key(demo_material.root / "sp" / "sp.key")
    if endpoint.endswith("/sso"):
        xml = AuthnRequests(sp, demo_material.root / "sp" / "sp.key").build().xml
    else:
        _, request = sp.client.create_logout_request(BASE_URL + endpoint, BASE_URL + "/saml/idp/metadata",
                                                     name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="x"))
        xml = str(request).encode()

    page = browser.get(f"{endpoint}?{_raw_query(xml, '%FF%FE', key)}")

    assert_refused(page, "saml_request_malformed")
    details = [str(e.get("detail")) for e in audit_lines(config_dir)]
    assert any("RelayState is not percent-encoded UTF-8" in d for d in details), details
