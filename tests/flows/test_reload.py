"""Configuration reload: in process (`reload_configuration`) and in a running `broker serve` (`broker reload`,
SIGHUP to the gunicorn master).

A valid change is swapped in for new requests while sessions in Redis are untouched; a broken one is refused
(logged, audited as ``configuration_rejected`` naming file:line) and the running configuration keeps
serving. `broker reload` validates first and sends nothing when the files are broken.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
import requests
import yaml
from flask import Flask
from lxml import etree
from saml2.sigver import SignatureError

from broker.app import reload_configuration
from broker.audit.query import records
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from tests.factories.authnrequests import (
    AuthnRequests,
    assert_refused,
    login,
    open_browser,
    posted_response,
    sp_accepts,
)
from tests.factories.saml import BASE_URL, Browser, xmlsec_binary
from tests.factories.serve import BrokerServe
from tests.flows.conftest import audit_lines

HSA_ID_ATTRIBUTE = "urn:oid:1.2.752.29.6.2.1"
OLD_NAME = "<dd>Kommun A / Municipality A (kommun-a)</dd>"
NEW_NAME = "<dd>Kommun Alfa / Municipality Alfa (kommun-a)</dd>"
OTHER_SP = BASE_URL + "/other-sp"
T = TypeVar("T")


# --- editing the configuration --------------------------------------------------------------------


def rename_kommun_a(config_dir: Path) -> None:
    path = config_dir / "municipalities" / "kommun-a.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["name"] = {"sv": "Kommun Alfa", "en": "Municipality Alfa"}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def add_other_sp(config_dir: Path, demo_root: Path) -> None:
    """A second regional SP (same vendor key as the demo SP, its own entityID and endpoints)."""
    settings = DemoSpSettings(base_url=OTHER_SP, key_file=demo_root / "sp" / "sp.key",
                              cert_file=demo_root / "sp" / "sp.crt")
    (config_dir / "metadata" / "other-sp.xml").write_bytes(sp_metadata(settings))
    data = yaml.safe_load((config_dir / "service-providers" / "demo-sp.yaml").read_text(encoding="utf-8"))
    data.update(entity_id=OTHER_SP + "/metadata", name={"sv": "Andra tjänsten", "en": "The other service"},
                metadata="metadata/other-sp.xml")
    (config_dir / "service-providers" / "other-sp.yaml").write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def append_line(path: Path, line: str) -> int:
    """Append ``line``; its line number."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    text += line + "\n"
    path.write_text(text, encoding="utf-8")
    return text.count("\n")


def break_broker_yaml(config_dir: Path) -> tuple[str, int]:
    return "broker.yaml", append_line(config_dir / "broker.yaml", "bogus_key: 1")


def break_kommun_b_yaml(config_dir: Path) -> tuple[str, int]:
    return "municipalities/kommun-b.yaml", append_line(config_dir / "municipalities" / "kommun-b.yaml",
                                                       "name: [unclosed")


def other_sp(app: Flask, demo_root: Path) -> DemoSp:
    services = app.extensions["broker"]
    settings = DemoSpSettings(base_url=OTHER_SP, key_file=demo_root / "sp" / "sp.key",
                              cert_file=demo_root / "sp" / "sp.crt", xmlsec_binary=xmlsec_binary())
    return DemoSp(settings, services.metadata.document(), services.settings.broker.idp.entity_id)


def loaded(config_dir: Path) -> list[dict[str, Any]]:
    return [e for e in audit_lines(config_dir, system=True) if e["event"] == "configuration_loaded"]


def rejected(config_dir: Path) -> list[dict[str, Any]]:
    return [e for e in audit_lines(config_dir, system=True) if e["event"] == "configuration_rejected"]


@pytest.fixture
def craft(sp: DemoSp, demo_material: Any) -> AuthnRequests:
    return AuthnRequests(sp, Path(demo_material.root) / "sp" / "sp.key")


# --- in process -----------------------------------------------------------------------------------


def test_reload_swaps_the_configuration_and_keeps_sessions(app: Flask, browser: Browser, craft: AuthnRequests,
                                                           config_dir: Path, demo_material: Any) -> None:
    demo_root = Path(demo_material.root)
    _, first = login(browser, craft)  # Anna's session, made under the first configuration
    assert OLD_NAME in browser.get("/diagnose").get_data(as_text=True)

    # the other SP is unknown before the reload
    before = AuthnRequests(other_sp(app, demo_root), demo_root / "sp" / "sp.key")
    assert_refused(browser.get(before.redirect(before.build(destination=BASE_URL + "/saml/idp/sso"))),
                   "sp_unknown")

    rename_kommun_a(config_dir)
    add_other_sp(config_dir, demo_root)
    assert reload_configuration(app) is True

    # new requests see the new configuration
    assert NEW_NAME in browser.get("/diagnose").get_data(as_text=True)
    # the session made before the reload gives SSO at the SP added by it, without a certificate
    browser.certificate_pem = None
    sp2 = other_sp(app, demo_root)
    craft2 = AuthnRequests(sp2, demo_root / "sp" / "sp.key")
    crafted = craft2.build()
    posted = posted_response(browser.get(craft2.redirect(crafted)))
    result = sp_accepts(sp2, posted.fields["SAMLResponse"], crafted.request_id)
    hsa = [a for s in result.assertion.attribute_statement for a in s.attribute if a.name == HSA_ID_ATTRIBUTE]
    assert [v.text for v in hsa[0].attribute_value] == ["SE2120001009-anna"]
    issued = [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]
    assert [(e["sp"], e["data"]["session"]) for e in issued] == [  # type: ignore[index]
        (BASE_URL + "/demo-sp/metadata", "new"), (OTHER_SP + "/metadata", "reused")]
    assert first.xml  # the first login's Response was issued before the reload

    records_ = loaded(config_dir)
    assert len(records_) == 2
    second = records_[1]["data"]
    assert second["modified"] == ["municipalities/kommun-a.yaml"]
    assert second["added"] == ["metadata/other-sp.xml", "service-providers/other-sp.yaml"]
    assert second["removed"] == []
    assert OTHER_SP + "/metadata" in second["service_providers"]
    assert second["config_sha256"] != records_[0]["data"]["config_sha256"]
    assert "restart_needed" not in second  # the same audit and redis sections: keys compare by their public halves
    assert rejected(config_dir) == []


def _lower_the_level(data: dict[str, Any]) -> None:
    data["certificate"]["policies"][0]["loa"] = "loa2"


def _accept_another_policy(data: dict[str, Any]) -> None:
    data["certificate"]["policies"][0]["oid"] = "2.999.1.99"


def edit_kommun_a(config_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = config_dir / "municipalities" / "kommun-a.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def class_ref(root: etree._Element) -> str | None:
    found = root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}AuthnContextClassRef")
    return found.text if found is not None else None


@pytest.mark.parametrize(("change", "answer", "retired"), [
    # the certificate now proves less: the session answers at no more than the card proves now
    pytest.param(_lower_the_level, "http://id.elegnamnden.se/loa/1.0/loa2", None, id="loa-mapping-lowered"),
    # the certificate's policy is no longer accepted: the session answers no SP any more
    pytest.param(_accept_another_policy, None, "policy_not_accepted", id="policy-no-longer-accepted"),
])
def test_a_session_follows_a_changed_trust_configuration_of_its_municipality_at_once(
        app: Flask, browser: Browser, craft: AuthnRequests, config_dir: Path,
        change: Callable[[dict[str, Any]], None], answer: str | None, retired: str | None) -> None:
    """A session proves what its certificate proves under the configuration in force: a reload that changes
    the municipality's trust (CAs, accepted policies and their LoA, identity rule, revocation) has the card
    validated again on the session's next use, not only once its revocation answer expires (a CRL's
    nextUpdate, days away; never with mode none)."""
    _, first = login(browser, craft)
    assert class_ref(first.root) == "http://id.elegnamnden.se/loa/1.0/loa3"
    edit_kommun_a(config_dir, change)
    assert reload_configuration(app) is True

    browser.certificate_pem = None
    response = browser.get(craft.redirect(craft.build()))
    revoked = [e for e in audit_lines(config_dir) if e["event"] == "session_revoked"]
    if answer is not None:
        assert class_ref(posted_response(response).root) == answer
        assert revoked == []
    else:  # nothing answered from the session: the user logs in again (no card here: discovery)
        assert response.status_code == 200
        assert "SAMLResponse" not in response.get_data(as_text=True)
        assert [e["reason"] for e in revoked] == [retired]
        issued = [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]
        assert [e["data"]["session"] for e in issued] == ["new"]  # type: ignore[index]


def session_ends(root: etree._Element) -> dt.datetime:
    """The SessionNotOnOrAfter of a Response's AuthnStatement."""
    statement = root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}AuthnStatement")
    assert statement is not None
    return dt.datetime.fromisoformat(str(statement.get("SessionNotOnOrAfter")).replace("Z", "+00:00"))


def test_a_shortened_absolute_timeout_applies_to_the_sessions_opened_before_the_reload(
        app: Flask, browser: Browser, craft: AuthnRequests, config_dir: Path) -> None:
    """session.absolute_timeout ends a session that long after its login "whatever the activity": a reload that
    shortens it below the age of a session in use leaves nothing to answer from (the user logs in again), though
    the session was opened under the longer one."""
    _, first = login(browser, craft)
    opened = time.monotonic()
    path = config_dir / "broker.yaml"
    text = path.read_text(encoding="utf-8")
    shortened = text.replace("  idle_timeout: 30m\n  absolute_timeout: 8h\n",
                             "  idle_timeout: 3s\n  absolute_timeout: 3s\n")
    assert shortened != text
    path.write_text(shortened, encoding="utf-8")
    assert reload_configuration(app) is True
    browser.certificate_pem = None
    time.sleep(max(0.0, opened + 1.5 - time.monotonic()))
    reused = posted_response(browser.get(craft.redirect(craft.build())))  # within both: SSO, the session in use
    # the SP answered now is told the end by the timeout in force (SAML Core §2.7.2), 3 s after the login
    assert session_ends(reused.root) - session_ends(first.root) == dt.timedelta(seconds=3) - dt.timedelta(hours=8)
    time.sleep(2.0)  # 3.5 s after the login, 2 s after its last use

    response = browser.get(craft.redirect(craft.build()))
    assert response.status_code == 200  # no card: discovery, nothing answered from the session
    assert "SAMLResponse" not in response.get_data(as_text=True)
    assert [e["detail"] for e in audit_lines(config_dir) if e["event"] == "session_expired"] == ["expired_absolute"]
    users = {e["event"]: e.get("user") for e in audit_lines(config_dir)}
    assert users["session_expired"] == users["assertion_issued"] is not None  # whose session ended
    assert [e["data"]["session"] for e in audit_lines(config_dir)  # type: ignore[index]
            if e["event"] == "assertion_issued"] == ["new", "reused"]


def test_each_reload_records_what_changed_since_the_load_before_it(app: Flask, config_dir: Path,
                                                                   demo_material: Any) -> None:
    """configuration_loaded says what changed since the last load. The one before was looked for among the first
    records of the chain, where the start's is: every later reload was compared with the start, and named again
    what earlier reloads had changed."""
    rename_kommun_a(config_dir)
    assert reload_configuration(app) is True
    add_other_sp(config_dir, Path(demo_material.root))
    assert reload_configuration(app) is True
    assert reload_configuration(app) is True  # nothing changed

    changes = [{k: e["data"][k] for k in ("added", "removed", "modified")} for e in loaded(config_dir)[1:]]
    assert changes == [
        {"added": [], "removed": [], "modified": ["municipalities/kommun-a.yaml"]},
        {"added": ["metadata/other-sp.xml", "service-providers/other-sp.yaml"], "removed": [], "modified": []},
        {"added": [], "removed": [], "modified": []},
    ]


def test_a_changed_audit_section_is_reported_as_needing_a_restart(app: Flask, config_dir: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The audit trail is kept across reloads (its chain, its key): a changed audit section must not look
    applied (a rotated signing key, client addresses to pseudonymise)."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text())
    data["audit"]["client_address"] = "pseudonymised"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with caplog.at_level(logging.WARNING, logger="broker"):
        assert reload_configuration(app) is True
    assert "broker.yaml's audit section changed; it takes effect when the broker restarts" in caplog.text
    assert loaded(config_dir)[-1]["data"]["restart_needed"] == ["audit"]

    # a later reload compares with what the process started with, not with the reload before it: the audit
    # change is still not applied; put back, nothing is left to restart for
    rename_kommun_a(config_dir)
    assert reload_configuration(app) is True
    assert loaded(config_dir)[-1]["data"]["restart_needed"] == ["audit"]
    data["audit"]["client_address"] = "clear"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert reload_configuration(app) is True
    assert "restart_needed" not in loaded(config_dir)[-1]["data"]


def test_a_larger_certificate_header_limit_is_reported_as_needing_a_restart(app: Flask, config_dir: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """broker serve sizes gunicorn's header line limit from client_certificate.proxy at start: a raised max_bytes
    is not applied by a reload (gunicorn refuses the longer header first); a lowered one is the app's to enforce."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text())
    data.setdefault("client_certificate", {}).setdefault("proxy", {})["max_bytes"] = 65536
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with caplog.at_level(logging.WARNING, logger="broker"):
        assert reload_configuration(app) is True
    assert ("broker.yaml's client_certificate.proxy section changed; it takes effect when the broker restarts (a "
            "reload keeps the running HTTP server's header line limit") in caplog.text
    assert loaded(config_dir)[-1]["data"]["restart_needed"] == ["client_certificate.proxy"]

    data["client_certificate"]["proxy"]["max_bytes"] = 1024
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert reload_configuration(app) is True
    assert "restart_needed" not in loaded(config_dir)[-1]["data"]


@pytest.mark.parametrize("breaker", [break_broker_yaml, break_kommun_b_yaml], ids=["unknown_key", "bad_yaml"])
def test_broken_configuration_is_refused_and_the_old_one_keeps_serving(
        app: Flask, craft: AuthnRequests, config_dir: Path, users: Path, caplog: pytest.LogCaptureFixture,
        breaker: Callable[[Path], tuple[str, int]]) -> None:
    rename_kommun_a(config_dir)  # a valid change that must not come into force with the broken one
    name, line = breaker(config_dir)
    with caplog.at_level(logging.ERROR, logger="broker"):
        assert reload_configuration(app) is False
    location = f"{name}:{line}"
    errors = [r for r in caplog.records if r.name == "broker" and r.levelno >= logging.ERROR]
    assert errors, "nothing was logged"
    assert any(location in r.getMessage() for r in errors), [r.getMessage() for r in errors]

    found = rejected(config_dir)
    assert len(found) == 1
    assert (found[0]["outcome"], found[0]["reason"]) == ("failure", "config_invalid")
    assert location in found[0]["detail"], found[0]["detail"]
    assert found[0]["data"]["issues"] >= 1
    assert len(loaded(config_dir)) == 1  # only the start-up's

    # the old configuration keeps serving: a new login works, the old name is shown
    fresh = open_browser(app, (users / "anna.pem").read_text())
    _, posted = login(fresh, craft)
    assert posted.status[0] == "urn:oasis:names:tc:SAML:2.0:status:Success"
    assert OLD_NAME in fresh.get("/diagnose").get_data(as_text=True)

    # repaired, the same directory loads
    path = config_dir / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:line - 1] + lines[line:]), encoding="utf-8")
    assert reload_configuration(app) is True
    assert NEW_NAME in fresh.get("/diagnose").get_data(as_text=True)


def test_a_fault_the_loader_did_not_foresee_is_refused_like_an_invalid_configuration(
        app: Flask, craft: AuthnRequests, config_dir: Path, users: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """gunicorn's master reloads on SIGHUP through reload_configuration: an unexpected exception there would end
    the master, so every instance reloading the same files would stop. It is refused instead, logged and audited."""
    def fails(directory: Path) -> None:
        raise RuntimeError("a fault nobody foresaw")

    monkeypatch.setattr("broker.app.load_settings", fails)
    with caplog.at_level(logging.ERROR, logger="broker"):
        assert reload_configuration(app) is False
    assert any("reload failed unexpectedly" in r.getMessage() for r in caplog.records)
    found = rejected(config_dir)
    assert [(r["reason"], r["detail"]) for r in found] == [
        ("config_invalid", "unexpected RuntimeError while loading (the log has the traceback)")]
    fresh = open_browser(app, (users / "anna.pem").read_text())
    _, posted = login(fresh, craft)
    assert posted.status[0] == "urn:oasis:names:tc:SAML:2.0:status:Success"


def test_a_configuration_that_fails_to_build_starts_no_metadata_refresher(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The municipal IdPs' metadata refresher (a thread, when a municipality's metadata has a URL) starts only once
    everything else of the new configuration is built: a refused reload (here the SP decryption keys failing)
    must not leave a thread fetching metadata for a configuration that never serves, one more at each SIGHUP."""
    started: list[object] = []
    # a lambda, not started.append: set on the class, it must bind as a method does
    monkeypatch.setattr("broker.app.UpstreamMetadata.start", lambda registry: started.append(registry))  # noqa: PLW0108

    def fails(*_: object) -> None:
        raise RuntimeError("no decrypter today")

    with monkeypatch.context() as failing:
        failing.setattr("broker.app.Decrypter", fails)
        for _ in range(3):
            assert reload_configuration(app) is False
    assert started == []
    assert reload_configuration(app) is True   # the control: a configuration that builds starts its refresher
    assert len(started) == 1


# --- a running broker serve -------------------------------------------------------------------------


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def diagnose_page(serve: BrokerServe, pem: str) -> tuple[int, str]:
    """/diagnose as the trusted proxy (127.0.0.1) forwards Anna's certificate."""
    try:
        response = requests.get(serve.url + "/diagnose", headers={"X-SSL-Client-Cert": quote(pem)}, timeout=10)
    except requests.RequestException as exc:
        return 0, str(exc)
    return response.status_code, response.text


def audit_of(config_dir: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in records([config_dir / "audit"]) if r.get("event") == event]


def broker_reload(config_dir: Path, pid_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker.cli", "reload", "--config", str(config_dir),
                           "--pid-file", str(pid_file)], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def serve_config(config_dir: Path, redis_url: str, redis_prefix: str) -> Path:
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["trusted_networks"] = ["127.0.0.1/32"]
    data["redis"] = {"url": redis_url, "key_prefix": redis_prefix}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config_dir


@pytest.fixture(params=["default", "operator_metrics_dir"])
def serve(request: pytest.FixtureRequest, serve_config: Path, tmp_path: Path, redis_url: str) -> Iterator[BrokerServe]:
    """`broker serve --workers 2`, as started by an operator: with the defaults (``broker serve`` makes its own
    metrics directory), or with PROMETHEUS_MULTIPROC_DIR set by the operator."""
    metrics_dir = None
    if request.param == "operator_metrics_dir":
        metrics_dir = tmp_path / "metrics"
        metrics_dir.mkdir()
    with BrokerServe(serve_config, tmp_path / "serve", redis_url=redis_url, workers=2,
                     metrics_dir=metrics_dir) as server:
        yield server


def test_broker_reload_and_sighup_in_a_running_server(serve: BrokerServe, serve_config: Path, users: Path) -> None:
    config_dir = serve_config
    anna = (users / "anna.pem").read_text()
    status, page = diagnose_page(serve, anna)
    assert (status, OLD_NAME in page) == (200, True), page[-2000:]
    assert len(audit_of(config_dir, "configuration_loaded")) == 1
    assert int(serve.pid_file.read_text().strip()) == serve.pid

    # 1. a valid change, reloaded with `broker reload --pid-file`
    rename_kommun_a(config_dir)
    done = broker_reload(config_dir, serve.pid_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"asked process {serve.pid} to reload" in done.stdout
    status, page = eventually(lambda: diagnose_page(serve, anna), lambda r: r[0] == 200 and NEW_NAME in r[1])
    assert (status, NEW_NAME in page) == (200, True), \
        f"after the reload: HTTP {status}\n{page[-1500:]}\n--- serve.log\n{serve.log()}"
    loads = eventually(lambda: audit_of(config_dir, "configuration_loaded"), lambda r: len(r) == 2)
    assert len(loads) == 2
    assert loads[1]["data"]["modified"] == ["municipalities/kommun-a.yaml"]

    # 2. a broken change: `broker reload` names the problem, exits 1 and signals nobody
    workers = eventually(serve.workers_now, lambda w: len(w) == 2)  # the old workers have finished
    assert len(workers) == 2, workers
    hups = serve.log().count("Handling signal: hup")
    name, line = break_broker_yaml(config_dir)
    refused = broker_reload(config_dir, serve.pid_file)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"{name}:{line}: bogus_key: unknown key" in refused.stderr
    assert "nothing reloaded" in refused.stderr
    time.sleep(1.0)
    assert serve.log().count("Handling signal: hup") == hups
    assert serve.workers_now() == workers  # a SIGHUP would have replaced them
    assert audit_of(config_dir, "configuration_rejected") == []

    # 3. SIGHUP regardless: the master refuses the files, audits why, and goes on with the last good ones
    serve.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    found = eventually(lambda: audit_of(config_dir, "configuration_rejected"), bool)
    assert len(found) == 1, serve.log()
    assert found[0]["reason"] == "config_invalid"
    assert f"{name}:{line}" in found[0]["detail"]
    assert len(audit_of(config_dir, "configuration_loaded")) == 2
    time.sleep(1.0)  # the old workers are gone by now, the new ones serve
    for _ in range(4):  # every worker, likely
        status, page = diagnose_page(serve, anna)
        assert (status, NEW_NAME in page) == (200, True), \
            f"after the refused reload: HTTP {status}\n{page[-1500:]}\n--- serve.log\n{serve.log()}"
    assert requests.get(serve.url + "/healthz", timeout=10).status_code == 200
    assert serve.process.poll() is None  # type: ignore[union-attr]


def test_a_signing_key_rollover_keeps_sps_with_the_earlier_metadata_working(
        app: Flask, browser: Browser, craft: AuthnRequests, sp: DemoSp, config_dir: Path) -> None:
    """Metadata §2.4.1.1: the next signing certificate is published beside the current one
    (idp.signing.also_published); an SP that fetched that metadata then accepts Responses signed with the new
    key once the broker switches to it."""
    from broker.demo.certificates import CertificateAuthority, write_key, write_pem

    nxt = CertificateAuthority.root("Demo Broker IdP signing 2", dt.datetime.now(dt.UTC), key="rsa2048")
    write_key(config_dir / "keys" / "idp-signing-2.key", nxt.key)
    write_pem(config_dir / "keys" / "idp-signing-2.crt", nxt.certificate)

    def signing(key: str, certificate: str, also: list[str]) -> None:
        path = config_dir / "broker.yaml"
        data = yaml.safe_load(path.read_text())
        data["idp"]["signing"].update(key=key, certificate=certificate, also_published=also)
        path.write_text(yaml.safe_dump(data, allow_unicode=True))

    signing("keys/idp-signing.key", "keys/idp-signing.crt", ["keys/idp-signing-2.crt"])
    assert reload_configuration(app) is True
    published = app.extensions["broker"].metadata.document()
    root = etree.fromstring(published)
    certificates = root.findall(".//{urn:oasis:names:tc:SAML:2.0:metadata}IDPSSODescriptor/"
                                "{urn:oasis:names:tc:SAML:2.0:metadata}KeyDescriptor[@use='signing']")
    assert len(certificates) == 2
    # the SP takes the metadata with both keys
    rolled = DemoSp(DemoSpSettings(base_url=BASE_URL + "/demo-sp", key_file=sp.settings.key_file,
                                   cert_file=sp.settings.cert_file, xmlsec_binary=xmlsec_binary()),
                    published, app.extensions["broker"].settings.broker.idp.entity_id)
    crafted, posted = login(browser, AuthnRequests(rolled, sp.settings.key_file))
    sp_accepts(rolled, posted.fields["SAMLResponse"], crafted.request_id)

    signing("keys/idp-signing-2.key", "keys/idp-signing-2.crt", ["keys/idp-signing.crt"])
    assert reload_configuration(app) is True
    # (the same browser: the test client keeps a request's context until that client's next request, and a
    # second client would run inside it, with the services of before the reload)
    crafted, posted = login(browser, AuthnRequests(rolled, sp.settings.key_file))
    assert sp_accepts(rolled, posted.fields["SAMLResponse"], crafted.request_id) is not None
    # signed with the new key: the SP still holding the metadata from before the rollover began refuses it
    with pytest.raises(SignatureError):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
