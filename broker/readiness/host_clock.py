"""Is the host clock right? Compared with the ``Date`` header of every server readiness asked over HTTP.

Every validity decision the broker makes rests on the host clock: certificates and CRLs (RFC 5280 §6.1.3 (a)(2),
§6.3.3), OCSP answers (RFC 6960 §4.2.2.1), SAML conditions and IssueInstant (SAML Core §2.5.1.2, §3.2.1). A
clock a few minutes off refuses every login at once, or worse, accepts expired assertions and revoked
certificates; it happens when NTP is not reachable from the network the broker was moved into, which is what
a go-live changes. The servers readiness asks anyway (CRL distribution points, OCSP responders, metadata URLs)
carry the time in every answer (RFC 9110 §6.6.1): they are independent clocks, and one check compares them.

``Date`` has a resolution of one second and is written before the answer travels, so a host in step reads
between about -1 s and 0 s; the comparison adds half a second (and a cache's ``Age``) and takes the median over
the servers; the host is called wrong only when a majority of them say so, so one server with a wrong clock
does not decide.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from broker.clock import Clock
from broker.readiness.model import Check

IN_STEP = dt.timedelta(seconds=10)
"""Differences up to this are PASS: ``Date``'s one-second steps, network time, and servers not exactly in step."""
RESOLUTION = dt.timedelta(seconds=2)
"""What ``Date`` can tell at best: a tolerance configured below it is compared as this."""


class ServerDates:
    """The difference between each server's ``Date`` and the host clock, first answer per host name. Fed by
    :class:`broker.pki.revocation.http.HttpFetcher`'s ``observe`` hook."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._seen: dict[str, dt.timedelta] = {}

    def observe(self, url: str, headers: Mapping[str, str]) -> None:
        received = self._clock.now()
        value = headers.get("Date")
        if not value:
            return
        try:
            date = parsedate_to_datetime(value)
        except (TypeError, ValueError):  # a garbled Date says nothing about the clock
            return
        if date.tzinfo is None:  # "-0000" (RFC 5322 §3.3): meant as UTC
            date = date.replace(tzinfo=dt.UTC)
        age = headers.get("Age", "").strip()
        try:
            if age.isascii() and age.isdigit() and len(age) <= 9:
                # from a cache (RFC 9111 §5.1): Date is the origin's, Age seconds ago
                date += dt.timedelta(seconds=int(age))
            difference = date + dt.timedelta(milliseconds=500) - received
        except OverflowError:  # a Date at the end of time says nothing about the clock either
            return
        # one clock per host: a CA's CRL and OCSP services on two ports of one host are one witness, not two
        self._seen.setdefault((urlsplit(url).hostname or "").lower(), difference)

    @property
    def differences(self) -> dict[str, dt.timedelta]:
        """Each server's clock minus the host's (positive: the host is behind)."""
        return dict(self._seen)


def clock_check(dates: ServerDates, tolerance: dt.timedelta) -> Check:
    """``broker.clock``: FAIL when the servers' median time is further than ``tolerance`` from the host clock (the
    smallest clock skew the configuration allows anywhere: past it, timestamps of peers in step are refused or
    expired ones accepted); WARN beyond :data:`IN_STEP`, or when no server answered; PASS otherwise."""
    seen = dates.differences
    if not seen:
        return Check("broker.clock", "warn", "host clock not compared",
                     "no server answered over HTTP (CRL, OCSP or metadata URL) with a Date header",
                     "Check that the host keeps time with NTP (timedatectl show -p NTPSynchronized).")
    median = dt.timedelta(seconds=statistics.median(d.total_seconds() for d in seen.values()))
    listed = ", ".join(f"{server} {_signed(d)}" for server, d in sorted(seen.items()))
    off = abs(median)
    tolerance = max(tolerance, RESOLUTION)
    if off <= min(IN_STEP, tolerance):
        return Check("broker.clock", "pass", "host clock in step",
                     f"{len(seen)} server(s) agree within {_signed(median)} (median): {listed}")
    direction = "behind" if median > dt.timedelta(0) else "ahead of"
    evidence = f"the host clock is {_seconds(off)} {direction} the servers' (median of {len(seen)}): {listed}"
    fix = ("Set the host clock right and keep it synchronised (NTP: timedatectl set-ntp true; in a container, "
           "the node's clock); then run readiness again.")
    if off > tolerance:
        behind = median > dt.timedelta(0)
        agreeing = [d for d in seen.values() if abs(d) > tolerance and (d > dt.timedelta(0)) == behind]
        if 2 * len(agreeing) <= len(seen):
            # no majority says the host is off (of two servers, one in step and one not): a server's clock is as
            # likely to be the wrong one
            return Check("broker.clock", "warn", "servers disagree about the time",
                         f"no majority of the {len(seen)} server(s) puts the host clock further off than "
                         f"{_seconds(tolerance)}: {listed}",
                         "Compare the host clock with a time source you trust (timedatectl; chronyc tracking).")
        return Check("broker.clock", "fail", "host clock wrong",
                     f"{evidence}; more than the {_seconds(tolerance)} the configuration tolerates anywhere "
                     "(certificate, CRL, OCSP and SAML times are all judged by it)", fix)
    return Check("broker.clock", "warn", "host clock drifting", evidence, fix)


def _signed(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{'+' if seconds >= 0 else '-'}{abs(seconds):.1f} s"


def _seconds(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds():.0f} s"
