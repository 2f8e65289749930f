"""Verifying audit chains: the first problem, named precisely (file, line, sequence number, what).

What each problem means:

``modified``   a record's bytes differ from what the next record (or a checkpoint) hashed
``missing``    sequence numbers skip: records (or a whole rotated file) were deleted
``inserted``   a sequence number repeats: a record was added
``reordered``  a sequence number goes backwards
``truncated``  the chain ends before a checkpoint listed in its checkpoint index
``torn``       the last line is incomplete (a crash while writing) and no later writer attested it
``bad checkpoint signature``  a checkpoint's Ed25519 signature does not verify
``unknown key``               a checkpoint is signed by a key the reviewer did not supply

Records after the last checkpoint are reported as a warning: until a checkpoint
seals them they could be cut off without trace (that is what checkpoints
bound). A chain whose writer crashed is sealed by the attestation a later
writer recorded (``audit_chain_recovered``), which also explains a torn last line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.audit.chain import FILE_PATTERN, GENESIS, chain_files, line_hash
from broker.audit.keys import AuditKeyring


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    seq: int | None
    what: str
    detail: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"{where}{seq}: {self.what}: {self.detail}"


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
    attestations: list[dict[str, Any]] = field(default_factory=list)   # recoveries this chain recorded
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
    """Chains among ``paths`` (files or directories)."""
    chains: dict[str, list[tuple[int, Path]]] = {}
    for path in paths:
        if path.is_dir():
            for chain, files in chain_files(path).items():
                chains.setdefault(chain, []).extend(files)
        else:
            m = FILE_PATTERN.match(path.name)
            if m:
                chains.setdefault(m.group("chain"), []).append((int(m.group("n")), path))
    for files in chains.values():
        files.sort()
    return chains


class _Walker:
    """Walks one chain's records in order, checking the links as it goes."""

    def __init__(self, chain: str, keyring: AuditKeyring, report: ChainReport,
                 indexed: frozenset[int] = frozenset()) -> None:
        self.chain = chain
        self.indexed = indexed  # seqs the checkpoint index names: their positions are remembered
        self.keyring = keyring
        self.report = report
        self.expected = 1
        self.prev = GENESIS
        self.prev_where: tuple[str, int] | None = None
        self.positions: dict[int, tuple[str, int, str]] = {}  # indexed seq -> (file, line, hash of the line)

    def fail(self, file: str, line: int | None, seq: int | None, what: str, detail: str) -> None:
        self.report.problems.append(Problem(file, line, seq, what, detail))

    def record(self, file: str, number: int, raw: bytes, file_seqs: Sequence[int | None] = ()) -> bool:
        """Check line ``number`` (1-based); False stops the walk (the first problem is what a reviewer needs).

        ``file_seqs``: the sequence numbers of the file's lines, to tell a record
        moved elsewhere in the file (reordered) from one deleted (missing).
        """
        try:
            rec = json.loads(raw)
            seq = int(rec["seq"])
            prev = str(rec["prev"])
        except (ValueError, KeyError, TypeError):
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
            else:
                gap = f"{self.expected}" if seq == self.expected + 1 else f"{self.expected}..{seq - 1}"
                self.fail(file, number, seq, "missing", f"record(s) {gap} are missing before this one")
            return False
        if prev != self.prev:
            if self.prev_where is not None:
                pfile, pline = self.prev_where
                self.fail(pfile, pline, seq - 1, "modified",
                          f"its hash differs from what the next record (seq {seq}) recorded")
            else:
                self.fail(file, number, seq, "modified", "the first record does not start from the genesis hash")
            return False
        if seq == 1 and (rec.get("event") != "audit_chain_started"
                         or (rec.get("data") or {}).get("chain") != self.chain):
            self.fail(file, number, seq, "modified", "the chain does not start with its audit_chain_started record")
            return False
        if rec.get("event") == "audit_checkpoint" and not self.checkpoint(file, number, seq, rec):
            return False
        if seq in self.indexed:
            self.positions[seq] = (file, number, line_hash(raw))
        if rec.get("event") == "audit_chain_recovered":
            self.report.attestations.append({**(rec.get("data") or {}), "by_seq": seq})
        self.prev = line_hash(raw)
        self.prev_where = (file, number)
        self.expected = seq + 1
        self.report.records += 1
        self.report.last_seq = seq
        self.report.last_hash = self.prev
        return True

    def checkpoint(self, file: str, number: int, seq: int, rec: dict[str, Any]) -> bool:
        data = rec.get("data") or {}
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
        if kid not in self.keyring:
            self.fail(file, number, seq, "unknown key", f"signed with key {kid}; known: "
                                                          f"{', '.join(self.keyring.ids()) or 'none'}")
            return False
        if not self.keyring.verify(kid, signature, chain, covers_seq, covers_hash, time):
            self.fail(file, number, seq, "bad checkpoint signature", f"key {kid}")
            return False
        self.report.checkpoints += 1
        self.report.sealed_seq = seq
        self.report.key_ids.add(kid)
        self.report.closed = bool(data.get("final"))
        return True


def _seq_of(raw: bytes) -> int | None:
    try:
        return int(json.loads(raw)["seq"])
    except (ValueError, KeyError, TypeError):
        return None


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    cut = data.rfind(b"\n") + 1
    return [line + b"\n" for line in data[:cut].split(b"\n")[:-1]], data[cut:]


def verify_chain(chain: str, files: Sequence[tuple[int, Path]], keyring: AuditKeyring) -> ChainReport:
    report = ChainReport(chain, files=[str(p) for _, p in files])
    walker = _Walker(chain, keyring, report, frozenset(seq for _, _, seq in _index_lines(chain, files)
                                                       if seq is not None))
    expected_file = 1
    for index, (n, path) in enumerate(files):
        name = str(path)
        if n != expected_file:
            walker.fail(name, None, walker.expected, "missing",
                        f"file {expected_file:06d} of the chain is missing")
            return report
        expected_file += 1
        try:
            data = path.read_bytes()
        except OSError as exc:
            walker.fail(name, None, None, "missing", f"cannot read: {exc.strerror}")
            return report
        lines, torn = _lines(data)
        seqs = [_seq_of(raw) for raw in lines]
        for number, raw in enumerate(lines, start=1):
            if not walker.record(name, number, raw, seqs):
                return report
        if torn:
            if index == len(files) - 1:
                report.torn_at = (name, len(lines) + 1)
            else:
                walker.fail(name, len(lines) + 1, None, "modified", "an incomplete line inside the chain")
                return report
    _check_index(chain, files, report, walker)
    return report


def _index_lines(chain: str, files: Sequence[tuple[int, Path]]) -> list[tuple[int, bytes, int | None]]:
    """(line number, line, seq) of the chain's checkpoint index, if it has one."""
    index = files[0][1].parent / f"{chain}.checkpoints.jsonl"
    if not index.exists():
        return []
    return [(n, raw, _seq_of(raw)) for n, raw in enumerate(index.read_bytes().splitlines(), start=1)]


def _check_index(chain: str, files: Sequence[tuple[int, Path]], report: ChainReport, walker: _Walker) -> None:
    """Every checkpoint the writer also put in the index must still be in the chain, byte for byte."""
    index = files[0][1].parent / f"{chain}.checkpoints.jsonl"
    if not index.exists():
        report.warnings.append("no checkpoint index: truncation cannot be checked against it")
        return
    for number, raw, seq in _index_lines(chain, files):
        if seq is None:
            walker.fail(str(index), number, None, "modified", "the checkpoint index line is not readable")
            return
        if seq > report.last_seq:
            walker.fail(str(files[-1][1]), None, seq, "truncated",
                        f"the chain ends at seq {report.last_seq} but was sealed up to seq {seq}")
            return
        file, line, digest = walker.positions.get(seq, (str(files[-1][1]), None, ""))
        if digest != line_hash(raw):
            walker.fail(file, line, seq, "modified", f"the checkpoint at seq {seq} differs from its copy in "
                                                     f"{index.name}")
            return


def verify(paths: Iterable[Path], keyring: AuditKeyring) -> Verification:
    """Verify every chain found in ``paths``; crashed chains are settled by later writers' attestations."""
    reports = [verify_chain(chain, files, keyring) for chain, files in sorted(collect(paths).items())]
    attested = {a.get("chain"): a for r in reports if not r.problems for a in r.attestations}
    for report in reports:
        if report.problems:
            continue
        attestation = attested.get(report.chain)
        if attestation is not None:
            if attestation.get("last_seq") == report.last_seq and attestation.get("last_hash") == report.last_hash:
                report.sealed_seq = report.last_seq
                if report.torn_at:
                    report.warnings.append(f"torn last line at {report.torn_at[0]}:{report.torn_at[1]} "
                                           "(a crash; attested by a later writer)")
                continue
            report.problems.append(Problem(report.files[-1], None, report.last_seq, "truncated",
                                           f"a later writer attested seq {attestation.get('last_seq')} as the end"))
            continue
        if report.torn_at is not None:
            report.problems.append(Problem(report.torn_at[0], report.torn_at[1], report.last_seq + 1, "torn",
                                           "the last line is incomplete (the writer crashed while writing); "
                                           f"records up to seq {report.last_seq} verify"))
            continue
        if report.sealed_seq < report.last_seq:
            report.warnings.append(f"records {report.sealed_seq + 1}..{report.last_seq} follow the last checkpoint "
                                   "(not sealed yet: the writer is running, or crashed and no writer has "
                                   "attested it)")
    return Verification(reports)
