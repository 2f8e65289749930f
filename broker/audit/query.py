"""Reading audit records back: every chain in order, filtered, for reviewers' queries and reports."""

from __future__ import annotations

import datetime as dt
import heapq
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.audit.chain import by_start, json_object, open_regular, read_head, read_tail, utc_text
from broker.audit.verify import collect, distinct_copies

SYSTEM_EVENTS = frozenset({"audit_chain_started", "audit_checkpoint", "audit_key_rotated", "audit_chain_recovered",
                           "audit_file_abandoned"})


def records(paths: Iterable[Path], on_unreadable: Callable[[Path, str], None] | None = None, *,
            since: dt.datetime | None = None, until: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every readable record of every chain in ``paths``, in time order.

    Chains written side by side (several processes or instances at once, any of which serves any step of a
    login) are merged by the records' times; chains one after another follow each other. Only the chains
    written at once are open at once, and nothing is held but their next records (a trail of years streams).
    Lines that are no record (not a JSON object; the verifier names them) are passed over; a file that cannot
    be read is passed to ``on_unreadable`` with the reason (raised as OSError without one).

    ``since`` (inclusive) and ``until`` (exclusive) pass over what lies wholly outside them, by the times of
    the records a writer wrote in order: a chain that ended before ``since`` or began at or after ``until``,
    and a file whose first and last records are both before ``since``, or whose first is at or after ``until``
    (only its first line and its tail are read). Records inside the range may still come from the files read
    for it: the caller's filter decides. A file whose first or last record cannot be read is read whole."""
    low = utc_text(since) if since is not None else None
    high = utc_text(until) if until is not None else None
    chains = collect(paths)
    group: list[Iterator[dict[str, Any]]] = []
    group_end = ""
    for chain in sorted(chains, key=by_start):
        files = distinct_copies(chains[chain])
        start, end = _span(chain, files)
        if (low is not None and end < low) or (high is not None and start >= high):
            continue  # wholly outside the range ("~", an end that cannot be read, is after any time)
        if group and start > group_end:
            yield from _merged(group)
            group = []
        group.append(_chain_records(chain, files, on_unreadable, low, high))
        group_end = max(group_end, end)
    yield from _merged(group)


def _merged(chains: list[Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    if len(chains) == 1:
        return chains[0]
    return heapq.merge(*chains, key=lambda record: str(record.get("time", "")))


def _span(chain: str, files: list[tuple[int, Path]]) -> tuple[str, str]:
    """When the chain began and its last record's time, as record times read (ISO 8601, UTC, sortable as text);
    an end that cannot be read is open (the chain overlaps everything after it)."""
    stamp = chain.split(".")[-2] if chain.count(".") >= 2 else ""  # 20261124T080000123Z (chain_instance)
    start = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}.{stamp[15:18]}Z"
    for _, path in reversed(files):  # a crash right after a rotation leaves the newest file empty
        try:
            lines, _ = read_tail(path)
        except OSError:
            break
        for raw in reversed(lines):
            last = json_object(raw)
            if last is not None and isinstance(last.get("time"), str):
                return start, last["time"]
    return start, "~"  # after any time


def _outside(path: Path, low: str | None, high: str | None) -> bool:
    """Whether every record of the chain file ``path`` lies before ``low`` or at or after ``high`` (record times,
    ISO 8601 UTC with milliseconds, sortable as text), by its first and last records; False when either cannot be
    read (the file is read whole, and any problem named then)."""
    if low is None and high is None:
        return False
    try:
        first = json_object(read_head(path))
        first_time = first.get("time") if first is not None else None
        if not isinstance(first_time, str) or not _RECORD_TIME.match(first_time):
            return False
        if high is not None and first_time >= high:
            return True
        if low is None:
            return False
        lines, _ = read_tail(path)
    except OSError:
        return False
    last = json_object(lines[-1]) if lines else None
    last_time = last.get("time") if last is not None else None
    return isinstance(last_time, str) and bool(_RECORD_TIME.match(last_time)) and last_time < low


_RECORD_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")


def _chain_records(chain: str, files: list[tuple[int, Path]], on_unreadable: Callable[[Path, str], None] | None,
                   low: str | None = None, high: str | None = None) -> Iterator[dict[str, Any]]:
    for _, path in files:
        if _outside(path, low, high):
            continue
        try:
            with os.fdopen(open_regular(path), "rb") as f:
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break  # a torn last line (the verifier reports it)
                    record = json_object(raw)
                    if record is None:
                        continue
                    record["_chain"] = chain
                    yield record
        except OSError as exc:
            if on_unreadable is None:
                raise
            on_unreadable(path, exc.strerror or str(exc))


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 date or date and time (``2026-11-01``, ``2026-11-01T08:00``, ``...Z``, ``...+01:00``); one
    without an offset is UTC, like the records' own times."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Filter:
    """What a reviewer asks for; every given criterion must hold."""

    users: frozenset[str] = frozenset()
    municipality: str | None = None
    sp: str | None = None
    outcome: str | None = None
    reason: str | None = None
    events: frozenset[str] = frozenset()
    correlation_id: str | None = None
    cert_serial: str | None = None  # as :func:`serial_hex` writes it
    cert_issuer: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    include_system: bool = False

    def __call__(self, record: dict[str, Any]) -> bool:
        event = record.get("event")
        if not self.include_system and event in SYSTEM_EVENTS and not self.events:
            return False
        if self.events and event not in self.events:
            return False
        if self.users and not self.names_user(record.get("user")):
            return False
        if self.cert_issuer is not None and not (isinstance(record.get("cert_issuer"), str) and
                                                 issuer_key(record["cert_issuer"]) == issuer_key(self.cert_issuer)):
            return False
        for key in ("municipality", "sp", "outcome", "reason", "correlation_id", "cert_serial"):
            wanted = getattr(self, key)
            if wanted is not None and record.get(key) != wanted:
                return False
        if self.since or self.until:
            try:
                when = parse_time(str(record.get("time")))
            except ValueError:
                return False
            if self.since and when < self.since:
                return False
            if self.until and when >= self.until:
                return False
        return True


    def names_user(self, user: Any) -> bool:
        """The record's ``user`` is one asked for, or holds the pseudonym of a personnummer asked for where the
        number stood in an identifier (``pnr:...@kommun.se``: broker.audit.trail, an opaque identity)."""
        if user in self.users:
            return True
        return isinstance(user, str) and any(
            PSEUDONYM.fullmatch(wanted) and re.search(re.escape(wanted) + "(?![0-9a-f])", user)
            for wanted in self.users)


def issuer_key(name: str) -> str:
    """An issuer's RFC 4514 text as compared: in any letter case, with white space around the commas between its
    attributes left out (``CN=Kommun A, O=Kommun A`` as a certificate viewer writes it; an escaped comma inside a
    value is kept)."""
    return re.sub(r"\s*(?<!\\),\s*", ",", name.strip()).casefold()


def serial_hex(text: str) -> str:
    """A certificate serial number as the records write it (``cert_serial``: lower-case hexadecimal without leading
    zeros), from the forms a CA's revocation notice or a certificate viewer gives it in: ``00:1F``, ``1f``,
    ``1F 2A``, ``0x1f``. ValueError for text that is no hexadecimal number."""
    digits = re.sub(r"[\s:]", "", text).lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]+", digits):
        raise ValueError(f"{text!r} is not a serial number in hexadecimal (as 1f, 00:1F or 1F 2A)")
    return format(int(digits, 16), "x")


# events whose ``user`` is that of the SSO session the browser held before the login they are part of (expired,
# revoked, replaced, too weak), which on a shared PC may be someone else's: they tie no login to that user
_EARLIER_SESSION = frozenset({"session_expired", "session_revoked", "session_replaced", "session_insufficient"})


def whole_logins(read: Callable[[], Iterable[dict[str, Any]]], wanted: Filter) -> Iterator[dict[str, Any]]:
    """The records ``wanted`` selects, with every other record of the logins they belong to (their
    ``correlation_id``): the steps before the user was known (``login_started``: the service's request;
    ``certificate_presented``) name none. A record naming another user than those asked for is never added, and
    a login is not added for a record about the browser's earlier session (:data:`_EARLIER_SESSION`), which may
    be another person's login; asked for no user, such a record is added only when a record found of its login
    names its user. ``read`` gives the records in order, and is called twice (a trail of years is not held in
    memory; only the logins' correlation IDs and the users their records found name are)."""
    logins: dict[Any, set[Any]] = {}
    for record in read():
        if wanted(record) and record.get("event") not in _EARLIER_SESSION:
            logins.setdefault(record.get("correlation_id"), set()).add(record.get("user"))
    for no_login in (None, "-"):
        logins.pop(no_login, None)
    for record in read():
        if wanted(record) or _of_logins(record, logins, wanted):
            yield record


def _of_logins(record: dict[str, Any], logins: dict[Any, set[Any]], wanted: Filter) -> bool:
    """Whether ``record`` is a step of one of ``logins`` (correlation ID -> the users its records found name) that
    names no other user than ``wanted`` asks for, or, asked for none, than the login's own."""
    users = logins.get(record.get("correlation_id"))
    if users is None or record.get("event") in SYSTEM_EVENTS:
        return False
    user = record.get("user")
    if user is None:
        return True
    if wanted.users:
        return wanted.names_user(user)
    # the user of the browser's earlier session (a shared PC's) is not the login's unless its own records say so
    return record.get("event") not in _EARLIER_SESSION or user in users


# a personnummer's pseudonym (broker.audit.trail.Pseudonymiser.personnummer): "pnr:" and 32 hex digits
PSEUDONYM = re.compile(r"pnr:[0-9a-f]{32}")


def last_event(directory: Path, event: str, *, head_lines: int = 200) -> dict[str, Any] | None:
    """The most recent ``event`` among the first records of each chain, newest chain first (within a chain's
    head, its last one).

    For events a writer records as it starts (configuration_loaded): only the
    head of each chain's first file is read, so years of audit files cost little.
    """
    chains = collect([directory])
    for chain in sorted(chains, key=by_start, reverse=True):
        _, first = chains[chain][0]
        found: dict[str, Any] | None = None
        try:
            with os.fdopen(open_regular(first), "rb") as f:
                for _, raw in zip(range(head_lines), f, strict=False):
                    record = json_object(raw)
                    if record is None:
                        break
                    if record.get("event") == event:
                        found = dict(record)
        except OSError:
            pass  # what was read of it counts
        if found is not None:
            return found
    return None
