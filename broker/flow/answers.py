"""Answering the service provider: the signed assertion, the SP's access rules, and refusals."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from types import MappingProxyType

from broker.audit.events import AuditEvent
from broker.config.loader import Municipality, ServiceProvider
from broker.config.schema import LocalizedText
from broker.errors import (
    BrokerError,
    CertificateRejected,
    DependencyUnavailable,
    RateLimited,
    SamlRejected,
    UpstreamRejected,
)
from broker.flow.deps import FlowDeps
from broker.flow.proxying import authenticating_authorities, check_proxy_restriction
from broker.flow.results import ClientContext, LoginFailed, PostToSp, Result
from broker.model import KNOWN_LOAS, CertificateFacts, Identity, Loa, ReplyTarget, satisfies
from broker.saml.authnrequest import AuthnRequestInfo
from broker.saml.release import available_attributes, release
from broker.saml.response import AssertionContent
from broker.session.sessions import Participant, Replaced, SsoSession


def pending(info: AuthnRequestInfo, correlation_id: str) -> dict[str, object]:
    """A pending login as stored: the vetted request and the correlation ID of the login."""
    return {"request": info.to_dict(), "correlation_id": correlation_id}


class Answers:
    def __init__(self, deps: FlowDeps) -> None:
        self._d = deps

    def check_access(self, info: AuthnRequestInfo, sp: ServiceProvider, municipality: Municipality, loa: Loa) -> None:
        """The SP's rules: which municipalities, onboarding, minimum LoA, RequestedAuthnContext."""
        if municipality.id not in sp.config.municipalities:
            raise CertificateRejected("municipality_not_allowed",
                                      f"{sp.entity_id} does not accept municipality {municipality.id!r}")
        if municipality.status == "suspended":
            raise CertificateRejected("municipality_suspended", f"municipality {municipality.id!r}")
        if municipality.status == "onboarding" and not sp.config.accept_onboarding:
            raise CertificateRejected("municipality_not_active", f"municipality {municipality.id!r} is onboarding")
        minimum = KNOWN_LOAS[sp.config.minimum_loa] if sp.config.minimum_loa else None
        if minimum is not None and loa.rank < minimum.rank:
            raise CertificateRejected("loa_insufficient", f"{loa.name} is below the SP's minimum {minimum.name}",
                                      params={"loa": loa.name, "required": minimum.name})
        if not satisfies(loa, info.requested_contexts, info.comparison):
            raise SamlRejected("authn_context_unsupported",
                               f"{loa.uri} does not satisfy {info.comparison} {list(info.requested_contexts)}",
                               reply_to=info.reply_target())

    def replace_session(self, ctx: ClientContext, old: SsoSession | None, identity: Identity) -> Replaced | None:
        """Replace the browser's session ``old``, if any, for a new login of ``identity``
        (:meth:`SessionManager.replace`). Another user's session is kept apart for her single logout, and the audit
        trail says so under her name (``session_replaced``): her IdP's or SPs' logout may still end it."""
        d = self._d
        if old is None or ctx.session_token is None:
            return None
        replaced = d.sessions.replace(ctx.session_token, old, identity)
        if replaced.other_user is not None:
            d.audit.record(AuditEvent(
                "session_replaced", "info", ctx.correlation_id, identity=replaced.other_user,
                client_address=ctx.client_address,
                detail="another user's login in this browser replaced the session; it answers no service any more "
                       "and is kept apart for this user's single logout",
                data=MappingProxyType({"session_login": replaced.correlation_id,
                                       "services": replaced.other_services})))
        return replaced

    def issue(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, token: str,
              session: SsoSession, *, new_session: bool, certificate: CertificateFacts | None = None,
              remember: str | None = None, replaced: Replaced | None = None, detail: str | None = None,
              settle: Callable[[], BrokerError | None] | None = None) -> Result:
        """The signed assertion for ``info`` from ``session``; the SP is remembered for logout.

        The SP gets its own SessionIndex (SAML Core §2.7.2: :meth:`SessionManager.session_index`), and its
        participant record keeps it with the NameID and format: what single logout matches and sends.

        A ``new_session`` (from :meth:`SessionManager.open`) is stored here, together with this SP as its
        first participant and the participants of the session it ``replaced`` (:meth:`SessionManager.replace`):
        one round trip, and only once the assertion exists. A reused session (as :meth:`SessionManager.touch`
        left it) is stored again with this SP the same way, but only if it still exists: when it has ended
        since it was found (a logout meanwhile), the assertion is not sent (:meth:`_session_ended`); once it is
        stored, ``session_reused`` is recorded (the session answered this SP), with ``certificate``: the one a
        session opened by certificate rests on, as ``assertion_issued`` names it. ``detail``
        goes to the ``assertion_issued`` event (for the operator). ``settle``, asked once a new session is stored:
        a refusal that came about meanwhile (a logout on another instance that looked for sessions before this one
        was stored), which ends the session before anything is answered from it.
        """
        d = self._d
        identity = session.identity
        try:
            # every assertion on the strength of a municipal IdP's, new session or reused, honours its limits
            restriction = check_proxy_restriction(sp.entity_id, session.authenticated_upstream)
        except UpstreamRejected as exc:
            return self.refuse(exc, ctx, info, sp, event="login_refused", retry=False)
        municipality = d.settings.municipalities[identity.municipality_id]
        name_id = d.nameids.issue(info.nameid_format, sp.entity_id, identity)
        session_index = d.sessions.session_index(token, sp.entity_id)
        attributes = release(sp.config.release,
                             available_attributes(identity, municipality.config, ctx.correlation_id))
        content = AssertionContent(
            name_id=name_id,
            name_id_format=info.nameid_format,
            loa_uri=session.loa_uri,
            authn_instant=session.authn_instant,
            session_index=session_index,
            session_not_on_or_after=d.sessions.ends(session),
            attributes=attributes,
            authenticating_authorities=authenticating_authorities(session.authenticated_upstream),
            proxy_restriction=restriction,
        )
        xml = d.responses.success(info.reply_target(), content, sign_response=sp.config.sign_response,
                                  encrypter=sp.encrypter)
        participant = Participant(sp.entity_id, name_id, info.nameid_format, session_index, d.clock.now())
        if new_session:
            try:
                d.sessions.save(token, session, participant, carried=replaced.participants if replaced else ())
            except DependencyUnavailable:
                # the browser's old session was taken (SessionManager.replace) and the new one, with its SPs, is
                # not stored: put the old one back, retired, so that the user's retry (the 503 page) finds it and
                # takes its SPs over; without it they would drop out of single logout (a store still down: lost)
                if replaced is not None and ctx.session_token is not None:
                    with contextlib.suppress(DependencyUnavailable):
                        d.sessions.reinstate(ctx.session_token, replaced, "session_store_unavailable")
                raise
            late = settle() if settle is not None else None
            if late is not None:
                # ended before anything was answered from it; the SPs it carried over are still in the list of the
                # session it replaced, which ``settle`` puts back (UpstreamStep.complete)
                d.sessions.end(token)
                return self.refuse(late, ctx, info, sp, municipality=municipality, event="login_refused",
                                   retry=False)
        elif not d.sessions.save_reused(token, session, participant):
            return self._session_ended(info, sp, ctx, session)
        else:
            # only now: a session refused above (the IdP's ProxyRestriction) or ended meanwhile answered nothing
            d.audit.record(AuditEvent(
                "session_reused", "success", ctx.correlation_id, identity=identity, sp=sp.entity_id,
                certificate=certificate, client_address=ctx.client_address,
                data=MappingProxyType({"session_login": session.correlation_id, "loa": session.loa_uri})))
        if replaced is not None and replaced.other_user is not None:
            note = (f"replaces the browser's session of another user's login {replaced.correlation_id}, kept apart "
                    "for that user's single logout (session_replaced)")
            detail = f"{note}; {detail}" if detail else note
        elif replaced is not None:
            kept = [p.sp_entity_id for p in replaced.participants if p.sp_entity_id != sp.entity_id]
            note = (f"replaces the browser's session of login {replaced.correlation_id}; its services stay in "
                    f"single logout: {', '.join(kept) if kept else 'none'}")
            detail = f"{note}; {detail}" if detail else note
        d.audit.record(AuditEvent(
            "assertion_issued", "success", ctx.correlation_id, identity=identity, sp=sp.entity_id,
            certificate=certificate, client_address=ctx.client_address, detail=detail,
            data=MappingProxyType({
                "request_id": info.request_id[:256], "loa": session.loa_uri, "nameid": name_id,
                "nameid_format": info.nameid_format, "attributes": tuple(a.friendly_name for a in attributes),
                "session": "new" if new_session else "reused",
                **({"encryption": sp.encrypter.choice.data} if sp.encrypter is not None else {}),
            })))
        return PostToSp(info.acs_url, fields(xml, info.relay_state), ctx.correlation_id, sp.config.name,
                        set_session=token if new_session else None, remember_municipality=remember)

    def _session_ended(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext,
                       session: SsoSession) -> Result:
        """The SSO session this request was being answered from ended after the request found it: a single logout
        (SAML Profiles §4.4) on another request or broker instance, or a timeout. Nothing is answered from it
        (OWASP Session Management Cheat Sheet: a session ended by logout must not be usable again); the request
        needs a fresh login. The page's "try again" continues it as a new pending login, in which the cookie
        finds no session; with IsPassive the SP gets NoPassive (SAML Core §3.4.1: no user interaction)."""
        d = self._d
        detail = "the SSO session ended (logout) while this request was being answered from it"
        if info.is_passive:
            exc = SamlRejected("passive_login_impossible", detail, reply_to=info.reply_target())
            return self.refuse(exc, ctx, info, sp, event="login_refused")
        ended = SamlRejected("login_unknown", detail)
        d.audit.record(AuditEvent("login_refused", "failure", ctx.correlation_id, reason=ended.reason,
                                  detail=detail, identity=session.identity, sp=sp.entity_id,
                                  client_address=ctx.client_address))
        retry_id = d.sessions.put_pending(pending(info, ctx.correlation_id))
        return LoginFailed(ended, ctx.correlation_id, sp.config.name, retry_login_id=retry_id)

    def refuse(self, exc: BrokerError, ctx: ClientContext, info: AuthnRequestInfo | None,
               sp: ServiceProvider | None, *, municipality: Municipality | None = None,
               event: str | None = None, retry: bool = True, choose_again: bool = False) -> Result:
        """Turn a refusal into an error page, or a SAML error Response where SAML calls for one.

        A SAML error Response goes straight back to the SP when the user cannot
        act on the refusal (protocol errors the SP must fix, IsPassive). For a
        certificate or IdP problem the user gets the page (with a way to retry and a
        way back to the SP).
        """
        d = self._d
        if event == "login_refused":
            d.audit.record(AuditEvent("login_refused", "failure", ctx.correlation_id, reason=exc.reason,
                                      detail=exc.detail, municipality=municipality.id if municipality else None,
                                      sp=sp.entity_id if sp else None, client_address=ctx.client_address))
        target = exc.reply_to if isinstance(exc, SamlRejected) else None
        if target is None and info is not None:
            target = info.reply_target()
        if info is not None and info.is_passive and target is not None and not isinstance(exc, SamlRejected):
            # SAML Core §3.4.1: IsPassive forbids showing the user anything; the SP learns why from NoPassive
            exc = SamlRejected("passive_login_impossible", f"{exc.reason}: {exc.detail}", reply_to=target)
        sp_name = sp.config.name if sp else None
        status = exc.row.saml_status
        if isinstance(exc, SamlRejected) and target is not None and status is not None:
            return self.error_response(target, status, exc, ctx, sp_name, delivered=True)
        # For a problem the user can act on: the page, plus a signed error Response the user may take back
        back = self.error_response(target, status, exc, ctx, sp_name, delivered=False) \
            if target is not None and status is not None else None
        retry_id = None
        if retry and info is not None and isinstance(exc, CertificateRejected | UpstreamRejected):
            retry_id = d.sessions.put_pending(pending(info, ctx.correlation_id))
        return LoginFailed(exc, ctx.correlation_id, sp_name, municipality, retry_id, back,
                           choose_again=choose_again and retry_id is not None)

    def rate_limited(self, exc: RateLimited, ctx: ClientContext, info: AuthnRequestInfo | None,
                     sp: ServiceProvider | None, *, municipality: Municipality | None = None,
                     certificate: CertificateFacts | None = None, identity: Identity | None = None) -> Result:
        """A login attempt past the failed-login limits (:mod:`broker.session.rate_limit`): audited as
        ``login_refused`` (with the certificate, when one was presented, and whose it is, when its configured CA
        signed it) and refused without a retry link, since
        retrying at once is what the limit refuses; the SP can still be answered (AuthnFailed)."""
        self._d.audit.record(AuditEvent(
            "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
            municipality=municipality.id if municipality else None, certificate=certificate, identity=identity,
            sp=sp.entity_id if sp else None, client_address=ctx.client_address))
        if info is None:
            return LoginFailed(exc, ctx.correlation_id, municipality=municipality)
        return self.refuse(exc, ctx, info, sp, municipality=municipality, retry=False)

    def error_response(self, target: ReplyTarget, status: str, exc: BrokerError, ctx: ClientContext,
                       sp_name: LocalizedText | None, *, delivered: bool) -> PostToSp:
        """A signed error Response; audited when it is sent (not when only offered on the page)."""
        xml = self._d.responses.error(target, status, exc.reason)
        if delivered:
            self._d.audit.record(AuditEvent(
                "error_response_issued", "failure", ctx.correlation_id, reason=exc.reason,
                sp=target.sp_entity_id, client_address=ctx.client_address,
                data=MappingProxyType({"status": status})))
        return PostToSp(target.acs_url, fields(xml, target.relay_state), ctx.correlation_id, sp_name)


def fields(xml: bytes, relay_state: str | None) -> dict[str, str]:
    out = {"SAMLResponse": base64.b64encode(xml).decode("ascii")}
    if relay_state is not None:
        out["RelayState"] = relay_state
    return out
