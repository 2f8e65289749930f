"""A session's participants (SAML Profiles §4.4): each SP's own SessionIndex (Core §2.7.2), one record per SP (the
newest), records of the previous release, and the participants a replaced session hands on to its successor in
the same write as the new session."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import redis

from broker.clock import FixedClock
from broker.model import Identity
from broker.session.sessions import Participant, SessionManager, SsoSession
from broker.session.store import RedisStore

T0 = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
ANNA = Identity("hsa_id", "SE2120001009-anna", "kommun-a", "Anna", "Andersson", "Anna Andersson")
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
SP = "https://sp.example/md"
OTHER_SP = "https://other-sp.example/md"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


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
                          index_key=b"a store index key of 32 bytes or more")


def answered(manager: SessionManager, clock: FixedClock, token: str, sp: str, name_id: str,
             fmt: str = PERSISTENT) -> Participant:
    """The participant record :meth:`Answers.issue` makes for ``sp``."""
    return Participant(sp, name_id, fmt, manager.session_index(token, sp), clock.now())


def logged_in(manager: SessionManager, clock: FixedClock, *sps: str) -> tuple[str, SsoSession]:
    """A session opened at the first SP and reused at the others, one second apart."""
    token, session = manager.open(ANNA, LOA3, "CID", certificate_sha256=None, revocation_valid_until=None)
    manager.save(token, session, answered(manager, clock, token, sps[0], f"n-{sps[0]}"))
    for sp in sps[1:]:
        clock.advance(dt.timedelta(seconds=1))
        assert manager.save_reused(token, manager.touch(token, session), answered(manager, clock, token, sp, f"n-{sp}"))
    return token, session


# --- each SP its own SessionIndex ----------------------------------------------------------------------------------


def test_each_sp_of_a_session_gets_its_own_session_index() -> None:
    token, other_token = "cookie-value-" + "a" * 30, "cookie-value-" + "b" * 30
    index = SessionManager.session_index(token, SP)
    assert re.fullmatch(r"_[0-9a-f]{32}", index)  # an xs:string starting like an xs:ID; 128 bits
    assert SessionManager.session_index(token, OTHER_SP) != index  # nothing to correlate the SPs' users by
    assert SessionManager.session_index(token, SP) == index        # the same SP, the same session: the same one
    assert SessionManager.session_index(other_token, SP) != index  # a new login, a new one


# --- the stored records ----------------------------------------------------------------------------------------------


def test_a_participant_round_trips_with_its_session_index_and_time() -> None:
    p = Participant(SP, "n", PERSISTENT, "_0123", T0)
    assert Participant.decode(p.encode()) == p


@pytest.mark.parametrize(("stored", "expected"), [
    pytest.param(f'["{SP}","n","{PERSISTENT}"]', Participant(SP, "n", PERSISTENT), id="previous-release"),
    pytest.param(f'["{SP}","n","{PERSISTENT}","_1","{T0.isoformat()}","a later field"]',
                 Participant(SP, "n", PERSISTENT, "_1", T0), id="later-release"),
])
def test_records_of_other_releases_are_read(stored: str, expected: Participant) -> None:
    assert Participant.decode(stored) == expected


def test_a_record_without_its_own_session_index_has_the_sessions() -> None:
    """The previous release gave every SP the session-wide SessionIndex and stored none with the participant."""
    session = SsoSession(ANNA, LOA3, T0, T0, T0, "CID", session_index="_session-wide")
    assert Participant(SP, "n", PERSISTENT).index_in(session) == "_session-wide"
    assert Participant(SP, "n", PERSISTENT, "_own").index_in(session) == "_own"


# --- one record per SP: the newest -----------------------------------------------------------------------------------


def test_an_sp_answered_again_keeps_one_record_the_newest(manager: SessionManager, clock: FixedClock) -> None:
    """Another login of the SP (a transient NameID, say): the SP holds the newest; logout names that one."""
    token, session = logged_in(manager, clock, SP, OTHER_SP)
    other = manager.participant_ref(manager.ref(token), OTHER_SP)
    clock.advance(dt.timedelta(seconds=1))
    again = answered(manager, clock, token, SP, "n-again", TRANSIENT)
    assert manager.save_reused(token, manager.touch(token, session), again)
    assert manager.participants(token) == [other, again]  # by SP entity ID
    assert manager.participant_ref(manager.ref(token), SP) == again


def test_an_sp_answered_forty_times_has_one_record_in_the_store(manager: SessionManager, store: RedisStore,
                                                                 clock: FixedClock) -> None:
    """Every answer from the session supersedes the SP's record before it, in the store too: the session's set
    does not grow with each SSO (a logged-in user could otherwise grow one Redis key for the session's lifetime,
    and every logout reads all of it). A record of an earlier release (no SessionIndex) goes as well."""
    token, session = logged_in(manager, clock, SP, OTHER_SP)
    sid = manager.ref(token)
    _add_record(store, sid, f'["{SP}","old","{PERSISTENT}"]')
    for i in range(40):
        clock.advance(dt.timedelta(seconds=1))
        assert manager.save_reused(token, manager.touch(token, session),
                                   answered(manager, clock, token, SP, f"n-{i}", TRANSIENT))
    records = store.members("session-sps:" + sid)
    assert len(records) == 2
    assert [p.name_id for p in manager.participants(token)] == ["n-" + OTHER_SP, "n-39"]


def _add_record(store: RedisStore, sid: str, record: str) -> None:
    """A participant record added to the session's set as it is (the store adds set members with a value)."""
    store.put("test:holder", b"", 600, members=[("session-sps:" + sid, record, 600)])


def test_a_record_of_the_previous_release_is_older_than_any_new_one(manager: SessionManager, store: RedisStore,
                                                                    clock: FixedClock) -> None:
    token, _ = logged_in(manager, clock, SP)
    _add_record(store, manager.ref(token), f'["{SP}","old","{PERSISTENT}"]')
    assert [p.name_id for p in manager.participants(token)] == ["n-" + SP]


def test_records_of_the_same_instant_are_decided_alike_everywhere(manager: SessionManager, store: RedisStore,
                                                                  clock: FixedClock) -> None:
    token, _ = logged_in(manager, clock, SP)
    sid = manager.ref(token)
    first = manager.participant_ref(sid, SP)
    assert first is not None
    twin = answered(manager, clock, token, SP, "z-twin")  # the same clock reading as the first record
    _add_record(store, sid, twin.encode())
    assert manager.participants(token) == [max(first, twin, key=lambda p: p.encode())]


# --- a replaced session hands its participants on --------------------------------------------------------------------


def _count_commands(monkeypatch: pytest.MonkeyPatch) -> list[list[bytes]]:
    """The commands of each round trip to Redis from now on (one list per packet sent)."""
    sent: list[list[bytes]] = []
    send = redis.connection.Connection.send_packed_command

    def counting(self: redis.connection.Connection, command: object, check_health: bool = True) -> None:
        packet = b"".join(command) if isinstance(command, list) else command  # type: ignore[arg-type]
        sent.append([line for line in packet.split(b"\r\n") if line.isalpha() and line.isupper()])  # type: ignore[union-attr]
        send(self, command, check_health)  # type: ignore[arg-type]
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    return sent


def test_a_replaced_sessions_participants_are_stored_with_the_new_session_in_three_round_trips(
        manager: SessionManager, store: RedisStore, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacing cost DEL, DEL, MULTI/EXEC before (ending the session and its participants, then storing the new
    one with its SP); now GETDEL (what it removed, for SessionManager.reinstate), SMEMBERS, MULTI/EXEC: the
    participants go into the new session's transaction."""
    old_token, old = logged_in(manager, clock, SP, OTHER_SP)
    kept = manager.participant_ref(manager.ref(old_token), OTHER_SP)
    clock.advance(dt.timedelta(minutes=1))
    token, session = manager.open(ANNA, LOA3, "CID-2", certificate_sha256=None, revocation_valid_until=None)
    newest = answered(manager, clock, token, SP, "n-force-authn")
    store.ping()

    sent = _count_commands(monkeypatch)
    replaced = manager.replace(old_token, old, old.identity)
    manager.save(token, session, newest, carried=replaced.participants)
    monkeypatch.undo()

    # each participant with the SessionIndex that names the session (SADD, PEXPIRE each)
    assert sent == [[b"GETDEL"], [b"SMEMBERS"],
                    [b"MULTI", b"SET", b"PX", *[b"SADD", b"PEXPIRE"] * 4, b"EXEC"]]
    assert manager.find(old_token) == (None, "unknown")
    # SP's record from the old session gave way to its newer one; OTHER_SP keeps what it was given there
    assert manager.participants(token) == [kept, newest]
    assert replaced.correlation_id == "CID"


def test_a_replaced_federated_session_hands_on_its_idp_session(manager: SessionManager, clock: FixedClock) -> None:
    upstream = {"idp": "https://idp.kommun-c.example/md", "name_id": "karin", "session_index": "_s1"}
    token, session = manager.open(ANNA, LOA3, "CID", certificate_sha256=None, revocation_valid_until=None,
                                  upstream=upstream)
    manager.save(token, session, answered(manager, clock, token, SP, "n"))
    assert manager.replace(token, session, session.identity).upstream == upstream


BO = Identity("hsa_id", "SE2120001009-bo", "kommun-a", "Bo", "Berg", "Bo Berg")


@pytest.mark.parametrize("other", [pytest.param(BO, id="another-user"),
                                   pytest.param(Identity("hsa_id", ANNA.key, "kommun-b"), id="another-municipality")])
def test_another_users_login_keeps_the_replaced_session_apart_for_her_single_logout(
        manager: SessionManager, clock: FixedClock, other: Identity) -> None:
    """A shared PC: the new login proves another identity. Nothing of Anna's session goes over to the new one (her
    logout would end his); it stays, retired, under its own name, where her SPs' SessionIndexes and her IdP's
    NameID still find it, with its participants."""
    upstream = {"idp": "https://idp.kommun-c.example/md", "name_id": "anna", "session_index": "_s1"}
    old_token, old = manager.open(ANNA, LOA3, "CID", certificate_sha256=None, revocation_valid_until=None,
                                  upstream=upstream)
    manager.save(old_token, old, answered(manager, clock, old_token, SP, "n"))
    participants = manager.participants(old_token)

    replaced = manager.replace(old_token, old, other)

    assert (replaced.participants, replaced.upstream, replaced.stored) == ((), None, None)
    assert (replaced.other_user, replaced.other_services, replaced.correlation_id) == (ANNA, (SP,), "CID")
    assert manager.find(old_token) == (None, "retired")
    sid = manager.ref(old_token)
    assert [ref for ref, _ in manager.find_by_session_index(SP, manager.session_index(old_token, SP))] == [sid]
    assert [ref for ref, _ in manager.find_upstream(upstream["idp"], "anna")] == [sid]
    assert manager.participants_ref(sid) == participants


# --- each SessionIndex names its session (an SP's LogoutRequest without the cookie) ---------------------------------


def test_each_sps_session_index_finds_the_session_until_it_ends(manager: SessionManager, clock: FixedClock) -> None:
    token, _ = logged_in(manager, clock, SP, OTHER_SP)  # the second SP through save_reused
    sid = manager.ref(token)
    for sp in (SP, OTHER_SP):
        assert [ref for ref, _ in manager.find_by_session_index(sp, manager.session_index(token, sp))] == [sid]
    # one SP's SessionIndex names nothing at another SP
    assert manager.find_by_session_index(OTHER_SP, manager.session_index(token, SP)) == []
    manager.end(token)
    assert manager.find_by_session_index(SP, manager.session_index(token, SP)) == []


def test_a_carried_participants_session_index_finds_the_session_that_replaced(
        manager: SessionManager, clock: FixedClock) -> None:
    old_token, old = logged_in(manager, clock, SP, OTHER_SP)
    token, session = manager.open(ANNA, LOA3, "CID-2", certificate_sha256=None, revocation_valid_until=None)
    manager.save(token, session, answered(manager, clock, token, SP, "n-again"),
                 carried=manager.replace(old_token, old, old.identity).participants)
    # OTHER_SP still holds the SessionIndex of the old session: it names the new one now
    found = manager.find_by_session_index(OTHER_SP, manager.session_index(old_token, OTHER_SP))
    assert [ref for ref, _ in found] == [manager.ref(token)]
