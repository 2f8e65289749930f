"""The Redis store under Sentinel: it follows a failover by itself, a demoted primary's READONLY answer sends it
back to the sentinels, and while no primary is reachable every call fails fast with SessionStoreUnavailable.

Real processes on loopback (tests/factories/redis_sentinel.py): a primary, one replica and three sentinels
(quorum 2, down-after-milliseconds 1000, failover-timeout 2000), also with TLS on every connection."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.config.redis_schema import HostPort, RedisConfig, RedisTlsConfig, SentinelConfig
from broker.config.values import SecretFile
from broker.errors import SessionStoreUnavailable
from broker.session.redis_client import CLIENT_NAME, from_config, single_server
from broker.session.store import RedisStore
from tests.factories.ports import free_port
from tests.factories.redis_sentinel import (
    RedisTls,
    SentinelGroup,
    read_through_failover,
    sentinel_config,
    tls_config,
)

FAILOVER_BOUND = 15.0  # seconds from a killed primary to a store that works again (measured: about 3 s)
CALL_BOUND = 1.5  # seconds one store call may take while no primary is reachable (loopback: refused at once)
HANDSHAKE_TIMEOUT = 8.0  # seconds a TLS test lets each connection wait: a refused handshake takes a fraction of it
CHECK_BOUND = 1.5  # seconds from a manual failover until the store writes to the new primary (checks each 1 s)


def store_on(group: SentinelGroup) -> RedisStore:
    return RedisStore(connector=from_config(sentinel_config(group)), prefix=f"test:{secrets.token_hex(4)}:")


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path / "redis") as started:
        yield started


@pytest.fixture(scope="module")
def failed_over(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SentinelGroup, int]]:
    """A group after a manual failover, and the port of its former primary (alive, now a replica)."""
    with SentinelGroup(tmp_path_factory.mktemp("failed-over")) as started:
        old = started.primary()
        started.failover()
        started.demote(old)
        yield started, old.port


def test_the_store_follows_a_manual_failover_within_a_second(group: SentinelGroup) -> None:
    """The old primary stays up and keeps taking writes until the sentinels demote it (about 10 s): the store's
    own check of the primary's address (each second) moves it to the new one well before that."""
    store = store_on(group)
    store.put("before", b"1", 60)
    old = group.primary()
    group.replicated()

    new = group.failover()
    switched = time.monotonic()
    landed: list[tuple[float, str]] = []
    while time.monotonic() - switched < 2.5:
        key = f"after-{len(landed)}"
        store.put(key, b"2", 60)
        where = "new" if group.data_client(new.port).get(store._k(key)) == b"2" else "old"
        landed.append((time.monotonic() - switched, where))
        time.sleep(0.05)

    first_on_new = next(t for t, where in landed if where == "new")
    assert first_on_new < CHECK_BOUND
    assert all(where == "new" for t, where in landed if t > first_on_new)
    assert group.data_client(old.port).execute_command("ROLE")[0] == b"master"  # not demoted yet: split brain
    assert store.get("before") == b"1"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda store: store.put("k", b"new", 60), id="put"),
        pytest.param(lambda store: store.take("k"), id="take-is-sent-again-after-readonly"),
        pytest.param(lambda store: store.put_if_absent("fresh", b"x", 60), id="put-if-absent"),
        pytest.param(lambda store: store.put("k", b"new", 60, members=[("set", "m", 60)]),
                     id="put-with-members-transaction"),
        pytest.param(lambda store: store.put_if_present("k", b"new", 60, members=[("set", "m", 60)]),
                     id="put-if-present-script"),
    ],
)
def test_a_readonly_answer_from_a_demoted_primary_sends_the_store_back_to_the_sentinels(
        failed_over: tuple[SentinelGroup, int], monkeypatch: pytest.MonkeyPatch,
        call: Callable[[RedisStore], Any]) -> None:
    group, old_port = failed_over
    # only redis-py's own discovery here (when it connects), not the store's periodic check
    store = RedisStore(connector=from_config(sentinel_config(group), primary_check_seconds=3600),
                       prefix=f"test:{secrets.token_hex(4)}:")
    group.data_client(group.primary().port).set(store._k("k"), b"old")
    manager = store.client.connection_pool.sentinel_manager  # type: ignore[union-attr]
    real = manager.discover_master
    answers: list[tuple[str, int]] = []

    def lagging_sentinel(service: str) -> tuple[str, int]:
        # the first answer is the one a sentinel that has not yet heard of the failover would give
        answer = ("127.0.0.1", old_port) if not answers else real(service)
        answers.append(answer)
        return answer

    monkeypatch.setattr(manager, "discover_master", lagging_sentinel)

    call(store)

    new_port = group.primary().port
    assert answers == [("127.0.0.1", old_port), ("127.0.0.1", new_port)]
    old_node = group.data_client(old_port)
    assert old_node.execute_command("ROLE")[0] == b"slave"  # the write went to the new primary, not here
    clients = old_node.client_list()
    assert not [c for c in clients if c["name"] == CLIENT_NAME], "a connection to the old primary stayed open"


def test_while_no_primary_is_reachable_calls_fail_fast_then_recover(group: SentinelGroup) -> None:
    store = store_on(group)
    store.put("session", b"before", 600)
    group.replicated()  # WAIT: the replica holds it
    old = group.kill_primary()
    killed = time.monotonic()
    seen = read_through_failover(store, "session", killed, FAILOVER_BOUND)
    value, failures, recovered = seen.value, seen.failures, seen.recovered
    assert value == b"before"
    assert failures, "the store never noticed the killed primary"
    assert max(failures) < CALL_BOUND
    assert group.primary().port != old.port
    print(f"\nkilled primary: {len(failures)} failed calls (slowest {max(failures) * 1000:.0f} ms), "
          f"store working again after {recovered:.2f} s")


def test_unreachable_sentinels_fail_fast() -> None:
    cfg = RedisConfig(sentinel=SentinelConfig(master="broker",
                                              addresses=tuple(HostPort("127.0.0.1", free_port()) for _ in range(3))))
    store = RedisStore(connector=from_config(cfg))
    for call in (lambda: store.get("k"), lambda: store.take("k"), store.ping):
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable, match="No master found for 'broker'"):
            call()
        assert time.monotonic() - started < CALL_BOUND


def test_one_server_that_became_a_replica_is_left_at_once(failed_over: tuple[SentinelGroup, int]) -> None:
    """``url`` pointing at a replica (a DNS name that has not moved yet): READONLY, then the pooled connection is
    closed, so that the next call resolves the name afresh instead of asking the replica forever."""
    group, old_port = failed_over
    store = RedisStore(connector=single_server(f"redis://127.0.0.1:{old_port}/0", socket_timeout=0.5,
                                               password=group.password.encode()))

    with pytest.raises(SessionStoreUnavailable, match="read only replica"):
        store.put("k", b"v", 60)

    assert store.get("k") is None  # reads still work there
    clients = group.data_client(old_port).client_list()
    assert len([c for c in clients if c["name"] == CLIENT_NAME]) == 1  # the get's connection; the put's are gone
    with pytest.raises(SessionStoreUnavailable, match="read only replica"):
        store.take("k")


def test_every_connection_says_who_it_is(group: SentinelGroup) -> None:
    store = store_on(group)
    store.ping()
    names = {c["name"] for c in group.data_client(group.primary().port).client_list()}
    assert CLIENT_NAME in names


def test_a_wrong_data_password_is_unavailable_not_a_crash(group: SentinelGroup) -> None:
    cfg = sentinel_config(group)
    wrong = RedisConfig(sentinel=cfg.sentinel, password_file=SecretFile(Path("wrong"), secrets.token_hex(32).encode()))

    with pytest.raises(SessionStoreUnavailable, match="invalid username-password pair"):
        RedisStore(connector=from_config(wrong)).ping()


# --- TLS: every connection (data nodes, sentinels, replication) with a private CA and client certificates ---


@pytest.fixture(scope="module")
def tls_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    workdir = tmp_path_factory.mktemp("tls")
    with SentinelGroup(workdir / "redis", tls=RedisTls.generate(workdir / "tls")) as started:
        yield started


def test_sentinel_over_tls_with_a_client_certificate_follows_a_failover(tls_group: SentinelGroup) -> None:
    store = store_on(tls_group)
    store.put("before", b"1", 60)
    assert store.get("before") == b"1"
    tls_group.replicated()

    new = tls_group.failover()
    deadline = time.monotonic() + CHECK_BOUND + 1
    while True:
        store.put("after", b"2", 60)
        if tls_group.data_client(new.port).get(store._k("after")) == b"2":
            break
        assert time.monotonic() < deadline, "the store kept writing to the old primary"
        time.sleep(0.05)
    assert store.get("before") == b"1"


TlsEdit = Callable[[SentinelGroup, RedisTlsConfig], RedisTlsConfig]


@pytest.mark.parametrize(
    "tls",
    [
        pytest.param(lambda group, other: dataclasses.replace(tls_config(group.tls), ca_file=other.ca_file),
                     id="servers-from-another-ca"),
        pytest.param(lambda group, other: dataclasses.replace(tls_config(group.tls), certificate=other.certificate,
                                                              key=other.key),
                     id="client-certificate-from-another-ca"),
        pytest.param(lambda group, other: dataclasses.replace(tls_config(group.tls), certificate=None, key=None),
                     id="no-client-certificate"),
    ],
)
def test_tls_that_does_not_verify_is_unavailable(tls_group: SentinelGroup, tmp_path: Path, tls: TlsEdit) -> None:
    other = tls_config(RedisTls.generate(tmp_path / "other"))
    # a refused handshake, not a timeout: with a socket timeout far above the bound, waiting for one would show
    # (the default 0.5 s, three sentinels, lay too close to the bound for a busy machine's TLS handshakes)
    cfg = dataclasses.replace(sentinel_config(tls_group, socket_timeout=HANDSHAKE_TIMEOUT), tls=tls(tls_group, other))
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable, match="No master found"):
        RedisStore(connector=from_config(cfg)).ping()
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT / 2
