"""Every record a login writes fits the schema of broker/audit/schema.py, and the directory verifies.

A representative run of whole logins through the app (success for Anna and Bo, a refused certificate, an
unknown SP, session reuse, logout, a certificate header from an untrusted peer, an IsPassive request
without a session), then: every line of every file in the audit directory - the chain's own records
included - passes ``validate``, and ``verify`` calls the directory intact. Then, per event type, a
minimal valid record and the ways a record can be wrong.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from saml2 import BINDING_HTTP_REDIRECT
from saml2.saml import NameID

from broker.audit.chain import chain_files
from broker.audit.keys import AuditKeyring
from broker.audit.schema import EVENTS, validate
from broker.audit.verify import verify
from broker.config.loader import Settings
from broker.demo.sp import DemoSp
from tests.factories.authnrequests import (
    DIGEST_SHA256,
    RSA_SHA256,
    AuthnRequests,
    login,
    open_browser,
    posted_response,
    sp_accepts,
    with_issuer,
)
from tests.factories.municipality_choice import choose
from tests.factories.saml import Browser


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


def all_lines(directory: Path) -> list[tuple[str, int, dict[str, Any]]]:
    """(file name, line, record) of every line of every chain file in the directory."""
    found = []
    for files in chain_files(directory).values():
        for _, path in files:
            for number, raw in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
                assert raw.endswith(b"\n"), f"{path.name}:{number} is not a whole line"
                found.append((path.name, number, json.loads(raw)))
    return found


def run_representative_logins(app: Flask, browser: Browser, sp: DemoSp, craft: AuthnRequests, users: Path) -> None:
    # Anna logs in (HSA-id, LoA 3)
    crafted, posted = login(browser, craft)
    name_id: NameID = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id).name_id

    # ... and again without her certificate: her session answers
    browser.certificate_pem = None
    crafted, posted = login(browser, craft)
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)

    # ... and she logs out at the SP (signed HTTP-Redirect LogoutRequest)
    (binding, info), = sp.client.global_logout(name_id, sign=True, sign_alg=RSA_SHA256,
                                               digest_alg=DIGEST_SHA256).values()
    assert binding == BINDING_HTTP_REDIRECT
    assert browser.get(str(dict(info["headers"])["Location"])).status_code == 303

    # Bo logs in (personnummer, LoA 2)
    bo = open_browser(app, (users / "bo.pem").read_text())
    crafted, posted = login(bo, craft)
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)

    # David's certificate has expired
    david = open_browser(app, (users / "david.pem").read_text())
    assert david.get(craft.redirect(craft.build())).headers["X-Broker-Reason"] == "certificate_expired"

    # a request from an SP nobody registered
    stranger = open_browser(app, (users / "anna.pem").read_text())
    refused = stranger.get(craft.redirect(with_issuer(craft.build().xml, "https://sp.elsewhere.example/md")))
    assert refused.headers["X-Broker-Reason"] == "sp_unknown"

    # a certificate header from a peer that is no trusted proxy (none is, by default): no certificate, so
    # the municipality is asked for; Kommun A logs in with certificates only
    forger = open_browser(app, None)
    forger.remote_addr = "127.0.0.1"
    forger.headers["X-SSL-Client-Cert"] = quote((users / "anna.pem").read_text())
    refused = choose(forger, forger.get(craft.redirect(craft.build())))
    assert refused.headers["X-Broker-Reason"] == "certificate_missing"

    # IsPassive without a session: a signed error Response goes to the SP
    passive = open_browser(app, None)
    crafted = craft.build(is_passive="true")
    assert posted_response(passive.get(craft.redirect(crafted))).status[0] != (
        "urn:oasis:names:tc:SAML:2.0:status:Success")


def test_every_line_of_a_representative_run_fits_the_schema_and_verifies(
        app: Flask, browser: Browser, sp: DemoSp, craft: AuthnRequests, users: Path, config_dir: Path,
        settings: Settings) -> None:
    run_representative_logins(app, browser, sp, craft, users)
    directory = config_dir / "audit"
    keyring = AuditKeyring([settings.broker.audit.signing_key.key.public_key()])

    lines = all_lines(directory)
    seen = {record["event"] for _, _, record in lines}
    assert {"configuration_loaded", "audit_chain_started", "audit_checkpoint", "login_started",
            "certificate_presented", "certificate_accepted", "assertion_issued", "session_reused", "logout",
            "certificate_rejected", "saml_request_rejected", "proxy_header_untrusted", "login_refused",
            "error_response_issued"} <= seen
    problems = {f"{name}:{number} {record['event']}": validate(record) for name, number, record in lines}
    assert {where: p for where, p in problems.items() if p} == {}
    result = verify([directory], keyring)
    assert result.ok, str(result.first_problem())

    app.extensions["broker"].audit.close()  # a clean shutdown: the final checkpoint fits too
    lines = all_lines(directory)
    assert lines[-1][2]["event"] == "audit_checkpoint"
    assert [f"{n}:{i}" for n, i, record in lines if validate(record)] == []
    result = verify([directory], keyring)
    assert result.ok
    assert all(chain.closed and not chain.warnings for chain in result.chains)


# --- one event type at a time ------------------------------------------------------------------------------

SP = "https://localhost:8443/demo-sp/metadata"
CHAIN = {"v": 1, "seq": 7, "prev": "a" * 64, "time": "2026-11-27T08:00:00.123Z", "instance": "i1"}
# a user's request: the client's address is not required, unknown behind a trusted proxy that forwarded none
LOGIN = {"correlation_id": "3F9A-C21B-77D0-1E2F"}
USER = {"municipality": "kommun-a", "user": "SE2120001009-anna", "user_kind": "hsa_id"}
CERT = {"cert_sha256": "ab" * 32, "cert_serial": "1f", "cert_issuer": "CN=Kommun A Test Person CA"}
CHAIN_ID = "i1.20261127T080000Z.a1b2c3"

# the smallest record of each type: every field and data key here is required (docs/audit.md, Schema)
MINIMAL: dict[str, dict[str, Any]] = {
    "login_started": {"outcome": "info", **LOGIN, "sp": SP},
    "saml_request_rejected": {"outcome": "failure", **LOGIN, "reason": "sp_unknown"},
    "certificate_presented": {"outcome": "info", **LOGIN, **CERT, "sp": SP, "data": {"via": "tls"}},
    "certificate_accepted": {"outcome": "success", **LOGIN, **CERT, **USER, "sp": SP,
                             "data": {"loa": "http://id.elegnamnden.se/loa/1.0/loa3", "policy": "2.999.1.3"}},
    "certificate_rejected": {"outcome": "failure", **LOGIN, "reason": "certificate_expired"},
    "login_refused": {"outcome": "failure", **LOGIN, "reason": "certificate_missing"},
    "upstream_authn_requested": {"outcome": "info", **LOGIN, "municipality": "kommun-a", "sp": SP,
                                 "data": {"idp": "https://idp.kommun-a.example/", "request_id": "_r1"}},
    "upstream_authn_result": {"outcome": "success", **LOGIN},
    "assertion_issued": {"outcome": "success", **LOGIN, **USER, "sp": SP,
                         "data": {"loa": "http://id.elegnamnden.se/loa/1.0/loa3", "nameid": "x",
                                  "nameid_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
                                  "attributes": ["givenName"], "session": "new"}},
    "error_response_issued": {"outcome": "failure", **LOGIN, "reason": "passive_login_impossible", "sp": SP,
                              "data": {"status": "urn:oasis:names:tc:SAML:2.0:status:NoPassive"}},
    "session_reused": {"outcome": "success", **LOGIN, **USER, "sp": SP},
    "session_insufficient": {"outcome": "info", **LOGIN, **USER, "sp": SP, "reason": "authn_context_unsupported",
                             "data": {"session_login": "c1", "loa": "http://id.elegnamnden.se/loa/1.0/loa2"}},
    "session_expired": {"outcome": "info", **LOGIN},
    "session_unreadable": {"outcome": "failure", **LOGIN},
    "session_revoked": {"outcome": "failure", **LOGIN, **USER, "reason": "revoked"},
    "session_replaced": {"outcome": "info", **LOGIN, **USER, "data": {"session_login": "c1", "services": [SP]}},
    "revocation_soft_fail": {"outcome": "failure", **LOGIN, **USER, "reason": "revocation_unavailable"},
    "logout": {"outcome": "success", **LOGIN},
    "diagnose_viewed": {"outcome": "info", **LOGIN, "data": {"accepted": False}},
    "configuration_rejected": {"outcome": "failure", "correlation_id": "-", "reason": "config_invalid"},
    "logout_propagated": {"outcome": "success", **LOGIN},
    "logout_completed": {"outcome": "success", **LOGIN},
    "proxy_header_untrusted": {"outcome": "failure", **LOGIN, "reason": "proxy_header_untrusted"},
    # the user's address only when the trusted proxy forwarded one (docs/proxies.md); the proxy's own always
    "proxy_header_rejected": {"outcome": "failure", "correlation_id": LOGIN["correlation_id"],
                              "reason": "proxy_header_malformed", "data": {"proxy": "10.0.4.2"}},
    "configuration_loaded": {"outcome": "info", "correlation_id": "-",
                             "data": {"config_sha256": "c" * 64, "files": {"broker.yaml": "d" * 64}}},
    "readiness_run": {"outcome": "info", "correlation_id": "-"},
    "audit_chain_started": {"outcome": "info", "data": {"chain": CHAIN_ID, "key_id": "0123456789abcdef"}},
    "audit_checkpoint": {"outcome": "info", "data": {"chain": CHAIN_ID, "covers_seq": 6, "covers_hash": "a" * 64,
                                                     "key_id": "0123456789abcdef", "signature": "c2ln"}},
    "audit_key_rotated": {"outcome": "info", "data": {"old_key_id": "0123456789abcdef",
                                                      "new_key_id": "fedcba9876543210"}},
    "audit_chain_recovered": {"outcome": "info", "data": {"chain": CHAIN_ID, "last_seq": 41,
                                                          "last_hash": "b" * 64}},
    "audit_file_abandoned": {"outcome": "info"},
}


def minimal(event: str) -> dict[str, Any]:
    return {**CHAIN, "event": event, **copy.deepcopy(MINIMAL[event])}


def test_the_minimal_records_cover_every_event_type() -> None:
    assert set(MINIMAL) == set(EVENTS)


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_event_type_schema(event: str) -> None:
    record = minimal(event)
    assert validate(record) == []

    extra = {**minimal(event), "extra": "x"}
    assert f"field extra does not belong to {event}" in validate(extra)

    extra_data = minimal(event)
    extra_data["data"] = {**extra_data.get("data", {}), "extra": 1}
    assert f"data.extra does not belong to {event}" in validate(extra_data)

    for name in record:  # nothing in the minimal record may go
        if name == "data":
            continue
        shorter = {k: v for k, v in record.items() if k != name}
        assert f"missing {name}" in validate(shorter), name
    for key in record.get("data", {}):
        shorter = minimal(event)
        del shorter["data"][key]
        assert f"missing data.{key}" in validate(shorter), key
    for name in set(record) - {"v", "seq", "prev", "time", "instance", "event", "outcome", "data"}:
        assert f"missing {name}" in validate({**record, name: ""}), f"{name} empty"

    for wrong in {"info", "success", "failure", "unknown"} - EVENTS[event].outcomes:
        assert validate({**record, "outcome": wrong}), wrong
    for outcome in EVENTS[event].outcomes:
        assert validate({**record, "outcome": outcome}) == []


@pytest.mark.parametrize("event", sorted(e for e, spec in EVENTS.items() if "client" in spec.optional))
def test_a_users_request_records_the_client_address_when_it_is_known(event: str) -> None:
    assert validate({**minimal(event), "client": "192.0.2.7"}) == []


def test_the_client_address_belongs_to_the_records_of_a_users_request_only() -> None:
    assert {e for e, spec in EVENTS.items() if "client" in spec.optional} == {
        e for e, record in MINIMAL.items() if record.get("correlation_id", "-") != "-"}


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param({"v": 2}, "unknown schema version 2", id="version"),
    pytest.param({"seq": 0}, "seq must be a positive integer", id="seq-zero"),
    pytest.param({"seq": "7"}, "seq must be a positive integer", id="seq-text"),
    pytest.param({"prev": "A" * 64}, "prev must be 64 hex digits", id="prev-uppercase"),
    pytest.param({"time": "2026-11-27T08:00:00Z"}, "time '2026-11-27T08:00:00Z' is not UTC ISO 8601 with "
                                                    "milliseconds", id="time-without-ms"),
    pytest.param({"time": "2026-11-27T08:00:00.123+01:00"}, "time '2026-11-27T08:00:00.123+01:00' is not UTC ISO "
                                                             "8601 with milliseconds", id="time-not-utc"),
    pytest.param({"event": "login_happened"}, "unknown event 'login_happened'", id="unknown-event"),
    pytest.param({"data": ["via"]}, "data must be an object", id="data-not-object"),
])
def test_chain_fields_are_checked(change: dict[str, Any], expected: str) -> None:
    record = {**minimal("certificate_presented"), **change}
    assert expected in validate(record)
