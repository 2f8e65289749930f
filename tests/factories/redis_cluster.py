"""A Redis Cluster on loopback: private ``redis-server`` processes in cluster mode, joined with
``redis-cli --cluster create``, each on a free port (whose cluster-bus port, port + 10000, is free too) with a
directory of its own. :meth:`RedisClusterNodes.stop` (also on leaving the ``with`` block) kills them all."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from functools import partial
from pathlib import Path

import pytest
import redis

from broker.config.redis_schema import ClusterConfig, HostPort, RedisConfig
from broker.config.values import Duration, SecretFile
from tests.factories.lifecycle import Service
from tests.factories.ports import free_port
from tests.factories.redis_sentinel import (
    INSTALL_HINT,
    Node,
    RedisTls,
    redis_server_binary,
    secret_file,
    tls_config,
    wait_until,
)


def free_cluster_port(taken: frozenset[int] | set[int] = frozenset()) -> int:
    """A free port p whose cluster-bus port p + 10000 is free as well, neither of them among ``taken`` (the ports
    of nodes started a moment ago, which may not be listening yet)."""
    for _ in range(200):
        port = free_port((10_000,))
        if not {port, port + 10_000} & set(taken):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterNodes(Service):
    """``primaries`` primaries with ``replicas`` replicas each, all behind ``password``."""

    def __init__(self, workdir: Path, *, primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 1000,
                 password: str | None = None, tls: RedisTls | None = None) -> None:
        self.workdir = workdir
        self.tls = tls
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.password = password or secrets.token_hex(32)
        self.nodes: list[Node] = []

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=2,
                           socket_connect_timeout=1, retry=None,
                           **(self.tls.client_options() if self.tls is not None else {}))

    def _state_ok(self, port: int) -> bool:
        info = self.client(port).execute_command("CLUSTER INFO")  # parsed by redis-py into a dict
        return bool(info.get("cluster_state") == "ok")

    def _launch(self, name: str, taken: set[int]) -> Node:
        """A cluster node on a fresh pair of free ports (added to ``taken``)."""
        port = free_cluster_port(taken)
        taken |= {port, port + 10000}
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "nodes.conf").unlink(missing_ok=True)  # a node started again here must not find its old id
        log = (directory / "redis.log").open("ab")
        listen = ["--port", str(port)] if self.tls is None else [
            "--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
            *(arg for option, value in self.tls.server_options() for arg in (f"--{option}", value))]
        process = subprocess.Popen(
            [redis_server_binary(), "--bind", "127.0.0.1", *listen, "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(self.node_timeout_ms),
             "--save", "", "--appendonly", "no", "--dir", str(directory), "--requirepass", self.password,
             "--masterauth", self.password, "--repl-diskless-sync-delay", "0"],
            cwd=directory, stdout=log, stderr=log)
        log.close()
        return Node(name, port, directory, process)

    def _until_answering(self, i: int, taken: set[int]) -> None:
        """Wait for node ``i`` to answer. A port free when chosen may be taken before the node binds it (a client
        got it as its own ephemeral port): the node exits, and is started again on other ports."""
        for _attempt in range(3):
            node = self.nodes[i]
            wait_until(partial(self._answering_or_gone, node), f"{node.name} answering on port {node.port}")
            if node.process.poll() is None:
                return
            self.nodes[i] = self._launch(node.name, taken)
        raise RuntimeError(f"{self.nodes[i].name} exited at start three times: see {self.nodes[i].directory}")

    def _answering_or_gone(self, node: Node) -> bool:
        return node.process.poll() is not None or bool(self.client(node.port).ping())

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail(f"the Redis Cluster tests need redis-cli ({INSTALL_HINT})", pytrace=False)
        try:
            taken: set[int] = set()
            for i in range(self.primaries * (1 + self.replicas)):
                self.nodes.append(self._launch(f"node-{i}", taken))
            for i in range(len(self.nodes)):
                self._until_answering(i, taken)
            tls = [] if self.tls is None else [
                "--tls", "--cacert", str(self.tls.path("ca.crt")), "--cert", str(self.tls.path("client.crt")),
                "--key", str(self.tls.path("client.key"))]
            created = subprocess.run(
                [cli, *tls, "-a", self.password, "--no-auth-warning", "--cluster", "create", *self.addresses,
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=60, check=False)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
            for node in self.nodes:
                wait_until(partial(self._state_ok, node.port), f"{node.name} seeing the cluster ok", timeout=30)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()



def cluster_config(nodes: RedisClusterNodes, *, prefix: str = "broker:", socket_timeout: float = 0.5) -> RedisConfig:
    """The ``redis:`` section (as the loader would make it) for the broker to use ``nodes``."""
    secrets_dir = nodes.workdir / "broker-secrets"
    secrets_dir.mkdir(exist_ok=True)
    password = secret_file(secrets_dir, "redis-password", nodes.password)
    return RedisConfig(cluster=ClusterConfig(addresses=tuple(HostPort("127.0.0.1", n.port) for n in nodes.nodes)),
                       password_file=SecretFile(password, nodes.password.encode()), key_prefix=prefix,
                       socket_timeout=Duration(socket_timeout),
                       tls=tls_config(nodes.tls) if nodes.tls is not None else None)
