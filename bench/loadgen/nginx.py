"""nginx in front of the broker instances, as production runs it: TLS with the client-certificate request and
the header from the snippet ``broker proxy-config nginx --upstream http://broker`` writes, and an
``upstream broker`` block with every instance and keep-alive connections to them.

The server block is the minimal one around the generated snippet. The
upstream keep-alive idle timeout (1 s) stays below gunicorn's keep-alive (2 s), so nginx never reuses a
connection gunicorn is closing.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
import shutil
import socket
import subprocess
import time
from pathlib import Path

UPSTREAM = "broker"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    if found is None:
        raise RuntimeError("no nginx binary (PATH, /usr/sbin): sudo apt-get install -y nginx-light")
    return found


def _user_directive() -> str:
    """As root, nginx would switch its workers to ``nobody``, who cannot read the temporary directory."""
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"


class LoadNginx:
    """nginx on ``127.0.0.1:port`` (HTTPS) proxying to ``instances`` (``host:port`` each)."""

    def __init__(self, prefix: Path, *, port: int, certificate: Path, key: Path, snippet: Path,
                 instances: list[str], workers: str, upstream_keepalive: int) -> None:
        self.binary = nginx_binary()
        self.prefix = prefix
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.error_log = prefix / "logs" / "error.log"
        temp = "\n".join(f"    {name}_temp_path {prefix / 'tmp' / name};"
                         for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        servers = "\n".join(f"        server {address};" for address in instances)
        _, files = resource.getrlimit(resource.RLIMIT_NOFILE)   # nginx may raise its limit up to the hard one
        files = 65536 if files == resource.RLIM_INFINITY else min(files, 65536)
        self.conf.write_text(f"""daemon off;
{_user_directive()}worker_processes {workers};
worker_rlimit_nofile {files};
pid {prefix / 'nginx.pid'};
error_log {self.error_log} warn;
events {{ worker_connections {files // 2}; }}
http {{
    access_log {prefix / 'logs' / 'access.log'} combined buffer=64k flush=1s;
{temp}
    upstream {UPSTREAM} {{
{servers}
        keepalive {upstream_keepalive};
        keepalive_timeout 1s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate     {certificate};
        ssl_certificate_key {key};
        ssl_protocols       TLSv1.2 TLSv1.3;
        ssl_session_cache   shared:SSL:10m;
        include {snippet};
    }}
}}
""", encoding="utf-8")

    def _command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log), *extra]

    def version(self) -> str:
        done = subprocess.run([self.binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
        return done.stderr.strip().rsplit("/", 1)[-1]

    def start(self) -> None:
        checked = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30, check=False)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
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

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

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
