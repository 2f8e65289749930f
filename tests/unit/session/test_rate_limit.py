"""Failed-login limits (broker.session.rate_limit) on a real Redis and the demo's embedded store: counting, the
limits per address and per certificate, fixed windows at ±1 s, what counts as a failure, and Redis failing."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from broker.clock import FixedClock
from broker.config.loader import load_settings
from broker.errors import (
    CertificateRejected,
    ConfigError,
    RateLimited,
    SessionStoreUnavailable,
    UpstreamRejected,
)
from broker.session.rate_limit import FailureLimiter, RateLimitPolicy, address_subject, counts_as_failure
from broker.session.store import KeyValueStore, MemoryStore, RedisStore
from tests.unit.config.editing import replace_once

WINDOW = dt.timedelta(minutes=5)
START = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)  # a window starts here (a multiple of 300 s)
POLICY = RateLimitPolicy(enabled=True, failures_per_address=20, failures_per_certificate=10, window=WINDOW)
ANNA = "a" * 64   # SHA-256 fingerprints
BO = "b" * 64
HOME = "192.0.2.10"
OTHER = "198.51.100.7"


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> Iterator[KeyValueStore]:
    if request.param == "redis":
        yield RedisStore(redis_url, prefix=redis_prefix)
    else:
        yield MemoryStore()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def limiter(store: KeyValueStore, clock: FixedClock) -> FailureLimiter:
    return FailureLimiter(store, clock, POLICY)


def fail(limiter: FailureLimiter, times: int, address: str | None = HOME, certificate: str | None = None) -> None:
    for _ in range(times):
        limiter.record_failure(address, certificate)


def refusal(limiter: FailureLimiter, address: str | None = HOME, certificate: str | None = None) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        limiter.check(address, certificate)
    return caught.value


# --- the store's counters --------------------------------------------------------------------------------------


def test_increment_counts_each_key_and_returns_the_new_counts(store: KeyValueStore) -> None:
    assert store.increment(["a", "b"], 10) == [1, 1]
    assert store.increment(["a"], 10) == [2]
    assert store.get_many(["a", "b", "absent"]) == [b"2", b"1", None]
    assert store.get_many([]) == []


def test_increment_sets_the_time_to_live_on_redis(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    store.increment(["counted"], 30)
    ttl = redis.Redis.from_url(redis_url).pttl(redis_prefix + "counted")
    assert 29_000 < ttl <= 30_000


def test_increment_is_atomic_under_concurrency(store: KeyValueStore) -> None:
    barrier = threading.Barrier(8)

    def count() -> None:
        barrier.wait()
        for _ in range(25):
            store.increment(["shared", "also"], 10)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_many(["shared", "also"]) == [b"200", b"200"]


# --- the limits --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "certificate", "limit"), [
    pytest.param(HOME, None, 20, id="per-address"),
    pytest.param(None, ANNA, 10, id="per-certificate"),
    pytest.param(HOME, ANNA, 10, id="certificate-reached-first"),
])
def test_the_limit_allows_that_many_failures_and_refuses_the_next_attempt(
        limiter: FailureLimiter, address: str | None, certificate: str | None, limit: int) -> None:
    fail(limiter, limit - 1, address, certificate)
    limiter.check(address, certificate)  # one failure left
    fail(limiter, 1, address, certificate)

    refused = refusal(limiter, address, certificate)
    assert refused.reason == "rate_limited"
    assert refused.row.http_status == 429
    assert refused.retry_after == 300
    assert refused.params["minutes"] == "5"
    assert f"limit {limit}" in refused.detail


def test_a_certificate_is_limited_whatever_address_it_comes_from(limiter: FailureLimiter) -> None:
    for n in range(10):
        limiter.record_failure(f"192.0.2.{n}", ANNA)
    assert refusal(limiter, OTHER, ANNA).reason == "rate_limited"
    limiter.check(OTHER, BO)  # another card from that address: the address has one failure only


@pytest.mark.parametrize(("failed", "asking"), [
    pytest.param(HOME, OTHER, id="other-address"),
    pytest.param("2001:db8:1:2::1", "2001:db8:1:3::1", id="other-ipv6-64"),
])
def test_other_clients_are_not_affected(limiter: FailureLimiter, failed: str, asking: str) -> None:
    fail(limiter, 20, failed)
    refusal(limiter, failed)
    limiter.check(asking)


@pytest.mark.parametrize(("one", "other"), [
    pytest.param("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", id="ipv6-same-64"),
    pytest.param("192.0.2.10", "::ffff:192.0.2.10", id="ipv4-mapped"),
])
def test_addresses_that_count_as_one(limiter: FailureLimiter, one: str, other: str) -> None:
    assert address_subject(one) == address_subject(other)
    fail(limiter, 20, one)
    assert refusal(limiter, other).reason == "rate_limited"


def test_checking_never_counts(limiter: FailureLimiter, store: KeyValueStore) -> None:
    """Successful logins only check: a hundred of them leave the counters as they were."""
    fail(limiter, 19, HOME)
    for _ in range(100):
        limiter.check(HOME)
    limiter.check(HOME)
    fail(limiter, 1, HOME)
    refusal(limiter, HOME)


def test_nothing_to_count_without_address_or_certificate(limiter: FailureLimiter) -> None:
    fail(limiter, 50, None, None)
    limiter.check(None, None)


# --- fixed windows, ±1 s ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "refused_for"), [
    pytest.param(0, 300, id="at-the-window-start"),
    pytest.param(100, 200, id="inside"),
    pytest.param(299, 1, id="one-second-before-the-end"),
    pytest.param(300, None, id="at-the-end"),
    pytest.param(301, None, id="one-second-after-the-end"),
])
def test_refused_until_the_window_ends(limiter: FailureLimiter, clock: FixedClock, offset: int,
                                       refused_for: int | None) -> None:
    fail(limiter, 20)
    clock.set(START + dt.timedelta(seconds=offset))
    if refused_for is None:
        limiter.check(HOME)
    else:
        assert refusal(limiter).retry_after == refused_for


def test_failures_in_the_last_second_of_a_window_do_not_carry_over(limiter: FailureLimiter, clock: FixedClock) -> None:
    clock.set(START + dt.timedelta(seconds=299))
    fail(limiter, 20)
    assert refusal(limiter).retry_after == 1
    clock.set(START + dt.timedelta(seconds=300))
    limiter.check(HOME)
    fail(limiter, 19)
    limiter.check(HOME)


def test_a_part_second_before_the_end_rounds_up_to_one_second(limiter: FailureLimiter, clock: FixedClock) -> None:
    fail(limiter, 20)
    clock.set(START + dt.timedelta(seconds=299, milliseconds=999))
    refused = refusal(limiter)
    assert refused.retry_after == 1
    assert refused.params["minutes"] == "1"


def test_counters_expire_with_their_window(redis_url: str, redis_prefix: str, clock: FixedClock) -> None:
    limiter = FailureLimiter(RedisStore(redis_url, prefix=redis_prefix), clock, POLICY)
    clock.set(START + dt.timedelta(seconds=100))
    fail(limiter, 1, HOME, ANNA)
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=redis_prefix + "ratelimit:*"))
    assert len(keys) == 2
    for key in keys:
        assert 200_000 < client.pttl(key) <= 205_000  # the rest of the window and a margin
        assert HOME.encode() not in key  # keys hold a digest, not the address


# --- switched off, and what counts --------------------------------------------------------------------------------


def test_disabled_limits_neither_count_nor_refuse(store: KeyValueStore, clock: FixedClock) -> None:
    limiter = FailureLimiter(store, clock, RateLimitPolicy(False, 1, 1, WINDOW))
    fail(limiter, 5, HOME, ANNA)
    limiter.check(HOME, ANNA)
    enabled = FailureLimiter(store, clock, RateLimitPolicy(True, 1, 1, WINDOW))
    enabled.check(HOME, ANNA)  # nothing was counted meanwhile


@pytest.mark.parametrize(("error", "counted"), [
    pytest.param(CertificateRejected("certificate_expired"), True, id="certificate_expired"),
    pytest.param(CertificateRejected("issuer_unknown"), True, id="issuer_unknown"),
    pytest.param(CertificateRejected("revoked"), True, id="revoked"),
    pytest.param(UpstreamRejected("upstream_signature_invalid"), True, id="upstream_signature_invalid"),
    pytest.param(UpstreamRejected("upstream_status"), True, id="upstream_status"),
    pytest.param(CertificateRejected("revocation_unavailable"), False, id="revocation_unavailable"),
    pytest.param(CertificateRejected("revocation_stale"), False, id="revocation_stale"),
    pytest.param(UpstreamRejected("upstream_metadata_unavailable"), False, id="upstream_metadata_unavailable"),
])
def test_only_refusals_the_client_causes_count(error: CertificateRejected | UpstreamRejected, counted: bool) -> None:
    assert counts_as_failure(error) is counted


@pytest.mark.parametrize(("per_address", "per_certificate", "seconds"), [
    pytest.param(0, 10, 300, id="no-failure-per-address"),
    pytest.param(20, 0, 300, id="no-failure-per-certificate"),
    pytest.param(20, 10, 0.5, id="window-under-a-second"),
])
def test_a_policy_that_refuses_everything_is_refused(per_address: int, per_certificate: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimitPolicy(True, per_address, per_certificate, dt.timedelta(seconds=seconds))


# --- Redis failing: fail closed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["check", "record_failure"])
def test_redis_unreachable_is_session_store_unavailable(clock: FixedClock, step: str) -> None:
    dead = RedisStore("redis://127.0.0.1:1/0", prefix="test:", socket_timeout=0.2)
    limiter = FailureLimiter(dead, clock, POLICY)
    with pytest.raises(SessionStoreUnavailable) as caught:
        getattr(limiter, step)(HOME, ANNA)
    assert caught.value.reason == "session_store_unavailable"


# --- broker.yaml rate_limit ---------------------------------------------------------------------------------------


def test_the_example_configuration_sets_the_defaults(config_dir: Path) -> None:
    cfg = load_settings(config_dir).broker.rate_limit
    assert (cfg.enabled, cfg.failures_per_address, cfg.failures_per_certificate, cfg.window.seconds) == \
        (True, 20, 10, 300)
    with pytest.raises(AttributeError):
        cfg.enabled = False  # type: ignore[misc]


def test_the_section_is_parsed_into_typed_values(config_dir: Path) -> None:
    replace_once(config_dir / "broker.yaml", "  failures_per_address: 20\n", "  failures_per_address: 50\n")
    replace_once(config_dir / "broker.yaml", "  window: 5m\n", "  window: 15m\n")
    replace_once(config_dir / "broker.yaml", "  enabled: true\n", "  enabled: false\n")
    cfg = load_settings(config_dir).broker.rate_limit
    assert (cfg.enabled, cfg.failures_per_address, cfg.window.timedelta) == (False, 50, dt.timedelta(minutes=15))


@pytest.mark.parametrize(("old", "new", "key"), [
    pytest.param("  failures_per_address: 20\n", "  failures_per_address: 0\n", "rate_limit.failures_per_address",
                 id="zero-failures"),
    pytest.param("  window: 5m\n", "  window: soon\n", "rate_limit.window", id="not-a-duration"),
    pytest.param("  enabled: true\n", "  enabled: true\n  burst: 5\n", "rate_limit.burst", id="unknown-key"),
])
def test_a_wrong_value_is_reported_at_its_key(config_dir: Path, old: str, new: str, key: str) -> None:
    replace_once(config_dir / "broker.yaml", old, new)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir)
    assert [issue.key for issue in caught.value.issues] == [key]
    assert caught.value.issues[0].file.endswith("broker.yaml")
