"""The KeyValueStore contract, run against a real Redis (one server, a Sentinel-managed primary, a Redis
Cluster) and the demo's embedded store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from broker.session.redis_client import from_config
from broker.session.store import KeyValueStore, MemoryStore, RedisStore
from tests.factories.redis_cluster import cluster_config
from tests.factories.redis_sentinel import sentinel_config


@pytest.fixture(params=["redis", "sentinel", "cluster", "memory"])
def store(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> Iterator[KeyValueStore]:
    if request.param == "redis":
        yield RedisStore(redis_url, prefix=redis_prefix)
    elif request.param == "sentinel":
        group = request.getfixturevalue("sentinel_group")
        yield RedisStore(connector=from_config(sentinel_config(group)), prefix=redis_prefix)
    elif request.param == "cluster":
        nodes = request.getfixturevalue("redis_cluster")
        yield RedisStore(connector=from_config(cluster_config(nodes)), prefix=redis_prefix)
    else:
        yield MemoryStore()


def test_put_then_get_returns_the_value(store: KeyValueStore) -> None:
    store.put("k", b"value", 10)
    assert store.get("k") == b"value"


def test_missing_key_is_none(store: KeyValueStore) -> None:
    assert store.get("absent") is None
    assert store.take("absent") is None


def test_take_hands_a_value_out_once(store: KeyValueStore) -> None:
    store.put("pending", b"request", 10)
    assert store.take("pending") == b"request"
    assert store.take("pending") is None
    assert store.get("pending") is None


def test_take_is_atomic_under_concurrency(store: KeyValueStore) -> None:
    store.put("once", b"x", 10)
    winners: list[bytes] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        value = store.take("once")
        if value is not None:
            winners.append(value)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert winners == [b"x"]


def test_values_expire_after_their_ttl(store: KeyValueStore) -> None:
    store.put("short", b"x", 0.15)
    assert store.get("short") == b"x"
    time.sleep(0.3)
    assert store.get("short") is None


def test_delete_removes_value(store: KeyValueStore) -> None:
    store.put("k", b"v", 10)
    store.delete("k")
    assert store.get("k") is None


def _add(store: KeyValueStore, key: str, member: str, ttl: float) -> None:
    store.put("holder", b"", 10, members=[(key, member, ttl)])


def test_members_accumulate_and_expire(store: KeyValueStore) -> None:
    _add(store, "set", "a", 10)
    _add(store, "set", "b", 10)
    _add(store, "set", "a", 10)
    assert store.members("set") == {"a", "b"}
    _add(store, "brief", "x", 0.15)
    time.sleep(0.3)
    assert store.members("brief") == set()


def test_put_with_members_stores_the_value_and_adds_each_member(store: KeyValueStore) -> None:
    _add(store, "set-a", "old", 10)
    store.put("k", b"v", 10, members=[("set-a", "a", 10), ("set-b", "b", 0.15), ("set-a", "a2", 10)])
    assert store.get("k") == b"v"
    assert store.members("set-a") == {"old", "a", "a2"}
    assert store.members("set-b") == {"b"}
    time.sleep(0.3)
    assert store.members("set-b") == set()  # each set gets its own time to live
    assert store.get("k") == b"v"


def test_update_set_adds_removes_and_sets_the_time_to_live(store: KeyValueStore) -> None:
    store.update_set("set", "a", 10)
    store.update_set("set", "b", 10)
    store.update_set("set", "c", 0.15, remove=["a", "not-a-member"])
    assert store.members("set") == {"b", "c"}
    time.sleep(0.3)
    assert store.members("set") == set()  # the last update's time to live is the set's


def test_update_set_without_an_addition_only_removes(store: KeyValueStore) -> None:
    store.update_set("set", "a", 0.3)
    store.update_set("set", "b", 0.3)
    store.update_set("set", None, 10, remove=["a", "not-a-member"])
    store.update_set("missing", None, 10, remove=["a"])
    assert store.members("set") == {"b"}
    assert store.members("missing") == set()
    store.update_set("set", None, 10, remove=["b"])
    assert store.members("set") == set()
    store.update_set("other", "c", 0.15)
    store.update_set("other", None, 10, remove=["not-a-member"])
    time.sleep(0.3)
    assert store.members("other") == set()  # its time to live is left as it was


def test_put_if_present_writes_nothing_where_there_is_no_value(store: KeyValueStore) -> None:
    _add(store, "set", "old", 10)
    assert store.put_if_present("k", b"v", 10, members=[("set", "a", 10), ("other-set", "b", 10)]) is False
    assert store.get("k") is None
    assert store.members("set") == {"old"}
    assert store.members("other-set") == set()


@pytest.mark.parametrize(("current", "stored"), [
    pytest.param(b'{"a":1,"retired":"revoked"}', False, id="holding-it"),
    pytest.param(b'{"a":"\\"retired\\":"}', True, id="only-escaped-inside-a-string"),
    pytest.param(b'{"a":1}', True, id="without-it"),
])
def test_put_if_present_writes_nothing_over_a_value_holding_unless(store: KeyValueStore, current: bytes,
                                                                  stored: bool) -> None:
    store.put("k", current, 10)
    assert store.put_if_present("k", b"v2", 10, members=[("set", "a", 10)], unless=b'"retired":') is stored
    assert store.get("k") == (b"v2" if stored else current)
    assert store.members("set") == ({"a"} if stored else set())


def test_put_if_present_replaces_a_value_and_adds_each_member(store: KeyValueStore) -> None:
    store.put("k", b"v1", 10, members=[("set-a", "old", 10)])
    assert store.put_if_present("k", b"v2", 10, members=[("set-a", "a", 10), ("set-b", "b", 0.15)]) is True
    assert store.get("k") == b"v2"
    assert store.members("set-a") == {"old", "a"}
    assert store.members("set-b") == {"b"}
    assert store.put_if_present("k", b"v2", 10, members=[("set-a", "a", 10)]) is True  # repeating it: the same
    assert store.members("set-a") == {"old", "a"}
    time.sleep(0.3)
    assert store.members("set-b") == set()  # each set gets its own time to live
    assert store.get("k") == b"v2"


def test_put_if_present_replaces_the_members_it_supersedes(store: KeyValueStore) -> None:
    """``replacing``: a record that supersedes others (the same SP answered again) takes their place."""
    store.put("k", b"v", 10, members=[("set", '["sp-a","old"]', 10), ("set", '["sp-b","kept"]', 10)])
    for i in range(5):
        assert store.put_if_present("k", b"v", 10, members=[("set", f'["sp-a","new-{i}"]', 10)],
                                    replacing='["sp-a",')
    assert store.members("set") == {'["sp-a","new-4"]', '["sp-b","kept"]'}
    assert not store.put_if_present("gone", b"v", 10, members=[("set", '["sp-b","x"]', 10)], replacing='["sp-b",')
    assert store.members("set") == {'["sp-a","new-4"]', '["sp-b","kept"]'}  # nothing written, nothing removed


def test_put_if_present_sets_the_new_time_to_live(store: KeyValueStore) -> None:
    store.put("short", b"v1", 0.15)
    assert store.put_if_present("short", b"v2", 10)
    store.put("long", b"v1", 10)
    assert store.put_if_present("long", b"v2", 0.15)
    time.sleep(0.3)
    assert store.get("short") == b"v2"
    assert store.get("long") is None


def test_put_if_present_does_not_revive_a_deleted_or_expired_value(store: KeyValueStore) -> None:
    store.put("deleted", b"v", 10)
    store.delete("deleted")
    store.put("expired", b"v", 0.1)
    time.sleep(0.25)
    for key in ("deleted", "expired"):
        assert store.put_if_present(key, b"again", 10, members=[(key + "-set", "m", 10)]) is False
        assert store.get(key) is None
        assert store.members(key + "-set") == set()


def test_put_if_present_is_atomic_with_a_concurrent_delete(store: KeyValueStore) -> None:
    """Writers race one delete: each member is in the set exactly when its writer was told True, and the value is
    gone for good once deleted (every write after the delete found nothing)."""
    store.put("session", b"v", 10)
    writers = 4
    told: dict[int, list[tuple[str, bool]]] = {n: [] for n in range(writers)}
    barrier = threading.Barrier(writers + 1)

    def write(n: int) -> None:
        barrier.wait()
        for i in range(10_000):  # until a write finds the value deleted
            member = f"m{n}-{i}"
            stored = store.put_if_present("session", b"v", 10, members=[("participants", member, 10)])
            told[n].append((member, stored))
            if not stored:
                return

    def delete() -> None:
        barrier.wait()
        while sum(len(outcomes) for outcomes in told.values()) < 20:
            time.sleep(0.001)
        store.delete("session")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)] + [threading.Thread(target=delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("session") is None
    stored_members = {m for outcomes in told.values() for m, stored in outcomes if stored}
    assert store.members("participants") == stored_members
    assert len(stored_members) >= 20 - writers
    for outcomes in told.values():  # per writer: stored until the delete, never after it
        assert [stored for _, stored in outcomes] == [True] * (len(outcomes) - 1) + [False]


def test_ping_answers(store: KeyValueStore) -> None:
    store.ping()


def test_redis_keys_carry_the_prefix(redis_url: str, redis_prefix: str) -> None:
    import redis

    RedisStore(redis_url, prefix=redis_prefix).put("k", b"v", 10)
    assert redis.Redis.from_url(redis_url).get(redis_prefix + "k") == b"v"
