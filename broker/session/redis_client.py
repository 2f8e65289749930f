"""redis-py clients for the three Redis deployments of :class:`~broker.config.redis_schema.RedisConfig`.

- ``url``: one server, ``redis.Redis.from_url``.
- ``sentinel``: ``redis.sentinel.Sentinel(...).master_for(service)``. Every new connection first asks the
  sentinels where the primary is; a connection that fails is dropped, so the next one asks again. A primary
  demoted to replica answers writes with READONLY, which redis-py's ``SentinelManagedConnection`` turns into a
  ``ConnectionError`` after dropping that connection; when the sentinels name a new primary, the idle
  connections to the old one are dropped too. A failover therefore needs no restart and no configuration change.
- ``cluster``: ``redis.cluster.RedisCluster`` over the listed start nodes; a single command follows MOVED and
  ASK, a transaction neither (docs/redis.md: while the broker's slot migrates, its multi-key commands fail),
  and the slot map is reread after a lost connection or a MOVED. Its constructor talks to the cluster, so it is
  made on first use: the broker starts while Redis is down, answers 503 meanwhile and recovers by itself.

Every client here has bounded timeouts and no retries of its own (redis-py 6's default is three retries with
up to 10 s of backoff each, which would hold a user's request for half a minute); the store decides what may
be repeated, once (:class:`broker.session.store.RedisStore`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from broker.config.redis_schema import RedisConfig, RedisTlsConfig, url_problem
from broker.session.command_deadline import watch_pool

RedisClient = redis.Redis | RedisCluster

CLIENT_NAME = "broker"  # shown by CLIENT LIST on the servers
HEALTH_CHECK_SECONDS = 30  # a connection idle longer than this is PINGed before it is used
PRIMARY_CHECK_SECONDS = 1.0  # under Sentinel: how often the sentinels are asked where the primary is


class RedisChoiceRefused(RuntimeError):
    """REDIS_URL (or --redis) is no usable Redis URL (:func:`~broker.config.redis_schema.url_problem`), names
    one server while broker.yaml configures Sentinel or Cluster, or a plain connection while it configures TLS."""


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


class Connector:
    """One redis-py client, made on first use and then kept (thread-safe)."""

    def __init__(self, build: Callable[[], RedisClient], *, cluster: bool = False,
                 command_seconds: float | None = None) -> None:
        self._build = build
        self._client: RedisClient | None = None
        self._lock = threading.Lock()
        self.cluster = cluster
        # the wall-clock bound of one command attempt (broker.session.command_deadline); None: reads only
        self.command_seconds = command_seconds

    @classmethod
    def of(cls, client: RedisClient) -> Connector:
        """A client made already (redis-py's Redis connects only when used); one of redis-py's ``Redis`` gets its
        commands bounded: socket_timeout to connect and again to answer (:func:`bounded`)."""
        connector = cls(lambda: client)
        connector._client = client
        connector.command_seconds = bounded(client)
        return connector

    def client(self) -> RedisClient:
        """The client; raises what redis-py raises when it cannot be made (a cluster that does not answer)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build()
                client = self._client
        return client

    def before_command(self) -> None:
        """Called before each store command; nothing to do for one server or a cluster."""

    def drop_connections(self) -> None:
        """Close the pooled connections, so that the next command connects afresh (and resolves the host name
        again: after a READONLY answer, a DNS name may already point at the new primary)."""
        client = self._client
        if isinstance(client, redis.Redis):
            client.connection_pool.disconnect()


def bounded(client: RedisClient) -> float | None:
    """Put ``client``'s commands under a wall-clock deadline (broker.session.command_deadline): its pool's
    connections are noted, and an attempt gets its socket_timeout to connect plus the same to answer. None for
    a client whose pool cannot be hooked (Redis Cluster) or that has no socket_timeout."""
    pool = getattr(client, "connection_pool", None)
    timeout = pool.connection_kwargs.get("socket_timeout") if pool is not None else None
    if not isinstance(client, redis.Redis) or pool is None or not timeout:
        return None
    watch_pool(pool)
    return 2 * float(timeout)


class SentinelConnector(Connector):
    """The primary under Sentinel, with one addition to redis-py: at most every ``check_seconds``, before a
    command, the sentinels are asked where the primary is.

    redis-py asks only when it makes a connection. After a failover in which the old primary stays up (a manual
    ``SENTINEL FAILOVER``, or a partition that heals), pooled connections would keep writing to it until the
    sentinels demote it (about 10 s later, measured), and the replica resynchronisation then throws those writes
    away: sessions, one-time pending logins, replay-cache entries. When the answer names another primary,
    redis-py closes the idle connections to the old one and drops busy ones when they come back to the pool.
    No answer (no sentinel, or a failover in progress) changes nothing: the command then fails or succeeds on its
    own."""

    def __init__(self, client: redis.Redis, *, check_seconds: float = PRIMARY_CHECK_SECONDS) -> None:
        super().__init__(lambda: client, command_seconds=bounded(client))
        self._client = client
        self._check_seconds = check_seconds
        self._checked = -check_seconds
        self._checking = threading.Lock()

    def before_command(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._check_seconds or not self._checking.acquire(blocking=False):
            return  # asked recently, or another thread is asking right now
        try:
            self._checked = now
            client = self._client
            assert isinstance(client, redis.Redis)
            with contextlib.suppress(redis.RedisError):
                client.connection_pool.get_master_address()  # type: ignore[attr-defined]
        finally:
            self._checking.release()


def tls_options(tls: RedisTlsConfig | None) -> dict[str, Any]:
    """redis-py's TLS arguments for ``tls`` (none: plain TCP). The server's host name is checked as well."""
    if tls is None:
        return {}
    options: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(tls.ca_file.path), "ssl_cert_reqs": "required",
                               "ssl_check_hostname": True}
    if tls.certificate is not None and tls.key is not None:
        options.update(ssl_certfile=str(tls.certificate.path), ssl_keyfile=str(tls.key.path))
    return options


def single_server(url: str, *, socket_timeout: float, username: str | None = None,
                  password: bytes | None = None, tls: RedisTlsConfig | None = None) -> Connector:
    """One server at ``url`` (credentials in the URL win over ``username``/``password``; a rediss:// URL
    without ``tls`` trusts the system's CAs)."""
    # the URL's scheme decides whether TLS is used
    options = {k: v for k, v in tls_options(tls).items() if k != "ssl"} if url.startswith("rediss://") else {}
    return Connector.of(redis.Redis.from_url(
        url, username=username, password=password, socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout, retry=_no_retry(), health_check_interval=HEALTH_CHECK_SECONDS,
        client_name=CLIENT_NAME, **options))


def from_config(cfg: RedisConfig, *, primary_check_seconds: float = PRIMARY_CHECK_SECONDS) -> Connector:
    """The client ``cfg`` describes (exactly one of url, sentinel and cluster is set: the loader checked)."""
    password = cfg.password_file.value if cfg.password_file is not None else None
    timeout = cfg.socket_timeout.seconds
    tls = tls_options(cfg.tls)
    if cfg.sentinel is not None:
        sentinel = cfg.sentinel
        sentinel_password = sentinel.password_file.value if sentinel.password_file is not None else None
        # the sentinels are asked in turn when a connection is made: each gets its own short timeout
        manager = Sentinel(  # type: ignore[no-untyped-call]
            [(a.host, a.port) for a in sentinel.addresses],
            sentinel_kwargs={"socket_timeout": sentinel.socket_timeout.seconds,
                             "socket_connect_timeout": sentinel.socket_timeout.seconds,
                             "password": sentinel_password, "retry": _no_retry(), "client_name": CLIENT_NAME,
                             **tls})
        return SentinelConnector(manager.master_for(  # type: ignore[no-untyped-call]
            sentinel.master, db=sentinel.db, username=cfg.username, password=password,
            socket_timeout=timeout, socket_connect_timeout=timeout, retry=_no_retry(),
            health_check_interval=HEALTH_CHECK_SECONDS, client_name=CLIENT_NAME, **tls),
            check_seconds=primary_check_seconds)
    if cfg.cluster is not None:
        nodes = [ClusterNode(a.host, a.port) for a in cfg.cluster.addresses]  # type: ignore[no-untyped-call]
        return Connector(lambda: RedisCluster(
            startup_nodes=nodes, username=cfg.username, password=password, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=_no_retry(), client_name=CLIENT_NAME, **tls), cluster=True)
    assert cfg.url is not None
    return single_server(cfg.url, socket_timeout=timeout, username=cfg.username, password=password, tls=cfg.tls)


def configured(cfg: RedisConfig | None, url: str | None) -> Connector | None:
    """The Redis to use: ``url`` (REDIS_URL or a command-line option) replaces ``redis.url``; it is refused when
    broker.yaml configures Sentinel or Cluster, whose high availability it would silently drop. None: no
    Redis at all."""
    if url:
        # the rules of redis.url (a host, a port, a database number, no password ...): an environment variable
        # is a configuration too, and a mistake in it is said here rather than as a traceback at the first command
        problem = url_problem(url)
        if problem is not None:
            raise RedisChoiceRefused(f"REDIS_URL: {problem}")
        if cfg is not None and cfg.deployment != "url":
            raise RedisChoiceRefused(
                f"REDIS_URL names one Redis server, but broker.yaml configures redis.{cfg.deployment}; "
                f"unset REDIS_URL (or remove redis.{cfg.deployment})")
        if cfg is not None and cfg.tls is not None and not url.startswith("rediss://"):
            raise RedisChoiceRefused("broker.yaml configures redis.tls, but REDIS_URL is not a rediss:// URL")
        password = cfg.password_file.value if cfg is not None and cfg.password_file is not None else None
        return single_server(url, socket_timeout=cfg.socket_timeout.seconds if cfg else 0.5,
                             username=cfg.username if cfg else None, password=password,
                             tls=cfg.tls if cfg else None)
    return from_config(cfg) if cfg is not None else None
