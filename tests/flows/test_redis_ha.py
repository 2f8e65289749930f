"""Redis high availability under load (docs/redis.md): the broker on a Sentinel-managed Redis, configured in
broker.yaml like production, while a stream of complete certificate logins runs and the primary is killed.

A real primary, one replica and three sentinels on loopback (quorum 2, down-after-milliseconds 1000,
failover-timeout 2000: tests/factories/redis_sentinel.py). What must hold:

* fail closed, never a crash: every answer is a SAML Response the SP accepts, or the 503
  ``session_store_unavailable`` page with a reference ID (no 500, no traceback, no other page);
* no answer takes long: each request is bounded by the timeouts, also while no primary is reachable;
* the broker recovers by itself within :data:`RECOVERY_BOUND` of the kill (2.2-2.6 s measured);
* an SSO session written, and replicated, before the kill still serves a later request without a
  certificate (DESIGN flow 4: SSO reuse).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from werkzeug.test import TestResponse

from broker.app import create_app
from broker.config.loader import load_settings
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from tests.factories.redis_sentinel import SentinelGroup, secret_file
from tests.factories.saml import BASE_URL, Browser, make_sp, saml_response_form
from tests.flows.conftest import audit_lines

RECOVERY_BOUND = 15.0  # seconds from kill -9 of the primary to the next successful login
REQUEST_BOUND = 5.0  # seconds any single request may take, outage or not
STREAM_LIMIT = 40.0  # seconds the whole stream may run before the test gives up
REFID = re.compile(r'class="refid"[^>]*>([0-9A-F]{4}(?:-[0-9A-F]{4}){3})<')
TRACEBACK_MARKERS = ("Traceback", 'File "', "redis.exceptions", "ConnectionError")


@dataclass(frozen=True)
class Attempt:
    """One complete login of the stream: when it started (monotonic), how long it took, what came back."""

    started: float
    elapsed: float
    status: int
    reason: str | None

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


def use_sentinel(config_dir: Path, group: SentinelGroup) -> None:
    """broker.yaml's ``redis:`` section for ``group``, with the passwords in files next to the other keys."""
    secret_file(config_dir / "keys", "redis-password", group.password)
    secret_file(config_dir / "keys", "sentinel-password", group.sentinel_password)
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["redis"] = {
        "sentinel": {"master": group.service, "addresses": group.sentinel_addresses,
                     "password_file": "keys/sentinel-password", "socket_timeout": "200ms"},
        "password_file": "keys/redis-password",
        "key_prefix": "ha-test:",
        "socket_timeout": "500ms",
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@contextmanager
def browsing(app: Flask, certificate_pem: str | None) -> Iterator[Browser]:
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        yield Browser(client, certificate_pem)


def sp_of(app: Flask, demo_material: Any) -> DemoSp:
    services = app.extensions["broker"]
    return make_sp(demo_material.root, services.metadata.document(), services.settings.broker.idp.entity_id)


def assert_dependency_page(response: TestResponse) -> None:
    """The defined 503 page of a Redis outage: its reason code, a reference ID, nothing of the internals."""
    body = response.get_data(as_text=True)
    assert response.headers["X-Broker-Reason"] == "session_store_unavailable"
    assert REFID.search(body), "the 503 page shows no reference ID"
    assert "SAMLResponse" not in body
    for marker in TRACEBACK_MARKERS:
        assert marker not in body, f"the 503 page leaks {marker!r}"


class LoginStream(threading.Thread):
    """Complete certificate logins one after another, each in a fresh browser (no session cookie): AuthnRequest
    from the demo SP, the broker's answer, and the SP's validation of the Response."""

    def __init__(self, app: Flask, sp: DemoSp, certificate_pem: str) -> None:
        super().__init__(name="login-stream", daemon=True)
        self.app, self.sp, self.certificate_pem = app, sp, certificate_pem
        self.attempts: list[Attempt] = []
        self.failures: list[BaseException] = []
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + STREAM_LIMIT
        try:
            while not self.halt.is_set() and time.monotonic() < deadline:
                self.attempts.append(self._login())
                time.sleep(0.02)
        except BaseException as exc:  # reported by the test, in its thread
            self.failures.append(exc)

    def _login(self) -> Attempt:
        url = self.sp.login_url()
        with browsing(self.app, self.certificate_pem) as browser:
            started = time.monotonic()
            response = browser.get(url)
            elapsed = time.monotonic() - started
        if response.status_code == 200:
            result = self.sp.accept(saml_response_form(response)[1]["SAMLResponse"])
            assert result.attributes["employeeHsaId"] == ["SE2120001009-anna"]
        elif response.status_code == 503:
            assert_dependency_page(response)
        else:
            raise AssertionError(f"status {response.status_code} ({response.headers.get('X-Broker-Reason')}) "
                                 f"during the failover")
        return Attempt(started, elapsed, response.status_code, response.headers.get("X-Broker-Reason"))

    def successes_after(self, moment: float) -> list[Attempt]:
        return [a for a in list(self.attempts) if a.status == 200 and a.started > moment]


def wait_for(condition: Any, what: str, timeout: float, stream: LoginStream) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert not stream.failures, f"the login stream failed: {stream.failures[0]!r}"
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_logins_fail_closed_and_recover_when_the_redis_primary_is_killed(
        config_dir: Path, users: Path, demo_material: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # the broker must use broker.yaml's Sentinel section
    anna = (users / "anna.pem").read_text()
    with SentinelGroup(tmp_path / "redis") as group:
        use_sentinel(config_dir, group)
        settings = load_settings(config_dir)
        assert settings.broker.redis is not None
        assert settings.broker.redis.deployment == "sentinel"
        app = create_app(settings, instance_id="test")  # the store as `broker serve` makes it
        assert isinstance(app.extensions["broker_runtime"].store, RedisStore)

        with browsing(app, anna) as keeper:
            # an SSO session, on the primary and (WAIT) on the replica
            sso_sp = sp_of(app, demo_material)
            first = keeper.get(sso_sp.login_url())
            assert first.status_code == 200
            sso_sp.accept(saml_response_form(first)[1]["SAMLResponse"])
            group.replicated()

            stream = LoginStream(app, sp_of(app, demo_material), anna)
            stream.start()
            try:
                wait_for(lambda: len(stream.successes_after(0)) >= 3, "three logins before the kill", 20, stream)
                old = group.kill_primary()
                killed = time.monotonic()
                wait_for(lambda: len(stream.successes_after(killed)) >= 3, "three logins after the kill",
                         RECOVERY_BOUND + 10, stream)
            finally:
                stream.halt.set()
                stream.join(timeout=30)
            assert not stream.failures, f"the login stream failed: {stream.failures[0]!r}"

            # SSO reuse after the failover: no certificate, the session from before the kill answers
            keeper.certificate_pem = None
            request_url = sso_sp.login_url()
            reused = keeper.get(request_url)
            assert reused.status_code == 200, reused.headers.get("X-Broker-Reason")
            result = sso_sp.accept(saml_response_form(reused)[1]["SAMLResponse"])
            assert result.attributes["employeeHsaId"] == ["SE2120001009-anna"]
        assert group.primary_port() not in (None, old.port)

    attempts = stream.attempts
    outage = [a for a in attempts if a.status == 503]
    recovered = min(a.ended for a in attempts if a.status == 200 and a.started > killed) - killed
    assert {a.status for a in attempts} == {200, 503}
    assert {a.reason for a in outage} == {"session_store_unavailable"}
    assert recovered < RECOVERY_BOUND
    assert max(a.elapsed for a in attempts) < REQUEST_BOUND
    first_back = min(a.started for a in attempts if a.status == 200 and a.started > killed)
    assert not [a for a in outage if a.started > first_back], "503s after the broker had recovered"
    assert "session_reused" in [e["event"] for e in audit_lines(config_dir)]
    print(f"\nprimary killed: {len(outage)} logins answered 503 (slowest {max(a.elapsed for a in outage) * 1000:.0f} "
          f"ms), first login completed again {recovered:.2f} s after the kill; {len(attempts)} logins in all, "
          f"slowest {max(a.elapsed for a in attempts) * 1000:.0f} ms")
