"""Copies of audit events for a SIEM: syslog (RFC 5424) or standard output, never in the login's way.

Events go into a bounded queue and a background thread sends them. A full
queue drops the copy (the audit file, not the copy, is the record) and counts
it; send failures are counted too. ``stats()`` feeds /admin/health, and a warning is
logged whenever the counters of failures grow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import socket
import sys
import threading
import time
from typing import Any, Protocol, TextIO

from broker.forks import reset_in_child

log = logging.getLogger("broker.audit")

_FACILITIES = {"auth": 4, "authpriv": 10, **{f"local{i}": 16 + i for i in range(8)}}
# RFC 5612 reserves 32473 for documentation; an organisation with its own enterprise number can swap it in.
SD_ID = "broker@32473"
_SD_FIELDS = ("seq", "event", "outcome", "correlation_id", "reason", "municipality", "sp", "user")


class Forwarder(Protocol):
    def submit(self, record: dict[str, Any]) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class _Queued:
    """The queue, the sender thread and the counters; subclasses implement ``_send``."""

    def __init__(self, name: str, queue_size: int) -> None:
        self.name = name
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._counts = {"sent": 0, "dropped": 0, "errors": 0}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._warned = 0
        reset_in_child(self, _Queued._new_lock)  # the master's sender thread may hold it at a fork

    def _new_lock(self) -> None:
        """In a forked child: the counters' lock and the queue (whose mutex the parent's sender may hold) made
        anew; the child's first submit starts its own sender."""
        self._lock = threading.Lock()
        self._queue = queue.Queue(maxsize=self._queue.maxsize)
        self._thread = None
        self._pid = None

    def submit(self, record: dict[str, Any]) -> None:
        if self._pid != os.getpid():  # one sender per process (after a fork, a new one)
            self._pid = os.getpid()
            self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._thread = threading.Thread(target=self._run, name=f"audit-forward-{self.name}", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._count("dropped")

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1
            failures = self._counts["dropped"] + self._counts["errors"]
        if what != "sent" and failures >= max(2 * self._warned, 1):  # warn at 1, 2, 4, 8 ... failures
            self._warned = failures
            log.warning("audit forwarding to %s: %d dropped, %d send errors so far", self.name,
                        self._counts["dropped"], self._counts["errors"])

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts, queued=self._queue.qsize())

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                self._send(record)
                self._count("sent")
            except (OSError, ValueError) as exc:
                self._count("errors")
                log.debug("audit forwarding to %s failed: %s", self.name, exc)
                self._reset()

    def _send(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _reset(self) -> None:
        return

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until the queue is empty (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Send what is queued (up to a few seconds), then stop the sender. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            self.flush()
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=1.0)
            # the record being sent when the queue emptied is finished (and counted) before close returns
            thread.join(timeout=2.0)


def _sd_value(value: Any) -> str:
    """RFC 5424 §6.3.3: escape '"', '\\' and ']' in PARAM-VALUE."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(record: dict[str, Any], *, facility: str, app_name: str, hostname: str,
                   max_bytes: int | None = None) -> bytes:
    """One RFC 5424 message: the event's key fields as structured data (UTF-8, §6.3.3), the whole record as JSON
    in MSG.

    ``max_bytes`` (one UDP datagram, RFC 5426 §3.2): a message longer than that goes without the record's ``data``
    and ``detail`` (the audit file holds them; ``seq`` finds the record), with ``truncated`` in the structured
    data giving the whole message's length; if it is still too long, without MSG; then with no structured data
    but ``seq``, ``event``, ``outcome`` and ``truncated``; cut to the limit as the last resort."""
    severity = 4 if record.get("outcome") == "failure" else 6  # warning / informational
    pri = _FACILITIES[facility] * 8 + severity
    params = " ".join(f'{k}="{_sd_value(record[k])}"' for k in _SD_FIELDS if record.get(k) is not None)
    msgid = str(record.get("event", "-"))[:32] or "-"
    head = (f"<{pri}>1 {record.get('time', '-')} {hostname[:255] or '-'} {app_name[:48]} {os.getpid()} {msgid} "
            f"[{SD_ID} {params}")
    # MSG in US-ASCII (JSON's \u escapes for the rest, the same record to any JSON reader): RFC 5424 §6.4 wants a
    # UTF-8 MSG to start with a BOM, which receivers keep in the message and JSON readers refuse
    message = (head + "] ").encode("utf-8") + _json(record)
    if max_bytes is None or len(message) <= max_bytes:
        return message
    marked = (head + f' truncated="{len(message)}"]').encode("utf-8")
    shorter = marked + b" " + _json({k: v for k, v in record.items() if k not in ("data", "detail")})
    if len(shorter) <= max_bytes:
        return shorter
    if len(marked) <= max_bytes:
        return marked  # MSG is optional (RFC 5424 §6)
    # long structured data (an SP's entityID, up to 1024 characters): the fields that find the record
    few = " ".join(f'{k}="{_sd_value(record[k])}"' for k in ("seq", "event", "outcome") if record.get(k) is not None)
    minimal = (head[:head.index(f"[{SD_ID} ")] + f'[{SD_ID} {few} truncated="{len(message)}"]').encode("utf-8")
    return minimal[:max_bytes]  # cut only where the header itself is longer (a hostname of 255 characters)


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class SyslogForwarder(_Queued):
    def __init__(self, address: str, transport: str, facility: str, app_name: str, queue_size: int, *,
                 max_message_bytes: int = 2048) -> None:
        super().__init__(f"syslog {transport}://{address}", queue_size)
        self._max_bytes = max_message_bytes  # over UDP: one datagram (RFC 5426 §3.2); TCP frames any length
        host, _, port = address.rpartition(":")
        self._address = (host.strip("[]"), int(port))
        self._transport = transport
        self._facility = facility
        self._app_name = app_name
        self._hostname = socket.gethostname()
        self._socket: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._socket is None:
            kind = socket.SOCK_DGRAM if self._transport == "udp" else socket.SOCK_STREAM
            family = socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET
            sock = socket.socket(family, kind)
            try:
                sock.settimeout(2.0)
                if self._transport == "tcp":
                    sock.connect(self._address)
            except OSError:
                sock.close()
                raise
            self._socket = sock
        return self._socket

    def _send(self, record: dict[str, Any]) -> None:
        message = format_rfc5424(record, facility=self._facility, app_name=self._app_name, hostname=self._hostname,
                                 max_bytes=self._max_bytes if self._transport == "udp" else None)
        if self._transport == "udp":
            self._connect().sendto(message, self._address)
            return
        frame = str(len(message)).encode() + b" " + message  # RFC 6587 §3.4.1 octet counting
        # a receiver that restarted, or closes idle connections, has closed ours: a copy written into it is lost
        # without an error (the peer answers with a reset), and the next one fails
        if self._socket is not None and _closed_by_peer(self._socket):
            self._reset()
        reused = self._socket is not None
        try:
            self._connect().sendall(frame)
        except OSError:
            if not reused:
                raise
            self._reset()  # closed meanwhile: once more, on a new connection
            self._connect().sendall(frame)

    def _reset(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None

    def close(self) -> None:
        super().close()
        self._reset()


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the receiver has closed (or reset) the connection: a syslog receiver never sends (RFC 6587), so a
    readable end of stream, or an error, is the connection's end."""
    poller = select.poll()  # not recv alone: the socket's timeout would wait for data (and poll has no fd limit)
    poller.register(sock, select.POLLIN)
    try:
        return bool(poller.poll(0)) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class StdoutForwarder(_Queued):
    def __init__(self, queue_size: int, stream: TextIO | None = None) -> None:
        super().__init__("stdout", queue_size)
        self._stream = stream

    def _send(self, record: dict[str, Any]) -> None:
        stream = self._stream or sys.stdout
        stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        stream.flush()
