"""broker.yaml's ``redis:`` section: one server (url), Sentinel or Cluster, exactly one; secrets in files only.

The example configuration keeps Redis commented out (the demo runs on its embedded store); each test puts in
a ``redis:`` section of its own, in place of those comments.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from broker.config.loader import load_settings
from broker.config.redis_schema import HostPort, RedisConfig
from broker.config.values import Duration
from broker.session.redis_client import RedisChoiceRefused, configured, tls_options
from tests.factories.redis_sentinel import RedisTls
from tests.unit.config.editing import BROKER, Expected, assert_issues, load_issues, replacing, write_text

EXAMPLE_COMMENT = "# redis:\n#   url: redis://127.0.0.1:6379/0"


def with_redis(config_dir: Path, section: str) -> None:
    """``section`` (YAML starting ``redis:``) in place of the example's commented-out one, and two passwords."""
    write_text(config_dir / "keys" / "redis-password", secrets.token_hex(32))
    write_text(config_dir / "keys" / "sentinel-password", secrets.token_hex(32))
    replacing(BROKER, EXAMPLE_COMMENT, section.strip() + "\n#")(config_dir)


SENTINEL = """
redis:
  sentinel:
    master: broker
    addresses: [10.0.0.11:26379, "10.0.0.12:26379", "[fd00::13]:26379"]
    password_file: keys/sentinel-password
    socket_timeout: 300ms
  password_file: keys/redis-password
  key_prefix: "broker:"
"""


def test_a_sentinel_deployment_loads(config_dir: Path) -> None:
    with_redis(config_dir, SENTINEL)

    redis = load_settings(config_dir).broker.redis

    assert redis is not None
    assert redis.deployment == "sentinel"
    assert redis.sentinel is not None
    assert redis.sentinel.master == "broker"
    assert redis.sentinel.addresses == (HostPort("10.0.0.11", 26379), HostPort("10.0.0.12", 26379),
                                        HostPort("fd00::13", 26379))
    assert [str(a) for a in redis.sentinel.addresses] == ["10.0.0.11:26379", "10.0.0.12:26379", "[fd00::13]:26379"]
    assert redis.sentinel.socket_timeout == Duration(0.3)
    assert redis.sentinel.password_file is not None
    assert redis.password_file is not None
    assert redis.sentinel.password_file.value != redis.password_file.value
    assert "keys/redis-password" in repr(redis)
    assert redis.password_file.value.decode() not in repr(redis)  # secrets never printed


def test_a_cluster_deployment_loads(config_dir: Path) -> None:
    with_redis(config_dir, """
        redis:
          cluster:
            addresses: [10.0.0.21:6379, 10.0.0.22:6379]
          username: broker
          password_file: keys/redis-password
    """.replace("\n        ", "\n"))

    redis = load_settings(config_dir).broker.redis

    assert redis is not None
    assert redis.deployment == "cluster"
    assert redis.cluster is not None
    assert redis.cluster.addresses == (HostPort("10.0.0.21", 6379), HostPort("10.0.0.22", 6379))
    assert redis.username == "broker"


def test_one_server_with_a_password_file_loads(config_dir: Path) -> None:
    with_redis(config_dir, "redis:\n  url: rediss://redis.region.example.se:6380/2\n"
                           "  password_file: keys/redis-password\n")

    redis = load_settings(config_dir).broker.redis

    assert redis is not None
    assert redis.deployment == "url"
    assert redis.url == "rediss://redis.region.example.se:6380/2"


@pytest.mark.parametrize(
    ("section", "line", "key", "fragment"),
    [
        pytest.param("redis:\n  url: redis://10.0.0.5:6379/0\n  sentinel:\n    master: broker\n"
                     "    addresses: [10.0.0.11:26379]\n",
                     "sentinel:", "redis.sentinel", "url and sentinel are mutually exclusive", id="url-and-sentinel"),
        pytest.param("redis:\n  sentinel:\n    master: broker\n    addresses: [10.0.0.11:26379]\n"
                     "  cluster:\n    addresses: [10.0.0.21:6379]\n",
                     "cluster:", "redis.cluster", "sentinel and cluster are mutually exclusive",
                     id="sentinel-and-cluster"),
        pytest.param("redis:\n  key_prefix: 'broker:'\n", "redis:", "redis",
                     "one of url, sentinel or cluster is required", id="no-deployment"),
        pytest.param("redis:\n  url: redis://:hunter2@10.0.0.5:6379/0\n", "url: redis://", "redis.url",
                     "put it in password_file", id="password-in-the-url"),
        pytest.param("redis:\n  url: unix:///run/redis.sock?password=hunter2\n", "url: unix://", "redis.url",
                     "put it in password_file", id="password-in-the-query"),
        pytest.param("redis:\n  url: 'redis://127.0.0.1:abc/0'\n", "url: '", "redis.url",
                     "expected a port from 1 to 65535 after the host, got 'redis://127.0.0.1:abc/0'", id="port-abc"),
        pytest.param("redis:\n  url: 'redis://10.0.0.5:0/0'\n", "url: '", "redis.url",
                     "expected a port from 1 to 65535", id="port-0"),
        pytest.param("redis:\n  url: 'redis://'\n", "url: '", "redis.url",
                     "expected a host: redis://host:port/db, got 'redis://'", id="no-host"),
        pytest.param("redis:\n  url: 'redis://[::1:6379/0'\n", "url: '", "redis.url",
                     "expected a host: redis://host:port/db (IPv6 as [::1]), got 'redis://[::1:6379/0'",
                     id="unclosed-ipv6-bracket"),
        pytest.param("redis:\n  url: 'redis://10.0.0.5:6379/0?socket_timeout=abc'\n", "url: '", "redis.url",
                     "query parameter 'socket_timeout' is not used: only db is", id="query-parameter"),
        pytest.param("redis:\n  url: 'redis://10.0.0.5:6379/zero'\n", "url: '", "redis.url",
                     "expected a database number from 0 to 2147483647 (e.g. /0), got 'redis://10.0.0.5:6379/zero'",
                     id="database-not-a-number"),
        pytest.param("redis:\n  url: 'redis://10.0.0.5:6379/0?db=1'\n", "url: '", "redis.url",
                     "expected one database number", id="two-database-numbers"),
        pytest.param("redis:\n  url: 'unix://'\n", "url: '", "redis.url", "expected unix:///path/to/redis.sock",
                     id="unix-without-a-path"),
        pytest.param("redis:\n  sentinel:\n    master: broker\n    addresses: []\n", "addresses:",
                     "redis.sentinel.addresses", "at least 1 item", id="no-sentinels"),
        pytest.param("redis:\n  sentinel:\n    master: broker\n    addresses: [10.0.0.11]\n", "addresses:",
                     "redis.sentinel.addresses[0]", "expected host:port", id="sentinel-without-port"),
        pytest.param("redis:\n  sentinel:\n    master: broker\n    addresses: [10.0.0.11:70000]\n", "addresses:",
                     "redis.sentinel.addresses[0]", "expected host:port", id="port-out-of-range"),
        pytest.param("redis:\n  sentinel:\n    master: broker\n    addresses: [a:26379, b:26379, a:26379]\n",
                     "addresses:", "redis.sentinel.addresses[2]", "listed twice", id="sentinel-twice"),
        pytest.param("redis:\n  sentinel:\n    master: my master\n    addresses: [10.0.0.11:26379]\n",
                     "master:", "redis.sentinel.master", "letters, digits", id="service-name-with-a-space"),
        pytest.param("redis:\n  sentinel:\n    master: broker\n    addresses: [10.0.0.11:26379]\n"
                     "    password: hunter2\n", "password:", "redis.sentinel.password",
                     "unknown key (allowed here: master, addresses, password_file", id="inline-sentinel-password"),
        pytest.param("redis:\n  url: redis://10.0.0.5:6379/0\n  password: hunter2\n", "password:",
                     "redis.password", "did you mean 'password_file'?", id="inline-password"),
        pytest.param("redis:\n  cluster: true\n", "cluster:", "redis.cluster", "expected a mapping",
                     id="cluster-flag-instead-of-nodes"),
        pytest.param("redis:\n  cluster:\n    addresses: [10.0.0.21:6379]\n  key_prefix: '{broker}:'\n",
                     "key_prefix:", "redis.key_prefix", "the broker makes the prefix the hash tag",
                     id="hash-tag-in-a-cluster-prefix"),
        pytest.param("redis:\n  url: redis://10.0.0.5:6379/0\n  password_file: keys/missing\n", "password_file:",
                     "redis.password_file", "secret file not found", id="missing-password-file"),
    ],
)
def test_redis_section_problems_name_the_key(config_dir: Path, section: str, line: str, key: str,
                                             fragment: str) -> None:
    with_redis(config_dir, section)

    assert_issues(load_issues(config_dir), [Expected(BROKER, line, key, fragment)], config_dir)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("redi://:hunter2-redis-password@10.0.0.5:6379/0", "'redi://***@10.0.0.5:6379/0'",
                     id="mistyped-scheme"),
        pytest.param("http://admin:hunter2-redis-password@10.0.0.5:6379/0", "'http://***@10.0.0.5:6379/0'",
                     id="another-scheme-with-a-user"),
        pytest.param("redi://10.0.0.5:6379/0?password=hunter2-redis-password", "?password=***'",
                     id="mistyped-scheme-password-in-the-query"),
    ],
)
def test_a_password_in_a_refused_redis_url_is_not_repeated(config_dir: Path, url: str, shown: str) -> None:
    with_redis(config_dir, f"redis:\n  url: '{url}'\n")

    issues = load_issues(config_dir)

    assert_issues(issues, [Expected(BROKER, "url: '", "redis.url", "expected a redis://, rediss:// or unix:// "
                                                                  "URL, got '")], config_dir)
    assert shown in issues[0].message
    assert "hunter2" not in str(issues[0])


def test_a_redis_password_file_pasted_inline_is_not_repeated(config_dir: Path) -> None:
    with_redis(config_dir, "redis:\n  url: redis://10.0.0.5:6379/0\n  password_file: hunter2-redis-password\n")

    issues = load_issues(config_dir)

    assert_issues(issues, [Expected(BROKER, "password_file:", "redis.password_file", "secret file not found (the "
                                    "value is not shown: it may be a secret written inline)")], config_dir)
    assert "hunter2" not in str(issues[0])


def test_a_short_redis_password_is_refused(config_dir: Path) -> None:
    with_redis(config_dir, "redis:\n  url: redis://10.0.0.5:6379/0\n  password_file: keys/redis-password\n")
    write_text(config_dir / "keys" / "redis-password", "hunter2\n")

    assert_issues(load_issues(config_dir), [Expected(BROKER, "password_file:", "redis.password_file",
                                                     "at least 32 random bytes are required")], config_dir)


# --- REDIS_URL next to the configuration ------------------------------------------------------------------


def test_redis_url_replaces_a_configured_url() -> None:
    connector = configured(RedisConfig(url="redis://10.0.0.5:6379/0"), "redis://127.0.0.1:6390/3")

    assert connector is not None
    kwargs = connector.client().connection_pool.connection_kwargs  # type: ignore[union-attr]
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 3)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("htp://127.0.0.1:6379/0", "REDIS_URL: expected a redis://, rediss:// or unix:// URL, got "
                     "'htp://127.0.0.1:6379/0'", id="mistyped-scheme"),
        pytest.param("redis://127.0.0.1:abc/0", "REDIS_URL: expected a port from 1 to 65535 after the host",
                     id="port-abc"),
        pytest.param("redis://", "REDIS_URL: expected a host", id="no-host"),
        pytest.param("redis://[::1", "REDIS_URL: expected a host", id="unclosed-ipv6-bracket"),
        pytest.param("redis://127.0.0.1:6379/0?socket_timeout=abc", "REDIS_URL: query parameter 'socket_timeout' is "
                     "not used", id="query-parameter"),
        pytest.param("redis://:hunter2@127.0.0.1:6379/0", "REDIS_URL: the URL holds a password: put it in "
                     "password_file", id="inline-password"),
    ],
)
@pytest.mark.parametrize("configured_url", [None, "redis://10.0.0.5:6379/0"])
def test_redis_url_is_held_to_the_rules_of_redis_url(url: str, message: str, configured_url: str | None) -> None:
    cfg = RedisConfig(url=configured_url) if configured_url else None

    with pytest.raises(RedisChoiceRefused) as info:
        configured(cfg, url)

    assert str(info.value).startswith(message)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("deployment", ["sentinel", "cluster"])
def test_redis_url_next_to_sentinel_or_cluster_is_refused(config_dir: Path, deployment: str) -> None:
    section = SENTINEL if deployment == "sentinel" else "redis:\n  cluster:\n    addresses: [10.0.0.21:6379]\n"
    with_redis(config_dir, section)
    cfg = load_settings(config_dir).broker.redis

    with pytest.raises(RedisChoiceRefused, match=f"broker.yaml configures redis.{deployment}; unset REDIS_URL"):
        configured(cfg, "redis://127.0.0.1:6379/0")


# --- TLS ------------------------------------------------------------------------------------------------------


def test_tls_with_a_private_ca_and_a_client_certificate_loads(config_dir: Path) -> None:
    RedisTls.generate(config_dir / "redis-tls")
    with_redis(config_dir, SENTINEL + "  tls:\n    ca_file: redis-tls/ca.crt\n"
                                      "    certificate: redis-tls/client.crt\n    key: redis-tls/client.key\n")

    redis = load_settings(config_dir).broker.redis

    assert redis is not None
    assert redis.tls is not None
    assert redis.tls.ca_file.path == config_dir / "redis-tls" / "ca.crt"
    options = tls_options(redis.tls)
    assert options["ssl"] is True
    assert options["ssl_check_hostname"] is True
    assert options["ssl_certfile"] == str(config_dir / "redis-tls" / "client.crt")


@pytest.mark.parametrize(
    ("tls", "line", "key", "fragment"),
    [
        pytest.param("    ca_file: redis-tls/ca.crt\n    certificate: redis-tls/client.crt\n", "tls:",
                     "redis.tls.key", "certificate and key go together", id="certificate-without-key"),
        pytest.param("    ca_file: redis-tls/ca.crt\n    certificate: redis-tls/server.crt\n"
                     "    key: redis-tls/client.key\n", "certificate: redis-tls/server", "redis.tls.certificate",
                     "does not belong to the configured key", id="certificate-of-another-key"),
        pytest.param("    ca_file: redis-tls/client.crt\n", "ca_file:", "redis.tls.ca_file", "not a CA",
                     id="leaf-as-ca"),
    ],
)
def test_tls_problems_name_the_key(config_dir: Path, tls: str, line: str, key: str, fragment: str) -> None:
    RedisTls.generate(config_dir / "redis-tls")
    with_redis(config_dir, SENTINEL + "  tls:\n" + tls)

    assert_issues(load_issues(config_dir), [Expected(BROKER, line, key, fragment)], config_dir)


def test_tls_with_a_plain_redis_url_is_refused(config_dir: Path) -> None:
    RedisTls.generate(config_dir / "redis-tls")
    with_redis(config_dir, "redis:\n  url: redis://10.0.0.5:6379/0\n  tls:\n    ca_file: redis-tls/ca.crt\n")

    assert_issues(load_issues(config_dir), [Expected(BROKER, "tls:", "redis.tls", "TLS needs a rediss:// URL")],
                  config_dir)


def test_a_plain_redis_url_next_to_tls_is_refused(config_dir: Path) -> None:
    RedisTls.generate(config_dir / "redis-tls")
    with_redis(config_dir, "redis:\n  url: rediss://10.0.0.5:6379/0\n  tls:\n    ca_file: redis-tls/ca.crt\n")
    cfg = load_settings(config_dir).broker.redis

    with pytest.raises(RedisChoiceRefused, match=r"configures redis\.tls, but REDIS_URL is not a rediss:// URL"):
        configured(cfg, "redis://127.0.0.1:6379/0")
    connector = configured(cfg, "rediss://127.0.0.1:6390/0")
    assert connector is not None
    kwargs = connector.client().connection_pool.connection_kwargs  # type: ignore[union-attr]
    assert kwargs["ssl_ca_certs"] == str(config_dir / "redis-tls" / "ca.crt")
