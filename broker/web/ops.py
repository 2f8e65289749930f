"""Pages for people and probes: landing page, diagnosis, health and readiness."""

from __future__ import annotations

import json
from types import MappingProxyType

from flask import Blueprint, Response, make_response, request

from broker.audit.events import AuditEvent
from broker.errors import BrokerError, CertificateRejected, DependencyUnavailable
from broker.model import CertificateFacts, Identity
from broker.pki.naming import display_subject
from broker.pki.validator import certificate_policies
from broker.web.pages import NO_CACHE, diagnose_page, message_page
from broker.web.services import client_context, services

bp = Blueprint("ops", __name__)


@bp.route("/", methods=["GET"])
def index() -> Response:
    return message_page("index_title", ["index_text"])


@bp.route("/diagnose", methods=["GET"])
def diagnose() -> Response:
    """What certificate the broker sees and what it thinks of it: the first stop for support.

    Shows the user their own certificate (subject with a personnummer masked, issuer, validity,
    policies, fingerprint), the municipality it maps to and the verdict in plain words, or why no
    certificate arrived. No login happens; the visit is audited (``diagnose_viewed``, naming the card's user as a
    login's certificate_accepted or certificate_rejected would: a reviewer's ``query --user`` finds it). With
    ``?format=json`` (or ``Accept: application/json``) the same as JSON, for `broker readiness --login`, with
    ``chain``: the subjects of the intermediates a trusted proxy forwarded with the certificate.
    """
    svc = services()
    ctx = client_context()
    cert = ctx.presented.certificate
    verdict: dict[str, object] = {"certificate": cert is not None, "accepted": False, "municipality": None,
                                  "loa": None, "reason": None, "correlation_id": ctx.correlation_id}
    facts = CertificateFacts.of(cert) if cert is not None else None
    error: BrokerError | None = None
    rows: list[tuple[str, str]] | None = None
    municipality_id: str | None = None
    identity: Identity | None = None
    if cert is not None and facts is not None:
        rows = [
            ("subject", display_subject(cert)),
            ("issuer", facts.issuer),
            ("serial", facts.serial_hex),
            ("valid_from", facts.not_before.isoformat()),
            ("valid_until", facts.not_after.isoformat()),
            ("policies", ", ".join(certificate_policies(cert)) or "-"),
            ("sha256", facts.fingerprint_sha256),
            ("via", ctx.presented.via),
        ]
        try:
            validated = svc.validator.validate(cert, ctx.presented.chain)
            municipality_id = validated.municipality_id
            identity = validated.identity
            rows += [("municipality", _municipality_name(municipality_id)), ("loa", validated.loa.uri)]
            verdict.update(accepted=True, municipality=municipality_id, loa=validated.loa.uri)
        except CertificateRejected as exc:
            error = exc
            # whose card it is, as certificate_rejected names it: only when a configured CA signed it
            identity = svc.validator.claimed_identity(cert, ctx.presented.chain)
            try:
                municipality_id = svc.validator.domain_of(cert, ctx.presented.chain).id
            except CertificateRejected:
                municipality_id = None
            if municipality_id:
                rows.append(("municipality", _municipality_name(municipality_id)))
            rows.append(("reason", exc.reason))
            verdict.update(reason=exc.reason, municipality=municipality_id)
        verdict.update(subject=display_subject(cert), issuer=facts.issuer, not_after=facts.not_after.isoformat(),
                       policies=list(certificate_policies(cert)),
                       # what the client sent along, which may be a person's certificate too: named as the user's
                       chain=[display_subject(c) for c in ctx.presented.chain])
    svc.audit.record(AuditEvent(
        "diagnose_viewed", "info", ctx.correlation_id, reason=error.reason if error else None,
        certificate=facts, municipality=municipality_id, identity=identity, client_address=ctx.client_address,
        data=MappingProxyType({"accepted": bool(verdict["accepted"]), "via": ctx.presented.via})))
    svc.audit.sync()
    if request.args.get("format") == "json" or request.accept_mimetypes.best == "application/json":
        response = json_response(verdict, 200)
        response.headers["Cache-Control"] = NO_CACHE
        return response
    return diagnose_page(rows, error is None, error, ctx.correlation_id)


def _municipality_name(municipality_id: str) -> str:
    m = services().settings.municipalities.get(municipality_id)
    return f"{m.config.name.sv} / {m.config.name.en} ({municipality_id})" if m is not None else municipality_id


@bp.route("/healthz", methods=["GET"])
def healthz() -> Response:
    """Liveness: the process answers. Nothing more: the endpoint is public (a container HEALTHCHECK asks it
    through nothing), and the state of audit forwarding and of the municipal IdPs' metadata, with fetch errors
    that name internal addresses, is for operators (/admin/health)."""
    return json_response({"status": "ok"}, 200)


@bp.route("/readyz", methods=["GET"])
def readyz() -> Response:
    """Readiness: the session store answers and takes writes, and this process's audit trail can be written
    (a login needs both: without either it fails closed). A load balancer should route elsewhere on 503; a
    process whose audit trail failed tries a checkpoint at each probe, so it comes back once the disk does."""
    checks: dict[str, str] = {}
    status = 200
    try:
        services().sessions.ping()
        checks["session_store"] = "ok"
    except DependencyUnavailable as exc:
        checks["session_store"] = exc.reason
        status = 503
    if services().audit.probe() is None:
        checks["audit"] = "ok"
    else:
        checks["audit"] = "audit_unavailable"
        status = 503
    return json_response({"status": "ok" if status == 200 else "unavailable", "checks": checks}, status)


def json_response(data: object, status: int) -> Response:
    response = make_response(json.dumps(data), status)
    response.headers["Content-Type"] = "application/json"
    return response


# the same page below the SSO endpoint's path, where `broker readiness --login` asks (a proxy route for /saml/ is
# the one a login takes); its own endpoint name, so that links to the diagnosis (url_for) stay /diagnose
bp.add_url_rule("/saml/idp/diagnose", endpoint="diagnose_below_saml", view_func=diagnose, methods=["GET"])
