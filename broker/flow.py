"""The login state machine: from an AuthnRequest to a signed Response (or a clear refusal).

No Flask here: the web layer turns HTTP into calls on :class:`LoginFlow` and
its results (:class:`PostToSp`, :class:`LoginFailed`, :class:`Redirect`) into
pages. Every step is audited under one correlation ID; the caller makes the
audit durable (``AuditTrail.sync``) before it sends the response.

Steps of a certificate login (DESIGN.md, flow 1):

1. ``start``: vet the AuthnRequest, audit ``login_started``, store it as a
   pending login (one-time use), continue at once with ``resume``.
2. ``resume``: take the pending login; reuse a live SSO session unless
   ForceAuthn (or a different certificate is presented); otherwise validate
   the presented certificate, check the SP's access rules, create a session.
3. Issue the signed Response and remember the SP for logout.

A refusal keeps the request: a new pending login lets the user try again
(another card, the right certificate) without going back to the SP.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.audit.events import AuditEvent, new_correlation_id
from broker.audit.trail import AuditTrail
from broker.clock import Clock
from broker.config.loader import Municipality, ServiceProvider, Settings
from broker.config.schema import LocalizedText
from broker.errors import BrokerError, CertificateRejected, ProxyHeaderRejected, SamlRejected
from broker.model import KNOWN_LOAS, LOA_BY_URI, CertificateFacts, Loa, ReplyTarget
from broker.pki.sources import CertificateSourceResolver, PresentedCertificate
from broker.pki.validator import CertificateValidator, ValidatedCertificate
from broker.saml.authnrequest import AuthnRequestInfo, AuthnRequestParser
from broker.saml.bindings import STATUS_SUCCESS, InboundMessage
from broker.saml.logout import UNKNOWN_PRINCIPAL, LogoutHandler, OutboundMessage
from broker.saml.nameid import NameIdIssuer
from broker.saml.release import available_attributes, release
from broker.saml.response import AssertionContent, ResponseBuilder
from broker.session.sessions import Participant, SessionManager, SsoSession

# --- inputs and results ----------------------------------------------------------------


@dataclass(frozen=True)
class ClientContext:
    """What the web layer knows about the request."""

    correlation_id: str
    client_address: str | None
    presented: PresentedCertificate
    session_token: str | None


@dataclass(frozen=True)
class PostToSp:
    """Deliver a SAML message to the SP through an auto-submitting form (HTTP-POST binding)."""

    url: str
    fields: dict[str, str]
    correlation_id: str
    sp_name: LocalizedText | None
    set_session: str | None = None
    clear_session: bool = False


@dataclass(frozen=True)
class Redirect:
    url: str
    correlation_id: str
    clear_session: bool = False


@dataclass(frozen=True)
class LoginFailed:
    """A refusal the user must see: what happened, what to do, and how to go on."""

    error: BrokerError
    correlation_id: str
    sp_name: LocalizedText | None = None
    municipality: Municipality | None = None
    retry_login_id: str | None = None
    back_to_sp: PostToSp | None = None


Result = PostToSp | LoginFailed | Redirect

# When re-checking a session's certificate, these mean "cannot tell now", not "no longer valid".
_TRANSIENT_REVOCATION = frozenset({"revocation_unavailable", "revocation_stale", "revocation_response_invalid"})


def satisfies(loa: Loa, requested: tuple[str, ...], comparison: str) -> bool:
    """Does ``loa`` meet a RequestedAuthnContext (SAML Core §3.3.2.2.1)?

    ``exact``: the issued ClassRef is one of those requested. The ordered
    comparisons use the ranks of the requested LoAs the broker knows:
    ``minimum``: at least as strong as one of them; ``better``: stronger than
    all of them; ``maximum``: no stronger than one of them.
    """
    if not requested:
        return True
    if comparison == "exact":
        return loa.uri in requested
    ranks = [LOA_BY_URI[uri].rank for uri in requested if uri in LOA_BY_URI]
    if not ranks:
        return False
    if comparison == "minimum":
        return loa.rank >= min(ranks)
    if comparison == "better":
        return loa.rank > max(ranks)
    return loa.rank <= max(ranks)  # maximum


class LoginFlow:
    def __init__(self, settings: Settings, clock: Clock, *, validator: CertificateValidator,
                 sessions: SessionManager, audit: AuditTrail, parser: AuthnRequestParser,
                 responses: ResponseBuilder, nameids: NameIdIssuer, logout: LogoutHandler,
                 certificate_sources: CertificateSourceResolver) -> None:
        self._settings = settings
        self._clock = clock
        self._validator = validator
        self._sessions = sessions
        self._audit = audit
        self._parser = parser
        self._responses = responses
        self._nameids = nameids
        self._logout = logout
        self.certificate_sources = certificate_sources

    # --- the client certificate ----------------------------------------------------------

    def client_certificate(self, correlation_id: str, remote_addr: str | None, header_value: str | None,
                           tls_pem: str | None) -> PresentedCertificate:
        """Resolve the request's certificate; audit a forged or broken proxy header."""
        try:
            presented = self.certificate_sources.resolve(remote_addr, header_value, tls_pem)
        except ProxyHeaderRejected as exc:
            self._audit.record(AuditEvent("proxy_header_rejected", "failure", correlation_id, reason=exc.reason,
                                          detail=exc.detail, client_address=remote_addr))
            raise
        except CertificateRejected as exc:
            self._audit.record(AuditEvent("certificate_rejected", "failure", correlation_id, reason=exc.reason,
                                          detail=exc.detail, client_address=remote_addr))
            raise
        if presented.untrusted_header:
            self._audit.record(AuditEvent(
                "proxy_header_untrusted", "failure", correlation_id, reason="proxy_header_untrusted",
                detail=f"header {self.certificate_sources.header} from {remote_addr} ignored",
                client_address=remote_addr))
        return presented

    # --- SSO ---------------------------------------------------------------------------

    def reject(self, exc: SamlRejected, ctx: ClientContext, binding: str) -> Result:
        """A message that could not even be read off the binding (missing or duplicated parameters)."""
        self._audit.record(AuditEvent(
            "saml_request_rejected", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
            client_address=ctx.client_address, data=MappingProxyType({"binding": binding})))
        return LoginFailed(exc, ctx.correlation_id)

    def start(self, message: InboundMessage, ctx: ClientContext) -> Result:
        """Handle an AuthnRequest arriving at the SSO endpoint."""
        try:
            info, sp = self._parser.parse(message)
        except SamlRejected as exc:
            self._audit.record(AuditEvent(
                "saml_request_rejected", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                sp=exc.reply_to.sp_entity_id if exc.reply_to else None, client_address=ctx.client_address,
                data=MappingProxyType({"binding": message.binding})))
            return self._refuse(exc, ctx, None, None)
        self._audit.record(AuditEvent(
            "login_started", "info", ctx.correlation_id, sp=sp.entity_id, client_address=ctx.client_address,
            data=MappingProxyType({
                "request_id": info.request_id[:256], "binding": info.binding, "signed": info.signed,
                "force_authn": info.force_authn, "is_passive": info.is_passive,
                "nameid_format": info.nameid_format, "requested_context": info.requested_contexts,
            })))
        login_id = self._sessions.put_pending(self._pending(info, ctx.correlation_id))
        return self.resume(login_id, ctx)

    def resume(self, login_id: str, ctx: ClientContext) -> Result:
        """Continue a pending login (consumes it)."""
        pending = self._sessions.take_pending(login_id)
        sp = None
        if pending is not None:
            info = AuthnRequestInfo.from_dict(pending["request"])
            sp = self._settings.sp_by_entity_id(info.sp_entity_id)
        if pending is None or sp is None:
            exc = SamlRejected("login_unknown", "no such pending login (expired, used, or the SP was removed)")
            self._audit.record(AuditEvent("saml_request_rejected", "failure", ctx.correlation_id,
                                          reason=exc.reason, detail=exc.detail, client_address=ctx.client_address))
            return LoginFailed(exc, ctx.correlation_id)
        ctx = replace(ctx, correlation_id=pending["correlation_id"])
        return self._authenticate(info, sp, ctx)

    def _pending(self, info: AuthnRequestInfo, correlation_id: str) -> dict[str, object]:
        return {"request": info.to_dict(), "correlation_id": correlation_id}

    def _authenticate(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext) -> Result:
        cert = ctx.presented.certificate
        facts = CertificateFacts.of(cert) if cert is not None else None
        session, why = self._sessions.find(ctx.session_token)
        if why in ("expired_idle", "expired_absolute"):
            self._audit.record(AuditEvent("session_expired", "info", ctx.correlation_id, reason=None,
                                          detail=why, client_address=ctx.client_address))
        if session is not None and ctx.session_token is not None:
            same_card = facts is None or facts.fingerprint_sha256 == session.certificate_sha256
            if not info.force_authn and same_card:
                reused = self._reuse(info, sp, ctx, ctx.session_token, session)
                if reused is not None:
                    return reused
                session = None  # the session ended (its certificate no longer holds): log in afresh

        if cert is None or facts is None:
            return self._refuse(CertificateRejected("certificate_missing", "no certificate presented"), ctx,
                                info, sp, event="login_refused")
        self._audit.record(AuditEvent("certificate_presented", "info", ctx.correlation_id, certificate=facts,
                                      sp=sp.entity_id, client_address=ctx.client_address,
                                      data=MappingProxyType({"via": ctx.presented.via})))
        try:
            validated = self._validator.validate(cert)
        except CertificateRejected as exc:
            municipality = self._municipality_of(cert)
            self._audit.record(AuditEvent(
                "certificate_rejected", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                municipality=municipality.id if municipality else None, certificate=facts, sp=sp.entity_id,
                client_address=ctx.client_address))
            return self._refuse(exc, ctx, info, sp, municipality=municipality)
        self._audit.record(AuditEvent(
            "certificate_accepted", "success", ctx.correlation_id, municipality=validated.municipality_id,
            identity=validated.identity, certificate=facts, sp=sp.entity_id, client_address=ctx.client_address,
            data=MappingProxyType({"loa": validated.loa.uri, "policy": validated.policy_oid,
                                   "revocation": validated.revocation.summary,
                                   "revocation_sources": tuple(sorted({c.source for c in
                                                                       validated.revocation.checked}))})))
        self._audit_soft_fail(validated, ctx, sp)
        municipality = self._settings.municipalities[validated.municipality_id]
        try:
            self._check_access(info, sp, municipality, validated.loa)
        except (CertificateRejected, SamlRejected) as exc:
            self._audit.record(AuditEvent(
                "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                identity=validated.identity, sp=sp.entity_id, client_address=ctx.client_address))
            return self._refuse(exc, ctx, info, sp, municipality=municipality, retry=False)

        if ctx.session_token is not None and session is not None:
            self._sessions.end(ctx.session_token)  # a new login replaces the old session (no fixation)
        token, session = self._sessions.create(
            validated.identity, validated.loa.uri, ctx.correlation_id,
            certificate_sha256=facts.fingerprint_sha256,
            revocation_valid_until=validated.revocation.valid_until,
            certificate_der=cert.public_bytes(serialization.Encoding.DER),
        )
        return self._issue(info, sp, ctx, token, session, new_session=True, validated=validated)

    def _audit_soft_fail(self, validated: ValidatedCertificate, ctx: ClientContext, sp: ServiceProvider) -> None:
        failed = validated.revocation.soft_fail
        if failed is not None:
            self._audit.record(AuditEvent(
                "revocation_soft_fail", "failure", ctx.correlation_id, reason=failed.reason, detail=failed.detail,
                identity=validated.identity, certificate=validated.facts, sp=sp.entity_id,
                client_address=ctx.client_address))

    def _still_valid(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, token: str,
                     session: SsoSession) -> tuple[SsoSession | None, Result | None]:
        """Sessions follow revocation: once the session's revocation answer has expired, establish it again.

        Returns the (refreshed) session, or None if it ended (revoked, expired, no longer trusted), or a
        refusal when the status cannot be established now (fail closed; the session is kept).
        """
        until = session.revocation_valid_until
        if until is None or self._clock.now() < until or session.certificate_der is None:
            return session, None
        cert = x509.load_der_x509_certificate(base64.b64decode(session.certificate_der))
        try:
            validated = self._validator.validate(cert)
        except CertificateRejected as exc:
            if exc.reason in _TRANSIENT_REVOCATION:
                self._audit.record(AuditEvent(
                    "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                    identity=session.identity, certificate=CertificateFacts.of(cert), sp=sp.entity_id,
                    client_address=ctx.client_address))
                return session, self._refuse(exc, ctx, info, sp, retry=False)
            self._sessions.end(token)
            self._audit.record(AuditEvent(
                "session_revoked", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                identity=session.identity, certificate=CertificateFacts.of(cert), sp=sp.entity_id,
                client_address=ctx.client_address, data=MappingProxyType({"session_login": session.correlation_id})))
            return None, None
        self._audit_soft_fail(validated, ctx, sp)
        return replace(session, revocation_valid_until=validated.revocation.valid_until), None

    def _reuse(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, token: str,
               session: SsoSession) -> Result | None:
        """Answer from the SSO session, or None when the session has just ended."""
        checked, refusal = self._still_valid(info, sp, ctx, token, session)
        if refusal is not None:
            return refusal
        if checked is None:
            return None
        session = checked
        municipality = self._settings.municipalities.get(session.identity.municipality_id)
        loa = LOA_BY_URI.get(session.loa_uri)
        try:
            if municipality is None or loa is None:
                raise CertificateRejected("issuer_unknown", "the session's municipality is no longer configured")
            if municipality.status == "suspended":
                raise CertificateRejected("municipality_suspended", f"municipality {municipality.id!r}")
            self._check_access(info, sp, municipality, loa)
        except (CertificateRejected, SamlRejected) as exc:
            self._audit.record(AuditEvent(
                "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                identity=session.identity, sp=sp.entity_id, client_address=ctx.client_address))
            return self._refuse(exc, ctx, info, sp, municipality=municipality, retry=False)
        session = self._sessions.touch(token, session)
        self._audit.record(AuditEvent(
            "session_reused", "success", ctx.correlation_id, identity=session.identity, sp=sp.entity_id,
            client_address=ctx.client_address,
            data=MappingProxyType({"session_login": session.correlation_id, "loa": session.loa_uri})))
        return self._issue(info, sp, ctx, token, session, new_session=False, validated=None)

    def _check_access(self, info: AuthnRequestInfo, sp: ServiceProvider, municipality: Municipality,
                      loa: Loa) -> None:
        """The SP's rules: which municipalities, onboarding, minimum LoA, RequestedAuthnContext."""
        if municipality.id not in sp.config.municipalities:
            raise CertificateRejected("municipality_not_allowed",
                                      f"{sp.entity_id} does not accept municipality {municipality.id!r}")
        if municipality.status == "onboarding" and not sp.config.accept_onboarding:
            raise CertificateRejected("municipality_not_active",
                                      f"municipality {municipality.id!r} is onboarding")
        minimum = KNOWN_LOAS[sp.config.minimum_loa] if sp.config.minimum_loa else None
        if minimum is not None and loa.rank < minimum.rank:
            raise CertificateRejected("loa_insufficient", f"{loa.name} is below the SP's minimum {minimum.name}",
                                      params={"loa": loa.name, "required": minimum.name})
        if not satisfies(loa, info.requested_contexts, info.comparison):
            raise SamlRejected("authn_context_unsupported",
                               f"{loa.uri} does not satisfy {info.comparison} {list(info.requested_contexts)}",
                               reply_to=info.reply_target())

    def _issue(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, token: str,
               session: SsoSession, *, new_session: bool, validated: ValidatedCertificate | None) -> PostToSp:
        identity = session.identity
        municipality = self._settings.municipalities[identity.municipality_id]
        name_id = self._nameids.issue(info.nameid_format, sp.entity_id, identity)
        attributes = release(sp.config.release,
                             available_attributes(identity, municipality.config, ctx.correlation_id))
        content = AssertionContent(
            name_id=name_id,
            name_id_format=info.nameid_format,
            loa_uri=session.loa_uri,
            authn_instant=session.authn_instant,
            session_index=session.session_index,
            session_not_on_or_after=session.expires_at,
            attributes=attributes,
        )
        xml = self._responses.success(info.reply_target(), content, sign_response=sp.config.sign_response)
        self._sessions.add_participant(token, session, Participant(sp.entity_id, name_id, info.nameid_format))
        self._audit.record(AuditEvent(
            "assertion_issued", "success", ctx.correlation_id, identity=identity, sp=sp.entity_id,
            certificate=validated.facts if validated else None, client_address=ctx.client_address,
            data=MappingProxyType({
                "request_id": info.request_id[:256], "loa": session.loa_uri, "nameid": name_id,
                "nameid_format": info.nameid_format, "attributes": tuple(a.friendly_name for a in attributes),
                "session": "new" if new_session else "reused",
            })))
        return PostToSp(info.acs_url, self._fields(xml, info.relay_state), ctx.correlation_id, sp.config.name,
                        set_session=token if new_session else None)

    # --- refusals --------------------------------------------------------------------

    def _refuse(self, exc: BrokerError, ctx: ClientContext, info: AuthnRequestInfo | None,
                sp: ServiceProvider | None, *, municipality: Municipality | None = None,
                event: str | None = None, retry: bool = True) -> Result:
        """Turn a refusal into an error page, or a SAML error Response where SAML calls for one.

        A SAML error Response goes straight back to the SP when the user cannot
        act on the refusal (protocol errors the SP must fix, IsPassive). For a
        certificate problem the user gets the page (with a way to retry and a
        way back to the SP).
        """
        if event == "login_refused":
            self._audit.record(AuditEvent("login_refused", "failure", ctx.correlation_id, reason=exc.reason,
                                          detail=exc.detail, sp=sp.entity_id if sp else None,
                                          client_address=ctx.client_address))
        target = exc.reply_to if isinstance(exc, SamlRejected) else None
        if target is None and info is not None:
            target = info.reply_target()
        if info is not None and info.is_passive and target is not None and not isinstance(exc, SamlRejected):
            # SAML Core §3.4.1: IsPassive forbids showing the user anything; the SP learns why from NoPassive
            exc = SamlRejected("passive_login_impossible", f"{exc.reason}: {exc.detail}", reply_to=target)
        sp_name = sp.config.name if sp else None
        status = exc.row.saml_status
        if isinstance(exc, SamlRejected) and target is not None and status is not None:
            return self._error_response(target, status, exc, ctx, sp_name, delivered=True)
        # For a problem the user can act on: the page, plus a signed error Response the user may take back
        back = self._error_response(target, status, exc, ctx, sp_name, delivered=False) \
            if target is not None and status is not None else None
        retry_id = None
        if retry and info is not None and isinstance(exc, CertificateRejected):
            retry_id = self._sessions.put_pending(self._pending(info, ctx.correlation_id))
        return LoginFailed(exc, ctx.correlation_id, sp_name, municipality, retry_id, back)

    def _error_response(self, target: ReplyTarget, status: str, exc: BrokerError, ctx: ClientContext,
                        sp_name: LocalizedText | None, *, delivered: bool) -> PostToSp:
        """A signed error Response; audited when it is sent (not when only offered on the page)."""
        xml = self._responses.error(target, status, exc.reason)
        if delivered:
            self._audit.record(AuditEvent(
                "error_response_issued", "failure", ctx.correlation_id, reason=exc.reason,
                sp=target.sp_entity_id, client_address=ctx.client_address,
                data=MappingProxyType({"status": status})))
        return PostToSp(target.acs_url, self._fields(xml, target.relay_state), ctx.correlation_id, sp_name)

    @staticmethod
    def _fields(xml: bytes, relay_state: str | None) -> dict[str, str]:
        fields = {"SAMLResponse": base64.b64encode(xml).decode("ascii")}
        if relay_state is not None:
            fields["RelayState"] = relay_state
        return fields

    def _municipality_of(self, cert: x509.Certificate) -> Municipality | None:
        try:
            domain = self._validator.domain_of(cert)
        except CertificateRejected:
            return None
        return self._settings.municipalities.get(domain.id)

    # --- logout ----------------------------------------------------------------------

    def logout(self, message: InboundMessage, ctx: ClientContext) -> Result:
        """An SP's LogoutRequest: end the session it names and answer with a LogoutResponse."""
        try:
            request = self._logout.parse(message)
        except SamlRejected as exc:
            self._audit.record(AuditEvent("logout", "failure", ctx.correlation_id, reason=exc.reason,
                                          detail=exc.detail, client_address=ctx.client_address))
            return LoginFailed(exc, ctx.correlation_id)
        session, _ = self._sessions.find(ctx.session_token)
        ended = False
        mismatch = False
        if session is not None and ctx.session_token is not None:
            participants = self._sessions.participants(ctx.session_token)
            names = {p.name_id for p in participants if p.sp_entity_id == request.sp.entity_id}
            index_ok = not request.session_indexes or session.session_index in request.session_indexes
            if request.name_id in names and index_ok:
                self._sessions.end(ctx.session_token)
                ended = True
            else:
                mismatch = True
        self._audit.record(AuditEvent(
            "logout", "failure" if mismatch else "success", ctx.correlation_id,
            reason="logout_request_invalid" if mismatch else None,
            detail="the NameID or SessionIndex does not match this browser's session" if mismatch else None,
            identity=session.identity if session else None, sp=request.sp.entity_id,
            client_address=ctx.client_address,
            data=MappingProxyType({"session_ended": ended, "request_id": request.request_id[:256]})))
        out: OutboundMessage = (
            self._logout.response(request, "", UNKNOWN_PRINCIPAL) if mismatch
            else self._logout.response(request, STATUS_SUCCESS)
        )
        if out.fields:
            return PostToSp(out.url, out.fields, ctx.correlation_id, request.sp.config.name, clear_session=ended)
        return Redirect(out.url, ctx.correlation_id, clear_session=ended)


def new_context(client_address: str | None, presented: PresentedCertificate, session_token: str | None,
                correlation_id: str | None = None) -> ClientContext:
    return ClientContext(correlation_id or new_correlation_id(), client_address, presented, session_token)

