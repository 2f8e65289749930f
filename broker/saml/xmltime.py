"""xs:dateTime as SAML uses it (SAML Core §1.3.3: UTC, no time zone offset other than Z)."""

from __future__ import annotations

import datetime as dt
import re

from broker.saml.xstypes import XML_SPACE

# ASCII digits only: \d would take other scripts' digits, which int() reads (an AuthnInstant in Arabic-Indic digits)
_DATETIME = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?Z\Z")


def parse_instant(text: str) -> dt.datetime:
    """Parse ``2026-11-27T10:00:00Z`` (fractions allowed); raise ValueError otherwise."""
    # whiteSpace="collapse" (XML Schema Part 2 §4.3.6): XML's white space only, not str.strip()'s Unicode spaces
    m = _DATETIME.match(text.strip(XML_SPACE))
    if not m:
        raise ValueError(f"not a UTC xs:dateTime: {text[:100]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or ".0")[1:7].ljust(6, "0"))
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC)


def format_instant(instant: dt.datetime) -> str:
    """``2026-11-27T10:00:00Z``; SAML peers handle seconds precision everywhere (docs/standards.md). The year
    has four digits also below 1000 (XML Schema Part 2 §3.2.7.1), which ``strftime("%Y")`` does not write on
    glibc: an IdP's AuthnInstant is passed on as read."""
    t = instant.astimezone(dt.UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


# XML Schema Part 2 §3.2.6.1: PnYnMnDTnHnMnS, every field optional but one, T only before a time field; a sign is
# lexically allowed, but a negative duration is no time to cache anything for
_DURATION = re.compile(r"^P(?=[0-9T])(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)D)?"
                       r"(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+(?:\.[0-9]+)?)S)?)?\Z")
_DURATION_CAP = 3650 * 86400  # ten years: further than any refresh schedule looks (and no timedelta overflow)


def parse_duration(text: str) -> dt.timedelta:
    """A non-negative xs:duration (``PT1H``, ``P1DT12H``, ``PT0.5S``) as a timedelta, a month read as 28 days and a
    year as 365 (the shortest they can be: the value bounds how long something may be kept), at most ten years;
    ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"not a non-negative xs:duration: {text[:40]!r}")
    days_per = (365, 28, 1)
    seconds_per = (3600, 60, 1)
    total = 0.0
    for value, per in zip(m.groups()[:3], days_per, strict=True):
        if value:
            total += min(float(value[:12]), 1e12) * per * 86400
    for value, per in zip(m.groups()[3:], seconds_per, strict=True):
        if value:
            total += min(float(value[:20]), 1e12) * per
    return dt.timedelta(seconds=min(total, _DURATION_CAP))
