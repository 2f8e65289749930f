"""The Redis store on a Redis Cluster: every key of the broker carries the prefix as its hash tag, so the multi-key
commands (MGET, the counters' MULTI/EXEC, the script that stores a session with its participants) are legal and
atomic; a killed primary is replaced by its replica and
the store follows the new slot map by itself; a cluster that does not answer is SessionStoreUnavailable.

Real processes on loopback (tests/factories/redis_cluster.py): three primaries, and for the failover three
primaries with a replica each (cluster-node-timeout 1000 ms)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from broker.config.redis_schema import ClusterConfig, HostPort, RedisConfig
from broker.errors import SessionStoreUnavailable
from broker.session import store as store_module
from broker.session.redis_client import from_config
from broker.session.store import RedisStore
from tests.factories.redis_cluster import RedisClusterNodes, cluster_config, free_cluster_port
from tests.factories.redis_sentinel import Node, RedisTls, read_through_failover

FAILOVER_BOUND = 15.0  # seconds from a killed primary to a store that works again (measured: about 2-3 s)
CALL_BOUND = 1.5


def store_on(nodes: RedisClusterNodes) -> RedisStore:
    return RedisStore(connector=from_config(cluster_config(nodes)), prefix=f"test:{secrets.token_hex(4)}:")


def owner_of(nodes: RedisClusterNodes, key: str) -> Node:
    """The primary that serves ``key``'s hash slot, as a live node sees the slot map."""
    client = nodes.client(next(n for n in nodes.nodes if n.alive).port)
    slot = int(client.execute_command("CLUSTER KEYSLOT", key))
    for start, end, primary, *_replicas in client.execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return next(n for n in nodes.nodes if n.port == int(primary[1]))
    raise AssertionError(f"no node serves slot {slot}")


def test_every_key_of_the_broker_lives_in_one_hash_slot(redis_cluster: RedisClusterNodes) -> None:
    store = store_on(redis_cluster)
    store.put("session:a", b"1", 60)
    store.put_if_absent("replay:b", b"1", 60)
    store.put("session:c", b"1", 60, members=[("session-sps:c", "sp", 60)])
    store.increment(["ratelimit:address:d", "ratelimit:certificate:e"], 60)

    keys: dict[int, list[bytes]] = {}
    for node in redis_cluster.nodes:
        found = list(redis_cluster.client(node.port).scan_iter(match=store._k("*")))
        if found:
            keys[node.port] = found
    assert len(keys) == 1, f"the broker's keys are spread over {sorted(keys)}"
    (found,) = keys.values()
    assert len(found) == 6
    assert all(k.startswith(b"{test:") for k in found)
    client = redis_cluster.client(redis_cluster.nodes[0].port)
    assert len({client.execute_command("CLUSTER KEYSLOT", k) for k in found}) == 1


def test_multi_key_commands_work_because_of_the_hash_tag(redis_cluster: RedisClusterNodes) -> None:
    store = store_on(redis_cluster)

    assert store.increment(["address:x", "certificate:y"], 60) == [1, 1]
    assert store.increment(["address:x", "certificate:z"], 60) == [2, 1]
    assert store.get_many(["address:x", "certificate:y", "absent"]) == [b"2", b"1", None]

    # the same keys without the tag fall into different slots, where Redis refuses one MGET over both
    plain = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port, password=redis_cluster.password)
    try:
        untagged = ["test:address:x", "test:certificate:y"]
        assert len({plain.keyslot(k) for k in untagged}) == 2
        with pytest.raises(redis.RedisClusterException, match="all keys must map to the same key slot"):
            plain.mget(untagged)
    finally:
        plain.close()


def test_a_session_and_its_participants_are_written_by_one_script_because_of_the_hash_tag(
        redis_cluster: RedisClusterNodes) -> None:
    """The conditional write of a reused session (SET XX, then SADD and PEXPIRE of its participant list) names
    both keys; Redis Cluster runs a script only when all of its keys are in one slot of the node it reaches."""
    store = store_on(redis_cluster)
    store.put("session:s", b"v1", 60)
    assert store.put_if_present("session:s", b"v2", 60, members=[("session-sps:s", "sp", 60)])
    assert (store.get("session:s"), store.members("session-sps:s")) == (b"v2", {"sp"})
    store.delete("session:s")
    assert not store.put_if_present("session:s", b"v3", 60, members=[("session-sps:s", "sp-2", 60)])
    assert (store.get("session:s"), store.members("session-sps:s")) == (None, {"sp"})

    plain = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port, password=redis_cluster.password)
    try:
        untagged = ["test:session:x", "test:session-sps:x"]
        assert len({plain.keyslot(k) for k in untagged}) == 2
        with pytest.raises(redis.RedisClusterException, match="all keys must map to the same key slot"):
            plain.eval("return 0", 2, *untagged)
    finally:
        plain.close()


def test_a_cluster_that_does_not_answer_is_unavailable_and_fails_fast() -> None:
    cfg = RedisConfig(cluster=ClusterConfig(addresses=(HostPort("127.0.0.1", free_cluster_port()),)))
    store = RedisStore(connector=from_config(cfg))
    for call in (lambda: store.get("k"), lambda: store.take("k"), store.ping):
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable, match="Redis Cluster cannot be connected"):
            call()
        assert time.monotonic() - started < CALL_BOUND


def _migrating(nodes: RedisClusterNodes, key: str) -> tuple[redis.Redis, redis.Redis, int, str]:
    """Start moving ``key``'s slot to another primary (CLUSTER SETSLOT IMPORTING / MIGRATING) and move ``key``
    alone, as `redis-cli --cluster reshard` does key by key: the source, the target, the slot, the target's id."""
    source = owner_of(nodes, key)
    target = next(n for n in nodes.nodes if n.port != source.port)
    src, dst = nodes.client(source.port), nodes.client(target.port)
    slot = int(src.execute_command("CLUSTER KEYSLOT", key))
    source_id, target_id = (c.execute_command("CLUSTER MYID").decode() for c in (src, dst))
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "AUTH", nodes.password, "KEYS", key)
    return src, dst, slot, target_id


def test_while_the_brokers_slot_migrates_multi_key_commands_fail_and_after_it_the_store_works(
        tmp_path: Path) -> None:
    """docs/redis.md: while the broker's one slot is being migrated, a command on one key follows ASK, but a
    MULTI/EXEC gets ASK (redis-py follows no redirection inside a transaction) and MGET and the script get
    TRYAGAIN until redis-py gives up: SessionStoreUnavailable, so new logins get 503. Once the slot has moved,
    a transaction's MOVED (it ran nothing) is sent again with the new slot map: no request fails for it."""
    with RedisClusterNodes(tmp_path / "cluster") as nodes:
        store = store_on(nodes)
        store.put("session:moved", b"1", 600)
        store.put("session:not-yet", b"1", 600)
        src, dst, slot, target_id = _migrating(nodes, store._k("session:moved"))

        assert (store.get("session:moved"), store.get("session:not-yet")) == (b"1", b"1")
        store.put("session:new", b"1", 60)
        assert store.take("pending:new") is None
        for command, call in [
            ("INCR", lambda: store.increment(["address:x", "certificate:y"], 60)),
            ("SET", lambda: store.put("session:other", b"1", 60, members=[("session-sps:other", "sp", 60)])),
            ("MGET", lambda: store.get_many(["address:x", "certificate:y"])),
            ("EVALSHA", lambda: store.put_if_present("session:not-yet", b"2", 60,
                                                     members=[("session-sps:not-yet", "sp", 60)])),
        ]:
            with pytest.raises(SessionStoreUnavailable, match=f"Redis {command} failed"):
                call()

        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", dst.connection_pool.connection_kwargs["port"], "", 0,
                                5000, "AUTH", nodes.password, "KEYS", *keys)
        for node in nodes.nodes:
            nodes.client(node.port).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)

        assert store.increment(["address:x", "certificate:y"], 60) == [1, 1]
        assert store.get_many(["address:x", "certificate:y"]) == [b"1", b"1"]
        assert store.put_if_present("session:not-yet", b"3", 60, members=[("session-sps:not-yet", "sp", 60)])
        assert store.get("session:moved") == b"1"


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    with RedisClusterNodes(tmp_path / "cluster", replicas=1) as nodes:
        yield nodes


def test_the_store_follows_a_cluster_failover(replicated_cluster: RedisClusterNodes) -> None:
    nodes = replicated_cluster
    store = store_on(nodes)
    store.put("session", b"before", 600)
    store.put("reused", b"0", 600)
    assert store.put_if_present("reused", b"1", 600, members=[("reused-sps", "sp", 600)])  # cached on the primary
    primary = owner_of(nodes, store._k("session"))
    client = nodes.client(primary.port)
    client.set(store._k("marker"), b"1")
    assert client.wait(1, 2000) == 1  # the replica holds the session too

    primary.kill()
    killed = time.monotonic()
    seen = read_through_failover(store, "session", killed, FAILOVER_BOUND)
    value, failures, recovered = seen.value, seen.failures, seen.recovered

    assert value == b"before"
    assert failures, "the store never noticed the killed primary"
    assert max(failures) < CALL_BOUND
    store.put("after", b"1", 60)
    serving = store.client.get_node_from_key(store._k("after"))  # type: ignore[union-attr]
    assert serving.port != primary.port
    assert nodes.client(serving.port).get(store._k("after")) == b"1"
    # the promoted replica has not cached the script (the cache is not replicated): NOSCRIPT, then EVAL
    assert nodes.client(serving.port).script_exists(store_module._PUT_IF_PRESENT_SHA1) == [False]
    assert store.put_if_present("reused", b"2", 600, members=[("reused-sps", "sp-2", 600)])
    assert (store.get("reused"), store.members("reused-sps")) == (b"2", {"sp", "sp-2"})
    print(f"\ncluster primary killed: {len(failures)} failed calls (slowest {max(failures) * 1000:.0f} ms), "
          f"store working again after {recovered:.2f} s")


def test_a_cluster_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    with RedisClusterNodes(tmp_path / "cluster", tls=RedisTls.generate(tmp_path / "tls")) as nodes:
        store = store_on(nodes)
        store.put("session", b"1", 60)
        assert store.increment(["a", "b"], 60) == [1, 1]
        assert store.get_many(["session", "a"]) == [b"1", b"1"]
