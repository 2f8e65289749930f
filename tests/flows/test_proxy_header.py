"""The client certificate forwarded by a TLS-terminating proxy (nginx ``$ssl_client_escaped_cert``).

The header is honoured only from ``client_certificate.proxy.trusted_networks``;
from anywhere else it is ignored (audited as ``proxy_header_untrusted``) and the
user counts as having presented no certificate. A trusted proxy's unusable
header is refused with a 400 page and audited as ``proxy_header_rejected``.

Without a certificate the demo SP's user is not logged in but asked for the
municipality (it also accepts Kommun C, which logs in with its own IdP); choosing
Kommun A, a certificate municipality, with the header still ignored ends at
``certificate_missing``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from flask import Flask
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.audit.schema import validate
from broker.config.loader import load_settings
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from tests.factories.municipality_choice import choose
from tests.factories.saml import BASE_URL, Browser, make_sp, saml_response_form
from tests.flows.conftest import audit_lines

PROXY = "127.0.0.1"
STRANGER = "192.0.2.66"
HEADER = "X-SSL-Client-Cert"
REFID = re.compile(r'class="refid"[^>]*>([0-9A-F]{4}(?:-[0-9A-F]{4}){3})<')


def edit_broker_yaml(config_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def trust_proxy(networks: list[str], header: str | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        proxy = data["client_certificate"]["proxy"]
        proxy["trusted_networks"] = networks
        if header is not None:
            proxy["header"] = header
    return edit


@pytest.fixture
def make_app(config_dir: Path, store: RedisStore) -> Callable[[], Flask]:
    """Build the app from config_dir as it is *now* (after the test's edits)."""
    def build() -> Flask:
        return create_app(load_settings(config_dir), store=store, instance_id="test")
    return build


@contextmanager
def browsing(app: Flask, *, remote_addr: str, headers: dict[str, str] | None = None,
             certificate_pem: str | None = None) -> Iterator[Browser]:
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        yield Browser(client, certificate_pem, remote_addr=remote_addr, headers=dict(headers or {}))


def sp_of(app: Flask, demo_material: Any) -> DemoSp:
    metadata = app.extensions["broker"].metadata.document()
    return make_sp(demo_material.root, metadata, app.extensions["broker"].settings.broker.idp.entity_id)


def escaped(pem: str) -> str:
    """What nginx puts in $ssl_client_escaped_cert: the URL-encoded PEM."""
    return quote(pem)


def refid(response: TestResponse) -> str:
    found = REFID.search(response.get_data(as_text=True))
    assert found is not None, "the page shows no reference ID"
    return found.group(1)


def events_of(config_dir: Path, correlation_id: str) -> list[dict[str, object]]:
    return [e for e in audit_lines(config_dir) if e["correlation_id"] == correlation_id]


def without_certificate(browser: Browser, sp: DemoSp) -> TestResponse:
    """The SP's AuthnRequest, answered with the discovery page (the header logged nobody in), then Kommun A
    chosen there: the broker's answer to the choice. The browser's headers go with both requests."""
    return choose(browser, browser.get(sp.login_url()))


# --- the trusted proxy's certificate logs in ------------------------------------------


def test_escaped_certificate_from_trusted_proxy_logs_in(config_dir: Path, users: Path, demo_material: Any,
                                                        make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    pem = (users / "anna.pem").read_text()
    with browsing(app, remote_addr=PROXY, headers={HEADER: escaped(pem)}) as browser:
        response = browser.get(sp.login_url())
    assert response.status_code == 200
    _action, fields = saml_response_form(response)
    result = sp.accept(fields["SAMLResponse"])
    assert result.attributes["employeeHsaId"] == ["SE2120001009-anna"]
    presented = [e for e in audit_lines(config_dir) if e["event"] == "certificate_presented"]
    assert [e["data"] for e in presented] == [{"via": "proxy"}]
    assert not [e for e in audit_lines(config_dir) if str(e["event"]).startswith("proxy_header")]
    # no X-Forwarded-For: the user's address is unknown and left out (docs/proxies.md), and the records still fit
    # the documented schema, which required `client`
    login = [e for e in audit_lines(config_dir) if e["correlation_id"] != "-" and "chain" not in e.get("data", {})]
    assert {"login_started", "certificate_accepted", "assertion_issued"} <= {e["event"] for e in login}
    assert [e["event"] for e in login if "client" in e] == []
    assert {str(e["event"]): validate(e) for e in audit_lines(config_dir) if validate(e)} == {}


def test_ipv4_mapped_ipv6_peer_counts_as_the_trusted_proxy(config_dir: Path, users: Path, demo_material: Any,
                                                           make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    pem = (users / "anna.pem").read_text()
    with browsing(app, remote_addr="::ffff:127.0.0.1", headers={HEADER: escaped(pem)}) as browser:
        response = browser.get(sp.login_url())
    assert response.status_code == 200
    saml_response_form(response)


# --- forged headers are ignored ------------------------------------------------------------


def test_header_from_untrusted_peer_is_ignored_and_audited(config_dir: Path, users: Path, demo_material: Any,
                                                            make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    pem = (users / "anna.pem").read_text()
    with browsing(app, remote_addr=STRANGER, headers={HEADER: escaped(pem)}) as browser:
        response = without_certificate(browser, sp)
    assert response.status_code == 401
    assert response.headers["X-Broker-Reason"] == "certificate_missing"
    cid = refid(response)
    untrusted = [e for e in audit_lines(config_dir) if e["event"] == "proxy_header_untrusted"]
    assert len(untrusted) == 2  # the AuthnRequest and the choice of municipality both carried the header
    assert {(e["reason"], e["client"]) for e in untrusted} == {("proxy_header_untrusted", STRANGER)}
    assert cid in [e["correlation_id"] for e in untrusted]  # the AuthnRequest's, under the login's reference
    assert "certificate_presented" not in [e["event"] for e in audit_lines(config_dir)]
    refused = [e for e in events_of(config_dir, cid) if e["event"] == "login_refused"]
    assert [e["reason"] for e in refused] == ["certificate_missing"]


@pytest.mark.parametrize(("sent", "named"), [
    pytest.param((HEADER,), "header X-SSL-Client-Cert", id="certificate-header"),
    pytest.param(("X-SSL-Client-Chain",), "header X-SSL-Client-Chain", id="chain-header-alone"),
    pytest.param((HEADER, "X-SSL-Client-Chain"), "headers X-SSL-Client-Cert and X-SSL-Client-Chain", id="both"),
])
def test_the_untrusted_record_names_the_headers_that_arrived(config_dir: Path, users: Path, demo_material: Any,
                                                             make_app: Callable[[], Flask], sent: tuple[str, ...],
                                                             named: str) -> None:
    """The record of an ignored header says which of the proxy's headers the peer sent: a chain header alone was
    recorded under the certificate header's name, which it had not sent."""
    def edit(data: dict[str, Any]) -> None:
        trust_proxy(["127.0.0.1/32"])(data)
        data["client_certificate"]["proxy"]["chain_header"] = "X-SSL-Client-Chain"
    edit_broker_yaml(config_dir, edit)
    app = make_app()
    sp = sp_of(app, demo_material)
    pem = escaped((users / "anna.pem").read_text())
    with browsing(app, remote_addr=STRANGER, headers=dict.fromkeys(sent, pem)) as browser:
        response = browser.get(sp.login_url())
    untrusted = [e for e in events_of(config_dir, refid(response)) if e["event"] == "proxy_header_untrusted"]
    assert [e["detail"] for e in untrusted] == [f"{named} from {STRANGER} ignored"]


def test_the_diagnosis_names_a_forwarded_chain_with_a_personnummer_masked(
        config_dir: Path, users: Path, make_app: Callable[[], Flask]) -> None:
    """/diagnose lists the certificates a trusted proxy forwarded with the user's (``chain``): a client's chain is
    whatever it sent, a person's certificate too, and the page is one to share with support. Each is named as the
    user's own subject is, a personnummer masked."""
    def edit(data: dict[str, Any]) -> None:
        trust_proxy(["127.0.0.1/32"])(data)
        data["client_certificate"]["proxy"]["chain_header"] = "X-SSL-Client-Chain"
    edit_broker_yaml(config_dir, edit)
    app = make_app()
    headers = {HEADER: escaped((users / "anna.pem").read_text()),
               "X-SSL-Client-Chain": escaped((users / "bo.pem").read_text())}
    with browsing(app, remote_addr=PROXY, headers=headers) as browser:
        response = browser.get("/diagnose?format=json")
    verdict = response.get_json()
    assert verdict["accepted"] is True
    assert len(verdict["chain"]) == 1
    assert "serialNumber=19121212-****" in verdict["chain"][0]
    assert "191212121212" not in response.get_data(as_text=True)


def test_header_is_ignored_by_default_even_from_loopback(config_dir: Path, users: Path, demo_material: Any,
                                                         make_app: Callable[[], Flask]) -> None:
    # config/example: trusted_networks: [] -- nothing is trusted until the operator says so
    app = make_app()
    sp = sp_of(app, demo_material)
    pem = (users / "anna.pem").read_text()
    with browsing(app, remote_addr=PROXY, headers={HEADER: escaped(pem)}) as browser:
        response = without_certificate(browser, sp)
    assert response.status_code == 401
    assert response.headers["X-Broker-Reason"] == "certificate_missing"
    events = events_of(config_dir, refid(response))
    assert "proxy_header_untrusted" in [e["event"] for e in events]
    assert "certificate_accepted" not in [e["event"] for e in audit_lines(config_dir)]


def test_untrusted_header_does_not_displace_the_tls_certificate(config_dir: Path, users: Path, demo_material: Any,
                                                                make_app: Callable[[], Flask]) -> None:
    """A forged header next to a real TLS certificate: the TLS certificate counts, the forgery is audited."""
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    forged = escaped((users / "david.pem").read_text())
    with browsing(app, remote_addr=STRANGER, headers={HEADER: forged},
                  certificate_pem=(users / "anna.pem").read_text()) as browser:
        response = browser.get(sp.login_url())
    assert response.status_code == 200
    result = sp.accept(saml_response_form(response)[1]["SAMLResponse"])
    assert result.attributes["employeeHsaId"] == ["SE2120001009-anna"]
    events = [e["event"] for e in audit_lines(config_dir)]
    assert "proxy_header_untrusted" in events
    assert [e["data"] for e in audit_lines(config_dir) if e["event"] == "certificate_presented"] == [{"via": "tls"}]


# --- a trusted proxy's unusable header ----------------------------------------------------


def _two_certificates(users: Path) -> str:
    return escaped((users / "anna.pem").read_text() + (users / "bo.pem").read_text())


def _damaged_body(users: Path) -> str:
    lines = (users / "anna.pem").read_text().splitlines()
    lines[3] = "!" * len(lines[3])
    return escaped("\n".join(lines) + "\n")


def _truncated(users: Path) -> str:
    pem = (users / "anna.pem").read_text()
    return escaped(pem[: len(pem) // 2])


def _private_key(users: Path) -> str:
    return escaped((users / "anna.key").read_text())


@pytest.mark.parametrize(
    "make_value",
    [
        pytest.param(lambda users: "not a certificate", id="garbage"),
        pytest.param(_two_certificates, id="two-certificates"),
        pytest.param(_damaged_body, id="damaged-base64"),
        pytest.param(_truncated, id="truncated-pem"),
        pytest.param(_private_key, id="private-key-not-certificate"),
        pytest.param(lambda users: "%FF%FE%FD", id="percent-escapes-not-utf8"),
    ],
)
def test_malformed_header_from_trusted_proxy_is_refused(config_dir: Path, users: Path,
                                                        make_app: Callable[[], Flask],
                                                        make_value: Callable[[Path], str]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    with browsing(app, remote_addr=PROXY, headers={HEADER: make_value(users)}) as browser:
        response = browser.get("/saml/idp/sso?SAMLRequest=irrelevant")
    assert response.status_code == 400
    assert response.headers["X-Broker-Reason"] == "proxy_header_malformed"
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    events = events_of(config_dir, refid(response))
    rejected = [e for e in events if e["event"] == "proxy_header_rejected"]
    assert [e["reason"] for e in rejected] == ["proxy_header_malformed"]
    # no X-Forwarded-For: the user's address is unknown, and the proxy's is recorded as the proxy's
    assert rejected[0].get("client") is None
    assert rejected[0]["data"] == {"proxy": PROXY}


@pytest.mark.parametrize("header", [
    pytest.param(lambda _limit: "-----BEGIN CERTIFICATE-----%0Anot base64%0A-----END CERTIFICATE-----",
                 id="malformed"),
    pytest.param(lambda limit: "A" * (limit + 1), id="too-large"),
])
def test_refused_header_from_trusted_proxy_is_audited_with_the_users_address(
        config_dir: Path, make_app: Callable[[], Flask], header: Callable[[int], str]) -> None:
    """docs/proxies.md: from a trusted proxy the client's address is the last hop of X-Forwarded-For, never the
    proxy's own; the proxy that sent the unusable header is named in data.proxy."""
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    value = header(app.extensions["broker"].settings.broker.client_certificate.proxy.max_bytes)
    with browsing(app, remote_addr=PROXY, headers={HEADER: value, "X-Forwarded-For": "198.51.100.7"}) as browser:
        response = browser.get("/saml/idp/sso?SAMLRequest=irrelevant")
    assert response.status_code == 400
    (rejected,) = [e for e in events_of(config_dir, refid(response)) if e["event"] == "proxy_header_rejected"]
    assert (rejected["client"], rejected["data"]) == ("198.51.100.7", {"proxy": PROXY})


def test_unreadable_tls_certificate_is_audited_with_the_users_address(config_dir: Path,
                                                                      make_app: Callable[[], Flask]) -> None:
    """certificate_malformed (the broker's own TLS handed over an unreadable certificate): recorded with the
    user's address, which behind a trusted proxy is its X-Forwarded-For, not the proxy's."""
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    with browsing(app, remote_addr=PROXY, headers={"X-Forwarded-For": "198.51.100.7"},
                  certificate_pem="-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                                  "-----END CERTIFICATE-----\n") as browser:
        response = browser.get("/saml/idp/sso?SAMLRequest=irrelevant")
    assert response.headers["X-Broker-Reason"] == "certificate_malformed"
    (rejected,) = [e for e in events_of(config_dir, refid(response)) if e["event"] == "certificate_rejected"]
    assert (rejected["reason"], rejected["client"]) == ("certificate_malformed", "198.51.100.7")


def test_oversized_header_from_trusted_proxy_is_refused(config_dir: Path, make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    limit = app.extensions["broker"].settings.broker.client_certificate.proxy.max_bytes
    with browsing(app, remote_addr=PROXY, headers={HEADER: "A" * (limit + 1)}) as browser:
        response = browser.get("/saml/idp/sso?SAMLRequest=irrelevant")
    assert response.status_code == 400
    assert response.headers["X-Broker-Reason"] == "proxy_header_too_large"
    rejected = [e for e in events_of(config_dir, refid(response)) if e["event"] == "proxy_header_rejected"]
    assert [e["reason"] for e in rejected] == ["proxy_header_too_large"]


def test_header_of_exactly_the_limit_is_read_not_refused_as_too_large(config_dir: Path,
                                                                      make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    limit = app.extensions["broker"].settings.broker.client_certificate.proxy.max_bytes
    with browsing(app, remote_addr=PROXY, headers={HEADER: "A" * limit}) as browser:
        response = browser.get("/saml/idp/sso?SAMLRequest=irrelevant")
    assert response.status_code == 400
    assert response.headers["X-Broker-Reason"] == "proxy_header_malformed"


def test_oversized_header_from_untrusted_peer_is_ignored_not_parsed(config_dir: Path, users: Path,
                                                                    demo_material: Any,
                                                                    make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    # past max_bytes (16384), within the little room the header-size limit leaves it
    with browsing(app, remote_addr=STRANGER, headers={HEADER: "A" * 17_000}) as browser:
        response = without_certificate(browser, sp)
    assert response.status_code == 401
    assert response.headers["X-Broker-Reason"] == "certificate_missing"
    assert "proxy_header_rejected" not in [e["event"] for e in audit_lines(config_dir)]
    # far past it, the rest counts like any header (gunicorn would refuse the line under broker serve anyway)
    with browsing(app, remote_addr=STRANGER, headers={HEADER: "A" * 100_000}) as browser:
        response = browser.get(sp.login_url())
    assert response.headers["X-Broker-Reason"] == "request_headers_too_large"


@pytest.mark.parametrize("value", [pytest.param("", id="empty"), pytest.param("(null)", id="nginx-null")])
def test_empty_header_from_trusted_proxy_means_no_certificate(config_dir: Path, demo_material: Any,
                                                              make_app: Callable[[], Flask], value: str) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    with browsing(app, remote_addr=PROXY, headers={HEADER: value}) as browser:
        response = without_certificate(browser, sp)
    assert response.status_code == 401
    assert response.headers["X-Broker-Reason"] == "certificate_missing"
    events = [e["event"] for e in audit_lines(config_dir)]
    assert "proxy_header_rejected" not in events
    assert "proxy_header_untrusted" not in events
    assert "login_refused" in [e["event"] for e in events_of(config_dir, refid(response))]


# --- the configured header name ------------------------------------------------------------


def test_configured_header_name_is_honoured(config_dir: Path, users: Path, demo_material: Any,
                                            make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"], header="X-Client-Cert"))
    app = make_app()
    sp = sp_of(app, demo_material)
    pem = escaped((users / "anna.pem").read_text())
    with browsing(app, remote_addr=PROXY, headers={"X-Client-Cert": pem}) as browser:
        response = browser.get(sp.login_url())
    assert response.status_code == 200
    result = sp.accept(saml_response_form(response)[1]["SAMLResponse"])
    assert result.attributes["employeeHsaId"] == ["SE2120001009-anna"]


def test_default_header_name_is_not_read_when_another_is_configured(config_dir: Path, users: Path,
                                                                    demo_material: Any,
                                                                    make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"], header="X-Client-Cert"))
    app = make_app()
    sp = sp_of(app, demo_material)
    pem = escaped((users / "anna.pem").read_text())
    with browsing(app, remote_addr=PROXY, headers={HEADER: pem}) as browser:
        response = without_certificate(browser, sp)
    assert response.status_code == 401
    assert response.headers["X-Broker-Reason"] == "certificate_missing"
    assert "certificate_presented" not in [e["event"] for e in audit_lines(config_dir)]


# --- X-Forwarded-For -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded_for", "audited"),
    [
        pytest.param("198.51.100.7", "198.51.100.7", id="one-hop"),
        pytest.param("203.0.113.9, 198.51.100.7", "198.51.100.7", id="last-hop-is-the-proxys-peer"),
        pytest.param("not-an-address", None, id="garbage-is-unknown-not-the-proxys-address"),
    ],
)
def test_forwarded_for_from_trusted_proxy_sets_the_audited_address(config_dir: Path, users: Path,
                                                                   demo_material: Any,
                                                                   make_app: Callable[[], Flask],
                                                                   forwarded_for: str, audited: str | None) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    headers = {HEADER: escaped((users / "anna.pem").read_text()), "X-Forwarded-For": forwarded_for}
    with browsing(app, remote_addr=PROXY, headers=headers) as browser:
        response = browser.get(sp.login_url())
    assert response.status_code == 200
    flow_events = [e for e in audit_lines(config_dir) if e["event"] in ("login_started", "assertion_issued")]
    assert len(flow_events) == 2
    assert {e.get("client") for e in flow_events} == {audited}


def test_forwarded_for_from_untrusted_peer_is_ignored(config_dir: Path, users: Path, demo_material: Any,
                                                      make_app: Callable[[], Flask]) -> None:
    edit_broker_yaml(config_dir, trust_proxy(["127.0.0.1/32"]))
    app = make_app()
    sp = sp_of(app, demo_material)
    with browsing(app, remote_addr=STRANGER, headers={"X-Forwarded-For": "198.51.100.7"},
                  certificate_pem=(users / "anna.pem").read_text()) as browser:
        response = browser.get(sp.login_url())
    assert response.status_code == 200
    lines = audit_lines(config_dir)
    assert lines
    assert {e.get("client") for e in lines} == {STRANGER}
