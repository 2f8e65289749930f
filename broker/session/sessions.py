"""SSO sessions and pending logins on top of a :class:`KeyValueStore`.

* A session is found by an opaque random cookie (256 bits). The store key is
  the SHA-256 of the cookie, so a copy of the store does not yield usable
  cookies.
* Idle and absolute timeouts are judged with the injected clock; the store's
  TTL only garbage-collects.
* A pending login (the AuthnRequest being answered) is stored under a random
  id and *taken* (GETDEL) when the login continues: it is consumed once, on
  whichever broker instance the browser reaches.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from broker.clock import Clock
from broker.model import Identity
from broker.session.store import KeyValueStore


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _dt(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


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
    session_index: str = field(default_factory=lambda: "_" + secrets.token_hex(16))

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


_SESSION_FIELDS = fields(SsoSession)
_IDENTITY_FIELDS = fields(Identity)
_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class Participant:
    """A service provider that received an assertion in this session (for single logout)."""

    sp_entity_id: str
    name_id: str
    name_id_format: str

    def encode(self) -> str:
        return json.dumps([self.sp_entity_id, self.name_id, self.name_id_format], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Participant:
        sp, name_id, fmt = json.loads(text)
        return cls(sp, name_id, fmt)


class SessionManager:
    """Creates, finds, refreshes and ends SSO sessions; keeps pending logins."""

    def __init__(self, store: KeyValueStore, clock: Clock, *, idle_timeout: dt.timedelta,
                 absolute_timeout: dt.timedelta, pending_timeout: dt.timedelta) -> None:
        self._store = store
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.pending_timeout = pending_timeout

    # --- sessions --------------------------------------------------------------------

    def _ttl(self, session: SsoSession, now: dt.datetime) -> float:
        remaining = min(session.expires_at - now, self.idle_timeout)
        return max(remaining.total_seconds(), 1.0)

    def open(self, identity: Identity, loa_uri: str, correlation_id: str, *,
             certificate_sha256: str | None, revocation_valid_until: dt.datetime | None,
             certificate_der: bytes | None = None, certificate_chain_der: Sequence[bytes] = (),
             upstream: dict[str, str] | None = None,
             authn_instant: dt.datetime | None = None,
             not_after: dt.datetime | None = None) -> tuple[str, SsoSession]:
        """A new session, not stored yet (:meth:`save`); returns (cookie value, session). The cookie value is
        shown to no one else."""
        now = self._clock.now()
        session = SsoSession(
            identity=identity,
            loa_uri=loa_uri,
            authn_instant=authn_instant or now,
            # the absolute timeout, or sooner when the authentication itself ends sooner (an upstream
            # IdP's SessionNotOnOrAfter, SAML Core §2.7.2)
            expires_at=min(now + self.absolute_timeout, not_after) if not_after else now + self.absolute_timeout,
            last_seen=now,
            correlation_id=correlation_id,
            certificate_sha256=certificate_sha256,
            revocation_valid_until=revocation_valid_until,
            certificate_der=base64.b64encode(certificate_der).decode() if certificate_der else None,
            certificate_chain_der=tuple(base64.b64encode(der).decode() for der in certificate_chain_der),
            upstream=upstream,
        )
        return new_token(), session

    def save(self, token: str, session: SsoSession, participant: Participant | None = None) -> None:
        """Store a session from :meth:`open`, with its first participant (the SP being answered), in one round
        trip.

        A session from a municipal IdP is also indexed by (IdP, NameID), so the
        IdP's LogoutRequest finds it even when the browser does not send the
        cookie along (SAML Core §3.7.3.2: the participant ends the principal's
        sessions).
        """
        sid = _hash(token)
        ttl = self._ttl(session, self._clock.now())
        members = []
        if session.upstream is not None:
            members.append((self._principal_key(session.upstream["idp"], session.upstream["name_id"]), sid,
                            self.absolute_timeout.total_seconds()))
        if participant is not None:
            members.append(("session-sps:" + sid, participant.encode(), ttl))
        self._store.put("session:" + sid, session.to_json(), ttl, members=members)

    @staticmethod
    def ref(token: str) -> str:
        """The store's name for a session (the cookie's hash): what logout works with."""
        return _hash(token)

    @staticmethod
    def _principal_key(idp: str, name_id: str) -> str:
        return "upstream-principal:" + _hash(f"{idp}\x00{name_id}")

    def find(self, token: str | None) -> tuple[SsoSession | None, str | None]:
        """The live session for ``token``, or (None, why): ``expired_idle``, ``expired_absolute``, ``unknown``."""
        if not token or len(token) > 128:
            return None, None
        return self._find_ref(_hash(token))

    def _find_ref(self, sid: str) -> tuple[SsoSession | None, str | None]:
        raw = self._store.get("session:" + sid)
        if raw is None:
            return None, "unknown"
        session = SsoSession.from_json(raw)
        now = self._clock.now()
        if now >= session.expires_at:
            self.end_ref(sid)
            return None, "expired_absolute"
        if now - session.last_seen >= self.idle_timeout:
            self.end_ref(sid)
            return None, "expired_idle"
        return session, None

    def find_upstream(self, idp: str, name_id: str) -> list[tuple[str, SsoSession]]:
        """The live sessions (ref, session) that municipal IdP ``idp`` opened for ``name_id``."""
        found = []
        for sid in sorted(self._store.members(self._principal_key(idp, name_id))):
            session, _ = self._find_ref(sid)
            if session is not None and session.upstream is not None and session.upstream.get("idp") == idp \
                    and session.upstream.get("name_id") == name_id:
                found.append((sid, session))
        return found

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
        return self._store.put_if_present("session:" + sid, session.to_json(), ttl,
                                          members=[("session-sps:" + sid, participant.encode(), ttl)])

    def participants(self, token: str) -> list[Participant]:
        return self.participants_ref(_hash(token))

    def participants_ref(self, sid: str) -> list[Participant]:
        return sorted((Participant.decode(m) for m in self._store.members("session-sps:" + sid)),
                      key=lambda p: (p.sp_entity_id, p.name_id))

    def end(self, token: str) -> None:
        self.end_ref(_hash(token))

    def end_ref(self, sid: str, *, keep_participants: bool = False) -> None:
        """End a session; single logout keeps its participants to propagate to (:meth:`take_participants`)."""
        self._store.delete("session:" + sid)
        if not keep_participants:
            self._store.delete("session-sps:" + sid)

    def take_participants(self, sid: str) -> list[Participant]:
        participants = self.participants_ref(sid)
        self._store.delete("session-sps:" + sid)
        return participants

    def find_by_session_index(self, token: str | None, session_index: str) -> SsoSession | None:
        session, _ = self.find(token)
        if session is not None and hmac.compare_digest(session.session_index.encode(), session_index.encode()):
            return session
        return None

    # --- short-lived state: pending logins, logins at a municipal IdP, logouts in progress ---------

    def _put(self, kind: str, key: str, data: dict[str, Any], ttl: dt.timedelta) -> None:
        self._store.put(f"{kind}:{_hash(key)}", json.dumps(data, separators=(",", ":")).encode(),
                        max(ttl.total_seconds(), 1.0))

    def _get(self, kind: str, key: str | None, *, take: bool) -> dict[str, Any] | None:
        if not key or len(key) > 256:
            return None
        name = f"{kind}:{_hash(key)}"
        raw = self._store.take(name) if take else self._store.get(name)
        return None if raw is None else json.loads(raw)

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

    def first_use(self, idp: str, assertion_id: str, until: dt.datetime) -> bool:
        """True the first time an assertion is seen; it is remembered until it could no longer be used."""
        ttl = max((until - self._clock.now()).total_seconds(), 1.0)
        return self._store.put_if_absent("replay:" + _hash(f"{idp}\x00{assertion_id}"), b"1", ttl)

    def ping(self) -> None:
        self._store.ping()
