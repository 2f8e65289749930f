"""The IdP endpoints toward service providers: SSO, login continuation, SLO, metadata."""

from __future__ import annotations

from flask import Blueprint, Response, make_response, request

from broker.errors import SamlRejected
from broker.flow import LoginFailed, PostToSp, Redirect, Result
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT, InboundMessage, from_post, from_redirect
from broker.web.pages import error_page, post_page, redirect_response
from broker.web.services import client_context, services

bp = Blueprint("idp", __name__)


def _message(parameter: str) -> InboundMessage:
    if request.method == "GET":
        return from_redirect(request.query_string.decode("latin-1"), parameter)
    return from_post(request.form.to_dict(flat=False), parameter)


def respond(result: Result) -> Response:
    """Make the audit durable, then answer: fail closed if it cannot be made durable."""
    services().audit.sync()
    svc = services()
    if isinstance(result, PostToSp):
        response = post_page(result)
    elif isinstance(result, Redirect):
        response = redirect_response(result)
    else:
        assert isinstance(result, LoginFailed)
        response = error_page(result.error, result.correlation_id, result)
    set_session = getattr(result, "set_session", None)
    if set_session:
        # SameSite=None: SPs deliver AuthnRequests by cross-site POST (HTTP-POST binding); a Lax or Strict
        # cookie would not be sent with them and SSO would silently break. Secure + HttpOnly + an opaque
        # random value keep it safe; CSRF cannot hurt because the SSO endpoint only answers the SP that
        # asked, at its registered ACS URL.
        response.set_cookie(svc.cookie_name, set_session, secure=True, httponly=True, samesite="None", path="/")
    if getattr(result, "clear_session", False):
        response.delete_cookie(svc.cookie_name, secure=True, httponly=True, samesite="None", path="/")
    return response


@bp.route("/saml/idp/sso", methods=["GET", "POST"])
def sso() -> Response:
    """SAML Profiles §4.1.4.1: AuthnRequest over HTTP-Redirect (GET) or HTTP-POST."""
    ctx = client_context()
    flow = services().flow
    try:
        message = _message("SAMLRequest")
    except SamlRejected as exc:
        return respond(flow.reject(exc, ctx, HTTP_REDIRECT if request.method == "GET" else HTTP_POST))
    return respond(flow.start(message, ctx))


@bp.route("/saml/idp/login/<login_id>", methods=["GET"])
def resume(login_id: str) -> Response:
    """Continue a pending login (after an error page's "try again")."""
    return respond(services().flow.resume(login_id, client_context()))


@bp.route("/saml/idp/slo", methods=["GET", "POST"])
def slo() -> Response:
    """SAML Profiles §4.4.3: a LogoutRequest from a service provider."""
    ctx = client_context()
    flow = services().flow
    try:
        message = _message("SAMLRequest")
    except SamlRejected as exc:
        return respond(flow.reject(exc, ctx, HTTP_REDIRECT if request.method == "GET" else HTTP_POST))
    return respond(flow.logout(message, ctx))


@bp.route("/saml/idp/metadata", methods=["GET"])
def metadata() -> Response:
    response = make_response(services().metadata.document())
    response.headers["Content-Type"] = "application/samlmetadata+xml"
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
