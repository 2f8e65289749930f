"""Real HAProxy and Apache (the distribution's binaries) on loopback ports, in directories of their own, for tests.

Each runs in the foreground as a child of the test, with its configuration, pid file, logs and runtime files in
its own directory; no system configuration is read or touched (Apache gets ``-f``/``-d`` and its own
``LoadModule`` lines, not ``a2enmod``). :meth:`stop` ends it. A missing binary fails the test with the package
to install (never a skip), as tests/factories/nginx.py does for nginx.

* :class:`HAProxy`: a minimal main configuration (``global``, ``defaults``) and the file
  ``broker proxy-config haproxy`` wrote, loaded after it (``haproxy -f main -f generated``).
* :class:`Apache`: a minimal server configuration with one ``<VirtualHost>`` serving HTTPS, which includes the
  snippet ``broker proxy-config apache`` wrote. Started as root, Apache's children run as ``nobody`` (Apache
  refuses to serve as root); the parent reads the certificates and opens the logs before it switches.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.factories.lifecycle import Service, end_process
from tests.factories.ports import free_port


def binary(name: str, package: str) -> str:
    """The program, or a failed test naming the package that provides it."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}")
                                        if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail(f"these tests run a real {name}, and no {name} binary was found (PATH, /usr/sbin): "
                    f"sudo apt-get install -y {package}", pytrace=False)
    return found


class ForegroundProxy(Service):
    """A proxy process serving on ``127.0.0.1:<port>``; subclasses give the command and the log files."""

    name = "proxy"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def command(self, *extra: str) -> list[str]:
        raise NotImplementedError

    def log_files(self) -> tuple[Path, ...]:
        return (self.directory / "stderr.log",)

    def check(self) -> subprocess.CompletedProcess[str]:
        """The proxy's own configuration test."""
        raise NotImplementedError

    def start(self) -> None:
        log = (self.directory / "stderr.log").open("wb")
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on port {self.port} within 10 s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n" + path.read_text(errors="replace")[-4000:]
                         for path in self.log_files() if path.exists())

    def stop(self) -> None:
        if self.process is None:
            return
        end_process(self.process)
        self.process = None



class HAProxy(ForegroundProxy):
    """HAProxy with the generated frontend (which carries its own ``bind`` line on :attr:`port`)."""

    name = "haproxy"

    def __init__(self, directory: Path, generated: Path, port: int) -> None:
        super().__init__(directory, port)
        self.binary = binary("haproxy", "haproxy")
        self.generated = generated
        self.main = directory / "haproxy.cfg"
        self.main.write_text("""global
    maxconn 256
    tune.ssl.default-dh-param 2048

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
""", encoding="utf-8")

    def command(self, *extra: str) -> list[str]:
        # -db: stay in the foreground, no daemon; -W would add a master process, not wanted here
        return [self.binary, "-db", "-f", str(self.main), "-f", str(self.generated), *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("-c"), capture_output=True, text=True, timeout=30, check=False)

    @staticmethod
    def combined_pem(certificate: Path, key: Path, target: Path) -> Path:
        """HAProxy's ``crt``: the certificate and its key in one file."""
        target.write_text(certificate.read_text() + key.read_text(), encoding="utf-8")
        target.chmod(0o600)
        return target


_APACHE_MODULES = ("mpm_event", "authz_core", "ssl", "socache_shmcb", "headers", "proxy", "proxy_http", "alias")


class Apache(ForegroundProxy):
    """Apache 2.4 serving HTTPS on ``127.0.0.1:<port>`` with ``vhost_body`` inside its ``<VirtualHost>``."""

    name = "apache2"

    def __init__(self, directory: Path, *, certificate: Path, key: Path, vhost_body: str,
                 port: int | None = None, modules_dir: Path = Path("/usr/lib/apache2/modules")) -> None:
        super().__init__(directory, port)
        self.binary = binary("apache2", "apache2")
        run = directory / "run"
        run.mkdir(exist_ok=True)
        self.conf = directory / "apache2.conf"
        self.error_log = directory / "error.log"
        modules = "\n".join(f"LoadModule {m}_module {modules_dir / f'mod_{m}.so'}" for m in _APACHE_MODULES)
        # as root, the children must not stay root (Apache refuses to serve so); they read nothing from this
        # directory: the parent has read the certificates and opened the logs before it switches
        user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""ServerRoot {directory}
{modules}
{user}ServerName localhost
Listen 127.0.0.1:{self.port}
PidFile {directory / "apache2.pid"}
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {self.error_log}
LogLevel warn
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
SSLSessionCache shmcb:{run / "ssl_scache"}(512000)
<VirtualHost 127.0.0.1:{self.port}>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile    {certificate}
    SSLCertificateKeyFile {key}
    {vhost_body}
</VirtualHost>
""", encoding="utf-8")

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-f", str(self.conf), "-d", str(self.directory), "-DFOREGROUND", *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, "-f", str(self.conf), "-d", str(self.directory), "-t"],
                              capture_output=True, text=True, timeout=30, check=False)

    def log_files(self) -> tuple[Path, ...]:
        return (self.directory / "stderr.log", self.error_log)
