"""Pages for people and probes: landing page, diagnosis, health and readiness."""

from __future__ import annotations

import json

from flask import Blueprint, Response, make_response

from broker.errors import BrokerError, CertificateRejected, DependencyUnavailable
from broker.model import CertificateFacts
from broker.web.pages import diagnose_page, message_page
from broker.web.services import client_context, correlation_id, services

bp = Blueprint("ops", __name__)


@bp.route("/", methods=["GET"])
def index() -> Response:
    return message_page("index_title", ["index_text"])


@bp.route("/diagnose", methods=["GET"])
def diagnose() -> Response:
    """What certificate the broker sees and what it thinks of it: the first stop for support.

    Shows the user their own certificate's issuer, validity and fingerprint and
    the verdict in plain words; nothing is logged beyond the usual audit of a
    forged proxy header.
    """
    ctx = client_context()
    services().audit.sync()
    cert = ctx.presented.certificate
    if cert is None:
        return diagnose_page(None, False, None, correlation_id())
    facts = CertificateFacts.of(cert)
    rows = [
        ("Subject", cert.subject.rfc4514_string()),
        ("Issuer", facts.issuer),
        ("Serial", facts.serial_hex),
        ("Valid from", facts.not_before.isoformat()),
        ("Valid until", facts.not_after.isoformat()),
        ("SHA-256", facts.fingerprint_sha256),
        ("Via", ctx.presented.via),
    ]
    error: BrokerError | None = None
    try:
        validated = services().validator.validate(cert)
        rows += [("Municipality", validated.municipality_id), ("LoA", validated.loa.uri)]
    except CertificateRejected as exc:
        error = exc
        rows.append(("Reason", exc.reason))
    return diagnose_page(rows, error is None, error, correlation_id())


@bp.route("/healthz", methods=["GET"])
def healthz() -> Response:
    """Liveness: the process answers. Also reports audit forwarding (sent, dropped, errors, queued) and the
    municipal IdPs' metadata (entity, validUntil, last fetch, last error), which never makes it fail."""
    svc = services()
    body: dict[str, object] = {"status": "ok", "audit_forwarding": svc.audit.forwarding_stats()}
    upstream = svc.flow.upstream
    if upstream is not None:
        body["idp_metadata"] = upstream.metadata.status()
    return _json(body, 200)


@bp.route("/readyz", methods=["GET"])
def readyz() -> Response:
    """Readiness: the session store answers. A load balancer should route elsewhere on 503."""
    checks: dict[str, str] = {}
    status = 200
    try:
        services().sessions.ping()
        checks["session_store"] = "ok"
    except DependencyUnavailable as exc:
        checks["session_store"] = exc.reason
        status = 503
    return _json({"status": "ok" if status == 200 else "unavailable", "checks": checks}, status)


def _json(data: object, status: int) -> Response:
    response = make_response(json.dumps(data), status)
    response.headers["Content-Type"] = "application/json"
    return response
