"""What ``broker serve``'s workers (broker/slow_clients.py FriendlyErrors) log of a request whose handling failed
outside the app (an error escaping the WSGI call, which gunicorn answers with its 500): gunicorn's line names
the request target, and at the SAML endpoints its query string is the message, its signature and the RelayState
(an SP's deep link, which may name a patient). The worker is built with just what the method touches."""

from __future__ import annotations

import socket
from typing import Any

from gunicorn.config import Config
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader

from broker.slow_clients import DeadlineSyncWorker

TARGET = b"/saml/idp/sso?SAMLRequest=fZJBT8MwDIX%2F&RelayState=%2Fpatient%2F191212121212&Signature=c2ln"


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def _write(self, msg: str, *args: Any, **_kwargs: Any) -> None:
        self.lines.append(msg % args if args else msg)

    exception = warning = error = info = debug = _write

    def access(self, *_args: Any) -> None:
        self.lines.append("(access line)")


def test_an_error_outside_the_app_is_logged_without_the_query_string() -> None:
    cfg = Config()
    worker = DeadlineSyncWorker.__new__(DeadlineSyncWorker)
    worker.cfg, worker.log, worker.wsgi = cfg, _Log(), None
    req = Request(cfg, IterUnreader([b"GET " + TARGET + b" HTTP/1.1\r\nHost: x\r\n\r\n"]), ("127.0.0.1", 5000), 1)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        try:
            raise RuntimeError("the response could not be written")
        except RuntimeError as exc:
            worker.handle_error(req, ours, ("127.0.0.1", 5000), exc)
        answer = theirs.recv(65536)
    assert answer.startswith(b"HTTP/1.1 500 ")
    logged = "\n".join(worker.log.lines)
    assert "Error handling request GET /saml/idp/sso?" in logged  # the request is still named, by its path
    for secret in ("SAMLRequest", "RelayState", "191212121212", "Signature"):
        assert secret not in logged
