"""Operators' endpoints: /metrics (Prometheus), /admin/status (regional IT's overview) and /admin/health
(audit forwarding and municipal IdP metadata, as JSON).

Not public: both answer only with the bearer token of ``admin.token_file`` (HTTP Basic with the token as
password also works, for a browser), compared in constant time; without an admin section, or without the
token, they answer 404, as if they did not exist, and so they do to any method but GET and HEAD (no automatic
OPTIONS, and the app answers their 405 as a 404: :func:`hidden`). The generated nginx snippet also refuses
them at the proxy.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time

from flask import Blueprint, Response, abort, current_app, make_response, render_template, request

from broker.clock import Clock
from broker.config.loader import Settings
from broker.errors import DependencyUnavailable
from broker.metrics import MetricsUnavailable
from broker.readiness.model import Report
from broker.readiness.runner import ReadinessOptions, run
from broker.session.activity import last_login
from broker.web.ops import json_response
from broker.web.pages import NO_CACHE
from broker.web.services import services

bp = Blueprint("admin", __name__)

_STATUS_TTL = 60.0
# the configuration a report is of, held (so that no other object can take its place in memory) and compared by
# identity: a reload gives new settings, hence a new report. Not keyed by id(), which a freed object's
# successor may reuse within the minute
_cache: dict[str, tuple[Settings, float, Report]] = {}
_cache_lock = threading.Lock()


def _authorised() -> None:
    admin = services().settings.broker.admin
    if admin is None:
        abort(404)
    presented = _token()
    if presented is None or not hmac.compare_digest(presented, admin.token_file.value):
        abort(404)  # no hint that something is here


def hidden(endpoint: str) -> bool:
    """Whether a request for ``endpoint`` by a method it does not allow is answered 404, not 405: an Allow header
    would tell that the endpoint exists."""
    return endpoint.startswith(f"{bp.name}.")


def _token() -> bytes | None:
    """The token of a Bearer (RFC 6750 §2.1) or Basic (RFC 7617 §2, the password) Authorization header; None for
    anything else, so that a malformed header is a wrong token (404), never an error that shows the endpoint."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip().encode()
    if scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), characters outside ASCII, not UTF-8 (UnicodeDecodeError)
            return None
        return password.encode()
    return None


@bp.route("/metrics", methods=["GET"], provide_automatic_options=False)
def metrics() -> Response:
    _authorised()
    try:
        exposition = current_app.extensions["broker_runtime"].metrics.exposition()
    except MetricsUnavailable as exc:
        # as /readyz for its dependencies: a status the scraper records (up == 0), and why in plain words
        response = make_response(f"503 metrics unavailable: {exc}\n", 503)
        response.headers["Content-Type"] = "text/plain; charset=utf-8"
        response.headers["Cache-Control"] = NO_CACHE
        return response
    response = make_response(exposition)
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    return response


@bp.route("/admin/health", methods=["GET"], provide_automatic_options=False)
def health() -> Response:
    """What a monitor of this instance wants beyond liveness: audit forwarding (sent, dropped, errors, queued)
    and the municipal IdPs' metadata (entity, validUntil, last fetch, last error). It never fails for them."""
    _authorised()
    svc = services()
    body: dict[str, object] = {"status": "ok", "audit_forwarding": svc.audit.forwarding_stats()}
    upstream = svc.flow.upstream
    if upstream is not None:
        body["idp_metadata"] = upstream.metadata.status()
    response = json_response(body, 200)
    response.headers["Cache-Control"] = NO_CACHE
    return response


@bp.route("/admin/status", methods=["GET"], provide_automatic_options=False)
def status() -> Response:
    """Every municipality: its readiness (the offline checks, refreshed each minute), what expires next, and
    when a login last succeeded (from the shared store, so every instance's logins count)."""
    _authorised()
    svc = services()
    runtime = current_app.extensions["broker_runtime"]
    report = _report(runtime.clock)
    last: dict[str, str | None] = {}
    for section in report.municipalities:
        try:
            last[section.id] = last_login(runtime.store, section.id)
        except DependencyUnavailable:  # the page still shows what it can
            last[section.id] = None
    html = render_template("admin_status.html", report=report, last=last, settings=svc.settings,
                           generated=report.generated)
    response = make_response(html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def _report(clock: Clock) -> Report:
    settings = services().settings
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get("status")
    if cached is not None and cached[0] is settings and now - cached[1] < _STATUS_TTL:
        return cached[2]
    # every configured municipality, suspended ones too: the overview shows them with their status
    report = run(settings, clock, ReadinessOptions(network=False, municipalities=tuple(settings.municipalities)))
    with _cache_lock:
        _cache["status"] = (settings, now, report)
    return report
