"""What the samlify peers of the interoperability tests share: a script of tests/peers/samlify run with ``node`` on a
free loopback port, and plain HTTP to it.

:class:`NodePeer` starts the script with the arguments a subclass gives (the script listens on port 0 and prints
``{"port": N}`` once it listens), logs its stderr to the test's directory, and ends it. :meth:`NodePeer.exchange`
sends one request and returns the :class:`Answer`; what the script refused becomes :class:`SamlifyRefused`. Without
Node.js or the packages of ``tests/peers/samlify/package-lock.json`` the tests fail with the command that installs
them, never a skip.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography import x509

from tests.factories.lifecycle import Service, end_process
from tests.factories.metadata import SigningKey

REPO = Path(__file__).resolve().parents[2]
PEER_DIR = REPO / "tests" / "peers" / "samlify"
INSTALL_COMMAND = "npm ci --prefix tests/peers/samlify"
NODE_HINT = "Node.js 20 or later (node on PATH)"


def _node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail(f"the samlify interop tests run samlify under Node.js, which is not installed: {NODE_HINT}, "
                    f"then `{INSTALL_COMMAND}`", pytrace=False)
    return found


def _installed() -> None:
    """The packages of package-lock.json are in node_modules (the dev script runs :data:`INSTALL_COMMAND`)."""
    wanted = json.loads((PEER_DIR / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        manifest = PEER_DIR / "node_modules" / name / "package.json"
        found = json.loads(manifest.read_text())["version"] if manifest.exists() else None
        if found != version:
            have = f"version {found} is installed" if found else "it is not installed"
            pytest.fail(f"the samlify interop tests need the Node package {name} {version} in "
                        f"tests/peers/samlify/node_modules, and {have}: run `{INSTALL_COMMAND}` from the repository "
                        "root (the dev script does)", pytrace=False)


@dataclass(frozen=True)
class KeyFiles:
    """An RSA-2048 key (PEM) and its self-signed SHA-256 certificate, written where a samlify script reads them."""

    key_file: Path
    cert_file: Path

    @classmethod
    def generate(cls, directory: Path, stem: str, common_name: str, now: dt.datetime) -> KeyFiles:
        return cls(*SigningKey.generate(common_name, now).write(directory, stem))

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())


class SamlifyRefused(Exception):
    """samlify (or the script around it) refused a message: HTTP 400 with samlify's error, and what the script added
    (the SP's ``status_response_signature``: whether samlify's verifier verifies an error Response's signature)."""

    def __init__(self, status: int, error: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"samlify refused the message ({status}): {error}")
        self.status = status
        self.error = error
        self.details = details or {}


@dataclass(frozen=True)
class Answer:
    """The script's answer: errors as JSON (sp.js) or text (idp.js), the one-line error in X-Samlify-Error, and what
    samlify read from an inbound message in X-Samlify-Extract."""

    status: int
    headers: dict[str, str]
    body: bytes

    def refused_unless(self, *expected: int) -> None:
        if self.status in expected:
            return
        error, details = self.headers.get("x-samlify-error", ""), {}
        if self.headers.get("content-type", "").startswith("application/json"):
            details = json.loads(self.body)
            error = str(details.pop("error", error))
        elif not error:
            error = self.body.decode(errors="replace").strip()
        raise SamlifyRefused(self.status, error, details)

    @property
    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    @property
    def extract(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.headers["x-samlify-extract"])
        return found


class NodePeer(Service):
    """``node <script> <arguments()> --host 127.0.0.1 --port 0`` in :data:`PEER_DIR`, for as long as it is started."""

    script: Path

    def __init__(self, workdir: Path, start_timeout: float = 60.0) -> None:
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._log: IO[bytes] | None = None

    def arguments(self) -> list[str]:
        """The script's own options (its keys, its entity ID ...)."""
        raise NotImplementedError

    @property
    def log_file(self) -> Path:
        return self.workdir / f"samlify-{self.script.stem}.log"

    @property
    def base_url(self) -> str:
        assert self.port is not None, "not started"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        node = _node()
        _installed()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("wb")
        self.process = subprocess.Popen(
            [node, str(self.script), *self.arguments(), "--host", "127.0.0.1", "--port", "0"],
            cwd=PEER_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        assert self.process.stdout is not None
        self.port = int(json.loads(self._first_line(self.process.stdout))["port"])

    def _first_line(self, stdout: IO[bytes]) -> bytes:
        """The line the script prints once it listens; fail with its log if it exits or stays silent."""
        deadline = time.monotonic() + self.start_timeout
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            assert self.process is not None
            if remaining <= 0 or self.process.poll() is not None:
                raise RuntimeError(f"samlify's {self.script.name} did not start (exit code {self.process.poll()}):\n"
                                   f"{self.log()}")
            if select.select([stdout], [], [], min(remaining, 0.2))[0]:
                buffer += os.read(stdout.fileno(), 4096)
        return buffer.split(b"\n", 1)[0]

    def log(self, tail: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-tail:] if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, grace=5)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def exchange(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Answer:
        """One HTTP request to the script (``path`` with its query); header names in lower case."""
        assert self.port is not None, "not started"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return Answer(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        finally:
            connection.close()
