"""The broker as SAML SP toward municipal IdPs: metadata, ACS (HTTP-POST), and discovery."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from broker.audit.events import AuditEvent
from broker.errors import RequestRejected, SamlRejected
from broker.flow.results import LoginFailed
from broker.origins import origin as origin_of
from broker.saml.bindings import from_post
from broker.web import csrf
from broker.web.idp import metadata_response, single_logout
from broker.web.pages import discovery_page, error_page
from broker.web.respond import respond
from broker.web.services import (
    MUNICIPALITY_COOKIE,
    client_address,
    client_context,
    continuing,
    correlation_id,
    posted_form,
    require_form,
    services,
)

bp = Blueprint("sp", __name__)
discovery = Blueprint("discovery", __name__)


@bp.route("/saml/sp/metadata", methods=["GET"])
def metadata() -> Response:
    document = services().sp_metadata
    if document is None:
        abort(404)
    return metadata_response(*document.current())


@bp.route("/saml/sp/acs", methods=["POST"])
def acs() -> Response:
    """SAML Profiles §4.1.4.2: the municipal IdP's Response over HTTP-POST (a broker without an SP side has no
    ACS: not found, as its metadata and SLO endpoints)."""
    if services().sp_metadata is None:
        abort(404)
    ctx = client_context()
    flow = services().flow
    try:
        message = from_post(posted_form(), "SAMLResponse")
    except SamlRejected as exc:
        return respond(flow.reject(exc, ctx, "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"))
    return respond(flow.acs(message, ctx))


@bp.route("/saml/sp/slo", methods=["GET", "POST"])
def slo() -> Response:
    """SAML Profiles §4.4.3-4.4.4: a municipal IdP's LogoutRequest, or its LogoutResponse to the broker's."""
    if services().sp_metadata is None:
        abort(404)
    return single_logout("idp")


@discovery.route("/discovery", methods=["GET"])
def show() -> Response:
    """The discovery page of a pending login again: after a search, or in the other language. Recorded under the
    login's reference, which the page shows, as the choice is."""
    login_id = request.args.get("login", "")
    continuing(login_id)
    found = services().flow.discovery(login_id, client_context())
    if isinstance(found, LoginFailed):
        return respond(found)
    return discovery_page(found, request.args.get("q", "")[:100])


@discovery.route("/discovery", methods=["POST"])
def choose() -> Response:
    """The user's choice. Only from the broker's own page: a choice posted from another site (login CSRF,
    planting a remembered municipality) is refused by its Origin / Sec-Fetch-Site headers and, where those are
    absent (older browsers, privacy tools), by the form token this browser's page carried (broker.web.csrf)."""
    if _cross_site():
        return _refused(RequestRejected("cross_site_request", f"Origin {request.headers.get('Origin')!r}, "
                                        f"Sec-Fetch-Site {request.headers.get('Sec-Fetch-Site')!r}"))
    require_form()
    try:
        services().form_tokens.verify(request.cookies.get(csrf.COOKIE), request.form.get(csrf.FIELD),
                                      csrf.DISCOVERY)
    except RequestRejected as refused:
        return _refused(refused)
    form = request.form
    continuing(form.get("login", ""))
    remember = form.get("remember") == "1"
    response = respond(services().flow.choose(form.get("login", ""), form.get("municipality", ""), remember,
                                              client_context()))
    if not remember and MUNICIPALITY_COOKIE in request.cookies:
        # the user's word on the broker's own form: a choice made without "remember my choice" forgets the one
        # remembered before, which would otherwise go on skipping this page for the municipality it names (on a
        # shared PC, another user's)
        response.delete_cookie(MUNICIPALITY_COOKIE, secure=True, httponly=True, samesite="None", path="/")
    return response


def _refused(refused: RequestRejected) -> Response:
    """A forged or stale choice: audited (``login_refused``), and a page; the pending login is left untouched."""
    svc = services()
    svc.audit.record(AuditEvent("login_refused", "failure", correlation_id(), reason=refused.reason,
                                detail=refused.detail, client_address=client_address()))
    svc.audit.sync()
    return error_page(refused, correlation_id())


def _cross_site() -> bool:
    """RFC 6454 Origin and Fetch Metadata: is this POST from a page of another site?"""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site in ("cross-site", "same-site"):
        return True
    if fetch_site == "same-origin":  # the browser's own word, as binding as its Origin (a forbidden header name)
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin == "null"
    theirs = origin_of(origin)
    return theirs is None or theirs != origin_of(services().settings.broker.idp.base_url)
