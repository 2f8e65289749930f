"""What a whole login leaves in the audit directory: the configuration each process started on, one
correlation ID per login, and users as reviewers find them again (docs/audit.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from flask import Flask

from broker.app import create_app
from broker.audit.query import records
from broker.cli import main
from broker.config.loader import load_settings
from broker.demo.certificates import CertificateAuthority, LeafProfile
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from tests.factories.saml import Browser, saml_response_form
from tests.flows.conftest import audit_lines

BO_PNR = "191212121212"
LOGIN_EVENTS = ["login_started", "certificate_presented", "certificate_accepted", "assertion_issued"]


def log_in(browser: Browser, sp: DemoSp, *, force_authn: bool = False) -> dict[str, list[str]]:
    """A whole successful login; the attributes the SP received."""
    response = browser.get(sp.login_url(force_authn=force_authn))
    assert response.status_code == 200, response.headers.get("X-Broker-Reason")
    result = sp.accept(saml_response_form(response)[1]["SAMLResponse"])
    return dict(result.attributes)


def data_of(event: dict[str, object]) -> dict[str, Any]:
    data = event["data"]
    assert isinstance(data, dict)
    return data


def chain_of(app: Flask) -> str:
    """The id of the hash chain this app's process writes."""
    chain: str = app.extensions["broker"].audit.sink.chain_id
    return chain


def configuration_loads(config_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The configuration_loaded records, by the chain that holds them."""
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records([config_dir / "audit"]):
        if record["event"] == "configuration_loaded":
            found.setdefault(record["_chain"], []).append(record)
    return found


def configuration_files(config_dir: Path) -> dict[str, str]:
    """Every file of the configuration directory outside the audit directory: relative path -> SHA-256."""
    audit = config_dir / "audit"
    return {str(path.relative_to(config_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(config_dir.rglob("*")) if path.is_file() and audit not in path.parents}


# --- configuration_loaded: once per start, and what changed ---------------------------------------


def test_each_start_records_its_configuration_and_what_changed_since_the_last(
        app: Flask, browser: Browser, sp: DemoSp, config_dir: Path, store: RedisStore) -> None:
    first_files = configuration_files(config_dir)
    assert {"broker.yaml", "municipalities/kommun-a.yaml", "keys/audit-signing.key"} <= set(first_files)
    log_in(browser, sp)

    first_chain = chain_of(app)
    loads = configuration_loads(config_dir)
    assert list(loads) == [first_chain]
    (first,) = loads[first_chain]  # once for the start, not again for the login
    chain_events = [r["event"] for r in records([config_dir / "audit"])]
    assert chain_events.index("configuration_loaded") < chain_events.index("login_started")  # before any request
    assert first["outcome"] == "info"
    assert re.fullmatch(r"[0-9a-f]{64}", first["data"]["config_sha256"])
    assert first["data"]["files"] == first_files  # relative paths, none of the audit directory
    assert (first["data"]["added"], first["data"]["removed"], first["data"]["modified"]) == (
        sorted(first_files), [], [])  # no earlier load to compare with: everything is new

    app.extensions["broker"].audit.close()  # a clean shutdown, then a restart on a changed municipality
    kommun_a = config_dir / "municipalities" / "kommun-a.yaml"
    text = kommun_a.read_text(encoding="utf-8")
    assert text.count("sv: Kommun A\n") == 1
    kommun_a.write_text(text.replace("sv: Kommun A\n", "sv: Kommun A (ny)\n"), encoding="utf-8")
    second_app = create_app(load_settings(config_dir), store=store, instance_id="test")

    second_chain = chain_of(second_app)
    assert second_chain != first_chain
    loads = configuration_loads(config_dir)
    assert sorted(loads) == sorted([first_chain, second_chain])
    assert loads[first_chain] == [first]
    (second,) = loads[second_chain]
    second_files = configuration_files(config_dir)
    assert not [name for name in second["data"]["files"] if name.startswith("audit/")]  # the first chain is there
    assert second["data"]["files"] == second_files
    assert second_files["municipalities/kommun-a.yaml"] != first_files["municipalities/kommun-a.yaml"]
    assert (second["data"]["added"], second["data"]["removed"], second["data"]["modified"]) == (
        [], [], ["municipalities/kommun-a.yaml"])
    assert re.fullmatch(r"[0-9a-f]{64}", second["data"]["config_sha256"])
    assert second["data"]["config_sha256"] != first["data"]["config_sha256"]
    assert [r["event"] for r in audit_lines(config_dir, system=True)].count("configuration_loaded") == 2


def test_an_unchanged_configuration_has_the_same_fingerprint_at_every_start(
        app: Flask, config_dir: Path, store: RedisStore) -> None:
    app.extensions["broker"].audit.close()
    again = create_app(load_settings(config_dir), store=store, instance_id="test")

    loads = configuration_loads(config_dir)
    assert sorted(loads) == sorted([chain_of(app), chain_of(again)])
    (first,), (second,) = loads[chain_of(app)], loads[chain_of(again)]
    assert second["data"]["config_sha256"] == first["data"]["config_sha256"]
    assert second["data"]["files"] == first["data"]["files"]
    assert (second["data"]["added"], second["data"]["removed"], second["data"]["modified"]) == ([], [], [])


# --- one correlation ID per login -------------------------------------------------------------------


def test_every_event_of_a_successful_login_has_the_correlation_id_of_its_start(
        browser: Browser, sp: DemoSp, config_dir: Path) -> None:
    first = log_in(browser, sp)
    second = log_in(browser, sp, force_authn=True)  # a second whole login in the same browser

    events = audit_lines(config_dir)
    assert [e["event"] for e in events] == LOGIN_EVENTS * 2
    for login, attributes in ((events[:4], first), (events[4:], second)):
        started, issued = login[0], login[3]
        assert issued["correlation_id"] == started["correlation_id"]
        assert {e["correlation_id"] for e in login} == {started["correlation_id"]}
        assert data_of(issued)["request_id"] == data_of(started)["request_id"]
        assert attributes["transactionIdentifier"] == [started["correlation_id"]]  # what the SP can quote
    assert events[0]["correlation_id"] != events[4]["correlation_id"]
    assert data_of(events[0])["request_id"] != data_of(events[4])["request_id"]


def test_an_sso_reuse_names_the_certificate_its_session_rests_on(
        browser: Browser, sp: DemoSp, users: Path, config_dir: Path) -> None:
    """REFERENCE.md, Logging law and privacy: each login's record carries the certificate's issuer and serial. A
    login answered from the SSO session is one too: its session_reused and assertion_issued name the certificate
    the session was opened by, as the first login's records do."""
    log_in(browser, sp)
    browser.certificate_pem = None  # the card taken out: the session answers on its own
    log_in(browser, sp)

    events = audit_lines(config_dir)
    assert [e["event"] for e in events] == [*LOGIN_EVENTS, "login_started", "session_reused", "assertion_issued"]
    accepted = events[2]
    cert = x509.load_pem_x509_certificate((users / "anna.pem").read_bytes())
    expected = {"cert_sha256": hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
                "cert_serial": format(cert.serial_number, "x"), "cert_issuer": cert.issuer.rfc4514_string()}
    assert {k: accepted[k] for k in expected} == expected
    for reuse in events[5:]:
        assert {k: reuse.get(k) for k in expected} == expected, reuse["event"]
        assert (reuse["user"], reuse["municipality"]) == (accepted["user"], accepted["municipality"])


# --- users as reviewers find them -----------------------------------------------------------------


def test_a_personnummer_user_is_recorded_as_the_pseudonym_the_reviewer_command_prints(
        browser: Browser, sp: DemoSp, users: Path, config_dir: Path) -> None:
    browser.certificate_pem = (users / "bo.pem").read_text()
    attributes = log_in(browser, sp)
    assert attributes["personalIdentityNumber"] == [BO_PNR]

    printed = CliRunner().invoke(main, ["audit", "pseudonym", "--config", str(config_dir)], input=BO_PNR + "\n")
    assert printed.exit_code == 0, printed.output
    pseudonym = printed.stdout.strip()
    assert re.fullmatch(r"pnr:[0-9a-f]{32}", pseudonym)
    assert BO_PNR not in printed.output

    events = audit_lines(config_dir)
    assert [e["event"] for e in events] == LOGIN_EVENTS
    naming_a_user = [e for e in events if "user" in e]
    assert [e["event"] for e in naming_a_user] == ["certificate_accepted", "assertion_issued"]
    for event in naming_a_user:
        assert (event["user"], event["user_kind"]) == (pseudonym, "personnummer")

    found = CliRunner().invoke(main, ["audit", "query", "--config", str(config_dir), "--personnummer-stdin",
                                      "--format", "jsonl"], input=BO_PNR + "\n")
    assert found.exit_code == 0, found.output
    assert [json.loads(line) for line in found.stdout.splitlines()] == naming_a_user


def _demo_card(name: str) -> Callable[[Path, Path], str]:
    return lambda users, config_dir: (users / f"{name}.pem").read_text()


def _forged_kommun_a_card(users: Path, config_dir: Path) -> str:
    """Anna's HSA-id in a certificate whose issuer has the name of Kommun A's CA, signed by another key."""
    real = x509.load_pem_x509_certificate((config_dir / "certs" / "kommun-a" / "issuing-ca.pem").read_bytes())
    (cn,), (org,) = (real.subject.get_attributes_for_oid(o) for o in (NameOID.COMMON_NAME,
                                                                       NameOID.ORGANIZATION_NAME))
    forger = CertificateAuthority.root(str(cn.value), dt.datetime.now(dt.UTC), organization=str(org.value))
    assert forger.certificate.subject == real.subject
    issued = forger.issue(LeafProfile(common_name="Anna Demosson", serial_number="SE2120001009-anna",
                                      policies=("2.999.1.3",)))
    return issued.pem().decode()


@pytest.mark.parametrize(("card", "reason", "user"), [
    pytest.param(_demo_card("cecilia"), "revoked", ("SE2120001009-cecilia", "hsa_id", "kommun-a"), id="revoked"),
    pytest.param(_demo_card("david"), "certificate_expired", ("SE2120001009-david", "hsa_id", "kommun-a"),
                 id="expired"),
    pytest.param(_demo_card("erik"), "eku_not_client_auth", (BO_PNR, "personnummer", "kommun-b"),
                 id="wrong-eku-personnummer"),
    # text an unknown CA, or anyone using a configured CA's name, chose: no user is read from it
    pytest.param(_demo_card("fatima"), "issuer_unknown", None, id="unknown-issuer"),
    pytest.param(_forged_kommun_a_card, None, None, id="configured-ca-name-another-key"),
])
def test_a_refused_certificate_names_its_user_when_a_configured_ca_issued_it(
        browser: Browser, sp: DemoSp, users: Path, config_dir: Path, card: Callable[[Path, Path], str],
        reason: str | None, user: tuple[str, str, str] | None) -> None:
    """`audit query --user` finds a user's refused certificate logins (a revoked, expired or wrong-EKU card): the
    identity is recorded, pseudonymised like any other, when one of the municipality's configured CAs signed the
    certificate, never from a certificate no configured CA signed."""
    browser.certificate_pem = card(users, config_dir)
    response = browser.get(sp.login_url())
    assert response.status_code in (401, 403), response.headers.get("X-Broker-Reason")
    (rejected,) = [e for e in audit_lines(config_dir) if e["event"] == "certificate_rejected"]
    if reason is not None:
        assert rejected["reason"] == reason
    if user is None:
        assert ("user" in rejected, "user_kind" in rejected) == (False, False)
        return
    key, kind, municipality = user
    printed = CliRunner().invoke(main, ["audit", "pseudonym", "--config", str(config_dir)], input=key + "\n")
    recorded = printed.stdout.strip() if kind == "personnummer" else key
    assert (rejected["user"], rejected["user_kind"], rejected["municipality"]) == (recorded, kind, municipality)
    if kind == "personnummer":
        assert key not in json.dumps(rejected)  # never in clear
    query = ["audit", "query", "--config", str(config_dir), "--format", "jsonl", "--event", "certificate_rejected"]
    found = CliRunner().invoke(main, [*query, "--personnummer-stdin"], input=key + "\n") \
        if kind == "personnummer" else CliRunner().invoke(main, [*query, "--user", key])
    assert found.exit_code == 0, found.output
    assert [json.loads(line)["correlation_id"] for line in found.stdout.splitlines()] == [rejected["correlation_id"]]
