"""The audit hash chain: one writer's append-only JSON-lines files, sealed by signed checkpoints.

Layout in the audit directory, per writer (one per process; ``chain`` =
``<instance>.<start UTC>.<random>``)::

    <chain>.000001.jsonl        records, then rotated to .000002 ... by size or age
    <chain>.checkpoints.jsonl   a copy of every checkpoint line (detects truncation)
    <chain>.closed              written after the final checkpoint of a clean shutdown
    <chain>.recovered           written when a later writer attested a crashed chain

Every record carries ``seq`` (1, 2, ...) and ``prev``, the SHA-256 (hex) of the
previous record's line as written (the first record: 64 zeros); the chain runs
on across rotated files. A checkpoint (``audit_checkpoint``) signs, with the
Ed25519 audit key, the chain id, the sequence number and hash of the record
before it, and its time; one is written after ``checkpoint_interval``, at every
rotation and at clean shutdown (``final``). So modification, deletion,
insertion and reordering anywhere, and truncation up to the last checkpoint,
are detectable (:mod:`broker.audit.verify`).

Each writer holds an exclusive lock (flock) on its current file for as long as
it lives. A new writer attests chains whose writer died without a final
checkpoint (``audit_chain_recovered``: their last good record, and whether the
last line was torn by the crash), so a crash never leaves a chain that cannot
be verified.

Durability: ``append`` writes at once; ``sync`` fsyncs everything written so far,
shared by concurrent callers (group commit). Any I/O error raises
:class:`AuditUnavailable`; the file is cut back to its last whole line and the
next record goes to a fresh file, recorded as ``audit_file_abandoned``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.audit.keys import AuditSigner
from broker.clock import Clock, passed
from broker.errors import AuditUnavailable
from broker.forks import reset_in_child

# one encoder for every line (json.dumps with options builds a new one per call)
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

log = logging.getLogger("broker.audit")

GENESIS = "0" * 64
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})
FILE_PATTERN = re.compile(r"^(?P<chain>[A-Za-z0-9_.\-]+?)\.(?P<n>[0-9]{6})\.jsonl\Z")
_TAIL_BYTES = 256 * 1024
_NOT_IN_CHAIN_IDS = re.compile(r"[^A-Za-z0-9_.\-]")


def line_hash(line: bytes) -> str:
    """The hash that the next record's ``prev`` names: SHA-256 of the line without its newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def utc_text(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ChainSettings:
    directory: Path
    instance: str
    checkpoint_interval: dt.timedelta
    rotate_bytes: int
    rotate_interval: dt.timedelta


def chain_files(directory: Path) -> dict[str, list[tuple[int, Path]]]:
    """The record files in ``directory`` by chain id, in order."""
    chains: dict[str, list[tuple[int, Path]]] = {}
    if not directory.is_dir():
        return chains
    for path in directory.iterdir():
        m = FILE_PATTERN.match(path.name)
        if m:
            chains.setdefault(m.group("chain"), []).append((int(m.group("n")), path))
    for files in chains.values():
        files.sort()
    return chains


def chain_instance(instance: str) -> str:
    """``instance`` as the first part of chain ids: the characters FILE_PATTERN allows there (others become
    ``_``), without leading dots (a hidden file) and at most 64 long (file names are limited). A chain named
    with anything else (``host+1``) was written, but no tool found its files: verify, query and the
    recovering writer know chain files by that pattern. The records keep the instance as given."""
    return _NOT_IN_CHAIN_IDS.sub("_", instance).lstrip(".")[:64] or "broker"


def by_start(chain: str) -> tuple[str, str]:
    """A sort key for chain ids (``<instance>.<start UTC>.<random>``): by when they started."""
    parts = chain.split(".")
    return (parts[-2] if len(parts) >= 3 else "", chain)


def json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` (a line, or a marker file, read back from the audit directory) as a JSON object, or None: not
    JSON, not an object, or nested past the parser's recursion limit. Never raises: an intruder may write
    anything into these files, and what they wrote must be a problem the verifier names, or a line the
    writer passes over, never a crash (``b"[" * 100000`` raises RecursionError in json.loads)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def open_regular(path: Path) -> int:
    """A read-only descriptor of ``path``, which must be a regular file (OSError otherwise, also for a symbolic
    link). Anyone with write access to the audit directory can put a FIFO under a chain file's name: a plain
    open of it blocks until someone writes to it, which hung every writer's start, verify and query. So the
    open does not block (O_NONBLOCK, no effect on a regular file's reads) and anything else is refused."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
    except OSError:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path) -> bytes:
    """The content of ``path``, a regular file (:func:`open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as f:
        return f.read()


def read_head(path: Path) -> bytes:
    """The first line of ``path`` (with its newline; without one when the file has no whole line)."""
    with os.fdopen(open_regular(path), "rb") as f:
        return f.readline()


def read_tail(path: Path) -> tuple[list[bytes], bytes]:
    """The last whole lines of ``path`` and the torn remainder after the last newline, whole.

    Read from a window at the end (_TAIL_BYTES) that grows back until it holds the last whole line and the
    newline before it (or reaches the start of the file): a last record longer than the window (a long
    ``detail``) was not found at all, so a crashed chain was attested at an earlier record (seq 0 in its first
    file), and the verifier rightly called the untampered chain truncated; a torn line longer than the window
    was counted short."""
    with os.fdopen(open_regular(path), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        window = _TAIL_BYTES
        while True:
            start = max(0, size - window)
            f.seek(start)
            data = f.read(size - start)
            last = data.rfind(b"\n")
            if start == 0 or (last >= 0 and data.rfind(b"\n", 0, last) >= 0):
                break
            window *= 2
    if start > 0:  # drop the partial first line of the window
        data = data[data.find(b"\n") + 1:]
    cut = data.rfind(b"\n") + 1
    whole, torn = data[:cut], data[cut:]
    return [line + b"\n" for line in whole.split(b"\n")[:-1]], torn


class ChainWriter:
    """Appends records to this process's chain; thread-safe; fork-aware (a forked child starts its own chain)."""

    def __init__(self, settings: ChainSettings, signer: AuditSigner, clock: Clock, *,
                 on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
                 background: bool = True) -> None:
        self.settings = settings
        self._signer = signer
        self._clock = clock
        self._on_checkpoint = on_checkpoint
        self._background = background
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._reset_state()
        # the master's checkpoint thread may hold the locks when gunicorn forks a worker
        reset_in_child(self, ChainWriter._new_locks)

    def _new_locks(self) -> None:
        """In a forked child (which starts a chain of its own): locks no thread of the parent can hold."""
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()

    def _reset_state(self) -> None:
        self.chain_id = ""
        self._seq = 0
        self._prev = GENESIS
        self._file_index = 0
        self._fd: int | None = None
        self._file_path: Path | None = None
        self._file_bytes = 0
        self._file_opened: dt.datetime | None = None
        self._last_checkpoint: dt.datetime | None = None
        self._sealed_seq = 0
        self._written = 0
        self._synced = 0
        self._last_line = b""
        self._abandoned: dict[str, Any] | None = None
        self._retry_in_place = False  # the open file is an empty one a failed rotation left: write there again
        # token ranges (after, upto] that went to a file lost before they were synced (removed, or not cut back
        # and synced after a failed write): no request that wrote them may be told they are durable, even once
        # later records in a new file are synced past them
        self._lost: list[tuple[int, int, Path | None]] = []  # (after, upto, the file they were in)
        # the file the writer last left (a rotation) and the token of its last record: an fsync of it that began
        # before and fails after lost that much (_fsync_failed)
        self._left: tuple[Path, int] | None = None
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------

    def _ensure_started(self) -> None:
        """Start a chain the first time this process writes (after a fork: a new chain of its own)."""
        pid = os.getpid()
        if self._pid == pid and not self._closed:
            return
        try:
            self._start(pid)
        except Exception as exc:
            # whatever stopped the start (also a defect, or something planted in the directory that a reader
            # did not expect): the file and its lock are let go, and the request fails closed like any other
            # audit failure (503), not with an error page that leaves a locked chain behind per request
            self._close_file()
            self._discard_unstarted()
            if isinstance(exc, AuditUnavailable):
                raise
            log.exception("audit chain %s could not start", self.chain_id)
            raise AuditUnavailable(f"the audit chain could not start: {type(exc).__name__}") from exc

    def _discard_unstarted(self) -> None:
        """After a start that wrote nothing (a full disk: the file could be made, not one line written), remove
        what it made, so that every refused request does not leave an empty chain behind for a later writer to
        attest one by one. A start that wrote something keeps it: that is for a later writer to attest."""
        if self._file_path is None or self._file_bytes > 0:
            return
        directory = self.settings.directory
        try:
            index = directory / f"{self.chain_id}.checkpoints.jsonl"
            if index.exists() and index.stat().st_size == 0:
                index.unlink()
            self._file_path.unlink(missing_ok=True)
            _fsync_dir(directory)
        except OSError as exc:
            log.warning("could not remove the empty audit file %s of a failed start: %s", self._file_path,
                        exc.strerror)
        self._file_path = None

    def _start(self, pid: int) -> None:
        self._reset_state()
        now = self._clock.now()
        # start time to the millisecond, so chains of one instance sort by when they started
        stamp = f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z"
        self.chain_id = f"{chain_instance(self.settings.instance)}.{stamp}.{secrets.token_hex(3)}"
        try:
            self.settings.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditUnavailable(f"cannot create {self.settings.directory}: {exc.strerror}") from exc
        self._open_next_file(now)
        previous_key = self._previous_key_id()
        self._append_locked(self._system("audit_chain_started", {
            "chain": self.chain_id, "key_id": self._signer.key_id, "pid": pid}))
        if previous_key is not None and previous_key != self._signer.key_id:
            self._append_locked(self._system("audit_key_rotated", {
                "old_key_id": previous_key, "new_key_id": self._signer.key_id}))
        attestations = self._recover_crashed_chains()
        for attestation in attestations:
            self._append_locked(self._system("audit_chain_recovered", attestation))
        self._checkpoint_locked(final=False)
        self._fsync_locked()
        self._pid = pid  # started: until here a failure leaves the next append to try again
        # each attested chain is marked only now that its attestation is sealed and durable: a marker written
        # first, with the attestation then failing (a full disk), would keep every later writer from attesting it
        for attestation in attestations:
            try:
                _write_marker(self.settings.directory / f"{attestation['chain']}.recovered",
                              {"by": self.chain_id, "last_seq": attestation["last_seq"]})
            except OSError as exc:  # the next writer attests it again: a second attestation of the same end
                log.warning("could not mark audit chain %s as attested: %s", attestation["chain"], exc.strerror)
        if self._background:
            threading.Thread(target=self._tick, name="audit-checkpoints", daemon=True).start()

    def _tick(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(self._next_tick()):
            if os.getpid() != pid:
                return
            try:
                with self._lock:
                    # not while a failed write has left the file abandoned: the next record moves to a new file
                    # and says so first; a checkpoint here would land in the abandoned file or in the empty one
                    # kept for the retry, and make what the abandonment record says of them untrue
                    if self._pid == pid and not self._closed and self._abandoned is None \
                            and self._checkpoint_due(self._clock.now()):
                        self._check_file_in_place()
                        self._checkpoint_locked(final=False)
                        self._fsync_locked()
            except AuditUnavailable as exc:
                log.error("audit checkpoint failed: %s", exc.detail)

    def _next_tick(self) -> float:
        """Seconds until the background thread looks again: when the last checkpoint is ``checkpoint_interval``
        old, which is when a record written since becomes due. Polling at a fixed half interval instead left
        records unsealed for up to 1.5 intervals (an append's own checkpoint falls between two polls). Once
        that time has passed with nothing to seal, any record appended seals itself (its checkpoint is due at
        once), so the thread then only looks every half interval (a failed checkpoint, an abandoned file)."""
        interval = self.settings.checkpoint_interval.total_seconds()
        last = self._last_checkpoint
        if last is not None:
            left = (last + self.settings.checkpoint_interval - self._clock.now()).total_seconds()
            if left > 0:
                # never more than the interval: a last checkpoint in the future (the clock was stepped back since)
                # is due at once (_checkpoint_due), not when the clock reaches it
                return max(min(left, interval), 0.01)
        return max(interval / 2, 0.05)

    def close(self) -> None:
        """Clean shutdown: a final checkpoint, fsync, the ``.closed`` marker, locks released."""
        self._stop.set()
        with self._lock:
            if self._pid != os.getpid() or self._closed or self._fd is None:
                return
            try:
                if self._abandoned is not None:  # the outage is recorded before the chain is sealed
                    self._rotate_locked(self._clock.now())
                self._checkpoint_locked(final=True)
                self._fsync_locked()
                _write_marker(self.settings.directory / f"{self.chain_id}.closed",
                              {"seq": self._seq, "hash": self._prev})
            except (OSError, AuditUnavailable) as exc:
                log.error("audit chain %s could not be closed cleanly: %s", self.chain_id, exc)
            finally:
                self._close_file()
                self._closed = True

    # --- files ---------------------------------------------------------------------------

    def _open_next_file(self, now: dt.datetime) -> None:
        path = self.settings.directory / f"{self.chain_id}.{self._file_index + 1:06d}.jsonl"
        # made and locked under a name no reader looks at, then linked into place: a writer starting meanwhile
        # must never find the file unlocked (it would attest this live chain as crashed at its last record)
        hidden = self.settings.directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = None
        try:
            fd = os.open(hidden, flags, 0o640)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "this writer is alive" for recovery
            try:
                os.link(hidden, path)  # fails if the name exists, like O_EXCL
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                # a file system without hard links (SMB, some FUSE mounts): create in place and lock at once,
                # the short window before the lock being the price
                os.close(fd)
                os.unlink(hidden)
                fd = os.open(path, flags, 0o640)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                os.unlink(hidden)
            _fsync_dir(self.settings.directory)
        except OSError as exc:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise AuditUnavailable(f"cannot create {path}: {exc.strerror}") from exc
        # the new file is locked before the old one is let go: the chain is never seen unlocked
        if self._file_path is not None:
            self._left = (self._file_path, self._written)
        self._close_file()
        self._file_index += 1
        self._fd, self._file_path, self._file_bytes, self._file_opened = fd, path, 0, now

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _rotate_due(self, now: dt.datetime) -> bool:
        return self._file_bytes >= self.settings.rotate_bytes or (
            self._file_opened is not None and passed(self._file_opened, self.settings.rotate_interval, now))

    # --- writing ---------------------------------------------------------------------------

    def _system(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"time": utc_text(self._clock.now()), "instance": self.settings.instance, "event": event,
                "outcome": "info", "data": data}

    def writable(self) -> str | None:
        """Readiness, without writing a record: why the next record could not be written, or None. The audit
        directory must still be a directory, and the open file (if any) still the one in it. Reads only; a
        failure is acted on when a record is written (:meth:`_check_file_in_place`). (A directory made read-only
        is not judged here: the open file still takes records until the next rotation, which then fails.)"""
        directory = self.settings.directory
        try:
            if not directory.is_dir():
                return f"{directory} is not a directory"
        except OSError as exc:  # is_dir() answers False only for a path that is not there (EACCES, EIO raise)
            return f"cannot look at {directory}: {exc.strerror}"
        if self._pid == os.getpid() and not self._file_in_place():
            return f"{self._file_path} was removed or replaced while open"
        return None

    def _file_in_place(self) -> bool:
        fd, path = self._fd, self._file_path
        if fd is None or path is None:
            return True
        try:
            here = os.stat(path)
            mine = os.fstat(fd)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino) and mine.st_nlink > 0

    def _check_file_in_place(self) -> None:
        """The open file must still be the one in the audit directory: records written to a file that was
        deleted or moved away would be lost to every reviewer, so that fails closed too."""
        if self._note_if_lost():
            raise AuditUnavailable(f"{self._file_path} was removed or replaced while open")

    def _note_if_lost(self) -> bool:
        """Whether the open file is no longer the one in the audit directory; if so, it is abandoned (the next
        rotation records the outage)."""
        if self._fd is None or self._file_path is None or self._abandoned is not None or self._file_in_place():
            return False
        self._lose()
        self._abandoned = {"file": self._file_path.name, "bytes": self._file_bytes,
                           "truncated_partial_line": False, "error": "the file was removed or replaced while open"}
        return True

    def append(self, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Append ``record`` (without ``seq``/``prev``); return a token for :meth:`sync` and the record as
        written (with ``v``, ``seq`` and ``prev``), for forwarding."""
        with self._lock:
            self._ensure_started()
            now = self._clock.now()
            # whether the file is still in place is checked before every fsync (sync, checkpoints), not here:
            # a record written after the file was removed is refused there, before any answer relies on it
            if self._abandoned is not None or self._rotate_due(now):
                self._rotate_locked(now)
            written = self._append_locked(record)
            token = self._written
            if self._checkpoint_due(now):
                self._checkpoint_locked(final=False)
            return token, written

    def _append_locked(self, record: dict[str, Any]) -> dict[str, Any]:
        if self._fd is None:
            raise AuditUnavailable("the audit file is not open")
        seq = self._seq + 1
        ordered = {"v": record.get("v", 1), "seq": seq, "prev": self._prev,
                   **{k: v for k, v in record.items() if k != "v"}}
        line = (_LINE_ENCODER.encode(ordered) + "\n").encode("utf-8")
        good_size = self._file_bytes
        view = memoryview(line)
        try:
            while view:  # one write() per line normally; O_APPEND keeps the line whole
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self._abandon(good_size, len(line) - len(view), exc)
            raise AuditUnavailable(f"cannot write {self._file_path}: {exc.strerror}") from exc
        self._seq = seq
        self._prev = line_hash(line)
        self._file_bytes += len(line)
        self._written += 1
        self._last_line = line
        return ordered

    def _abandon(self, good_size: int, partial: int, exc: OSError) -> None:
        """After a failed write (``partial`` bytes of the line got out): cut the file back to its last whole line;
        the next record starts a new file, and says how many bytes of a torn line were left if it could not be
        cut back (so the verifier can tell that torn line from one added later)."""
        cut = True
        try:
            if self._fd is not None:
                os.ftruncate(self._fd, good_size)
                os.fsync(self._fd)  # what was whole before the failure stays durable
                self._synced = max(self._synced, self._written)
        except OSError:
            cut = False
            self._lose()
        if self._retry_in_place and self._abandoned is not None:
            return  # the empty file kept for the retry failed again: the file the chain left is still the one to name
        self._abandoned = {"file": self._file_path.name if self._file_path else None, "bytes": good_size,
                           "truncated_partial_line": cut, "torn_bytes": 0 if cut else partial,
                           "error": exc.strerror or str(exc)}

    def _rotate_locked(self, now: dt.datetime) -> None:
        abandoned = self._abandoned
        if abandoned is None:
            self._checkpoint_locked(final=False)  # seal the file before leaving it
            self._fsync_locked()
        if not self._retry_in_place:
            self._open_next_file(now)
        self._retry_in_place = False
        if abandoned is not None:
            self._abandoned = None
            try:
                self._append_locked(self._system("audit_file_abandoned", abandoned))
            except AuditUnavailable:
                if self._fd is not None and self._file_bytes == 0:
                    # the disk is still full and the new file holds nothing: the next record tries this file
                    # again, instead of leaving one more empty file behind for every refused request
                    self._abandoned, self._retry_in_place = abandoned, True
                raise

    # --- checkpoints -------------------------------------------------------------------------

    def _checkpoint_due(self, now: dt.datetime) -> bool:
        # passed() also when the last checkpoint lies in the future: the clock was stepped back since
        return self._seq > self._sealed_seq and (
            self._last_checkpoint is None or passed(self._last_checkpoint, self.settings.checkpoint_interval, now))

    def checkpoint(self) -> None:
        with self._lock:
            self._ensure_started()
            self._note_if_lost()  # a checkpoint into a file no longer in the directory would seal nothing
            if self._abandoned is not None:  # the outage is recorded (in a new file) before anything is sealed
                self._rotate_locked(self._clock.now())
            self._checkpoint_locked(final=False)
            self._fsync_locked()

    def _checkpoint_locked(self, *, final: bool) -> None:
        now = self._clock.now()
        time = utc_text(now)
        covers_seq, covers_hash = self._seq, self._prev
        record = {"time": time, "instance": self.settings.instance, "event": "audit_checkpoint", "outcome": "info",
                  "data": {"chain": self.chain_id, "covers_seq": covers_seq, "covers_hash": covers_hash,
                           "key_id": self._signer.key_id, "final": final, "file": self._file_index,
                           "signature": self._signer.sign(self.chain_id, covers_seq, covers_hash, time, final)}}
        written = self._append_locked(record)
        index = self.settings.directory / f"{self.chain_id}.checkpoints.jsonl"
        _append_whole_line(index, self._last_line)  # the same bytes as in the chain
        # sealed only once the index holds it too
        self._sealed_seq = self._seq
        self._last_checkpoint = now
        if self._on_checkpoint is not None:
            with contextlib.suppress(Exception):  # forwarding never blocks the audit trail
                self._on_checkpoint(written)

    # --- durability --------------------------------------------------------------------------

    def _lose(self) -> None:
        """The open file is lost: what was written to it and not yet synced will never be durable."""
        if self._written > self._synced:
            self._lost.append((self._synced, self._written, self._file_path))

    def _check_not_lost(self, upto: int) -> None:
        for after, last, path in self._lost:
            if after < upto <= last:
                # another request found the file gone first; this one's records were in it too (the file named
                # is that one, not the one the writer has moved on to since)
                raise AuditUnavailable(f"the records of this request were in {path}, which was lost "
                                       "before they were synced")

    def sync(self, upto: int) -> None:
        """fsync so that everything up to token ``upto`` is on disk; concurrent callers share one fsync."""
        if self._lost:
            self._check_not_lost(upto)
        if upto <= self._synced:
            return
        with self._sync_lock:
            if upto <= self._synced:
                return
            with self._lock:
                target, path, since = self._written, self._file_path, self._synced
                self._check_not_lost(upto)
                if self._abandoned is None:
                    self._check_file_in_place()
                if self._fd is None:
                    raise AuditUnavailable("the audit file is not open")
                try:
                    # a descriptor of our own: a rotation meanwhile (another thread's append) fsyncs and closes
                    # the writer's, and the fsync here failed with EBADF though the records were durable (or
                    # synced whatever file had reused the number)
                    fd = os.dup(self._fd)
                except OSError as exc:
                    raise AuditUnavailable(f"cannot sync {path}: {exc.strerror}") from exc
            try:
                os.fsync(fd)
            except OSError as exc:
                with self._lock:
                    self._fsync_failed(target, path, exc, since=since)
                raise AuditUnavailable(f"cannot sync {path}: {exc.strerror}") from exc
            finally:
                os.close(fd)
            with self._lock:
                # a checkpoint's or rotation's fsync of the same open file may have failed meanwhile: the kernel
                # told that one, and this success does not make durable what it lost
                self._check_not_lost(upto)
                self._synced = max(self._synced, target)  # a rotation meanwhile may have synced further

    def _fsync_locked(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fsync_failed(self._written, self._file_path, exc)
            raise AuditUnavailable(f"cannot sync {self._file_path}: {exc.strerror}") from exc
        self._synced = self._written

    def _fsync_failed(self, upto: int, path: Path | None, exc: OSError, *, since: int | None = None) -> None:
        """An fsync of ``path`` failed (under the lock). The kernel may have dropped the pages it could not write,
        and it reports that once (Linux: once per open file; the next fsync succeeds without them): so the records
        written since the last good fsync, up to token ``upto``, are lost for every request that wrote them, not
        only for the one whose fsync saw the error, and the file is left like one whose write failed (the next
        record starts a new file with ``audit_file_abandoned``). The open file, or the one a rotation has just left,
        lost whatever was written to it meanwhile too (another thread's records, after this fsync began): a later
        fsync would not say so.
        ``since``: what was synced when this fsync began; another fsync of the same open file that succeeded
        meanwhile (a checkpoint's beside a request's) was not told of the error, and synced nothing it lost."""
        current = path is not None and path == self._file_path
        if current:
            upto = max(upto, self._written)
        elif self._left is not None and path == self._left[0]:
            upto = max(upto, self._left[1])  # left meanwhile: what went to it up to then, as for the open file
        after = self._synced if since is None else min(since, self._synced)
        if upto > after:
            self._lost.append((after, upto, path))
        if current and path is not None and self._abandoned is None:
            self._abandoned = {"file": path.name, "bytes": self._file_bytes, "truncated_partial_line": False,
                               "torn_bytes": 0, "error": exc.strerror or str(exc)}

    # --- other chains ------------------------------------------------------------------------

    def _previous_key_id(self) -> str | None:
        """The key of the most recently started other chain here, to record a key rotation."""
        newest: tuple[str, str] | None = None
        for index in self.settings.directory.glob("*.checkpoints.jsonl"):
            chain = index.name[: -len(".checkpoints.jsonl")]
            if chain == self.chain_id:
                continue
            try:
                with os.fdopen(open_regular(index), "rb") as f:
                    first = json_object(f.readline())
                started = chain.split(".")[-2] if chain.count(".") >= 2 else ""
                if first is not None and (newest is None or started > newest[0]):
                    newest = (started, str(first["data"]["key_id"]))
            except (OSError, KeyError, TypeError):
                continue
        return newest[1] if newest else None

    def _recover_crashed_chains(self) -> list[dict[str, Any]]:
        """Attest chains whose writer died without a final checkpoint (their files are unlocked)."""
        attestations = []
        directory = self.settings.directory
        present = chain_files(directory)
        for chain, files in present.items():
            if chain == self.chain_id or (directory / f"{chain}.closed").exists() \
                    or (directory / f"{chain}.recovered").exists():
                continue
            _, last = files[-1]
            try:
                fd = open_regular(last)
            except FileNotFoundError:
                continue
            except OSError as exc:  # not a file a writer made (a FIFO planted there): the verifier names it
                log.warning("not attesting audit chain %s: %s: %s", chain, last.name, exc.strerror)
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    continue  # its writer is alive
                if (directory / f"{chain}.{files[-1][0] + 1:06d}.jsonl").exists():
                    continue  # it rotated meanwhile: alive
                try:
                    _, torn = read_tail(last)
                    last_seq, last_hash = _last_record(files)
                except OSError as exc:  # removed or unreadable meanwhile: nothing to attest now
                    log.warning("could not read crashed audit chain %s: %s", chain, exc.strerror)
                    continue
                attestations.append({"chain": chain, "file": last.name, "last_seq": last_seq,
                                     "last_hash": last_hash, "torn_bytes": len(torn)})
            finally:
                os.close(fd)
        return attestations


def _write_marker(path: Path, data: dict[str, Any]) -> None:
    """Write a marker file (``.closed``, ``.recovered``) whole or not at all: written and fsynced under a hidden
    name, then renamed into place. A marker written in place on a full disk stayed behind empty, which the
    verifier rightly reports as modified."""
    hidden = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            content = (json.dumps(data) + "\n").encode()
            if os.write(fd, content) != len(content):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(hidden, path)
    except OSError:
        with contextlib.suppress(OSError):
            hidden.unlink()
        raise
    _fsync_dir(path.parent)


def _last_record(files: list[tuple[int, Path]]) -> tuple[int, str]:
    """Sequence number and hash of a chain's last whole record, looking back across files (a crash right
    after a rotation leaves the newest file empty or with only a torn line)."""
    for _, path in reversed(files):
        lines, _ = read_tail(path)
        for line in reversed(lines):
            record = json_object(line)
            try:
                if record is not None:
                    return int(record["seq"]), line_hash(line)
            except (ValueError, KeyError, TypeError, OverflowError):
                continue
    return 0, GENESIS


def _append_whole_line(path: Path, line: bytes) -> None:
    """Append one line and fsync; on failure cut the file back, so no partial line is left behind."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        raise AuditUnavailable(f"cannot write {path}: {exc.strerror}") from exc
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise AuditUnavailable(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable (a file fsynced into a lost entry is lost too)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
