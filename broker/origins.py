"""Web origins (RFC 6454): where a page comes from, as browsers and the broker's own URLs name it."""

from __future__ import annotations

from urllib.parse import urlsplit

Origin = tuple[str, str, int | None]

_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url: str) -> Origin | None:
    """RFC 6454 §4: ``url``'s origin as the triple (scheme, host, port), scheme and host in lower case (a trailing
    dot of the host dropped) and the scheme's default port filled in, so that ``https://IdP.example:443`` (as an
    operator may write ``idp.base_url``) and ``https://idp.example`` (as a browser sends Origin, §6.2) are one
    origin; None when ``url`` names none (no host, a port that is no number): it equals no origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None
    scheme = parts.scheme.lower()
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)
