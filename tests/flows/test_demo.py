"""`broker demo --check`: the demo's HTTPS server (pyOpenSSL, client certificates requested and never
refused in the handshake) and every demo user's login against the real pysaml2 SP, in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from broker.config.loader import load_settings
from broker.demo.server import build_server
from broker.pki.tls import read_client_ca_list
from tests.conftest import EXAMPLE
from tests.factories.ports import free_port_pair


def test_demo_check_passes_for_every_user(tmp_path: Path) -> None:
    env = {**os.environ, "BROKER_DEMO_DIR": str(tmp_path / "demo")}
    env.pop("REDIS_URL", None)  # the demo's embedded store
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "demo", "--check", "--port", str(free_port_pair())],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert "9/9 as expected" in table
    for user, outcome in [("anna", "success"), ("bo", "success"), ("cecilia", "revoked"), ("greta", "revoked"),
                          ("david", "certificate_expired"), ("erik", "eku_not_client_auth"),
                          ("fatima", "issuer_unknown"), ("karin", "success"), ("lars", "success")]:
        row = next(line for line in table.splitlines() if line.startswith(user + " "))
        assert row.split()[3] == outcome
    assert "loa3" in next(line for line in table.splitlines() if line.startswith("anna "))


def test_demo_server_advertises_exactly_the_municipal_cas_and_accepts_any_certificate(tmp_path: Path) -> None:
    port = free_port_pair()
    server, layout, _base_url = build_server(tmp_path / "demo", EXAMPLE, "localhost", port, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = load_settings(layout.config)
        certificate_logins = [m.config.certificate for m in settings.municipalities.values()
                              if m.config.certificate is not None]  # Kommun C logs in with its own IdP
        assert len(certificate_logins) == 2
        expected = {c.subject for login in certificate_logins
                    for c in (*login.anchors(), *login.intermediate_certificates())}
        assert set(read_client_ca_list("127.0.0.1", port, server_name="localhost")) == expected

        # fatima's CA is not advertised, yet the handshake completes: the broker, not TLS, refuses her
        ctx = ssl.create_default_context(cafile=str(layout.tls / "ca.pem"))
        ctx.load_cert_chain(str(layout.users / "fatima.pem"), str(layout.users / "fatima.key"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /diagnose?lang=en HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := tls.recv(65536):
                body += chunk
        text = body.decode()
        assert text.startswith("HTTP/1.1 200")
        assert "issuer_unknown" in text
        assert "Unknown Demo Person CA" in text
    finally:
        server.shutdown()
        server.server_close()


def test_demo_stopped_by_sigterm_seals_its_audit_chain(tmp_path: Path) -> None:
    """A demo stopped as a service manager or container runtime stops it (SIGTERM), not only by Ctrl-C, seals its
    chain at shutdown as the README says: `broker audit verify` finds it closed, with no unsealed records."""
    env = {**os.environ, "BROKER_DEMO_DIR": str(tmp_path / "demo")}
    env.pop("REDIS_URL", None)
    with subprocess.Popen([sys.executable, "-m", "broker.cli", "demo", "--port", str(free_port_pair())],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if "Stop with Ctrl-C" in line:
                    break
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()

    verified = subprocess.run([sys.executable, "-m", "broker.cli", "audit", "verify", "--config",
                               str(tmp_path / "demo" / "config")], capture_output=True, text=True, timeout=60,
                              check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    demo_chains = [line for line in verified.stdout.splitlines() if line.startswith("demo.")]
    assert len(demo_chains) == 1
    assert demo_chains[0].endswith(", closed"), verified.stdout
    assert "not sealed" not in verified.stdout
