"""The IdP endpoints toward service providers: SSO, login continuation, SLO, metadata."""

from __future__ import annotations

import datetime as dt
from collections.abc import Container
from typing import Literal

from flask import Blueprint, Response, make_response, request, url_for

from broker.errors import SamlRejected
from broker.flow.results import Discovery, Redirect
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT, InboundMessage, from_post, from_redirect
from broker.web.respond import respond
from broker.web.services import client_context, continuing, posted_form, services

bp = Blueprint("idp", __name__)


def _message(parameter: str | None = None) -> InboundMessage:
    """The SAML message of this request, by its binding; ``parameter`` None: a logout endpoint's, whichever of
    SAMLRequest and SAMLResponse it carries. The form is read once, through ``posted_form`` (werkzeug's
    ``request.form`` would use the body up before it)."""
    if request.method == "GET":
        return from_redirect(request.query_string.decode("latin-1"), parameter or _logout_parameter(request.args))
    form = posted_form()
    return from_post(form, parameter or _logout_parameter(form), request.query_string.decode("latin-1"))


@bp.route("/saml/idp/sso", methods=["GET", "POST"])
def sso() -> Response:
    """SAML Profiles §4.1.4.1: AuthnRequest over HTTP-Redirect (GET) or HTTP-POST."""
    ctx = client_context()
    flow = services().flow
    try:
        message = _message("SAMLRequest")
    except SamlRejected as exc:
        return respond(flow.reject(exc, ctx, HTTP_REDIRECT if request.method == "GET" else HTTP_POST))
    result = flow.start(message, ctx)
    if isinstance(result, Discovery) and request.method == "POST":
        # the HTTP-POST binding's request is a cross-site POST, which carries no SameSite=Lax cookie: a page made
        # in answer to it would not see the browser's form secret (broker.web.csrf) and would replace it, which
        # the discovery pages of its other tabs are bound to, nor its language. The page comes by a redirect (a
        # top-level GET, with them), from the pending login the flow has stored.
        result = Redirect(url_for("discovery.show", login=result.login_id), result.correlation_id)
    return respond(result)


@bp.route("/saml/idp/login/<login_id>", methods=["GET"])
def resume(login_id: str) -> Response:
    """Continue a pending login (after an error page's "try again")."""
    continuing(login_id)
    return respond(services().flow.resume(login_id, client_context()))


@bp.route("/saml/idp/slo", methods=["GET", "POST"])
def slo() -> Response:
    """SAML Profiles §4.4.3-4.4.4: an SP's LogoutRequest, or its LogoutResponse to the broker's."""
    return single_logout("sp")


def single_logout(side: Literal["sp", "idp"]) -> Response:
    """A SingleLogoutService endpoint: the message is a LogoutRequest or a LogoutResponse."""
    ctx = client_context()
    logout = services().logout
    try:
        message = _message()
    except SamlRejected as exc:
        return respond(services().flow.reject(exc, ctx, HTTP_REDIRECT if request.method == "GET" else HTTP_POST))
    if message.parameter == "SAMLResponse":
        return respond(logout.response(message, ctx, side))
    return respond(logout.request(message, ctx, side))


def _logout_parameter(fields: Container[str]) -> str:
    """A LogoutResponse when only SAMLResponse is there; anything else is read as a LogoutRequest."""
    return "SAMLResponse" if "SAMLResponse" in fields and "SAMLRequest" not in fields else "SAMLRequest"


@bp.route("/saml/idp/metadata", methods=["GET"])
def metadata() -> Response:
    document = services().metadata
    return metadata_response(*document.current())


def metadata_response(document: bytes, fresh_for: dt.timedelta) -> Response:
    """A metadata document (SAML Metadata §4.1.1: application/samlmetadata+xml), cacheable for an hour, and never
    for longer than ``fresh_for`` (until half its validity has passed): a short idp.metadata_validity would
    otherwise have caches hand SPs a copy past its validUntil (SAML Metadata §2.2.1), which they refuse."""
    response = make_response(document)
    response.headers["Content-Type"] = "application/samlmetadata+xml"
    response.headers["Cache-Control"] = f"public, max-age={min(3600, int(fresh_for.total_seconds()))}"
    return response
