"""The login state machine (DESIGN.md, flows 1-3): from an AuthnRequest to a signed Response.

1. ``start``: vet the AuthnRequest, audit ``login_started``, store it as a
   pending login (one-time use), continue at once with ``resume``.
2. ``resume``: take the pending login; reuse a live SSO session unless
   ForceAuthn (or a different certificate is presented); a presented
   certificate logs in by certificate; otherwise the municipality decides:
   hinted (Scoping, ``?municipality=``), the only option, remembered, or chosen
   on the discovery page; a municipality with its own IdP logs in there.
3. Answer the SP (signed assertion) and remember it for logout.

A refusal keeps the request: a new pending login lets the user try again
(another card, another municipality) without going back to the SP. Every step
is audited under one correlation ID; the caller makes the audit durable
(``AuditTrail.sync``) before it sends the response.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from types import MappingProxyType

from cryptography import x509

from broker.audit.events import AuditEvent
from broker.config.loader import Municipality, ServiceProvider
from broker.errors import CertificateRejected, SamlRejected, UpstreamRejected
from broker.flow.answers import Answers, pending
from broker.flow.certificate import CertificateStep
from broker.flow.deps import FlowDeps
from broker.flow.proxying import proxy_count_exceeded
from broker.flow.results import ClientContext, Discovery, LoginFailed, Result
from broker.flow.upstream import UpstreamStep, judged_by
from broker.model import KNOWN_LOAS, LOA_BY_URI, CertificateFacts, Loa, satisfies
from broker.pki.sources import PresentedCertificate
from broker.saml.authnrequest import AuthnRequestInfo
from broker.saml.bindings import InboundMessage
from broker.session.sessions import SsoSession

__all__ = ["LoginFlow", "satisfies"]


class LoginFlow:
    def __init__(self, deps: FlowDeps, upstream: UpstreamStep | None = None) -> None:
        self._d = deps
        self._answers = Answers(deps)
        self._certificate = CertificateStep(deps, self._answers)
        self._upstream = upstream
        self.certificate_sources = deps.certificate_sources

    @property
    def upstream(self) -> UpstreamStep | None:
        return self._upstream

    def client_certificate(self, correlation_id: str, remote_addr: str | None, header_value: str | None,
                           tls_pem: str | None, chain_value: str | None = None, *,
                           client_address: str | None) -> PresentedCertificate:
        """Resolve the request's certificate; audit a forged or broken proxy header (with the user's
        ``client_address``, the peer's ``remote_addr`` named apart when it is a proxy)."""
        return self._certificate.resolve(correlation_id, remote_addr, header_value, tls_pem, chain_value,
                                         client_address=client_address)

    # --- SSO ---------------------------------------------------------------------------

    def reject(self, exc: SamlRejected, ctx: ClientContext, binding: str) -> Result:
        """A message that could not even be read off the binding (missing or duplicated parameters)."""
        self._d.audit.record(AuditEvent(
            "saml_request_rejected", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
            client_address=ctx.client_address, data=MappingProxyType({"binding": binding})))
        return LoginFailed(exc, ctx.correlation_id)

    def start(self, message: InboundMessage, ctx: ClientContext) -> Result:
        """Handle an AuthnRequest arriving at the SSO endpoint."""
        d = self._d
        try:
            info, sp = d.parser.parse(message)
        except SamlRejected as exc:
            d.audit.record(AuditEvent(
                "saml_request_rejected", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                sp=exc.issuer, client_address=ctx.client_address,
                data=MappingProxyType({"binding": message.binding})))
            return self._answers.refuse(exc, ctx, None, None)
        if not info.idp_hints and ctx.municipality_hint:
            info = info.with_hint(ctx.municipality_hint)
        d.audit.record(AuditEvent(
            "login_started", "info", ctx.correlation_id, sp=sp.entity_id, client_address=ctx.client_address,
            data=MappingProxyType({
                "request_id": info.request_id[:256], "binding": info.binding, "signed": info.signed,
                "force_authn": info.force_authn, "is_passive": info.is_passive,
                "nameid_format": info.nameid_format, "requested_context": info.requested_contexts,
            })))
        # straight on: the request is kept in the store only when the login must wait for the user
        # (discovery, a municipal IdP, a retry), which saves two round trips on every certificate login
        return self._authenticate(info, sp, ctx)

    def _take(self, login_id: str, ctx: ClientContext) -> tuple[AuthnRequestInfo, ServiceProvider,
                                                                 ClientContext] | LoginFailed:
        d = self._d
        found = d.sessions.take_pending(login_id)
        sp = None
        if found is not None:
            info = AuthnRequestInfo.from_dict(found["request"])
            sp = d.settings.sp_by_entity_id(info.sp_entity_id)
        if found is None or sp is None:
            exc = SamlRejected("login_unknown", "no such pending login (expired, used, or the SP was removed)")
            d.audit.record(AuditEvent("saml_request_rejected", "failure", ctx.correlation_id,
                                      reason=exc.reason, detail=exc.detail, client_address=ctx.client_address))
            return LoginFailed(exc, ctx.correlation_id)
        return info, sp, replace(ctx, correlation_id=found["correlation_id"])

    def resume(self, login_id: str, ctx: ClientContext) -> Result:
        """Continue a pending login (consumes it)."""
        taken = self._take(login_id, ctx)
        if isinstance(taken, LoginFailed):
            return taken
        info, sp, ctx = taken
        return self._authenticate(info, sp, ctx)

    def _authenticate(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext) -> Result:
        d = self._d
        cert = ctx.presented.certificate
        facts = CertificateFacts.of(cert) if cert is not None else None
        session, why = d.sessions.find(ctx.session_token, idle_too=True)
        revoked = False
        if why in ("expired_idle", "expired_absolute"):
            # whose session it was, when it is still kept (idle, or past the absolute timeout a reload shortened):
            # the user's events are found by her identity (broker audit query --user)
            d.audit.record(AuditEvent("session_expired", "info", ctx.correlation_id, reason=None,
                                      detail=why, identity=session.identity if session is not None else None,
                                      client_address=ctx.client_address))
        elif why == "unreadable":  # logged with the store's key; the user logs in again, nothing answers from it
            d.audit.record(AuditEvent("session_unreadable", "failure", ctx.correlation_id,
                                      detail="the browser's session record could not be read (another release's "
                                             "form, or damaged): ignored", client_address=ctx.client_address))
        # an idle session answers no SP, but a certificate login in this browser replaces it (below), so that
        # its SPs stay in single logout (a federated one finds it itself: UpstreamStep.complete)
        if session is not None and why is None and ctx.session_token is not None:
            same_card = facts is None or facts.fingerprint_sha256 == session.certificate_sha256
            # a session resting on a municipal IdP is a proxied login, which ProxyCount="0" forbids as much as a
            # fresh one (SAML Core §3.4.1.5.1)
            proxied = info.proxy_count == 0 and session.authenticated_upstream is not None
            if not info.force_authn and same_card and not proxied:
                try:
                    reused = self._reuse(info, sp, ctx, ctx.session_token, session)
                except _StepUp as step_up:
                    # the municipal IdP can authenticate at the level the session lacks: ask it (SAML Core
                    # §3.3.2.2.1: NoAuthnContext is for a responder that cannot satisfy the request)
                    return self._continue_with(info, sp, ctx, step_up.municipality)
                if reused is not None:
                    return reused
                # its certificate no longer holds: a fresh login, which replaces the session (its SPs stay in
                # single logout), as it replaces an idle one
                revoked = True
        if cert is not None:
            return self._certificate.login(info, sp, ctx, cert, session)
        if why is not None or revoked:
            session = None  # an idle or revoked session chooses no municipality for the discovery below
        options = self._options(sp, info)
        if not options and info.proxy_count == 0 and self._options(sp):
            # every municipality open to the SP logs in through its own IdP, and the SP allows no proxying
            return self._answers.refuse(proxy_count_exceeded(info), ctx, info, sp, event="login_refused")
        if not any(m.config.login == "saml" for m in options):
            return self._missing_certificate(info, sp, ctx)
        chosen = self._preselected(info, ctx, options, session)
        if chosen is None:
            if info.is_passive:
                return self._answers.refuse(SamlRejected(
                    "passive_login_impossible", "the user must choose a municipality",
                    reply_to=info.reply_target()), ctx, info, sp, event="login_refused")
            login_id = d.sessions.put_pending(pending(info, ctx.correlation_id))
            return Discovery(login_id, options, ctx.correlation_id, sp.config.name,
                             preselected=ctx.remembered_municipality, form_targets=self._form_targets(options))
        return self._continue_with(info, sp, ctx, chosen)

    def _continue_with(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext,
                       municipality: Municipality, *, remember: str | None = None) -> Result:
        if municipality.config.login == "saml":
            if self._upstream is None:  # pragma: no cover - the loader requires the SP section
                raise RuntimeError("login: saml without the broker's SP side")
            return self._upstream.begin(info, sp, ctx, municipality, remember=remember)
        cert = ctx.presented.certificate
        if cert is not None:
            return self._certificate.login(info, sp, ctx, cert, None)
        # chosen among several (on a shared PC, remembered from the previous user): a user without that
        # municipality's card can go back to the choice, where her own municipality's IdP is
        return self._missing_certificate(info, sp, ctx, municipality,
                                         choose_again=len(self._options(sp, info)) > 1)

    def _missing_certificate(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext,
                             municipality: Municipality | None = None, *, choose_again: bool = False) -> Result:
        return self._answers.refuse(CertificateRejected("certificate_missing", "no certificate presented"), ctx,
                                    info, sp, municipality=municipality, event="login_refused",
                                    choose_again=choose_again)

    # --- discovery ---------------------------------------------------------------------------

    def _options(self, sp: ServiceProvider, info: AuthnRequestInfo | None = None) -> tuple[Municipality, ...]:
        """The municipalities whose users may log in to ``sp`` now, by name; for a request ``info``, only those
        it suggests (IDPList or ``?municipality=``: ids or IdP entity IDs) when it suggests any that are open to
        it (§3.4.1.3: the list is advisory), and of those none with its own IdP when the request allows no
        proxying (Scoping ProxyCount="0", SAML Core §3.4.1.5.1)."""
        found = []
        for mid in sp.config.municipalities:
            m = self._d.settings.municipalities.get(mid)
            if m is None or m.status == "suspended" or (m.status == "onboarding" and not sp.config.accept_onboarding):
                continue
            found.append(m)
        if info is not None:
            found = [m for m in found if _named(m, info.idp_hints)] or found
            if info.proxy_count == 0:
                found = [m for m in found if m.config.login != "saml"]
        return tuple(sorted(found, key=lambda m: m.config.name.sv))

    @staticmethod
    def _preselected(info: AuthnRequestInfo, ctx: ClientContext, options: tuple[Municipality, ...],
                     session: SsoSession | None = None) -> Municipality | None:
        """The municipality of the session being re-authenticated (ForceAuthn), the only option (the one the SP
        suggested, see :meth:`_options`), or the user's remembered choice; None when the user must choose."""
        def match(name: str | None) -> Municipality | None:
            return next((m for m in options if name and _named(m, (name,))), None)

        return match(session.identity.municipality_id if session else None) \
            or (options[0] if len(options) == 1 else None) or match(ctx.remembered_municipality)

    def correlation_of(self, login_id: str) -> str | None:
        """The correlation ID of a pending login (without consuming it), so that everything a request
        continuing it records is filed under the login's reference number."""
        found = self._d.sessions.peek_pending(login_id)
        return str(found["correlation_id"]) if found is not None else None

    def discovery(self, login_id: str, ctx: ClientContext) -> Discovery | LoginFailed:
        """The discovery page of a pending login again (search, language switch) without consuming it; an
        unknown one is refused (and audited) as a "try again" link to it would be."""
        d = self._d
        found = d.sessions.peek_pending(login_id)
        info = AuthnRequestInfo.from_dict(found["request"]) if found is not None else None
        sp = d.settings.sp_by_entity_id(info.sp_entity_id) if info is not None else None
        if found is None or info is None or sp is None:
            exc = SamlRejected("login_unknown", "no such pending login (expired, used, or the SP was removed)")
            d.audit.record(AuditEvent("saml_request_rejected", "failure", ctx.correlation_id,
                                      reason=exc.reason, detail=exc.detail, client_address=ctx.client_address))
            return LoginFailed(exc, ctx.correlation_id)
        options = self._options(sp, info)
        return Discovery(login_id, options, found["correlation_id"], sp.config.name,
                         form_targets=self._form_targets(options))

    def _form_targets(self, options: tuple[Municipality, ...]) -> tuple[str, ...]:
        return self._upstream.redirect_targets(options) if self._upstream is not None else ()

    def choose(self, login_id: str, municipality_id: str, remember: bool, ctx: ClientContext) -> Result:
        """The user chose a municipality on the discovery page."""
        taken = self._take(login_id, ctx)
        if isinstance(taken, LoginFailed):
            return taken
        info, sp, ctx = taken
        chosen = next((m for m in self._options(sp, info) if m.id == municipality_id), None)
        if chosen is None:
            exc = UpstreamRejected("municipality_unknown", f"{municipality_id!r} is not offered to {sp.entity_id}")
            return self._answers.refuse(exc, ctx, info, sp, event="login_refused")
        return self._continue_with(info, sp, ctx, chosen, remember=chosen.id if remember else None)

    def acs(self, message: InboundMessage, ctx: ClientContext) -> Result:
        """A municipal IdP's Response at the broker's ACS."""
        if self._upstream is None:  # the web layer answers 404 before this; any other caller is audited
            exc = UpstreamRejected("upstream_unsolicited", "the broker has no SP side configured")
            self._d.audit.record(AuditEvent(
                "saml_request_rejected", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                client_address=ctx.client_address, data=MappingProxyType({"binding": message.binding})))
            return LoginFailed(exc, ctx.correlation_id)
        return self._upstream.complete(message, ctx)

    # --- sessions ----------------------------------------------------------------------------

    def _reuse(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, token: str,
               session: SsoSession) -> Result | None:
        """Answer from the SSO session, or None when the session has just ended."""
        d = self._d
        checked, refusal = self._certificate.still_valid(info, sp, ctx, token, session)
        if refusal is not None:
            return refusal
        if checked is None:
            return None
        session = checked
        municipality = d.settings.municipalities.get(session.identity.municipality_id)
        loa = LOA_BY_URI.get(session.loa_uri)
        if municipality is not None and loa is not None and session.authenticated_upstream is not None \
                and session.trust != judged_by(municipality):
            # the IdP's answer the session rests on was judged (who, at what level) by a configuration no longer in
            # force: nothing is answered from it at that judgement; the IdP is asked again, or, when the
            # municipality no longer logs in through an IdP, the user logs in afresh (the session is replaced)
            if municipality.config.login != "saml" or self._upstream is None:
                return None
            d.audit.record(AuditEvent(
                "session_insufficient", "info", ctx.correlation_id, reason="session_configuration_changed",
                detail=f"the configuration of {municipality.id}'s IdP changed since the session's login",
                identity=session.identity, sp=sp.entity_id, client_address=ctx.client_address,
                data=MappingProxyType({"session_login": session.correlation_id, "loa": session.loa_uri})))
            raise _StepUp(municipality)
        try:
            if municipality is None or loa is None:
                raise CertificateRejected("issuer_unknown", "the session's municipality is no longer configured")
            self._answers.check_access(info, sp, municipality, loa)
        except (CertificateRejected, SamlRejected) as exc:
            if municipality is not None and loa is not None and _wants_more(exc.reason, info, loa) \
                    and municipality.config.login == "saml" and self._upstream is not None:
                # a session from the municipality's IdP at a lower level: its IdP is asked again for the level
                # the SP wants (a certificate's level is the certificate's: another card starts a new login)
                d.audit.record(AuditEvent(
                    "session_insufficient", "info", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                    identity=session.identity, sp=sp.entity_id, client_address=ctx.client_address,
                    data=MappingProxyType({"session_login": session.correlation_id, "loa": session.loa_uri})))
                raise _StepUp(municipality) from None
            d.audit.record(AuditEvent(
                "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                identity=session.identity, sp=sp.entity_id, client_address=ctx.client_address))
            return self._answers.refuse(exc, ctx, info, sp, municipality=municipality, retry=False)
        # session_reused is recorded by issue(), once the session has answered; for a session opened by certificate
        # with the certificate it rests on (issuer and serial: REFERENCE.md, Logging law and privacy)
        return self._answers.issue(info, sp, ctx, token, d.sessions.touch(token, session), new_session=False,
                                   certificate=_certificate_of(session))


def _certificate_of(session: SsoSession) -> CertificateFacts | None:
    """What the audit trail records of the certificate a session was opened by (None: a federated login's)."""
    if session.certificate_der is None:
        return None
    return CertificateFacts.of(x509.load_der_x509_certificate(base64.b64decode(session.certificate_der)))


def _wants_more(reason: str, info: AuthnRequestInfo, loa: Loa) -> bool:
    """Whether a session at ``loa`` was refused for too low a level, which a new authentication may meet: the
    SP's minimum (``loa_insufficient``), or a RequestedAuthnContext that some level above ``loa`` satisfies.
    A request for a lower or another level is no reason to authenticate again (it would replace a stronger
    session with a weaker one)."""
    if reason == "loa_insufficient":
        return True
    return reason == "authn_context_unsupported" and any(
        satisfies(higher, info.requested_contexts, info.comparison)
        for higher in KNOWN_LOAS.values() if higher.rank > loa.rank)


class _StepUp(Exception):
    """The session's level does not do for the request, and its municipality's IdP may give a higher one."""

    def __init__(self, municipality: Municipality) -> None:
        super().__init__(municipality.id)
        self.municipality = municipality


def _named(municipality: Municipality, names: tuple[str, ...]) -> bool:
    """Whether one of ``names`` is the municipality's id or its IdP's entity ID."""
    saml = municipality.config.saml
    return any(name == municipality.id or (saml is not None and name == saml.entity_id) for name in names)
