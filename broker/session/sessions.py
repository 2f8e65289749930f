"""SSO sessions and pending logins on top of a :class:`KeyValueStore`.

* A session is found by an opaque random cookie (256 bits). The store key is
  the SHA-256 of the cookie, so a copy of the store does not yield usable
  cookies.
* Idle and absolute timeouts are judged with the injected clock; the store's
  TTL only garbage-collects.
* A pending login (the AuthnRequest being answered) is stored under a random
  id and *taken* (GETDEL) when the login continues: it is consumed once, on
  whichever broker instance the browser reaches.
* Every SP answered from a session is one of its participants (for single
  logout, SAML Profiles §4.4): one record per SP, the newest, holding what
  that SP was given: its NameID, NameID format and its own SessionIndex.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from broker.clock import Clock
from broker.errors import DependencyUnavailable
from broker.model import Identity
from broker.session.store import KeyValueStore

_log = logging.getLogger(__name__)


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _dt(text: str) -> dt.datetime:
    """A stored instant; one without a UTC offset is no form this release writes (ValueError: unreadable)."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"the instant {text[:40]!r} has no UTC offset")
    return value


@dataclass(frozen=True)
class SsoSession:
    """What the broker remembers about a logged-in user."""

    identity: Identity
    loa_uri: str
    authn_instant: dt.datetime
    expires_at: dt.datetime          # absolute timeout
    last_seen: dt.datetime
    correlation_id: str              # of the login that created the session
    certificate_sha256: str | None = None
    revocation_valid_until: dt.datetime | None = None
    certificate_der: str | None = None     # base64; kept server-side so the session can follow revocation
    # base64 DER of the intermediates a trusted proxy forwarded with the certificate (path-building hints
    # for the re-check); stored only when there are any, so sessions without them keep their old form
    certificate_chain_der: tuple[str, ...] = ()
    upstream: dict[str, str] | None = None  # login: saml: the IdP, its NameID, format and SessionIndex (logout)
    # The session-wide SessionIndex of releases that gave every SP the same one. Never sent any more (each SP
    # gets its own: SessionManager.session_index); kept, and still written, only as the SessionIndex of
    # participants stored without one (by those releases) and so that the session's stored form stays the
    # same for instances of the previous release during an upgrade.
    session_index: str = field(default_factory=lambda: "_" + secrets.token_hex(16))
    # Why the session answers no SP any more although it has not ended (its certificate no longer holds): it stays
    # for single logout and for the next login in the browser to take its SPs over (SessionManager.retire). Written
    # only when set, so that other sessions keep the stored form of the previous release.
    retired: str | None = None
    # The digest of the municipality's configuration the session's authentication was judged by: for a certificate
    # session, its trust configuration (broker.pki.validator.trust_digest; a reload that changes it has the
    # certificate validated again on the session's next use); for a session from a municipal IdP, that IdP's
    # configuration (broker.saml.upstream_mapping.configuration_digest; a change sends the user back to the IdP).
    # Written only when set, as ``retired``.
    trust: str | None = None

    @property
    def authenticated_upstream(self) -> dict[str, str] | None:
        """The municipal IdP session this session's own authentication rests on: ``upstream`` for a federated
        login, None for a certificate login (whose ``upstream``, if any, is the record of the federated session
        it replaced in the browser, kept for single logout only)."""
        return self.upstream if self.certificate_sha256 is None else None

    def to_json(self) -> bytes:
        # field by field rather than dataclasses.asdict, which deep-copies every value (a third of a login's
        # session write); every field is a str, None, a datetime, a tuple of str or a flat dict of str
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in _SESSION_FIELDS}
        data["identity"] = {f.name: getattr(self.identity, f.name) for f in _IDENTITY_FIELDS}
        for k in ("authn_instant", "expires_at", "last_seen", "revocation_valid_until"):
            if data[k] is not None:
                data[k] = data[k].isoformat()
        if not data["certificate_chain_der"]:
            del data["certificate_chain_der"]
        if data["retired"] is None:
            del data["retired"]
        if data["trust"] is None:
            del data["trust"]
        return _JSON.encode(data).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SsoSession:
        data: dict[str, Any] = json.loads(raw)
        data["identity"] = Identity(**data["identity"])
        for k in ("authn_instant", "expires_at", "last_seen"):
            data[k] = _dt(data[k])
        if data.get("revocation_valid_until"):
            data["revocation_valid_until"] = _dt(data["revocation_valid_until"])
        data["certificate_chain_der"] = tuple(data.get("certificate_chain_der", ()))
        return cls(**data)


# how far apart the clocks of instances sharing the store may be, for what one instance writes and another judges
_INSTANCE_CLOCK_MARGIN = dt.timedelta(minutes=5)

_SESSION_FIELDS = fields(SsoSession)
_IDENTITY_FIELDS = fields(Identity)
_JSON = json.JSONEncoder(separators=(",", ":"))
# How a retired session's stored form tells itself apart: its "retired" key, written only when set. Inside a JSON
# string a quote is escaped, so these bytes can only be that key.
_RETIRED_MARK = b'"retired":'


@dataclass(frozen=True)
class Participant:
    """A service provider that received an assertion in this session, with what it was given: single logout
    (SAML Profiles §4.4) matches the SP's LogoutRequest against these values and sends them in the broker's.

    ``session_index`` is the SP's own SessionIndex (SAML Core §2.7.2); None only in records stored by releases
    that gave every SP the session's one (:attr:`SsoSession.session_index` then stands in). ``issued`` orders
    the records of one SP: the newest is the SP's participant (:meth:`SessionManager.participants_ref`).
    """

    sp_entity_id: str
    name_id: str
    name_id_format: str
    session_index: str | None = None
    issued: dt.datetime | None = None

    def encode(self) -> str:
        values: list[str | None] = [self.sp_entity_id, self.name_id, self.name_id_format]
        if self.session_index is not None or self.issued is not None:
            values += [self.session_index, self.issued.isoformat() if self.issued is not None else None]
        return json.dumps(values, separators=(",", ":"))

    def record_prefix(self) -> str:
        """What every stored record of this SP, of this release or an earlier one, starts with."""
        return json.dumps([self.sp_entity_id], separators=(",", ":"))[:-1] + ","

    @classmethod
    def decode(cls, text: str) -> Participant:
        """A stored record: [SP, NameID, format] as earlier releases wrote it, or with the SessionIndex and the
        time of issue after them. Values after those are ignored, so that a later release may add some."""
        values = json.loads(text)
        sp, name_id, fmt = values[:3]
        index, issued = [*values[3:5], None, None][:2]
        return cls(sp, name_id, fmt, index, _dt(issued) if issued else None)

    def index_in(self, session: SsoSession) -> str | None:
        """The SessionIndex this SP holds: its own, or the session-wide one of a record from an earlier release."""
        return self.session_index if self.session_index is not None else session.session_index


def _newest_per_sp(participants: Iterable[Participant]) -> list[Participant]:
    """One participant per SP, by SP: its newest record, the one an SP answered again (a new transient NameID,
    say) holds; an SP keeps one session per user. Records of earlier releases (no time) count as oldest; a tie
    (one microsecond, or instance clocks apart by more than two logins of one SP in one browser) goes by the
    record's text, so every instance picks the same one."""
    newest: dict[str, Participant] = {}
    for p in participants:
        held = newest.get(p.sp_entity_id)
        if held is None or _order(p) > _order(held):
            newest[p.sp_entity_id] = p
    return [newest[sp] for sp in sorted(newest)]


_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


def _order(p: Participant) -> tuple[dt.datetime, str]:
    return p.issued or _EPOCH, p.encode()


@dataclass(frozen=True)
class UpstreamLogout:
    """A municipal IdP's LogoutRequest, as remembered for the assertions that may still arrive after it (SAML Core
    §3.7.3.2: the participant "MUST apply the logout request message to any assertion" that matches, "even if
    the assertion arrives after the logout request"): how it named the principal, its SessionIndexes, when the IdP
    issued it, and until when it applies."""

    request_id: str
    name_id_format: str | None
    name_qualifier: str | None
    sp_name_qualifier: str | None
    session_indexes: tuple[str, ...]
    issued: dt.datetime
    until: dt.datetime

    def encode(self) -> str:
        return json.dumps({"id": self.request_id, "f": self.name_id_format, "nq": self.name_qualifier,
                           "spq": self.sp_name_qualifier, "si": list(self.session_indexes),
                           "at": self.issued.isoformat(), "until": self.until.isoformat()}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> UpstreamLogout:
        d = json.loads(text)
        return cls(str(d["id"]), d["f"], d["nq"], d["spq"], tuple(d["si"]), _dt(d["at"]), _dt(d["until"]))


def _logout_or_none(member: str) -> UpstreamLogout | None:
    """A remembered IdP logout, or None for a member that is none (written by another release, damaged)."""
    try:
        return UpstreamLogout.decode(member)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class Replaced:
    """What a session hands on to the session of a new login in the same browser that replaces it
    (:meth:`SessionManager.replace`)."""

    participants: tuple[Participant, ...]    # one per SP, as :meth:`SessionManager.participants_ref` gives them
    upstream: dict[str, str] | None          # its municipal IdP session, if it was federated
    correlation_id: str                      # of the login that opened it
    # its stored form as this request removed it; None when it was gone already (a logout, another request), or
    # kept apart (below): what SessionManager.reinstate may put back, and only then
    stored: bytes | None = None
    # the user of the replaced session, when the new login proves another identity (a shared PC): that session is
    # not taken over (nothing above: no participants, no upstream record) but kept apart, retired, for that user's
    # single logout; with the SPs it holds for her (for the audit trail)
    other_user: Identity | None = None
    other_services: tuple[str, ...] = ()


def same_user(a: Identity, b: Identity) -> bool:
    """Whether two identities are the same user: the same identity rule's value in the same municipality."""
    return (a.kind, a.key, a.municipality_id) == (b.kind, b.key, b.municipality_id)


# SsoSession.retired of a session kept apart because another user logged in in its browser (SessionManager.replace)
REPLACED_BY_OTHER_USER = "replaced_by_other_user"


class SessionManager:
    """Creates, finds, refreshes and ends SSO sessions; keeps pending logins."""

    def __init__(self, store: KeyValueStore, clock: Clock, *, idle_timeout: dt.timedelta,
                 absolute_timeout: dt.timedelta, pending_timeout: dt.timedelta, index_key: bytes) -> None:
        """``index_key``: the secret the keys of the indexes by a municipal IdP's NameID are an HMAC under
        (:meth:`_principal_key`); the same on every instance sharing the store."""
        self._store = store
        self._clock = clock
        self._index_key = index_key
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.pending_timeout = pending_timeout

    # --- sessions --------------------------------------------------------------------

    def _ttl(self, session: SsoSession, now: dt.datetime) -> float:
        """How long the session's keys (the session, its participants) live: until its absolute end, the
        SessionNotOnOrAfter its SPs were given. An idle session no longer answers (:meth:`find`), but its SPs
        still hold the user until then, and single logout must still find and reach them."""
        return max((session.expires_at - now).total_seconds(), 1.0)

    def open(self, identity: Identity, loa_uri: str, correlation_id: str, *,
             certificate_sha256: str | None, revocation_valid_until: dt.datetime | None,
             certificate_der: bytes | None = None, certificate_chain_der: Sequence[bytes] = (),
             upstream: dict[str, str] | None = None,
             authn_instant: dt.datetime | None = None,
             not_after: dt.datetime | None = None, trust: str | None = None) -> tuple[str, SsoSession]:
        """A new session, not stored yet (:meth:`save`); returns (cookie value, session). The cookie value is
        shown to no one else. ``trust``: the digest of the configuration its authentication was judged by
        (:attr:`SsoSession.trust`)."""
        now = self._clock.now()
        # the absolute timeout counts from the authentication: for a municipal IdP's, its AuthnInstant (an IdP
        # answering from a sign-on of hours ago gives no fresh absolute_timeout; one within its clock skew ahead
        # counts from now)
        end = min(authn_instant or now, now) + self.absolute_timeout
        session = SsoSession(
            identity=identity,
            loa_uri=loa_uri,
            authn_instant=authn_instant or now,
            # the absolute timeout, or sooner when the authentication itself ends sooner (an upstream
            # IdP's SessionNotOnOrAfter, SAML Core §2.7.2; the end of the login certificate's validity)
            expires_at=min(end, not_after) if not_after else end,
            last_seen=now,
            correlation_id=correlation_id,
            certificate_sha256=certificate_sha256,
            revocation_valid_until=revocation_valid_until,
            certificate_der=base64.b64encode(certificate_der).decode() if certificate_der else None,
            certificate_chain_der=tuple(base64.b64encode(der).decode() for der in certificate_chain_der),
            upstream=upstream,
            trust=trust,
        )
        return new_token(), session

    def save(self, token: str, session: SsoSession, participant: Participant | None = None, *,
             carried: Sequence[Participant] = ()) -> None:
        """Store a session from :meth:`open`, with its first participant (the SP being answered) and the
        participants ``carried`` over from the session it replaces (:meth:`replace`), in one round trip.

        A carried record for the SP being answered is dropped: that SP now holds the new assertion (SAML Core
        §2.7.2: its newest SessionIndex), and one record per SP is what logout works with.

        A session from a municipal IdP is also indexed by (IdP, NameID), so the
        IdP's LogoutRequest finds it even when the browser does not send the
        cookie along (SAML Core §3.7.3.2: the participant ends the principal's
        sessions); and every SP's SessionIndex names the session, so an SP's
        LogoutRequest finds it by the SessionIndex it holds (:meth:`find_by_session_index`).
        """
        sid = _hash(token)
        ttl = self._ttl(session, self._clock.now())
        members = self._principal_members(session, sid)
        answered = participant.sp_entity_id if participant is not None else None
        for p in [*(c for c in carried if c.sp_entity_id != answered), *([participant] if participant else [])]:
            members.append(("session-sps:" + sid, p.encode(), ttl))
            members += self._index_members(p, session, sid)
        self._store.put("session:" + sid, session.to_json(), ttl, members=members)

    def _index_members(self, participant: Participant, session: SsoSession, sid: str) -> list[tuple[str, str, float]]:
        """The SP's SessionIndex naming the session: a set of one member (an SP's SessionIndex is its own, per
        session, Core §2.7.2), kept as long as the session can live."""
        index = participant.index_in(session)
        if index is None:
            return []
        return [(self._session_index_key(participant.sp_entity_id, index), sid,
                 self.absolute_timeout.total_seconds())]

    @staticmethod
    def _session_index_key(sp_entity_id: str, session_index: str) -> str:
        return "sp-session-index:" + _hash(f"{sp_entity_id}\x00{session_index}")

    def find_by_session_index(self, sp_entity_id: str, session_index: str) -> list[tuple[str, SsoSession]]:
        """The sessions (ref, session; idle ones included) in which SP ``sp_entity_id`` was given
        ``session_index``: how an SP's LogoutRequest finds its session when the browser delivering it sends no
        cookie (another device, a blocked cookie; SAML Core §3.7.3.2). The caller still matches the request
        against the participant."""
        found = []
        for sid in sorted(self._store.members(self._session_index_key(sp_entity_id, session_index))):
            session, _ = self._find_ref(sid, idle_too=True)
            if session is not None:
                found.append((sid, session))
        return found

    @staticmethod
    def session_index(token: str, sp_entity_id: str) -> str:
        """The SessionIndex of the session ``token`` names for the SP ``sp_entity_id`` (SAML Core §2.7.2, §3.7.1).

        Core §2.7.2: a SessionIndex must not let SPs correlate the principal. Each SP gets its own: 128 bits of an
        HMAC-SHA-256 of its entity ID keyed with the session's cookie value (256 random bits only the browser
        holds; the store keeps their hash), so no SP can compute another's. Chosen over a random value per
        assertion: nothing more to store with the session, and an SP answered again from the session gets the
        same one, so what it still holds from the earlier answer matches too. A new login (cookie) gives new
        ones. The value is stored with the participant: logout matches and sends what the SP was given.
        """
        mac = hmac.new(token.encode(), b"saml-session-index\x00" + sp_entity_id.encode(), hashlib.sha256)
        return "_" + mac.hexdigest()[:32]

    @staticmethod
    def ref(token: str) -> str:
        """The store's name for a session (the cookie's hash): what logout works with."""
        return _hash(token)

    def _principal_members(self, session: SsoSession, sid: str) -> list[tuple[str, str, float]]:
        """A federated session's entry in the (IdP, NameID) index its IdP's LogoutRequest finds it by."""
        if session.upstream is None:
            return []
        return [(self._principal_key(session.upstream["idp"], session.upstream["name_id"]), sid,
                 self.absolute_timeout.total_seconds())]

    def _principal_key(self, idp: str, name_id: str) -> str:
        return "upstream-principal:" + self._name_digest(idp, name_id)

    def _name_digest(self, idp: str, name_id: str) -> str:
        """The store's name for a municipal IdP's principal: an HMAC-SHA256 under ``index_key``. A NameID is
        personal data (an account name, an e-mail address, at some IdPs the personnummer), and a key listing or a
        copy of the store must not yield it: a plain hash of one is found again by hashing the candidates (every
        personnummer is some 40 million of them), a keyed one only with the key (REFERENCE.md, Logging law and
        privacy)."""
        return hmac.new(self._index_key, f"{idp}\x00{name_id}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _unkeyed(prefix: str, idp: str, name_id: str) -> str:
        """The key the previous release wrote the same index under (a plain SHA-256): read beside the keyed one, so
        that during a rolling update an instance finds what one of the previous release recorded; nothing is
        written there. It lives no longer than a session (absolute_timeout): the next release can drop it."""
        return prefix + _hash(f"{idp}\x00{name_id}")

    def find(self, token: str | None, *, idle_too: bool = False) -> tuple[SsoSession | None, str | None]:
        """The live session for ``token``, or (None, why): ``expired_idle``, ``expired_absolute``, ``retired``
        (:meth:`retire`), ``unknown``,
        ``unreadable`` (a stored form this release cannot read: another release's during an upgrade, a damaged
        record; left in place for the release that wrote it, and no session here: the user logs in again).

        ``idle_too``: an idle or retired session too (why ``expired_idle``, ``retired``), for what must still
        reach its SPs: single logout, and a new login replacing it. It answers no SP (SSO) however it is found."""
        if not token or len(token) > 128:
            return None, None
        return self._find_ref(_hash(token), idle_too=idle_too)

    def ends(self, session: SsoSession) -> dt.datetime:
        """When the session ends by the absolute timeout in force, counted from its login (:meth:`open`): sooner
        than its stored ``expires_at`` after a reload that shortened ``absolute_timeout``. The SPs answered from it
        are told this end (SessionNotOnOrAfter, SAML Core §2.7.2); it is kept for single logout until
        ``expires_at``, the end told to the SPs answered before."""
        return min(session.expires_at, session.authn_instant + self.absolute_timeout)

    def _find_ref(self, sid: str, *, idle_too: bool = False) -> tuple[SsoSession | None, str | None]:
        raw = self._store.get("session:" + sid)
        if raw is None:
            return None, "unknown"
        try:
            session = SsoSession.from_json(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            _log.warning("session %s… unreadable (%s: %s); treated as absent", sid[:12], type(exc).__name__, exc)
            return None, "unreadable"
        now = self._clock.now()
        if now >= session.expires_at:
            self.end_ref(sid)
            return None, "expired_absolute"
        if now >= self.ends(session):
            # past the end the absolute timeout in force gives it (a reload shortened it), before the one its SPs
            # were told: it answers no SP, and is kept, as an idle one, for single logout until then
            return (session if idle_too else None), "expired_absolute"
        if session.retired is not None:  # like an idle one: for single logout and replacement only
            return (session if idle_too else None), "retired"
        if now - session.last_seen >= self.idle_timeout:
            # kept, not deleted: its SPs hold the user until the absolute end, and logout must reach them
            return (session if idle_too else None), "expired_idle"
        return session, None

    def find_upstream(self, idp: str, name_id: str) -> list[tuple[str, SsoSession]]:
        """The sessions (ref, session) that municipal IdP ``idp`` opened for ``name_id``, idle ones included
        (their SPs still hold the user: :meth:`find`)."""
        found: dict[str, SsoSession] = {}
        for key in (self._principal_key(idp, name_id), self._unkeyed("upstream-principal:", idp, name_id)):
            gone = []
            for sid in sorted(self._store.members(key)):
                session, why = self._find_ref(sid, idle_too=True)
                if session is None and why in ("unknown", "expired_absolute"):
                    gone.append(sid)
                elif session is not None and session.upstream is not None and session.upstream.get("idp") == idp \
                        and session.upstream.get("name_id") == name_id:
                    found[sid] = session
            if gone:
                # the index's time to live is renewed by every login of hers: without this, a user logging in again
                # within absolute_timeout, day after day, would keep every session she ever had in it, each costing
                # her IdP's next LogoutRequest a lookup
                self._store.update_set(key, None, 0.0, remove=gone)
        return sorted(found.items())

    def touch(self, token: str, session: SsoSession) -> SsoSession:
        """The session with this request's activity (slides the idle timeout); not stored yet: :meth:`save_reused`
        stores it, with the SP answered from it, only if the session still exists."""
        return SsoSession(**{**session.__dict__, "last_seen": self._clock.now()})

    def save_reused(self, token: str, session: SsoSession, participant: Participant) -> bool:
        """Store a session found by :meth:`find` (as :meth:`touch` left it) again, with ``participant`` (the SP
        being answered from it) added, in one round trip and only if the session still exists. False: it has ended
        since it was found (a logout, perhaps on another instance, or a timeout) and nothing was written; the
        caller must not answer from it.

        A plain write would bring a session back that a single logout (SAML Profiles §4.4) ended meanwhile, and
        with it a participant list the logout has already taken: the cookie would log in again without a
        certificate (OWASP Session Management Cheat Sheet: logout must end the session on the server). The
        participant is added with the session or not at all, so a logout that ended the session after this
        write still finds it among the SPs to propagate to.
        """
        sid = _hash(token)
        ttl = self._ttl(session, self._clock.now())
        # the SP's older records go: only its newest counts (_newest_per_sp), and a session answering one SP again
        # and again must not grow its set with every answer
        return self._store.put_if_present("session:" + sid, session.to_json(), ttl,
                                          members=[("session-sps:" + sid, participant.encode(), ttl),
                                                   *self._index_members(participant, session, sid)],
                                          replacing=participant.record_prefix(), unless=_RETIRED_MARK)

    def participants(self, token: str) -> list[Participant]:
        return self.participants_ref(_hash(token))

    def participants_ref(self, sid: str) -> list[Participant]:
        """The session's participants, one per SP (its newest record), by SP entity ID."""
        return _newest_per_sp(Participant.decode(m) for m in self._store.members("session-sps:" + sid))

    def participant_ref(self, sid: str, sp_entity_id: str) -> Participant | None:
        """The SP's participant record in the session (its newest), or None if it got nothing from the session."""
        return next((p for p in self.participants_ref(sid) if p.sp_entity_id == sp_entity_id), None)

    def end(self, token: str) -> None:
        self.end_ref(_hash(token))

    def end_ref(self, sid: str, *, keep_participants: bool = False) -> None:
        """End a session; single logout keeps its participants to propagate to (:meth:`participants_ref`, then
        :meth:`ended`)."""
        self._store.delete("session:" + sid)
        if not keep_participants:
            self._store.delete("session-sps:" + sid)

    def retire(self, token: str, session: SsoSession, why: str) -> None:
        """Answer no SP from the session any more (``why``: its certificate no longer holds), keeping it, with its
        SPs, for single logout and for the next login in the browser to take over (:meth:`replace`): a card that
        becomes good again (a hold lifted) does not revive it. Stored only while it exists: a logout that ended
        it meanwhile stays complete."""
        sid = _hash(token)
        self._store.put_if_present("session:" + sid, replace(session, retired=why).to_json(),
                                   self._ttl(session, self._clock.now()), unless=_RETIRED_MARK)

    def reinstate(self, token: str, replaced: Replaced, why: str) -> None:
        """Put back, retired (:meth:`retire`), the session ``token`` named that :meth:`replace` ended for a login
        refused after all (``why``): its SPs, whose list replace() left in place, stay in single logout through
        the browser's cookie, and no SP is answered from it (the user logs in again). Only what that replace()
        itself removed comes back: a session a logout ended before it stays ended."""
        if replaced.stored is None:
            return
        try:
            session = SsoSession.from_json(replaced.stored)
        except (ValueError, TypeError, KeyError, AttributeError):  # unreadable as found: left ended
            return
        sid = _hash(token)
        now = self._clock.now()
        if now >= session.expires_at:
            return
        self._store.put("session:" + sid, replace(session, retired=why).to_json(), self._ttl(session, now),
                        members=self._principal_members(session, sid))

    def note_ending(self, logout: str, ended: Sequence[tuple[str, SsoSession]]) -> None:
        """Before a single logout named ``logout`` (its initiator and request) ends the sessions ``ended``: what it
        ends, so that its retry after a store failure midway (the session deleted, its participants not yet
        asked) finds them again (:meth:`ending`) instead of nothing, and reaches their SPs."""
        record = [[sid, session.to_json().decode()] for sid, session in ended]
        self._store.put("logout-ending:" + _hash(logout), _JSON.encode(record).encode(),
                        max(self.pending_timeout.total_seconds(), 1.0))

    def ending(self, logout: str) -> list[tuple[str, SsoSession]] | None:
        """The sessions an interrupted single logout named ``logout`` ended (:meth:`note_ending`); None when it
        noted none (it never got that far, or it completed)."""
        raw = self._store.get("logout-ending:" + _hash(logout))
        if raw is None:
            return None
        try:
            return [(str(sid), SsoSession.from_json(str(session).encode())) for sid, session in json.loads(raw)]
        except (ValueError, TypeError, KeyError) as exc:  # damaged: as good as none, the retry starts afresh
            _log.warning("logout-ending record unreadable (%s); treated as absent", exc)
            return None

    def ended(self, logout: str, sids: Sequence[str]) -> None:
        """The single logout ``logout`` has what it needs to ask the participants of ``sids`` (its state is
        stored): their lists and its :meth:`note_ending` record go."""
        for sid in sids:
            self._store.delete("session-sps:" + sid)
        self._store.delete("logout-ending:" + _hash(logout))

    def replace(self, token: str, session: SsoSession, identity: Identity) -> Replaced:
        """End the session ``token`` names because a new login (of ``identity``) in the same browser replaces it
        (a new cookie: no session fixation), and return what the new session takes over (:meth:`save`
        ``carried``, and the upstream record).

        Another user's session (a shared PC: the new login proves another identity) is taken over by nothing: its
        SPs and municipal IdP session are hers, and merged into the new user's session a logout of hers would end
        his, and be filed under him. It is kept apart instead, retired under its own name (:meth:`retire`; the
        browser's new cookie no longer leads to it): her SPs' LogoutRequests still find it by their SessionIndex,
        her IdP's by its NameID, and single logout reaches its participants for her (SAML Profiles §4.4) until its
        absolute end. No SP is answered from it any more.

        Its SPs still hold the user, each with the NameID and SessionIndex it was given: they stay participants
        of the new session, so that single logout from any SP of either ends the browser's session and reaches
        all of them (SAML Profiles §4.4); dropped, they would not hear of a logout from the new session, and
        their own LogoutRequest would get UnknownPrincipal while the new session lives on.

        Two round trips, as ending a session took before (DEL, DEL): the session is deleted first, so that no
        request answered from it can add a participant once they are read (:meth:`save_reused` stores only while
        the session exists), then they are read. Their list expires with its time to live (the session's absolute
        end) rather than cost a third: nothing leads to it once its session is gone.
        """
        sid = _hash(token)
        if not same_user(session.identity, identity):
            # stored only while it exists (a logout that ended it meanwhile stays complete); one already retired
            # keeps why it was
            self._store.put_if_present("session:" + sid, replace(
                session, retired=session.retired or REPLACED_BY_OTHER_USER).to_json(),
                self._ttl(session, self._clock.now()))
            return Replaced((), None, session.correlation_id, None, other_user=session.identity,
                            other_services=tuple(p.sp_entity_id for p in self.participants_ref(sid)))
        stored = self._store.take("session:" + sid)  # as end_ref(keep_participants=True), saying what it removed
        return Replaced(tuple(self.participants_ref(sid)), session.upstream, session.correlation_id, stored)

    # --- short-lived state: pending logins, logins at a municipal IdP, logouts in progress ---------

    def _put(self, kind: str, key: str, data: dict[str, Any], ttl: dt.timedelta) -> None:
        self._store.put(f"{kind}:{_hash(key)}", json.dumps(data, separators=(",", ":")).encode(),
                        max(ttl.total_seconds(), 1.0))

    def _get(self, kind: str, key: str | None, *, take: bool) -> dict[str, Any] | None:
        if not key or len(key) > 256:
            return None
        name = f"{kind}:{_hash(key)}"
        raw = self._store.take(name) if take else self._store.get(name)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:  # a damaged record is as good as none: the caller refuses it as unknown
            _log.warning("%s record unreadable (%s); treated as absent", kind, exc)
            return None
        return data if isinstance(data, dict) else None

    def put_pending(self, data: dict[str, Any]) -> str:
        """Keep the SP's login (its AuthnRequest) under a new random id."""
        login_id = new_token()
        self._put("pending", login_id, data, self.pending_timeout)
        return login_id

    def peek_pending(self, login_id: str) -> dict[str, Any] | None:
        """A pending login without consuming it (to show its discovery page again)."""
        return self._get("pending", login_id, take=False)

    def take_pending(self, login_id: str) -> dict[str, Any] | None:
        return self._get("pending", login_id, take=True)

    def put_upstream(self, request_id: str, data: dict[str, Any], ttl: dt.timedelta) -> None:
        """The SP's login waiting for the municipal IdP's answer to our request ``request_id``."""
        self._put("upstream", request_id, data, ttl)

    def peek_upstream(self, request_id: str) -> dict[str, Any] | None:
        """The login waiting for the answer to ``request_id``, without consuming it: the ACS checks that the
        answer arrived in the login's own browser before it takes the login (:meth:`take_upstream`)."""
        return self._get("upstream", request_id, take=False)

    def take_upstream(self, request_id: str) -> dict[str, Any] | None:
        return self._get("upstream", request_id, take=True)

    def put_logout(self, state_id: str, data: dict[str, Any], ttl: dt.timedelta) -> None:
        """A single logout in progress, named by the RelayState it travels with."""
        self._put("logout", state_id, data, ttl)

    def peek_logout(self, state_id: str | None) -> dict[str, Any] | None:
        return self._get("logout", state_id, take=False)

    def take_logout(self, state_id: str | None) -> dict[str, Any] | None:
        return self._get("logout", state_id, take=True)

    def record_upstream_logout(self, idp: str, name_id: str, logout: UpstreamLogout) -> None:
        """Remember the IdP's LogoutRequest for ``name_id`` until ``logout.until`` (:meth:`upstream_logouts`), on
        every instance. Those of the principal's that no longer apply are dropped in the same step, so that a
        principal logged out again and again does not keep a growing set alive."""
        now = self._clock.now()
        key = self._logout_key(idp, name_id)
        kept = [(member, _logout_or_none(member)) for member in self._store.members(key)]
        expired = [member for member, entry in kept if entry is None or entry.until <= now]
        longest = max([logout.until, *(e.until for _, e in kept if e is not None and e.until > now)])
        self._store.update_set(key, logout.encode(), max((longest - now + _INSTANCE_CLOCK_MARGIN).total_seconds(),
                                                         1.0), remove=expired)

    def upstream_logouts(self, idp: str, name_id: str) -> list[UpstreamLogout]:
        """The IdP's LogoutRequests for ``name_id`` that still apply (:meth:`record_upstream_logout`)."""
        now = self._clock.now()
        return [e for key in (self._logout_key(idp, name_id), self._unkeyed("upstream-logout:", idp, name_id))
                for e in self._logouts(key) if e.until > now]

    def _logouts(self, key: str) -> list[UpstreamLogout]:
        return [entry for entry in map(_logout_or_none, self._store.members(key)) if entry is not None]

    def _logout_key(self, idp: str, name_id: str) -> str:
        return "upstream-logout:" + self._name_digest(idp, name_id)

    def first_use(self, idp: str, assertion_id: str, until: dt.datetime) -> bool:
        """True the first time an assertion is seen; it is remembered until it could no longer be used, on any
        instance: a margin beyond ``until`` covers an instance whose clock is behind this one's."""
        ttl = max((until - self._clock.now() + _INSTANCE_CLOCK_MARGIN).total_seconds(), 1.0)
        return self._store.put_if_absent("replay:" + _hash(f"{idp}\x00{assertion_id}"), b"1", ttl)

    def forget_use(self, idp: str, assertion_id: str) -> None:
        """Undo :meth:`first_use` for a message whose handling failed before it had any effect (the store went
        away meanwhile), so that its retry is no replay; a store still down leaves the mark (fails closed)."""
        with contextlib.suppress(DependencyUnavailable):
            self._store.delete("replay:" + _hash(f"{idp}\x00{assertion_id}"))

    def ping(self) -> None:
        self._store.ping()
