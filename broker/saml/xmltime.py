"""xs:dateTime as SAML uses it (SAML Core §1.3.3: UTC, no time zone offset other than Z)."""

from __future__ import annotations

import datetime as dt
import re

# ASCII digits only: \d would take other scripts' digits, which int() reads (an AuthnInstant in Arabic-Indic digits)
_DATETIME = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?Z\Z")


def parse_instant(text: str) -> dt.datetime:
    """Parse ``2026-11-27T10:00:00Z`` (fractions allowed); raise ValueError otherwise."""
    m = _DATETIME.match(text.strip())
    if not m:
        raise ValueError(f"not a UTC xs:dateTime: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or ".0")[1:7].ljust(6, "0"))
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC)


def format_instant(instant: dt.datetime) -> str:
    """``2026-11-27T10:00:00Z``; SAML peers handle seconds precision everywhere."""
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
