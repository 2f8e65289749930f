"""Verifying audit chains: the first problem, named precisely (file, line, sequence number, what).

What each problem means:

``modified``   a record's bytes differ from what the next record (or a checkpoint) hashed
``missing``    sequence numbers skip: records (or a whole rotated file) were deleted; or the checkpoint
               index of a chain that holds checkpoints is gone (or empty); or a chain's index or marker is
               left without any of its record files
``inserted``   a sequence number repeats: a record was added; or anything follows the final checkpoint,
               or the end a later writer attested (records, a file, bytes of a torn line)
``reordered``  a sequence number goes backwards, or skips ahead of one found later in the chain (lines or files
               moved)
``truncated``  the chain ends before a checkpoint listed in its checkpoint index, not exactly at the
               final checkpoint its ``<chain>.closed`` marker records, or before the end a later writer
               attested (every attestation of a chain must name its end exactly)
``torn``       the last line is incomplete (a crash while writing) and no later writer attested it
``bad checkpoint signature``  a checkpoint's Ed25519 signature does not verify
``unknown key``               a checkpoint is signed by a key the reviewer did not supply
``unsealed``   the chain holds records (its start record alone, too) but no checkpoint: a writer seals its
               chain with a signed checkpoint while starting it, before any event, so nothing vouches for
               these records (anyone can write a chain of hashes; only the key signs); unless a later
               writer's attestation names exactly its end (a writer that stopped while starting)

What the writer leaves (:mod:`broker.audit.chain`, docs/audit.md "Files and
tamper evidence") decides what is normal. A closed writer never appends again
(a restarted broker starts a new chain), so nothing may follow a final
checkpoint, and ``<chain>.closed`` names that checkpoint's seq and hash. Every
chain's first checkpoint is written while it starts and copied into
``<chain>.checkpoints.jsonl``, so a chain holding a checkpoint has an index.

Records after the last *periodic* checkpoint of an open chain are reported as a
warning: a running writer has them, and until a checkpoint seals them they could
be cut off without trace (that is what checkpoints bound). A chain whose writer
crashed is sealed by the attestation a later writer recorded
(``audit_chain_recovered``), which also explains a torn last line, or a writer
stopped between its first checkpoint and the index copy of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from broker.audit.chain import (
    _LINE_ENCODER,
    FILE_PATTERN,
    GENESIS,
    by_start,
    chain_files,
    json_object,
    line_hash,
    open_regular,
    read_head,
    read_regular,
)
from broker.audit.keys import AuditKeyring


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    seq: int | None
    what: str
    detail: str
    # what the line at ``file:line`` holds, as it reads now (its event, time and reference: :func:`described`), so
    # that a reviewer knows which event the problem is at without opening the file; None: no line, or no record
    record: str | None = None

    def __str__(self) -> str:
        """The problem as a line for a reviewer's terminal (``verify``, the report). ``detail`` quotes what the files
        say (a key id, a hash, an attested file name), which an intruder chose: control and format characters in
        it (ESC sequences that move the cursor and overwrite the lines above, a right-to-left override) are shown
        as escapes, never sent to the terminal. ``--json`` gives the text as it is (JSON escapes them itself)."""
        where = self.file + (f":{self.line}" if self.line is not None else "")
        about = [f"seq {self.seq}"] if self.seq is not None else []
        about += [self.record] if self.record else []
        about_text = " (" + ", ".join(about) + ")" if about else ""
        return shown(f"{where}{about_text}: {self.what}: {self.detail}")


def described(record: dict[str, Any]) -> str | None:
    """A record as a reviewer names it: its event, when it was written and the reference of the login it belongs
    to (``certificate_accepted of 2026-11-24T08:00:00.000Z, reference 3F9A-C21B-77D0-1E2F``); None for an object
    without an event."""
    event, time, reference = record.get("event"), record.get("time"), record.get("correlation_id")
    if not isinstance(event, str):
        return None
    text = event + (f" of {time}" if isinstance(time, str) else "")
    return text + (f", reference {reference}" if isinstance(reference, str) and reference.strip("-") else "")


def _with_record(problem: Problem) -> Problem:
    """``problem`` with what its line holds (:attr:`Problem.record`), when it names a line of a record."""
    if problem.line is None or problem.record is not None:
        return problem
    try:
        lines, _ = _lines(read_regular(Path(problem.file)))
    except OSError:
        return problem
    if not 1 <= problem.line <= len(lines):  # a torn line, or a file that changed meanwhile
        return problem
    record = json_object(lines[problem.line - 1])
    return replace(problem, record=described(record)) if record is not None else problem


def shown(text: str) -> str:
    """``text`` with every character that is not printable (str.isprintable: control, format, separator other than
    the space) written as its Python escape (``\\x1b``, ``\\u202e``)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@dataclass
class ChainReport:
    chain: str
    files: list[str] = field(default_factory=list)
    records: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    checkpoints: int = 0
    sealed_seq: int = 0
    key_ids: set[str] = field(default_factory=set)
    closed: bool = False
    torn_at: tuple[str, int] | None = None
    torn_bytes: int = 0  # the length of the torn last line at torn_at
    # a problem unless a later writer's attestation of this chain's end explains it (see _check_index and
    # verify_chain), and what the warning says when one does
    unless_attested: Problem | None = None
    attested_note: str = ("no checkpoint index: the writer stopped before copying its first checkpoint there "
                          "(attested by a later writer)")
    attestations: list[dict[str, Any]] = field(default_factory=list)   # recoveries this chain recorded
    # the signing keys this chain's writer recorded a change from (audit_key_rotated): old key id -> (time, file,
    # line, seq); and the key of a checkpoint of this chain the reviewer did not give
    rotations: dict[str, tuple[Any, str, int, int]] = field(default_factory=dict)
    unknown_key: str | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verification:
    chains: list[ChainReport]

    @property
    def ok(self) -> bool:
        return all(not c.problems for c in self.chains) and bool(self.chains)

    def first_problem(self) -> Problem | None:
        for chain in self.chains:
            if chain.problems:
                return chain.problems[0]
        return None


def collect(paths: Iterable[Path]) -> dict[str, list[tuple[int, Path]]]:
    """Chains among ``paths`` (files or directories), each file once however often it is named (``DIR DIR/``,
    a file and its directory, a directory through a symbolic link): a file read twice was an insertion."""
    chains: dict[str, list[tuple[int, Path]]] = {}
    seen: set[Path] = set()

    def add(chain: str, n: int, path: Path) -> None:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            chains.setdefault(chain, []).append((n, path))

    for path in paths:
        if path.is_dir():
            for chain, files in chain_files(path).items():
                for n, file in files:
                    add(chain, n, file)
        else:
            m = FILE_PATTERN.match(path.name)
            if m:
                add(m.group("chain"), int(m.group("n")), path)
    for files in chains.values():
        files.sort()
    return chains


def distinct_copies(files: Sequence[tuple[int, Path]]) -> list[tuple[int, Path]]:
    """A chain's files (in order, as :func:`collect` gives them) with each file once, though it was copied into
    several of the directories given (an archive and the live directory): of copies with the same number of which
    each is a beginning of the longest (the same bytes, or a copy taken while the writer was still writing the
    file), the longest, which holds all they say. Copies that differ otherwise are all kept: the verifier names
    them (a copy read twice was an insertion, and ``query`` and ``report`` counted its events twice)."""
    kept: list[tuple[int, Path]] = []
    for n, path in files:
        if kept and kept[-1][0] == n:
            longer = _longer_copy(kept[-1][1], path)
            if longer is not None:
                kept[-1] = (n, longer)
                continue
        kept.append((n, path))
    return kept


def _longer_copy(a: Path, b: Path) -> Path | None:
    """Of two copies of a chain file, the one that holds the other as its beginning (None: they differ, or one
    cannot be read, which the verifier names)."""
    try:
        first, second = read_regular(a), read_regular(b)
    except OSError:
        return None
    if first.startswith(second):
        return a
    return b if second.startswith(first) else None


def _other_copy(path: Path, other: Path) -> tuple[int | None, int | None]:
    """The line (1-based) of ``path`` from which it differs from ``other``, another copy of the same chain file
    (neither a beginning of the other), and the sequence number on that line."""
    try:
        ours, theirs = _lines(read_regular(path))[0], _lines(read_regular(other))[0]
    except OSError:
        return None, None
    number = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False), start=1) if a != b),
                  min(len(ours), len(theirs)) + 1)
    return number, _seq_of(ours[number - 1]) if number <= len(ours) else None


def _directories(files: Sequence[tuple[int, Path]], given: Sequence[Path] = ()) -> list[Path]:
    """The directories a chain's files are in, in the order of the files, then the other directories ``given`` to
    the verifier. A reviewer may collect a chain from several (an archive of its older files beside the live
    directory, docs/audit.md): its index and ``.closed`` marker are next to whichever files the writer wrote last,
    not necessarily its first, or still in the live directory when every record file was moved to the archive."""
    found: list[Path] = []
    seen: set[Path] = set()
    for directory in [p.parent for _, p in files] + list(given):
        real = directory.resolve()
        if real not in seen:
            seen.add(real)
            found.append(directory)
    return found


class _Walker:
    """Walks one chain's records in order, checking the links as it goes."""

    def __init__(self, chain: str, keyring: AuditKeyring, report: ChainReport,
                 indexed: frozenset[int] = frozenset(), index_hashes: frozenset[tuple[int, str]] = frozenset()
                 ) -> None:
        self.chain = chain
        self.indexed = indexed  # seqs the checkpoint index names: their positions are remembered
        self.index_hashes = index_hashes  # (seq, hash) of the lines of the checkpoint index
        self.keyring = keyring
        self.report = report
        self.expected = 1
        self.prev = GENESIS
        self.prev_where: tuple[str, int] | None = None
        self.prev_time: Any = None  # the time the record before wrote
        self.positions: dict[int, tuple[str, int, str]] = {}  # indexed seq -> (file, line, hash of the line)
        self.first_checkpoint: tuple[str, int, int] | None = None  # (file, line, seq)
        self.final_checkpoint: tuple[str, int, int] | None = None  # (file, line, seq)
        self.checkpoint_seqs: set[int] = set()  # the seqs of checkpoints whose signature verified
        self.first_record: tuple[str, int] | None = None  # where the chain's start record is
        self.second_record: tuple[str, int] | None = None  # where the first record after the start is
        self.events: set[str] = set()  # the events of the records after the start
        self.later_files: Sequence[Path] = ()  # the chain's files after the one being walked
        self.instance: Any = None  # as the chain's start record names it

    def fail(self, file: str, line: int | None, seq: int | None, what: str, detail: str) -> None:
        self.report.problems.append(Problem(file, line, seq, what, detail))

    def record(self, file: str, number: int, raw: bytes, file_seqs: Sequence[int | None] = ()) -> bool:
        """Check line ``number`` (1-based); False stops the walk (the first problem is what a reviewer needs).

        ``file_seqs``: the sequence numbers of the file's lines, to tell a record
        moved elsewhere in the file (reordered) from one deleted (missing).
        """
        if self.final_checkpoint is not None:
            self.fail(file, number, _seq_of(raw), "inserted", f"a record {_after(self.final_checkpoint)}")
            return False
        rec = json_object(raw)
        try:
            if rec is None:
                raise ValueError("not a record")
            seq = int(rec["seq"])
            prev = str(rec["prev"])
        except (ValueError, KeyError, TypeError, OverflowError):
            self.fail(file, number, None, "modified", "the line is not a well-formed audit record")
            return False
        if seq < self.expected:
            if seq == self.expected - 1:
                self.fail(file, number, seq, "inserted", f"a second record with seq {seq}")
            else:
                self.fail(file, number, seq, "reordered", f"seq {seq} comes after seq {self.expected - 1}")
            return False
        if seq > self.expected:
            if self.expected in file_seqs[number:]:
                self.fail(file, number, seq, "reordered", f"seq {seq} comes before seq {self.expected}")
            elif (found := _find_seq(self.later_files, self.expected)) is not None:
                self.fail(file, number, seq, "reordered",
                          f"seq {seq} comes before seq {self.expected} ({found[0].name}:{found[1]})")
            else:
                gap = f"{self.expected}" if seq == self.expected + 1 else f"{self.expected}..{seq - 1}"
                # the records around the gap bound when those that are gone were written
                when = f" (written between {self.prev_time} and {rec.get('time')})" \
                    if isinstance(self.prev_time, str) and isinstance(rec.get("time"), str) else ""
                self.fail(file, number, seq, "missing", f"record(s) {gap} are missing before this one{when}")
            return False
        if prev != self.prev:
            if (seq - 1, self.prev) in self.index_hashes:
                # the record before is a checkpoint as its copy in the index has it too: this one differs (its
                # prev changed, or it is another chain's, files of two chains mixed)
                self.fail(file, number, seq, "modified", f"its prev does not name the record before it (seq "
                                                         f"{seq - 1}, a checkpoint as the checkpoint index has it)")
            elif self.prev_where is not None:
                pfile, pline = self.prev_where
                self.fail(pfile, pline, seq - 1, "modified",
                          f"its hash differs from what the next record (seq {seq}) recorded")
            else:
                self.fail(file, number, seq, "modified", "the first record does not start from the genesis hash")
            return False
        if seq == 1 and (rec.get("event") != "audit_chain_started" or _data(rec).get("chain") != self.chain):
            self.fail(file, number, seq, "modified", "the chain does not start with its audit_chain_started record")
            return False
        if rec.get("event") == "audit_checkpoint" and not self.checkpoint(file, number, seq, rec, raw):
            return False
        if seq in self.indexed:
            self.positions[seq] = (file, number, line_hash(raw))
        if rec.get("event") == "audit_chain_recovered":
            self.report.attestations.append({**_data(rec), "by_seq": seq})
        if rec.get("event") == "audit_key_rotated" and isinstance(_data(rec).get("old_key_id"), str):
            self.report.rotations.setdefault(_data(rec)["old_key_id"], (rec.get("time"), file, number, seq))
        if seq == 1:
            self.first_record = (file, number)
            self.instance = rec.get("instance")
        if seq == 2:
            self.second_record = (file, number)
        if seq > 1:
            self.events.add(str(rec.get("event")))
        self.prev = line_hash(raw)
        self.prev_where = (file, number)
        self.prev_time = rec.get("time")
        self.expected = seq + 1
        self.report.records += 1
        self.report.last_seq = seq
        self.report.last_hash = self.prev
        return True

    def _checkpoint_line(self, seq: int, rec: dict[str, Any]) -> bytes:
        """The checkpoint line ``ChainWriter._checkpoint_locked`` writes with the values of ``rec`` that are checked
        (the signed ones, seq and prev) and the chain's instance (every record of one writer names the same):
        every other field fixed, in the writer's order and encoding."""
        data = _data(rec)
        return _LINE_ENCODER.encode({
            "v": 1, "seq": seq, "prev": self.prev, "time": rec.get("time"), "instance": self.instance,
            "event": "audit_checkpoint", "outcome": "info",
            "data": {"chain": self.chain, "covers_seq": seq - 1, "covers_hash": self.prev, "key_id": data.get("key_id"),
                     "final": data.get("final"), "file": data["file"] if type(data.get("file")) is int else None,
                     "signature": data.get("signature")}}).encode("utf-8")

    def checkpoint(self, file: str, number: int, seq: int, rec: dict[str, Any], raw: bytes) -> bool:
        data = _data(rec)
        try:
            kid, signature = str(data["key_id"]), str(data["signature"])
            covers_seq, covers_hash = int(data["covers_seq"]), str(data["covers_hash"])
            chain, time = str(data["chain"]), str(rec["time"])
        except (KeyError, ValueError, TypeError):
            self.fail(file, number, seq, "modified", "the checkpoint lacks its fields")
            return False
        if chain != self.chain or covers_seq != seq - 1 or covers_hash != self.prev:
            self.fail(file, number, seq, "modified", "the checkpoint does not seal the record before it")
            return False
        if raw.rstrip(b"\n") != self._checkpoint_line(seq, rec):
            # the signature covers only some of its fields, and the chain's last checkpoint no record after it: the
            # rest (its outcome, a user or reason added, the instance) could be changed with the .closed marker
            # and the index copy to match
            self.fail(file, number, seq, "modified", "the checkpoint is not the line its writer wrote (fields the "
                                                     "signature does not cover differ)")
            return False
        if kid not in self.keyring:
            self.report.unknown_key = kid
            self.fail(file, number, seq, "unknown key", f"signed with key {kid}; known: "
                                                          f"{', '.join(self.keyring.ids()) or 'none'}")
            return False
        if not self.keyring.verify(kid, signature, chain, covers_seq, covers_hash, time, data.get("final") is True):
            self.fail(file, number, seq, "bad checkpoint signature", f"key {kid}")
            return False
        self.report.checkpoints += 1
        self.checkpoint_seqs.add(seq)
        self.report.sealed_seq = seq
        self.report.key_ids.add(kid)
        self.report.closed = bool(data.get("final"))
        if self.first_checkpoint is None:
            self.first_checkpoint = (file, number, seq)
        if self.report.closed:
            self.final_checkpoint = (file, number, seq)
        return True


# what ChainWriter._start records after audit_chain_started and before the chain's first checkpoint
_START_EVENTS = frozenset({"audit_key_rotated", "audit_chain_recovered"})


def _gone_before(path: Path, walker: _Walker) -> str:
    """Which records went with the file(s) missing before ``path`` (": records 24..30, written between ... and
    ..."), by the record before the gap and ``path``'s first; empty when that line cannot be read."""
    try:
        first = json_object(read_head(path))
    except OSError:
        return ""
    if first is None or type(first.get("seq")) is not int or not isinstance(first.get("time"), str) \
            or first["seq"] <= walker.expected:  # no record is gone by its seq: the walk names what is wrong next
        return ""
    when = f"between {walker.prev_time} and" if isinstance(walker.prev_time, str) else "before"
    return f": records {walker.expected}..{first['seq'] - 1}, written {when} {first['time']}"


def _after(final: tuple[str, int, int]) -> str:
    """Why anything after the final checkpoint is tampering: ``ChainWriter.close`` writes the final
    checkpoint and the ``.closed`` marker and never appends again (a restarted broker starts a new chain)."""
    file, line, seq = final
    return f"after the final checkpoint (seq {seq}, {Path(file).name}:{line}): a closed chain is never written again"


def _data(rec: dict[str, Any]) -> dict[str, Any]:
    data = rec.get("data")
    return data if isinstance(data, dict) else {}


def _seq_of(raw: bytes) -> int | None:
    rec = json_object(raw)
    try:
        return int(rec["seq"]) if rec is not None else None
    except (ValueError, KeyError, TypeError, OverflowError):
        return None


def _find_seq(files: Sequence[Path], seq: int) -> tuple[Path, int] | None:
    """Where (file, line) a record with ``seq`` is among ``files``: a record the walk missed may have been moved
    to a later file (files renamed, a line moved), which is reordering, not deletion."""
    for path in files:
        try:
            lines, _ = _lines(read_regular(path))
        except OSError:
            continue
        for number, raw in enumerate(lines, start=1):
            if _seq_of(raw) == seq:
                return path, number
    return None


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    cut = data.rfind(b"\n") + 1
    return [line + b"\n" for line in data[:cut].split(b"\n")[:-1]], data[cut:]


def verify_chain(chain: str, copies: Sequence[tuple[int, Path]], keyring: AuditKeyring,
                 given: Sequence[Path] = ()) -> ChainReport:
    """``copies``: the chain's files as :func:`collect` found them, a file copied into several directories once
    per copy; each is read once (:func:`distinct_copies`), and the index and marker are looked for beside all, and
    in the directories ``given`` to the verifier."""
    files = distinct_copies(copies)
    report = ChainReport(chain, files=[str(p) for _, p in files])
    markers = _closed_markers(chain, copies, given)
    try:
        index_lines = _index_lines(chain, copies, given)
    except OSError as exc:
        index_path = exc.filename or files[0][1].parent / f"{chain}.checkpoints.jsonl"
        report.problems.append(Problem(str(index_path), None, None, "missing", f"cannot read: {exc.strerror}"))
        return report
    remembered = {seq for _, _, _, seq in index_lines if seq is not None}
    for _, recorded in markers:
        if recorded is not None:
            remembered |= {recorded[0], recorded[0] + 1}  # the end it records, and what would follow it
    walker = _Walker(chain, keyring, report, frozenset(remembered),
                     frozenset((seq, line_hash(raw)) for _, _, raw, seq in index_lines if seq is not None))
    expected_file = 1
    for index, (n, path) in enumerate(files):
        name = str(path)
        if walker.final_checkpoint is not None:
            walker.fail(name, None, walker.expected, "inserted", f"a file {_after(walker.final_checkpoint)}")
            return report
        if n == expected_file - 1 and index > 0:  # a copy of the file before, neither a beginning of the other
            other = files[index - 1][1]
            line, seq = _other_copy(path, other)
            walker.fail(name, line, seq, "modified",
                        f"{other} is another copy of this file, which differs from it from this line on")
            return report
        if n != expected_file:
            walker.fail(name, None, walker.expected, "missing",
                        f"file {expected_file:06d} of the chain is missing{_gone_before(path, walker)}")
            return report
        expected_file += 1
        try:
            data = read_regular(path)
        except OSError as exc:
            walker.fail(name, None, None, "missing", f"cannot read: {exc.strerror}")
            return report
        lines, torn = _lines(data)
        seqs = [_seq_of(raw) for raw in lines]
        walker.later_files = [p for _, p in files[index + 1:]]
        for number, raw in enumerate(lines, start=1):
            if not walker.record(name, number, raw, seqs):
                return report
        if torn:
            if walker.final_checkpoint is not None:
                walker.fail(name, len(lines) + 1, None, "inserted",
                            f"an incomplete line {_after(walker.final_checkpoint)}")
                return report
            if index == len(files) - 1:
                report.torn_at = (name, len(lines) + 1)
                report.torn_bytes = len(torn)
            elif _abandoned_uncut(path, len(data) - len(torn), len(torn), files[index + 1][1]):
                report.warnings.append(f"torn line at {name}:{len(lines) + 1}: a write failed and could not be "
                                       f"cut back (audit_file_abandoned at the start of "
                                       f"{files[index + 1][1].name})")
            else:
                walker.fail(name, len(lines) + 1, None, "modified", "an incomplete line inside the chain")
                return report
    if walker.first_checkpoint is None and walker.first_record is not None:
        # nothing signed vouches for any record of it, not even a lone audit_chain_started line: anyone can write
        # that one (with any user, outcome or time in it) as well as a whole chain of hashes
        if walker.second_record is not None:
            file, line = walker.second_record
            problem = Problem(file, line, 2, "unsealed", f"{report.records - 1} record(s) after the chain's start, "
                                                         "and no checkpoint: the writer seals a chain while "
                                                         "starting it")
        else:
            file, line = walker.first_record
            problem = Problem(file, line, 1, "unsealed", "the chain's start record alone, and no checkpoint: the "
                                                         "writer seals a chain while starting it")
        if walker.events <= _START_EVENTS and markers:
            # a writer that stopped while starting never closes its chain: the marker says where it really ended
            _check_closed(markers[0], files, report, walker)
            if report.problems:
                return report
        if walker.events <= _START_EVENTS:
            # what a writer records while starting, before its first checkpoint: it stopped there (a crash, a
            # full disk), which only a later writer's attestation of exactly this end can say
            report.unless_attested = problem
            report.attested_note = ("no checkpoint: the writer stopped while starting the chain (attested by a "
                                    "later writer)")
            return report
        report.problems.append(problem)
        return report
    _check_index(chain, files, report, walker, copies, given)
    for marker in markers:
        if report.problems:
            break
        _check_closed(marker, files, report, walker)
    return report


def _abandoned_uncut(path: Path, whole: int, torn: int, following: Path) -> bool:
    """Whether the chain's next file starts with the ``audit_file_abandoned`` record that explains the torn
    line (``torn`` bytes) at the end of ``path`` (``whole`` bytes of whole lines before it).

    A write that puts out part of a line and then fails (EIO) leaves the part behind when cutting the file
    back fails too; the writer then goes on in a new file whose first record names the abandoned file, its
    size before the failed write, ``truncated_partial_line: false`` and how many bytes of the line got out
    (``torn_bytes``; records of older writers lack it). That record is chained and sealed like any other
    (the walk checks it next), so it cannot be added afterwards without breaking the chain; a torn line of
    any other length, or after a file the writer did cut back, is still a modification.
    """
    try:
        with os.fdopen(open_regular(following), "rb") as f:
            first = json_object(f.readline())
    except OSError:
        return False
    if first is None or first.get("event") != "audit_file_abandoned":
        return False
    data = _data(first)
    return data.get("file") == path.name and data.get("bytes") == whole \
        and data.get("truncated_partial_line") is False and data.get("torn_bytes", torn) == torn


def _index_lines(chain: str, files: Sequence[tuple[int, Path]],
                 given: Sequence[Path] = ()) -> list[tuple[Path, int, bytes, int | None]]:
    """(index, line number, line, seq) of the chain's checkpoint index, in every directory its files are in
    (each copy must hold copies of the chain's checkpoints only: an older copy in an archive is a prefix of
    the live one)."""
    found = []
    for directory in _directories(files, given):
        index = directory / f"{chain}.checkpoints.jsonl"
        if index.exists():
            found += [(index, n, raw, _seq_of(raw)) for n, raw in enumerate(read_regular(index).splitlines(), 1)]
    return found


def _check_index(chain: str, files: Sequence[tuple[int, Path]], report: ChainReport, walker: _Walker,
                 copies: Sequence[tuple[int, Path]], given: Sequence[Path] = ()) -> None:
    """Every checkpoint the writer also put in the index must still be in the chain, byte for byte.

    ``ChainWriter._checkpoint_locked`` copies each checkpoint into the index right after writing it, and
    a chain's first checkpoint is part of starting it; so a chain that holds a checkpoint but has no
    index (or an empty one) lost it. The one benign exception: the writer stopped (crashed, or the index
    write failed) between the chain's first checkpoint and its copy, and wrote nothing after it; a later
    writer's attestation of exactly that end proves it (decided in :func:`verify`).
    """
    lines = _index_lines(chain, copies, given)
    if not lines:
        indexes = [d / f"{chain}.checkpoints.jsonl" for d in _directories(copies)]
        index = next((i for i in indexes if i.exists()), indexes[0])
        if walker.first_checkpoint is None:  # a writer that stopped while starting the chain
            report.warnings.append("no checkpoint index: truncation cannot be checked against it")
            return
        cfile, cline, cseq = walker.first_checkpoint
        state = "empty" if index.exists() else "missing"
        problem = Problem(str(index), None, None, "missing",
                          f"the checkpoint index is {state}, but the chain holds {report.checkpoints} "
                          f"checkpoint(s) from seq {cseq} ({Path(cfile).name}:{cline}) on, each copied "
                          "there when written")
        if report.checkpoints == 1 and report.sealed_seq == report.last_seq and not report.closed \
                and report.torn_at is None:
            report.unless_attested = problem
        else:
            report.problems.append(problem)
        return
    for index, number, raw, seq in lines:
        if seq is None:
            walker.fail(str(index), number, None, "modified", "the checkpoint index line is not readable")
            return
        if seq > report.last_seq:
            # where the chain ends now, and what the index says it reached: the records between are gone
            where = f" ({Path(walker.prev_where[0]).name}:{walker.prev_where[1]})" if walker.prev_where else ""
            _, last_number, _, last_seq = max((entry for entry in lines if entry[3] is not None),
                                              key=lambda entry: entry[3] or 0)
            walker.fail(str(files[-1][1]), None, seq, "truncated",
                        f"the chain ends at seq {report.last_seq}{where}, but {index.name} lists a checkpoint at "
                        f"seq {seq} (line {number}), and its last at seq {last_seq} (line {last_number}): records "
                        f"{report.last_seq + 1}..{last_seq} at least are gone from its end (a file deleted, or one "
                        "cut short)")
            return
        if seq not in walker.checkpoint_seqs:  # the index holds copies of signed checkpoints, nothing else
            at: tuple[str, int | None, str] = walker.positions.get(seq, (str(index), number, ""))
            walker.fail(at[0], at[1], seq, "modified", f"the record at seq {seq} is no checkpoint, though "
                                                       f"{index.name} names it as one (line {number})")
            return
        file, line, digest = walker.positions.get(seq, (str(files[-1][1]), None, ""))
        if digest != line_hash(raw):
            walker.fail(file, line, seq, "modified", f"the checkpoint at seq {seq} differs from its copy in "
                                                     f"{index.name}")
            return


def _closed_markers(chain: str, files: Sequence[tuple[int, Path]],
                    given: Sequence[Path] = ()) -> list[tuple[Path, tuple[int, str] | None]]:
    """Every ``<chain>.closed`` in the directories of the chain's files, with the ``{"seq", "hash"}`` it records
    (None: unreadable)."""
    markers: list[tuple[Path, tuple[int, str] | None]] = []
    for directory in _directories(files, given):
        marker = directory / f"{chain}.closed"
        try:
            content = json_object(read_regular(marker))
        except FileNotFoundError:
            continue
        except OSError:
            markers.append((marker, None))
            continue
        if content is None or type(content.get("seq")) is not int or not isinstance(content.get("hash"), str):
            markers.append((marker, None))
        else:
            markers.append((marker, (content["seq"], content["hash"])))
    return markers


def _check_closed(marker: tuple[Path, tuple[int, str] | None], files: Sequence[tuple[int, Path]],
                  report: ChainReport, walker: _Walker) -> None:
    """A chain with a ``.closed`` marker ends exactly at the final checkpoint whose seq and hash it records.

    ``ChainWriter.close`` writes the final checkpoint, fsyncs, then the marker with the seq and hash of
    that checkpoint's line; nothing is written to the chain after it.
    """
    path, recorded = marker
    if recorded is None:
        walker.fail(str(path), None, None, "modified", f"{path.name} is not the writer's {{\"seq\", \"hash\"}} "
                                                        "record of the chain's final checkpoint")
        return
    seq, digest = recorded
    expected = f"{path.name} records the chain's end as its final checkpoint at seq {seq} (hash {digest})"
    found = f"seq {report.last_seq} (hash {report.last_hash})"
    last: tuple[str, int | None] = walker.prev_where or (str(files[-1][1]), None)
    if report.last_seq < seq:
        where = f", {Path(walker.prev_where[0]).name}:{walker.prev_where[1]}" if walker.prev_where else ""
        walker.fail(str(files[-1][1]), None, seq, "truncated",
                    f"{expected}, but the chain ends at {found[:-1]}{where}): records {report.last_seq + 1}..{seq} "
                    "are gone from its end (a file deleted, or one cut short)")
    elif report.last_seq > seq:
        file, line, _ = walker.positions.get(seq + 1, (*last, ""))
        walker.fail(file, line, seq + 1, "inserted", f"{expected}, but records follow it up to {found}")
    elif report.last_hash != digest:
        walker.fail(*last, seq, "modified", f"{expected}, but the chain ends at {found}")
    elif not report.closed:
        walker.fail(*last, seq, "truncated", f"{expected}, but the chain ends at {found}, which is not a final "
                                             "checkpoint")


def verify(paths: Iterable[Path], keyring: AuditKeyring) -> Verification:
    """Verify every chain found in ``paths``; crashed chains are settled by later writers' attestations."""
    paths = list(paths)
    chains = collect(paths)
    given = [path for path in paths if path.is_dir()]
    reports = [verify_chain(chain, files, keyring, given) for chain, files in sorted(chains.items())]
    reports += _without_records(paths, set(chains))
    attested = _counting_attestations([r for r in reports if not r.problems])
    for report in reports:
        if report.problems:
            continue
        attestations = attested.get(report.chain, [])
        disagreement = next((p for p in (_against_attestation(report, a) for a in attestations) if p), None)
        if disagreement is not None:
            report.problems.append(disagreement)
            continue
        # from here on every counting attestation of this chain (if any) names exactly its end
        if report.unless_attested is not None:
            if not attestations:
                report.problems.append(report.unless_attested)
                continue
            report.warnings.append(report.attested_note)
        if attestations:
            report.sealed_seq = report.last_seq
            if report.torn_at:
                report.warnings.append(f"torn last line at {report.torn_at[0]}:{report.torn_at[1]} "
                                       "(a crash; attested by a later writer)")
            continue
        if report.torn_at is not None:
            report.problems.append(Problem(report.torn_at[0], report.torn_at[1], report.last_seq + 1, "torn",
                                           "the last line is incomplete (the writer crashed while writing); "
                                           f"records up to seq {report.last_seq} verify"))
            continue
        if report.sealed_seq < report.last_seq:  # only an open chain: nothing may follow a final checkpoint
            report.warnings.append(f"records {report.sealed_seq + 1}..{report.last_seq} follow the last checkpoint "
                                   "(not sealed yet: the writer is running, or crashed and no writer has "
                                   "attested it)")
    for report in reports:
        report.problems = [_with_record(_key_change(p, report, reports)) for p in report.problems]
    return Verification(reports)


def _key_change(problem: Problem, report: ChainReport, reports: Sequence[ChainReport]) -> Problem:
    """An ``unknown key`` problem with what the trail says of that key: the writer that first signed with another
    key records the change (``audit_key_rotated``, ``ChainWriter._start``), so a key some intact chain records a
    change from is the trail's own earlier key, which the reviewer has yet to give (docs/audit.md, Keeping the
    trail). Only a record a checkpoint of a known key seals counts: one after a chain's last checkpoint is signed
    by nothing yet, and whoever can write the files can append it, naming a key of their own."""
    if problem.what != "unknown key" or report.unknown_key is None:
        return problem
    for other in sorted(reports, key=lambda r: by_start(r.chain)):
        if other.problems or report.unknown_key not in other.rotations:
            continue
        time, file, line, seq = other.rotations[report.unknown_key]
        if seq > other.sealed_seq:
            continue
        new = next(iter(other.key_ids)) if len(other.key_ids) == 1 else "it"
        return replace(problem, detail=f"{problem.detail}; the signing key before {new}, replaced at {time} "
                                       f"(audit_key_rotated, {Path(file).name}:{line}): give its public key with "
                                       "--key or in audit.verification_keys")
    return replace(problem, detail=f"{problem.detail}; no chain given records a change from it (audit_key_rotated)")


_MARKS = (".checkpoints.jsonl", ".closed", ".recovered")


def _without_records(paths: Sequence[Path], chains: set[str]) -> list[ChainReport]:
    """Chains of which a directory in ``paths`` holds a checkpoint index or a ``.closed`` or ``.recovered``
    marker but no record file in any of ``paths``: its records were deleted (and the files that are left say a
    chain was there). The writer makes an index only with its chain's first checkpoint, in a record file it
    keeps, and a marker only for a chain whose files it wrote (or attested); so, unlike a whole chain deleted
    with its index and markers, this is evidence, which was passed over: no record file, no chain to judge."""
    found: dict[str, list[Path]] = {}
    seen: set[Path] = set()
    for path in paths:
        if not path.is_dir() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        for entry in sorted(path.iterdir()):
            mark = next((m for m in _MARKS if entry.name.endswith(m)), None)
            chain = entry.name[: -len(mark)] if mark else ""
            if chain and not chain.startswith(".") and chain not in chains \
                    and FILE_PATTERN.match(f"{chain}.000001.jsonl"):
                found.setdefault(chain, []).append(entry)
    reports = []
    for chain, left in sorted(found.items()):
        report = ChainReport(chain, files=[])
        names = ", ".join(p.name for p in left)
        report.problems.append(Problem(str(left[0]), None, None, "missing",
                                       f"no record file of chain {chain} is left beside {names}"))
        reports.append(report)
    return reports


def _against_attestation(report: ChainReport, attestation: dict[str, Any]) -> Problem | None:
    """How the chain differs from what ``attestation`` (a counting one, by a later writer) says its end was,
    or None when it ends exactly there.

    A crashed chain is never written again, and every writer that attests it reads the same end: the chain's
    last whole record, the file it is in, and the bytes of the torn line after it (``torn_bytes``). So every
    attestation of a chain must name its end exactly; any that does not was made after the chain was changed
    (records cut off and the ``.recovered`` marker removed, so that the next writer attested the shorter end),
    or the chain was changed after it (bytes appended after the attested end)."""
    by = f"{attestation.get('by')} (seq {attestation.get('by_seq')})"
    seq, digest = attestation.get("last_seq"), attestation.get("last_hash")
    said = f"{by} attested seq {seq} (hash {digest}) as the chain's end"
    last_file = report.files[-1]
    if not isinstance(seq, int) or seq > report.last_seq:
        return Problem(last_file, None, report.last_seq, "truncated",
                       f"{said}, but the chain ends at seq {report.last_seq}")
    if seq < report.last_seq:
        return Problem(last_file, None, seq + 1, "inserted",
                       f"{said}, but records follow it up to seq {report.last_seq}")
    if digest != report.last_hash:
        return Problem(last_file, None, seq, "modified", f"{said}, but the record at seq {seq} has hash "
                                                         f"{report.last_hash}")
    file = attestation.get("file")
    if file is not None and file != Path(last_file).name:
        return Problem(last_file, None, None, "inserted", f"{said}, in {file}; the chain's last file is "
                                                          f"{Path(last_file).name}")
    torn = attestation.get("torn_bytes")
    if torn is not None and torn != report.torn_bytes:
        line = report.torn_at[1] if report.torn_at else None
        what = "inserted" if isinstance(torn, int) and report.torn_bytes > torn else "modified"
        return Problem(last_file, line, None, what, f"{said}, with a torn line of {torn} byte(s) after it; "
                                                    f"{report.torn_bytes} byte(s) follow it now")
    return None


def _counting_attestations(reports: Sequence[ChainReport]) -> dict[Any, list[dict[str, Any]]]:
    """The attestations that count, by the chain they attest (each with ``by``, the attesting chain), the
    earliest attesting chain first.

    An attestation counts only once something signed vouches for the record holding it: a checkpoint of the
    attesting chain (the recovering writer writes it before its first checkpoint), or, when that writer stopped
    before its first checkpoint too, a counting attestation of the attesting chain's own end (a full disk for
    several starts in a row: each start attests the one before). Otherwise anyone could attest any end. Settled
    step by step from the checkpoints: chains attesting each other without a checkpoint vouch for nothing.
    Every counting attestation is kept (not the last one per chain): they must all agree
    (:func:`_against_attestation`), since a later one could otherwise overrule an earlier one.
    """
    attested: dict[Any, list[dict[str, Any]]] = {}
    while True:  # ends only grow sealed, so what counts only grows: this ends
        sealed = {}
        for r in reports:
            ends_attested = any((a.get("last_seq"), a.get("last_hash")) == (r.last_seq, r.last_hash)
                                for a in attested.get(r.chain, ()))
            sealed[r.chain] = r.last_seq if ends_attested else r.sealed_seq
        found: dict[Any, list[dict[str, Any]]] = {}
        for r in sorted(reports, key=lambda r: by_start(r.chain)):
            for a in r.attestations:
                if isinstance(a.get("by_seq"), int) and a["by_seq"] <= sealed[r.chain]:
                    found.setdefault(a.get("chain"), []).append({**a, "by": r.chain})
        if found == attested:
            return attested
        attested = found
