"""The readiness report for people and tools (broker.readiness.render, broker.readiness.model): the terminal
text, the stable JSON form and the self-contained HTML dashboard."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from broker.readiness.model import JSON_VERSION, Check, Report, Section
from broker.readiness.render import html_dashboard, text
from tests.unit.readiness.configs import load, readiness, set_readiness

GENERATED = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
EXPIRES = dt.datetime(2026, 3, 20, 0, 0, tzinfo=dt.UTC)
LONG_FIX = ("Add the municipality's CA certificates to the endpoint's client-CA bundle (`broker proxy-config nginx "
            "--out DIR` writes it from this configuration) and reload the proxy.")
CHECK_KEYS = {"id", "status", "title", "evidence", "fix", "subject", "expires"}


def municipality(mid: str, checks: list[Check]) -> Section:
    return Section("municipality", mid, f"Municipality {mid[-1].upper()}", tuple(checks), {
        "names": {"sv": f"Kommun {mid[-1].upper()}", "en": f"Municipality {mid[-1].upper()}"},
        "status": "active", "login": "certificate"})


def report() -> Report:
    broker = Section("broker", "broker", "broker", (
        Check("broker.idp_signing", "pass", "IdP signing certificate valid", "valid until 2036-01-01", None,
              "Demo Broker IdP signing", dt.datetime(2036, 1, 1, tzinfo=dt.UTC)),))
    endpoint = Section("endpoint", "https://login.example.se", "https://login.example.se", (
        Check("endpoint.handshake", "pass", "TLS handshake", "TLSv1.3, ALPN http/1.1", None,
              "https://login.example.se"),
        Check("endpoint.ca_list_empty", "warn", "empty CA list", "a certificate is requested without naming any CA",
              "Advertise exactly the municipalities' CAs.", "https://login.example.se"),
    ), {"tls_version": "TLSv1.3", "alpn": "http/1.1", "certificate_requested": True, "advertised": [],
        "ca_list_bytes": 2})
    a = municipality("kommun-a", [
        Check("trust.anchor", "pass", "trust anchor valid", "Kommun A Root CA valid until 2036-01-01",
              "a fix that is never shown for a PASS", "Kommun A Root CA", dt.datetime(2036, 1, 1, tzinfo=dt.UTC)),
        Check("trust.intermediate", "warn", "intermediate CA expires soon", "Kommun A Person CA expires 2026-03-20",
              "Get the renewed CA certificate.", "Kommun A Person CA", EXPIRES),
        Check("endpoint.advertises", "fail", "certificate will not be offered",
              "https://login.example.se advertises neither the root nor the issuing CA", LONG_FIX,
              "https://login.example.se"),
    ])
    b = municipality("kommun-b", [Check("sample.certificate", "pass", "sample certificate accepted",
                                        "Bo Demosson: personnummer 19121212-****", None, "Bo Demosson")])
    return Report(GENERATED, "production", broker, (a, b), (endpoint,))


# --- text -----------------------------------------------------------------------------------------------------


def test_text_lists_every_check_with_its_status_and_the_fix_under_warn_and_fail() -> None:
    out = text(report(), colour=False)
    lines = out.splitlines()

    assert lines[0] == "Readiness 2026-03-02 09:30 UTC (production)"
    assert "PASS  the broker" in lines
    assert "WARN  endpoint https://login.example.se" in lines
    assert "FAIL  Municipality A (kommun-a, active, login: certificate)" in lines
    assert "PASS  Municipality B (kommun-b, active, login: certificate)" in lines
    assert "  PASS  trust anchor valid: Kommun A Root CA valid until 2036-01-01" in lines
    warn = lines.index("  WARN  intermediate CA expires soon: Kommun A Person CA expires 2026-03-20")
    assert lines[warn + 1] == "        fix: Get the renewed CA certificate."
    fail = lines.index("  FAIL  certificate will not be offered: https://login.example.se advertises neither the "
                       "root nor the issuing CA")
    wrapped = []
    for line in lines[fail + 1:]:
        if not line.startswith(" " * 8):
            break
        wrapped.append(line)
    assert len(wrapped) > 1, "a long fix is wrapped"
    assert all(len(line) <= 110 for line in wrapped)
    assert " ".join(w.strip() for w in wrapped) == f"fix: {LONG_FIX}"
    assert "a fix that is never shown for a PASS" not in out
    assert lines[-1] == "FAIL  4 passed, 2 warnings, 1 failed"
    assert out.endswith("\n")


def test_text_is_coloured_only_when_asked() -> None:
    plain = text(report(), colour=False)
    assert "\x1b[" not in plain

    coloured = text(report(), colour=True)
    assert "\x1b[32mPASS\x1b[0m  the broker" in coloured
    assert "  \x1b[33mWARN\x1b[0m  intermediate CA expires soon" in coloured
    assert "\x1b[31;1mFAIL\x1b[0m  4 passed, 2 warnings, 1 failed" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


# --- JSON -----------------------------------------------------------------------------------------------------



@pytest.mark.parametrize("colour", [pytest.param(False, id="plain"), pytest.param(True, id="colour")])
def test_text_shows_what_certificates_and_servers_say_as_text_on_its_own_line(colour: bool) -> None:
    """CA names and evidence come from certificates and remote servers: a line break in them forged a line of the
    report (a PASS under a FAIL), and an escape sequence rewrote the terminal (erased the line of a FAIL). They
    are shown escaped, as the access log does with what clients send."""
    forged = "Evil CA valid until 2036-01-01\n  PASS  certificate will be offered: all fine"
    hostile = municipality("kommun-x", [Check(
        "trust.anchor", "fail", "trust anchor expired\x1b[2K\r", forged,
        "renew it\x9b2K\u202e", "Evil CA")])
    out = text(Report(GENERATED, "production", report().broker, (hostile,), ()), colour=colour)
    lines = out.splitlines()

    assert "  PASS  certificate will be offered: all fine" not in lines
    check, = [line for line in lines if "trust anchor expired" in line]
    assert check.endswith("Evil CA valid until 2036-01-01\\n  PASS  certificate will be offered: all fine")
    assert "trust anchor expired\\u001b[2K\\r:" in check
    assert "\x1b[2K" not in out
    assert "\r" not in out
    assert "\x9b" not in out
    assert "\u202e" not in out
    assert "renew it\\u009b2K\\u202e" in out


def test_json_has_the_stable_keys() -> None:
    data = json.loads(json.dumps(report().to_json()))

    assert list(data) == ["version", "generated", "at", "environment", "result", "counts", "broker", "endpoints",
                          "municipalities"]
    assert data["at"] is None   # no --at: judged at "generated"
    assert data["version"] == JSON_VERSION == 1
    assert data["generated"] == "2026-03-02T09:30:00+00:00"
    assert (data["environment"], data["result"]) == ("production", "fail")
    assert data["counts"] == {"pass": 4, "warn": 2, "fail": 1}
    a = data["municipalities"][0]
    assert {"id", "name", "result", "counts", "next_expiry", "names", "status", "login", "checks"} <= set(a)
    assert (a["id"], a["result"], a["status"], a["login"]) == ("kommun-a", "fail", "active", "certificate")
    assert a["counts"] == {"pass": 1, "warn": 1, "fail": 1}
    assert a["next_expiry"] == EXPIRES.isoformat()
    for section in [data["broker"], *data["endpoints"], *data["municipalities"]]:
        for check in section["checks"]:
            assert set(check) == CHECK_KEYS
            assert check["status"] in ("pass", "warn", "fail")
    assert a["checks"][1] == {"id": "trust.intermediate", "status": "warn", "title": "intermediate CA expires soon",
                              "evidence": "Kommun A Person CA expires 2026-03-20",
                              "fix": "Get the renewed CA certificate.", "subject": "Kommun A Person CA",
                              "expires": "2026-03-20T00:00:00+00:00"}
    assert a["checks"][2]["expires"] is None
    endpoint = data["endpoints"][0]
    assert (endpoint["id"], endpoint["result"], endpoint["advertised"], endpoint["certificate_requested"]) == (
        "https://login.example.se", "warn", [], True)
    assert data["broker"]["id"] == "broker"


def test_json_of_a_real_run_uses_the_same_keys(config_dir: Path) -> None:
    set_readiness(config_dir)
    data = json.loads(json.dumps(readiness(load(config_dir), network=False).to_json()))

    assert [m["id"] for m in data["municipalities"]] == ["kommun-a", "kommun-b", "kommun-c"]
    assert [m["login"] for m in data["municipalities"]] == ["certificate", "certificate", "saml"]
    ids = {c["id"] for m in data["municipalities"] for c in m["checks"]}
    assert {"trust.anchor", "trust.intermediate", "trust.test_hierarchy", "revocation.mode", "revocation.crl",
            "sample.certificate", "endpoint.advertises", "saml.metadata", "saml.metadata_expiry",
            "saml.signing_key"} <= ids
    for section in [data["broker"], *data["municipalities"]]:
        for check in section["checks"]:
            assert set(check) == CHECK_KEYS
    assert sum(data["counts"].values()) == sum(len(s["checks"]) for s in [data["broker"], *data["municipalities"]])


# --- HTML -----------------------------------------------------------------------------------------------------


def test_html_dashboard_is_self_contained_with_one_row_per_municipality() -> None:
    page = html_dashboard(report())

    assert page.startswith("<!doctype html>")
    assert "<style>" in page
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href|action)\s*=", page, re.IGNORECASE)
    assert "<link" not in page.lower()
    assert "@import" not in page
    assert "url(" not in page
    municipalities, others = page.split("<h2>Endpoints and the broker</h2>")
    rows = municipalities.split("<h2>Municipalities</h2>")[1].count("<tr>")
    assert rows == 1 + 2  # the heading row and one per municipality
    assert others.count("<tr>") == 1 + 2  # the endpoint and the broker
    assert "Municipality A" in municipalities
    assert "Municipality B" in municipalities
    assert "2026-03-20" in municipalities  # the next expiry
    assert "1 / 1 / 1" in municipalities
    assert f"Fix: {LONG_FIX.replace(chr(39), '&#x27;')}" in page
    assert "a fix that is never shown for a PASS" not in page


def test_html_dashboard_escapes_what_certificates_and_servers_say() -> None:
    """CA names and evidence come from certificates and remote servers: they are text, never markup."""
    hostile = municipality("kommun-x", [Check(
        "trust.anchor", "fail", "trust anchor expired", "<script>alert(1)</script> expired",
        "<img src=x onerror=alert(2)>", '"><script>alert(3)</script>')])
    page = html_dashboard(Report(GENERATED, "production", report().broker, (hostile,), ()))

    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; expired" in page


def test_html_dashboard_of_a_real_run(config_dir: Path) -> None:
    set_readiness(config_dir)
    page = html_dashboard(readiness(load(config_dir), network=False))

    municipalities = page.split("<h2>Endpoints and the broker</h2>")[0]
    assert municipalities.count("<tr>") == 1 + 3
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href)\s*=", page, re.IGNORECASE)
