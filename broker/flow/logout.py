"""Single logout through the broker (SAML Profiles §4.4; DESIGN.md, flow 4).

The broker is the session authority for the regional SPs and a session
participant at the municipality's IdP. A logout starts with a LogoutRequest
from either side:

* an SP's, at ``/saml/idp/slo``: the broker session named by the browser's
  cookie ends if the request's NameID (and format, if given) is the one that
  SP received and its SessionIndexes, if any, include the SP's own (SAML Core
  §3.7.3.2; each SP has one participant record, its newest, and its own
  SessionIndex, Core §2.7.2);
* the municipal IdP's, at ``/saml/sp/slo``: every live broker session that IdP
  opened for the NameID ends (the cookie's, and any found by the
  (IdP, NameID) index), limited to the SessionIndexes it names.

The session ends *first*, before anything is propagated: whatever happens
later in the browser, the broker will not answer another AuthnRequest from it.
Then, front-channel, one participant at a time: a signed LogoutRequest to
every other SP of the session (HTTP-Redirect where offered), with the NameID
and SessionIndex that SP was given, then to the
municipal IdP, each answer awaited at the matching endpoint. The state travels
as RelayState (a random id; the state itself is in the store, so any broker
instance continues it). A participant that cannot be asked (no
SingleLogoutService), answers with an error or with a message that does not
verify, counts as failed; the chain goes on. Last, the initiator gets its
LogoutResponse: Success, or Success with the PartialLogout second-level code
(SAML Core §3.2.2.2) after a page telling the user which services did not
confirm.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from broker.audit.events import AuditEvent
from broker.config.schema import LocalizedText
from broker.errors import DependencyUnavailable, SamlRejected
from broker.flow.deps import FlowDeps, upstream_answer_window
from broker.flow.results import ClientContext, LoginFailed, LogoutDone, PostToSp, Redirect, Result
from broker.model import Identity
from broker.saml.bindings import (
    NAMEID_UNSPECIFIED,
    STATUS_PARTIAL_LOGOUT,
    STATUS_REQUESTER,
    STATUS_SUCCESS,
    InboundMessage,
)
from broker.saml.logout import (
    UNKNOWN_PRINCIPAL,
    LogoutMessages,
    LogoutPeer,
    LogoutRequestInfo,
    LogoutResponseInfo,
)
from broker.saml.outbound import OutboundMessage
from broker.session.sessions import Participant, SsoSession, UpstreamLogout, new_token

Side = Literal["sp", "idp"]   # "sp": a regional SP (the broker's IdP endpoint); "idp": a municipal IdP

_log = logging.getLogger(__name__)

# how far the broker instances' clocks may be apart, for how long an IdP's logout is remembered (Core §3.7.3.2)
_LATE_MARGIN = dt.timedelta(minutes=5)


class LogoutFlow:
    def __init__(self, deps: FlowDeps, *, sp_side: LogoutMessages, idp_side: LogoutMessages | None) -> None:
        """``sp_side`` talks to the regional SPs (the broker's IdP endpoint), ``idp_side`` to the municipal
        IdPs (the broker's SP endpoint; None when no municipality logs in with SAML)."""
        self._d = deps
        self._sides: dict[str, LogoutMessages | None] = {"sp": sp_side, "idp": idp_side}

    # --- a LogoutRequest arrives ---------------------------------------------------------------

    def request(self, message: InboundMessage, ctx: ClientContext, side: Side) -> Result:
        """A LogoutRequest from an SP (``side="sp"``) or from a municipal IdP (``side="idp"``)."""
        d = self._d
        messages = self._sides[side]
        if messages is None:
            return LoginFailed(SamlRejected("logout_request_invalid", "the broker has no SP side"),
                               ctx.correlation_id)
        try:
            info = messages.read(message)
            if not isinstance(info, LogoutRequestInfo):
                raise SamlRejected("logout_request_invalid", "expected a LogoutRequest")
            # a signed LogoutRequest is good once: replayed, it would end the sessions opened since
            window = d.settings.broker.idp.request_max_age.timedelta + d.settings.broker.idp.clock_skew.timedelta
            if not d.sessions.first_use(f"logout-request:{info.peer.entity_id}", info.request_id,
                                        d.clock.now() + window * 2):
                raise SamlRejected("logout_request_invalid", f"LogoutRequest {info.request_id[:100]!r} was already "
                                                             "handled (replay)", issuer=info.peer.entity_id)
        except SamlRejected as exc:
            # the party the request's Issuer names, once known (an SP is also the record's sp)
            d.audit.record(AuditEvent("logout", "failure", ctx.correlation_id, reason=exc.reason,
                                      detail=exc.detail, sp=exc.issuer if side == "sp" else None,
                                      client_address=ctx.client_address,
                                      data=MappingProxyType({"initiator": side,
                                                             **({"peer": exc.issuer} if exc.issuer else {})})))
            return LoginFailed(exc, ctx.correlation_id)
        # a request naming the principal only (no SessionIndex), delivered without the session's cookie: the
        # principal's sessions cannot be found (the broker keeps no index by an SP's NameID), so the SP is not
        # told they all ended (SAML Core §3.7.3.2): PartialLogout
        unlocated = False
        logout = _logout_name(side, info)
        try:
            dropped = self._drop_unreadable(ctx)
            resumed = d.sessions.ending(logout)
            if resumed is not None:
                # this request's earlier attempt ended these sessions and the store failed before their SPs could
                # be asked (the 503 page says to try again): end what is left of them, and go on from there
                self._end(resumed, logout)
                ended, mismatch = resumed, False
                identity = ended[0][1].identity if ended else None
            elif side == "sp":
                ended, identity, mismatch = self._end_for_sp(info, ctx, logout)
                unlocated = not ended and not mismatch and not info.session_indexes
            else:
                # first: should it fail, no session has ended yet, and the IdP's retry finds them all
                self._remember_for_late_assertions(info)
                ended, mismatch = self._end_for_idp(info, ctx, logout), False
                identity = ended[0][1].identity if ended else None
            result = self._propagate(info, ctx, side, ended, identity, mismatch=mismatch, dropped=dropped,
                                     unlocated=unlocated, resumed=resumed is not None)
            # durable here, not only when the web layer answers (which syncs again, at no cost): a failure must
            # leave the request retryable like a store failure does
            d.audit.sync()
        except DependencyUnavailable:
            # the store failed while the sessions were being looked up, ended, or their participants read, or the
            # logout's state stored, or the audit trail could not make the logout's records durable: the user's
            # retry of the same request (the 503 page says to try again) must not be refused as a replay, and
            # finds the sessions already ended by this attempt (note_ending)
            d.sessions.forget_use(f"logout-request:{info.peer.entity_id}", info.request_id)
            raise
        if ended:
            try:
                d.sessions.ended(logout, [sid for sid, _ in ended])
            except DependencyUnavailable:  # the lists expire with their sessions; the logout goes on
                _log.warning("logout %s: its sessions' participant lists could not be removed", ctx.correlation_id)
        return result

    def _propagate(self, info: LogoutRequestInfo, ctx: ClientContext, side: Side,
                   ended: list[tuple[str, SsoSession]], identity: Identity | None, *, mismatch: bool,
                   dropped: bool, unlocated: bool, resumed: bool) -> Result:
        """Audit the logout and ask the ended sessions' participants, or answer a mismatch."""
        d = self._d
        messages = self._sides[side]
        assert messages is not None  # request() answered without an SP side already
        # the browser's own cookie goes only if its session is among those ended
        own = dropped or (ctx.session_token is not None
                          and d.sessions.ref(ctx.session_token) in {sid for sid, _ in ended})
        # an unreadable session's SPs cannot be told: the initiator hears PartialLogout, not Success
        unlocated = unlocated or (dropped and not mismatch)
        targets = self._targets(ended, exclude=info.peer.entity_id if side == "sp" else None)
        initiator = {"side": side, "peer": info.peer.entity_id, "request_id": info.request_id,
                     "relay_state": info.relay_state, "asynchronous": info.asynchronous}
        d.audit.record(AuditEvent(
            "logout", "failure" if mismatch else "success", ctx.correlation_id,
            reason="logout_request_invalid" if mismatch else None,
            detail="the NameID or SessionIndex does not match this browser's session" if mismatch else None,
            identity=identity, sp=info.peer.entity_id if side == "sp" else None,
            client_address=ctx.client_address,
            data=MappingProxyType({
                "initiator": side, "peer": info.peer.entity_id, "request_id": info.request_id[:256],
                "session_ended": bool(ended), "sessions": len(ended), **({"unlocated": True} if unlocated else {}),
                "propagate_to": tuple(f"{t['side']}:{t['peer']}" for t in targets),
                **({"asynchronous": True} if info.asynchronous else {}),
                **({"resumed": True} if resumed else {})})))
        if mismatch:
            if not info.peer.can_logout or info.asynchronous:
                return LoginFailed(SamlRejected("logout_request_invalid", "the NameID does not match this "
                                                "browser's session"), ctx.correlation_id)
            out = messages.response(info.peer, info.request_id, info.relay_state, STATUS_REQUESTER, UNKNOWN_PRINCIPAL)
            return _deliver(out, ctx.correlation_id, None, clear_session=False)
        binding = ctx.browser_binding or new_token()
        state = {"correlation_id": ctx.correlation_id, "initiator": initiator, "targets": targets,
                 "current": None, "failed": [], "confirmed": [],
                 "identity": dataclasses.asdict(identity) if identity else None,
                 "browser": _digest(binding), "clear_cookie": own, "unlocated": unlocated}
        # set again even when the browser sent it, so that it outlives the logout (as at a login: UpstreamStep.begin)
        return self._advance(state, ctx, clear_session=own, bind_browser=binding)

    def _drop_unreadable(self, ctx: ClientContext) -> bool:
        """End the browser's own session when its record cannot be read (another release's form, a damaged
        record): a logout must end the session on the server whatever its form (OWASP Session Management), and
        one that cannot be read cannot be matched against the request either. True when one was ended; its SPs
        cannot be told (their records need the session), so the initiator hears PartialLogout."""
        d = self._d
        if ctx.session_token is None or d.sessions.find(ctx.session_token, idle_too=True)[1] != "unreadable":
            return False
        d.sessions.end(ctx.session_token)
        d.audit.record(AuditEvent("session_unreadable", "failure", ctx.correlation_id,
                                  detail="the browser's session record could not be read (another release's form, "
                                         "or damaged): ended by the logout, its service providers not told",
                                  client_address=ctx.client_address))
        return True

    def _end_for_sp(self, info: LogoutRequestInfo, ctx: ClientContext, logout: str
                    ) -> tuple[list[tuple[str, SsoSession]], Identity | None, bool]:
        """End the sessions the SP's LogoutRequest names (SAML Core §3.7.3.2): the cookie's session if the SP's
        NameID (and SessionIndex) are its participant's, and the sessions its SessionIndexes name, also when the
        browser delivering the request sends no cookie (another device, a blocked cookie). The third value is
        True when the cookie's session exists but the request names neither it nor any other session."""
        d = self._d
        broker_idp = d.settings.broker.idp.entity_id
        sp = info.peer.entity_id
        candidates: dict[str, SsoSession] = {}
        session, _ = d.sessions.find(ctx.session_token, idle_too=True)  # an idle session's SPs still hold the user
        if session is not None and ctx.session_token is not None:
            candidates[d.sessions.ref(ctx.session_token)] = session
        for index in info.session_indexes:
            candidates.update(d.sessions.find_by_session_index(sp, index))
        ended = []
        for sid, candidate in sorted(candidates.items()):
            own = d.sessions.participant_ref(sid, sp)
            if own is not None and _names_participant(info, own, candidate, broker_idp):
                ended.append((sid, candidate))
        if not ended:
            # nothing to end: already logged out (Success, SAML Core §3.7.3.2), unless the browser's own session
            # is someone else's (UnknownPrincipal)
            return [], session.identity if session is not None else None, session is not None
        self._end(ended, logout)
        return ended, ended[0][1].identity, False

    def _end_for_idp(self, info: LogoutRequestInfo, ctx: ClientContext, logout: str
                     ) -> list[tuple[str, SsoSession]]:
        """End the sessions the municipal IdP opened for the NameID (within its SessionIndexes)."""
        d = self._d
        idp = info.peer.entity_id
        candidates = dict(d.sessions.find_upstream(idp, info.name_id))
        session, _ = d.sessions.find(ctx.session_token, idle_too=True)
        if session is not None and ctx.session_token is not None and session.upstream is not None \
                and session.upstream.get("idp") == idp and session.upstream.get("name_id") == info.name_id:
            candidates[d.sessions.ref(ctx.session_token)] = session
        broker_sp = d.settings.broker.sp.entity_id if d.settings.broker.sp is not None else ""
        ended = [(sid, s) for sid, s in sorted(candidates.items())
                 if _names_upstream(info, s.upstream or {}, idp, broker_sp)
                 and (not info.session_indexes or (s.upstream or {}).get("session_index") in info.session_indexes)]
        self._end(ended, logout)
        return ended

    def _remember_for_late_assertions(self, info: LogoutRequestInfo) -> None:
        """SAML Core §3.7.3.2: the IdP's logout applies to its assertions that arrive after it (a Response still in
        the user's browser, or in another tab's), for as long as the ACS accepts an answer of the IdP's
        (:func:`upstream_answer_window`), plus the clock skews allowed the IdPs' assertions and the logout
        messages, plus 5 minutes for the instances' clocks. Remembered beyond the request's own NotOnOrAfter too:
        that bounds its delivery, and an assertion of a session the IdP has ended is no better for arriving later."""
        d = self._d
        # the IdP's assertion may be dated up to its municipality's skew early, this request up to the skew the
        # broker allows logout messages late; and the instances' clocks may differ
        skews = [m.config.saml.clock_skew.timedelta for m in d.settings.municipalities.values()
                 if m.config.saml is not None]
        window = upstream_answer_window(d) + max(skews, default=dt.timedelta(0)) \
            + d.settings.broker.idp.clock_skew.timedelta + _LATE_MARGIN
        now = d.clock.now()
        d.sessions.record_upstream_logout(info.peer.entity_id, info.name_id, UpstreamLogout(
            request_id=info.request_id, name_id_format=info.name_id_format, name_qualifier=info.name_qualifier,
            sp_name_qualifier=info.sp_name_qualifier, session_indexes=info.session_indexes,
            issued=info.issued or now, until=now + window))

    def _end(self, ended: list[tuple[str, SsoSession]], logout: str) -> None:
        """End the sessions, keeping their participants for propagation; what is ended is noted first under the
        logout's name, for its retry should the store fail before the participants are asked (:meth:`request`).
        Each session is deleted before its participants are read (:meth:`_targets`), so that no request answered
        from it can add one unseen (:meth:`SessionManager.save_reused` stores only while the session exists)."""
        if ended:
            self._d.sessions.note_ending(logout, ended)
        for sid, _ in ended:
            self._d.sessions.end_ref(sid, keep_participants=True)

    def _targets(self, ended: list[tuple[str, SsoSession]], exclude: str | None) -> list[dict[str, Any]]:
        """Who must hear of the logout: every other SP of the sessions, then their municipal IdP.

        Each SP is sent what it was given: its NameID as the broker issued it (broker.saml.response: qualified
        by both entity IDs) and its own SessionIndex (Core §3.7.1). An SP with the same NameID in several of the
        ended sessions (the IdP's logout, one user in several browsers) gets one LogoutRequest naming each of
        its SessionIndexes."""
        d = self._d
        targets: list[dict[str, Any]] = []
        by_name: dict[tuple[str, str], dict[str, Any]] = {}
        for sid, session in ended:
            for p in d.sessions.participants_ref(sid):
                if p.sp_entity_id == exclude:
                    continue
                index = p.index_in(session)
                found = by_name.get((p.sp_entity_id, p.name_id))
                if found is not None:
                    if index is not None and index not in found["session_indexes"]:
                        found["session_indexes"].append(index)
                    continue
                target = {"side": "sp", "peer": p.sp_entity_id, "name_id": p.name_id, "format": p.name_id_format,
                          "session_indexes": [index] if index is not None else [],
                          "name_qualifier": self._sides_entity("sp"), "sp_name_qualifier": p.sp_entity_id}
                by_name[(p.sp_entity_id, p.name_id)] = target
                targets.append(target)
        if exclude is not None:  # the SP started it: the municipal IdP must hear too (it did not start it)
            # one LogoutRequest per principal at each IdP, as for the SPs above: the sessions of one user in several
            # browsers that the SP's SessionIndexes ended are named together; the IdP, having ended her sessions at
            # the first of several requests, would answer the next UnknownPrincipal, and the initiator be told
            # PartialLogout for a logout that was complete
            upstream: dict[tuple[str | None, ...], dict[str, Any]] = {}
            whole: set[tuple[str | None, ...]] = set()  # an assertion without a SessionIndex: all her sessions
            for _, session in ended:
                up = session.upstream
                if up is None:
                    continue
                principal: tuple[str | None, ...] = (
                    up["idp"], up["name_id"], up.get("name_id_format") or None, up.get("name_qualifier") or None,
                    up.get("sp_name_qualifier") or None)
                asked = upstream.get(principal)
                if asked is None:
                    asked = upstream[principal] = {
                        "side": "idp", "peer": up["idp"], "name_id": up["name_id"], "format": principal[2],
                        "session_indexes": [], "name_qualifier": principal[3], "sp_name_qualifier": principal[4]}
                    targets.append(asked)
                held = up.get("session_index")
                if not held:
                    whole.add(principal)
                elif held not in asked["session_indexes"]:
                    asked["session_indexes"].append(held)
            for principal in whole:
                # Core §3.7.1: no SessionIndex asks the IdP to end every session of the principal, this one's too
                upstream[principal]["session_indexes"] = []
        return targets

    # --- a participant answers -------------------------------------------------------------

    def response(self, message: InboundMessage, ctx: ClientContext, side: Side) -> Result:
        """A participant's LogoutResponse to the broker's LogoutRequest: note it and go on."""
        d = self._d
        state = d.sessions.peek_logout(message.relay_state)
        if state is not None and not hmac.compare_digest(str(state.get("browser", "")),
                                                         _digest(ctx.browser_binding or "")):
            # whoever learnt the RelayState (a participant sees it) cannot take the logout over from another
            # browser; the state stays for the user's browser
            exc = SamlRejected("logout_response_invalid", "the LogoutResponse arrived in another browser than the "
                                                          "logout runs in")
            d.audit.record(AuditEvent("logout_propagated", "failure", state["correlation_id"], reason=exc.reason,
                                      detail=exc.detail, client_address=ctx.client_address,
                                      data=MappingProxyType({"side": side})))
            # the page's reference is the one the refusal is filed under (a reference number, not a credential)
            return LoginFailed(exc, state["correlation_id"])
        if state is not None:
            state = d.sessions.take_logout(message.relay_state)  # one use (None: another request took it)
        if state is None:
            exc = SamlRejected("logout_unknown", "no logout in progress for this RelayState")
            d.audit.record(AuditEvent("logout_propagated", "failure", ctx.correlation_id, reason=exc.reason,
                                      detail=exc.detail, client_address=ctx.client_address,
                                      data=MappingProxyType({"side": side})))
            return LoginFailed(exc, ctx.correlation_id)
        assert message.relay_state is not None  # the state was found under it
        taken = copy.deepcopy(state)  # as stored: what goes back should this step fail
        try:
            result = self._answered(state, message, ctx, side)
            # durable here, not only when the web layer answers: a failure must leave the step retryable
            d.audit.sync()
        except DependencyUnavailable:
            # the store failed keeping the next step, or the audit trail making this one's records durable: the
            # state goes back under its RelayState, so that the user's retry of the same LogoutResponse (the 503
            # page says to try again) goes on from here rather than being refused as logout_unknown, and the
            # remaining participants and the initiator still hear of the logout; a store still down keeps it used
            # up (fails closed, as a replay)
            with contextlib.suppress(DependencyUnavailable):
                d.sessions.put_logout(message.relay_state, taken, d.sessions.pending_timeout)
            raise
        return result

    def _answered(self, state: dict[str, Any], message: InboundMessage, ctx: ClientContext, side: Side) -> Result:
        """The participant's LogoutResponse to the step of the logout ``state`` (taken from the store): note its
        outcome and go on with the next participant, or answer the initiator."""
        d = self._d
        ctx = dataclasses.replace(ctx, correlation_id=state["correlation_id"])
        current = state["current"] or {}
        messages = self._sides[side]
        outcome: str = "failure"
        reason: str | None = None
        detail: str | None = None
        status: str | None = None
        try:
            if messages is None or current.get("side") != side:
                raise SamlRejected("logout_response_invalid", f"a LogoutResponse at the {side} endpoint was not "
                                                              "expected")
            info = messages.read(message)
            if not isinstance(info, LogoutResponseInfo):
                raise SamlRejected("logout_response_invalid", "expected a LogoutResponse")
            if info.peer.entity_id != current.get("peer") or info.in_response_to != current.get("request_id"):
                raise SamlRejected("logout_response_invalid",
                                   f"InResponseTo/Issuer do not match the LogoutRequest sent to {current.get('peer')}")
            status = info.describe()
            if info.complete:
                outcome = "success"
            else:
                reason, detail = "logout_partial", f"{info.peer.entity_id} answered {status}"
        except SamlRejected as exc:
            reason, detail = exc.reason, exc.detail
        peer = str(current.get("peer", ""))
        (state["confirmed"] if outcome == "success" else state["failed"]).append(peer)
        d.audit.record(AuditEvent(
            "logout_propagated", "success" if outcome == "success" else "failure", ctx.correlation_id,
            reason=reason, detail=detail, identity=_identity(state), sp=peer if side == "sp" else None,
            client_address=ctx.client_address,
            data=MappingProxyType({"side": side, "peer": peer, "status": status or ""})))
        state["current"] = None
        return self._advance(state, ctx, clear_session=bool(state.get("clear_cookie", True)))

    # --- the next step -----------------------------------------------------------------------

    def _advance(self, state: dict[str, Any], ctx: ClientContext, *, clear_session: bool,
                 bind_browser: str | None = None) -> Result:
        """Ask the next participant, or answer the initiator when none is left."""
        d = self._d
        while state["targets"]:
            target = state["targets"].pop(0)
            peer = self._peer(target["side"], target["peer"])
            messages = self._sides[target["side"]]
            if peer is None or messages is None or not peer.can_logout:
                state["failed"].append(target["peer"])
                d.audit.record(AuditEvent(
                    "logout_propagated", "failure", ctx.correlation_id, reason="logout_partial",
                    detail=f"{target['peer']} has no SingleLogoutService", identity=_identity(state),
                    sp=target["peer"] if target["side"] == "sp" else None, client_address=ctx.client_address,
                    data=MappingProxyType({"side": target["side"], "peer": target["peer"], "status": ""})))
                continue
            state_id = secrets.token_urlsafe(32)
            request_id, out = messages.request(
                peer, target["name_id"], target["format"], _session_indexes(target), state_id,
                lifetime=d.sessions.pending_timeout, name_qualifier=target.get("name_qualifier"),
                sp_name_qualifier=target.get("sp_name_qualifier"))
            state["current"] = {"side": target["side"], "peer": target["peer"], "request_id": request_id}
            d.sessions.put_logout(state_id, state, d.sessions.pending_timeout)
            return _deliver(out, ctx.correlation_id, None, clear_session=clear_session, bind_browser=bind_browser,
                            onward=self._onward(state) if out.fields else ())
        return self._finish(state, ctx, clear_session)

    def _onward(self, state: dict[str, Any]) -> tuple[str, ...]:
        """Where the logout may send the browser after the participant it now posts to: the endpoints of the
        participants still to be asked, and the initiator's for its LogoutResponse. The page's form-action must name
        them: browsers that apply it to the redirects after a form's submission (broker.web.pages.security_headers)
        would otherwise stop the chain when the participant's answer comes back and the broker redirects on."""
        urls = []
        for target in state["targets"]:
            peer = self._peer(target["side"], target["peer"])
            if peer is not None and peer.endpoint is not None:
                urls.append(peer.endpoint.location)
        initiator = state["initiator"]
        peer = self._peer(initiator["side"], initiator["peer"])
        if not initiator.get("asynchronous") and peer is not None and peer.endpoint is not None:
            urls.append(peer.endpoint.response_location or peer.endpoint.location)
        return tuple(urls)

    def _finish(self, state: dict[str, Any], ctx: ClientContext, clear_session: bool) -> Result:
        d = self._d
        failed = tuple(state["failed"])
        initiator = state["initiator"]
        # the initiator hears PartialLogout also when the principal's sessions could not be found (unlocated): the
        # record of the logout's end says what the initiator was told (SAML Core §3.7.3.2)
        unlocated = bool(state.get("unlocated"))
        why = [*([f"not confirmed by {', '.join(failed)}"] if failed else []),
               *(["the principal's sessions could not all be found"] if unlocated else [])]
        d.audit.record(AuditEvent(
            "logout_completed", "failure" if why else "success", ctx.correlation_id,
            reason="logout_partial" if why else None, detail="; ".join(why) or None, identity=_identity(state),
            client_address=ctx.client_address,
            data=MappingProxyType({"initiator": initiator["side"], "peer": initiator["peer"],
                                   "confirmed": tuple(state["confirmed"]), "failed": failed,
                                   **({"unlocated": True} if unlocated else {})})))
        names = tuple(self._name(p) for p in failed)
        messages = self._sides[initiator["side"]]
        peer = self._peer(initiator["side"], initiator["peer"])
        if initiator.get("asynchronous") or messages is None or peer is None or not peer.can_logout:
            # an asynchronous logout (the initiator asked for no LogoutResponse) ends on the broker's own page
            return LogoutDone(ctx.correlation_id, partial=names, clear_session=clear_session)
        out = messages.response(peer, initiator["request_id"], initiator["relay_state"], STATUS_SUCCESS,
                                STATUS_PARTIAL_LOGOUT if why else None)
        answer = _deliver(out, ctx.correlation_id, self._sp_name(initiator), clear_session=clear_session)
        if failed:
            # tell the user before handing back: the SP's own page may not say what PartialLogout means
            return LogoutDone(ctx.correlation_id, partial=names, clear_session=clear_session, next=answer)
        return answer

    def _sides_entity(self, side: str) -> str | None:
        messages = self._sides.get(side)
        return messages.entity_id if messages is not None else None

    def _peer(self, side: str, entity_id: str) -> LogoutPeer | None:
        messages = self._sides.get(side)
        return messages.peer(entity_id) if messages is not None else None

    def _name(self, entity_id: str) -> LocalizedText | str:
        sp = self._d.settings.sp_by_entity_id(entity_id)
        if sp is not None:
            return sp.config.name
        for m in self._d.settings.municipalities.values():
            if m.config.saml is not None and m.config.saml.entity_id == entity_id:
                return m.config.name
        return entity_id

    def _sp_name(self, initiator: dict[str, Any]) -> LocalizedText | None:
        sp = self._d.settings.sp_by_entity_id(initiator["peer"]) if initiator["side"] == "sp" else None
        return sp.config.name if sp is not None else None


def _names_participant(info: LogoutRequestInfo, own: Participant, session: SsoSession, broker_idp: str) -> bool:
    """Does the SP's LogoutRequest name what this SP was given in the session (SAML Core §3.7.3.2)? Its NameID,
    its NameID format and qualifiers if the request gives them (the broker qualifies every NameID by its own
    entity ID and the SP's: §8.3.7), and, if the request names SessionIndexes, the SP's own among them (not the
    session's or another SP's: each SP has its own, Core §2.7.2)."""
    if not hmac.compare_digest(info.name_id.encode(), own.name_id.encode()):
        return False
    if info.name_id_format not in (None, "", NAMEID_UNSPECIFIED, own.name_id_format):
        return False
    if info.name_qualifier not in (None, broker_idp) or info.sp_name_qualifier not in (None, own.sp_entity_id):
        return False
    if not info.session_indexes:
        return True
    index = own.index_in(session)
    return index is not None and any(hmac.compare_digest(given.encode(), index.encode())
                                     for given in info.session_indexes)


def _names_upstream(info: LogoutRequestInfo | UpstreamLogout, upstream: Mapping[str, str], idp: str,
                    broker_sp: str) -> bool:
    """Does the IdP's LogoutRequest name the identifier it gave (SAML Core §3.7.3.2)? Its format and qualifiers,
    where the request states them, must be the assertion's; the value was matched already. A qualifier the
    assertion left out is the asserting IdP (NameQualifier) or the broker's SP (SPNameQualifier): §8.3.7."""
    for given, kept in ((info.name_id_format, upstream.get("name_id_format")),
                        (info.name_qualifier, upstream.get("name_qualifier") or idp),
                        (info.sp_name_qualifier, upstream.get("sp_name_qualifier") or broker_sp)):
        if given not in (None, "", NAMEID_UNSPECIFIED) and kept and given != kept:
            return False
    return True


def logged_out_upstream(logouts: Sequence[UpstreamLogout], upstream: Mapping[str, str],
                        authn_instant: dt.datetime, broker_sp: str) -> UpstreamLogout | None:
    """The IdP's earlier LogoutRequest that applies to an assertion arriving now (SAML Core §3.7.3.2), if any:
    ``upstream`` is the assertion's principal as a session keeps it (IdP, NameID and its qualifiers,
    SessionIndex). It applies when it names the same identifier and, if it names SessionIndexes, the
    assertion's; one that names none ends the principal's every session at the IdP, so it applies to the
    assertions of authentications before it (both instants are the IdP's own clock), not to a new login: one in
    the same second as the logout (instants often have whole seconds) counts as after it."""
    for logout in logouts:
        if not _names_upstream(logout, upstream, upstream["idp"], broker_sp):
            continue
        if logout.session_indexes:
            if upstream.get("session_index") in logout.session_indexes:
                return logout
        elif authn_instant.replace(microsecond=0) < logout.issued.replace(microsecond=0):
            return logout  # in the same second (instants often have whole seconds): the new login after it
    return None


def _logout_name(side: Side, info: LogoutRequestInfo) -> str:
    """A LogoutRequest's name for what its handling leaves behind (SessionManager.note_ending): its side, issuer
    and ID, which the replay check makes one request's."""
    return f"{side}\x00{info.peer.entity_id}\x00{info.request_id}"


def _session_indexes(target: dict[str, Any]) -> list[str]:
    """The SessionIndexes to name to a participant; a logout stored by the previous release has one or none."""
    if "session_indexes" in target:
        return list(target["session_indexes"])
    return [target["session_index"]] if target.get("session_index") else []


def _identity(state: dict[str, Any]) -> Identity | None:
    return Identity(**state["identity"]) if state.get("identity") else None


def _deliver(out: OutboundMessage, correlation_id: str, name: LocalizedText | None, *,
             clear_session: bool, bind_browser: str | None = None, onward: tuple[str, ...] = ()) -> PostToSp | Redirect:
    if out.fields:
        return PostToSp(out.url, out.fields, correlation_id, name, clear_session=clear_session,
                        bind_browser=bind_browser, onward=onward)
    return Redirect(out.url, correlation_id, clear_session=clear_session, bind_browser=bind_browser)


def _digest(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()
