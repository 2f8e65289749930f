"""The app under test, wired to a real Redis, and a real pysaml2 SP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from broker.app import create_app
from broker.config.loader import Settings, load_settings
from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from tests.factories.authnrequests import redirect_message
from tests.factories.idp import make_idp
from tests.factories.saml import BASE_URL, Browser, make_sp


@pytest.fixture
def settings(config_dir: Path) -> Settings:
    return load_settings(config_dir)


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> RedisStore:
    return RedisStore(redis_url, prefix=redis_prefix)


@pytest.fixture
def app(settings: Settings, store: RedisStore) -> Flask:
    return create_app(settings, store=store, instance_id="test")


@pytest.fixture
def sp(app: Flask, settings: Settings, demo_material) -> DemoSp:  # type: ignore[no-untyped-def]
    metadata = app.extensions["broker"].metadata.document()
    return make_sp(demo_material.root, metadata, settings.broker.idp.entity_id)


@pytest.fixture
def idp(app: Flask, demo_material) -> DemoIdp:  # type: ignore[no-untyped-def]
    """Kommun C's own IdP (pysaml2), knowing the broker's SP metadata."""
    return make_idp(demo_material.root, app.extensions["broker"].sp_metadata.document())


@pytest.fixture
def users(demo_material) -> Path:  # type: ignore[no-untyped-def]
    return Path(demo_material.users)


@pytest.fixture
def browser(app: Flask, users: Path) -> Iterator[Browser]:
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        yield Browser(client, (users / "anna.pem").read_text())


def audit_lines(config_dir: Path, *, system: bool = False) -> list[dict[str, object]]:
    """The audit records of the logins (without the chain's own records and configuration_loaded, unless
    ``system``), in the order written."""
    from broker.audit.query import SYSTEM_EVENTS, records

    found = [{k: v for k, v in r.items() if k != "_chain"} for r in records([config_dir / "audit"])]
    if system:
        return found
    return [r for r in found if r["event"] not in SYSTEM_EVENTS and r["event"] != "configuration_loaded"]


Event = tuple[str, str, str | None]  # (event, outcome, reason)
# what a successful login through a municipal IdP records, in order
FEDERATED_LOGIN: list[Event] = [
    ("login_started", "info", None),
    ("upstream_authn_requested", "info", None),
    ("upstream_authn_result", "success", None),
    ("assertion_issued", "success", None),
]


def request_id_of(sso_url: str) -> str:
    """The ID of the AuthnRequest an HTTP-Redirect URL carries."""
    request_id = redirect_message(sso_url, "SAMLRequest").root.get("ID")
    assert request_id
    return request_id


def correlation_of(config_dir: Path, request_id: str) -> str:
    """The correlation ID of the login that the SP's AuthnRequest ``request_id`` started."""
    found = [e["correlation_id"] for e in audit_lines(config_dir)
             if e["event"] == "login_started" and e["data"]["request_id"] == request_id]  # type: ignore[index]
    assert len(found) == 1, found
    return str(found[0])


def events_of(config_dir: Path, correlation_id: str) -> list[Event]:
    """(event, outcome, reason) of the audit records of one login, in the order written."""
    return [(str(e["event"]), str(e["outcome"]), e.get("reason"))  # type: ignore[misc]
            for e in audit_lines(config_dir) if e.get("correlation_id") == correlation_id]
