"""``broker serve`` (gunicorn) as a subprocess on a free loopback port, as an operator starts it.

The environment is the test's, with ``REDIS_URL`` set and, unless the test gives one,
``PROMETHEUS_MULTIPROC_DIR`` removed (``broker serve`` then makes its own). gunicorn's control socket goes
to the server's own directory (``XDG_RUNTIME_DIR``), not to the user's home. The master's output (gunicorn's
log, the access log, the broker's log) is kept in ``serve.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.factories.lifecycle import Service, end_process
from tests.factories.ports import free_port


class BrokerServe(Service):
    def __init__(self, config_dir: Path, workdir: Path, *, redis_url: str, workers: int = 2, threads: int = 2,
                 metrics_dir: Path | None = None, from_config: bool = False) -> None:
        """``from_config``: start with ``--config`` and ``--pid-file`` only, so that the listen address, workers
        and threads come from broker.yaml's ``server`` section (the caller writes ``bind`` with :attr:`port`)."""
        self.config_dir = config_dir
        self.from_config = from_config
        self.workdir = workdir
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.pid_file = workdir / "broker.pid"
        self.log_file = workdir / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self.env.update(REDIS_URL=redis_url, XDG_RUNTIME_DIR=str(workdir), PYTHONUNBUFFERED="1")
        if metrics_dir is not None:
            self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        flags = [] if self.from_config else ["--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                                             "--threads", str(self.threads)]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "broker.cli", "serve", "--config", str(self.config_dir), *flags,
                 "--pid-file", str(self.pid_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200 and self.pid_file.exists():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"broker serve did not answer /healthz within {timeout} s:\n{self.log()}")

    def workers_now(self) -> set[int]:
        """The PIDs of the master's children (its workers)."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # ended meanwhile
            if int(fields[1]) == self.pid and fields[0] != "Z":  # ppid; a zombie is no worker
                found.add(int(stat.parent.name))
        return found

    def log(self, tail: int = 6000) -> str:
        return self.log_file.read_text(errors="replace")[-tail:] if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        end_process(self.process, signal.SIGINT, grace=15)  # gunicorn: quick shutdown of master and workers
        self.process = None



def serving_from_config(config_dir: Path, workdir: Path, *, redis_url: str, redis_prefix: str,
                        server: dict[str, Any], edit: Callable[[dict[str, Any]], None] | None = None) -> BrokerServe:
    """A :class:`BrokerServe` that takes its listener, workers and threads from broker.yaml: ``server`` (without
    ``bind``, which is the new instance's port) becomes broker.yaml's ``server`` section, the Redis is
    ``redis_url`` under ``redis_prefix``, and ``edit`` may change the rest of broker.yaml first."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["redis"] = {"url": redis_url, "key_prefix": redis_prefix}
    if edit is not None:
        edit(data)
    serve = BrokerServe(config_dir, workdir, redis_url=redis_url, from_config=True)
    data["server"] = {"bind": f"127.0.0.1:{serve.port}", **server}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return serve
