"""Operators' endpoints in process: /metrics (Prometheus) and /admin/status behind the admin token, /readyz
against a real and an unreachable Redis, and /diagnose on the audit trail.

Logins go through the real pysaml2 SP (signed HTTP-Redirect AuthnRequests); the metrics are read back with
prometheus_client's own text parser.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families

from broker.app import create_app, reload_configuration
from broker.clock import SystemClock
from broker.config.loader import load_settings
from broker.demo.sp import DemoSp
from broker.readiness.runner import ReadinessOptions, run
from broker.readiness.trust import name_of
from broker.session.store import RedisStore
from broker.web import admin as admin_module
from tests.factories.authnrequests import AuthnRequests, assert_refused, login, open_browser, posted_response
from tests.factories.ocsp_responder import OcspResponder
from tests.factories.ports import free_port
from tests.factories.revocation import demo_cas, set_revocation
from tests.factories.saml import Browser, make_sp
from tests.flows.conftest import audit_lines

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEMO_OCSP = ("localhost", 8444)  # the demo's revocation server (HTTPS port + 1), named in Bo's certificate


# --- helpers ------------------------------------------------------------------------------------------


def edit_yaml(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(app: Flask, path: str, headers: dict[str, str] | None = None) -> Any:
    with app.test_client() as client:
        return client.get(path, headers=headers or {}, environ_base={"REMOTE_ADDR": "192.0.2.20"})


def scrape(app: Flask, token: str) -> Samples:
    response = get(app, "/metrics", bearer(token))
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    found: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def matching(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {k: v for (n, k), v in samples.items() if n == name and wanted <= k}


def demo_ocsp_running() -> bool:
    try:
        with socket.create_connection(DEMO_OCSP, timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def token(config_dir: Path) -> str:
    return (config_dir / "keys" / "admin.token").read_text().strip()


@pytest.fixture
def craft(sp: DemoSp, demo_material: Any) -> AuthnRequests:
    return AuthnRequests(sp, Path(demo_material.root) / "sp" / "sp.key")


@pytest.fixture
def build(config_dir: Path, store: RedisStore) -> Callable[[], Flask]:
    """The app from config_dir as the test has left it."""
    def make() -> Flask:
        return create_app(load_settings(config_dir), store=store, instance_id="test")
    return make


def refused_login(app: Flask, sp: DemoSp, pem: str, reason: str) -> None:
    browser = open_browser(app, pem)
    assert_refused(browser.get(sp.login_url()), reason)


def certificate_login(app: Flask, sp: DemoSp, pem: str) -> None:
    browser = open_browser(app, pem)
    response = browser.get(sp.login_url())
    posted = posted_response(response)
    sp.accept(posted.fields["SAMLResponse"])


# --- /metrics and /admin/status answer only the token ----------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/admin/status", "/admin/health"])
def test_without_an_admin_section_the_endpoints_do_not_exist(config_dir: Path, build: Callable[[], Flask],
                                                              token: str, path: str) -> None:
    edit_yaml(config_dir / "broker.yaml", lambda d: d.pop("admin"))
    app = build()
    for headers in ({}, bearer(token), basic("ops", token)):
        response = get(app, path, headers)
        assert response.status_code == 404, headers
        assert response.headers.get("X-Broker-Reason") == "page_not_found"


def _wrong(token: str) -> list[dict[str, str]]:
    return [
        {},
        bearer(""),
        bearer("not-the-token"),
        bearer(token[:-1]),
        bearer(token + "0"),
        bearer(token.upper()) if token.upper() != token else bearer(token + "x"),
        {"Authorization": f"Token {token}"},
        {"Authorization": token},
        basic("ops", "not-the-token"),
        basic(token, ""),                       # the token as the user name is not the password
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic \u00e9t\u00e9"},   # not ASCII: no base64 at all (was a 500)
        {"Authorization": "Basic " + base64.b64encode(b"ops:\xff" + token.encode()).decode()},  # not UTF-8
        {"X-Admin-Token": token},
    ]


@pytest.mark.parametrize("path", ["/metrics", "/admin/status", "/admin/health"])
def test_without_the_right_token_the_endpoints_do_not_exist(app: Flask, token: str, path: str) -> None:
    for headers in _wrong(token):
        response = get(app, path, headers)
        assert (response.status_code, response.headers.get("X-Broker-Reason")) == (404, "page_not_found"), headers
        assert "broker_logins" not in response.get_data(as_text=True)
    assert get(app, path, bearer(token)).status_code == 200
    assert get(app, path, basic("anyone", token)).status_code == 200
    assert get(app, path, basic("", token)).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/admin/status", "/admin/health"])
@pytest.mark.parametrize("method", ["OPTIONS", "POST", "PUT", "DELETE", "PROPFIND"])
def test_other_methods_do_not_show_the_endpoints_either(app: Flask, token: str, path: str, method: str) -> None:
    """Not only GET: an OPTIONS answered 200 and any other method 405, both with an Allow header, where a path
    that does not exist answers 404, so that anyone could tell the operators' endpoints are there."""
    with app.test_client() as client:
        for headers in ({}, bearer(token)):
            response = client.open(path, method=method, headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.20"})
            assert (response.status_code, response.headers.get("X-Broker-Reason")) == (404, "page_not_found"), (
                method, headers)
            assert "Allow" not in response.headers


def test_admin_health_reports_audit_forwarding_and_idp_metadata(app: Flask, token: str) -> None:
    response = get(app, "/admin/health", bearer(token))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["audit_forwarding"] == {}  # the example forwards no copies
    kommun_c = body["idp_metadata"]["kommun-c"]  # from the local file, loaded with the configuration
    assert kommun_c["entity_id"] == "https://localhost:8443/demo-idp/metadata"
    assert kommun_c["last_error"] is None
    assert kommun_c["signing_keys"] == 1


# --- what /metrics counts -----------------------------------------------------------------------------


def test_metrics_count_logins_by_outcome_reason_and_municipality(
        app: Flask, browser: Browser, craft: AuthnRequests, sp: DemoSp, users: Path, token: str) -> None:
    before = scrape(app, token)
    assert matching(before, "broker_logins_total") == {}
    login(browser, craft)  # Anna: Kommun A, certificate
    refused_login(app, sp, (users / "david.pem").read_text(), "certificate_expired")  # Kommun A, expired

    samples = scrape(app, token)
    logins = matching(samples, "broker_logins_total")
    assert logins == {
        frozenset({("outcome", "success"), ("reason", ""), ("municipality", "kommun-a")}): 1.0,
        frozenset({("outcome", "failure"), ("reason", "certificate_expired"), ("municipality", "kommun-a")}): 1.0,
    }
    assert value(samples, "broker_audit_events_total", event="assertion_issued", outcome="success") == 1.0

    # latency of the SSO endpoint: two requests, in the configured buckets
    buckets = {dict(k)["le"]: v for k, v in matching(samples, "broker_request_duration_seconds_bucket",
                                                     endpoint="idp.sso").items()}
    assert buckets["+Inf"] == 2.0
    assert set(buckets) >= {"0.005", "0.05", "0.5", "5.0", "10.0", "+Inf"}
    counts = list(buckets.values())
    assert sorted(counts) == [buckets[le] for le in sorted(buckets, key=float)]  # cumulative
    assert value(samples, "broker_request_duration_seconds_count", endpoint="idp.sso") == 2.0
    assert (value(samples, "broker_request_duration_seconds_sum", endpoint="idp.sso") or 0) > 0
    # scrapes and the status page are not measured as traffic
    assert not matching(samples, "broker_request_duration_seconds_count", endpoint="admin.metrics")


def test_metrics_count_a_refused_kommun_b_login_once(app: Flask, sp: DemoSp, users: Path, token: str) -> None:
    """Erik's e-mail certificate: one refused login is one failure, whatever events it wrote."""
    refused_login(app, sp, (users / "erik.pem").read_text(), "eku_not_client_auth")
    logins = matching(scrape(app, token), "broker_logins_total")
    assert logins == {frozenset({("outcome", "failure"), ("reason", "eku_not_client_auth"),
                                 ("municipality", "kommun-b")}): 1.0}


def _with_valid_until(config_dir: Path, until: dt.datetime) -> None:
    path = config_dir / "metadata" / "kommun-c-idp.xml"
    root = etree.fromstring(path.read_bytes())
    root.set("validUntil", until.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path.write_bytes(etree.tostring(root))


def test_metrics_give_days_until_every_expiry(config_dir: Path, build: Callable[[], Flask], token: str,
                                              demo_material: Any) -> None:
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).replace(microsecond=0)
    _with_valid_until(config_dir, until)
    app = build()
    samples = scrape(app, token)
    now = dt.datetime.now(dt.UTC)

    def days(when: dt.datetime) -> float:
        return (when - now).total_seconds() / 86400

    def check(kind: str, municipality: str, subject: str, when: dt.datetime) -> None:
        got = value(samples, "broker_days_until_expiry", kind=kind, municipality=municipality, subject=subject)
        assert got is not None, (kind, municipality, subject, sorted(
            dict(k) for k in matching(samples, "broker_days_until_expiry")))  # type: ignore[type-var]
        assert abs(got - days(when)) < 0.01, (kind, subject, got, days(when))

    def cert(path: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate(path.read_bytes())

    for mid in ("kommun-a", "kommun-b"):
        root, issuing = cert(config_dir / "certs" / mid / "root-ca.pem"), cert(
            config_dir / "certs" / mid / "issuing-ca.pem")
        check("trust_anchor", mid, name_of(root), root.not_valid_after_utc)
        check("intermediate", mid, name_of(issuing), issuing.not_valid_after_utc)
    check("idp_metadata", "kommun-c", "https://localhost:8443/demo-idp/metadata", until)
    idp_signing = cert(Path(demo_material.root) / "idp" / "idp.crt")  # the key in Kommun C's metadata
    check("idp_signing_certificate", "kommun-c", name_of(idp_signing), idp_signing.not_valid_after_utc)
    check("broker_key", "", "idp signing", cert(config_dir / "keys" / "idp-signing.crt").not_valid_after_utc)
    check("broker_key", "", "sp signing", cert(config_dir / "keys" / "sp-signing.crt").not_valid_after_utc)
    check("broker_key", "", "sp decryption 1", cert(config_dir / "keys" / "sp-encryption.crt").not_valid_after_utc)
    # a CRL file lapses at its nextUpdate (RFC 5280 §5.1.2.5): nothing renews it but the operator
    for mid in ("kommun-a", "kommun-b"):
        for name in ("issuing-ca.crl", "root-ca.crl"):
            path = config_dir / "certs" / mid / name
            crl = x509.load_pem_x509_crl(path.read_bytes())
            assert crl.next_update_utc is not None
            check("crl_file", mid, str(path), crl.next_update_utc)
    assert len(matching(samples, "broker_days_until_expiry")) == 4 + 2 + 3 + 4


def test_metrics_follow_a_replaced_crl_file(config_dir: Path, build: Callable[[], Flask], token: str,
                                            demo_material: Any) -> None:
    # the broker re-reads a changed CRL file: the gauge says when the CRL it now holds lapses, not the first one
    app = build()
    path = config_dir / "certs" / "kommun-a" / "issuing-ca.crl"
    now = dt.datetime.now(dt.UTC)
    _, issuing = demo_cas(Path(demo_material.root), "kommun-a", now)
    later = (now + dt.timedelta(days=3)).replace(microsecond=0)
    path.write_bytes(issuing.crl(this_update=now - dt.timedelta(minutes=1), next_update=later)
                     .public_bytes(serialization.Encoding.PEM))
    os.utime(path, (time.time() + 5, time.time() + 5))   # a new mtime, whatever the file system's resolution
    runtime = app.extensions["broker_runtime"]
    assert runtime.revocation.crls.refresh_due() >= 1
    got = value(scrape(app, token), "broker_days_until_expiry", kind="crl_file", municipality="kommun-a",
                subject=str(path))
    assert got is not None
    assert abs(got - (later - dt.datetime.now(dt.UTC)).total_seconds() / 86400) < 0.01


def test_metrics_count_kommun_b_revocation_lookups(app: Flask, sp: DemoSp, users: Path, token: str) -> None:
    """Bo's certificate names the demo's OCSP responder (localhost:8444): answered when the demo runs, an
    error otherwise (the login then goes on with Kommun B's CRLs)."""
    certificate_login(app, sp, (users / "bo.pem").read_text())
    samples = scrape(app, token)
    result = "fetched" if demo_ocsp_running() else "error"
    assert (value(samples, "broker_revocation_lookups_total", method="ocsp", result=result) or 0) >= 1, \
        matching(samples, "broker_revocation_lookups_total")
    if result == "error":
        assert (value(samples, "broker_revocation_lookups_total", method="crl", result="cache_hit") or 0) >= 1
    assert matching(samples, "broker_logins_total") == {
        frozenset({("outcome", "success"), ("reason", ""), ("municipality", "kommun-b")}): 1.0}



class _UnstorableMetric:
    """A metric as prometheus_client's multiprocess mode has it in a worker forked after its directory
    (PROMETHEUS_MULTIPROC_DIR) went away, or on a full file system: every use raises."""

    def labels(self, *_values: str) -> _UnstorableMetric:
        raise FileNotFoundError(2, "No such file or directory", "/tmp/broker-metrics-x/histogram_4242.db")

    def inc(self, _amount: float = 1) -> None:
        self.labels()


def test_metrics_that_cannot_be_stored_fail_no_request(app: Flask, sp: DemoSp, users: Path, token: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting must never cost a request: the request latency (counted after every request) and the revocation
    lookups (counted during a login) raised into the request, so every answer of such a worker was the 500 page,
    /healthz and /readyz included, and every certificate login that checked revocation failed."""
    metrics = app.extensions["broker_runtime"].metrics
    for name in ("latency", "revocation", "logins", "events", "audit_failures"):
        monkeypatch.setattr(metrics, name, _UnstorableMetric())
    monkeypatch.setattr(metrics, "_children", {})

    assert get(app, "/healthz").status_code == 200
    assert get(app, "/readyz").status_code == 200
    certificate_login(app, sp, (users / "anna.pem").read_text())  # Kommun A: its CRLs


def _damaged_metrics_file(directory: Path) -> None:
    directory.mkdir()
    # a worker's file whose header claims 64 bytes in use, cut short after 15 (a full disk, a torn copy)
    (directory / "counter_4242.db").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00\x30\x00\x00\x00abc")


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda directory: None, id="directory-removed-by-a-clean-up"),
    pytest.param(_damaged_metrics_file, id="a-workers-file-damaged"),
])
def test_metrics_that_cannot_be_read_answer_503_in_plain_text(app: Flask, token: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture,
                                                              spoil: Callable[[Path], None]) -> None:
    """A worker whose multiprocess directory (PROMETHEUS_MULTIPROC_DIR) has gone, or holds a damaged file, cannot
    add up the workers' metrics: the scrape is told so in plain text with 503 (like /readyz for its
    dependencies), not given the 500 page, and the log says it once per process."""
    metrics = app.extensions["broker_runtime"].metrics
    monkeypatch.setattr(metrics, "_registry", None)  # multiprocess mode, as under `broker serve`
    spoil(tmp_path / "multiproc")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "multiproc"))

    with caplog.at_level(logging.WARNING, logger="broker"):
        answers = [get(app, "/metrics", bearer(token)) for _ in range(2)]

    for response in answers:
        assert response.status_code == 503
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache, no-store"
        assert "PROMETHEUS_MULTIPROC_DIR" in response.get_data(as_text=True)
    said = [r for r in caplog.records if "metrics cannot be read" in r.getMessage()]
    assert len(said) == 1


@pytest.fixture
def kommun_b_ocsp(config_dir: Path, demo_material: Any) -> Iterator[OcspResponder]:
    """A live OCSP responder of Kommun B's issuing CA, configured as the users' responder (``ocsp.url``)."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _, issuing = demo_cas(Path(demo_material.root), "kommun-b", start)
    with OcspResponder(issuing, now=start) as responder:
        set_revocation(config_dir, "kommun-b", {
            "mode": "check", "methods": ["ocsp", "crl"], "failure": "fail_closed", "clock_skew": "5m",
            "ocsp": {"url": responder.url, "timeout": "2s"},
            "crl": {"files": ["certs/kommun-b/issuing-ca.crl", "certs/kommun-b/root-ca.crl"],
                    "distribution_points": False}})
        yield responder
        assert responder.errors == []


def test_metrics_count_ocsp_answers_and_cache_hits(kommun_b_ocsp: OcspResponder, build: Callable[[], Flask],
                                                   demo_material: Any, users: Path, token: str) -> None:
    app = build()
    sp = make_sp(Path(demo_material.root), app.extensions["broker"].metadata.document(),
                 app.extensions["broker"].settings.broker.idp.entity_id)
    bo = (users / "bo.pem").read_text()
    certificate_login(app, sp, bo)
    first = scrape(app, token)
    assert value(first, "broker_revocation_lookups_total", method="ocsp", result="fetched") == 1.0
    assert value(first, "broker_revocation_lookups_total", method="ocsp", result="error") is None
    certificate_login(app, sp, bo)  # another browser, the same card: answered from this process's cache
    second = scrape(app, token)
    assert value(second, "broker_revocation_lookups_total", method="ocsp", result="fetched") == 1.0
    assert (value(second, "broker_revocation_lookups_total", method="ocsp", result="cache_hit") or 0) >= 1


# --- /admin/status ------------------------------------------------------------------------------------------


def _rows(page: str) -> dict[str, str]:
    """Municipality id -> the HTML of its table row."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    found = {}
    for row in rows:
        mid = re.search(r'<span class="muted">\(([^)]+)\)</span>', row)
        assert mid is not None, row
        found[mid.group(1)] = row
    return found


def _cells(row: str) -> list[str]:
    """The text of each cell of a row, whitespace collapsed."""
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]


def test_status_page_lists_every_municipality_with_readiness_expiry_and_last_login(
        app: Flask, browser: Browser, craft: AuthnRequests, config_dir: Path, token: str) -> None:
    response = get(app, "/admin/status", basic("regional-it", token))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = response.get_data(as_text=True)
    settings = load_settings(config_dir)
    report = run(settings, SystemClock(), ReadinessOptions(network=False))
    expected = {s.id: s for s in report.municipalities}
    rows = _rows(page)
    assert sorted(rows) == sorted(settings.municipalities) == ["kommun-a", "kommun-b", "kommun-c"]
    for mid, row in rows.items():
        name, status, login_kind, readiness, expiry, last = _cells(row)
        m = settings.municipalities[mid]
        assert name == f"{m.config.name.en} ({mid})"
        assert (status, login_kind) == (m.status, m.config.login)
        assert readiness.split()[0] == expected[mid].result.upper()
        next_expiry = expected[mid].next_expiry
        assert expiry == (next_expiry.strftime("%Y-%m-%d") if next_expiry else "\u2013")
        assert last == "none recorded"

    login(browser, craft)  # Anna, Kommun A
    issued = [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]
    assert len(issued) == 1
    rows = _rows(get(app, "/admin/status", basic("", token)).get_data(as_text=True))
    assert _cells(rows["kommun-a"])[-1] == issued[0]["time"]
    assert _cells(rows["kommun-b"])[-1] == "none recorded"


def test_status_page_lists_a_suspended_municipality(config_dir: Path, build: Callable[[], Flask],
                                                    token: str) -> None:
    """Regional IT's overview shows every configured municipality, a suspended one too (with its status)."""
    edit_yaml(config_dir / "municipalities" / "kommun-b.yaml", lambda d: d.update(status="suspended"))
    rows = _rows(get(build(), "/admin/status", bearer(token)).get_data(as_text=True))
    assert sorted(rows) == ["kommun-a", "kommun-b", "kommun-c"]
    assert _cells(rows["kommun-b"])[1] == "suspended"


def test_status_page_after_a_reload_is_of_the_new_configuration(app: Flask, config_dir: Path, token: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The report is cached for a minute per configuration; a reload's configuration gets its own even when it
    happens to live where a freed one did (CPython reuses the address, i.e. the id(), of a freed object: here
    every object is given the same id, as two reloads within the minute can do)."""
    monkeypatch.setattr(admin_module, "id", lambda _obj: 1, raising=False)
    rows = _rows(get(app, "/admin/status", bearer(token)).get_data(as_text=True))
    assert _cells(rows["kommun-a"])[0] == "Municipality A (kommun-a)"

    def rename(data: dict[str, Any]) -> None:
        data["name"] = {"sv": "Kommun Alfa", "en": "Municipality Alfa"}
    edit_yaml(config_dir / "municipalities" / "kommun-a.yaml", rename)
    assert reload_configuration(app) is True

    rows = _rows(get(app, "/admin/status", bearer(token)).get_data(as_text=True))
    assert _cells(rows["kommun-a"])[0] == "Municipality Alfa (kommun-a)"


# --- /readyz ------------------------------------------------------------------------------------------------


def test_readyz_is_503_while_redis_is_unreachable(settings: Any, config_dir: Path) -> None:
    closed = RedisStore(f"redis://127.0.0.1:{free_port()}/0", prefix="test:closed:")
    app = create_app(settings, store=closed, instance_id="test")
    started = time.monotonic()
    response = get(app, "/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable",
                                   "checks": {"session_store": "session_store_unavailable", "audit": "ok"}}
    assert get(app, "/healthz").status_code == 200  # alive, just not ready


def test_readyz_is_200_with_redis(app: Flask) -> None:
    response = get(app, "/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"session_store": "ok", "audit": "ok"}}


# --- /diagnose is on the audit trail ----------------------------------------------------------------------


@pytest.mark.parametrize(("user", "accepted", "municipality", "reason", "via"), [
    ("anna", True, "kommun-a", None, "tls"),
    ("david", False, "kommun-a", "certificate_expired", "tls"),
    (None, False, None, None, "none"),
])
def test_diagnose_visit_is_audited(app: Flask, users: Path, config_dir: Path, user: str | None, accepted: bool,
                                   municipality: str | None, reason: str | None, via: str) -> None:
    browser = open_browser(app, (users / f"{user}.pem").read_text() if user else None)
    verdict = browser.get("/diagnose?format=json").get_json()
    assert verdict["certificate"] is (user is not None)
    events = audit_lines(config_dir)
    assert [e["event"] for e in events] == ["diagnose_viewed"]
    viewed = events[0]
    assert viewed["correlation_id"] == verdict["correlation_id"]
    assert viewed["outcome"] == "info"
    assert viewed["data"] == {"accepted": accepted, "via": via}
    assert viewed.get("municipality") == municipality
    assert viewed.get("reason") == reason
    assert viewed["client"] == "192.0.2.10"
    if user is None:
        assert "cert_sha256" not in viewed or viewed["cert_sha256"] is None
    else:
        assert viewed["cert_sha256"]
