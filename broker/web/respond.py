"""Turning a flow result into the HTTP response, after the audit trail is durable."""

from __future__ import annotations

from flask import Response

from broker.flow import Discovery, LoginFailed, PostToSp, Redirect, Result
from broker.flow.results import LogoutDone
from broker.web.pages import discovery_page, error_page, logged_out_page, post_page, redirect_response
from broker.web.services import BINDING_COOKIE, MUNICIPALITY_COOKIE, services, use_correlation_id


def respond(result: Result) -> Response:
    """Make the audit durable, then answer: fail closed if it cannot be made durable."""
    svc = services()
    svc.audit.sync()
    # the flow may have moved the request onto its login's ID (a Response at the ACS, a resumed login): the
    # result names the one its audit events carry
    use_correlation_id(result.correlation_id)
    if isinstance(result, PostToSp):
        response = post_page(result)
    elif isinstance(result, Redirect):
        response = redirect_response(result)
    elif isinstance(result, Discovery):
        response = discovery_page(result)
    elif isinstance(result, LogoutDone):
        response = logged_out_page(result)
    else:
        assert isinstance(result, LoginFailed)
        response = error_page(result.error, result.correlation_id, result)
    set_session = getattr(result, "set_session", None)
    if set_session:
        # SameSite=None: SPs deliver AuthnRequests by cross-site POST (HTTP-POST binding), and municipal IdPs
        # post their Responses cross-site too; a Lax or Strict cookie would not be sent with them and SSO
        # would silently break. Secure + HttpOnly + an opaque random value keep it safe; CSRF cannot hurt
        # because the SSO endpoint only answers the SP that asked, at its registered ACS URL.
        response.set_cookie(svc.cookie_name, set_session, secure=True, httponly=True, samesite="None", path="/")
    if getattr(result, "clear_session", False):
        response.delete_cookie(svc.cookie_name, secure=True, httponly=True, samesite="None", path="/")
    binding = getattr(result, "bind_browser", None)
    if binding:
        # ties logins at municipal IdPs and logouts in progress to this browser: sent back with the peers'
        # cross-site POSTs and redirects (hence SameSite=None); path "/", as the __Host- prefix requires
        response.set_cookie(BINDING_COOKIE, binding, max_age=86400, secure=True, httponly=True, samesite="None",
                            path="/")
    remember = getattr(result, "remember_municipality", None)
    if remember:
        # SameSite=None: an SP with the HTTP-POST binding delivers its AuthnRequest by a cross-site POST, which
        # carries no Lax cookie; the choice would then skip discovery only for HTTP-Redirect SPs. It names a
        # municipality, no credential: the __Host- prefix, not SameSite, keeps other sites from planting one
        response.set_cookie(MUNICIPALITY_COOKIE, remember, max_age=365 * 86400, secure=True, httponly=True,
                            samesite="None", path="/")
    return response
