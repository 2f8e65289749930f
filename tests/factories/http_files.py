"""Real loopback HTTP servers for tests: a background-thread base and ``FileServer`` (CRLs over HTTP).

Each server binds 127.0.0.1 on a port the kernel picks, serves from a
background thread as soon as it is constructed, and must be stopped:
``with FileServer() as files: ...`` or ``server.stop()``. Stopping wakes
handlers sleeping in a ``slow`` answer and joins every thread, so nothing
outlives the test (pytest runs with ``filterwarnings = error``).

Answers are HTTP/1.0 with the connection closed after each one.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.factories.ports import free_port

HANDLER_SOCKET_TIMEOUT = 5.0  # a client that connects and never sends cannot hold stop() up longer than this


def closed_port_url(path: str = "/") -> str:
    """An http URL on a loopback port with nothing listening (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}/{path.lstrip('/')}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = HANDLER_SOCKET_TIMEOUT

    def do_GET(self) -> None:
        self.server.owner.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner.handle(self, "POST")

    def do_HEAD(self) -> None:
        self.server.owner.handle(self, "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no access log on stderr."""


class _Server(ThreadingHTTPServer):
    daemon_threads = False   # server_close() joins every handler thread ...
    block_on_close = True    # ... so none outlives stop()

    def __init__(self, owner: BackgroundHTTPServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client gave up (timeout, size limit): expected in these tests
        if exc is not None:
            self.owner.errors.append(exc)
        super().handle_error(request, client_address)


class BackgroundHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port>, serving from a background thread until ``stop()``.

    Subclasses implement ``handle(handler, method)``. Unexpected handler
    exceptions are kept in ``errors`` (and printed) so a test can assert none.
    """

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._stopped = False
        self._httpd = _Server(self)
        self.port: int = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving, close the socket and join all threads; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._httpd.shutdown()
        self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- for handlers ---

    def pause(self, seconds: float) -> None:
        """Sleep in a handler; returns early when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    @staticmethod
    def read_body(handler: BaseHTTPRequestHandler) -> bytes:
        length = handler.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return b""
        return handler.rfile.read(int(length))

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, code: int, body: bytes = b"", *,
             content_type: str | None = None, headers: Mapping[str, str] | None = None,
             declare_length: bool = True, head: bool = False) -> None:
        """One complete answer. ``declare_length=False`` omits Content-Length (the body ends at close)."""
        handler.send_response(code)
        if content_type is not None:
            handler.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if declare_length:
            handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if not head and body:
            handler.wfile.write(body)


@dataclass
class _Entry:
    data: bytes | None = None
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    status: int | None = None
    location: str | None = None
    redirect_code: int = 302


class FileServer(BackgroundHTTPServer):
    """Serves bytes at paths (GET and HEAD); counts requests per path in ``hits``.

    For each request to a path: sleep ``slow`` seconds, then answer the
    redirect if one is set, else the forced ``status`` if one is set (empty
    body), else the data put there, else 404. ``hits`` counts every request,
    including 404s, by path without the query string; unrequested paths read 0.
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        super().__init__()

    @staticmethod
    def _norm(path: str) -> str:
        return "/" + path.lstrip("/")

    def _entry(self, path: str) -> _Entry:
        return self._entries.setdefault(self._norm(path), _Entry())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{self._norm(path)}"

    def put(self, path: str, data: bytes, content_type: str = "application/pkix-crl",
            headers: Mapping[str, str] | None = None) -> str:
        """Serve ``data`` at ``path`` from now on; returns its URL. Keeps slow/status/redirect settings."""
        with self._lock:
            entry = self._entry(path)
            entry.data = data
            entry.content_type = content_type
            entry.headers = dict(headers or {})
        return self.url(path)

    def put_crl(self, path: str, crl: x509.CertificateRevocationList, *, pem: bool = False) -> str:
        """A CRL, DER (application/pkix-crl) or PEM; returns its URL."""
        encoding = serialization.Encoding.PEM if pem else serialization.Encoding.DER
        return self.put(path, crl.public_bytes(encoding),
                        "application/x-pem-file" if pem else "application/pkix-crl")

    def remove(self, path: str) -> None:
        """Forget the path and its settings: it answers 404 again."""
        with self._lock:
            self._entries.pop(self._norm(path), None)

    def slow(self, path: str, seconds: float) -> None:
        """Sleep this long before answering requests to ``path`` (0 turns it off)."""
        with self._lock:
            self._entry(path).delay = seconds

    def status(self, path: str, code: int | None) -> None:
        """Answer ``code`` with an empty body for ``path`` (None: serve the data again)."""
        with self._lock:
            self._entry(path).status = code

    def redirect(self, path: str, location: str | None, code: int = 302) -> None:
        """Answer ``code`` with ``Location: location`` for ``path`` (None: no redirect)."""
        with self._lock:
            entry = self._entry(path)
            entry.location = location
            entry.redirect_code = code

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        if method == "POST":
            self.read_body(handler)
        with self._lock:
            self.hits[path] += 1
            found = self._entries.get(path)
            entry = _Entry(**vars(found)) if found is not None else None  # a snapshot: settings may change
        head = method == "HEAD"
        if entry is None:
            self.send(handler, 404, b"not found\n", content_type="text/plain", head=head)
            return
        self.pause(entry.delay)
        if entry.location is not None:
            self.send(handler, entry.redirect_code, headers={"Location": entry.location}, head=head)
        elif entry.status is not None:
            self.send(handler, entry.status, head=head)
        elif entry.data is None:
            self.send(handler, 404, b"not found\n", content_type="text/plain", head=head)
        else:
            self.send(handler, 200, entry.data, content_type=entry.content_type, headers=entry.headers,
                      head=head)
