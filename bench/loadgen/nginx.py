"""nginx in front of the broker instances, as production runs it: TLS with the client-certificate request and
the header from the snippet ``broker proxy-config nginx --upstream http://broker`` writes, and an
``upstream broker`` block with every instance and keep-alive connections to them.

The server block is the minimal one around the generated snippet. The
upstream keep-alive idle timeout (1 s) stays below gunicorn's keep-alive (2 s), so nginx never reuses a
connection gunicorn is closing.
"""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

from tests.factories.nginx import Nginx

UPSTREAM = "broker"


class LoadNginx(Nginx):
    """nginx on ``127.0.0.1:port`` (HTTPS) proxying to ``instances`` (``host:port`` each)."""

    def __init__(self, prefix: Path, *, port: int, certificate: Path, key: Path, snippet: Path,
                 instances: list[str], workers: str, upstream_keepalive: int) -> None:
        servers = "\n".join(f"        server {address};" for address in instances)
        _, files = resource.getrlimit(resource.RLIMIT_NOFILE)   # nginx may raise its limit up to the hard one
        files = 65536 if files == resource.RLIM_INFINITY else min(files, 65536)
        http = f"""    upstream {UPSTREAM} {{
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
    }}"""
        super().__init__(prefix, certificate=certificate, key=key, port=port, http_body=http, workers=workers,
                         connections=files // 2, main=f"worker_rlimit_nofile {files};\n",
                         access_log=" combined buffer=64k flush=1s", error_level="warn")

    def version(self) -> str:
        done = subprocess.run([self.binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
        return done.stderr.strip().rsplit("/", 1)[-1]

    def start(self) -> None:
        checked = self.check()
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
        super().start()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid
