"""The stack under load, all on loopback in a directory of its own.

* demo material (``broker.demo.materials.generate``): the PKI with anna's certificate (Kommun A, LoA 3),
  the TLS CA and server certificate, the demo SP's key, and a copy of config/example;
* broker.yaml of that copy changed for the test: Redis with a key prefix of this run's own, and
  127.0.0.1/32 as the trusted proxy (nginx, or the load generator itself in direct mode);
* Redis: the given server (the prefix's keys are removed afterwards), or a private ``redis-server``;
* ``instances`` times ``broker serve`` (gunicorn), one HTTP port each, sharing Redis and the audit directory;
* with ``via="nginx"``: nginx in front of them (:mod:`bench.loadgen.nginx`), configured from the files
  ``broker proxy-config nginx`` writes.

:class:`CpuMeter` reads the CPU time of those processes from /proc (utime + stime of the gunicorn masters
and their workers, the nginx master and its workers) and Redis's own count (``INFO cpu``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import redis
import yaml

from bench.loadgen.nginx import UPSTREAM, LoadNginx
from broker.demo.materials import DemoLayout, generate
from tests.factories.lifecycle import Service
from tests.factories.redis_server import RedisServer, free_port
from tests.factories.serve import BrokerServe

REPO = Path(__file__).resolve().parents[2]
_ACCESS_LINE = re.compile(r"^\S+ - \[[^]]+\] \"")   # broker.access_log: 127.0.0.1 - [date] "GET /path ...
EXAMPLE = REPO / "config" / "example"
USER = "anna"   # Kommun A: HSA-id, LoA 3, revocation from CRL files


@dataclass(frozen=True)
class StackOptions:
    via: str                  # "nginx" or "direct"
    instances: int
    workers: int
    threads: int
    nginx_workers: str        # nginx's worker_processes ("auto" or a number)
    upstream_keepalive: int   # idle keep-alive connections per nginx worker to the instances
    redis_url: str
    private_redis: bool
    workdir: Path
    signing_backend: str = "cryptography"   # idp.signing.backend: cryptography or libxmlsec1 (in process), xmlsec1


class Stack(Service):
    """Start with ``with Stack(options) as stack``; everything started is stopped on exit."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.layout: DemoLayout | None = None
        self.redis_server: RedisServer | None = None
        self.redis_url = options.redis_url
        self.prefix = f"load:{secrets.token_hex(6)}:"
        self.instances: list[BrokerServe] = []
        self.nginx: LoadNginx | None = None
        self.nginx_port = 0
        self.header = "X-SSL-Client-Cert"
        self.idp_entity_id = ""
        self.idp_metadata = b""

    # --- what the load generators need ----------------------------------------------------------

    @property
    def demo(self) -> DemoLayout:
        assert self.layout is not None
        return self.layout

    @property
    def targets(self) -> tuple[str, ...]:
        if self.options.via == "nginx":
            return (f"https://127.0.0.1:{self.nginx_port}",)
        return tuple(instance.url for instance in self.instances)

    @property
    def client_cert(self) -> tuple[str, str] | None:
        users = self.demo.users
        return (str(users / f"{USER}.pem"), str(users / f"{USER}.key")) if self.options.via == "nginx" else None

    @property
    def ca_file(self) -> str | None:
        return str(self.demo.tls / "ca.pem") if self.options.via == "nginx" else None

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Direct mode: the headers nginx would set (its snippet), the certificate escaped as
        ``$ssl_client_escaped_cert`` is; through nginx the client sends none of them."""
        if self.options.via == "nginx":
            return ()
        pem = (self.demo.users / f"{USER}.pem").read_text()
        return ((self.header, quote(pem)), ("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-Proto", "https"))

    # --- start and stop ---------------------------------------------------------------------------

    def start(self) -> None:
        options = self.options
        self.layout = generate(options.workdir / "demo", EXAMPLE, dt.datetime.now(dt.UTC))
        config = self.layout.config
        if options.private_redis:
            (options.workdir / "redis").mkdir(parents=True, exist_ok=True)
            self.redis_server = RedisServer(options.workdir / "redis")
            self.redis_server.start()
            self.redis_url = self.redis_server.url
        self._overlay(config)

        self.instances = [BrokerServe(config, options.workdir / f"instance-{i + 1}", redis_url=self.redis_url,
                                      workers=options.workers, threads=options.threads)
                          for i in range(options.instances)]
        out = options.workdir / "proxy"
        with ThreadPoolExecutor(max_workers=options.instances + 1) as pool:
            written = pool.submit(self._proxy_config, config, out) if options.via == "nginx" else None
            list(pool.map(lambda instance: instance.start(timeout=60), self.instances))
            if written is not None:
                written.result()
        with urllib.request.urlopen(self.instances[0].url + "/saml/idp/metadata", timeout=30) as answer:
            self.idp_metadata = answer.read()

        if options.via == "nginx":
            self.nginx_port = free_port()
            self.nginx = LoadNginx(options.workdir / "nginx", port=self.nginx_port,
                                   certificate=self.layout.tls / "server.pem", key=self.layout.tls / "server.key",
                                   snippet=out / "broker-client-auth.conf",
                                   instances=[i.url.split("://", 1)[1] for i in self.instances],
                                   workers=options.nginx_workers, upstream_keepalive=options.upstream_keepalive)
            self.nginx.start()

    @staticmethod
    def _proxy_config(config: Path, out: Path) -> None:
        written = subprocess.run(
            [sys.executable, "-m", "broker.cli", "proxy-config", "nginx", "--config", str(config),
             "--out", str(out), "--upstream", f"http://{UPSTREAM}"],
            capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
        if written.returncode != 0:
            raise RuntimeError(f"broker proxy-config nginx failed:\n{written.stdout}{written.stderr}")

    def _overlay(self, config: Path) -> None:
        path = config / "broker.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        # nginx connects from 127.0.0.1; in direct mode the load generator sends the header from there itself
        data["client_certificate"]["proxy"]["trusted_networks"] = ["127.0.0.1/32"]
        self.header = data["client_certificate"]["proxy"].get("header", self.header)
        data["redis"] = {"url": self.redis_url, "key_prefix": self.prefix}
        data["idp"]["signing"]["backend"] = self.options.signing_backend
        self.idp_entity_id = data["idp"]["entity_id"]
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        if self.instances:
            with ThreadPoolExecutor(max_workers=len(self.instances)) as pool:
                list(pool.map(lambda instance: instance.stop(), self.instances))
        if self.redis_server is not None:
            self.redis_server.stop()
            self.redis_server = None
            return
        client = redis.Redis.from_url(self.redis_url)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=self.prefix + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        except redis.RedisError as exc:
            print(f"load: the keys {self.prefix}* could not be removed from Redis: {exc}", file=sys.stderr)
        finally:
            client.close()

    def logs(self) -> str:
        """The instances' logs without their access-log lines, and nginx's error log."""
        parts = []
        for i, instance in enumerate(self.instances):
            lines = [line for line in instance.log(200_000).splitlines() if not _ACCESS_LINE.match(line)]
            parts.append(f"--- instance {i + 1} (serve.log, access lines left out)\n" + "\n".join(lines[-60:]))
        if self.nginx is not None:
            parts.append(self.nginx.logs())
        return "\n".join(parts)


    # --- CPU ------------------------------------------------------------------------------------

    def meter(self) -> CpuMeter:
        groups = {"broker": [i.pid for i in self.instances]}
        if self.nginx is not None:
            groups["nginx"] = [self.nginx.pid]
        return CpuMeter(groups, self.redis_url)


_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds) of every process now: utime + stime, plus cutime + cstime, the children
    it has waited for (the `xmlsec1` processes of the xmlsec1 signing backend)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        # after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        # cutime cstime
        found[int(stat.parent.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK)
    return found


@dataclass(frozen=True)
class CpuReading:
    processes: dict[str, dict[int, float]]   # group → pid → CPU seconds so far
    redis: float | None                      # the Redis server's own count (all its clients)


class CpuMeter:
    """CPU seconds of process groups (each a list of parents, counted with their children)."""

    def __init__(self, groups: dict[str, list[int]], redis_url: str) -> None:
        self.groups = groups
        self.redis_url = redis_url

    def read(self) -> CpuReading:
        table = _processes()
        processes: dict[str, dict[int, float]] = {}
        for name, parents in self.groups.items():
            members = {pid for pid, (ppid, _) in table.items() if pid in parents or ppid in parents}
            processes[name] = {pid: table[pid][1] for pid in members}
        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            info = cast("dict[str, Any]", client.info("cpu"))  # redis-py types sync and async answers alike
            client.close()
            used: float | None = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except redis.RedisError:
            used = None
        return CpuReading(processes, used)

    @staticmethod
    def spent(before: CpuReading, after: CpuReading) -> tuple[dict[str, float], list[str]]:
        """CPU seconds per group between two readings, and notes on processes that came or went."""
        spent: dict[str, float] = {}
        notes = []
        for name, now in after.processes.items():
            then = before.processes.get(name, {})
            spent[name] = sum(seconds - then.get(pid, 0.0) for pid, seconds in now.items())
            gone = sorted(set(then) - set(now))
            if gone:
                notes.append(f"{name}: processes {gone} ended during the run (their CPU time is not counted)")
            new = sorted(set(now) - set(then))
            if new:
                notes.append(f"{name}: processes {new} started during the run")
        if before.redis is not None and after.redis is not None:
            spent["redis"] = after.redis - before.redis
        return spent, notes
