"""Size limits on what a request may carry, checked before anything reads it.

The body: Flask's ``MAX_CONTENT_LENGTH`` (set by :func:`broker.app.create_app` from the largest SAML message
either side accepts) answers 413 ``request_too_large``; ``MAX_FORM_MEMORY_SIZE`` bounds one form field in memory
and ``MAX_FORM_PARTS`` the parts of a multipart body (413 too; no SAML binding uses multipart). Here, the rest:

* the query string (HTTP-Redirect binding messages travel in it): at most :data:`MAX_QUERY_BYTES`, else 414
  ``request_uri_too_long``. Real AuthnRequests and LogoutRequests are 1-3 KiB deflated and encoded; the
  limit matches what the proxy and gunicorn accept on the request line (``broker.serving``);
* the headers, apart from the proxy's certificate headers (the certificate and, if configured, its chain: each
  has its own limit, ``client_certificate.proxy.max_bytes``): at most :data:`MAX_HEADER_BYTES` in all, else 431
  ``request_headers_too_large`` (RFC 6585 §5).

The front servers usually refuse sooner (gunicorn: request line 8190 bytes, each header 8190 bytes); these
limits hold whatever server runs the app (the demo's, another WSGI server) and give the user the bilingual
page with a reference number instead of a bare status line.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, MutableMapping
from typing import Any

from werkzeug.exceptions import HTTPException

from broker.errors import RequestRejected

MAX_QUERY_BYTES = 8192
MAX_HEADER_BYTES = 32768
MAX_FORM_PARTS = 64  # the broker's own form has four fields; SAML HTTP-POST forms two or three


def certificate_header_room(max_bytes: int) -> int:
    """How long a certificate header may be before it counts as an ordinary header, and what one header line
    may hold under ``broker serve``: a little over the proxy limit ``max_bytes``, so that a header just past
    that is refused by its own check (``proxy_header_too_large``, which says which limit) rather than as headers
    too large ("clear your cookies")."""
    return max_bytes + 1024


def header_field_size(max_bytes: int, header: str, chain_header: str | None) -> int:
    """gunicorn's ``limit_request_field_size`` under ``broker serve`` (one header line, name included): room for
    the proxy's certificate header (:func:`certificate_header_room`), and never less than gunicorn's own 8190.
    Set when the server starts; a reload cannot change it."""
    return max(8190, certificate_header_room(max_bytes) + max(len(header), len(chain_header or "")) + 4)


def check_request_size(query_string: bytes, headers: Iterable[tuple[str, str]],
                       certificate_headers: Collection[str], certificate_bytes: int) -> None:
    """Raise ``request_uri_too_long`` or ``request_headers_too_large`` for a request past the limits;
    ``certificate_headers`` (the proxy's, limited on their own) do not count up to ``certificate_bytes`` (a
    little over their own limit, so that they are refused as too large by their own check, which says so);
    beyond it they count like any header (a client's copies, repeated or joined, are no certificate)."""
    if len(query_string) > MAX_QUERY_BYTES:
        raise RequestRejected("request_uri_too_long",
                              f"query string of {len(query_string)} bytes (limit {MAX_QUERY_BYTES})")
    exempt = {name.lower() for name in certificate_headers}
    # name, ": ", value, CRLF: what the header occupies on the wire (HTTP/1.1)
    total = sum(len(name) + len(value) + 4 - (min(len(value), certificate_bytes) if name.lower() in exempt else 0)
                for name, value in headers)
    if total > MAX_HEADER_BYTES:
        raise RequestRejected("request_headers_too_large", f"{total} bytes of headers besides the certificate "
                                                           f"headers (limit {MAX_HEADER_BYTES})")


def buffer_streamed_body(environ: MutableMapping[str, Any], max_bytes: int) -> None:
    """A body streamed without Content-Length (Transfer-Encoding: chunked, RFC 9112 §7.1), read here to at most
    ``max_bytes`` and handed on with its length, as a body that gave one; past the limit, ``request_too_large``.

    werkzeug reads such a body (where the server ends it: ``wsgi.input_terminated``) up to ``MAX_CONTENT_LENGTH``
    and silently drops the rest: a form past the limit arrived cut off, as a SAML message it could not decode or a
    form without its fields, instead of the 413 a body announcing its length gets. Nothing has read the body yet
    (the app's first before-request function calls this)."""
    if environ.get("CONTENT_LENGTH") or "wsgi.input_terminated" not in environ \
            or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return  # a length werkzeug checks against the limit itself, or no body werkzeug would read
    try:
        body = environ["wsgi.input"].read(max_bytes + 1)
    except Exception as exc:  # what the server's reader raises is of the server's own types
        # the client broke the chunked coding (gunicorn: InvalidChunkSize, ChunkMissingTerminator, plain
        # Exceptions) or went away mid-body (NoMoreData, an OSError): its fault, a malformed request (400), as
        # werkzeug calls a body it cannot read (ClientDisconnected), not the broker's (500). Nothing reads the
        # broken stream again: the error page looks for a form's lang, which would raise the same once more
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(b""), "0"
        raise RequestRejected("request_malformed", f"a streamed body that broke off ({type(exc).__name__})") \
            from None
    if len(body) > max_bytes:
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(b""), "0"  # nothing further reads the rest
        raise RequestRejected("request_too_large", f"a streamed body past {max_bytes} bytes")
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))


class ServerRefusal(HTTPException):
    """A request the HTTP server refused before the app saw it (``broker serve``: gunicorn's request-line,
    header and parsing limits, :mod:`broker.slow_clients`), answered by the app as its own refusals are: the
    page for ``reason`` with ``status``, audited under the page's reference at a login endpoint."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(description=detail)
        self.code = status
        self.reason = reason
