"""A logout that completes while an SSO request is being answered from the same session ends it for good (OWASP
Session Management Cheat Sheet: logout must end the session on the server; SAML Profiles §4.4).

The defect (review: repro_session_resurrect): the SSO request had read the session before the logout ended it,
then wrote it back with a plain SET and re-created its participant list, so the logged-out cookie got assertions
again without any certificate. Now the request stores the session with its SP only if the session still exists
(one script: ``SessionManager.save_reused``, ``RedisStore.put_if_present``), and otherwise answers nothing from it.

A whole login through the app (real pysaml2 SP, real Redis). The logout, a second request with the same cookie,
runs at a chosen point of the SSO request (a store hook), so the interleaving is the same on every run. These
tests live with the session tests because the fix is the store's conditional write."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from flask import Flask
from saml2.saml import NameID
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.config.loader import load_settings
from broker.demo.sp import DemoSp
from broker.session.sessions import SessionManager
from broker.session.store import RedisStore
from tests.factories.authnrequests import (
    AuthnRequests,
    assert_refused,
    error_page,
    login,
    open_browser,
    posted_response,
    sp_accepts,
)
from tests.factories.municipality_choice import is_discovery_page
from tests.factories.saml import Browser, make_sp
from tests.flows.conftest import audit_lines
from tests.flows.test_logout import pysaml2_logout_url

COOKIE = "__Host-broker_session"
SUCCESS = ("urn:oasis:names:tc:SAML:2.0:status:Success", None)
NO_PASSIVE = ("urn:oasis:names:tc:SAML:2.0:status:Responder", "urn:oasis:names:tc:SAML:2.0:status:NoPassive")


class InterleavingStore(RedisStore):
    """Runs ``interleave`` once, at ``point`` of an SSO request answered from a session: just after the request
    read the session ("after-read", where the reviewer's logout completed), or just before it stores the session
    again with the SP it answers ("before-write", the last moment)."""

    point = ""
    interleave: Callable[[], None] | None = None

    def get(self, key: str) -> bytes | None:
        value = super().get(key)
        if key.startswith("session:"):
            self._at("after-read")
        return value

    def put_if_present(self, key: str, value: bytes, ttl: float, *,
                       members: Sequence[tuple[str, str, float]] = (), replacing: str = "",
                       unless: bytes = b"") -> bool:
        if key.startswith("session:"):
            self._at("before-write")
        return super().put_if_present(key, value, ttl, members=members, replacing=replacing, unless=unless)

    def _at(self, point: str) -> None:
        if point == self.point and self.interleave is not None:
            run, self.interleave = self.interleave, None
            run()


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> InterleavingStore:
    return InterleavingStore(redis_url, prefix=redis_prefix)


@pytest.fixture
def app(config_dir: Path, store: InterleavingStore) -> Flask:
    return create_app(load_settings(config_dir), store=store, instance_id="test")


@pytest.fixture
def sp(app: Flask, demo_material) -> DemoSp:  # type: ignore[no-untyped-def]
    broker = app.extensions["broker"]
    return make_sp(demo_material.root, broker.metadata.document(), broker.settings.broker.idp.entity_id)


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


@pytest.fixture
def anna(demo_material) -> str:  # type: ignore[no-untyped-def]
    return (Path(demo_material.users) / "anna.pem").read_text()


@pytest.fixture
def browser(app: Flask, anna: str) -> Browser:
    return open_browser(app, anna)


def logged_in(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> tuple[str, NameID]:
    """Anna logs in with her card: the session cookie, and the NameID the SP knows her by."""
    crafted, posted = login(browser, craft)
    name_id = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id).name_id
    cookie = browser.client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value, name_id


def logout_midway(app: Flask, store: InterleavingStore, point: str, sp: DemoSp, token: str,
                  name_id: NameID) -> list[int]:
    """At ``point`` of the next SSO request, the SP's single logout with the same cookie completes (another tab,
    another broker instance); its HTTP status is appended to the list returned."""
    statuses: list[int] = []

    def log_out() -> None:
        other = open_browser(app, None)
        other.client.set_cookie(COOKIE, token, domain="localhost")
        url = pysaml2_logout_url(sp, name_id)
        # a request of its own (own contexts), while the SSO request waits: as on another thread or instance
        worker = threading.Thread(target=lambda: statuses.append(other.get(url).status_code))
        worker.start()
        worker.join()
        assert app.extensions["broker"].sessions.find(token) == (None, "unknown")

    store.point, store.interleave = point, log_out
    return statuses


def with_cookie_only(app: Flask, token: str, url: str) -> TestResponse:
    """The SSO request of a browser that has the cookie and no certificate at all."""
    other = open_browser(app, None)
    other.client.set_cookie(COOKIE, token, domain="localhost")
    return other.get(url)


def assert_ended(sessions: SessionManager, store: RedisStore, token: str) -> None:
    sid = sessions.ref(token)
    assert sessions.find(token) == (None, "unknown")
    assert sessions.participants(token) == []
    assert store.get("session:" + sid) is None
    assert store.members("session-sps:" + sid) == set()


@pytest.mark.parametrize("point", ["after-read", "before-write"])
def test_a_logout_during_an_sso_request_is_not_undone(app: Flask, store: InterleavingStore, browser: Browser,
                                                      sp: DemoSp, craft: AuthnRequests, config_dir: Path,
                                                      point: str) -> None:
    token, name_id = logged_in(browser, sp, craft)
    logouts = logout_midway(app, store, point, sp, token, name_id)

    response = browser.get(craft.redirect(craft.build()))  # SSO by session reuse, interleaved with the logout

    assert logouts == [303]  # the logout ran, in the middle of the request, and completed (LogoutResponse)
    assert "SAMLResponse" not in response.get_data(as_text=True)
    assert_refused(response, "login_unknown")
    assert_ended(app.extensions["broker"].sessions, store, token)
    refused = [r for r in audit_lines(config_dir) if r["event"] == "login_refused"]
    assert [(r["reason"], r["sp"]) for r in refused] == [("login_unknown", sp.client.config.entityid)]
    assert [r["data"]["session"] for r in audit_lines(config_dir)  # type: ignore[index]
            if r["event"] == "assertion_issued"] == ["new"]

    # later, the logged-out cookie without any certificate: no assertion, a fresh login (choose a municipality)
    later = with_cookie_only(app, token, craft.redirect(craft.build()))
    assert "SAMLResponse" not in later.get_data(as_text=True)
    assert is_discovery_page(later)


def test_after_a_logout_midway_the_request_continues_with_a_fresh_login(app: Flask, store: InterleavingStore,
                                                                       browser: Browser, sp: DemoSp,
                                                                       craft: AuthnRequests) -> None:
    """The refusal keeps the SP's request: "try again" logs in afresh (here with the card), in a new session."""
    token, name_id = logged_in(browser, sp, craft)
    logout_midway(app, store, "before-write", sp, token, name_id)
    crafted = craft.build()
    _, retry = error_page(browser.get(craft.redirect(crafted)))
    assert retry is not None

    posted = posted_response(browser.get(retry))

    assert posted.status == SUCCESS
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    fresh = browser.client.get_cookie(COOKIE)
    assert fresh is not None
    assert fresh.value != token
    assert_ended(app.extensions["broker"].sessions, store, token)


def test_is_passive_during_a_logout_midway_gets_no_passive(app: Flask, store: InterleavingStore, browser: Browser,
                                                           sp: DemoSp, craft: AuthnRequests) -> None:
    """SAML Core §3.4.1: IsPassive allows no page; the session is gone, so the SP hears NoPassive."""
    token, name_id = logged_in(browser, sp, craft)
    logout_midway(app, store, "after-read", sp, token, name_id)

    posted = posted_response(browser.get(craft.redirect(craft.build(is_passive="true"))))

    assert posted.status == NO_PASSIVE
    assert_ended(app.extensions["broker"].sessions, store, token)


def test_without_a_logout_the_session_is_reused_and_its_sp_kept_for_logout(app: Flask, store: InterleavingStore,
                                                                          browser: Browser, sp: DemoSp,
                                                                          craft: AuthnRequests) -> None:
    """The other side of the guard: a live session still answers without a certificate, and is stored again
    with the SP (its activity and its participant list)."""
    token, _ = logged_in(browser, sp, craft)
    crafted = craft.build()

    posted = posted_response(with_cookie_only(app, token, craft.redirect(crafted)))

    assert posted.status == SUCCESS
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    sessions = app.extensions["broker"].sessions
    found, _ = sessions.find(token)
    assert found is not None
    assert [p.sp_entity_id for p in sessions.participants(token)] == [sp.client.config.entityid]
