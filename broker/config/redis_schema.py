"""The ``redis:`` section of broker.yaml: one Redis server, a Sentinel-managed primary, or a Redis Cluster.

Exactly one of ``url``, ``sentinel`` and ``cluster`` names the deployment; the
password of the data nodes comes from ``password_file`` (never inline, as
every other secret of the broker). docs/redis.md explains the choices and
the failover behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from redis.connection import parse_url

from broker.config.typed import ParseContext
from broker.config.values import CaCertificates, CertificateFile, Duration, PrivateKeyFile, SecretFile
from broker.config.yamlsource import KeyPath


def doc(text: str, **extra: object) -> dict[str, object]:
    return {"doc": text, **extra}


MAX_DB = 2**31 - 1   # SELECT's index is a C int on the server (whose `databases`, 16 by default, bounds it further)

HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>[0-9]{1,5})\Z")
# the same for the JSON Schema, in ECMA-262 (JSON Schema 2020-12 Validation §6.3.3), which has neither Python's
# named groups (?P<...>) nor \Z
HOST_PORT_SCHEMA = r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}$"


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` address (an IPv6 address in brackets: ``[fd00::1]:26379``)."""

    host: str
    port: int

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> HostPort:
        m = HOST_PORT.match(value) if isinstance(value, str) else None
        if m is None or not 0 < int(m.group("port")) < 65536:
            raise ValueError(f"expected host:port (e.g. 10.0.0.11:26379), got {value!r}")
        return cls(m.group("v6") or m.group("host"), int(m.group("port")))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "pattern": HOST_PORT_SCHEMA, "examples": ["10.0.0.11:26379"]}

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SentinelConfig:
    """A primary with replicas, watched by Redis Sentinel; the broker asks the sentinels where the primary is
    (again after every lost connection), so a failover needs no change here."""

    master: str = field(metadata=doc("the service name the sentinels monitor (`sentinel monitor <name> ...`)",
                                     examples=("broker",)))
    addresses: tuple[HostPort, ...] = field(
        metadata=doc("host:port of the sentinels (three or more, on separate machines)", min_items=1,
                     examples=(("10.0.0.11:26379", "10.0.0.12:26379", "10.0.0.13:26379"),)))
    password_file: SecretFile | None = field(
        default=None, metadata=doc("password of the sentinels themselves (their `requirepass`); "
                                   "none: they ask for none"))
    socket_timeout: Duration = field(
        default=Duration(0.2), metadata=doc("connect and answer timeout per sentinel asked"))
    db: int = field(default=0, metadata=doc("database number on the primary", min=0, max=MAX_DB))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if not re.fullmatch(r"[A-Za-z0-9._\-]+", self.master):
            yield ("master",), "letters, digits, '.', '_' and '-' only"
        seen = [str(a) for a in self.addresses]
        for i, address in enumerate(seen):
            if address in seen[:i]:
                yield ("addresses", i), f"{address} is listed twice"


@dataclass(frozen=True)
class ClusterConfig:
    """A Redis Cluster: the broker learns the slot map from any of these nodes and follows it (and its
    changes after a failover). The key prefix is every key's hash tag: all of the broker's keys live in one
    hash slot, so multi-key commands stay atomic; the cluster gives failover, not sharding."""

    addresses: tuple[HostPort, ...] = field(
        metadata=doc("host:port of some cluster nodes to start from (several, in case one is down)", min_items=1,
                     examples=(("10.0.0.21:6379", "10.0.0.22:6379", "10.0.0.23:6379"),)))


@dataclass(frozen=True)
class RedisTlsConfig:
    """TLS on every connection to Redis (data nodes and sentinels): each server's certificate must chain to
    ``ca_file`` and name the host the broker connects to (as configured, or as the sentinels and the cluster
    announce it: an IP address needs an IP subjectAltName)."""

    ca_file: CaCertificates = field(metadata=doc("CA certificate(s) that issued the Redis servers' certificates"))
    certificate: CertificateFile | None = field(
        default=None, metadata=doc("the broker's client certificate, for servers with `tls-auth-clients yes`"))
    key: PrivateKeyFile | None = field(default=None, metadata=doc("the key of that client certificate"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if (self.certificate is None) != (self.key is None):
            yield ("certificate" if self.certificate is None else "key",), "certificate and key go together"
        elif self.certificate is not None and self.key is not None and (
                _spki(self.key.key.public_key()) != _spki(self.certificate.certificate.public_key())):
            yield ("certificate",), "the certificate does not belong to the configured key"


def _spki(public: object) -> bytes:
    return public.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


DEPLOYMENTS = ("url", "sentinel", "cluster")


def shown_url(url: str) -> str:
    """``url`` as a message may show it: the userinfo (``user:password@``, RFC 3986 §3.2.1) and a ``password``
    query parameter hidden, so that a password written into the URL is not repeated to terminals, logs and the
    audit trail. Everything up to the last ``@`` of the authority is userinfo (whatever the scheme: a mistyped
    one, ``redi://``, holds the password just the same)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, authority_end)
    if at < 0 and "@" in rest:  # a password holding '/', '?' or '#' ends the authority early: hide up to the '@'
        at = rest.rfind("@")
    if at >= 0:
        rest = "***@" + rest[at + 1:]
    rest = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", rest)
    return f"{scheme}{sep}{rest}"


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as the one Redis server's address (``redis.url`` or ``REDIS_URL``), or None.

    The URL forms are redis-py's (``redis.connection.parse_url``; the IANA ``redis`` and ``rediss`` schemes):
    ``redis[s]://[user@]host[:port][/db]`` and ``unix://path[?db=N]``. Checked here, once, what redis-py
    would otherwise only find when the first connection is made (a traceback in ``broker serve``, readiness or
    ``revocation status``) or silently ignore (a database number that is no number): a host, a port from 1 to
    65535, a database number, no query parameter but ``db`` (timeouts and retries are the broker's own:
    ``redis.socket_timeout``), no fragment, and no password (``password_file``: secrets are never inline).
    The URL is shown with its userinfo hidden (:func:`shown_url`)."""
    shown = repr(shown_url(url))
    if not re.match(r"^(redis|rediss|unix)://", url):
        return f"expected a redis://, rediss:// or unix:// URL, got {shown}"
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed or misplaced '[' (urllib: "Invalid IPv6 URL")
        if url.startswith("unix:"):
            return f"expected unix:///path/to/redis.sock, got {shown}"
        return f"expected a host: {url.partition(':')[0]}://host:port/db (IPv6 as [::1]), got {shown}"
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        return f"expected query parameters name=value, got {shown}"
    if parts.password or "password" in query:
        return "the URL holds a password: put it in password_file (secrets never inline)"
    if parts.fragment or url.endswith("#"):
        return f"expected a URL without a fragment (#...), got {shown}"
    for name in query:
        if name != "db":
            return (f"query parameter {name!r} is not used: only db is (timeouts come from redis.socket_timeout), "
                    f"got {shown}")
    db_texts = [*query.get("db", [])]
    if parts.scheme == "unix":
        if not parts.path:
            return f"expected unix:///path/to/redis.sock, got {shown}"
    else:
        try:
            port = parts.port
        except ValueError:
            return f"expected a port from 1 to 65535 after the host, got {shown}"
        if not parts.hostname:
            return f"expected a host: redis{'s' if parts.scheme == 'rediss' else ''}://host:port/db, got {shown}"
        if port == 0:
            return f"expected a port from 1 to 65535 after the host, got {shown}"
        if parts.path not in ("", "/"):
            db_texts.append(parts.path[1:])
    if len(db_texts) > 1:
        return f"expected one database number (in the path or as ?db=, not both), got {shown}"
    for text in db_texts:
        if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > MAX_DB:
            return f"expected a database number from 0 to {MAX_DB} (e.g. /0), got {shown}"
    try:  # anything redis-py itself would refuse
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return f"{exc} (got {shown})"
    return None


@dataclass(frozen=True)
class RedisConfig:
    """The shared Redis (sessions, pending logins, replay and revocation caches): exactly one of `url` (one
    server), `sentinel` (a primary with replicas under Redis Sentinel) or `cluster` (Redis Cluster). Without
    it, only the demo runs (embedded store). Changing it needs a restart (a reload keeps the store)."""

    url: str | None = field(default=None, metadata=doc(
        "one server: redis://host:port/db, rediss://... or unix:///path?db=N; without a password, and without "
        "other query parameters (REDIS_URL is held to the same rules)", examples=("redis://127.0.0.1:6379/0",)))
    sentinel: SentinelConfig | None = field(default=None, metadata=doc("a primary and replicas under Sentinel"))
    cluster: ClusterConfig | None = field(default=None, metadata=doc("a Redis Cluster"))
    tls: RedisTlsConfig | None = field(
        default=None, metadata=doc("TLS with a CA of your own (and a client certificate); with url, a rediss:// "
                                   "URL without this block trusts the system's CAs"))
    username: str | None = field(default=None, metadata=doc("ACL user on the data nodes; none: the default user"))
    password_file: SecretFile | None = field(
        default=None, metadata=doc("password of the data nodes (`requirepass` or the ACL user's); none: no AUTH"))
    key_prefix: str = field(default="broker:", metadata=doc("prefix of every key the broker writes"))
    socket_timeout: Duration = field(
        default=Duration(0.5), metadata=doc("per-command timeout; a slow Redis yields a 503, not a hang")
    )

    @property
    def deployment(self) -> str:
        """``url``, ``sentinel`` or ``cluster``: the one that is set."""
        return next(name for name in DEPLOYMENTS if getattr(self, name) is not None)

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        chosen = [name for name in DEPLOYMENTS if getattr(self, name) is not None]
        if not chosen:
            yield (), "one of url, sentinel or cluster is required"
        for other in chosen[1:]:
            yield (other,), (f"{chosen[0]} and {other} are mutually exclusive: configure one Redis deployment "
                             f"(url for one server, sentinel or cluster)")
        if self.url is not None:
            problem = url_problem(self.url)
            if problem is not None:
                yield ("url",), problem
            elif self.tls is not None and urlsplit(self.url).scheme != "rediss":
                yield ("tls",), "TLS needs a rediss:// URL"
        if self.cluster is not None and re.search(r"[{}]", self.key_prefix):
            yield ("key_prefix",), ("no '{' or '}' with cluster: the broker makes the prefix the hash tag of "
                                    "every key itself ({broker:}session:...)")
