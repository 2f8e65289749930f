"""The broker's own side in readiness (broker.readiness.broker_keys): its signing and decryption certificates
and the shared session store (a real Redis, and a Redis URL on a loopback port where nothing listens)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from redis.exceptions import AskError, ClusterDownError, TryAgainError

from broker.clock import FixedClock
from broker.config.loader import Settings
from broker.demo.certificates import CertificateAuthority, write_key, write_pem
from broker.readiness.model import Section
from broker.readiness.runner import ReadinessOptions, run
from broker.session.redis_client import Connector, RedisClient
from broker.session.store import RedisStore
from tests.factories.ports import free_port
from tests.factories.redis_server import RedisServer
from tests.unit.readiness.configs import DAY, load, now_utc, only, set_readiness

NOW = now_utc()


def replace_key(config_dir: Path, stem: str, name: str, days_left: int, key: str = "ec256") -> CertificateAuthority:
    """keys/<stem>.key and .crt replaced by a new key whose certificate ends ``days_left`` days from now."""
    start = NOW - 400 * DAY
    issued = CertificateAuthority.root(name, NOW, key=key, valid_from=start,
                                       valid_days=(NOW + days_left * DAY - start) // DAY)
    write_key(config_dir / "keys" / f"{stem}.key", issued.key)
    write_pem(config_dir / "keys" / f"{stem}.crt", issued.certificate)
    return issued


def broker_section(settings: Settings, store: RedisStore | None = None, now: dt.datetime = NOW) -> Section:
    return run(settings, FixedClock(now), ReadinessOptions(network=False), store=store).broker


def test_example_keys_pass_and_no_store_is_not_checked(config_dir: Path) -> None:
    set_readiness(config_dir)
    result = broker_section(load(config_dir))

    assert [(c.id, c.status) for c in result.checks] == [
        ("broker.idp_signing", "pass"), ("broker.sp_signing", "pass"), ("broker.sp_decryption", "pass"),
        ("broker.sp_metadata", "pass"), ("broker.sp_endpoints", "pass"), ("broker.secret_permissions", "pass"),
        ("broker.session_cookie", "pass")]
    assert only(result, "broker.idp_signing").subject == "Demo Broker IdP signing"
    assert only(result, "broker.sp_metadata").title == "demo-sp: metadata has no validUntil"


def test_an_sp_endpoint_without_tls_warns(config_dir: Path) -> None:
    """The browser posts assertions to the ACS: over plain http anyone on the way reads and replays them."""
    set_readiness(config_dir)
    metadata = config_dir / "metadata" / "demo-sp.xml"
    text = metadata.read_text(encoding="utf-8")
    acs = 'Location="https://localhost:8443/demo-sp/acs"'
    assert acs in text
    metadata.write_text(text.replace(acs, acs.replace("https://", "http://")), encoding="utf-8")

    check = only(broker_section(load(config_dir)), "broker.sp_endpoints")

    assert (check.status, check.title, check.subject) == ("warn", "demo-sp: endpoints without TLS", "demo-sp")
    assert check.evidence.endswith("demo-sp.xml: http://localhost:8443/demo-sp/acs")


def test_a_session_cookie_without_the_host_prefix_warns(config_dir: Path) -> None:
    """RFC 6265bis §4.1.3.2: without __Host-, a sibling host can plant a session (docs/security.md, Cookies)."""
    set_readiness(config_dir)
    broker_yaml = config_dir / "broker.yaml"
    broker_yaml.write_text(broker_yaml.read_text(encoding="utf-8").replace(
        "cookie_name: __Host-broker_session", "cookie_name: broker_session"), encoding="utf-8")

    check = only(broker_section(load(config_dir)), "broker.session_cookie")

    assert (check.status, check.title) == ("warn", "session cookie can be planted")
    assert check.evidence.startswith("broker_session: without the __Host- prefix")
    assert check.fix == "Set session.cookie_name to __Host-broker_session (users log in once more after the change)."


@pytest.mark.parametrize(("mode", "readable_by"), [
    pytest.param(0o640, "its group", id="group-readable"),
    pytest.param(0o644, "its group and all users", id="world-readable"),
])
def test_a_key_others_can_read_warns(config_dir: Path, mode: int, readable_by: str) -> None:
    set_readiness(config_dir)
    settings = load(config_dir)
    key = settings.broker.idp.signing.key.path
    key.chmod(mode)
    result = broker_section(settings)

    (check,) = [c for c in result.checks if c.id == "broker.secret_permissions"]
    assert (check.status, check.title) == ("warn", "secret file readable by others")
    assert check.evidence == f"idp.signing.key: {key} has mode {mode:04o}: readable by {readable_by}"
    assert check.fix is not None
    assert check.fix.startswith(f"chmod 600 {key}")


def _sp_metadata_valid_until(config_dir: Path, until: dt.datetime) -> None:
    """The demo SP's metadata file with a validUntil on its EntityDescriptor."""
    path = config_dir / "metadata" / "demo-sp.xml"
    text = path.read_text()
    stamp = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(text.replace("<ns0:EntityDescriptor ", f'<ns0:EntityDescriptor validUntil="{stamp}" ', 1))


@pytest.mark.parametrize(("left", "status", "title"), [
    pytest.param(90 * DAY, "pass", "demo-sp: metadata valid", id="valid"),
    pytest.param(5 * DAY, "warn", "demo-sp: metadata expires soon", id="expires-within-the-window"),
    pytest.param(-2 * DAY, "fail", "demo-sp: metadata expired", id="expired"),
])
def test_sp_metadata_valid_until(config_dir: Path, left: dt.timedelta, status: str, title: str) -> None:
    """SAML Metadata §2.3.1: the broker goes on using an expired SP metadata file (regional IT configured it), but
    readiness says it is stale, before the day and after it."""
    until = (NOW + left).replace(microsecond=0)
    _sp_metadata_valid_until(config_dir, until)
    set_readiness(config_dir)

    check = only(broker_section(load(config_dir)), "broker.sp_metadata")

    assert (check.status, check.title, check.subject, check.expires) == (status, title, "demo-sp", until)
    assert "demo-sp.xml" in check.evidence
    assert (check.fix is None) == (status == "pass")
    if status == "fail":
        assert "(2 days ago)" in check.evidence


def test_encrypting_for_an_sp_reports_its_encryption_certificate(config_dir: Path) -> None:
    """With encrypt_assertions the SP's encryption certificate is reported; an expired one only warns (metadata
    keys are containers: the key still works)."""
    start = NOW - 400 * DAY
    expired = CertificateAuthority.root("Demo SP encryption 2024", NOW, key="rsa2048", valid_from=start,
                                        valid_days=399)
    der = expired.certificate.public_bytes(serialization.Encoding.DER)
    path = config_dir / "metadata" / "demo-sp.xml"
    text = path.read_text()
    end = text.index("</ns0:KeyDescriptor>") + len("</ns0:KeyDescriptor>")
    path.write_text(text[:end] + '<ns0:KeyDescriptor use="encryption"><ns1:KeyInfo><ns1:X509Data><ns1:X509Certificate>'
                    f"{base64.b64encode(der).decode()}</ns1:X509Certificate></ns1:X509Data></ns1:KeyInfo>"
                    "</ns0:KeyDescriptor>" + text[end:])
    sp_file = config_dir / "service-providers" / "demo-sp.yaml"
    sp_file.write_text(sp_file.read_text() + "encrypt_assertions: true\n")
    set_readiness(config_dir)

    check = only(broker_section(load(config_dir)), "broker.sp_encryption_key")

    assert (check.status, check.title) == ("warn", "demo-sp: encryption certificate expired")
    assert check.subject is not None
    assert "Demo SP encryption 2024" in check.subject


@pytest.mark.parametrize(("days_left", "status", "title"), [
    (12, "warn", "IdP signing certificate expires soon"),
    (-3, "fail", "IdP signing certificate expired"),
])
def test_idp_signing_certificate_expiry(config_dir: Path, days_left: int, status: str, title: str) -> None:
    issued = replace_key(config_dir, "idp-signing", "Broker IdP signing 2025", days_left)
    set_readiness(config_dir)

    check = only(broker_section(load(config_dir)), "broker.idp_signing")

    assert (check.status, check.title, check.subject) == (status, title, "Broker IdP signing 2025")
    assert check.expires == issued.certificate.not_valid_after_utc
    assert check.fix is not None
    assert "SP" in check.fix


def test_sp_signing_and_decryption_expiry(config_dir: Path) -> None:
    replace_key(config_dir, "sp-signing", "Broker SP signing 2025", 20)
    replace_key(config_dir, "sp-encryption", "Broker SP encryption 2025", -1, key="rsa2048")  # RSA-OAEP
    set_readiness(config_dir)

    result = broker_section(load(config_dir))

    assert only(result, "broker.sp_signing").status == "warn"
    decryption = only(result, "broker.sp_decryption")
    assert (decryption.status, decryption.title) == ("fail", "SP decryption certificate expired")
    assert result.result == "fail"


def test_session_store_answering_passes(config_dir: Path, redis_url: str, redis_prefix: str) -> None:
    set_readiness(config_dir)
    check = only(broker_section(load(config_dir), RedisStore(redis_url, prefix=redis_prefix)), "broker.session_store")

    assert (check.status, check.title) == ("pass", "session store takes writes")


def test_session_store_down_fails(config_dir: Path) -> None:
    set_readiness(config_dir)
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)

    check = only(broker_section(load(config_dir), store), "broker.session_store")

    assert (check.status, check.title) == ("fail", "session store unreachable")
    assert "Redis write check (SET) failed" in check.evidence
    assert check.fix is not None
    assert "REDIS_URL" in check.fix


def _read_only(admin: redis.Redis) -> None:
    admin.replicaof("127.0.0.1", str(free_port()))  # a replica of nothing: a failover gone wrong


def _out_of_memory(admin: redis.Redis) -> None:
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)


@pytest.mark.parametrize(("refuse", "answer", "fix"), [
    pytest.param(_read_only, "read only replica", "A read only replica: point the broker at the primary",
                 id="read-only-replica"),
    pytest.param(_out_of_memory, "used memory > 'maxmemory'", "Used memory over maxmemory: give it more memory",
                 id="maxmemory-under-noeviction"),
])
def test_session_store_that_answers_but_refuses_writes_fails_as_such(
        config_dir: Path, private_redis: RedisServer, refuse: Callable[[redis.Redis], None], answer: str,
        fix: str) -> None:
    """The check writes a key (what every login needs): a server that answers but refuses the write is reachable,
    and the operator is told so (the fix is Redis's memory or role, not its address)."""
    set_readiness(config_dir)
    store = RedisStore(private_redis.url, prefix="test:", socket_timeout=0.5)
    refuse(redis.Redis.from_url(private_redis.url))

    check = only(broker_section(load(config_dir), store), "broker.session_store")

    assert (check.status, check.title) == ("fail", "session store refuses writes")
    assert "Redis write check (SET) failed" in check.evidence
    assert answer in check.evidence
    assert check.fix is not None
    assert fix in check.fix


class _ClusterReplying:
    """A Redis Cluster client whose write meets an error reply about the cluster's state, not about the broker's
    command: CLUSTERDOWN (no primary serves the broker's slot), TRYAGAIN or ASK (the slot is being migrated)."""

    def __init__(self, error: redis.ResponseError) -> None:
        self.error = error

    def set(self, *args: object, **kwargs: object) -> None:
        raise self.error


@pytest.mark.parametrize("error", [
    pytest.param(ClusterDownError("The cluster is down"), id="clusterdown"),
    pytest.param(TryAgainError("Multiple keys request during rehashing of slot"), id="tryagain"),
    pytest.param(AskError("1234 127.0.0.1:7001"), id="ask"),
])
def test_session_store_whose_cluster_cannot_serve_the_slot_is_not_said_to_refuse_writes(
        config_dir: Path, error: redis.ResponseError) -> None:
    """A cluster that cannot serve the broker's slot now answers with an error reply, but the fix is the cluster's
    state (its primaries, a migration), not Redis's memory, role or ACL that "refuses writes" names."""
    set_readiness(config_dir)
    store = RedisStore(connector=Connector(lambda: cast(RedisClient, _ClusterReplying(error)), cluster=True),
                       prefix="test:")

    check = only(broker_section(load(config_dir), store), "broker.session_store")

    assert (check.status, check.title) == ("fail", "session store unreachable")
    assert "Redis write check (SET) failed" in check.evidence
