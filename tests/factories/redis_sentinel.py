"""A Redis primary, its replicas and a quorum of sentinels on loopback, each a private ``redis-server`` process
on a free port with a directory of its own, for failover tests.

The sentinels run the same binary in sentinel mode (``redis-server sentinel.conf --sentinel``: Debian's
``redis-sentinel`` is a link to it). :meth:`SentinelGroup.start` returns once the replicas replicate and
every sentinel knows every replica and every other sentinel (so that a failover can start at once);
:meth:`SentinelGroup.stop` (also on leaving the ``with`` block) kills every process it started.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives import serialization

from broker.config.redis_schema import HostPort, RedisConfig, RedisTlsConfig, SentinelConfig
from broker.config.typed import ParseContext
from broker.config.values import CaCertificates, CertificateFile, Duration, PrivateKeyFile, SecretFile
from broker.config.yamlsource import YamlSource
from broker.demo.certificates import CLIENT_AUTH, SERVER_AUTH, CertificateAuthority, LeafProfile
from broker.errors import SessionStoreUnavailable
from broker.session.store import RedisStore
from tests.factories.lifecycle import Service
from tests.factories.ports import free_port

INSTALL_HINT = "sudo apt-get install -y redis-server"


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(f"the Redis failover tests need redis-server ({INSTALL_HINT})", pytrace=False)
    return found


def wait_until(condition: Callable[[], object], what: str, timeout: float = 15.0, interval: float = 0.05) -> None:
    """Poll ``condition()`` (redis errors count as not yet) until it is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


@dataclass(frozen=True)
class RedisTls:
    """A private CA, one server certificate (127.0.0.1 and localhost; serverAuth and clientAuth: the servers
    are each other's TLS clients in replication and among sentinels) and a client certificate for the broker,
    as PEM files in ``directory``. Every server requires a client certificate (``tls-auth-clients yes``)."""

    directory: Path

    @classmethod
    def generate(cls, directory: Path) -> RedisTls:
        now = dt.datetime.now(dt.UTC)
        ca = CertificateAuthority.root("Redis Test CA", now)
        server = ca.issue(LeafProfile(common_name="127.0.0.1", eku=(SERVER_AUTH, CLIENT_AUTH), san_dns="localhost",
                                      san_ip="127.0.0.1"))
        client = ca.issue(LeafProfile(common_name="broker", eku=(CLIENT_AUTH,)))
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.crt").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
        (directory / "server.crt").write_bytes(server.pem())
        (directory / "server.key").write_bytes(server.key_pem())
        (directory / "client.crt").write_bytes(client.pem())
        (directory / "client.key").write_bytes(client.key_pem())
        return cls(directory)

    def path(self, name: str) -> Path:
        return self.directory / name

    def server_options(self) -> list[tuple[str, str]]:
        """TLS only (``port 0``), for clients, replication and the sentinels' links alike."""
        return [("tls-cert-file", str(self.path("server.crt"))), ("tls-key-file", str(self.path("server.key"))),
                ("tls-ca-cert-file", str(self.path("ca.crt"))), ("tls-auth-clients", "yes"),
                ("tls-replication", "yes")]

    def client_options(self) -> dict[str, object]:
        return {"ssl": True, "ssl_ca_certs": str(self.path("ca.crt")), "ssl_certfile": str(self.path("client.crt")),
                "ssl_keyfile": str(self.path("client.key"))}


@dataclass
class Node:
    """One redis-server process (a data node or a sentinel)."""

    name: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save, no goodbye to the replicas."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class SentinelGroup(Service):
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels monitoring them as ``service``.

    ``password`` protects the data nodes (``requirepass`` and ``masterauth``), ``sentinel_password`` the
    sentinels (``requirepass`` and ``sentinel sentinel-pass``); both are random by default."""

    def __init__(self, workdir: Path, *, service: str = "broker-test", replicas: int = 1, sentinels: int = 3,
                 quorum: int = 2, down_after_ms: int = 1000, failover_timeout_ms: int = 2000,
                 password: str | None = None, sentinel_password: str | None = None,
                 tls: RedisTls | None = None) -> None:
        self.workdir = workdir
        self.tls = tls
        self.service = service
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.password = password or secrets.token_hex(32)
        self.sentinel_password = sentinel_password or secrets.token_hex(32)
        self.data_nodes: list[Node] = []
        self.sentinels: list[Node] = []

    # --- processes ------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], port: int) -> Node:
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        log = (directory / "redis.log").open("ab")
        process = subprocess.Popen([redis_server_binary(), *args], cwd=directory, stdout=log, stderr=log)
        log.close()
        return Node(name, port, directory, process)

    def _start_data_node(self, name: str, primary_port: int | None) -> Node:
        port = free_port()
        args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir / name), "--requirepass", self.password, "--masterauth", self.password,
                "--repl-diskless-sync-delay", "0"]  # the default waits 5 s for more replicas before a full sync
        if self.tls is None:
            args += ["--port", str(port)]
        else:
            args += ["--port", "0", "--tls-port", str(port)]
            for option, value in self.tls.server_options():
                args += [f"--{option}", value]
        if primary_port is not None:
            args += ["--replicaof", "127.0.0.1", str(primary_port)]
        node = self._spawn(name, args, port)
        self.data_nodes.append(node)
        wait_until(lambda: self.data_client(port).ping(), f"{name} answering on port {port}")
        return node

    def _start_sentinel(self, index: int, primary_port: int, peers: list[tuple[int, str]]) -> Node:
        """Sentinel ``index`` of ``peers`` (port, run ID): told about the replicas and the other sentinels up
        front, in the form a sentinel writes into its own file, so that it need not wait for their hello
        messages (every 2 s) before it may vote."""
        port, myid = peers[index]
        name = f"sentinel-{index}"
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"  # rewritten by the sentinel as it learns (it must be writable)
        listen = [f"port {port}"] if self.tls is None else [
            "port 0", f"tls-port {port}", *(f"{option} {value}" for option, value in self.tls.server_options())]
        conf.write_text("\n".join([
            "bind 127.0.0.1",
            *listen,
            f"dir {directory}",
            f"requirepass {self.sentinel_password}",
            f"sentinel sentinel-pass {self.sentinel_password}",
            f"sentinel monitor {self.service} 127.0.0.1 {primary_port} {self.quorum}",
            f"sentinel auth-pass {self.service} {self.password}",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.service} 1",
            f"sentinel myid {myid}",
            *(f"sentinel known-replica {self.service} 127.0.0.1 {n.port}" for n in self.data_nodes[1:]),
            *(f"sentinel known-sentinel {self.service} 127.0.0.1 {p} {i}" for p, i in peers if p != port),
            "",
        ]))
        node = self._spawn(name, [str(conf), "--sentinel"], port)
        self.sentinels.append(node)
        return node

    def start(self) -> None:
        try:
            primary = self._start_data_node("primary", None)
            for i in range(self.replica_count):
                self._start_data_node(f"replica-{i}", primary.port)
            for node in self.data_nodes[1:]:
                wait_until(partial(self._linked, node.port), f"{node.name} replicating")
            peers = [(free_port(), secrets.token_hex(20)) for _ in range(self.sentinel_count)]
            for i in range(self.sentinel_count):
                self._start_sentinel(i, primary.port, peers)
            for sentinel in self.sentinels:
                wait_until(partial(self._sentinel_ready, sentinel.port),
                           f"{sentinel.name} knowing the replicas and the other sentinels", timeout=20)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.kill()


    # --- what the group looks like ----------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def data_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=1,
                           socket_connect_timeout=1, retry=None, **self._tls_options())

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.sentinel_password, socket_timeout=1,
                           socket_connect_timeout=1, retry=None, **self._tls_options())

    def _tls_options(self) -> dict[str, Any]:
        return self.tls.client_options() if self.tls is not None else {}

    def _info(self, port: int) -> dict[str, object]:
        return dict(self.data_client(port).info("replication"))

    def _linked(self, port: int) -> bool:
        return self._info(port).get("master_link_status") == "up"

    def _sentinel_ready(self, port: int) -> bool:
        # the per-service methods of redis-py are for its Sentinel object; on a plain client, SENTINEL MASTERS
        state = self.sentinel_client(port).sentinel_masters()[self.service]
        return bool(state["num-slaves"] == self.replica_count
                    and state["num-other-sentinels"] == self.sentinel_count - 1)

    def node(self, port: int) -> Node:
        return next(n for n in self.data_nodes if n.port == port)

    def named_primaries(self) -> list[int | None]:
        """The primary's port as each live sentinel names it (None: that one does not answer)."""
        ports: list[int | None] = []
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            try:
                address = self.sentinel_client(sentinel.port).execute_command(
                    "SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
            except redis.RedisError:
                address = None
            ports.append(int(address[1]) if address else None)
        return ports

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers names it (None: none answers)."""
        return next((port for port in self.named_primaries() if port is not None), None)

    def primary(self) -> Node:
        port = self.primary_port()
        assert port is not None, "no sentinel names a primary"
        return self.node(port)

    def replicated(self, timeout_ms: int = 2000) -> None:
        """Return once every write the primary took so far has reached every replica (a marker write, then
        WAIT: replication is one ordered stream, so the marker's acknowledgement covers all before it)."""
        client = self.data_client(self.primary().port)
        client.set("test:replication-marker", secrets.token_hex(8))
        acknowledged = client.wait(self.replica_count, timeout_ms)
        assert acknowledged >= self.replica_count, f"{acknowledged} of {self.replica_count} replicas acknowledged"

    def kill_primary(self) -> Node:
        node = self.primary()
        node.kill()
        return node

    def wait_for_new_primary(self, old_port: int, timeout: float = 30.0) -> Node:
        """The replica the sentinels promoted in place of ``old_port``, once it takes writes and every sentinel
        names it (the others learn of the failover from the leader's hello messages, up to 2 s later)."""
        def promoted() -> bool:
            ports = set(self.named_primaries())
            if len(ports) != 1:
                return False
            port = ports.pop()
            return port is not None and port != old_port and self._info(port).get("role") == "master"
        wait_until(promoted, f"a failover away from port {old_port}", timeout=timeout)
        return self.primary()

    def failover(self, timeout: float = 30.0) -> Node:
        """A manual failover (SENTINEL FAILOVER); returns once the sentinels name the promoted replica and it
        takes writes. The old primary stays up, and a primary, until the sentinels demote it (about 10 s later:
        :meth:`demote` does it at once)."""
        old = self.primary()
        self.sentinel_client(self.sentinels[0].port).execute_command("SENTINEL FAILOVER", self.service)
        return self.wait_for_new_primary(old.port, timeout)

    def demote(self, node: Node) -> None:
        """Make ``node`` a replica of the current primary now, as the sentinels will (REPLICAOF), without their
        closing of its client connections."""
        primary = self.primary()
        self.data_client(node.port).execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        wait_until(lambda: self._info(node.port).get("role") == "slave", f"{node.name} becoming a replica")


def secret_file(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def sentinel_config(group: SentinelGroup, *, prefix: str = "broker:", socket_timeout: float = 0.5) -> RedisConfig:
    """The ``redis:`` section (as the loader would make it) for the broker to use ``group`` (over TLS with the
    broker's client certificate if the group has TLS)."""
    secrets_dir = group.workdir / "broker-secrets"
    secrets_dir.mkdir(exist_ok=True)
    data = secret_file(secrets_dir, "redis-password", group.password)
    sentinel = secret_file(secrets_dir, "sentinel-password", group.sentinel_password)
    return RedisConfig(
        sentinel=SentinelConfig(master=group.service,
                                addresses=tuple(HostPort("127.0.0.1", s.port) for s in group.sentinels),
                                password_file=SecretFile(sentinel, group.sentinel_password.encode())),
        password_file=SecretFile(data, group.password.encode()), key_prefix=prefix,
        socket_timeout=Duration(socket_timeout), tls=tls_config(group.tls) if group.tls is not None else None)


def tls_config(tls: RedisTls) -> RedisTlsConfig:
    """``redis.tls`` for ``tls``'s CA and client certificate, parsed as the loader parses it."""
    ctx = ParseContext(YamlSource("broker.yaml", {}), tls.directory)
    return RedisTlsConfig(ca_file=CaCertificates.from_config("ca.crt", ctx, ()),
                          certificate=CertificateFile.from_config("client.crt", ctx, ()),
                          key=PrivateKeyFile.from_config("client.key", ctx, ()))


@dataclass(frozen=True)
class Failover:
    """What a store saw while its primary was gone: the value read once it answered again, how long each
    refused call took, and the seconds from the kill to the first answer."""

    value: bytes | None
    failures: list[float]
    recovered: float


def read_through_failover(store: RedisStore, key: str, killed: float, bound: float) -> Failover:
    """Read ``key`` until the store answers again; each refusal must be the 503 kind (SessionStoreUnavailable)
    and the store must answer within ``bound`` seconds of ``killed`` (time.monotonic())."""
    failures: list[float] = []
    while True:
        started = time.monotonic()
        try:
            value = store.get(key)
        except SessionStoreUnavailable:
            failures.append(time.monotonic() - started)
            assert time.monotonic() - killed < bound, "no new primary in time"
            time.sleep(0.05)
            continue
        return Failover(value, failures, time.monotonic() - killed)
