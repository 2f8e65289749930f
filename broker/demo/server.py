"""``broker demo``: the broker and a demo SP in one HTTPS server on localhost.

The server requests a client certificate, advertises exactly the configured
municipal CA names, and accepts whatever certificate arrives, so the broker
(not the TLS layer) decides and explains (:mod:`broker.pki.tls`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

from broker.app import create_app, reload_configuration
from broker.config.loader import load_settings
from broker.demo.check import run_checks
from broker.demo.idp import DEMO_IDP_USERS, DemoIdp, demo_idp_app
from broker.demo.materials import DEMO_USERS, P12_PASSWORD, DemoLayout, generate, revocation_base_url
from broker.demo.revocation_server import DemoRevocationServer
from broker.demo.sp import DemoSp, demo_sp_app
from broker.pki.tls import ClientCertTLS


def find_example_config() -> Path:
    """config/example of the source tree this package runs from (or of the current directory)."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / "example", Path.cwd() / "config" / "example"]
    for c in candidates:
        if (c / "broker.yaml").is_file():
            return c
    raise FileNotFoundError("config/example not found; run the demo from the source tree or pass --example")


def build_server(workdir: Path, example: Path, host: str, port: int, *, regenerate: bool = False,
                 quiet: bool = False) -> tuple[BaseWSGIServer, DemoLayout, str]:
    """The demo's HTTPS server; its revocation server (OCSP, CRLs) on port + 1 starts with it."""
    xmlsec = shutil.which("xmlsec1")
    if xmlsec is None:
        raise RuntimeError("the demo SP (pysaml2) needs the xmlsec1 program: sudo apt-get install -y xmlsec1")
    base_url = f"https://{host}:{port}"
    now = dt.datetime.now(dt.UTC)
    layout = generate(workdir, example, now, base_url=base_url, regenerate=regenerate)
    settings = load_settings(layout.config)
    broker_app = create_app(settings, allow_memory_store=True, instance_id="demo")
    idp_metadata = broker_app.extensions["broker"].metadata.document()
    sp = DemoSp(layout.sp_settings(base_url, xmlsec), idp_metadata, settings.broker.idp.entity_id)
    mounts: dict[str, WSGIApplication] = {"/demo-sp": demo_sp_app(sp)}
    broker_sp_metadata = broker_app.extensions["broker"].sp_metadata
    if broker_sp_metadata is not None:  # Kommun C's own IdP, to which the broker is an SP
        municipal_idp = DemoIdp(layout.idp_settings(base_url, xmlsec), broker_sp_metadata.document())
        mounts["/demo-idp"] = demo_idp_app(municipal_idp)
    app = DispatcherMiddleware(broker_app, mounts)
    chain = x509.load_pem_x509_certificates((layout.tls / "server.pem").read_bytes())
    client_cas = [c for m in settings.municipalities.values() if m.config.certificate is not None
                  for c in (*m.config.certificate.anchors(), *m.config.certificate.intermediate_certificates())]
    tls = ClientCertTLS(chain, (layout.tls / "server.key").read_bytes(), client_cas)
    server = make_server(host, port, app, threaded=True, ssl_context=tls)  # type: ignore[arg-type]
    revocation = DemoRevocationServer(layout, host, port + 1)
    revocation.start()
    _close = server.server_close

    def server_close() -> None:  # the revocation server lives as long as the demo server
        revocation.shutdown()
        revocation.server_close()
        _close()

    server.server_close = server_close  # type: ignore[method-assign]
    server.broker_app = broker_app  # type: ignore[attr-defined]
    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return server, layout, base_url


def instructions(layout: DemoLayout, base_url: str) -> str:
    users = layout.users
    ca = layout.tls / "ca.pem"
    lines = [
        "",
        "The broker demo is running.",
        "",
        f"  Open {base_url}/demo-sp/ and log in with a demo user's certificate.",
        f"  Import a certificate into your browser: {users}/<user>.p12 (password: {P12_PASSWORD.decode()}).",
        f"  The server's TLS certificate comes from a demo CA: {ca}",
        f"  What the broker sees of your certificate: {base_url}/diagnose",
        f"  Kommun B's OCSP responder and CRLs: {revocation_base_url(base_url)}/ocsp/kommun-b, /crl/...",
        f"  Audit trail: {layout.config / 'audit'}/  (check it: broker audit verify {layout.config / 'audit'} "
        f"--config {layout.config})",
        "",
        "  Demo users:",
    ]
    for u in DEMO_USERS:
        expected = "logs in" if u.expected == "success" else f"refused: {u.expected}"
        lines.append(f"    {u.name:<8} {u.municipality or '-':<9} {u.about} -> {expected}")
    lines += ["", "  Kommun C logs in with its own IdP (a pysaml2 IdP at /demo-idp/): log in at the demo SP without",
              "  a certificate, choose Kommun C, then one of its users:"]
    for iu in DEMO_IDP_USERS:
        lines.append(f"    {iu.name:<8} kommun-c  {iu.about}")
    lines.append(f"  Log a Kommun C user out from the IdP side: {base_url}/demo-idp/logout/<user>")
    lines += [
        "",
        "  Try one with curl (follows the SP-initiated login up to the broker's answer):",
        f"    curl --cacert {ca} --cert {users}/anna.pem --key {users}/anna.key -L -c /tmp/jar -b /tmp/jar \\",
        f"         {base_url}/demo-sp/login",
        f"    curl --cacert {ca} --cert {users}/david.pem --key {users}/david.key {base_url}/diagnose",
        "",
        "  `broker demo --check` runs every demo user's login and prints a table.",
        f"  Go-live readiness of every municipality against this server: broker readiness --config {layout.config} "
        f"--ca-file {ca} --login",
        "  Stop with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)


def run(workdir: Path, example: Path | None, host: str, port: int, *, check: bool, regenerate: bool) -> int:
    example = example or find_example_config()
    server, layout, base_url = build_server(workdir, example, host, port, regenerate=regenerate, quiet=check)
    if not check:
        broker_app = server.broker_app  # type: ignore[attr-defined]
        # `broker reload --pid <pid>` (or kill -HUP): edits in the demo's config directory take effect
        signal.signal(signal.SIGHUP, lambda _s, _f: reload_configuration(broker_app, layout.config))
        # stopped by a service manager or container runtime (SIGTERM) as by Ctrl-C: a clean exit, whose atexit
        # seals the audit chain; Python's default for SIGTERM ends the process without it
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            sys.stdout.write(instructions(layout, base_url))  # after the handlers: ready once it says so
            sys.stdout.flush()
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        return run_checks(layout, base_url, out=sys.stdout)
    finally:
        server.shutdown()
        server.server_close()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def default_workdir() -> Path:
    return Path(os.environ.get("BROKER_DEMO_DIR", "var/demo"))
