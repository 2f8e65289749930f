"""The audit trail: redacts events at the source and hands them to the hash chain and the forwarders.

``record`` appends an event to this process's chain at once; ``sync`` makes
everything this thread recorded durable (fsync, shared with concurrent
callers). The web layer calls ``sync`` before it sends the response that
describes the events. Any I/O failure raises :class:`AuditUnavailable`: logins
fail closed. Forwarding (syslog, stdout) happens after the record is written
and never raises.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, Protocol

from broker.audit.events import AuditEvent
from broker.audit.forward import Forwarder
from broker.audit.schema import SCHEMA_VERSION
from broker.clock import Clock
from broker.errors import AuditUnavailable
from broker.pki.identity import check_personnummer

MAX_DETAIL: Final = 2000  # characters of a record's detail; longer ones end in '…'


class AuditSink(Protocol):
    def append(self, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Append one record; return a token for :meth:`sync` and the record as written."""
        ...

    def sync(self, upto: int) -> None:
        """Make everything up to ``upto`` durable."""
        ...

    def checkpoint(self) -> None:
        """Seal what is written with a signed checkpoint, durably."""
        ...

    def writable(self) -> str | None:
        """Why the next record could not be written, found without writing one; None when nothing is known."""
        ...

    def close(self) -> None: ...


ClientAddressMode = Literal["clear", "truncated", "pseudonymised"]

# ``data`` values that quote a peer's free text: logout_propagated's status, a participant's LogoutResponse status
# codes and StatusMessage (broker.saml.logout.LogoutResponseInfo.describe), which may name the user
_PEER_TEXT: Final = frozenset({"status"})

# a personnummer as people write it: 12 digits (YYYYMMDDNNNN) or 10 (YYMMDDNNNN), either with - or + before the
# last four (+: 100 years or older)
_PERSONNUMMER_SHAPED = re.compile(r"(?<![0-9])(?:[0-9]{8}|[0-9]{6})[-+]?[0-9]{4}(?![0-9])")


def _as_personnummer(text: str, today: dt.date) -> str | None:
    """``text`` (a match of _PERSONNUMMER_SHAPED) as the 12-digit personnummer it is, or None when it is none
    (no such date, a wrong check digit): the 10-digit form in the century the separator says (Skatteverket)."""
    digits = text.replace("-", "").replace("+", "")
    if len(digits) == 10:
        yy, month, day = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
        year = today.year - (today.year - yy) % 100
        try:
            if dt.date(year, month, day - 60 if day > 60 else day) > today:
                year -= 100
        except ValueError:
            return None
        if "+" in text:
            year -= 100
        digits = f"{year // 100:02d}{digits}"
    try:
        check_personnummer(digits, today)
    except ValueError:
        return None
    return digits


def as_personnummer(text: str, today: dt.date) -> str | None:
    """``text`` (surrounding white space aside) as the 12-digit personnummer it is, in any form people write one
    (12 or 10 digits, with or without ``-``/``+`` before the last four), or None: what no record holds in clear."""
    text = text.strip()
    return _as_personnummer(text, today) if _PERSONNUMMER_SHAPED.fullmatch(text) else None


def holds_personnummer(text: str, today: dt.date) -> bool:
    """Whether ``text`` is or holds a personnummer (an account named by one, ``191212121212@kommun.se``), which
    the trail records only as its pseudonym (:meth:`AuditTrail.format`)."""
    return any(_as_personnummer(m.group(), today) for m in _PERSONNUMMER_SHAPED.finditer(text))


class Pseudonymiser:
    """Keyed pseudonyms (HMAC-SHA256): the same input and key always give the same pseudonym."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def pseudonym(self, kind: str, value: str) -> str:
        mac = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        return mac[:32]

    def personnummer(self, value: str) -> str:
        return "pnr:" + self.pseudonym("personnummer", value)


def render_client_address(address: str | None, mode: ClientAddressMode, pseudonymiser: Pseudonymiser) -> str | None:
    """``address`` as ``mode`` records it. An IPv4 user seen through a dual-stack listener (``::ffff:192.0.2.7``,
    RFC 4291 §2.5.5.2) is that IPv4 address, as the failed-login limits count it: its /48 was ``::/48`` (every
    IPv4 user the same), its pseudonym another than the same user's through an IPv4 listener."""
    if address is None or (mode == "clear" and ":" not in address):  # no IPv6 form to read (every request)
        return address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address if mode == "clear" else "invalid"
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if mapped is not None:
        ip = mapped
    if mode == "clear":
        return str(ip) if mapped is not None else address
    if mode == "truncated":
        prefix = 24 if ip.version == 4 else 48
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    return "ip:" + pseudonymiser.pseudonym("ip", str(ip))[:16]


class AuditTrail:
    """Turns :class:`AuditEvent` objects into redacted records on a sink, with copies to forwarders."""

    def __init__(self, sink: AuditSink, clock: Clock, *, pseudonym_key: bytes, instance_id: str,
                 client_address: ClientAddressMode = "clear", forwarders: Sequence[Forwarder] = ()) -> None:
        self._sink = sink
        self._clock = clock
        self._pseudonymiser = Pseudonymiser(pseudonym_key)
        self._instance = instance_id
        self._client_mode: ClientAddressMode = client_address
        self._forwarders = tuple(forwarders)
        self._observers: tuple[Callable[[dict[str, Any]], None], ...] = ()
        self._failure_observers: tuple[Callable[[str], None], ...] = ()
        self._failure: str | None = None   # why the last write or sync failed, until one succeeds
        self._local = threading.local()

    @property
    def sink(self) -> AuditSink:
        return self._sink

    def format(self, event: AuditEvent) -> dict[str, Any]:
        now = self._clock.now().astimezone(dt.UTC)
        record: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "instance": self._instance,
            "event": event.event,
            "outcome": event.outcome,
            "correlation_id": event.correlation_id,
        }
        if event.reason:
            record["reason"] = event.reason
        if event.municipality:
            record["municipality"] = event.municipality
        if event.identity is not None:
            ident = event.identity
            if ident.kind == "personnummer":
                record["user"] = self._pseudonymiser.personnummer(ident.key)
            else:
                # an opaque identifier (or an HSA-id under a pattern of the operator's) that is a personnummer, in
                # any form people write one (a municipality whose accounts are named by it): its pseudonym too, the
                # one `broker audit query --personnummer-stdin` looks for; in clear it was found by no query
                # (--user refuses a personnummer). One that holds a personnummer (191212121212@kommun.se) has it
                # replaced by its pseudonym where it stands (pnr:...@kommun.se), as a detail has, which that
                # query finds too (broker.audit.query.Filter)
                number = as_personnummer(ident.key, now.date())
                record["user"] = self._without_personnummer(ident.key, now.date()) if number is None \
                    else self._pseudonymiser.personnummer(number)
            record["user_kind"] = ident.kind
            record.setdefault("municipality", ident.municipality_id)
        if event.certificate is not None:
            record["cert_sha256"] = event.certificate.fingerprint_sha256
            record["cert_serial"] = event.certificate.serial_hex
            record["cert_issuer"] = event.certificate.issuer
        if event.sp:
            record["sp"] = event.sp
        if event.client_address:
            record["client"] = render_client_address(event.client_address, self._client_mode, self._pseudonymiser)
        if event.detail:
            # operator text, often quoting what a peer sent before anything about it was verified: each place cuts
            # what it quotes, and this bound holds for a place that does not (a record stays one short line for
            # the forwarders, and nobody can write kilobytes into the trail per request)
            # (what lies past the bound is not searched: a pseudonym is longer than the number it replaces, so
            # nothing from there is kept; the margin keeps whole a number that starts before the bound)
            detail = self._without_personnummer(event.detail[:MAX_DETAIL + 16], now.date())
            cut = len(detail) > MAX_DETAIL or len(event.detail) > MAX_DETAIL + 16
            record["detail"] = detail[:MAX_DETAIL - 1] + "…" if cut else detail
        if event.data:
            data = record["data"] = {k: list(v) if isinstance(v, tuple) else v for k, v in event.data.items()}
            for key in _PEER_TEXT & data.keys():
                if isinstance(data[key], str):  # a peer's text, as a detail quotes it: no personnummer in clear
                    data[key] = self._without_personnummer(data[key], now.date())
        return record

    def _without_personnummer(self, text: str, today: dt.date) -> str:
        """``text`` with every personnummer in it replaced by its pseudonym: a detail quotes what peers sent (a
        municipal IdP's StatusMessage, parts of a refused message), which may name the user."""
        def pseudonym(match: re.Match[str]) -> str:
            number = _as_personnummer(match.group(), today)
            return match.group() if number is None else self._pseudonymiser.personnummer(number)

        return _PERSONNUMMER_SHAPED.sub(pseudonym, text)

    def observe(self, observer: Callable[[dict[str, Any]], None]) -> None:
        """Call ``observer`` with every record written (metrics); it must be quick and must not fail."""
        self._observers = (*self._observers, observer)

    def observe_failures(self, observer: Callable[[str], None]) -> None:
        """Call ``observer`` with the reason of every write or sync the sink refuses (metrics: the refusals
        themselves leave no record to count)."""
        self._failure_observers = (*self._failure_observers, observer)

    def _failed(self, exc: AuditUnavailable) -> None:
        self._failure = exc.detail
        for observer in self._failure_observers:
            with contextlib.suppress(Exception):
                observer(exc.reason)

    def probe(self) -> str | None:
        """Readiness: None when the trail works. While it is failing, try a checkpoint (which also records a
        file abandoned meanwhile), so that a process taken out of rotation for its audit trail comes back once
        the disk does, without waiting for a login it can no longer be sent. While it works, look without
        writing (:meth:`AuditSink.writable`): a directory gone, or the open file removed from it, takes the
        process out of rotation before a user's login fails on it (a read-only directory or a full disk shows
        at the next write)."""
        if self._failure is None:
            problem = self._sink.writable()
            if problem is None:
                return None
            self._failed(AuditUnavailable(problem))  # and try at once: a file replaced where the directory works
            # is a rotation
        try:
            self._sink.checkpoint()
        except AuditUnavailable as exc:
            self._failure = exc.detail
        else:
            self._failure = None
        return self._failure

    def record(self, event: AuditEvent) -> None:
        try:
            token, written = self._sink.append(self.format(event))
        except AuditUnavailable as exc:
            self._failed(exc)
            raise
        self._local.pending = max(getattr(self._local, "pending", 0), token)
        for forwarder in self._forwarders:
            with contextlib.suppress(Exception):  # a copy must never cost a login
                forwarder.submit(written)
        for observer in self._observers:
            with contextlib.suppress(Exception):  # nor may counting it
                observer(written)

    def sync(self) -> None:
        """Make this thread's recorded events durable (fsync, shared with concurrent callers). Raises
        AuditUnavailable if they cannot be; either way they are no longer this thread's to sync (the next
        request on it starts afresh)."""
        pending = getattr(self._local, "pending", 0)
        if pending:
            # this request's records, whatever becomes of them: left pending after a failure, they failed the
            # next request on this worker thread, which had recorded nothing
            self._local.pending = 0
            try:
                self._sink.sync(pending)
            except AuditUnavailable as exc:
                self._failed(exc)
                raise
            self._failure = None

    def pseudonym_of_personnummer(self, value: str) -> str:
        return self._pseudonymiser.personnummer(value)

    def forwarding_stats(self) -> dict[str, dict[str, int]]:
        return {getattr(f, "name", type(f).__name__): f.stats() for f in self._forwarders}

    def close(self) -> None:
        """Seal the chain (its final checkpoint is forwarded too), then stop the forwarders. Idempotent."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._sink.close()
        for forwarder in self._forwarders:
            with contextlib.suppress(Exception):
                forwarder.close()
