"""Certificate login: validate the presented certificate, apply the SP's rules, open the session.

And the other direction: a session opened by certificate follows revocation;
once its revocation answer has expired, the certificate is validated again.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType

from cryptography import x509

from broker.audit.events import AuditEvent
from broker.config.loader import Municipality, ServiceProvider
from broker.errors import CertificateRejected, ProxyHeaderRejected, RateLimited, SamlRejected
from broker.flow.answers import Answers
from broker.flow.deps import FlowDeps
from broker.flow.results import ClientContext, Result
from broker.model import LOA_BY_URI, CertificateFacts, certificate_der
from broker.pki.sources import PresentedCertificate
from broker.pki.validator import ValidatedCertificate
from broker.saml.authnrequest import AuthnRequestInfo
from broker.session.rate_limit import counts_as_failure
from broker.session.sessions import SsoSession

# When re-checking a session's certificate, these mean "cannot tell now", not "no longer valid".
_TRANSIENT_REVOCATION = frozenset({"revocation_unavailable", "revocation_stale", "revocation_response_invalid"})


class CertificateStep:
    def __init__(self, deps: FlowDeps, answers: Answers) -> None:
        self._d = deps
        self._answers = answers

    def resolve(self, correlation_id: str, remote_addr: str | None, header_value: str | None,
                tls_pem: str | None, chain_value: str | None = None, *,
                client_address: str | None) -> PresentedCertificate:
        """The request's certificate; a forged or broken proxy header is audited. ``remote_addr`` is the peer
        (a trusted proxy, or the user), ``client_address`` the user's address as every record carries it
        (docs/proxies.md: through a trusted proxy, its X-Forwarded-For; never the proxy's own): the proxy that
        sent an unusable header is named apart, in ``data.proxy``."""
        d = self._d
        try:
            presented = d.certificate_sources.resolve(remote_addr, header_value, tls_pem, chain_value)
        except ProxyHeaderRejected as exc:
            d.audit.record(AuditEvent("proxy_header_rejected", "failure", correlation_id, reason=exc.reason,
                                      detail=exc.detail, client_address=client_address,
                                      data=MappingProxyType({"proxy": remote_addr})))
            raise
        except CertificateRejected as exc:
            d.audit.record(AuditEvent("certificate_rejected", "failure", correlation_id, reason=exc.reason,
                                      detail=exc.detail, client_address=client_address))
            raise
        if presented.untrusted_header:
            # the proxy's headers this peer sent (the chain header may come alone)
            sources = d.certificate_sources
            sent = [name for name, value in ((sources.header, header_value), (sources.chain_header, chain_value))
                    if name is not None and value is not None]
            d.audit.record(AuditEvent(
                "proxy_header_untrusted", "failure", correlation_id, reason="proxy_header_untrusted",
                detail=f"header{'s' if len(sent) > 1 else ''} {' and '.join(sent)} from {remote_addr} ignored",
                client_address=remote_addr))
        return presented

    def login(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, cert: x509.Certificate,
              old_session: SsoSession | None) -> Result:
        d = self._d
        facts = CertificateFacts.of(cert)
        d.audit.record(AuditEvent("certificate_presented", "info", ctx.correlation_id, certificate=facts,
                                  sp=sp.entity_id, client_address=ctx.client_address,
                                  data=MappingProxyType({"via": ctx.presented.via})))
        try:
            d.limiter.check(ctx.client_address, facts.fingerprint_sha256)
        except RateLimited as limited:
            return self._answers.rate_limited(limited, ctx, info, sp, municipality=self.municipality_of(cert),
                                              certificate=facts,
                                              identity=d.validator.claimed_identity(cert, ctx.presented.chain))
        try:
            validated = d.validator.validate(cert, ctx.presented.chain)
        except CertificateRejected as exc:
            municipality = self.municipality_of(cert, ctx.presented.chain)
            d.audit.record(AuditEvent(
                "certificate_rejected", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                municipality=municipality.id if municipality else None, certificate=facts, sp=sp.entity_id,
                identity=d.validator.claimed_identity(cert, ctx.presented.chain),
                client_address=ctx.client_address))
            if counts_as_failure(exc):
                d.limiter.record_failure(ctx.client_address, facts.fingerprint_sha256)
            return self._answers.refuse(exc, ctx, info, sp, municipality=municipality)
        d.audit.record(AuditEvent(
            "certificate_accepted", "success", ctx.correlation_id, municipality=validated.municipality_id,
            identity=validated.identity, certificate=facts, sp=sp.entity_id, client_address=ctx.client_address,
            data=MappingProxyType({"loa": validated.loa.uri, "policy": validated.policy_oid,
                                   "revocation": validated.revocation.summary,
                                   "revocation_sources": tuple(sorted({c.source for c in
                                                                       validated.revocation.checked})),
                                   # how each OCSP responder relied on was asked (RFC 5019 §5: GET or POST)
                                   "revocation_ocsp_methods": {c.source: c.http_method
                                                               for c in validated.revocation.checked
                                                               if c.http_method is not None}})))
        self.audit_soft_fail(validated, ctx, sp)
        municipality = d.settings.municipalities[validated.municipality_id]
        try:
            self._answers.check_access(info, sp, municipality, validated.loa)
        except (CertificateRejected, SamlRejected) as exc:
            d.audit.record(AuditEvent(
                "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                identity=validated.identity, sp=sp.entity_id, client_address=ctx.client_address))
            return self._answers.refuse(exc, ctx, info, sp, municipality=municipality, retry=False)
        # a new login replaces the browser's session (a new cookie: no fixation); its SPs and its municipal IdP
        # session, if it was federated, stay in single logout (SessionManager.replace): the browser still holds
        # them, and a certificate login has no IdP session of its own to put in the latter's place. Another
        # user's session is kept apart for her single logout instead
        replaced = self._answers.replace_session(ctx, old_session, validated.identity)
        token, session = d.sessions.open(  # stored by issue(), with the SP and what it took over
            validated.identity, validated.loa.uri, ctx.correlation_id,
            certificate_sha256=facts.fingerprint_sha256,
            revocation_valid_until=validated.revocation.valid_until,
            certificate_der=certificate_der(cert),
            certificate_chain_der=[certificate_der(c) for c in ctx.presented.chain],
            upstream=replaced.upstream if replaced is not None else None,
            # a session proves no more than its certificate: it ends when the certificate's path does, before
            # the absolute timeout if sooner (also when no revocation check would look at it again)
            not_after=validated.path.not_after,
            trust=d.validator.trust_digest(validated.municipality_id),
        )
        return self._answers.issue(info, sp, ctx, token, session, new_session=True, certificate=facts,
                                   replaced=replaced)

    def audit_soft_fail(self, validated: ValidatedCertificate, ctx: ClientContext, sp: ServiceProvider) -> None:
        failed = validated.revocation.soft_fail
        if failed is not None:
            self._d.audit.record(AuditEvent(
                "revocation_soft_fail", "failure", ctx.correlation_id, reason=failed.reason, detail=failed.detail,
                identity=validated.identity, certificate=validated.facts, sp=sp.entity_id,
                client_address=ctx.client_address))

    def still_valid(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, token: str,
                    session: SsoSession) -> tuple[SsoSession | None, Result | None]:
        """Sessions follow revocation and the configuration: once the session's revocation answer has expired, or
        the municipality's trust configuration differs from the one the certificate was validated under (a
        reload: :func:`broker.pki.validator.trust_digest`), validate the certificate again.

        Returns the (refreshed) session, or None when it answers no SP any more (revoked, expired, no longer
        trusted, or proving another identity), or a refusal when the status cannot be established now (fail
        closed; the session is kept). A session that answers no SP is retired, not deleted
        (:meth:`SessionManager.retire`): its SPs still hold the user, so it stays for single logout (a
        LogoutRequest from any of them reaches the others, SAML Profiles §4.4.3.3) until the next login in the
        browser replaces it, taking them over, or it reaches its end; a card that becomes good again (a hold
        lifted) does not revive it. A card that now proves a lower LoA (its CA certificate on the better path
        revoked, say) lowers the session's: it answers at no more than what the card proves.
        """
        d = self._d
        until = session.revocation_valid_until
        if session.certificate_der is None:
            return session, None
        if session.trust == d.validator.trust_digest(session.identity.municipality_id) \
                and (until is None or d.clock.now() < until):
            return session, None
        cert = x509.load_der_x509_certificate(base64.b64decode(session.certificate_der))
        chain = [x509.load_der_x509_certificate(base64.b64decode(der)) for der in session.certificate_chain_der]
        try:
            validated = d.validator.validate(cert, chain)
            if validated.identity.key != session.identity.key or validated.identity.kind != session.identity.kind \
                    or validated.municipality_id != session.identity.municipality_id:
                raise CertificateRejected("identity_invalid", "the certificate now maps to another identity or "
                                                              "municipality than the session's (the configuration "
                                                              "changed)")
        except CertificateRejected as exc:
            if exc.reason in _TRANSIENT_REVOCATION:
                d.audit.record(AuditEvent(
                    "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                    identity=session.identity, certificate=CertificateFacts.of(cert), sp=sp.entity_id,
                    client_address=ctx.client_address))
                return session, self._answers.refuse(exc, ctx, info, sp, retry=False)
            d.sessions.retire(token, session, exc.reason)
            d.audit.record(AuditEvent(
                "session_revoked", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                identity=session.identity, certificate=CertificateFacts.of(cert), sp=sp.entity_id,
                client_address=ctx.client_address, data=MappingProxyType({"session_login": session.correlation_id})))
            return None, None
        self.audit_soft_fail(validated, ctx, sp)
        held = LOA_BY_URI.get(session.loa_uri)
        loa_uri = validated.loa.uri if held is None or validated.loa.rank < held.rank else session.loa_uri
        return replace(session, revocation_valid_until=validated.revocation.valid_until, loa_uri=loa_uri,
                       expires_at=min(session.expires_at, validated.path.not_after),
                       trust=d.validator.trust_digest(validated.municipality_id)), None

    def municipality_of(self, cert: x509.Certificate,
                        presented: Sequence[x509.Certificate] = ()) -> Municipality | None:
        try:
            domain = self._d.validator.domain_of(cert, presented)
        except CertificateRejected:
            return None
        return self._d.settings.municipalities.get(domain.id)
