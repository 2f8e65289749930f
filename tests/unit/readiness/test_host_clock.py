"""``broker.clock``: the host clock against the ``Date`` headers of the servers readiness asks (RFC 9110 §6.6.1)."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest

from broker.clock import FixedClock
from broker.readiness.host_clock import ServerDates, clock_check

HOST_NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)
TOLERANCE = dt.timedelta(seconds=60)


def date_header(offset_seconds: float) -> dict[str, str]:
    """A ``Date`` as a server whose clock is ``offset_seconds`` off the host's writes it (whole seconds, GMT)."""
    instant = (HOST_NOW + dt.timedelta(seconds=offset_seconds)).replace(microsecond=0)
    return {"Date": format_datetime(instant, usegmt=True)}


def dates_from(*offsets: float) -> ServerDates:
    dates = ServerDates(FixedClock(HOST_NOW))
    for i, offset in enumerate(offsets):
        dates.observe(f"http://server{i}.example:8080/crl/ca.crl", date_header(offset))
    return dates


@pytest.mark.parametrize(("offsets", "status", "title"), [
    pytest.param((0,), "pass", "host clock in step", id="one-server-in-step"),
    pytest.param((-0.9, 0, 3), "pass", "host clock in step", id="three-servers-within-seconds"),
    pytest.param((0, 0, 3600), "pass", "host clock in step", id="one-server-wrong-is-outvoted"),
    pytest.param((30,), "warn", "host clock drifting", id="host-30s-behind"),
    pytest.param((-45, -44), "warn", "host clock drifting", id="host-45s-ahead"),
    pytest.param((61,), "fail", "host clock wrong", id="host-past-the-smallest-skew-behind"),
    pytest.param((-600, -599, -601), "fail", "host clock wrong", id="host-10min-ahead"),
])
def test_the_median_server_decides(offsets: tuple[float, ...], status: str, title: str) -> None:
    check = clock_check(dates_from(*offsets), TOLERANCE)

    assert (check.id, check.status, check.title) == ("broker.clock", status, title)
    assert (check.fix is None) is (status == "pass")


def test_the_evidence_says_which_way_and_lists_every_server() -> None:
    check = clock_check(dates_from(-600, -600), TOLERANCE)

    assert check.evidence.startswith("the host clock is 600 s ahead of the servers' (median of 2): ")
    assert "server0.example -599.5 s, server1.example -599.5 s" in check.evidence
    assert "more than the 60 s the configuration tolerates" in check.evidence
    assert check.fix is not None
    assert "NTP" in check.fix


def test_behind_is_named_as_behind() -> None:
    assert clock_check(dates_from(120), TOLERANCE).evidence.startswith("the host clock is 120 s behind")


def test_the_first_answer_of_a_host_counts() -> None:
    """A host asked for several CRLs, or on two ports (CRL and OCSP), counts once: its later answers would
    outvote the others."""
    dates = ServerDates(FixedClock(HOST_NOW))
    dates.observe("http://a.example/one.crl", date_header(0))
    dates.observe("http://a.example/two.crl", date_header(900))
    dates.observe("https://A.example:8443/ocsp", date_header(900))
    dates.observe("http://b.example/three.crl", date_header(900))

    assert dates.differences == {"a.example": dt.timedelta(seconds=0.5), "b.example": dt.timedelta(seconds=900.5)}


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-date"),
    pytest.param({"Date": ""}, id="empty"),
    pytest.param({"Date": "yesterday, around noon"}, id="garbled"),
    pytest.param({"Date": "Fri, 31 Feb 2026 12:00:00 GMT"}, id="impossible-day"),
])
def test_answers_without_a_usable_date_say_nothing(headers: dict[str, str]) -> None:
    dates = ServerDates(FixedClock(HOST_NOW))
    dates.observe("http://a.example/ca.crl", headers)

    check = clock_check(dates, TOLERANCE)

    assert (check.status, check.title) == ("warn", "host clock not compared")
    assert dates.differences == {}


def test_a_date_without_zone_is_utc() -> None:
    """RFC 5322 §3.3: "-0000" means UTC, with no statement about local time; Python reads it as naive."""
    dates = ServerDates(FixedClock(HOST_NOW))
    dates.observe("http://a.example/ca.crl", {"Date": "Fri, 27 Nov 2026 12:00:00 -0000"})

    assert dates.differences == {"a.example": dt.timedelta(seconds=0.5)}


@pytest.mark.parametrize(("tolerance", "offset", "status"), [
    pytest.param(5, 4, "pass", id="within-a-small-tolerance"),
    pytest.param(5, 8, "fail", id="past-a-small-tolerance-though-in-step"),
    pytest.param(0, 1, "pass", id="zero-tolerance-compared-at-dates-resolution"),
    pytest.param(0, 3, "fail", id="zero-tolerance-past-dates-resolution"),
])
def test_a_tolerance_below_ten_seconds_decides_alone(tolerance: int, offset: float, status: str) -> None:
    assert clock_check(dates_from(offset), dt.timedelta(seconds=tolerance)).status == status


@pytest.mark.parametrize(("offsets", "status", "title"), [
    pytest.param((0, 3600), "warn", "servers disagree about the time", id="two-servers-one-an-hour-off"),
    pytest.param((3600, 3600), "fail", "host clock wrong", id="two-servers-both-an-hour-off"),
    pytest.param((0, 3600, 3600), "fail", "host clock wrong", id="two-of-three-an-hour-off"),
    pytest.param((-3600, 0, 3600), "pass", "host clock in step", id="one-either-side"),
])
def test_the_host_is_called_wrong_only_when_a_majority_says_so(offsets: tuple[float, ...], status: str,
                                                               title: str) -> None:
    check = clock_check(dates_from(*offsets), TOLERANCE)
    assert (check.status, check.title) == (status, title)


def test_a_cached_answer_counts_its_age() -> None:
    """RFC 9111 §5.1: a cache passes the origin's Date on with Age, the seconds since; Date + Age is the time."""
    dates = ServerDates(FixedClock(HOST_NOW))
    dates.observe("http://cdn.example/ca.crl", {**date_header(-1800), "Age": "1800"})
    dates.observe("http://other.example/ca.crl", {**date_header(0), "Age": "not a number"})
    assert dates.differences == {"cdn.example": dt.timedelta(seconds=0.5),
                                 "other.example": dt.timedelta(seconds=0.5)}


@pytest.mark.parametrize("headers", [
    pytest.param({"Date": "Fri, 27 Nov 2026 12:00:00 GMT", "Age": "\u00b2"}, id="age-a-superscript-digit"),
    pytest.param({"Date": "Fri, 31 Dec 9999 23:59:59 GMT", "Age": "5"}, id="date-at-the-end-of-time"),
])
def test_odd_age_and_date_values_are_ignored_not_raised(headers: dict[str, str]) -> None:
    """observe runs inside every fetch readiness makes: a value it cannot use must not fail the fetch."""
    dates = ServerDates(FixedClock(HOST_NOW))
    dates.observe("http://a.example/ca.crl", headers)
    assert all(abs(d) < dt.timedelta(days=1) for d in dates.differences.values())
