"""Single logout initiated by a service provider (SAML Profiles §4.4)."""

from __future__ import annotations

from types import MappingProxyType

from broker.audit.events import AuditEvent
from broker.errors import SamlRejected
from broker.flow.deps import FlowDeps
from broker.flow.results import ClientContext, LoginFailed, PostToSp, Redirect, Result
from broker.saml.bindings import STATUS_SUCCESS, InboundMessage
from broker.saml.logout import UNKNOWN_PRINCIPAL
from broker.saml.outbound import OutboundMessage


class LogoutFlow:
    def __init__(self, deps: FlowDeps) -> None:
        self._d = deps

    def sp_request(self, message: InboundMessage, ctx: ClientContext) -> Result:
        """An SP's LogoutRequest: end the session it names and answer with a LogoutResponse."""
        d = self._d
        try:
            request = d.logout.parse(message)
        except SamlRejected as exc:
            d.audit.record(AuditEvent("logout", "failure", ctx.correlation_id, reason=exc.reason,
                                      detail=exc.detail, client_address=ctx.client_address))
            return LoginFailed(exc, ctx.correlation_id)
        session, _ = d.sessions.find(ctx.session_token)
        ended = False
        mismatch = False
        if session is not None and ctx.session_token is not None:
            participants = d.sessions.participants(ctx.session_token)
            names = {p.name_id for p in participants if p.sp_entity_id == request.sp.entity_id}
            index_ok = not request.session_indexes or session.session_index in request.session_indexes
            if request.name_id in names and index_ok:
                d.sessions.end(ctx.session_token)
                ended = True
            else:
                mismatch = True
        d.audit.record(AuditEvent(
            "logout", "failure" if mismatch else "success", ctx.correlation_id,
            reason="logout_request_invalid" if mismatch else None,
            detail="the NameID or SessionIndex does not match this browser's session" if mismatch else None,
            identity=session.identity if session else None, sp=request.sp.entity_id,
            client_address=ctx.client_address,
            data=MappingProxyType({"session_ended": ended, "request_id": request.request_id[:256]})))
        out: OutboundMessage = (
            d.logout.response(request, "", UNKNOWN_PRINCIPAL) if mismatch
            else d.logout.response(request, STATUS_SUCCESS)
        )
        if out.fields:
            return PostToSp(out.url, out.fields, ctx.correlation_id, request.sp.config.name, clear_session=ended)
        return Redirect(out.url, ctx.correlation_id, clear_session=ended)
