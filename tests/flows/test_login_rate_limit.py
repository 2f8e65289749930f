"""Failed-login limits in whole logins (broker.session.rate_limit): certificate logins answered to the real pysaml2
SP, logins at Kommun C's pysaml2 IdP, counters in real Redis, time on a fixed clock.

The limits are lowered here (3 failures per certificate, 5 per address, in 5-minute windows) to keep the walks
short; the defaults are 10 and 20."""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from flask import Flask
from lxml import etree
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.clock import FixedClock
from broker.config.loader import Settings, load_settings
from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from broker.errors import SessionStoreUnavailable
from broker.model import CertificateFacts
from broker.reasons import AUTHN_FAILED
from broker.session.store import RedisStore
from tests.factories.authnrequests import assert_refused, open_browser, status_codes
from tests.factories.idp import ACS_URL, KARIN, back_to_broker, discovery_form, to_idp
from tests.factories.saml import Browser, saml_response_form
from tests.flows.conftest import audit_lines
from tests.unit.config.editing import replace_once

WINDOW = 300
AUTHN_FAILED_STATUS = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
CLASS_KERBEROS = "urn:oasis:names:tc:SAML:2.0:ac:classes:Kerberos"  # a class no municipality maps
PER_CERTIFICATE = 3
PER_ADDRESS = 5
HOME = "192.0.2.10"
PROXY = "127.0.0.1"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def settings(config_dir: Path) -> Settings:
    broker = config_dir / "broker.yaml"
    replace_once(broker, "  failures_per_address: 20\n", f"  failures_per_address: {PER_ADDRESS}\n")
    replace_once(broker, "  failures_per_certificate: 10\n", f"  failures_per_certificate: {PER_CERTIFICATE}\n")
    return load_settings(config_dir)


@pytest.fixture
def app(settings: Settings, store: RedisStore, clock: FixedClock) -> Flask:
    return create_app(settings, clock=clock, store=store, instance_id="test")


def seconds_left(clock: FixedClock) -> int:
    now = clock.now().timestamp()
    return math.ceil((math.floor(now / WINDOW) + 1) * WINDOW - now)


def attempt(browser: Browser, sp: DemoSp, users: Path, name: str) -> TestResponse:
    """A fresh login at the SP with ``name``'s certificate."""
    browser.certificate_pem = (users / f"{name}.pem").read_text()
    return browser.get(sp.login_url())


def fail(browser: Browser, sp: DemoSp, users: Path, names: Sequence[str]) -> None:
    for name in names:
        response = attempt(browser, sp, users, name)
        assert response.status_code in (401, 403), response.headers.get("X-Broker-Reason")


def accepted(response: TestResponse) -> None:
    assert response.status_code == 200, response.headers.get("X-Broker-Reason")
    assert "X-Broker-Reason" not in response.headers
    saml_response_form(response)


def fingerprint(users: Path, name: str) -> str:
    return CertificateFacts.of(x509.load_pem_x509_certificate((users / f"{name}.pem").read_bytes())).fingerprint_sha256


def refid(response: TestResponse) -> str:
    found = re.search(r'class="refid"[^>]*>([0-9A-F-]{19})<', response.get_data(as_text=True))
    assert found is not None
    return found.group(1)


# --- the limits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "refused", "still_welcome"), [
    pytest.param(["david"] * PER_CERTIFICATE, "david", "anna", id="per-certificate"),
    pytest.param(["david", "fatima", "cecilia", "david", "fatima"], "anna", None, id="per-address"),
])
def test_the_attempt_after_the_limit_gets_the_429_page(browser: Browser, sp: DemoSp, users: Path, clock: FixedClock,
                                                       config_dir: Path, failures: list[str], refused: str,
                                                       still_welcome: str | None) -> None:
    fail(browser, sp, users, failures)

    page = attempt(browser, sp, users, refused)

    assert_refused(page, "rate_limited")
    assert page.headers["Retry-After"] == str(seconds_left(clock))
    body = page.get_data(as_text=True)
    assert "För många misslyckade inloggningar" in body
    assert f"Försök igen om {math.ceil(seconds_left(clock) / 60)} min." in body
    assert not re.search(r'href="/saml/idp/login/', body)  # no "try again" at once
    _, back = saml_response_form(page)  # the way back to the SP: AuthnFailed, for the user to take
    assert status_codes(etree.fromstring(base64.b64decode(back["SAMLResponse"])))[1] == AUTHN_FAILED

    events = [e for e in audit_lines(config_dir) if e["correlation_id"] == refid(page)]
    assert [(e["event"], e.get("reason")) for e in events] == [
        ("login_started", None), ("certificate_presented", None), ("login_refused", "rate_limited")]
    assert events[-1]["cert_sha256"] == fingerprint(users, refused)  # the certificate was not even validated
    # whose card it is, for `audit query --user` (the card's configured CA signed it)
    assert (events[-1]["user"], events[-1]["user_kind"]) == (f"SE2120001009-{refused}", "hsa_id")
    assert events[-1]["client"] == HOME

    if still_welcome is not None:  # the address has failures to spare: another card logs in
        accepted(attempt(browser, sp, users, still_welcome))


def test_the_page_speaks_english_too(browser: Browser, sp: DemoSp, users: Path, clock: FixedClock) -> None:
    fail(browser, sp, users, ["david"] * PER_CERTIFICATE)
    browser.headers = {"Accept-Language": "en"}
    body = attempt(browser, sp, users, "david").get_data(as_text=True)
    assert "Too many failed logins" in body
    assert f"Try again in {math.ceil(seconds_left(clock) / 60)} min." in body


@pytest.mark.parametrize(("wait", "reason"), [
    pytest.param(-1, "rate_limited", id="one-second-before-the-window-ends"),
    pytest.param(0, "certificate_expired", id="when-the-window-ends"),
])
def test_the_refusal_lasts_until_the_window_ends(browser: Browser, sp: DemoSp, users: Path, clock: FixedClock,
                                                 wait: int, reason: str) -> None:
    fail(browser, sp, users, ["david"] * PER_CERTIFICATE)
    clock.advance(dt.timedelta(seconds=seconds_left(clock) + wait))
    page = attempt(browser, sp, users, "david")
    assert_refused(page, reason)
    if reason == "rate_limited":
        assert page.headers["Retry-After"] == "1"


def test_successful_logins_never_count(browser: Browser, sp: DemoSp, users: Path) -> None:
    for _ in range(PER_ADDRESS + PER_CERTIFICATE):
        accepted(attempt(open_browser(browser.client.application, None), sp, users, "anna"))  # new sessions
        accepted(attempt(browser, sp, users, "anna"))  # the SSO session
    fail(browser, sp, users, ["david"] * (PER_CERTIFICATE - 1))
    accepted(attempt(browser, sp, users, "anna"))


def test_refusals_the_user_cannot_cause_do_not_count(browser: Browser, sp: DemoSp, users: Path) -> None:
    """A certificate without a card is no failed login (certificate_missing): the user has not tried yet."""
    browser.certificate_pem = None
    for _ in range(PER_ADDRESS + 1):
        page = browser.get(sp.login_url())
        assert page.status_code == 200  # the discovery page
        assert_refused(browser.post("/discovery", {**discovery_form(page), "municipality": "kommun-a"}),
                       "certificate_missing")
    accepted(attempt(browser, sp, users, "anna"))


def test_the_address_is_the_one_the_trusted_proxy_names(config_dir: Path, settings: Settings, store: RedisStore,
                                                        clock: FixedClock, sp: DemoSp, users: Path) -> None:
    """Behind the proxy every request comes from its address: the client is the one it appends to
    X-Forwarded-For (client_certificate.proxy.trusted_networks), and only that client is limited."""
    replace_once(config_dir / "broker.yaml", "    trusted_networks: []\n", f'    trusted_networks: ["{PROXY}/32"]\n')
    app = create_app(load_settings(config_dir), clock=clock, store=store, instance_id="test")
    first, second = open_browser(app, None), open_browser(app, None)
    for browser, client in ((first, "203.0.113.5"), (second, "203.0.113.6")):
        browser.remote_addr = PROXY
        browser.headers = {"X-Forwarded-For": f"198.51.100.1, {client}"}
    fail(first, sp, users, ["david", "fatima", "cecilia", "david", "fatima"])

    assert_refused(attempt(first, sp, users, "anna"), "rate_limited")
    accepted(attempt(second, sp, users, "anna"))
    refused = [e for e in audit_lines(config_dir) if e.get("reason") == "rate_limited"]
    assert [e["client"] for e in refused] == ["203.0.113.5"]


# --- logins at a municipal IdP ------------------------------------------------------------------------------------


def test_responses_the_broker_refuses_count_for_the_address(browser: Browser, sp: DemoSp, idp: DemoIdp,
                                                           config_dir: Path) -> None:
    """The IdP's Response to a login this browser started, refused at the ACS (here: an authentication class
    the municipality did not map), counts, as a wrong card does."""
    browser.certificate_pem = None
    for _ in range(PER_ADDRESS):
        at = to_idp(browser, idp, browser.get(sp.login_url()))
        answer = back_to_broker(browser, idp.respond(at.request, at.relay_state, KARIN, class_ref=CLASS_KERBEROS))
        assert answer.headers.get("X-Broker-Reason") == "upstream_authn_context_unknown"

    page = browser.get(sp.login_url())
    chosen = browser.post("/discovery", {**discovery_form(page), "municipality": "kommun-c"})
    assert_refused(chosen, "rate_limited")  # not sent on to the IdP
    reasons = [e.get("reason") for e in audit_lines(config_dir) if e["event"] == "login_refused"]
    assert reasons == ["rate_limited"]


def test_the_idps_own_error_status_does_not_count(browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    """Users cancelling at their IdP (or failing its login, which the IdP limits itself) behind one office
    address must not lock that address out of the broker, certificate logins included."""
    browser.certificate_pem = None
    for _ in range(PER_ADDRESS + 2):
        at = to_idp(browser, idp, browser.get(sp.login_url()))
        answer = back_to_broker(browser, idp.error(at.request, at.relay_state, AUTHN_FAILED_STATUS))
        assert answer.headers.get("X-Broker-Reason") == "upstream_status"
    to_idp(browser, idp, browser.get(sp.login_url()))  # still sent on to the IdP


def test_junk_posted_to_the_acs_is_no_login_attempt(browser: Browser, sp: DemoSp, users: Path,
                                                   config_dir: Path) -> None:
    """Any web page can make its visitors' browsers post junk to the ACS cross-site; counting it would let
    a stranger lock out everyone behind a municipality's address. Only failures of logins the browser
    started count."""
    browser.certificate_pem = None
    for _ in range(PER_ADDRESS * 2):
        assert_refused(browser.post(ACS_URL, {"SAMLResponse": "bm90IFNBTUw="}), "upstream_response_malformed")
    accepted(attempt(browser, sp, users, "anna"))
    assert not [e for e in audit_lines(config_dir) if e.get("reason") == "rate_limited"]


# --- switched off; Redis failing ----------------------------------------------------------------------------------


def test_limits_switched_off(config_dir: Path, store: RedisStore, clock: FixedClock, sp: DemoSp,
                             users: Path) -> None:
    replace_once(config_dir / "broker.yaml", "  enabled: true\n", "  enabled: false\n")
    app = create_app(load_settings(config_dir), clock=clock, store=store, instance_id="test")
    browser = open_browser(app, None)
    for _ in range(PER_ADDRESS + 2):
        assert_refused(attempt(browser, sp, users, "david"), "certificate_expired")


class _CountersDown(RedisStore):
    """Redis answering everything but the limiter's commands (MGET, INCR)."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        raise SessionStoreUnavailable("Redis MGET failed: connection refused")

    def increment(self, keys: Sequence[str], ttl: float) -> list[int]:
        raise SessionStoreUnavailable("Redis INCR failed: connection refused")


def test_the_limiter_failing_fails_the_login_closed(settings: Settings, redis_url: str, redis_prefix: str,
                                                    clock: FixedClock, sp: DemoSp, users: Path,
                                                    config_dir: Path) -> None:
    app = create_app(settings, clock=clock, store=_CountersDown(redis_url, prefix=redis_prefix),
                     instance_id="test")
    page = attempt(open_browser(app, None), sp, users, "anna")
    assert_refused(page, "session_store_unavailable")
    assert "SAMLResponse" not in page.get_data(as_text=True)
    refused = [e for e in audit_lines(config_dir) if e["event"] == "login_refused"]
    assert [e["reason"] for e in refused] == ["session_store_unavailable"]
