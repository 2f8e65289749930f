"""Failing dependencies and what the audit trail may hold.

DESIGN.md, "Scale and failure": Redis unreachable gives a clear 503 page with a
reference ID and the broker recovers by itself; audit events are durable
before the user sees the outcome, and logins fail closed when the audit cannot
be written. STYLE.md §12: personnummer only as a keyed pseudonym, never a PEM
or an attribute value.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask, Response
from werkzeug.datastructures import Headers
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.audit.trail import Pseudonymiser
from broker.cli import main
from broker.config.loader import load_settings
from broker.demo.sp import DemoSp
from broker.errors import ConfigError
from broker.session.store import KeyValueStore, RedisStore
from tests.conftest import REPO
from tests.factories.ports import free_port
from tests.factories.redis_server import RedisServer
from tests.factories.saml import BASE_URL, Browser, forms, make_sp, saml_response_form
from tests.flows.conftest import audit_lines

REFID = re.compile(r'class="refid"[^>]*>([0-9A-F]{4}(?:-[0-9A-F]{4}){3})<')
TRACEBACK_MARKERS = ("Traceback", 'File "', "raise ", "Error:", "redis.exceptions")
BO_PNR = "191212121212"


def edit_broker_yaml(config_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def set_audit(**values: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["audit"].update(values)
    return edit


def build_app(config_dir: Path, store: KeyValueStore) -> Flask:
    return create_app(load_settings(config_dir), store=store, instance_id="test")


@contextmanager
def browsing(app: Flask, certificate_pem: str | None) -> Iterator[Browser]:
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        yield Browser(client, certificate_pem)


def sp_of(app: Flask, demo_material: Any) -> DemoSp:
    metadata = app.extensions["broker"].metadata.document()
    return make_sp(demo_material.root, metadata, app.extensions["broker"].settings.broker.idp.entity_id)


def refid(response: TestResponse) -> str:
    found = REFID.search(response.get_data(as_text=True))
    assert found is not None, "the page shows no reference ID"
    return found.group(1)


def has_saml_response(response: TestResponse) -> bool:
    return any("SAMLResponse" in fields for _action, fields in forms(response)) or (
        "SAMLResponse" in response.get_data(as_text=True))


def assert_no_traceback(response: TestResponse) -> None:
    body = response.get_data(as_text=True)
    for marker in TRACEBACK_MARKERS:
        assert marker not in body, f"the page leaks {marker!r}"


# --- Redis outage -----------------------------------------------------------------------------


def test_readyz_is_503_while_redis_answers_but_refuses_writes(private_redis: RedisServer, config_dir: Path) -> None:
    """A server that answers PING but takes no write (a read-only replica after a failover gone wrong, maxmemory
    under noeviction) fails every login closed: readiness must say so too."""
    store = RedisStore(private_redis.url, prefix=f"test:{secrets.token_hex(4)}:")
    app = build_app(config_dir, store)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    admin = redis.Redis.from_url(private_redis.url)
    admin.replicaof("127.0.0.1", str(free_port()))  # a replica of nothing: read-only
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["session_store"] == "session_store_unavailable"
    finally:
        admin.replicaof("NO", "ONE")
        admin.close()
    assert client.get("/readyz").status_code == 200


def test_redis_outage_gives_503_page_and_the_broker_recovers_by_itself(
        private_redis: RedisServer, config_dir: Path, users: Path, demo_material: Any) -> None:
    store = RedisStore(private_redis.url, prefix=f"test:{secrets.token_hex(4)}:")
    app = build_app(config_dir, store)
    sp = sp_of(app, demo_material)
    with browsing(app, (users / "anna.pem").read_text()) as browser:
        first = browser.get(sp.login_url())
        assert first.status_code == 200
        sp.accept(saml_response_form(first)[1]["SAMLResponse"])

        private_redis.stop()
        down = browser.get(sp.login_url(force_authn=True))
        assert down.status_code == 503
        assert down.headers["X-Broker-Reason"] == "session_store_unavailable"
        assert down.headers["Content-Type"].startswith("text/html")
        cid = refid(down)
        assert_no_traceback(down)
        assert not has_saml_response(down)
        refused = [e for e in audit_lines(config_dir) if e["correlation_id"] == cid and e["event"] == "login_refused"]
        assert [e["reason"] for e in refused] == ["session_store_unavailable"]

        ready = browser.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["Content-Type"] == "application/json"
        assert ready.get_json() == {"status": "unavailable",
                                    "checks": {"session_store": "session_store_unavailable", "audit": "ok"}}
        assert browser.get("/healthz").status_code == 200  # liveness does not hang on Redis

        private_redis.start()  # same port: the app is not restarted
        again = browser.get(sp.login_url(force_authn=True))
        assert again.status_code == 200
        result = sp.accept(saml_response_form(again)[1]["SAMLResponse"])
        assert result.attributes["employeeHsaId"] == ["SE2120001009-anna"]
        assert browser.get("/readyz").status_code == 200


def test_redis_outage_page_is_english_when_asked(private_redis: RedisServer, config_dir: Path, users: Path,
                                                 demo_material: Any) -> None:
    app = build_app(config_dir, RedisStore(private_redis.url, prefix=f"test:{secrets.token_hex(4)}:"))
    sp = sp_of(app, demo_material)
    private_redis.stop()
    with browsing(app, (users / "anna.pem").read_text()) as browser:
        browser.headers["Accept-Language"] = "en"
        response = browser.get(sp.login_url())
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert '<html lang="en">' in body
    assert "temporarily unavailable" in body
    refid(response)


# --- audit failure: fail closed --------------------------------------------------------------


def assert_refused_by_the_audit(status: int, headers: Headers, body: str) -> None:
    """A 503 ``audit_unavailable`` page with a reference ID: no SAML Response, no session, no traceback."""
    assert status == 503
    assert headers["X-Broker-Reason"] == "audit_unavailable"
    assert "SAMLResponse" not in body  # neither a form field nor any other trace of a Response
    assert not [c for c in headers.getlist("Set-Cookie") if c.startswith("__Host-broker_session=")]
    assert REFID.search(body), "the page shows no reference ID"
    for marker in TRACEBACK_MARKERS:
        assert marker not in body, f"the page leaks {marker!r}"


def _logins_on_a_full_disk(config_dir: str, redis_url: str, redis_prefix: str, demo_root: str,
                           user_pem: str) -> None:
    """Run in a child process: start the broker, then fill the disk for it and log in twice; print what the
    browser got (JSON) on stdout.

    RLIMIT_FSIZE 0 makes every write to a regular file fail (EFBIG), whatever file and offset, as a full
    disk does: also the fresh file the audit chain moves on to after a failed write."""
    app = build_app(Path(config_dir), RedisStore(redis_url, prefix=redis_prefix))
    services = app.extensions["broker"]
    sp = make_sp(Path(demo_root), services.metadata.document(), services.settings.broker.idp.entity_id)
    urls = [sp.login_url(), sp.login_url(force_authn=True)]  # made first: pysaml2 signs through temporary files
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    seen = []
    with browsing(app, Path(user_pem).read_text()) as browser:
        for url in urls:
            response = browser.get(url)
            seen.append({"status": response.status_code, "headers": list(response.headers.items()),
                         "body": response.get_data(as_text=True)})
    print(json.dumps(seen))


@pytest.mark.parametrize("user", ["anna", "david"])
def test_full_disk_refuses_every_login(config_dir: Path, users: Path, demo_material: Any, redis_url: str,
                                       redis_prefix: str, user: str) -> None:
    code = "import sys; from tests.flows.test_failures import _logins_on_a_full_disk as run; run(*sys.argv[1:])"
    child = subprocess.run(
        [sys.executable, "-c", code, str(config_dir), redis_url, redis_prefix, str(demo_material.root),
         str(users / f"{user}.pem")],
        cwd=REPO, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True, text=True,
        timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    attempts = json.loads(child.stdout)
    assert len(attempts) == 2  # no accidental recovery on the second try (which starts a fresh audit file)
    for attempt in attempts:
        assert_refused_by_the_audit(attempt["status"], Headers(attempt["headers"]), attempt["body"])
    assert "File too large" in child.stderr  # the operator's log names the write that failed
    # what the broker wrote before the disk filled stays as it was: its start, no record of the refused logins,
    # and a chain that still verifies
    assert [e["event"] for e in audit_lines(config_dir, system=True) if e["event"] == "configuration_loaded"] == [
        "configuration_loaded"]
    assert audit_lines(config_dir) == []
    verified = CliRunner().invoke(main, ["audit", "verify", "--config", str(config_dir)])
    assert verified.exit_code == 0, verified.output
    assert ": intact;" in verified.stdout


@pytest.mark.parametrize("user", ["anna", "david"])
def test_audit_directory_that_cannot_be_created_at_start_refuses_every_login(
        config_dir: Path, users: Path, demo_material: Any, store: RedisStore, user: str) -> None:
    edit_broker_yaml(config_dir, set_audit(directory="trail/broker-1"))
    settings = load_settings(config_dir)  # checked: the directory can be created ...
    (config_dir / "trail").write_text("a regular file\n")  # ... but no longer when the broker starts
    app = create_app(settings, store=store, instance_id="test")
    sp = sp_of(app, demo_material)
    with browsing(app, (users / f"{user}.pem").read_text()) as browser:
        for attempt in range(2):  # no accidental recovery on the second try
            response = browser.get(sp.login_url(force_authn=attempt > 0))
            assert_refused_by_the_audit(response.status_code, response.headers, response.get_data(as_text=True))
    assert (config_dir / "trail").read_text() == "a regular file\n"


def _replace_audit_directory_by_a_file(config_dir: Path) -> None:
    """Tests run as root, so a chmod 0o500 directory would not stop the writes; a regular file where the
    directory was does, for root too."""
    audit_dir = config_dir / "audit"
    shutil.rmtree(audit_dir)
    audit_dir.write_text("not a directory\n")


def test_audit_directory_replaced_by_a_file_before_the_first_write_refuses_logins(
        config_dir: Path, users: Path, demo_material: Any, store: RedisStore) -> None:
    settings = load_settings(config_dir)
    _replace_audit_directory_by_a_file(config_dir)
    app = create_app(settings, store=store, instance_id="test")  # its configuration_loaded cannot be written
    sp = sp_of(app, demo_material)
    with browsing(app, (users / "anna.pem").read_text()) as browser:
        response = browser.get(sp.login_url())
    assert_refused_by_the_audit(response.status_code, response.headers, response.get_data(as_text=True))


def test_audit_directory_replaced_by_a_file_after_start_refuses_logins(config_dir: Path, users: Path,
                                                                       demo_material: Any, store: RedisStore) -> None:
    """The broker has started its chain (configuration_loaded); then its directory is gone. Records written on
    to the open, now nameless, file would vanish with the process: no reviewer could ever read them."""
    app = build_app(config_dir, store)
    sp = sp_of(app, demo_material)
    assert [e["event"] for e in audit_lines(config_dir, system=True)].count("configuration_loaded") == 1
    _replace_audit_directory_by_a_file(config_dir)
    with browsing(app, (users / "anna.pem").read_text()) as browser:
        response = browser.get(sp.login_url())
    assert_refused_by_the_audit(response.status_code, response.headers, response.get_data(as_text=True))


def test_readyz_sees_an_audit_directory_gone_before_a_user_is_refused(config_dir: Path, store: RedisStore) -> None:
    """An idle replica whose audit directory is replaced: /readyz says so at once (it repeated the last write's
    result, so a user's login had to fail first), and without writing a record."""
    client = build_app(config_dir, store).test_client()
    assert client.get("/readyz").status_code == 200

    _replace_audit_directory_by_a_file(config_dir)
    ready = client.get("/readyz")

    assert ready.status_code == 503
    assert ready.get_json()["checks"]["session_store"] == "ok"
    assert ready.get_json()["checks"]["audit"] == "audit_unavailable"



@pytest.mark.parametrize("error", [pytest.param(errno.EACCES, id="permission-denied"),
                                   pytest.param(errno.EIO, id="io-error")])
def test_readyz_is_503_while_the_audit_directory_cannot_be_looked_at(
        config_dir: Path, store: RedisStore, monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    """The audit directory's parent made unreadable for the broker's user (a volume remounted, a chmod 0700 by
    root), or the disk failing: a login fails closed with audit_unavailable, and /readyz must say so with its
    503 JSON, not answer the load balancer with a 500 error page."""
    client = build_app(config_dir, store).test_client()
    assert client.get("/readyz").status_code == 200
    audit_dir = config_dir / "audit"
    real_stat, real_open = os.stat, os.open

    def refused(path: Any) -> bool:
        return isinstance(path, str | Path) and audit_dir in (Path(path), Path(path).parent)

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if refused(path):
            raise OSError(error, os.strerror(error), str(path))
        return real_stat(path, *args, **kwargs)

    def open_(path: Any, *args: Any, **kwargs: Any) -> int:
        if refused(path):
            raise OSError(error, os.strerror(error), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "open", open_)
    ready = client.get("/readyz")

    assert ready.status_code == 503
    assert ready.get_json() == {"status": "unavailable",
                                "checks": {"session_store": "ok", "audit": "audit_unavailable"}}


def test_readyz_rotates_past_an_audit_file_removed_while_idle(config_dir: Path, store: RedisStore) -> None:
    """The open file deleted (a clean-up job) while the directory works: the probe's checkpoint starts a new file
    and records the loss, and the replica stays ready."""
    client = build_app(config_dir, store).test_client()
    for path in (config_dir / "audit").glob("*.jsonl"):
        if ".checkpoints." not in path.name:
            path.unlink()

    assert client.get("/readyz").status_code == 200
    assert "audit_file_abandoned" in [e["event"] for e in audit_lines(config_dir, system=True)]
    assert client.get("/readyz").status_code == 200


def test_audit_directory_under_a_regular_file_is_a_config_issue(config_dir: Path) -> None:
    blocker = config_dir / "not-a-directory"
    blocker.write_text("a regular file\n")
    edit_broker_yaml(config_dir, set_audit(directory=str(blocker / "audit")))
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir)
    issues = [i for i in caught.value.issues if i.key == "audit.directory"]
    assert len(issues) == 1, caught.value.issues
    assert len(caught.value.issues) == 1, caught.value.issues
    assert issues[0].file == "broker.yaml"
    assert issues[0].line is not None
    assert "not a directory" in issues[0].message

    checked = CliRunner().invoke(main, ["config", "check", str(config_dir)])
    assert checked.exit_code == 1
    assert "audit.directory" in checked.stderr


def test_audit_directory_that_is_a_regular_file_is_a_config_issue(config_dir: Path) -> None:
    edit_broker_yaml(config_dir, set_audit(directory="broker.yaml"))
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir)
    assert [i.key for i in caught.value.issues] == ["audit.directory"]
    assert "exists and is not a directory" in caught.value.issues[0].message


# --- durability order -----------------------------------------------------------------------


def test_assertion_issued_is_in_the_audit_trail_before_the_response_leaves(config_dir: Path, users: Path,
                                                                           demo_material: Any,
                                                                           store: RedisStore) -> None:
    app = build_app(config_dir, store)
    sp = sp_of(app, demo_material)
    seen_at_response_time: list[list[dict[str, object]]] = []

    @app.after_request
    def snapshot(response: Response) -> Response:
        # runs after the view has produced its response and before the server sends it
        seen_at_response_time.append(audit_lines(config_dir))
        return response

    with browsing(app, (users / "anna.pem").read_text()) as browser:
        response = browser.get(sp.login_url())
    assert response.status_code == 200
    result = sp.accept(saml_response_form(response)[1]["SAMLResponse"])
    (transaction,) = result.attributes["transactionIdentifier"]
    assert len(seen_at_response_time) == 1
    issued = [e for e in seen_at_response_time[0] if e["event"] == "assertion_issued"]
    assert [e["correlation_id"] for e in issued] == [transaction]


# --- privacy of the audit trail ----------------------------------------------------------------


def _login_twice(config_dir: Path, users: Path, demo_material: Any, store: RedisStore) -> dict[str, str]:
    """Bo (personnummer) logs in twice; the broker shuts down cleanly (final checkpoint). Every file of the
    audit directory, by name, as text."""
    app = build_app(config_dir, store)
    sp = sp_of(app, demo_material)
    with browsing(app, (users / "bo.pem").read_text()) as browser:
        for force in (False, True):
            response = browser.get(sp.login_url(force_authn=force))
            assert response.status_code == 200
            result = sp.accept(saml_response_form(response)[1]["SAMLResponse"])
            assert result.attributes["personalIdentityNumber"] == [BO_PNR]  # released to the SP, not audited
    app.extensions["broker"].audit.close()
    files = {str(f.relative_to(config_dir / "audit")): f.read_text(encoding="utf-8")
             for f in sorted((config_dir / "audit").rglob("*")) if f.is_file()}
    suffixes = {name.split(".", 3)[-1] for name in files}
    assert suffixes == {"000001.jsonl", "checkpoints.jsonl", "closed"}, files.keys()  # what was checked
    return files


def _records(files: dict[str, str]) -> list[dict[str, Any]]:
    """Every JSON line of every file (records, the checkpoint index, the closing marker)."""
    return [json.loads(line) for text in files.values() for line in text.splitlines()]


def _values(node: object) -> Iterator[object]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value)
    else:
        yield node


def test_personnummer_is_pseudonymised_in_the_audit(config_dir: Path, users: Path, demo_material: Any,
                                                    store: RedisStore) -> None:
    files = _login_twice(config_dir, users, demo_material, store)
    for name, text in files.items():
        assert BO_PNR not in text, name
        assert BO_PNR[2:] not in text, name  # the ten-digit form
        assert f"{BO_PNR[:8]}-{BO_PNR[8:]}" not in text, name
    events = audit_lines(config_dir)
    accepted = [e for e in events if e["event"] == "certificate_accepted"]
    issued = [e for e in events if e["event"] == "assertion_issued"]
    assert len(accepted) == 2
    assert len(issued) == 2
    users_seen = {e["user"] for e in accepted + issued}
    assert len(users_seen) == 1
    (pseudonym,) = users_seen
    assert re.fullmatch(r"pnr:[0-9a-f]{32}", str(pseudonym))
    key = load_settings(config_dir).broker.audit.pseudonym_key.value
    assert pseudonym == Pseudonymiser(key).personnummer(BO_PNR)  # keyed: HMAC with the configured secret
    assert pseudonym != Pseudonymiser(b"another key of at least 32 bytes").personnummer(BO_PNR)
    assert {e["user_kind"] for e in accepted + issued} == {"personnummer"}


def test_audit_holds_no_certificate_and_no_attribute_values(config_dir: Path, users: Path, demo_material: Any,
                                                            store: RedisStore) -> None:
    files = _login_twice(config_dir, users, demo_material, store)
    bo_der = base64.b64encode(x509.load_pem_x509_certificate((users / "bo.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER)).decode()
    for name, text in files.items():
        assert "-----BEGIN" not in text, name
        assert "Demosson" not in text, name  # surname, displayName and the certificate's CN
        assert bo_der[120:180] not in text, name  # nor Bo's certificate, DER in base64
    found = _records(files)
    for record in found:
        if record.get("event") == "audit_checkpoint":  # the one base64 value: an Ed25519 signature, nothing more
            assert len(base64.b64decode(record["data"].pop("signature"), validate=True)) == 64
    assert "MII" not in json.dumps(found)  # no base64 DER anywhere else
    values = list(_values(found))
    assert "Bo" not in values
    issued = [e for e in audit_lines(config_dir) if e["event"] == "assertion_issued"]
    assert len(issued) == 2
    for event in issued:
        data = event["data"]
        assert isinstance(data, dict)
        names = data["attributes"]
        assert "givenName" in names  # released attributes appear by name only
        assert "personalIdentityNumber" in names


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("clear", re.compile(r"192\.0\.2\.10"), id="clear"),
        pytest.param("truncated", re.compile(r"192\.0\.2\.0/24"), id="truncated"),
        pytest.param("pseudonymised", re.compile(r"ip:[0-9a-f]{16}"), id="pseudonymised"),
    ],
)
def test_client_address_is_recorded_as_configured(config_dir: Path, users: Path, demo_material: Any,
                                                  store: RedisStore, mode: str, expected: re.Pattern[str]) -> None:
    edit_broker_yaml(config_dir, set_audit(client_address=mode))
    files = _login_twice(config_dir, users, demo_material, store)
    events = audit_lines(config_dir)
    assert len(events) == 8  # two logins of four events, each naming the client
    clients = {e.get("client") for e in events}
    assert len(clients) == 1, clients  # the same address always renders the same way
    (client,) = clients
    assert expected.fullmatch(str(client))
    if mode != "clear":
        assert not [name for name, text in files.items() if "192.0.2.10" in text]
