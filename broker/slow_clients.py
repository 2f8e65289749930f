"""gunicorn workers for ``broker serve`` that give each request a deadline for arriving (slow-client attacks).

gunicorn's threaded and sync workers read a request with blocking socket calls and no time limit: a client
that sends its request head one byte every few seconds ("slowloris", CWE-400) holds a worker thread for as long
as it likes, and a handful of such clients leave none for anyone else. Behind nginx this cannot happen (nginx
buffers whole requests before it passes them on); on a port reachable directly, the deadline below bounds what
each slow connection holds (many of them, reconnecting, still make others wait: docs/deployment.md).

Here every accepted connection's socket is one that gives each request ``request_timeout`` seconds, counted
from when a worker thread takes the request up, for everything read from the client (head and body); reads
past the deadline, or a client silent until then, look like the client closing the connection, so gunicorn
drops it the way it drops any client that went away (no thread blocked, no traceback in the log). Writing the
answer is not under the deadline (the time the broker takes to answer is not the client's), but each send gets
``request_timeout`` to make progress, so a client that stops reading does not hold a thread either. In the
threaded worker a new connection waits on the poller, not in a thread, until it sends its first byte
(:meth:`DeadlineThreadWorker.accept`).
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import re
import selectors
import socket
import ssl
import threading
import time
from functools import partial
from typing import Any

from flask import g
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http.message import Request as GunicornRequest
from gunicorn.http.wsgi import Response as GunicornResponse
from gunicorn.http.wsgi import default_environ
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import TConn, ThreadWorker
from gunicorn.workers.sync import SyncWorker

from broker.config.loader import Settings
from broker.reasons import reason
from broker.web.limits import ServerRefusal
from broker.web.services import CORRELATION_ENVIRON, correlation_id

log = logging.getLogger("broker.serve")


class DeadlineSocket(socket.socket):
    """A client connection whose reads share one deadline per request (see the module docstring).

    ``setblocking(True)`` is what gunicorn's workers call when a thread takes up the next request on the
    connection (a new one or a kept-alive one): it starts that request's deadline. ``setblocking(False)`` hands
    the connection back to the worker's poller between requests (keep-alive), where gunicorn's own keepalive
    timeout applies.
    """

    request_timeout: float
    _deadline: float | None
    _head: bytearray

    @classmethod
    def adopt(cls, sock: socket.socket, request_timeout: float) -> DeadlineSocket:
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.request_timeout = request_timeout
        adopted._deadline = None
        adopted._head = bytearray()
        return adopted

    @property
    def request_head(self) -> bytes:
        """The first :data:`HEAD_BYTES` read for the current request: its request line, for the refusal of a
        request gunicorn could not parse (:func:`refused_target`)."""
        return bytes(self._head)

    def _keep(self, data: bytes | memoryview) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += data[:HEAD_BYTES - len(self._head)]

    def setblocking(self, flag: bool) -> None:
        if flag:
            self._deadline = time.monotonic() + self.request_timeout
            self._head = bytearray()
            super().settimeout(self.request_timeout)
        else:
            self._deadline = None
            super().setblocking(False)

    def _remaining(self) -> float | None:
        """Seconds left for this request's reads (None: not blocking, the poller's business); <= 0: none."""
        if self._deadline is None:
            return None
        return self._deadline - time.monotonic()

    def _late(self) -> None:
        try:
            peer = self.getpeername()
        except OSError:
            peer = "?"
        log.warning("client %s did not send its request within %.0f s; connection closed", peer,
                    self.request_timeout)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        remaining = self._remaining()
        if remaining is None:
            return super().recv(bufsize, flags)
        if remaining <= 0:
            self._late()
            return b""
        super().settimeout(remaining)
        try:
            data = super().recv(bufsize, flags)
        except TimeoutError:
            self._late()
            return b""
        self._keep(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        remaining = self._remaining()
        if remaining is None:
            return super().recv_into(buffer, nbytes, flags)
        if remaining <= 0:
            self._late()
            return 0
        super().settimeout(remaining)
        try:
            received = super().recv_into(buffer, nbytes, flags)
        except TimeoutError:
            self._late()
            return 0
        self._keep(memoryview(buffer)[:received])
        return received

    def send(self, data: Any, flags: int = 0) -> int:
        if self._deadline is not None:
            super().settimeout(self.request_timeout)
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self._deadline is not None:
            super().settimeout(self.request_timeout)
        super().sendall(data, flags)


class _Listener:
    """A gunicorn listener whose accepted connections are :class:`DeadlineSocket` s; everything else is the
    listener's own."""

    def __init__(self, listener: Any, request_timeout: float) -> None:
        self._listener = listener
        self._request_timeout = request_timeout

    def accept(self) -> tuple[DeadlineSocket, Any]:
        sock, address = self._listener.accept()
        return DeadlineSocket.adopt(sock, self._request_timeout), address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listener, name)


def _request_timeout(worker: Any) -> float:
    return float(worker.app.request_timeout)


# What gunicorn refuses before the app sees a request (its request-line, header-count and field-size limits, a
# request it cannot parse), as the broker's reason, and the HTTP status where it is not the reason's own
_GUNICORN_REFUSALS: tuple[tuple[type[Exception], str, int | None], ...] = (
    (http_errors.LimitRequestLine, "request_uri_too_long", None),
    (http_errors.LimitRequestHeaders, "request_headers_too_large", None),
    (http_errors.UnsupportedTransferCoding, "request_invalid", 501),
    (http_errors.ExpectationFailed, "request_invalid", 417),
    (http_errors.ForbiddenProxyRequest, "request_invalid", 403),
    (http_errors.ParseException, "request_malformed", None),
    (ssl.SSLError, "request_invalid", 403),
)


_NOT_THE_CLIENTS = (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName,
                    http_errors.ConfigurationProblem)


class FriendlyErrors:
    """gunicorn workers whose own refusals (:data:`_GUNICORN_REFUSALS`) are the broker's error page: bilingual,
    with a reference ID that the warning line in the log names (and, at a login endpoint, the audit trail:
    :func:`refused_target`), and the security headers of every page, instead of gunicorn's bare English HTML.
    Anything else (or a page that cannot be made) is gunicorn's as before."""

    wsgi: Any
    log: Any
    cfg: Any

    def handle_error(self, req: Any, client: Any, addr: Any, exc: Exception) -> None:
        refusal = next(((code, status) for kind, code, status in _GUNICORN_REFUSALS if isinstance(exc, kind)), None)
        # a response header the app got wrong, or gunicorn's configuration, is no client's fault: gunicorn's 500
        if refusal is None or isinstance(exc, _NOT_THE_CLIENTS):
            if isinstance(req, GunicornRequest) and isinstance(req.uri, str):
                # gunicorn's "Error handling request" line names req.uri: the query string left out, as below
                req.uri = without_query(req.uri)
            super().handle_error(req, client, addr, exc)  # type: ignore[misc]
            return
        try:
            answer = _error_answer(self.wsgi, *refusal, exc, (addr or ("", -1))[0], refused_target(client))
        except Exception:  # the page is a courtesy: never worse than gunicorn's own
            super().handle_error(req, client, addr, exc)  # type: ignore[misc]
            return
        cid, status, data = answer
        self.log.warning("[%s] invalid request from ip=%s: %s", cid, (addr or ("?",))[0], without_query(str(exc)))
        try:
            util.write_nonblock(client, data)
        except OSError:
            self.log.debug("Failed to send error message.")
        # the access line gunicorn writes for a request it parsed far enough (Worker.handle_error); some of its
        # exceptions carry the raw request line as ``req`` (InvalidRequestLine), which is no request to log
        req = req if isinstance(req, GunicornRequest) else getattr(exc, "req", None)
        if isinstance(req, GunicornRequest):
            try:
                environ = default_environ(req, client, self.cfg)
                environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = (addr or ("", -1))[0], str((addr or ("", -1))[1])
                environ[CORRELATION_ENVIRON] = cid
                resp = GunicornResponse(req, client, self.cfg)
                resp.status = status
                resp.response_length = len(data)
                resp.sent = len(data) - data.index(b"\r\n\r\n") - 4  # the page's bytes, as gunicorn counts them
                self.log.access(resp, req, environ, dt.timedelta(0))
            except Exception:  # the log line is a courtesy too: the answer has gone out
                self.log.debug("no access line for the refused request", exc_info=True)


def without_query(text: str) -> str:
    """gunicorn's words for a refused request with whatever follows a ``?`` left out: a refused request target
    (InvalidRequestLine) is named whole, query string included, which at the SAML endpoints is the message, its
    signature and the RelayState (an SP's deep link, which may name a patient). They stay out of the log, as out
    of the access line (:mod:`broker.access_log`); the path is enough to tell which request it was."""
    at = text.find("?")
    return text if at < 0 else text[:at] + "?… (query string left out)"


HEAD_BYTES = 1024
"""How much of each request :class:`DeadlineSocket` keeps: its method and path, past a long query's start."""

_METHOD = re.compile(rb"[A-Za-z]{1,20}")
_PATH = re.compile(rb"/[\x21-\x7e]*")  # visible ASCII: a path the app could have routed (RFC 9112 §3.2)


def refused_target(client: Any) -> tuple[str, str] | None:
    """The method and path of the request on ``client`` that gunicorn refused, from its request line as the
    socket read it (no query: a refused query is never repeated); None when they cannot be told (the line is not
    there, or not of the form "METHOD /path")."""
    head = getattr(client, "request_head", b"")
    method, _, rest = head.partition(b" ")
    target = rest.split(b" ", 1)[0].split(b"\r", 1)[0]
    path = target.split(b"?", 1)[0]
    complete = b"?" in target or b" " in rest  # a path cut off by HEAD_BYTES is no path
    if not complete or not _METHOD.fullmatch(method) or not _PATH.fullmatch(path):
        return None
    return method.decode("ascii"), path.decode("ascii")


def _error_answer(app: Any, code: str, status: int | None, exc: Exception,
                  address: str, target: tuple[str, str] | None = None) -> tuple[str, str, bytes]:
    """The broker's error page for ``code`` as HTTP/1.1 bytes (``Connection: close``), its reference ID and its
    status line's status. ``target`` (method, path) is the refused request's where known: at a login endpoint
    the refusal is audited under the page's reference, as the app's own refusals are (broker.app)."""
    method, path = target or ("GET", "/")
    with app.test_request_context(path, method=method, environ_base={"REMOTE_ADDR": address}):
        app.preprocess_request()
        g.started = None  # no latency sample: this request was not served (broker.app observe_latency)
        cid = correlation_id()
        # the detail is audited: not the raw request line gunicorn quotes (its query), which the log has
        detail = "the request line is not valid HTTP" if isinstance(exc, http_errors.InvalidRequestLine) \
            else str(exc)[:200]
        response = app.make_response(app.handle_http_exception(
            ServerRefusal(status or reason(code).http_status, code, detail)))
        response = app.process_response(response)
        body = response.get_data()
    head = [f"HTTP/1.1 {response.status}"]
    head += [f"{name}: {value}" for name, value in response.headers.items()
             if name.lower() not in ("content-length", "connection")]
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return cid, response.status, "\r\n".join(head).encode("latin-1") + body


STOP_PENDING_LINGER = 1.0
"""Seconds a stopping worker still waits for a pending connection's request (:meth:`DeadlineThreadWorker.
murder_pending`)."""


class DeadlineThreadWorker(FriendlyErrors, ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, its connections under :class:`DeadlineSocket`, a new connection given a thread
    only once it has sent something."""

    def accept(self, listener: Any) -> None:
        """Take a new connection and wait on the worker's poller, not in a thread, until it sends something.

        gunicorn 27 hands a new connection to a pool thread at once, and the thread waits up to 5 s for the first
        byte before it gives the connection back to the poller: a few hundred connections that send nothing
        (opened by a careless client or on purpose) kept every thread waiting, and real requests queued behind
        them for minutes. Here the connection waits where waiting is free, as a pending one, for
        ``request_timeout`` seconds; silent that long, it is closed (gunicorn's ``murder_pending``). Once
        readable, gunicorn's own callback gives it a thread, and the request's deadline starts.
        """
        try:
            client, address = _Listener(listener, _request_timeout(self)).accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())  # non-blocking from here
        conn.timeout = time.monotonic() + _request_timeout(self)
        self.pending_conns.append(conn)  # every entry waits request_timeout: the deque stays in deadline order
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def murder_pending(self) -> None:
        """Close pending connections past their deadline. Once the worker is stopping, every deadline is at most
        :data:`STOP_PENDING_LINGER` away: a connection that has sent nothing has no request to finish, and would
        hold a graceful stop for ``request_timeout`` (past ``docker stop``'s 10 s, which then kills the worker
        before the audit chain is sealed). Not closed at once: a connection accepted in the worker's last turn
        usually has its request on the way or already waiting, and the poller hands it to a thread first
        (closed unanswered, an SP's or IdP's POST is lost: nginx does not send a POST again)."""
        if not self.alive and not getattr(self, "_pending_capped", False):
            self._pending_capped = True
            deadline = time.monotonic() + min(STOP_PENDING_LINGER, _request_timeout(self))
            for conn in self.pending_conns:  # the same cap for all keeps the deque in deadline order
                conn.timeout = min(conn.timeout, deadline)
        super().murder_pending()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT or SIGINT (the master's quick shutdown): end the worker at once.

        gunicorn 27's gthread worker shuts its thread pool down here, in the signal handler. When the signal
        lands while the main thread is inside the pool's ``submit`` (which holds the pool's shutdown lock, not
        re-entrant), the handler waits for a lock its own thread holds: the worker hangs for good, and outlives
        its master if that is killed (seen in a test run: an orphaned worker holding the port). The pool is shut
        down from another thread instead, which gets the lock once ``SystemExit`` (raised by gunicorn's base
        handler) has unwound ``submit``.
        """
        threading.Thread(target=self.tpool.shutdown, kwargs={"wait": False}, name="pool-shutdown",
                         daemon=True).start()
        Worker.handle_quit(self, sig, frame)


def longest_request_seconds(settings: Settings, request_timeout: float) -> float:
    """The longest a request may take within the configuration's own deadlines, in seconds: its arrival
    (``request_timeout``); for a certificate login every certificate of the longest path asking each revocation
    source in turn, each within its timeout: OCSP at the configured responder, or at two from the certificate's
    AIA; each configured CRL URL and two distribution points of the certificate's, each with a second more for
    a background refresh of it that may hold its lock; and a margin for Redis and the audit trail. The sync
    worker keeps gunicorn's arbiter from killing a request younger than this (DeadlineSyncWorker), and lets it
    kill one that is older."""
    revocation = 0.0
    for m in settings.municipalities.values():
        login = m.config.certificate
        if login is None or login.revocation.mode == "none":
            continue
        r = login.revocation
        ocsp = (1 if r.ocsp.url is not None else 2) * r.ocsp.timeout.seconds if "ocsp" in r.methods else 0.0
        crl_sources = len(r.crl.urls) + (2 if r.crl.distribution_points else 0)
        crl = max(crl_sources, 1) * (r.crl.timeout.seconds + 1.0) if "crl" in r.methods else 0.0
        revocation = max(revocation, (login.max_chain_depth + 1) * (ocsp + crl))
    return request_timeout + revocation + 30.0


class DeadlineSyncWorker(FriendlyErrors, SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker (``threads: 1``), its connections under :class:`DeadlineSocket`, alive for gunicorn's
    arbiter while it serves a request for as long as a request may take.

    The sync worker tells the arbiter it is alive only between requests, and the arbiter kills one silent for
    gunicorn's ``timeout`` (30 s), mid-request, with gunicorn's bare 500 and no outcome in the audit trail. A
    certificate login may take longer within the configuration's own deadlines (an OCSP responder and then a
    CRL server that never answer: 3 s + 30 s by default, per certificate of the path). A thread tells the arbiter
    instead, as the gthread worker's loop does while its threads serve (``threads`` > 1), but only until the
    request is as old as the configuration in force allows any request to be (:func:`longest_request_seconds`):
    a worker stuck past that (a deadlock, a loop that never ends) falls silent, and the arbiter replaces it as
    before.
    """

    _request_started: float | None = None

    def run(self) -> None:
        def heartbeat() -> None:
            # on as long as a request runs, also once the worker is stopping (a reload's old workers finish theirs)
            while self.alive or self._request_started is not None:
                started = self._request_started
                if started is None or time.monotonic() - started < self._longest_request():
                    self.notify()
                time.sleep(max(self.timeout / 4, 0.5))

        threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
        super().run()

    def _longest_request(self) -> float:
        """:func:`longest_request_seconds` of the configuration in force now (a reload may change its timeouts)."""
        services = getattr(getattr(self, "wsgi", None), "extensions", {}).get("broker")
        if services is None:
            return float(getattr(self.app, "longest_request", 0.0))
        return longest_request_seconds(services.settings, _request_timeout(self))

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> Any:
        self._request_started = time.monotonic()
        try:
            return super().handle_request(listener, req, client, addr)
        finally:
            self._request_started = None

    def accept(self, listener: Any) -> None:
        super().accept(_Listener(listener, _request_timeout(self)))
