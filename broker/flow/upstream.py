"""Logging in through a municipality's own IdP: the broker as SAML SP (DESIGN.md, flow 2).

``begin`` sends a signed AuthnRequest upstream, passing on the SP's
ForceAuthn and IsPassive and its RequestedAuthnContext mapped to the IdP's
ClassRefs; the SP's pending login waits in the store under the upstream
request's ID. ``complete`` finds that pending login by the Response's
InResponseTo and takes it (one use) once the Response is known to have
arrived in the login's own browser, checks the Response's own fields before
its status, validates it (:mod:`broker.saml.upstream_response`), refuses
replays, maps attributes, identity and LoA, checks the returned context
against what the SP asked, opens the session and answers the SP.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import threading
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives import hashes
from lxml import etree

from broker.audit.events import AuditEvent
from broker.config.loader import Municipality, ServiceProvider
from broker.errors import BrokerError, CertificateRejected, RateLimited, SamlRejected, UpstreamRejected
from broker.flow.answers import Answers
from broker.flow.deps import FlowDeps, upstream_answer_window
from broker.flow.logout import logged_out_upstream
from broker.flow.proxying import check_proxy_restriction, proxy_count_exceeded
from broker.flow.results import ClientContext, LoginFailed, PostToSp, Redirect, Result
from broker.lru import by_identity
from broker.model import KNOWN_LOAS, Identity, Loa, satisfies
from broker.saml.authnrequest import AuthnRequestInfo
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT, NAMEID_FORMATS, InboundMessage, decode
from broker.saml.metadata import IdpMetadata
from broker.saml.outbound import MessageSender
from broker.saml.upstream_mapping import (
    canonical_attributes,
    configuration_digest,
    identity_of,
    loa_of,
    upstream_class_refs,
)
from broker.saml.upstream_metadata import UpstreamMetadata
from broker.saml.upstream_request import build_authn_request
from broker.saml.upstream_response import Expectations, ResponseValidator, parse_response, status_of
from broker.saml.xmldsig import XmlVerifier
from broker.saml.xmlenc import Decrypter
from broker.saml.xstypes import XML_SPACE
from broker.session.rate_limit import counts_as_failure
from broker.session.sessions import new_token

SAML_STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
NO_PASSIVE = SAML_STATUS + "NoPassive"
NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"


class UpstreamStep:
    def __init__(self, deps: FlowDeps, answers: Answers, *, metadata: UpstreamMetadata, sender: MessageSender,
                 decrypter: Decrypter, sp_entity_id: str, acs_url: str) -> None:
        self._d = deps
        self._answers = answers
        self.metadata = metadata
        self._sender = sender
        self._decrypter = decrypter
        self._sp_entity_id = sp_entity_id
        self.acs_url = acs_url
        self._validators: dict[str, ResponseValidator] = {}
        self._lock = threading.Lock()

    # --- to the IdP ------------------------------------------------------------------------

    def begin(self, info: AuthnRequestInfo, sp: ServiceProvider, ctx: ClientContext, municipality: Municipality,
              *, remember: str | None = None) -> Result:
        d = self._d
        saml = municipality.config.saml
        assert saml is not None
        if info.proxy_count == 0:
            return self._answers.refuse(proxy_count_exceeded(info), ctx, info, sp, municipality=municipality,
                                        event="login_refused")
        try:
            d.limiter.check(ctx.client_address)
        except RateLimited as limited:
            return self._answers.rate_limited(limited, ctx, info, sp, municipality=municipality)
        try:
            self._answers.check_access(info, sp, municipality, _best_loa(municipality))
        except (CertificateRejected, SamlRejected) as exc:
            if not (isinstance(exc, SamlRejected) and exc.reason == "authn_context_unsupported"):
                return self._answers.refuse(exc, ctx, info, sp, municipality=municipality, event="login_refused",
                                            retry=False)
        minimum = KNOWN_LOAS[sp.config.minimum_loa] if sp.config.minimum_loa else None
        refs = upstream_class_refs(saml, info.requested_contexts, info.comparison, minimum)
        if refs is None:
            unmet = SamlRejected("authn_context_unsupported", f"{municipality.id}'s IdP offers no context meeting "
                                                              f"{info.comparison} {list(info.requested_contexts)}",
                                 reply_to=info.reply_target())
            return self._answers.refuse(unmet, ctx, info, sp, municipality=municipality, event="login_refused")
        try:
            idp = self.metadata.get(municipality.id)
        except UpstreamRejected as exc:
            return self._answers.refuse(exc, ctx, info, sp, municipality=municipality, event="login_refused")
        request = build_authn_request(
            sender=self._sender, clock=d.clock, sp_entity_id=self._sp_entity_id, acs_url=self.acs_url, idp=idp,
            force_authn=info.force_authn, is_passive=info.is_passive, nameid_format=saml.nameid_format,
            class_refs=refs, proxy_count=None if info.proxy_count is None else info.proxy_count - 1,
            requester_ids=(*info.requester_ids, sp.entity_id))
        # the IdP's answer will be accepted only in this browser (login CSRF: an attacker's own Response posted
        # from the victim's browser would otherwise swap the victim's session for the attacker's)
        binding = ctx.browser_binding or new_token()
        d.sessions.put_upstream(request.request_id, {
            "request": info.to_dict(), "correlation_id": ctx.correlation_id, "municipality": municipality.id,
            "idp": idp.entity_id, "browser": _digest(binding), "issued": d.clock.now().isoformat()},
            upstream_answer_window(d))
        d.audit.record(AuditEvent(
            "upstream_authn_requested", "info", ctx.correlation_id, municipality=municipality.id, sp=sp.entity_id,
            client_address=ctx.client_address,
            data=MappingProxyType({"idp": idp.entity_id, "request_id": request.request_id,
                                   "force_authn": info.force_authn, "is_passive": info.is_passive,
                                   "requested_context": refs})))
        message = request.message
        # set again even when the browser sent it: the cookie's day then counts from this login, which its answer
        # must find the cookie for (a login begun in the cookie's last minutes would otherwise lose it midway)
        if message.binding == HTTP_POST:
            return PostToSp(message.url, message.fields, ctx.correlation_id, municipality.config.name,
                            remember_municipality=remember, bind_browser=binding)
        return Redirect(message.url, ctx.correlation_id, remember_municipality=remember, bind_browser=binding)

    def redirect_targets(self, options: tuple[Municipality, ...]) -> tuple[str, ...]:
        """The SSO URLs that :meth:`begin` may redirect the browser to for ``options`` (HTTP-Redirect binding),
        from the metadata held now (nothing is fetched)."""
        urls = []
        for m in options:
            idp = self.metadata.held(m.id) if m.config.saml is not None else None
            if idp is None:
                continue
            try:
                endpoint = idp.sso()
            except ValueError:
                continue
            if endpoint.binding == HTTP_REDIRECT:
                urls.append(endpoint.location)
        return tuple(urls)

    # --- back from the IdP -------------------------------------------------------------------

    def complete(self, message: InboundMessage, ctx: ClientContext) -> Result:
        """The IdP's Response at the broker's ACS."""
        d = self._d
        try:
            # before anything is read or consumed: a client past the limits is not worth a signature check
            d.limiter.check(ctx.client_address)
        except RateLimited as limited:
            return self._answers.rate_limited(limited, ctx, None, None)
        max_bytes = d.settings.broker.sp.max_message_bytes if d.settings.broker.sp else 262144
        try:
            try:
                xml = decode(message, max_bytes)
            except SamlRejected as exc:
                code = "upstream_response_too_large" if exc.reason == "saml_request_too_large" \
                    else "upstream_response_malformed"
                raise UpstreamRejected(code, exc.detail) from None
            root = parse_response(xml, max_bytes)
        except UpstreamRejected as exc:
            return self._failed(exc, ctx, None, None, None)
        in_response_to = root.get("InResponseTo")
        if in_response_to:
            found = self._take_pending(in_response_to, ctx)
            if not isinstance(found, dict):
                return found
            pending = found
        else:
            unsolicited = self._unsolicited(root, message.relay_state, ctx)
            if isinstance(unsolicited, UpstreamRejected):
                return self._failed(unsolicited, ctx, None, None, None)
            pending = unsolicited
        info = AuthnRequestInfo.from_dict(pending["request"])
        ctx = replace(ctx, correlation_id=pending["correlation_id"])
        sp = d.settings.sp_by_entity_id(info.sp_entity_id)
        municipality = d.settings.municipalities.get(pending["municipality"])
        if sp is None or municipality is None or municipality.config.saml is None:
            gone = UpstreamRejected("upstream_in_response_to_mismatch", "the login's SP or municipality is gone")
            return self._failed(gone, ctx, None, None, municipality)
        saml = municipality.config.saml
        # an answer to a pending login is as old as that login at most; an unsolicited one is bounded here the same
        # way, so that it cannot outlive what the broker remembers of the IdP's logouts (LogoutFlow)
        expect = Expectations(idp_entity_id=pending["idp"], sp_entity_id=self._sp_entity_id,
                              acs_url=self.acs_url, request_id=in_response_to or None,
                              signed_element=saml.signed_element, skew=saml.clock_skew.timedelta,
                              now=d.clock.now(), max_age=None if in_response_to else upstream_answer_window(d))
        try:
            # Core §3.2.2, Profiles §4.1.4.3: the Response's own Version, IssueInstant, Destination, Issuer and
            # InResponseTo hold before its status means anything; an error status from a message that fails
            # them is no answer of the IdP asked, and is not passed on to the SP as one
            ResponseValidator.check_response(root, expect)
            status = status_of(root)
        except UpstreamRejected as exc:
            return self._failed(exc, ctx, info, sp, municipality, pending, attempt=True)
        if status is not None:
            detail = " / ".join(status.codes) + (f": {status.message}" if status.message else "")
            if NO_PASSIVE in status.codes and info.is_passive:
                passive = SamlRejected("passive_login_impossible", f"the IdP answered NoPassive ({detail})",
                                       reply_to=info.reply_target())
                self._audit_result(ctx, municipality, sp, pending, "failure", passive.reason, detail)
                return self._answers.refuse(passive, ctx, info, sp, municipality=municipality)
            # the IdP cannot give the context asked for (SAML Core §3.2.2.2): the SP hears NoAuthnContext too, not
            # a plain AuthnFailed. Otherwise the page says what the IdP answered, in words for SAML's own codes
            # (broker.web.i18n)
            refusal = UpstreamRejected("upstream_authn_context_insufficient" if NO_AUTHN_CONTEXT in status.codes
                                       else "upstream_status", detail,
                                       params={"idp_status": _status_name(status.codes)})
            # not counted against the failed-login limits: the IdP limits attempts at its own login, and users
            # cancelling there behind one office address would otherwise lock that address out (certificate
            # logins included)
            return self._failed(refusal, ctx, info, sp, municipality, pending, attempt=False)
        identity: Identity | None = None  # once read from the IdP's verified assertion: whose refusal it is
        verified: Mapping[str, tuple[str, ...]] | None = None
        try:
            idp = self.metadata.get(municipality.id)
            assertion = self._validator(idp).validate(root, expect)
            verified = assertion.attributes
            if not d.sessions.first_use(idp.entity_id, assertion.assertion_id, assertion.expires + expect.skew):
                raise UpstreamRejected("upstream_replay", f"assertion {assertion.assertion_id} was already used")
            upstream = {"idp": idp.entity_id, "name_id": assertion.name_id,
                        "name_id_format": assertion.name_id_format or "",
                        "name_qualifier": assertion.name_qualifier or "",
                        "sp_name_qualifier": assertion.sp_name_qualifier or "",
                        "session_index": assertion.session_index or ""}
            ended = self._logged_out(upstream, assertion.authn_instant)
            if ended is not None:
                raise ended
            municipality, attributes, identity = self._whose(pending, municipality, assertion.attributes,
                                                             expect.now.date())
            saml = municipality.config.saml or saml  # (every candidate logs in through this IdP)
            loa = loa_of(saml, assertion.authn_context)
            if info.force_authn and "issued" in pending:
                # Core §3.4.1: ForceAuthn means the IdP authenticates the user anew, after our request
                asked = dt.datetime.fromisoformat(str(pending["issued"]))
                if assertion.authn_instant < asked - expect.skew:
                    raise UpstreamRejected("upstream_force_authn_ignored",
                                           f"ForceAuthn was asked at {asked.isoformat()}, the IdP answered with an "
                                           f"authentication of {assertion.authn_instant.isoformat()}")
            # the session's absolute end counts from the IdP's sign-on (SessionManager.open): one older than
            # session.absolute_timeout would open a session over already
            if assertion.authn_instant + d.sessions.absolute_timeout <= d.clock.now():
                raise UpstreamRejected("upstream_expired",
                                       f"the IdP answered from a sign-on at {assertion.authn_instant.isoformat()}, "
                                       "longer ago than session.absolute_timeout: the user must sign on at the IdP "
                                       "again")
            if not satisfies(loa, info.requested_contexts, info.comparison):
                raise UpstreamRejected("upstream_authn_context_insufficient",
                                       f"the IdP returned {assertion.authn_context} ({loa.name}); the SP asked "
                                       f"{info.comparison} {list(info.requested_contexts)}")
        except UpstreamRejected as exc:
            if identity is None and verified is not None:
                # refused before it was read (a replay, a session the IdP ended): whose it is, for the audit trail,
                # unless it names no one the municipality's rules take
                with contextlib.suppress(UpstreamRejected):
                    identity = self._whose(pending, municipality, verified, expect.now.date())[2]
            return self._failed(exc, ctx, info, sp, municipality, pending, attempt=True, identity=identity)
        d.audit.record(AuditEvent(
            "upstream_authn_result", "success", ctx.correlation_id, identity=identity, sp=sp.entity_id,
            client_address=ctx.client_address,
            # an unsolicited Response (Profiles §4.1.5) answers no request: none is named
            data=MappingProxyType({"idp": idp.entity_id,
                                   **({"request_id": in_response_to[:256]} if in_response_to else {}),
                                   "loa": loa.uri, "authn_instant": assertion.authn_instant.isoformat(),
                                   "attributes": tuple(sorted(attributes))})))
        # kept only when the assertion had them, so that other sessions keep their stored form
        if assertion.authenticating_authorities:
            upstream["authorities"] = "\n".join(assertion.authenticating_authorities)
        if assertion.proxy_restriction is not None:
            upstream.update(assertion.proxy_restriction.to_fields())
        try:
            self._answers.check_access(info, sp, municipality, loa)
            # before the browser's old session is replaced: a refusal leaves it as it was
            check_proxy_restriction(sp.entity_id, upstream)
        except (CertificateRejected, SamlRejected, UpstreamRejected) as exc:
            d.audit.record(AuditEvent(
                "login_refused", "failure", ctx.correlation_id, reason=exc.reason, detail=exc.detail,
                identity=identity, sp=sp.entity_id, client_address=ctx.client_address))
            return self._answers.refuse(exc, ctx, info, sp, municipality=municipality, retry=False)
        old, _ = d.sessions.find(ctx.session_token, idle_too=True)
        # a new login replaces the browser's session (a new cookie: no fixation), an idle one too; its SPs stay in
        # single logout (SessionManager.replace): taken over by the same user's session, kept apart for another's
        replaced = self._answers.replace_session(ctx, old, identity)
        token, session = d.sessions.open(  # stored by issue(), with the SP and the SPs it took over
            identity, loa.uri, ctx.correlation_id, certificate_sha256=None, revocation_valid_until=None,
            upstream=upstream, authn_instant=assertion.authn_instant, not_after=assertion.session_not_on_or_after,
            trust=judged_by(municipality))
        def settle() -> UpstreamRejected | None:
            # the IdP's logout, handled on another instance between the check above and the session's write,
            # looked for her sessions before this one was stored: asked again once it is (each side writes, then
            # reads). Refused now, the browser's session this login replaced comes back, retired: its SPs stay in
            # single logout through the browser's cookie, and nothing is answered from it
            late = self._logged_out(upstream, assertion.authn_instant)
            if late is not None and replaced is not None and ctx.session_token is not None:
                d.sessions.reinstate(ctx.session_token, replaced, late.reason)
            return late

        return self._answers.issue(info, sp, ctx, token, session, new_session=True, replaced=replaced,
                                   detail=_superseded(replaced.upstream if replaced is not None else None, upstream),
                                   settle=settle)

    def _logged_out(self, upstream: dict[str, str], authn_instant: dt.datetime) -> UpstreamRejected | None:
        """The refusal of an assertion whose IdP session the IdP has ended (SAML Core §3.7.3.2: its logout applies
        to its assertions arriving after it), if it has."""
        ended = logged_out_upstream(self._d.sessions.upstream_logouts(upstream["idp"], upstream["name_id"]),
                                    upstream, authn_instant, self._sp_entity_id)
        if ended is None:
            return None
        return UpstreamRejected("upstream_logged_out", f"the IdP ended this session before its assertion arrived "
                                                       f"(LogoutRequest {ended.request_id[:100]!r}, SAML Core "
                                                       "§3.7.3.2)")

    def _take_pending(self, request_id: str, ctx: ClientContext) -> dict[str, Any] | Result:
        """The login waiting for the answer to ``request_id`` (InResponseTo, SAML Profiles §4.1.4.3), taken (one
        use) only once the answer has arrived in the browser that started the login (the broker's browser
        binding against login CSRF, docs/security.md).

        The login is looked at first and taken after the browser check: a post from another browser naming the
        request (any web page can make its visitors post to the ACS) must neither use up the user's login nor
        get a way into it. That browser gets a plain page: no "try again" link (it would continue the user's
        login there), no signed Response for the SP and no RelayState; the user's own answer still completes.
        If the take then finds nothing, another answer took the login in between: this one answers nothing.
        """
        d = self._d
        pending = d.sessions.peek_upstream(request_id)
        if pending is None:
            return self._failed(UpstreamRejected("upstream_in_response_to_mismatch",
                                                 f"InResponseTo {request_id[:100]!r} names no pending request "
                                                 "(unknown, used or expired)"), ctx, None, None, None)
        # the refusals below are filed under the login's correlation ID: its audit trail shows what happened to it
        login_ctx = replace(ctx, correlation_id=str(pending["correlation_id"]))
        expected = pending.get("browser")
        if expected is not None and not hmac.compare_digest(str(expected), _digest(ctx.browser_binding or "")):
            foreign = UpstreamRejected("upstream_browser_mismatch", "the IdP's Response arrived in another browser "
                                                                    "than the login started in; the login is left "
                                                                    "to its own browser")
            municipality = d.settings.municipalities.get(str(pending["municipality"]))
            sp = d.settings.sp_by_entity_id(AuthnRequestInfo.from_dict(pending["request"]).sp_entity_id)
            # not a login attempt of this browser (nothing counted), and nothing of the login goes to it
            self._audit_result(login_ctx, municipality, sp, pending, "failure", foreign.reason, foreign.detail)
            return LoginFailed(foreign, login_ctx.correlation_id)
        taken = d.sessions.take_upstream(request_id)
        if taken is None:
            return self._failed(UpstreamRejected("upstream_in_response_to_mismatch",
                                                 f"InResponseTo {request_id[:100]!r}: another answer took the "
                                                 "pending request first"), login_ctx, None, None, None)
        return taken

    def _unsolicited(self, root: etree._Element, relay_state: str | None,
                     ctx: ClientContext) -> dict[str, Any] | UpstreamRejected:
        """An IdP-initiated Response (no InResponseTo; SAML Profiles §4.1.5): accepted only from an IdP whose
        municipality allows it, for the SP its RelayState names (entity ID), which must accept the municipality.
        The SP then gets an unsolicited Response at its default ACS."""
        d = self._d
        # the Response's Issuer may be left out of an unsigned Response (SAML Profiles §4.1.4.2): the Assertion's
        # then names the IdP (whose key must have signed it; the validator checks both against that IdP)
        issuer_el = root.find(f"{{{SAML_NS}}}Issuer")
        if issuer_el is None:
            issuer_el = root.find(f"{{{SAML_NS}}}Assertion/{{{SAML_NS}}}Issuer")
        issuer = (issuer_el.text or "").strip(XML_SPACE) if issuer_el is not None else ""
        allowing = [m for m in d.settings.municipalities.values() if m.config.saml is not None
                    and m.config.saml.entity_id == issuer and m.config.saml.allow_unsolicited]
        if not allowing:
            return UpstreamRejected("upstream_unsolicited", f"a Response without InResponseTo from {issuer[:200]!r}, "
                                                            "which may not send unsolicited Responses")
        sp = d.settings.sp_by_entity_id(relay_state or "")
        # an IdP several municipalities share: which one is the user's is known once her identity is read
        candidates = [m.id for m in allowing if sp is not None and m.id in sp.config.municipalities]
        acs = sp.metadata.default_acs() if sp is not None else None
        if sp is None or not candidates or acs is None:
            return UpstreamRejected("upstream_unsolicited", "an unsolicited Response must name, as RelayState, a "
                                                            "registered SP that accepts the municipality")
        info = AuthnRequestInfo(
            request_id="", sp_entity_id=sp.entity_id, acs_url=acs.location, binding=HTTP_POST,
            nameid_format=NAMEID_FORMATS[sp.config.nameid_formats[0]], force_authn=False, is_passive=False,
            requested_contexts=(), comparison="exact", relay_state=None, signed=False)
        return {"request": info.to_dict(), "correlation_id": ctx.correlation_id, "municipality": candidates[0],
                "candidates": candidates, "idp": issuer}

    def _whose(self, pending: dict[str, Any], municipality: Municipality,
               upstream_attributes: Mapping[str, tuple[str, ...]], today: dt.date
               ) -> tuple[Municipality, dict[str, tuple[str, ...]], Identity]:
        """The user's municipality, attributes and identity. A solicited login's municipality is the one the
        login was started for. An unsolicited Response from an IdP that several municipalities share names none
        (Profiles §4.1.5: no request, no discovery): each municipality the SP accepts is tried in turn, and the user
        belongs to the one whose identity rule takes her (a shared IdP's rules tell its municipalities apart, which
        the configuration check enforces); when none does, the first one's refusal is given. The Response was
        checked with the first one's settings (signed_element, clock_skew): a municipality that would have checked
        it otherwise is no candidate."""
        checked = municipality.config.saml
        assert checked is not None
        candidates = [municipality, *(m for mid in pending.get("candidates", ())
                                      if (m := self._d.settings.municipalities.get(str(mid))) is not None
                                      and m.id != municipality.id and m.config.saml is not None
                                      and m.config.saml.signed_element == checked.signed_element
                                      and m.config.saml.clock_skew == checked.clock_skew)]
        first: UpstreamRejected | None = None
        for candidate in candidates:
            saml = candidate.config.saml
            assert saml is not None
            try:
                attributes = canonical_attributes(saml, upstream_attributes)
                return candidate, attributes, identity_of(saml, attributes, candidate.id,
                                                          candidate.config.organization_number, today)
            except UpstreamRejected as exc:
                first = first or exc
        assert first is not None
        raise first

    def _validator(self, idp: IdpMetadata) -> ResponseValidator:
        """One validator (with its preloaded keys) per set of IdP signing keys."""
        fingerprint = hashlib.sha256(b"".join(c.fingerprint(_SHA256) for c in idp.signing_certificates)).hexdigest()
        key = f"{idp.entity_id}#{fingerprint}"
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                validator = ResponseValidator(XmlVerifier(idp.signing_certificates), self._decrypter)
                self._validators[key] = validator
        return validator

    def _audit_result(self, ctx: ClientContext, municipality: Municipality | None, sp: ServiceProvider | None,
                      pending: dict[str, object] | None, outcome: str, reason: str, detail: str,
                      identity: Identity | None = None) -> None:
        data: dict[str, object] = {}
        if pending is not None:
            data["idp"] = str(pending.get("idp"))
        self._d.audit.record(AuditEvent(
            "upstream_authn_result", "failure", ctx.correlation_id, reason=reason, detail=detail,
            municipality=municipality.id if municipality else None, identity=identity,
            sp=sp.entity_id if sp else None,
            client_address=ctx.client_address, data=MappingProxyType(data)))  # type: ignore[arg-type]

    def _failed(self, exc: BrokerError, ctx: ClientContext, info: AuthnRequestInfo | None,
                sp: ServiceProvider | None, municipality: Municipality | None,
                pending: dict[str, object] | None = None, *, attempt: bool = False,
                identity: Identity | None = None) -> Result:
        """``attempt``: the Response belonged to a login this browser started, so its failure counts against
        the failed-login limit. Anything before that (garbage, an unknown InResponseTo, another browser's
        login) is no login attempt: any web page can make a visitor's browser post such junk to the ACS
        cross-site, and counting it would lock out everyone behind that visitor's address. ``identity``: whose
        verified assertion was refused, once it is known (for the audit trail)."""
        self._audit_result(ctx, municipality, sp, pending, "failure", exc.reason, exc.detail, identity)
        if attempt and counts_as_failure(exc):
            self._d.limiter.record_failure(ctx.client_address)
        if info is None or sp is None:
            return LoginFailed(exc, ctx.correlation_id, municipality=municipality)
        return self._answers.refuse(exc, ctx, info, sp, municipality=municipality)


def _status_name(codes: tuple[str, ...]) -> str:
    """The most specific of the IdP's status codes that is one of SAML's (SAML Core §3.2.2.2), by its local name
    (``RequestDenied``), for the user's page to put into words; "" when none is."""
    for code in reversed(codes):
        if code.startswith(SAML_STATUS) and code[len(SAML_STATUS):].isalpha():
            return code[len(SAML_STATUS):]
    return ""


def _digest(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


def _superseded(earlier: dict[str, str] | None, newest: dict[str, str]) -> str | None:
    """For the audit trail: the municipal IdP session of the replaced browser session, when it is not the one
    this login was answered from, and so will not be asked at single logout.

    A session keeps one upstream record, the newest: it is the IdP session this browser is logged in to now. An
    IdP asked again (ForceAuthn) re-authenticates within its session for the browser, or replaces it, and names
    in its answer the SessionIndex it now knows; a LogoutRequest naming an older one would likely be answered
    with an error, and the user told the logout was partial when it was not. An IdP session that differs (another
    SessionIndex, NameID or IdP) is not forgotten silently: the operator sees which one the broker gave up.
    """
    if earlier is None or all(earlier.get(k, "") == newest.get(k, "") for k in ("idp", "name_id", "session_index")):
        return None
    return (f"the earlier session at IdP {earlier.get('idp', '')[:200]} (SessionIndex "
            f"{earlier.get('session_index', '')[:100] or 'none'}) is superseded by this login's and will not be "
            "asked at single logout")


def _best_loa(municipality: Municipality) -> Loa:
    """The strongest LoA the municipality's IdP can give (to refuse early what it never could)."""
    saml = municipality.config.saml
    assert saml is not None
    return max((KNOWN_LOAS[c.loa] for c in saml.authn_contexts), key=lambda loa: loa.rank)


_SHA256 = hashes.SHA256()


@by_identity(1024)
def judged_by(municipality: Municipality) -> str | None:
    """The digest of the configuration an IdP's answer for ``municipality`` is judged by (None: it logs in by
    certificate), worked out once per loaded configuration (a reload makes new Municipality objects)."""
    saml = municipality.config.saml
    return configuration_digest(saml, municipality.config.organization_number) if saml is not None else None
