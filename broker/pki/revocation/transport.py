"""How an OCSP request reaches its responder: by GET or by POST (RFC 5019 §5, RFC 6960 Appendix A.1).

RFC 6960 allows both; RFC 5019 §5 asks for GET whenever the URL, the encoded request included, is at most 255
bytes, so that HTTP caches (a CDN in front of the responder) can serve the answer, and some lightweight
responders answer nothing else. A municipality's ``ocsp.http_method`` chooses:

* ``auto`` (the default): GET for a request without a nonce that fits in 255 bytes, POST otherwise. A nonce makes
  the answer one of a kind, which no cache can serve, so GET would buy nothing for it;
* ``get``: GET whenever the request fits, with or without a nonce;
* ``post``: POST always (a responder that mishandles GET).

A responder that refuses the method (HTTP 405 Method Not Allowed, or 501 Not Implemented) is asked once more by the
other method, within what is left of the same deadline, and this process remembers, per responder URL, the method
it accepted, so that the next login does not pay for the refusal again. Under ``post`` nothing else is tried: GET
is what the operator ruled out.

A GET is also sent again by POST when it is answered 400 or 404, with an OCSP ``malformedRequest``, or with no
OCSP response at all: what a responder built for POST alone says when it takes the request in the path for a
resource it does not have, reads the missing body as a request, or leaves the GET to its web server's own
page (and what IIS in front of a Microsoft Online Responder answers, 404.11, to a request whose base64 holds a
"+", %2B, unless its request filtering allows double escaping). RFC 6960 Appendix
A.1 makes POST the one method every responder serves, so the default ``auto`` costs such a responder one refused
GET per process (a round trip within the first login's deadline), not a failed login.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

from cryptography.x509 import ocsp

from broker.pki.revocation.http import FetchError, FetchLimits, HttpFetcher
from broker.pki.revocation.ocsp import get_url

HttpMethod = Literal["GET", "POST"]
MethodSetting = Literal["auto", "get", "post"]

REQUEST_TYPE = "application/ocsp-request"
RESPONSE_TYPE = "application/ocsp-response"

# the answers that say "not this method" (RFC 9110 §15.5.6, §15.6.2); any other failure is the responder's own
_METHOD_REFUSED = frozenset({405, 501})
# and what a responder that serves POST alone may answer a GET with (RFC 9110 §15.5.1, §15.5.5)
_GET_NOT_SERVED = _METHOD_REFUSED | {400, 404}
# responders remembered at most (each an AIA URL of a configured CA): a bound, not a working size
_REMEMBERED_AT_MOST = 4096

log = logging.getLogger("broker.revocation")


@dataclass(frozen=True)
class OcspExchange:
    """A responder's answer (the raw DER, not yet verified) and the method that got it."""

    der: bytes
    method: HttpMethod


class OcspTransport:
    """Sends OCSP requests by the method the municipality's setting and the responder's past refusals call for.
    One per process (held by the revocation checker); thread-safe."""

    def __init__(self, fetcher: HttpFetcher) -> None:
        self._fetcher = fetcher
        self._accepted: dict[str, HttpMethod] = {}   # responder URL -> the method it took after refusing the other
        self._lock = threading.Lock()

    def ask(self, url: str, request: bytes, *, setting: MethodSetting, nonced: bool,
            limits: FetchLimits) -> OcspExchange:
        """Ask ``url`` about ``request`` (a DER OCSPRequest, ``nonced`` when it carries a nonce) within ``limits``:
        one attempt, and one more by the other method when the first is refused as a method, both within
        ``limits.total_timeout``. A failure raises :class:`FetchError` naming the method(s) and the responder URL
        (never the long GET URL)."""
        method, target, other = self._plan(url, request, setting, nonced)
        limits = self._fetcher.capped(limits)   # a fetcher's own cap (readiness.timeout) bounds both attempts too
        refusals = _GET_NOT_SERVED if method == "GET" else _METHOD_REFUSED
        started = time.monotonic()
        try:
            der = self._send(method, target, request, limits)
        except FetchError as exc:
            first = _named(exc, method, url, target)
            if exc.status not in refusals or other is None:
                raise first from None
        else:
            if method == "POST" or other is None:
                return OcspExchange(der, method)
            unusable = _unusable(der)
            if unusable is None:
                return OcspExchange(der, method)
            first = FetchError(f"GET {url}: answered {unusable}")
        left = limits.total_timeout - (time.monotonic() - started)
        if left <= 0:
            raise first
        second, second_target = other
        try:
            der = self._send(second, second_target, request,
                             replace(limits, connect_timeout=min(limits.connect_timeout, left), total_timeout=left))
        except FetchError as exc:
            again = _named(exc, second, url, second_target)
            raise FetchError(f"{first}; then {again}", timeout=again.timeout, status=again.status) from None
        with self._lock:
            if len(self._accepted) >= _REMEMBERED_AT_MOST:
                self._accepted.clear()
            self._accepted[url] = second
        log.info("OCSP responder %s refused %s (%s): asked by %s, as this process will ask it from now on",
                 url, method, str(first).removeprefix(f"{method} {url}: "), second)
        return OcspExchange(der, second)

    def _plan(self, url: str, request: bytes, setting: MethodSetting,
              nonced: bool) -> tuple[HttpMethod, str, tuple[HttpMethod, str] | None]:
        """(first method, its URL, the other method and its URL when one may follow a refusal)."""
        if setting == "post":
            return "POST", url, None
        by_get = get_url(url, request)
        if by_get is None:   # too long for GET (or a URL with a query): POST is the only way
            return "POST", url, None
        with self._lock:
            accepted = self._accepted.get(url)
        method: HttpMethod = accepted or ("GET" if setting == "get" or not nonced else "POST")
        if method == "GET":
            return "GET", by_get, ("POST", url)
        return "POST", url, ("GET", by_get)

    def _send(self, method: HttpMethod, target: str, request: bytes, limits: FetchLimits) -> bytes:
        if method == "GET":
            return self._fetcher.get(target, limits, RESPONSE_TYPE)
        return self._fetcher.post(target, request, REQUEST_TYPE, RESPONSE_TYPE, limits)


def _unusable(der: bytes) -> str | None:
    """What makes ``der``, a responder's answer to a GET, no answer to it: an OCSP malformedRequest (RFC 6960
    §4.2.1), or no OCSPResponse at all (a page the server shows at that path); None when it is an answer, good or
    bad, for the caller to judge."""
    try:
        status = ocsp.load_der_ocsp_response(der).response_status
    except ValueError:
        return "no OCSP response"
    return "malformedRequest" if status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST else None


def _named(exc: FetchError, method: HttpMethod, url: str, target: str) -> FetchError:
    """``exc`` as "GET http://responder/: HTTP 405": the GET URL, with the request encoded in it, shortened to the
    responder's URL, which is what the operator configured or finds in the certificate."""
    text = str(exc)
    if target != url:
        text = text.replace(target, url).replace(target[len(url.rstrip("/")) + 1:], "…")
    return FetchError(f"{method} {text}", timeout=exc.timeout, status=exc.status)
