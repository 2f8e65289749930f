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
import subprocess
from pathlib import Path

from tests.factories.proxies import ForegroundProxy, binary


def nginx_binary() -> str:
    """The nginx program, or a failed test naming the package that provides it."""
    return binary("nginx", "nginx-light")


def _user_directive() -> str:
    """Workers run as the test's own user: as root nginx would otherwise switch them to ``nobody``, who cannot
    reach the prefix inside the test's private temporary directory."""
    if os.geteuid() != 0:
        return ""  # the directive is ignored (with a warning) unless the master runs as root
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"


class Nginx(ForegroundProxy):
    """nginx serving HTTPS on ``127.0.0.1:<port>`` with ``server_body`` inside its server block; or, with
    ``http_body``, with that text (upstream and server blocks of one's own, e.g. a conf.d file) as the whole
    inside of the http block, listening where it says. ``workers``, ``connections`` and ``main`` (more
    directives of the main context), ``access_log`` (its options) and ``error_level`` serve the load test."""

    name = "nginx"

    def __init__(self, prefix: Path, *, certificate: Path, key: Path, server_body: str = "",
                 port: int | None = None, server_name: str = "localhost", http_body: str | None = None,
                 workers: str = "1", connections: int = 128, main: str = "",
                 access_log: str = "", error_level: str = "info") -> None:
        super().__init__(prefix, port)
        self.binary = nginx_binary()
        self.prefix = prefix
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
{_user_directive()}worker_processes {workers};
{main}pid {prefix / 'nginx.pid'};
error_log {self.error_log} {error_level};
events {{ worker_connections {connections}; }}
http {{
    access_log {self.access_log}{access_log};
{temp}
{server}
}}
""", encoding="utf-8")

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log), *extra]

    def log_files(self) -> tuple[Path, ...]:
        return (self.directory / "stderr.log", self.error_log)

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on this configuration."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30, check=False)
