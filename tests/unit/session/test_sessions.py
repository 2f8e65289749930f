"""SSO sessions: opaque cookies, idle and absolute timeouts on the injected clock, one-time pending logins."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable

import pytest
import redis

from broker.clock import FixedClock
from broker.flow.logout import logged_out_upstream
from broker.model import Identity
from broker.session import store as store_module
from broker.session.sessions import Participant, SessionManager, SsoSession, UpstreamLogout
from broker.session.store import RedisStore

T0 = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
ANNA = Identity("hsa_id", "SE2120001009-anna", "kommun-a", "Anna", "Andersson", "Anna Andersson")
INDEX_KEY = b"a store index key of 32 bytes or more"


def index_digest(idp: str, name_id: str) -> str:
    """How the indexes by a municipal IdP's NameID are named in the store: an HMAC under the index key."""
    return hmac.new(INDEX_KEY, f"{idp}\x00{name_id}".encode(), hashlib.sha256).hexdigest()
SP = Participant("https://sp.example/md", "nameid", "persistent")
OTHER_SP = Participant("https://other-sp.example/md", "nameid-2", "persistent")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> RedisStore:
    return RedisStore(redis_url, prefix=redis_prefix)


@pytest.fixture
def manager(store: RedisStore, clock: FixedClock) -> SessionManager:
    return SessionManager(store, clock, idle_timeout=dt.timedelta(minutes=30),
                          absolute_timeout=dt.timedelta(hours=8), pending_timeout=dt.timedelta(minutes=10),
                          index_key=INDEX_KEY)


def _create(manager: SessionManager) -> tuple[str, SsoSession]:
    token, session = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", "CID", certificate_sha256="ab" * 32,
                                  revocation_valid_until=None)
    manager.save(token, session)
    return token, session


def test_cookie_is_random_and_the_store_holds_only_its_hash(manager: SessionManager, store: RedisStore) -> None:
    token_a, _ = _create(manager)
    token_b, _ = _create(manager)
    assert token_a != token_b
    assert len(token_a) >= 43  # 256 bits, base64url
    assert store.get("session:" + token_a) is None
    assert store.get("session:" + hashlib.sha256(token_a.encode()).hexdigest()) is not None


def test_session_round_trips(manager: SessionManager) -> None:
    token, created = _create(manager)
    found, why = manager.find(token)
    assert why is None
    assert found == created
    assert found is not None
    assert found.identity == ANNA


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        pytest.param(dt.timedelta(minutes=29, seconds=59), None, id="idle-1s-before"),
        pytest.param(dt.timedelta(minutes=30), "expired_idle", id="idle-at-timeout"),
    ],
)
def test_idle_timeout(manager: SessionManager, clock: FixedClock, elapsed: dt.timedelta,
                      expected: str | None) -> None:
    token, _ = _create(manager)
    clock.advance(elapsed)
    session, why = manager.find(token)
    assert why == expected
    assert (session is None) == (expected is not None)


def test_an_idle_session_answers_nobody_but_is_kept_for_logout(manager: SessionManager,
                                                                clock: FixedClock) -> None:
    token, created = _create(manager)
    index = manager.session_index(token, SP.sp_entity_id)
    assert manager.save_reused(token, created, Participant(SP.sp_entity_id, "nameid", "persistent", index,
                                                           clock.now()))
    clock.advance(dt.timedelta(minutes=31))
    assert manager.find(token) == (None, "expired_idle")
    assert manager.find(token) == (None, "expired_idle")  # not deleted on the way
    found, why = manager.find(token, idle_too=True)
    assert (found, why) == (created, "expired_idle")
    assert [ref for ref, _ in manager.find_by_session_index(SP.sp_entity_id, index)] == [manager.ref(token)]
    assert [p.sp_entity_id for p in manager.participants(token)] == [SP.sp_entity_id]
    clock.advance(dt.timedelta(hours=8))
    assert manager.find(token, idle_too=True) == (None, "expired_absolute")


def test_activity_slides_the_idle_timeout_but_not_the_absolute_one(manager: SessionManager,
                                                                   clock: FixedClock) -> None:
    token, _session = _create(manager)
    for _ in range(16):  # 16 x 29 min = 7 h 44 min of steady activity
        clock.advance(dt.timedelta(minutes=29))
        found, why = manager.find(token)
        assert why is None
        assert found is not None
        assert manager.save_reused(token, manager.touch(token, found), SP)
    clock.advance(dt.timedelta(minutes=16))  # 8 h after login
    found, why = manager.find(token)
    assert found is None
    assert why == "expired_absolute"


@pytest.mark.parametrize("login", [
    pytest.param({}, id="certificate-login"),
    pytest.param({"authn_instant": T0 - dt.timedelta(minutes=45)}, id="idp-sign-on-45min-before"),
])
def test_a_shortened_absolute_timeout_ends_sessions_opened_under_the_longer_one(
        manager: SessionManager, store: RedisStore, clock: FixedClock, login: dict[str, dt.datetime]) -> None:
    """session.absolute_timeout: the session ends that long after login "whatever the activity". After a reload
    that shortens it (and on every instance already running the new configuration), a session opened under the
    longer one answers by the new one, and the SPs answered from it are told that end (SessionNotOnOrAfter)."""
    token, session = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", "CID", certificate_sha256=None,
                                  revocation_valid_until=None, **login)
    index = manager.session_index(token, SP.sp_entity_id)
    manager.save(token, session, Participant(SP.sp_entity_id, "nameid", "persistent", index, clock.now()))
    reloaded = SessionManager(store, clock, idle_timeout=dt.timedelta(hours=1),
                              absolute_timeout=dt.timedelta(hours=1), pending_timeout=dt.timedelta(minutes=10),
                              index_key=INDEX_KEY)
    ends = session.authn_instant + dt.timedelta(hours=1)
    assert session.expires_at > ends  # opened under the longer one
    clock.advance(ends - clock.now() - dt.timedelta(seconds=1))
    found, why = reloaded.find(token)
    assert why is None
    assert found is not None
    assert reloaded.ends(found) == ends
    clock.advance(dt.timedelta(seconds=1))
    assert reloaded.find(token) == (None, "expired_absolute")
    # its SPs were told the end it was opened with: until then it is kept for single logout, as an idle one
    assert reloaded.find(token, idle_too=True) == (session, "expired_absolute")
    assert [ref for ref, _ in reloaded.find_by_session_index(SP.sp_entity_id, index)] == [reloaded.ref(token)]
    clock.advance(session.expires_at - clock.now())
    assert reloaded.find(token, idle_too=True) == (None, "expired_absolute")
    assert reloaded.find(token, idle_too=True) == (None, "unknown")


def test_end_removes_session_and_participants(manager: SessionManager) -> None:
    token, session = _create(manager)
    assert manager.save_reused(token, session, Participant("https://sp.example/md", "nameid", "persistent"))
    assert [p.sp_entity_id for p in manager.participants(token)] == ["https://sp.example/md"]
    manager.end(token)
    assert manager.find(token) == (None, "unknown")
    assert manager.participants(token) == []


def test_unknown_or_absurd_tokens_find_nothing(manager: SessionManager) -> None:
    assert manager.find(None) == (None, None)
    assert manager.find("x" * 500) == (None, None)
    assert manager.find("no-such-token") == (None, "unknown")


def test_pending_login_is_consumed_once(manager: SessionManager) -> None:
    login_id = manager.put_pending({"request": {"id": "_r1"}, "correlation_id": "C"})
    assert manager.take_pending(login_id) == {"request": {"id": "_r1"}, "correlation_id": "C"}
    assert manager.take_pending(login_id) is None


def test_forwarded_chain_is_kept_for_the_revocation_recheck(manager: SessionManager, store: RedisStore) -> None:
    chain = (b"\x30\x03\x02\x01\x01", b"\x30\x03\x02\x01\x02")
    token, created = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", "CID", certificate_sha256="ab" * 32,
                                  revocation_valid_until=None, certificate_der=b"\x30\x00",
                                  certificate_chain_der=chain)
    manager.save(token, created)
    found, _ = manager.find(token)
    assert found == created
    assert found is not None
    assert found.certificate_chain_der == ("MAMCAQE=", "MAMCAQI=")


def test_session_without_a_forwarded_chain_keeps_its_stored_form(manager: SessionManager, store: RedisStore) -> None:
    """No chain, no key: instances of the previous release read these sessions unchanged."""
    token, _ = _create(manager)
    raw = store.get("session:" + hashlib.sha256(token.encode()).hexdigest())
    assert raw is not None
    assert b"certificate_chain_der" not in raw


def test_an_opened_session_exists_only_once_saved(manager: SessionManager) -> None:
    token, session = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", "CID", certificate_sha256=None,
                                  revocation_valid_until=None)
    assert manager.find(token) == (None, "unknown")
    manager.save(token, session, Participant("https://sp.example/md", "nameid", "persistent"))
    assert manager.find(token) == (session, None)
    assert manager.participants(token) == [Participant("https://sp.example/md", "nameid", "persistent")]


def test_saving_with_the_first_participant_is_one_round_trip(manager: SessionManager, store: RedisStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The session, its participant list, the upstream principal index and the SP's SessionIndex go to Redis in
    one MULTI/EXEC."""
    upstream = {"idp": "https://idp.kommun-c.example/md", "name_id": "karin", "name_id_format": "",
                "name_qualifier": "", "sp_name_qualifier": "", "session_index": "_s1"}
    token, session = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", "CID", certificate_sha256=None,
                                  revocation_valid_until=None, upstream=upstream)
    store.ping()  # the connection is set up (CLIENT SETNAME, ...) before counting
    sent: list[bytes] = []
    send = redis.connection.Connection.send_packed_command

    def counting(self: redis.connection.Connection, command: object, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else command)  # type: ignore[arg-type]
        send(self, command, check_health)  # type: ignore[arg-type]
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    manager.save(token, session, Participant("https://sp.example/md", "nameid", "persistent"))
    monkeypatch.undo()
    assert len(sent) == 1
    commands = [line for line in sent[0].split(b"\r\n") if line.isalpha() and line.isupper()]
    assert commands == [b"MULTI", b"SET", b"PX", b"SADD", b"PEXPIRE", b"SADD", b"PEXPIRE", b"SADD", b"PEXPIRE",
                        b"EXEC"]
    assert [ref for ref, _ in manager.find_upstream(upstream["idp"], "karin")] == [manager.ref(token)]
    assert [p.sp_entity_id for p in manager.participants(token)] == ["https://sp.example/md"]


@pytest.mark.parametrize("ending", [pytest.param("logout", id="ended-by-logout"),
                                    pytest.param("absolute", id="past-its-absolute-end")])
def test_the_idps_lookup_of_a_principal_drops_the_sessions_that_are_gone(
        manager: SessionManager, store: RedisStore, clock: FixedClock, ending: str) -> None:
    """Every federated login adds its session to the (IdP, NameID) index, whose time to live each login renews:
    a user logging in again within session.absolute_timeout, day after day, kept every session she ever had in it,
    and each LogoutRequest of her IdP read them all, one lookup each. The lookup now drops those that are gone."""
    upstream = {"idp": "https://idp.kommun-c.example/md", "name_id": "karin", "session_index": "_s1"}
    key = "upstream-principal:" + index_digest(upstream["idp"], "karin")
    tokens = []
    for n in range(3):
        token, session = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", f"CID-{n}",
                                      certificate_sha256=None, revocation_valid_until=None, upstream=upstream)
        manager.save(token, session)
        tokens.append(token)
        clock.advance(dt.timedelta(hours=4))
    if ending == "logout":
        manager.end(tokens[0])
        manager.end(tokens[1])
    # else: the first two are past their absolute end (8 h) by now
    assert len(store.members(key)) == 3

    assert [ref for ref, _ in manager.find_upstream(upstream["idp"], "karin")] == [manager.ref(tokens[2])]
    assert store.members(key) == {manager.ref(tokens[2])}
    manager.end(tokens[2])
    assert manager.find_upstream(upstream["idp"], "karin") == []
    assert store.members(key) == set()


@pytest.mark.parametrize("chain", [pytest.param((), id="no-chain"), pytest.param(("MAMCAQE=",), id="with-chain")])
def test_stored_form_is_the_dataclass_as_json(chain: tuple[str, ...]) -> None:
    """The session is written field by field; byte for byte what the generic dataclass encoding gives, so
    instances of earlier releases read it unchanged."""
    session = SsoSession(ANNA, "loa3", T0, T0, T0, "CID", "ab" * 32, T0, "MAA=", chain,
                         {"idp": "https://idp.example/md", "name_id": "karin"})
    generic = dataclasses.asdict(session)
    for k in ("authn_instant", "expires_at", "last_seen", "revocation_valid_until"):
        generic[k] = generic[k].isoformat()
    if not chain:
        del generic["certificate_chain_der"]
    del generic["retired"]  # written only when set: a live session keeps the earlier releases' form
    del generic["trust"]  # the same
    assert session.to_json() == json.dumps(generic, separators=(",", ":")).encode()
    assert SsoSession.from_json(session.to_json()) == session


def test_a_certificate_session_keeps_its_trust_digest_in_its_stored_form() -> None:
    session = dataclasses.replace(SsoSession(ANNA, "loa3", T0, T0, T0, "CID"), trust="cd" * 32)
    assert json.loads(session.to_json())["trust"] == "cd" * 32
    assert SsoSession.from_json(session.to_json()) == session


def test_a_retired_session_keeps_why_in_its_stored_form() -> None:
    session = dataclasses.replace(SsoSession(ANNA, "loa3", T0, T0, T0, "CID"), retired="revoked")
    assert json.loads(session.to_json())["retired"] == "revoked"
    assert SsoSession.from_json(session.to_json()) == session


# --- a session reused while a logout ends it (OWASP Session Management: logout ends the session; SAML Profiles
# §4.4). An SSO request finds the session, then stores it again (activity, the SP it answers): a logout that
# completes in between must stay complete, whichever way it ended the session. ---


def _slo(manager: SessionManager, token: str) -> list[Participant]:
    """Single logout as broker.flow.logout does it: note what it ends, end the session, then read its participants
    to propagate to, and drop them once the logout's state is stored."""
    sid = manager.ref(token)
    session, _ = manager.find(token, idle_too=True)
    assert session is not None
    manager.note_ending("sp\x00https://sp.example\x00_logout", [(sid, session)])
    manager.end_ref(sid, keep_participants=True)
    participants = manager.participants_ref(sid)
    manager.ended("sp\x00https://sp.example\x00_logout", [sid])
    return participants


@pytest.mark.parametrize(
    "log_out",
    [
        pytest.param(_slo, id="single-logout"),
        pytest.param(lambda manager, token: manager.end(token), id="session-ended"),
    ],
)
def test_a_request_that_found_the_session_before_a_logout_does_not_bring_it_back(
        manager: SessionManager, store: RedisStore, clock: FixedClock,
        log_out: Callable[[SessionManager, str], object]) -> None:
    token, session = _create(manager)
    assert manager.save_reused(token, session, SP)
    sid = manager.ref(token)

    clock.advance(dt.timedelta(minutes=1))
    found, _ = manager.find(token)                      # the SSO request reads the session ...
    assert found is not None
    log_out(manager, token)                             # ... a logout completes meanwhile ...
    touched = manager.touch(token, found)               # ... and the request goes on with what it read
    assert manager.save_reused(token, touched, OTHER_SP) is False

    assert manager.find(token) == (None, "unknown")
    assert manager.participants(token) == []
    assert store.get("session:" + sid) is None
    assert store.members("session-sps:" + sid) == set()


def test_single_logout_after_the_reuse_was_stored_propagates_to_its_sp(manager: SessionManager,
                                                                      clock: FixedClock) -> None:
    """The other order: the reused session was stored with its new SP before the logout ended it; the logout
    then finds that SP among the participants to send a LogoutRequest to."""
    token, session = _create(manager)
    assert manager.save_reused(token, session, SP)
    clock.advance(dt.timedelta(minutes=1))
    found, _ = manager.find(token)
    assert found is not None
    assert manager.save_reused(token, manager.touch(token, found), OTHER_SP)
    assert _slo(manager, token) == [OTHER_SP, SP]
    assert manager.find(token) == (None, "unknown")


def test_touch_only_computes_the_activity(manager: SessionManager, clock: FixedClock) -> None:
    """Nothing is written until the reuse is stored with its SP (one round trip, only if the session exists)."""
    token, session = _create(manager)
    clock.advance(dt.timedelta(minutes=5))
    touched = manager.touch(token, session)
    assert touched == dataclasses.replace(session, last_seen=T0 + dt.timedelta(minutes=5))
    assert manager.find(token) == (session, None)
    assert manager.save_reused(token, touched, SP)
    assert manager.find(token) == (touched, None)


@pytest.mark.parametrize(
    ("elapsed", "expected_ttl"),
    [
        pytest.param(dt.timedelta(minutes=5), dt.timedelta(hours=7, minutes=55), id="until-the-absolute-end"),
        pytest.param(dt.timedelta(hours=7, minutes=50), dt.timedelta(minutes=10), id="absolute-timeout-near"),
    ],
)
def test_a_stored_reuse_keeps_the_time_to_live_of_session_and_participants(
        manager: SessionManager, store: RedisStore, clock: FixedClock, elapsed: dt.timedelta,
        expected_ttl: dt.timedelta) -> None:
    """The session and its participant list live until the session's absolute end (the SessionNotOnOrAfter its
    SPs were given): an idle session answers no SP, but single logout must still reach its SPs (the store's TTL
    only garbage-collects)."""
    token, session = _create(manager)
    clock.advance(elapsed)
    assert manager.save_reused(token, manager.touch(token, session), SP)
    sid = manager.ref(token)
    for key in ("session:" + sid, "session-sps:" + sid):
        pttl = store.client.pttl(store._k(key))
        assert isinstance(pttl, int)
        assert expected_ttl.total_seconds() * 1000 - 2000 < pttl <= expected_ttl.total_seconds() * 1000, key


def _commands_sent(monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]) -> list[list[bytes]]:
    """The command names of each packet redis-py sends during ``call`` (one packet: one round trip)."""
    sent: list[bytes] = []
    send = redis.connection.Connection.send_packed_command

    def counting(self: redis.connection.Connection, command: object, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else command)  # type: ignore[arg-type]
        send(self, command, check_health)  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        patch.setattr(redis.connection.Connection, "send_packed_command", counting)
        call()
    return [[line for line in packet.split(b"\r\n") if line.isalpha() and line.isupper()] for packet in sent]


def test_storing_a_reuse_is_one_round_trip(manager: SessionManager, store: RedisStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The conditional write of the session and the addition of its SP are one EVALSHA (before the fix: a SET
    and a MULTI/EXEC, two round trips, neither conditional)."""
    token, session = _create(manager)
    assert manager.save_reused(token, session, SP)  # the server has the script cached from here on
    sent = _commands_sent(monkeypatch, lambda: manager.save_reused(token, manager.touch(token, session), OTHER_SP))
    assert sent == [[b"EVALSHA"]]
    assert manager.participants(token) == [OTHER_SP, SP]


def test_a_server_without_the_script_cached_runs_it_with_eval(manager: SessionManager, store: RedisStore,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """NOSCRIPT (a restarted server, a promoted replica) ran nothing: the script is sent once with EVAL, which
    also caches it. Simulated with an unknown script name rather than SCRIPT FLUSH on a shared server."""
    token, session = _create(manager)
    store.ping()
    monkeypatch.setattr(store_module, "_PUT_IF_PRESENT_SHA1", "0" * 40)
    sent = _commands_sent(monkeypatch, lambda: manager.save_reused(token, session, SP))
    assert sent == [[b"EVALSHA"], [b"EVAL"]]
    assert manager.participants(token) == [SP]
    manager.end(token)
    assert manager.save_reused(token, session, SP) is False
    assert manager.participants(token) == []


def test_a_used_assertion_is_remembered_past_its_end_for_instances_whose_clocks_lag(
        manager: SessionManager, store: RedisStore, clock: FixedClock) -> None:
    """The replay cache's entry must outlive the assertion on every instance: one whose clock is behind still
    accepts the assertion for that long after this instance thinks it expired."""
    until = clock.now() + dt.timedelta(minutes=5)
    assert manager.first_use("https://idp.example", "_a1", until)
    assert not manager.first_use("https://idp.example", "_a1", until)
    key = next(k for k in store.client.scan_iter(store._k("replay:*")))
    pttl = store.client.pttl(key)
    assert isinstance(pttl, int)
    assert pttl > dt.timedelta(minutes=9).total_seconds() * 1000  # 5 min to go, plus the margin


# --- an IdP's logout, remembered for the assertions that arrive after it (SAML Core §3.7.3.2) --------------------

IDP = "https://idp.kommun-c.example/idp"


def _logout(request_id: str, until: dt.datetime, indexes: tuple[str, ...] = ("_s1",)) -> UpstreamLogout:
    return UpstreamLogout(request_id=request_id, name_id_format=None, name_qualifier=None, sp_name_qualifier=None,
                          session_indexes=indexes, issued=T0, until=until)


def test_an_idp_logout_applies_until_its_end_and_then_is_forgotten(manager: SessionManager,
                                                                   clock: FixedClock) -> None:
    manager.record_upstream_logout(IDP, "karin", _logout("_lo1", T0 + dt.timedelta(minutes=15)))

    assert [e.request_id for e in manager.upstream_logouts(IDP, "karin")] == ["_lo1"]
    assert manager.upstream_logouts(IDP, "someone-else") == []
    assert manager.upstream_logouts("https://other-idp.example", "karin") == []
    clock.advance(dt.timedelta(minutes=15))
    assert manager.upstream_logouts(IDP, "karin") == []


def test_a_short_lived_idp_logout_does_not_cut_an_earlier_one_short(manager: SessionManager, store: RedisStore,
                                                                    clock: FixedClock) -> None:
    """The principal's set lives as long as its longest-lived member."""
    manager.record_upstream_logout(IDP, "karin", _logout("_long", T0 + dt.timedelta(minutes=15)))
    manager.record_upstream_logout(IDP, "karin", _logout("_short", T0 + dt.timedelta(seconds=30)))

    key = "upstream-logout:" + index_digest(IDP, "karin")
    assert store.client.pttl(store._k(key)) > 15 * 60 * 1000
    clock.advance(dt.timedelta(minutes=1))
    assert [e.request_id for e in manager.upstream_logouts(IDP, "karin")] == ["_long"]


def test_logouts_that_no_longer_apply_are_dropped_when_another_is_remembered(manager: SessionManager,
                                                                             store: RedisStore,
                                                                             clock: FixedClock) -> None:
    """A principal logged out every ten minutes for a day (a shared account) keeps a set of the few that apply,
    not of all 144 (each renews the set's life)."""
    for i in range(144):
        manager.record_upstream_logout(IDP, "kiosk", _logout(f"_lo{i}", clock.now() + dt.timedelta(minutes=15)))
        clock.advance(dt.timedelta(minutes=10))

    key = "upstream-logout:" + index_digest(IDP, "kiosk")
    assert [e.request_id for e in manager.upstream_logouts(IDP, "kiosk")] == ["_lo143"]
    assert len(store.members(key)) == 2  # the last two recorded: the one before expired only after the last record


PNR = "191212121212"  # a municipal IdP whose NameID is the personnummer


def test_no_store_key_names_a_municipal_idps_nameid_in_clear_or_by_a_plain_hash(
        manager: SessionManager, store: RedisStore, clock: FixedClock) -> None:
    """REFERENCE.md, Logging law and privacy: a session may hold a personnummer, a key may not. A key listing (or a
    copy of the store) named each federated user by SHA-256(IdP, NameID), which anyone finds again by hashing every
    personnummer; the indexes are named by an HMAC under the index key, which another key does not find."""
    upstream = {"idp": IDP, "name_id": PNR, "session_index": "_s1"}
    token, session = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", "CID", certificate_sha256=None,
                                  revocation_valid_until=None, upstream=upstream)
    manager.save(token, session)
    manager.record_upstream_logout(IDP, PNR, _logout("_lo1", T0 + dt.timedelta(minutes=15), indexes=("_s0",)))

    keys = [key.decode() for key in store.client.scan_iter(match=store._k("*"))]
    plain = hashlib.sha256(f"{IDP}\x00{PNR}".encode()).hexdigest()
    assert [key for key in keys if PNR in key or plain in key] == []
    assert store._k("upstream-principal:" + index_digest(IDP, PNR)) in keys
    assert store._k("upstream-logout:" + index_digest(IDP, PNR)) in keys
    assert [ref for ref, _ in manager.find_upstream(IDP, PNR)] == [manager.ref(token)]
    assert [e.request_id for e in manager.upstream_logouts(IDP, PNR)] == ["_lo1"]
    other = SessionManager(store, clock, idle_timeout=manager.idle_timeout, absolute_timeout=manager.absolute_timeout,
                           pending_timeout=manager.pending_timeout, index_key=b"another index key of 32 bytes ...")
    assert (other.find_upstream(IDP, PNR), other.upstream_logouts(IDP, PNR)) == ([], [])


def test_what_the_previous_release_indexed_by_a_plain_hash_is_still_found(manager: SessionManager,
                                                                           store: RedisStore) -> None:
    """A rolling update: an instance of the previous release indexed its sessions, and remembered an IdP's logouts,
    under SHA-256(IdP, NameID); this release's IdP logout still finds them (they live no longer than a session)."""
    upstream = {"idp": IDP, "name_id": "karin", "session_index": "_s1"}
    token, session = manager.open(ANNA, "http://id.elegnamnden.se/loa/1.0/loa3", "CID", certificate_sha256=None,
                                  revocation_valid_until=None, upstream=upstream)
    manager.save(token, session)
    plain = hashlib.sha256(f"{IDP}\x00karin".encode()).hexdigest()
    store.update_set("upstream-principal:" + index_digest(IDP, "karin"), None, 0.0, remove=[manager.ref(token)])
    store.update_set("upstream-principal:" + plain, manager.ref(token), 600)
    store.update_set("upstream-logout:" + plain, _logout("_old", T0 + dt.timedelta(minutes=15)).encode(), 600)

    assert [ref for ref, _ in manager.find_upstream(IDP, "karin")] == [manager.ref(token)]
    assert [e.request_id for e in manager.upstream_logouts(IDP, "karin")] == ["_old"]
    manager.record_upstream_logout(IDP, "karin", _logout("_new", T0 + dt.timedelta(minutes=15)))
    assert sorted(e.request_id for e in manager.upstream_logouts(IDP, "karin")) == ["_new", "_old"]


def test_a_damaged_member_is_passed_over_and_dropped(manager: SessionManager, store: RedisStore) -> None:
    key = "upstream-logout:" + index_digest(IDP, "karin")
    store.update_set(key, "not json", 600)

    assert manager.upstream_logouts(IDP, "karin") == []
    manager.record_upstream_logout(IDP, "karin", _logout("_lo1", T0 + dt.timedelta(minutes=15)))
    assert "not json" not in store.members(key)


@pytest.mark.parametrize(("logout", "assertion", "applies"), [
    ({"session_indexes": ("_s1",)}, {"session_index": "_s1"}, True),
    ({"session_indexes": ("_s1", "_s2")}, {"session_index": "_s2"}, True),
    ({"session_indexes": ("_s1",)}, {"session_index": "_s9"}, False),
    ({"session_indexes": ("_s1",)}, {"session_index": ""}, False),
    ({"session_indexes": ()}, {"authn_instant": T0 - dt.timedelta(seconds=5)}, True),
    ({"session_indexes": ()}, {"authn_instant": T0}, False),  # a tie: whole seconds, the new login after it
    ({"session_indexes": (), "issued": T0 + dt.timedelta(milliseconds=400)}, {"authn_instant": T0}, False),
    ({"session_indexes": (), "issued": T0 + dt.timedelta(seconds=1)}, {"authn_instant": T0}, True),
    ({"session_indexes": ()}, {"authn_instant": T0 + dt.timedelta(seconds=1)}, False),
    ({"name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"}, {}, False),
    ({"name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"}, {}, True),
    ({"sp_name_qualifier": "https://another-sp.example"}, {}, False),
    ({"name_qualifier": IDP}, {}, True),
], ids=["its-session-index", "one-of-its-session-indexes", "another-session-index", "assertion-without-index",
        "no-index-authenticated-before", "no-index-same-second",
        "no-index-same-second-logout-with-milliseconds", "no-index-a-second-before", "no-index-authenticated-after",
        "another-format", "unspecified-format", "another-sp-name-qualifier", "the-idp-as-name-qualifier"])
def test_which_late_assertions_an_idp_logout_applies_to(logout: dict[str, object], assertion: dict[str, object],
                                                        applies: bool) -> None:
    recorded = dataclasses.replace(_logout("_lo", T0 + dt.timedelta(minutes=5)), **logout)  # type: ignore[arg-type]
    upstream = {"idp": IDP, "name_id": "karin", "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:"
                "persistent", "name_qualifier": "", "sp_name_qualifier": "https://broker.example/sp",
                "session_index": str(assertion.get("session_index", "_s1"))}
    instant = assertion.get("authn_instant", T0 - dt.timedelta(minutes=1))
    assert isinstance(instant, dt.datetime)

    found = logged_out_upstream([recorded], upstream, instant, "https://broker.example/sp")

    assert (found is recorded) == applies


def test_a_request_that_found_the_session_before_it_was_retired_does_not_revive_it(
        manager: SessionManager) -> None:
    """Retired (its card found revoked) while another request was answering from it: that request's write must
    not put the live form back, as it must not bring back a session a logout deleted."""
    token, session = _create(manager)
    found, _ = manager.find(token)
    assert found is not None
    manager.retire(token, session, "revoked")
    assert not manager.save_reused(token, found, SP)
    assert manager.find(token, idle_too=True)[1] == "retired"
    assert manager.find(token) == (None, "retired")


def test_reinstate_puts_back_only_what_its_own_replace_removed(manager: SessionManager) -> None:
    """A login refused after its session was stored puts the browser's replaced session back, retired; but one a
    logout ended before the replace stays ended (it came back, retired, with its IdP principal index)."""
    token, session = _create(manager)
    replaced = manager.replace(token, session, session.identity)
    manager.reinstate(token, replaced, "upstream_logged_out")
    assert manager.find(token, idle_too=True)[1] == "retired"

    token, session = _create(manager)
    manager.end_ref(manager.ref(token), keep_participants=True)  # a logout, on another instance
    replaced = manager.replace(token, session, session.identity)
    assert replaced.stored is None
    manager.reinstate(token, replaced, "upstream_logged_out")
    assert manager.find(token, idle_too=True) == (None, "unknown")
