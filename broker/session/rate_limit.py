"""Limits on failed logins, per client address and per client certificate, shared by every broker instance.

Fixed windows on the injected clock: window *k* covers ``[k·W, (k+1)·W)`` seconds since the epoch. A failed
login adds one to the current window's counter of the client address and, for a certificate login, of the
certificate's SHA-256 fingerprint: INCR and PEXPIRE for each, in one MULTI/EXEC round trip (atomic; the key
lives until shortly after its window ends). A login attempt reads both counters (one MGET) and is refused with
:class:`~broker.errors.RateLimited` while either has reached its limit, until the window ends.

* Only failures count (a rejected certificate, a failed login at a municipal IdP), never successes, and never
  refusals the user cannot cause (revocation or metadata unavailable: HTTP 503 reasons, see
  :func:`counts_as_failure`), so an outage of a responder does not lock users out afterwards.
* ``limit`` failures are allowed in a window; the next attempt is refused. A fixed window lets a client spend
  its allowance at the end of one window and again at the start of the next (at most twice the limit in a
  short time); the limits are set with that in mind.
* IPv6 addresses count per /64 (one subscriber's usual allocation), so that stepping through one's own
  prefix does not reset the count.
* Keys hold a SHA-256 of the address or fingerprint, not the value itself, so that a key listing of the store
  is not a list of client addresses (a hash of an IPv4 address is no secret, and is not meant to be one).
* The store failing raises :class:`~broker.errors.SessionStoreUnavailable`: the login fails closed with the
  503 page, like every other step of the login that needs Redis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import math
from dataclasses import dataclass
from typing import Literal

from broker.clock import Clock
from broker.errors import BrokerError, RateLimited
from broker.session.store import KeyValueStore

SubjectKind = Literal["address", "certificate"]

_KEY_MARGIN = 5.0  # seconds a counter outlives its window (clock differences between instances)


@dataclass(frozen=True)
class RateLimitPolicy:
    """The limits, from broker.yaml ``rate_limit``."""

    enabled: bool
    failures_per_address: int
    failures_per_certificate: int
    window: dt.timedelta

    def __post_init__(self) -> None:
        if self.failures_per_address < 1 or self.failures_per_certificate < 1:
            raise ValueError("a rate limit allows at least one failure")
        if self.window.total_seconds() < 1:
            raise ValueError("a rate-limit window is at least one second long")


def counts_as_failure(error: BrokerError) -> bool:
    """Whether a refusal counts against the limits: anything but a temporary unavailability (503)."""
    return error.row.http_status != 503


def address_subject(address: str) -> str:
    """What an address counts as: itself (IPv4), its /64 (IPv6), or the text as given (not an IP address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is 192.0.2.1
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureLimiter:
    """Counts failed logins and refuses logins past the limits of :class:`RateLimitPolicy`."""

    def __init__(self, store: KeyValueStore, clock: Clock, policy: RateLimitPolicy) -> None:
        self._store = store
        self._clock = clock
        self.policy = policy

    def check(self, address: str | None, certificate_sha256: str | None = None) -> None:
        """Raise :class:`RateLimited` if ``address`` or ``certificate_sha256`` has reached its limit in the
        current window. Either may be None (unknown address; no certificate)."""
        counters = self._counters(address, certificate_sha256)
        if counters is None:
            return
        subjects, keys, retry_after = counters
        counts = self._store.get_many(keys)
        for (kind, _), raw in zip(subjects, counts, strict=True):
            count = int(raw) if raw is not None else 0
            limit = self._limit(kind)
            if count >= limit:
                what = "from this client address" if kind == "address" else "with this certificate"
                raise RateLimited(f"{count} failed logins {what} in the current {self._seconds()} s window (limit "
                                  f"{limit}); refused for {retry_after} s more", retry_after=retry_after)

    def record_failure(self, address: str | None, certificate_sha256: str | None = None) -> None:
        """Count one failed login for ``address`` and ``certificate_sha256`` (both counters at once)."""
        counters = self._counters(address, certificate_sha256)
        if counters is not None:
            _, keys, retry_after = counters
            self._store.increment(keys, retry_after + _KEY_MARGIN)

    def _counters(self, address: str | None, certificate_sha256: str | None
                  ) -> tuple[list[tuple[SubjectKind, str]], list[str], int] | None:
        """The subjects, their counters' keys in the current window and the seconds left of it; None when the
        limits are off or there is nothing to count by."""
        if not self.policy.enabled:
            return None
        subjects = self._subjects(address, certificate_sha256)
        if not subjects:
            return None
        window, retry_after = self._window()
        return subjects, [self._key(kind, value, window) for kind, value in subjects], retry_after

    def _subjects(self, address: str | None, certificate_sha256: str | None) -> list[tuple[SubjectKind, str]]:
        subjects: list[tuple[SubjectKind, str]] = []
        if address:
            subjects.append(("address", address_subject(address)))
        if certificate_sha256:
            subjects.append(("certificate", certificate_sha256.lower()))
        return subjects

    def _limit(self, kind: SubjectKind) -> int:
        return self.policy.failures_per_address if kind == "address" else self.policy.failures_per_certificate

    def _seconds(self) -> int:
        return max(1, int(self.policy.window.total_seconds()))

    def _window(self) -> tuple[int, int]:
        """The current window's number, and the whole seconds (>= 1) until it ends."""
        length = self._seconds()
        now = self._clock.now().timestamp()
        window = math.floor(now / length)
        return window, max(1, math.ceil((window + 1) * length - now))

    def _key(self, kind: SubjectKind, value: str, window: int) -> str:
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"ratelimit:{kind}:{self._seconds()}:{window}:{digest}"
