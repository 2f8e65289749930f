"""Where the CPU time of one certificate login goes: bench/login_wsgi.py with a thread-CPU timer on each step.

    .venv/bin/python bench/login_breakdown.py [--logins 2000]

Each listed step of the broker is wrapped, for this run only, with a timer of the calling thread's CPU time
(time.thread_time: what the step costs this process, waiting for Redis or the disk not included unless the
kernel works for it). Steps nest: the view contains the flow, the flow contains the Response, the Response
contains the signature. Printed per login, largest first, after login_wsgi's own report.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flask
import login_wsgi

from broker.audit.trail import AuditTrail
from broker.flow.login import LoginFlow
from broker.pki.validator import CertificateValidator
from broker.saml.authnrequest import AuthnRequestParser
from broker.saml.response import ResponseBuilder
from broker.saml.xmldsig import Libxmlsec1Signer, XmlSigner
from broker.session.rate_limit import FailureLimiter
from broker.session.sessions import SessionManager
from broker.web import respond

STEPS: list[tuple[object, str, str]] = [
    (flask.Flask, "wsgi_app", "the whole request in the WSGI app (Flask, the view, the page)"),
    (LoginFlow, "start", "the login flow (everything below but the page and the audit fsync)"),
    (ResponseBuilder, "success", "the Response: built and signed"),
    (XmlSigner, "sign", "  of it the XML signature (exc-c14n, SHA-256, RSA-2048)"),
    (Libxmlsec1Signer, "sign", "  of it the XML signature (exc-c14n, SHA-256, RSA-2048)"),
    (CertificateValidator, "validate", "certificate: path (cached), profile (cached), CRL lookup"),
    (SessionManager, "save", "Redis: session and its first participant (MULTI/EXEC)"),
    (FailureLimiter, "check", "Redis: failed-login counters (MGET)"),
    (AuthnRequestParser, "parse", "AuthnRequest: inflate, hardened parse, query signature"),
    (AuditTrail, "record", "audit: records (JSON, hash chain, write), 4 per login"),
    (AuditTrail, "sync", "audit: fsync before the answer"),
    (respond, "post_page", "the auto-post page"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=2000)
    args, rest = parser.parse_known_args()
    spent: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*a: Any, **k: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*a, **k)
            finally:
                entry = spent[label]
                entry[0] += 1
                entry[1] += time.thread_time() - started
        return wrapper

    for owner, name, label in STEPS:
        setattr(owner, name, timed(label, getattr(owner, name)))
    sys.argv = [sys.argv[0], "--logins", str(args.logins), *rest]
    status = login_wsgi.main()
    requests = spent[STEPS[0][2]][0] or 1
    print(f"\nCPU time per login by step (thread CPU, {int(requests)} requests incl. warm-up):")
    for label, (calls, seconds) in sorted(spent.items(), key=lambda kv: -kv[1][1]):
        print(f"  {seconds / requests * 1000:6.3f} ms  {label}  ({int(calls)} calls)")
    return status


if __name__ == "__main__":
    sys.exit(main())
