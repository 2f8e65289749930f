"""Whole logins with OCSP and CRLs over HTTP: the page the user gets, the reason code and the audited events.

Kommun A of the example configuration is pointed at revocation servers run here on loopback: an OCSP
responder of its issuing CA (``ocsp.url``, for the users' certificates) and one of its root CA, named in the
issuing CA certificate's AIA (CA certificates always use their own AIA, docs/configuration.md), or a CRL of
the issuing CA served over HTTP. The app runs on a FixedClock kept within a minute of real time, because the
pysaml2 SP judges the assertion's times by the real clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.clock import FixedClock
from broker.config.loader import load_settings
from broker.demo.certificates import CertificateAuthority
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from tests.factories.authnrequests import assert_refused, open_browser
from tests.factories.http_files import FileServer
from tests.factories.municipality_choice import choose
from tests.factories.ocsp_responder import OcspResponder, closed_port_url
from tests.factories.revocation import demo_cas, impostor, leaf, point_issuing_ca_at, set_revocation
from tests.factories.saml import Browser, make_sp, saml_response_form
from tests.flows.conftest import audit_lines

MUNICIPALITY = "kommun-a"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"


@dataclass
class Revocation:
    """Kommun A's revocation servers, its CAs and Anna's certificate, and the app built on them."""

    config_dir: Path
    demo_root: Path
    redis_url: str
    redis_prefix: str
    clock: FixedClock
    root: CertificateAuthority
    issuing: CertificateAuthority
    responder: OcspResponder        # the issuing CA's: answers for users' certificates
    root_responder: OcspResponder   # the root CA's: answers for the issuing CA certificate
    files: FileServer
    anna_pem: str

    @property
    def anna(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.anna_pem.encode())

    def ocsp(self, *, url: str | None = None, failure: str = "fail_closed", **ocsp: object) -> None:
        """OCSP only, through ``url`` (default: the issuing CA's responder). The timeout leaves a loaded test
        machine room to answer; the tests of the timeout itself set a short one."""
        set_revocation(self.config_dir, MUNICIPALITY, {
            "mode": "check", "methods": ["ocsp"], "failure": failure, "clock_skew": "10s",
            "ocsp": {"url": url or self.responder.url, "timeout": "3s", **ocsp},
        })

    def crl(self, path: str = "/issuing-ca.crl") -> None:
        """CRLs only: the issuing CA's from ``files``, the root's (covering the issuing CA) from its file."""
        set_revocation(self.config_dir, MUNICIPALITY, {
            "mode": "check", "methods": ["crl"],
            "crl": {"files": ["certs/kommun-a/root-ca.crl"], "urls": [self.files.url(path)],
                    "distribution_points": False},
        })

    def app(self) -> Flask:
        return create_app(load_settings(self.config_dir), store=RedisStore(self.redis_url, prefix=self.redis_prefix),
                          instance_id="test", clock=self.clock)

    def advance(self, delta: dt.timedelta) -> None:
        """Move the broker's clock, and the responders' with it."""
        self.clock.advance(delta)
        self.responder.now = self.root_responder.now = self.clock.now()


@pytest.fixture
def revocation(config_dir: Path, demo_material: Any, users: Path, redis_url: str,
               redis_prefix: str) -> Iterator[Revocation]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root, issuing = demo_cas(Path(demo_material.root), MUNICIPALITY, start)
    with OcspResponder(root, now=start) as root_responder, FileServer() as files:
        issuing = point_issuing_ca_at(config_dir, MUNICIPALITY, root, issuing, ocsp_url=root_responder.url)
        with OcspResponder(issuing, now=start) as responder:
            yield Revocation(config_dir, Path(demo_material.root), redis_url, redis_prefix, FixedClock(start), root,
                             issuing, responder, root_responder, files, (users / "anna.pem").read_text())
        assert responder.errors == []
    assert root_responder.errors == []
    assert files.errors == []


def sp_for(app: Flask, demo_material: Any) -> DemoSp:
    services = app.extensions["broker"]
    return make_sp(Path(demo_material.root), services.metadata.document(), services.settings.broker.idp.entity_id)


@pytest.fixture
def sso(revocation: Revocation, demo_material: Any) -> Callable[[], tuple[Browser, DemoSp]]:
    """Build the app (after the test has configured Kommun A) with a browser that presents Anna's card."""
    def build() -> tuple[Browser, DemoSp]:
        app = revocation.app()
        return open_browser(app, revocation.anna_pem), sp_for(app, demo_material)
    return build


def events(config_dir: Path) -> list[dict[str, Any]]:
    return audit_lines(config_dir)


def only(config_dir: Path, name: str) -> dict[str, Any]:
    found = [e for e in events(config_dir) if e["event"] == name]
    assert len(found) == 1, [e["event"] for e in events(config_dir)]
    return found[0]


def logged_in(response: TestResponse, sp: DemoSp) -> None:
    assert response.status_code == 200, (response.status_code, response.headers.get("X-Broker-Reason"))
    result = sp.accept(saml_response_form(response)[1]["SAMLResponse"])
    assert result.loa == LOA3


# --- OCSP --------------------------------------------------------------------------------------------


def test_good_answer_logs_in_and_the_audit_names_ocsp_and_the_responders(
        revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]]) -> None:
    revocation.ocsp()
    browser, sp = sso()
    logged_in(browser.get(sp.login_url()), sp)
    accepted = only(revocation.config_dir, "certificate_accepted")
    assert accepted["data"]["revocation"] == "ocsp"
    assert accepted["data"]["revocation_sources"] == sorted([revocation.responder.url,
                                                             revocation.root_responder.url])
    # how each responder was asked: GET, as RFC 5019 §5 asks for a request without nonce
    assert accepted["data"]["revocation_ocsp_methods"] == {revocation.responder.url: "GET",
                                                           revocation.root_responder.url: "GET"}
    assert revocation.responder.methods_seen == revocation.root_responder.methods_seen == ["GET"]
    assert [e["event"] for e in events(revocation.config_dir)] == [
        "login_started", "certificate_presented", "certificate_accepted", "assertion_issued"]
    assert [r.serial_number for r in revocation.responder.requests] == [revocation.anna.serial_number]
    assert [r.serial_number for r in revocation.root_responder.requests] == [
        revocation.issuing.certificate.serial_number]


def test_a_delegated_responder_with_no_well_defined_expiration_date_is_trusted(
        revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]]) -> None:
    """RFC 5280 §4.1.2.5: notAfter 99991231235959Z on the responder's certificate (RFC 6960 §4.2.2.2, issued by the
    CA): a valid signer, and a login, not a 500 without an outcome in the audit trail."""
    revocation.responder.use_delegate(valid_until=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC))
    revocation.ocsp()
    browser, sp = sso()
    logged_in(browser.get(sp.login_url()), sp)
    accepted = only(revocation.config_dir, "certificate_accepted")
    assert accepted["data"]["revocation"] == "ocsp"


def _revoked(r: Revocation) -> None:
    r.responder.set_status(r.anna, "revoked")


def _unknown(r: Revocation) -> None:
    r.responder.set_status(r.anna, "unknown")


@pytest.mark.parametrize(("configure", "ocsp", "reason"), [
    pytest.param(_revoked, {}, "revoked", id="revoked"),
    pytest.param(_unknown, {}, "revocation_unknown", id="unknown"),
    pytest.param(lambda r: None, {"url": closed_port_url()}, "revocation_unavailable", id="responder-down"),
    pytest.param(lambda r: r.responder.slow(3), {"timeout": "500ms"}, "revocation_unavailable", id="responder-slow"),
    pytest.param(lambda r: r.responder.garbage(), {}, "revocation_response_invalid", id="garbage"),
    pytest.param(lambda r: r.responder.sign_with_unrelated_key(), {}, "revocation_response_invalid",
                 id="signed-by-unauthorised-key"),
    pytest.param(lambda r: r.responder.use_delegate(eku=False), {}, "revocation_response_invalid",
                 id="delegate-without-ocsp-signing"),
    pytest.param(lambda r: r.responder.stale(), {}, "revocation_stale", id="stale"),
    pytest.param(lambda r: r.responder.nonce_mismatch(), {"nonce": True}, "revocation_response_invalid",
                 id="nonce-mismatch"),
    pytest.param(lambda r: r.root_responder.set_status(r.issuing.certificate, "revoked"), {}, "revoked",
                 id="issuing-ca-revoked"),
])
def test_refused_login(revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]],
                       configure: Callable[[Revocation], None], ocsp: dict[str, Any], reason: str) -> None:
    configure(revocation)
    revocation.ocsp(**ocsp)
    browser, sp = sso()
    response = browser.get(sp.login_url())
    assert_refused(response, reason)
    rejected = only(revocation.config_dir, "certificate_rejected")
    assert (rejected["reason"], rejected["municipality"]) == (reason, MUNICIPALITY)
    assert "Anna Andersson" not in rejected["detail"]  # user certificates are named by serial, not subject
    assert "assertion_issued" not in [e["event"] for e in events(revocation.config_dir)]


def test_slow_responder_does_not_hold_the_login_past_the_timeout(
        revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]]) -> None:
    revocation.responder.slow(5)
    revocation.ocsp(timeout="500ms")
    browser, sp = sso()
    started = time.monotonic()
    assert_refused(browser.get(sp.login_url()), "revocation_unavailable")
    assert time.monotonic() - started < 0.5 + 1


def test_soft_fail_lets_the_login_through_and_audits_why(
        revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]]) -> None:
    revocation.ocsp(url=closed_port_url(), failure="soft_fail")
    browser, sp = sso()
    logged_in(browser.get(sp.login_url()), sp)
    assert only(revocation.config_dir, "certificate_accepted")["data"]["revocation"] == "soft_fail"
    soft = only(revocation.config_dir, "revocation_soft_fail")
    assert soft["reason"] == "revocation_unavailable"
    assert soft["outcome"] == "failure"
    assert [e["event"] for e in events(revocation.config_dir)] == [
        "login_started", "certificate_presented", "certificate_accepted", "revocation_soft_fail",
        "assertion_issued"]


def test_soft_fail_never_lets_a_revoked_card_in(revocation: Revocation,
                                                sso: Callable[[], tuple[Browser, DemoSp]]) -> None:
    revocation.responder.set_status(revocation.anna, "revoked")
    revocation.ocsp(failure="soft_fail")
    browser, sp = sso()
    assert_refused(browser.get(sp.login_url()), "revoked")
    assert only(revocation.config_dir, "certificate_rejected")["reason"] == "revoked"
    assert "revocation_soft_fail" not in [e["event"] for e in events(revocation.config_dir)]


# --- sessions follow revocation -------------------------------------------------------------------------

VALIDITY = dt.timedelta(seconds=30)   # the responder's answers: nextUpdate 30 s after its "now"
SKEW = dt.timedelta(seconds=10)       # clock_skew in kommun-a.yaml (Revocation.ocsp)

ADVANCES = [
    pytest.param(VALIDITY + dt.timedelta(seconds=1), id="just-past-next-update"),
    pytest.param(VALIDITY + SKEW + dt.timedelta(seconds=1), id="past-next-update-and-clock-skew"),
]


def logged_in_with_short_answer(revocation: Revocation,
                                sso: Callable[[], tuple[Browser, DemoSp]]) -> tuple[Browser, DemoSp]:
    """Anna logged in on an OCSP answer valid for 30 s; her browser then presents no certificate."""
    revocation.responder.validity = VALIDITY
    revocation.ocsp()
    browser, sp = sso()
    logged_in(browser.get(sp.login_url()), sp)
    assert len(revocation.responder.requests) == 1
    browser.certificate_pem = None
    return browser, sp


@pytest.mark.parametrize("advance", ADVANCES)
def test_session_of_a_card_revoked_since_login_ends(revocation: Revocation,
                                                    sso: Callable[[], tuple[Browser, DemoSp]],
                                                    advance: dt.timedelta) -> None:
    browser, sp = logged_in_with_short_answer(revocation, sso)
    revocation.advance(advance)
    revocation.responder.set_status(revocation.anna, "revoked")

    page = browser.get(sp.login_url())  # not logged in any more: which municipality? (Kommun A, no card)
    response = choose(browser, page, MUNICIPALITY)
    assert [e["event"] for e in events(revocation.config_dir)][4:] == [
        "login_started", "session_revoked", "login_refused"]
    assert only(revocation.config_dir, "session_revoked")["reason"] == "revoked"
    assert_refused(response, "certificate_missing")  # no card to log in with
    assert len(revocation.responder.requests) == 2


@pytest.mark.parametrize("advance", ADVANCES)
def test_session_of_a_good_card_is_reused_after_asking_again(revocation: Revocation,
                                                             sso: Callable[[], tuple[Browser, DemoSp]],
                                                             advance: dt.timedelta) -> None:
    """The responder is asked before the session answers the SP: its answer arrives only after a delay, and
    it has been received when the broker responds (a background refresh would arrive later)."""
    browser, sp = logged_in_with_short_answer(revocation, sso)
    revocation.advance(advance)
    revocation.responder.slow(0.5)

    response = browser.get(sp.login_url())
    assert len(revocation.responder.requests) == 2
    logged_in(response, sp)
    assert only(revocation.config_dir, "session_reused")["outcome"] == "success"
    assert "session_revoked" not in [e["event"] for e in events(revocation.config_dir)]


def test_session_is_kept_but_refused_while_the_status_cannot_be_established(
        revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]]) -> None:
    browser, sp = logged_in_with_short_answer(revocation, sso)
    revocation.advance(VALIDITY + SKEW + dt.timedelta(seconds=1))
    revocation.responder.garbage()

    assert_refused(browser.get(sp.login_url()), "revocation_response_invalid")
    refused = [e for e in events(revocation.config_dir) if e["event"] == "login_refused"]
    assert [e["reason"] for e in refused] == ["revocation_response_invalid"]
    assert "session_revoked" not in [e["event"] for e in events(revocation.config_dir)]

    revocation.responder.reset()
    revocation.advance(dt.timedelta(seconds=10))  # past the circuit breaker's retry_after
    logged_in(browser.get(sp.login_url()), sp)
    assert only(revocation.config_dir, "session_reused")["outcome"] == "success"


@pytest.mark.parametrize(("valid_for", "reused"), [
    pytest.param(VALIDITY, False, id="card-expired-by-the-next-request"),
    pytest.param(dt.timedelta(hours=1), True, id="card-still-valid"),
])
def test_a_session_ends_when_its_certificate_does(revocation: Revocation, demo_material: Any,
                                                  valid_for: dt.timedelta, reused: bool) -> None:
    """A session proves no more than the certificate it rests on (RFC 5280 §4.1.2.5): it ends at the card's
    notAfter even when no revocation check looks at the card again (mode none), and the SP is told so in
    SessionNotOnOrAfter (SAML Core §2.7.2)."""
    set_revocation(revocation.config_dir, MUNICIPALITY, {"mode": "none"})
    card = leaf(revocation.issuing, valid_until=revocation.clock.now() + valid_for)
    app = revocation.app()
    browser, sp = open_browser(app, card.pem().decode()), sp_for(app, demo_material)
    response = browser.get(sp.login_url())
    logged_in(response, sp)
    statement = saml_response_form(response)[1]["SAMLResponse"]
    session_end = re.search(rb'SessionNotOnOrAfter="([^"]+)"', base64.b64decode(statement))
    assert session_end is not None
    assert dt.datetime.fromisoformat(session_end[1].decode()) == min(
        card.certificate.not_valid_after_utc, revocation.clock.now() + dt.timedelta(hours=8))

    revocation.advance(VALIDITY + dt.timedelta(seconds=1))
    browser.certificate_pem = None
    response = browser.get(sp.login_url())
    if reused:
        logged_in(response, sp)
        assert only(revocation.config_dir, "session_reused")["outcome"] == "success"
        return
    response = choose(browser, response, MUNICIPALITY)  # not logged in any more, and no card to log in with
    assert_refused(response, "certificate_missing")
    assert only(revocation.config_dir, "session_expired")["detail"] == "expired_absolute"
    assert "session_reused" not in [e["event"] for e in events(revocation.config_dir)]


# --- CRLs over HTTP ------------------------------------------------------------------------------------


def _crl_stale(r: Revocation) -> None:
    now = r.clock.now()
    r.files.put_crl("/issuing-ca.crl", r.issuing.crl(this_update=now - dt.timedelta(days=8),
                                                     next_update=now - dt.timedelta(days=1)))


def _crl_bad_signature(r: Revocation) -> None:
    r.files.put_crl("/issuing-ca.crl", impostor(r.issuing).crl())


def _crl_revoking_anna(r: Revocation) -> None:
    r.issuing.revoke(r.anna)
    r.files.put_crl("/issuing-ca.crl", r.issuing.crl())


@pytest.mark.parametrize(("configure", "reason"), [
    pytest.param(_crl_stale, "revocation_stale", id="crl-stale"),
    pytest.param(_crl_bad_signature, "revocation_unavailable", id="crl-bad-signature"),
    pytest.param(_crl_revoking_anna, "revoked", id="crl-revoked"),
])
def test_refused_login_by_crl(revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]],
                              configure: Callable[[Revocation], None], reason: str) -> None:
    configure(revocation)
    revocation.crl()
    browser, sp = sso()
    assert_refused(browser.get(sp.login_url()), reason)
    rejected = only(revocation.config_dir, "certificate_rejected")
    assert (rejected["reason"], rejected["municipality"]) == (reason, MUNICIPALITY)
    if reason == "revocation_unavailable":
        assert "signature does not verify" in rejected["detail"]


@pytest.mark.parametrize("anna_listed", [pytest.param(True, id="anna-listed"),
                                         pytest.param(False, id="anna-not-listed")])
def test_crl_with_100000_entries(revocation: Revocation, sso: Callable[[], tuple[Browser, DemoSp]],
                                 anna_listed: bool) -> None:
    ca = revocation.issuing
    if anna_listed:
        ca.revoke(revocation.anna)
    crl = ca.crl(extra_serials=100_000)
    assert len(crl) == 100_000 + len(ca.revoked)
    revocation.files.put("/issuing-ca.crl", crl.public_bytes(serialization.Encoding.DER))
    revocation.crl()
    browser, sp = sso()
    response = browser.get(sp.login_url())
    if anna_listed:
        assert_refused(response, "revoked")
        assert only(revocation.config_dir, "certificate_rejected")["reason"] == "revoked"
    else:
        logged_in(response, sp)
        accepted = only(revocation.config_dir, "certificate_accepted")
        assert accepted["data"]["revocation"] == "crl"
        assert revocation.files.url("/issuing-ca.crl") in accepted["data"]["revocation_sources"]
    assert revocation.files.hits["/issuing-ca.crl"] == 1
