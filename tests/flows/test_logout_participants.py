"""Who single logout reaches, and with what (SAML Profiles §4.4; Core §2.7.2 SessionIndex, §3.7): the SPs of a
session replaced by a new login in the same browser (ForceAuthn, another card) stay participants; each SP has its
own SessionIndex and one participant record, its newest, whose NameID and SessionIndex the broker matches in the
SP's LogoutRequest and sends in its own.

The peers are the real pysaml2 SPs (and Kommun C's pysaml2 IdP) of tests/flows/test_federation_logout.py, whose
configuration (a second SP with SingleLogoutService) and message helpers these tests share.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from saml2.saml import NameID

from broker.config.loader import Settings, load_settings
from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from broker.errors import SessionStoreUnavailable
from broker.session.store import RedisStore
from tests.factories.authnrequests import (
    NS,
    load_key,
    posted_response,
    redirect_message,
    redirect_url,
    status_codes,
)
from tests.factories.idp import IDP_ENTITY_ID, KARIN, back_to_broker, to_idp
from tests.factories.saml import Browser, saml_response_form
from tests.flows import test_federation_logout as federation
from tests.flows.test_federation_logout import (
    BROKER_IDP,
    IDP_SLO,
    KOMMUN_C_SLO,
    SP1,
    SP1_SLO,
    SP2,
    SP2_SLO,
    SUCCESS,
    Hop,
    cookie,
    data,
    events,
    goes_to_login,
    hop,
    idp_answers,
    karin_login,
    name_id_at,
    sp_answers,
    sp_logout_url,
    sso_login,
    with_cookie,
)

config_dir = federation.config_dir  # fixture: the example configuration plus the second SP (with SLO)
sp2 = federation.sp2                # fixture: that SP, a real pysaml2 SP

UNKNOWN_PRINCIPAL = ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                     "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal")


def session_indexes(sent: Hop) -> list[str | None]:
    return [e.text for e in sent.root.findall("samlp:SessionIndex", NS)]


def nameid_of(sent: Hop) -> tuple[str | None, str | None]:
    element = sent.root.find("saml:NameID", NS)
    assert element is not None
    return element.text, element.get("Format")


def index_of(sp: DemoSp) -> str:
    """The SessionIndex of the assertion ``sp`` (pysaml2) accepted last."""
    assert sp.last_login is not None
    assert sp.last_login.session_index
    return sp.last_login.session_index


def force_authn_login(browser: Browser, sp: DemoSp) -> NameID:
    """``sp`` asks with ForceAuthn; the browser presents its card again: a new session replaces the old."""
    posted = posted_response(browser.get(sp.login_url(force_authn=True)))
    sp.accept(posted.fields["SAMLResponse"])
    return name_id_at(sp)


# --- 1. a new login in the same browser keeps the replaced session's SPs in single logout ---------------------


def test_logout_from_the_sp_of_the_new_login_reaches_the_sp_of_the_replaced_session(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, config_dir: Path) -> None:
    at_sp1 = sso_login(browser, sp)
    sp1_index = index_of(sp)
    replaced = cookie(browser)
    at_sp2 = force_authn_login(browser, sp2)
    token = cookie(browser)
    assert token != replaced  # a new session (no fixation) ...
    goes_to_login(with_cookie(app, replaced), sp)  # ... and the old one is over

    start = sp_logout_url(sp2, at_sp2)
    to_sp1 = hop(browser.get(start), SP1_SLO, "SAMLRequest")  # SP1 still holds her: it is asked
    assert nameid_of(to_sp1) == (at_sp1.text, at_sp1.format)  # with what SP1 itself was given
    assert session_indexes(to_sp1) == [sp1_index]
    goes_to_login(with_cookie(app, token), sp2)  # the session ended at once
    final = hop(browser.get(sp_answers(sp, to_sp1.location)), SP2_SLO, "SAMLResponse")
    assert not sp.client.users.subjects()
    assert status_codes(final.root) == (SUCCESS, None)
    assert final.root.get("InResponseTo") == redirect_message(start, "SAMLRequest").root.get("ID")

    issued = [e for e in events(config_dir, "assertion_issued") if e["sp"] == SP2]
    assert "replaces the browser's session" in str(issued[0]["detail"])
    assert SP1 in str(issued[0]["detail"])  # the operator sees which services were kept
    logout, = events(config_dir, "logout")
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP1}"]  # type: ignore[call-overload]
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], list(data(completed)["confirmed"])) == ("success", [SP1])  # type: ignore[call-overload]


@pytest.mark.parametrize("how", ["force_authn"])
def test_logout_from_the_sp_of_the_replaced_session_ends_the_new_one(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, users: Path, config_dir: Path, how: str) -> None:
    """Before, SP1's LogoutRequest got UnknownPrincipal and the new session lived on: the next AuthnRequest from
    the browser logged in again without a card. (Another user's card in the same browser, a shared ward PC, does
    not take the replaced session over: test_federation_logout.py,
    test_another_users_card_login_keeps_a_live_sessions_sps_apart.)"""
    at_sp1 = sso_login(browser, sp)
    at_sp2 = force_authn_login(browser, sp2)
    sp2_index = index_of(sp2)
    token = cookie(browser)

    start = sp_logout_url(sp, at_sp1)
    to_sp2 = hop(browser.get(start), SP2_SLO, "SAMLRequest")
    assert nameid_of(to_sp2) == (at_sp2.text, at_sp2.format)
    assert session_indexes(to_sp2) == [sp2_index]
    final = hop(browser.get(sp_answers(sp2, to_sp2.location)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    assert not sp2.client.users.subjects()

    goes_to_login(with_cookie(app, token), sp2)  # the new session is over: no login without a card
    browser.certificate_pem = None
    goes_to_login(browser, sp2)
    logout, = events(config_dir, "logout")
    assert (logout["outcome"], data(logout)["session_ended"]) == ("success", True)


# --- 2. every SP its own SessionIndex, and the SP's own is the one that counts ---------------------------------


def test_each_sp_gets_its_own_session_index(browser: Browser, sp: DemoSp, sp2: DemoSp) -> None:
    sso_login(browser, sp)
    sp1_index = index_of(sp)
    sso_login(browser, sp2)
    sp2_index = index_of(sp2)
    assert sp1_index != sp2_index  # Core §2.7.2: nothing for the SPs to correlate her by
    assert min(len(sp1_index), len(sp2_index)) >= 33
    sso_login(browser, sp)
    assert index_of(sp) == sp1_index  # the same SP, the same session: the same SessionIndex


@pytest.mark.parametrize("named", ["another_sps", "own_and_another_sps"])
def test_a_logout_request_is_matched_against_the_sps_own_session_index(
        browser: Browser, sp: DemoSp, sp2: DemoSp, demo_material, named: str) -> None:  # type: ignore[no-untyped-def]
    at_sp1 = sso_login(browser, sp)
    sp1_index = index_of(sp)
    sso_login(browser, sp2)
    indexes = [index_of(sp2)] if named == "another_sps" else [index_of(sp2), sp1_index]
    _, request = sp.client.create_logout_request(IDP_SLO, BROKER_IDP, name_id=at_sp1, sign=False,
                                                 session_indexes=indexes)
    url = redirect_url(str(request).encode(), key=load_key(demo_material.root / "sp" / "sp.key"), endpoint=IDP_SLO,
                       relay_state="lo")
    if named == "another_sps":  # SP2's SessionIndex is not SP1's: nobody's session of SP1's
        answer = hop(browser.get(url), SP1_SLO, "SAMLResponse")
        assert status_codes(answer.root) == UNKNOWN_PRINCIPAL
        posted_response(browser.get(sp.login_url()))  # the session goes on
    else:  # any of those named is enough (Core §3.7.1: zero or more SessionIndex)
        hop(browser.get(url), SP2_SLO, "SAMLRequest")


# --- 3. one participant record per SP: its newest ----------------------------------------------------------------


def test_an_sp_answered_twice_with_transient_nameids_gets_one_logout_request_for_the_newest(
        browser: Browser, sp: DemoSp, sp2: DemoSp, config_dir: Path) -> None:
    first = posted_response(browser.get(sp.login_url(transient=True)))
    sp.accept(first.fields["SAMLResponse"])
    second = posted_response(browser.get(sp.login_url(transient=True)))  # SP1's own session lapsed: SSO again
    sp.accept(second.fields["SAMLResponse"])
    older, newest = (p.root.find(".//saml:NameID", NS).text for p in (first, second))  # type: ignore[union-attr]
    assert older != newest
    # like a real SP, SP1 keeps one session per user: the newest
    sp.client.local_logout(next(n for n in sp.client.users.subjects() if n.text == older))
    sso_login(browser, sp2)

    to_sp1 = hop(browser.get(sp_logout_url(sp2, name_id_at(sp2))), SP1_SLO, "SAMLRequest")
    assert nameid_of(to_sp1)[0] == newest
    assert session_indexes(to_sp1) == [index_of(sp)]
    final = hop(browser.get(sp_answers(sp, to_sp1.location)), SP2_SLO, "SAMLResponse")  # no second request
    assert status_codes(final.root) == (SUCCESS, None)  # and no "partial logout" page

    logout, = events(config_dir, "logout")
    assert list(data(logout)["propagate_to"]) == [f"sp:{SP1}"]  # type: ignore[call-overload]
    completed, = events(config_dir, "logout_completed")
    assert (completed["outcome"], list(data(completed)["confirmed"]), list(data(completed)["failed"])) == (  # type: ignore[call-overload]
        "success", [SP1], [])


# --- 4. the municipal IdP session of a replaced session ------------------------------------------------------------


def test_force_authn_at_the_idp_keeps_its_newest_session_and_audits_the_earlier(
        browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp, config_dir: Path) -> None:
    at_sp1 = karin_login(browser, sp, idp)
    earlier = idp.logins["karin"].session_index
    at = to_idp(browser, idp, browser.get(sp2.login_url(force_authn=True)))  # her municipality's IdP, asked again
    _, fields = saml_response_form(back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN)))
    sp2.accept(fields["SAMLResponse"])
    newest = idp.logins["karin"].session_index
    assert newest != earlier

    to_sp1 = hop(browser.get(sp_logout_url(sp2, name_id_at(sp2))), SP1_SLO, "SAMLRequest")
    assert nameid_of(to_sp1)[0] == at_sp1.text
    to_idp_ = hop(browser.get(sp_answers(sp, to_sp1.location)), KOMMUN_C_SLO, "SAMLRequest")
    assert session_indexes(to_idp_) == [newest]  # the IdP session this browser is logged in to now
    final = hop(browser.get(idp_answers(idp, to_idp_.location)), SP2_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)

    issued = [e for e in events(config_dir, "assertion_issued") if e["sp"] == SP2]
    assert "superseded" in str(issued[0]["detail"])
    assert earlier in str(issued[0]["detail"])  # not silently forgotten


def test_a_certificate_login_replacing_another_users_federated_session_leaves_her_idp_to_her_logout(
        browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp, users: Path, config_dir: Path) -> None:
    """Karin's session from Kommun C's IdP, then Anna's card in the same browser (a shared PC): Kommun C's IdP
    session and SP1 are Karin's, not Anna's. Anna's logout asks neither (before, it ended Karin's IdP session and
    SP1's); Karin's session is kept apart, and her logout at SP1 still reaches her IdP session."""
    at_sp1 = karin_login(browser, sp, idp)
    upstream = idp.logins["karin"]
    browser.certificate_pem = (users / "anna.pem").read_text()
    at_sp2 = force_authn_login(browser, sp2)

    final = hop(browser.get(sp_logout_url(sp2, at_sp2)), SP2_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    logout, = events(config_dir, "logout")
    assert list(data(logout)["propagate_to"]) == []  # type: ignore[call-overload]

    to_idp_ = hop(browser.get(sp_logout_url(sp, at_sp1)), KOMMUN_C_SLO, "SAMLRequest")
    assert (nameid_of(to_idp_)[0], session_indexes(to_idp_)) == (upstream.name_id, [upstream.session_index])
    final = hop(browser.get(idp_answers(idp, to_idp_.location)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    karins = events(config_dir, "logout")[-1]
    assert list(data(karins)["propagate_to"]) == [f"idp:{IDP_ENTITY_ID}"]  # type: ignore[call-overload]
    assert karins["user"] == events(config_dir, "session_replaced")[0]["user"] != logout["user"]


# --- 5. sessions stored by the previous release ------------------------------------------------------------------


def test_a_session_stored_before_per_sp_session_indexes_still_logs_out(
        app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, store: RedisStore) -> None:
    """The previous release gave every SP the session's one SessionIndex and stored participants as
    [SP, NameID, format]: such a session is matched and propagated with that SessionIndex."""
    at_sp1 = sso_login(browser, sp)
    shared = index_of(sp)  # stands in for the session-wide SessionIndex both SPs would have been given
    at_sp2 = sso_login(browser, sp2)
    token = cookie(browser)
    sid = hashlib.sha256(token.encode()).hexdigest()
    raw = store.get("session:" + sid)
    assert raw is not None
    store.delete("session-sps:" + sid)
    store.put("session:" + sid, json.dumps({**json.loads(raw), "session_index": shared}).encode(), 600,
              members=[("session-sps:" + sid, json.dumps([entity_id, name_id.text, name_id.format]), 600)
                       for entity_id, name_id in ((SP1, at_sp1), (SP2, at_sp2))])

    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    assert (nameid_of(to_sp2)[0], session_indexes(to_sp2)) == (at_sp2.text, [shared])
    final = hop(browser.get(sp_answers(sp2, to_sp2.location)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (SUCCESS, None)
    goes_to_login(with_cookie(app, token), sp)


class TestAnIdleSession:
    """The session's idle timeout ends its answering, not its SPs' hold on the user: they were told
    SessionNotOnOrAfter = the absolute end, and a logout from one of them must still reach the others."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        path = config_dir / "broker.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["session"]["idle_timeout"] = "2s"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return load_settings(config_dir)

    def test_logout_after_the_idle_timeout_still_reaches_the_other_sp(
            self, app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, config_dir: Path) -> None:
        at_sp1 = sso_login(browser, sp)
        sso_login(browser, sp2)  # answered from the session
        time.sleep(2.5)  # idle: the session answers no SP now
        goes_to_login(with_cookie(app, cookie(browser)), sp)
        start = sp_logout_url(sp, at_sp1)
        to_sp2 = hop(browser.get(start), SP2_SLO, "SAMLRequest")  # SP2 still holds her: it is asked
        final = hop(browser.get(sp_answers(sp2, to_sp2.location)), SP1_SLO, "SAMLResponse")
        assert status_codes(final.root) == (SUCCESS, None)
        logout, = events(config_dir, "logout")
        assert data(logout)["session_ended"] is True  # type: ignore[call-overload]
        assert list(data(logout)["propagate_to"]) == [f"sp:{SP2}"]  # type: ignore[call-overload]


class _FailingSessionWrite(RedisStore):
    """The session store failing once, on the next write of a session (armed by the test)."""

    armed = False

    def put(self, key: str, value: bytes, ttl: float, *, members: Any = ()) -> None:
        if self.armed and key.startswith("session:"):
            self.armed = False
            raise SessionStoreUnavailable("Redis MULTI/EXEC failed: injected")
        super().put(key, value, ttl, members=members)


class TestAStoreFailureWhileANewLoginReplacesTheSession:
    """A new login in the browser (ForceAuthn) takes the old session and then stores the new one with the old one's
    SPs. When the store fails in between, the user gets the 503 page and tries again: the old session's SPs still
    hold her and must stay in single logout. Before, the old session was gone and its SPs with it: the retry's
    session did not know them, and a logout from it answered Success while SP1 kept her logged in."""

    @pytest.fixture
    def store(self, redis_url: str, redis_prefix: str) -> _FailingSessionWrite:
        return _FailingSessionWrite(redis_url, prefix=redis_prefix)

    def test_the_retry_keeps_the_replaced_sessions_sps_in_single_logout(
            self, app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, store: _FailingSessionWrite,
            config_dir: Path) -> None:
        at_sp1 = sso_login(browser, sp)
        store.armed = True
        failed = browser.get(sp2.login_url(force_authn=True))
        assert (failed.status_code, failed.headers.get("X-Broker-Reason")) == (503, "session_store_unavailable")
        at_sp2 = force_authn_login(browser, sp2)  # the user's retry

        to_sp1 = hop(browser.get(sp_logout_url(sp2, at_sp2)), SP1_SLO, "SAMLRequest")  # SP1 is asked
        assert nameid_of(to_sp1) == (at_sp1.text, at_sp1.format)
        final = hop(browser.get(sp_answers(sp, to_sp1.location)), SP2_SLO, "SAMLResponse")
        assert status_codes(final.root) == (SUCCESS, None)
        assert not sp.client.users.subjects()
