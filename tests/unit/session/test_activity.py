"""The last login per municipality (broker.session.activity), as the operators' status page reads it."""

from __future__ import annotations

import pytest

from broker.session.activity import LoginActivity, last_login
from broker.session.store import RedisStore


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> RedisStore:
    return RedisStore(redis_url, prefix=redis_prefix)


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def issued(time: str, municipality: str = "kommun-a") -> dict[str, str]:
    return {"event": "assertion_issued", "municipality": municipality, "time": time}


def test_the_first_login_is_noted_at_once_then_at_most_once_per_resolution(store: RedisStore) -> None:
    ticks = Ticks()
    activity = LoginActivity(store, resolution=5.0, monotonic=ticks)
    activity(issued("2026-11-27T10:00:00.000Z"))
    assert last_login(store, "kommun-a") == "2026-11-27T10:00:00.000Z"
    ticks.now += 4.9
    activity(issued("2026-11-27T10:00:04.900Z"))
    assert last_login(store, "kommun-a") == "2026-11-27T10:00:00.000Z"  # within the resolution: no write
    ticks.now += 0.1
    activity(issued("2026-11-27T10:00:05.000Z"))
    assert last_login(store, "kommun-a") == "2026-11-27T10:00:05.000Z"


def test_each_municipality_has_its_own_clock(store: RedisStore) -> None:
    activity = LoginActivity(store, monotonic=Ticks())
    activity(issued("2026-11-27T10:00:00.000Z", "kommun-a"))
    activity(issued("2026-11-27T10:00:01.000Z", "kommun-b"))
    assert (last_login(store, "kommun-a"), last_login(store, "kommun-b")) == (
        "2026-11-27T10:00:00.000Z", "2026-11-27T10:00:01.000Z")


@pytest.mark.parametrize("record", [
    pytest.param({"event": "certificate_accepted", "municipality": "kommun-a", "time": "t"}, id="not-an-assertion"),
    pytest.param({"event": "assertion_issued", "time": "t"}, id="no-municipality"),
])
def test_other_records_are_not_logins(store: RedisStore, record: dict[str, str]) -> None:
    LoginActivity(store)(record)
    assert last_login(store, "kommun-a") is None


def test_a_failed_write_is_tried_again_with_the_next_login(store: RedisStore, redis_prefix: str) -> None:
    class Down(RedisStore):
        def put(self, key: str, value: bytes, ttl: float) -> None:
            raise ConnectionError("down")

    ticks = Ticks()
    broken = LoginActivity(Down("redis://127.0.0.1:1", prefix=redis_prefix), monotonic=ticks)
    with pytest.raises(ConnectionError):
        broken(issued("t1"))
    with pytest.raises(ConnectionError):  # not "noted": the next login writes again
        broken(issued("t2"))
