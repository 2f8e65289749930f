"""XML Schema Part 2 datatypes of the attribute values the broker reads from SAML messages and metadata, by
their lexical spaces exactly. White space is collapsed as the types' whiteSpace facet says (§4.3.6): XML's
white space (XML 1.0 §2.3 S) only, not the other characters Unicode calls space that ``str.strip()`` removes.
Each raises ValueError for a value outside its type; callers turn it into their own refusal."""

from __future__ import annotations

import re

XML_SPACE = " \t\r\n"  # XML 1.0 §2.3 S: what whiteSpace="collapse" removes, unlike str.strip()

_NON_NEGATIVE = re.compile(r"\+?[0-9]+")  # ASCII digits only: int() would take other scripts' digits and "1_0"
_LARGE = 1 << 31


def boolean(text: str) -> bool:
    """xs:boolean (§3.2.2.1): "true", "false", "1" or "0", case included."""
    value = text.strip(XML_SPACE)
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"{text[:40]!r} is not an xs:boolean (true, false, 1 or 0)")


def non_negative_integer(text: str) -> int:
    """xs:nonNegativeInteger (§3.3.20: optional "+", digits), as an int; values past 2**31 are read as 2**31,
    which no count here comes near, so that no 4,300-digit value reaches ``int``."""
    value = text.strip(XML_SPACE)
    if not _NON_NEGATIVE.fullmatch(value):
        raise ValueError(f"{text[:40]!r} is not an xs:nonNegativeInteger")
    digits = value.lstrip("+").lstrip("0") or "0"
    return int(digits) if len(digits) <= 9 else _LARGE


def unsigned_short(text: str) -> int:
    """xs:unsignedShort (§3.3.23: a nonNegativeInteger up to 65535), the type of an endpoint's index."""
    try:
        number = non_negative_integer(text)
    except ValueError:
        number = None
    if number is None or number > 0xFFFF:
        raise ValueError(f"{text[:40]!r} is not an xs:unsignedShort (0 to 65535)")
    return number
