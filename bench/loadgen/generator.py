"""A load-generator process: browsers that log in with a client certificate, again and again, each time as
a new user.

One complete login is what a browser without cookies does when an SP sends it to the broker: ``GET
/saml/idp/sso?SAMLRequest=…&RelayState=…&SigAlg=…&Signature=…`` (SAML Bindings §3.4.4, HTTP-Redirect) with
the client certificate (in the TLS handshake at nginx, or in direct mode as the trusted proxy's header), and
the answer must be 200 with the auto-post page (SAML Bindings §3.5.4) whose SAMLResponse is a signed Success
Response to this very request. No cookie is ever kept (``DummyCookieJar``); the connection is kept alive
between logins as a browser keeps it, unless ``fresh_connections`` (then every login makes a new TCP
connection and a full TLS handshake with the client certificate).

AuthnRequests are signed by the real pysaml2 demo SP (RSA-SHA256) before the timed part, into a pool: the
SP's work is not the broker's. They are used oldest first, and one older than ``POOL_MAX_AGE`` is dropped
(the broker refuses requests older than its ``request_max_age``, 10 minutes in the example configuration).
When the pool runs out, the SP signs during the run (about 0.7 ms each, on this process's CPU) and the result
counts them.

The checks during the run are string checks, cheap enough not to slow the generator: the first StatusCode
is Success, the Response carries a SignatureValue, and its InResponseTo is the request's ID (an answer for
another browser would fail here). After the run a uniform sample of the Responses goes through the real SP
(``DemoSp.accept``: the signature with xmlsec1, audience, recipient, InResponseTo, times).
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import resource
import ssl
import time
import traceback
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
from yarl import URL

from broker.demo.sp import DemoSp
from tests.factories.saml import make_sp

SUCCESS = b"urn:oasis:names:tc:SAML:2.0:status:Success"
# the assertion lifetime of the example configuration is 5 minutes: only Responses of the last 4 minutes
# of a run are sampled, so that the SP's time checks after the run still pass
SAMPLE_WINDOW = 240.0
EXAMPLES_PER_KIND = 3
POOL_MAX_AGE = 540.0   # seconds: below the example configuration's request_max_age (10 minutes)

_FIELD = re.compile(rb'name="SAMLResponse"\s+value="([A-Za-z0-9+/=]+)"')  # SATOSA's page spaces it otherwise
_STATUS = re.compile(rb'StatusCode Value="([^"]+)"')
_SIGNATURE = re.compile(rb"SignatureValue[^>]*>\s*[A-Za-z0-9+/=\s]{64,}<")
_REQUEST_ID = re.compile(rb'\sID="([^"]+)"')


@dataclass(frozen=True)
class GeneratorSpec:
    """What one load-generator process does; ``targets`` are base URLs, client ``i`` uses ``targets[i % n]``."""

    index: int
    clients: int
    first_client: int                          # the number of this process's first browser among all
    duration: float
    targets: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]       # direct mode: the trusted proxy's headers, certificate included
    client_cert: tuple[str, str] | None        # (certificate, key) files for the TLS handshake
    ca_file: str | None                        # the server certificate's CA
    demo_root: str                             # the demo material (the SP's key and certificate)
    idp_metadata: bytes
    idp_entity_id: str
    presign: int
    verify: int
    timeout: float
    fresh_connections: bool
    seed: int


@dataclass
class GeneratorResult:
    index: int
    logins: int = 0
    in_window: int = 0          # logins completed before the end of the timed part (the rate's numerator)
    warmup_logins: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    elapsed: float = 0.0
    presigned: int = 0
    presign_seconds: float = 0.0
    signed_during_run: int = 0
    expired_unused: int = 0     # pre-signed requests dropped as too old
    cpu_seconds: float = 0.0
    verified: int = 0
    verify_failures: list[str] = field(default_factory=list)


def check_answer(status: int, reason: str | None, body: bytes, request_id: str) -> tuple[str | None, str | None]:
    """(error kind, None) or (None, the SAMLResponse field): the cheap checks of one answer."""
    if status != 200:
        return f"http_{status}" + (f":{reason}" if reason else ""), None
    found = _FIELD.search(body)
    if found is None:
        return "no_saml_response", None
    xml = base64.b64decode(found.group(1))
    code = _STATUS.search(xml)
    if code is None:
        return "no_status", None
    if code.group(1) != SUCCESS:
        return "not_success:" + code.group(1).decode(errors="replace").rsplit(":", 1)[-1], None
    if _SIGNATURE.search(xml) is None:
        return "unsigned", None
    if f'InResponseTo="{request_id}"'.encode() not in xml:
        return "wrong_in_response_to", None
    return None, found.group(1).decode()


def request_id(url: str) -> str:
    """The ID of the deflated AuthnRequest in an HTTP-Redirect URL (SAML Bindings §3.4.4.1)."""
    message = parse_qs(urlsplit(url).query)["SAMLRequest"][0]
    xml = zlib.decompress(base64.b64decode(message), -15)
    found = _REQUEST_ID.search(xml)
    if found is None:
        raise ValueError("an AuthnRequest without an ID")
    return found.group(1).decode()


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


class _Run:
    """The state of one generator process: the request pool, the counters, the sample."""

    def __init__(self, spec: GeneratorSpec, sp: DemoSp) -> None:
        self.spec = spec
        self.sp = sp
        self.result = GeneratorResult(spec.index)
        self.pool: deque[tuple[str, str, float]] = deque()   # (path and query, request ID, signed at)
        self.errors: Counter[str] = Counter()
        self.timing = False
        self.deadline = 0.0
        self.sample_from = 0.0
        self.sampled: list[str] = []
        self.eligible = 0
        self.random = random.Random(spec.seed)
        self.tls: ssl.SSLContext | bool = False   # plain HTTP in direct mode
        if spec.client_cert is not None:
            self.tls = ssl.create_default_context(cafile=spec.ca_file)   # verifies nginx's server certificate
            self.tls.load_cert_chain(*spec.client_cert)

    def presign(self) -> None:
        started = time.perf_counter()
        for _ in range(self.spec.presign):
            url = self.sp.login_url()
            self.pool.append((_path(url), request_id(url), time.monotonic()))
        self.result.presigned = len(self.pool)
        self.result.presign_seconds = time.perf_counter() - started

    def next_request(self) -> tuple[str, str]:
        while self.pool:
            path, rid, signed = self.pool.popleft()
            if time.monotonic() - signed < POOL_MAX_AGE:
                return path, rid
            self.result.expired_unused += 1
        url = self.sp.login_url()
        if self.timing:
            self.result.signed_during_run += 1
        return _path(url), request_id(url)

    def error(self, kind: str, detail: str) -> None:
        if not self.timing:
            kind = f"warmup/{kind}"
        self.errors[kind] += 1
        examples = self.result.examples.setdefault(kind, [])
        if len(examples) < EXAMPLES_PER_KIND:
            examples.append(detail[:300])

    async def login(self, session: aiohttp.ClientSession, base: str) -> None:
        path, rid = self.next_request()
        started = time.perf_counter()
        try:
            async with session.get(URL(base + path, encoded=True), allow_redirects=False) as response:
                body = await response.read()
                status, reason = response.status, response.headers.get("X-Broker-Reason")
        except TimeoutError as exc:
            self.error("timeout", f"{type(exc).__name__} after {time.perf_counter() - started:.1f} s")
            return
        except aiohttp.ClientError as exc:
            self.error(f"connection:{type(exc).__name__}", str(exc))
            return
        except Exception as exc:  # any other failure is an error of this login, not the end of the run
            self.error(f"exception:{type(exc).__name__}", str(exc))
            return
        finished = time.perf_counter()
        kind, saml_response = check_answer(status, reason, body, rid)
        if kind is not None:
            self.error(kind, f"{status} {body[:200]!r}")
            return
        assert saml_response is not None
        if not self.timing:
            self.result.warmup_logins += 1
            return
        self.result.logins += 1
        self.result.latencies.append(finished - started)
        if finished <= self.deadline:
            self.result.in_window += 1
        if finished >= self.sample_from:  # reservoir sampling (Algorithm R)
            self.eligible += 1
            if len(self.sampled) < self.spec.verify:
                self.sampled.append(saml_response)
            else:
                slot = self.random.randrange(self.eligible)
                if slot < self.spec.verify:
                    self.sampled[slot] = saml_response

    def session(self) -> aiohttp.ClientSession:
        """A browser: one connection at a time, kept alive unless ``fresh_connections``, and no cookie jar."""
        spec = self.spec
        connector = aiohttp.TCPConnector(limit=1, ssl=self.tls, force_close=spec.fresh_connections)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     headers=dict(spec.headers), timeout=aiohttp.ClientTimeout(total=spec.timeout))

    async def drive(self, messages: Queue[tuple[str, int, object]], go: Event) -> None:
        spec = self.spec
        sessions = [self.session() for _ in range(spec.clients)]
        bases = [spec.targets[(spec.first_client + i) % len(spec.targets)] for i in range(spec.clients)]
        try:
            # warm-up: one login per browser (connections open, workers warm); checked, not timed
            await asyncio.gather(*(self.login(s, b) for s, b in zip(sessions, bases, strict=True)))
            messages.put(("ready", spec.index, None))
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            self.timing = True
            cpu = _cpu_seconds()
            started = time.perf_counter()
            deadline = self.deadline = started + spec.duration
            self.sample_from = deadline - SAMPLE_WINDOW

            async def browser(session: aiohttp.ClientSession, base: str) -> None:
                while time.perf_counter() < deadline:
                    await self.login(session, base)

            await asyncio.gather(*(browser(s, b) for s, b in zip(sessions, bases, strict=True)))
            self.result.elapsed = time.perf_counter() - started
            self.result.cpu_seconds = _cpu_seconds() - cpu
            messages.put(("timed", spec.index, None))
        finally:
            await asyncio.gather(*(s.close() for s in sessions))

    def verify(self) -> None:
        for saml_response in self.sampled:
            try:
                self.sp.accept(saml_response)
            except Exception as exc:  # whatever pysaml2 raises, the Response was refused
                self.result.verify_failures.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                self.result.verified += 1
        if self.result.verify_failures:
            self.errors["sp_rejected"] += len(self.result.verify_failures)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def run_generator(inbox: Queue[GeneratorSpec | None], messages: Queue[tuple[str, int, object]], go: Event) -> None:
    """The process's entry point: started while the stack starts (imports take seconds), it takes its spec
    from ``inbox`` (None: nothing to do). Messages to the parent: ``ready`` (requests signed, browsers warmed
    up), ``timed`` (the timed part is over), then ``result`` with the :class:`GeneratorResult`, or ``failed``
    with a traceback."""
    spec = inbox.get()
    if spec is None:
        return
    try:
        _raise_open_files_limit()
        sp = make_sp(Path(spec.demo_root), spec.idp_metadata, spec.idp_entity_id)
        run = _Run(spec, sp)
        run.presign()
        asyncio.run(run.drive(messages, go))
        run.verify()
        run.result.errors = dict(run.errors)
        messages.put(("result", spec.index, run.result))
    except BaseException:
        messages.put(("failed", spec.index, traceback.format_exc()))
        raise
