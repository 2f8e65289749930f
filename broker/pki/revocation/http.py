"""Fetching revocation data over HTTP with hard limits.

urllib3 with retries off; a total deadline on top of its connect/read
timeouts; bodies streamed and cut off past a size limit; redirects followed
only for GET, at most three, and never to another scheme.

The total deadline is a watchdog (:class:`broker.pki.deadline.SocketDeadline`), not a check between
reads: urllib3's timeouts bound each socket operation, so a peer that sends a byte a second (its status
line, its headers or its body) was never cut off, and one OCSP responder could hold a login for as long as
it liked. Every connection made here reports its socket to the fetch it serves; when the deadline passes,
the watchdog shuts the socket down and the blocked read returns at once.

Name resolution comes before any socket exists, so no watchdog can cut it short: connections are made by
:func:`broker.pki.deadline.connect_within`, which resolves the name within the time the fetch has left. The host
name still names the server for https (SNI, the certificate's name), as before.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from broker.pki.deadline import ResolutionTimeout, SocketDeadline, connect_within

_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float
    total_timeout: float
    max_bytes: int


class FetchError(Exception):
    """The fetch failed; ``timeout`` tells a slow peer from an unreachable or misbehaving one; ``status`` is the
    HTTP status of an answer other than 200 (None when there was none)."""

    def __init__(self, message: str, *, timeout: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.status = status


_watching = threading.local()  # the deadline of the fetch running on this thread, if any


def _attach_to_current(sock: socket.socket | None) -> None:
    deadline: SocketDeadline | None = getattr(_watching, "current", None)
    if deadline is not None:
        deadline.attach(sock)


def _connect_within(conn: HTTPConnection, deadline: SocketDeadline) -> socket.socket:
    """urllib3's ``_new_conn`` under a fetch's deadline (:func:`connect_within`). Raises urllib3's exceptions, as
    ``_new_conn`` does."""
    host = conn._dns_host.strip("[]")  # the name urllib3 itself would resolve
    try:
        sock = connect_within(host, conn.port, deadline,
                              timeout=conn.timeout if isinstance(conn.timeout, (int, float)) else None,
                              socket_options=conn.socket_options or (), source_address=conn.source_address)
    except RuntimeError:
        # the interpreter is exiting (concurrent.futures takes no new work then): a background refresh still
        # running fails as a fetch that cannot connect, not with a traceback
        raise urllib3.exceptions.NewConnectionError(conn, "the process is shutting down") from None
    except ResolutionTimeout as exc:
        raise urllib3.exceptions.ConnectTimeoutError(
            conn, f"name resolution of {conn.host} not complete within the time left") from exc
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise urllib3.exceptions.ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})") from exc
    except OSError as exc:
        raise urllib3.exceptions.NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
    sys.audit("http.client.connect", conn, conn.host, conn.port)
    return sock


class _Watched:
    """Mixed into urllib3's connections: connects within the running fetch's deadline, name resolution included,
    and reports the socket to its watchdog when it connects and whenever it sends a request (a kept-alive
    connection serves a later fetch without connecting again)."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        deadline: SocketDeadline | None = getattr(_watching, "current", None)
        if deadline is None:
            return cast(socket.socket, super()._new_conn())  # type: ignore[misc]
        return _connect_within(cast(HTTPConnection, self), deadline)

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _attach_to_current(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        _attach_to_current(self.sock)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class HttpFetcher:
    """A small HTTP client for OCSP and CRL fetching; one connection pool per process. ``observe``, when given,
    sees the URL and headers of every answer (readiness compares their ``Date`` with the host clock)."""

    def __init__(self, user_agent: str = "broker-revocation/1",
                 observe: Callable[[str, Mapping[str, str]], None] | None = None,
                 max_timeout: float | None = None) -> None:
        """``max_timeout`` caps every fetch's connect and total timeouts, whatever its limits say (readiness:
        ``readiness.timeout`` per network check, below a municipality's 30 s for a CRL download)."""
        self._pool = urllib3.PoolManager(num_pools=16, maxsize=4, block=False, retries=False)
        self._pool.pool_classes_by_scheme = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}
        self._headers = {"User-Agent": user_agent}
        self._observe = observe
        self._max_timeout = max_timeout

    def capped(self, limits: FetchLimits) -> FetchLimits:
        """``limits`` as this fetcher applies them: its connect and total timeouts no longer than ``max_timeout``.
        A caller that spends one deadline on several fetches (an OCSP request sent again by the other method)
        counts from these."""
        if self._max_timeout is None:
            return limits
        return replace(limits, connect_timeout=min(limits.connect_timeout, self._max_timeout),
                       total_timeout=min(limits.total_timeout, self._max_timeout))

    def get(self, url: str, limits: FetchLimits, accept: str) -> bytes:
        return self._request("GET", url, None, {"Accept": accept}, limits)

    def post(self, url: str, body: bytes, content_type: str, accept: str, limits: FetchLimits) -> bytes:
        return self._request("POST", url, body, {"Content-Type": content_type, "Accept": accept}, limits)

    def _request(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
                 limits: FetchLimits) -> bytes:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise FetchError(f"unsupported URL scheme {scheme!r}")
        limits = self.capped(limits)
        with SocketDeadline(limits.total_timeout) as watchdog:
            _watching.current = watchdog
            try:
                data = self._fetch(method, url, body, headers, limits)
            except FetchError as exc:
                # a read whose own timeout (the time left) ran out at the deadline, a moment before the watchdog
                # noticed it, is the same event: reported as the deadline
                if not (watchdog.expired or (exc.timeout and watchdog.remaining() <= 0)):
                    raise
                data = None
            finally:
                _watching.current = None
            # past the deadline, whatever came back is cut short (http.client may even take a status line
            # broken off by the shutdown for an HTTP/0.9 answer): never used
            if watchdog.expired or data is None:
                raise FetchError(f"{url}: timed out (no complete answer within {limits.total_timeout:g} s)",
                                 timeout=True)
            return data

    def _fetch(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
               limits: FetchLimits) -> bytes:
        scheme = urlsplit(url).scheme
        deadline = time.monotonic() + limits.total_timeout
        for _hop in range(4):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError(f"no answer from {url} within {limits.total_timeout:g} s", timeout=True)
            timeout = urllib3.Timeout(connect=min(limits.connect_timeout, remaining), read=remaining)
            try:
                response = self._pool.request(method, url, body=body, headers={**self._headers, **headers},
                                              redirect=False, retries=False, preload_content=False,
                                              timeout=timeout)
            except urllib3.exceptions.NewConnectionError as exc:  # (a subclass of ConnectTimeoutError)
                raise FetchError(f"{url}: cannot connect ({exc})") from None
            except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ConnectTimeoutError) as exc:
                raise FetchError(f"{url}: timed out ({exc})", timeout=True) from None
            except urllib3.exceptions.HTTPError as exc:
                raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
            try:
                if self._observe is not None:
                    self._observe(url, response.headers)
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if method != "GET" or not location:
                        raise FetchError(f"{url}: HTTP {response.status} redirect not followed",
                                         status=response.status)
                    try:
                        target = urljoin(url, location)
                        target_scheme = urlsplit(target).scheme
                    except ValueError as exc:  # urllib.parse refuses it (an IPv6 host without its "]")
                        raise FetchError(f"{url}: redirect to an unusable location ({location}): {exc}",
                                         status=response.status) from None
                    if target_scheme != scheme:
                        raise FetchError(f"{url}: redirect to another scheme ({target}) refused")
                    response.close()  # the body of a redirect is not read: drop the connection
                    url = target
                    continue
                if response.status != 200:
                    raise FetchError(f"{url}: HTTP {response.status}", status=response.status)
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
                    raise FetchError(f"{url}: {declared} bytes exceed the limit of {limits.max_bytes}")
                data = self._read(response, url, limits, deadline)
            except BaseException:
                response.close()  # an abandoned answer: close its socket now, not at garbage collection
                raise
            response.release_conn()
            return data
        raise FetchError(f"{url}: too many redirects")

    @staticmethod
    def _read(response: urllib3.BaseHTTPResponse, url: str, limits: FetchLimits, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.stream(65536):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchError(f"{url}: answer exceeds the limit of {limits.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: answer not complete within {limits.total_timeout:g} s", timeout=True)
                chunks.append(chunk)
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
            raise FetchError(f"{url}: timed out while reading ({exc})", timeout=True) from None
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
        return b"".join(chunks)
