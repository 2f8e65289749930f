"""xs:dateTime in SAML messages (SAML Core §1.3.3: UTC, "Z"): what parse_instant takes and refuses."""

from __future__ import annotations

import datetime as dt

import pytest

from broker.saml.xmltime import format_instant, parse_instant


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("2026-11-27T10:00:00Z", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC), id="seconds"),
    pytest.param("2026-11-27T10:00:00.123Z", dt.datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=dt.UTC),
                 id="milliseconds"),
    pytest.param("2026-11-27T10:00:00.123456789Z", dt.datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=dt.UTC),
                 id="nanoseconds-cut-to-microseconds"),
    pytest.param(" 2026-11-27T10:00:00Z\n", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC), id="collapsed-whitespace"),
])
def test_utc_instants_are_read(text: str, expected: dt.datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("2026-11-27T10:00:00", id="no-zone"),
    pytest.param("2026-11-27T10:00:00+01:00", id="offset"),
    pytest.param("2026-11-27 10:00:00Z", id="space-for-T"),
    # digits of other scripts, which Python's \\d and int() take: Arabic-Indic 2020-01-01T00:00:00Z
    pytest.param("\u0662\u0660\u0662\u0660-\u0660\u0661-\u0660\u0661T\u0660\u0660:\u0660\u0660:\u0660\u0660Z",
                 id="arabic-indic-digits"),
    pytest.param("2026-11-27T10:00:00.\u0661Z", id="non-ascii-fraction"),
    # whiteSpace="collapse" (XML Schema Part 2 §4.3.6) removes XML's white space (#x20, #x9, #xD, #xA) only
    pytest.param("2026-11-27T10:00:00Z\u3000", id="ideographic-space"),
    pytest.param("\u00a02026-11-27T10:00:00Z", id="no-break-space"),
    pytest.param("2026-11-27T10:00:00Z\x0b", id="vertical-tab"),
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a UTC xs:dateTime"):
        parse_instant(text)


@pytest.mark.parametrize("instant", [
    pytest.param(dt.datetime(2026, 11, 27, 10, 0, 0, tzinfo=dt.UTC), id="now"),
    # a municipal IdP's AuthnInstant is passed on to the SPs as read: a year below 1000 is still four digits
    # (XML Schema Part 2 §3.2.7.1), which strftime("%Y") does not write on glibc
    pytest.param(dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC), id="year-999"),
    pytest.param(dt.datetime(1, 1, 1, tzinfo=dt.UTC), id="year-1"),
])
def test_format_and_parse_agree(instant: dt.datetime) -> None:
    assert parse_instant(format_instant(instant)) == instant
