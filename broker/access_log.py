"""The HTTP access log of ``broker serve``: one short line per request, joinable to the audit trail.

gunicorn's own access log writes the whole request line, which at the SAML endpoints is the AuthnRequest,
its signature and the RelayState (up to 8 kB per line), and builds for every request a dictionary of every
request header, response header and WSGI variable, the certificate header among them. This one writes what
an operator needs to follow a request and nothing a SAML message carries::

    127.0.0.1 - [27/Nov/2026:10:00:00 +0000] "GET /saml/idp/sso HTTP/1.1" 200 5821 3.1ms 3F9A-C21B-77D0-1E2F "curl/8"

the peer's address (the reverse proxy's, behind one: the user's own address is in the audit events), the
time, the method, the path as received (percent-encoded) without the query string, the protocol, the status,
the bytes sent, the time taken, the correlation ID the broker gave the request (the reference ID of the error
pages and of every audit event of the login; ``-`` when the request got none, e.g. ``/healthz``) and the user
agent. Values the client chose are written as JSON string contents (quotes, backslashes, control and non-ASCII
characters escaped), so no request can forge a line or break one.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

from gunicorn.glogging import Logger

from broker.web.services import CORRELATION_ENVIRON


def _escaped(value: str) -> str:
    """``value`` as the contents of a JSON string: printable ASCII only, ``"`` and ``\\`` escaped."""
    return encode_basestring_ascii(value)[1:-1]


def access_line(environ: Mapping[str, Any], status: str | int, sent: int | None, took: dt.timedelta,
                when: str) -> str:
    """The access line of one request, from its WSGI ``environ`` and what was answered."""
    target = str(environ.get("RAW_URI") or environ.get("PATH_INFO") or "")
    path = target.split("?", 1)[0]
    code = status.split(None, 1)[0] if isinstance(status, str) else str(status)
    agent = environ.get("HTTP_USER_AGENT")
    correlation = environ.get(CORRELATION_ENVIRON) or "-"
    milliseconds = took.total_seconds() * 1000
    return (f'{environ.get("REMOTE_ADDR") or "-"} - {when} '
            f'"{_escaped(str(environ.get("REQUEST_METHOD", "-")))} {_escaped(path)} '
            f'{_escaped(str(environ.get("SERVER_PROTOCOL", "-")))}" {_escaped(code)} '
            f'{"-" if sent is None else sent} {milliseconds:.1f}ms {_escaped(str(correlation))} '
            f'"{_escaped(str(agent)) if agent else "-"}"')


class AccessLog(Logger):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's logger with :func:`access_line` as the access log (``logger_class``); error log unchanged."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: dt.timedelta) -> None:
        if not self.access_log_enabled:
            return
        try:
            line = access_line(environ, resp.status, getattr(resp, "sent", None), request_time,
                               time.strftime("[%d/%b/%Y:%H:%M:%S %z]"))
            self.access_log.info("%s", line)
        except Exception:  # a log line must never fail the request it describes
            self.error(traceback.format_exc())
