"""A real nginx (the distribution's binary) on a loopback port, in a prefix directory of its own, for tests.

The server block is the minimal one an operator writes around the broker's generated snippet::

    server {
        listen 127.0.0.1:<port> ssl;
        ssl_certificate ...; ssl_certificate_key ...;
        include <out>/broker-client-auth.conf;
    }

nginx runs in the foreground (``daemon off``) as a child of the test, with its pid file, logs and temporary
directories in its prefix; :meth:`Nginx.stop` ends it. A missing nginx binary fails the test with the
package to install (never a skip).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from tests.factories.redis_server import free_port

INSTALL_HINT = "sudo apt-get install -y nginx-light"


def nginx_binary() -> str:
    """The nginx program, or a failed test naming the package that provides it."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail(f"these tests run a real nginx, and no nginx binary was found (PATH, /usr/sbin): {INSTALL_HINT}",
                    pytrace=False)
    return found


def _user_directive() -> str:
    """Workers run as the test's own user: as root nginx would otherwise switch them to ``nobody``, who cannot
    reach the prefix inside the test's private temporary directory."""
    if os.geteuid() != 0:
        return ""  # the directive is ignored (with a warning) unless the master runs as root
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"


class Nginx:
    """nginx serving HTTPS on ``127.0.0.1:<port>`` with ``server_body`` inside its server block; or, with
    ``http_body``, with that text (upstream and server blocks of one's own, e.g. a conf.d file) as the whole
    inside of the http block, listening where it says."""

    def __init__(self, prefix: Path, *, certificate: Path, key: Path, server_body: str = "",
                 port: int | None = None, server_name: str = "localhost", http_body: str | None = None) -> None:
        self.binary = nginx_binary()
        self.prefix = prefix
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.error_log = prefix / "logs" / "error.log"
        self.access_log = prefix / "logs" / "access.log"
        temp = "\n".join(f"    {name}_temp_path {prefix / 'tmp' / name};"
                         for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        server = http_body if http_body is not None else f"""    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name {server_name};
        ssl_certificate     {certificate};
        ssl_certificate_key {key};
        {server_body}
    }}"""
        self.conf.write_text(
            f"""daemon off;
{_user_directive()}worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {self.error_log} info;
events {{ worker_connections 128; }}
http {{
    access_log {self.access_log};
{temp}
{server}
}}
""", encoding="utf-8")

    def _command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log), *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on this configuration."""
        return subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30, check=False)

    def start(self) -> None:
        log = (self.prefix / "logs" / "stderr.log").open("wb")
        try:
            self.process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on port {self.port} within 10 s:\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.prefix / "logs" / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown of the master and its workers
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
