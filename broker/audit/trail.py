"""The audit trail: formats events as JSON lines and makes them durable.

``record`` appends an event to the file at once; ``sync`` makes everything
recorded so far durable (fsync). The web layer calls ``sync`` before it sends
the response that describes the events, and concurrent requests share one
fsync (group commit). Any I/O failure raises :class:`AuditUnavailable`:
logins fail closed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import threading
from pathlib import Path
from typing import Any, Literal, Protocol

from broker.audit.events import SCHEMA_VERSION, AuditEvent
from broker.clock import Clock
from broker.errors import AuditUnavailable


class AuditSink(Protocol):
    def append(self, line: bytes) -> int:
        """Write one line; return its sequence number in this sink."""
        ...

    def sync(self, upto: int) -> None:
        """Make lines up to ``upto`` durable."""
        ...


class JsonLinesFile:
    """An append-only file of JSON lines with group-committed fsync."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0
        self._synced = 0
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def append(self, line: bytes) -> int:
        with self._lock:
            try:
                fd = self._open()
                # one write() per line: O_APPEND keeps concurrent writers' lines whole
                view = memoryview(line)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            except OSError as exc:
                self._reset()
                raise AuditUnavailable(f"cannot write {self.path}: {exc.strerror}") from exc
            self._written += 1
            return self._written

    def sync(self, upto: int) -> None:
        if upto <= self._synced:
            return
        with self._sync_lock:
            if upto <= self._synced:  # another request's fsync covered ours
                return
            with self._lock:
                target, fd = self._written, self._fd
            if fd is None:
                raise AuditUnavailable(f"{self.path} is not open")
            try:
                os.fsync(fd)
            except OSError as exc:
                with self._lock:
                    self._reset()
                raise AuditUnavailable(f"cannot sync {self.path}: {exc.strerror}") from exc
            self._synced = target

    def _reset(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._reset()


ClientAddressMode = Literal["clear", "truncated", "pseudonymised"]


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
    if address is None or mode == "clear":
        return address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "invalid"
    if mode == "truncated":
        prefix = 24 if ip.version == 4 else 48
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    return "ip:" + pseudonymiser.pseudonym("ip", str(ip))[:16]


class AuditTrail:
    """Turns :class:`AuditEvent` objects into redacted JSON lines on a sink."""

    def __init__(self, sink: AuditSink, clock: Clock, *, pseudonym_key: bytes, instance_id: str,
                 client_address: ClientAddressMode = "clear") -> None:
        self._sink = sink
        self._clock = clock
        self._pseudonymiser = Pseudonymiser(pseudonym_key)
        self._instance = instance_id
        self._client_mode: ClientAddressMode = client_address
        self._local = threading.local()

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
            record["user"] = (
                self._pseudonymiser.personnummer(ident.key) if ident.kind == "personnummer" else ident.key
            )
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
            record["detail"] = event.detail
        if event.data:
            record["data"] = {k: list(v) if isinstance(v, tuple) else v for k, v in event.data.items()}
        return record

    def record(self, event: AuditEvent) -> None:
        line = json.dumps(self.format(event), ensure_ascii=False, separators=(",", ":")) + "\n"
        seq = self._sink.append(line.encode("utf-8"))
        self._local.pending = max(getattr(self._local, "pending", 0), seq)

    def sync(self) -> None:
        """Make this thread's recorded events durable (fsync, shared with concurrent callers)."""
        pending = getattr(self._local, "pending", 0)
        if pending:
            self._sink.sync(pending)
            self._local.pending = 0

    def pseudonym_of_personnummer(self, value: str) -> str:
        return self._pseudonymiser.personnummer(value)
