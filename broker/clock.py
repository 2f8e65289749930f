"""Time as an injected dependency.

Everything that decides on time (certificate validity, CRL freshness, SAML
conditions, session timeouts) takes a :class:`Clock`, so tests can pin the
instant and probe one-second boundaries.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    """A source of the current instant, always timezone-aware UTC."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that stands still until moved; for tests and stateless CLI checks (``--at``)."""

    def __init__(self, instant: dt.datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware instant")
        self._instant = instant.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        return self._instant

    def set(self, instant: dt.datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware instant")
        self._instant = instant.astimezone(dt.UTC)

    def advance(self, delta: dt.timedelta) -> None:
        self._instant = self._instant + delta


def passed(since: dt.datetime, span: dt.timedelta, now: dt.datetime) -> bool:
    """Whether ``span`` has passed from ``since`` to ``now``, two readings of the wall clock.

    A ``since`` later than ``now`` means the clock has been stepped back in between (NTP correcting a clock that
    ran ahead, an operator setting it): it counts as passed. Otherwise whatever waits on the span (a retry, a
    refresh, a checkpoint) would wait for the size of the step as well, an hour for a clock that ran an hour
    ahead."""
    return not dt.timedelta(0) <= now - since < span


def isoformat_z(instant: dt.datetime) -> str:
    """``2026-11-27T10:00:00Z``: the xs:dateTime form SAML uses (SAML Core §1.3.3), seconds precision."""
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
