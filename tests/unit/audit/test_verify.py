"""`broker audit verify` finds every kind of tampering and names the first problem: file, line, seq, what.

A clean chain of 36 logins rotates into three files and holds several checkpoints (one every 10 s of the
FixedClock, one at each rotation, the final one at close). Each tamper case edits the files the way an
intruder with write access would and states where the verifier must point.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import broker.audit.chain as chain_module
from broker.audit.chain import ChainWriter, line_hash
from broker.audit.keys import AuditKeyring, AuditSigner, key_id, load_public_key, public_pem
from broker.audit.verify import verify
from broker.cli import main
from broker.clock import FixedClock
from broker.errors import AuditUnavailable
from tests.factories.audit import (
    T0,
    dump,
    keyring_of,
    lines_of,
    make_trail,
    make_writer,
    only_chain,
    records_of,
    verified,
    write_events,
    write_lines,
)

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


@dataclass
class Chain:
    directory: Path
    name: str
    files: list[Path]

    @property
    def index(self) -> Path:
        return self.directory / f"{self.name}.checkpoints.jsonl"

    def record(self, file: int, line: int) -> dict[str, Any]:
        """The record at ``line`` (1-based) of the ``file``-th file (1-based)."""
        return records_of(self.files[file - 1])[line - 1]

    def seq(self, file: int, line: int) -> int:
        return int(self.record(file, line)["seq"])

    def edit(self, file: int, line: int, change: Callable[[dict[str, Any]], None]) -> None:
        path = self.files[file - 1]
        lines = lines_of(path)
        record = json.loads(lines[line - 1])
        change(record)
        lines[line - 1] = dump(record)
        write_lines(path, lines)

    def line_numbers(self, file: int, event: str) -> list[int]:
        return [n for n, r in enumerate(records_of(self.files[file - 1]), start=1) if r["event"] == event]


def build(directory: Path, *, closed: bool = True, tail: int = 0) -> Chain:
    """36 logins 3 s apart: checkpoints every 10 s, rotation at 10 000 bytes (three files); ``tail`` more
    logins 1 s apart afterwards, which no checkpoint seals (if not ``closed``)."""
    clock = FixedClock(T0)
    writer = make_writer(directory, clock, KEY, rotate_bytes=10000, interval=dt.timedelta(seconds=10))
    trail = make_trail(writer, clock)
    write_events(trail, 36, clock=clock, step=dt.timedelta(seconds=3))
    clock.advance(dt.timedelta(seconds=10))
    write_events(trail, 1)  # sealed at once: the chain ends on a checkpoint
    write_events(trail, tail, clock=clock, step=dt.timedelta(seconds=1))
    if closed:
        writer.close()
    name, files = only_chain(directory)
    return Chain(directory, name, files)


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    built = build(tmp_path / "audit")
    assert len(built.files) == 3
    assert len(built.line_numbers(2, "audit_checkpoint")) >= 3
    assert built.record(2, 3)["event"] == built.record(2, 4)["event"] == "certificate_accepted"
    return built


def test_the_clean_chain_is_intact(chain: Chain) -> None:
    result = verified(chain.directory, KEY)
    assert result.ok
    assert result.first_problem() is None
    (report,) = result.chains
    assert report.chain == chain.name
    assert report.files == [str(p) for p in chain.files]
    total = sum(len(lines_of(p)) for p in chain.files)
    assert report.records == report.last_seq == report.sealed_seq == total
    assert report.checkpoints == sum(len(chain.line_numbers(n, "audit_checkpoint")) for n in (1, 2, 3)) >= 8
    assert report.closed
    assert report.warnings == []
    assert report.key_ids == {key_id(KEY.public_key())}


# --- tamper cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    what: str
    file: int          # which of the chain's files (1-based) the problem names
    line: int | None
    seq: int | None


def modify_middle_record(c: Chain) -> Expected:
    c.edit(2, 3, lambda r: r.update(user="SE2120001009-someone-else"))
    return Expected("modified", 2, 3, c.seq(2, 3))


def modify_last_sealed_record(c: Chain) -> Expected:
    line = c.line_numbers(3, "certificate_accepted")[-1]  # the last login: checkpoints follow it
    assert line > len(lines_of(c.files[2])) - 3
    c.edit(3, line, lambda r: r.update(outcome="failure"))
    return Expected("modified", 3, line, c.seq(3, line))


def modify_unsigned_checkpoint_field(c: Chain) -> Expected:
    line = c.line_numbers(2, "audit_checkpoint")[1]
    c.edit(2, line, lambda r: r["data"].update(file=7))
    return Expected("modified", 2, line, c.seq(2, line))


def modify_signed_checkpoint_field(c: Chain) -> Expected:
    line = c.line_numbers(2, "audit_checkpoint")[1]
    c.edit(2, line, lambda r: r.update(time="2026-11-27T07:00:00.000Z"))
    return Expected("bad checkpoint signature", 2, line, c.seq(2, line))


def modify_sealed_hash_of_checkpoint(c: Chain) -> Expected:
    line = c.line_numbers(2, "audit_checkpoint")[0]
    c.edit(2, line, lambda r: r["data"].update(covers_hash="f" * 64))
    return Expected("modified", 2, line, c.seq(2, line))


def resign_checkpoint_with_another_key(c: Chain) -> Expected:
    line = c.line_numbers(2, "audit_checkpoint")[1]
    forger = AuditSigner(OTHER_KEY)

    def forge(r: dict[str, Any]) -> None:
        d = r["data"]
        d["key_id"] = forger.key_id
        d["signature"] = forger.sign(d["chain"], d["covers_seq"], d["covers_hash"], r["time"], d["final"])

    c.edit(2, line, forge)
    return Expected("unknown key", 2, line, c.seq(2, line))


def flip_a_signature_byte(c: Chain) -> Expected:
    line = c.line_numbers(2, "audit_checkpoint")[1]

    def flip(r: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(r["data"]["signature"]))
        raw[10] ^= 0x01
        r["data"]["signature"] = base64.b64encode(bytes(raw)).decode()

    c.edit(2, line, flip)
    return Expected("bad checkpoint signature", 2, line, c.seq(2, line))


def delete_middle_line(c: Chain) -> Expected:
    lines = lines_of(c.files[1])
    seq = c.seq(2, 3)
    write_lines(c.files[1], lines[:2] + lines[3:])
    return Expected("missing", 2, 3, seq + 1)  # the line now holding seq+1 follows seq-1


def delete_middle_file(c: Chain) -> Expected:
    first_missing = c.seq(2, 1)
    c.files[1].unlink()
    return Expected("missing", 3, None, first_missing)


def insert_duplicate_line(c: Chain) -> Expected:
    lines = lines_of(c.files[1])
    write_lines(c.files[1], [*lines[:3], lines[2], *lines[3:]])
    return Expected("inserted", 2, 4, c.seq(2, 3))


def swap_two_lines(c: Chain) -> Expected:
    lines = lines_of(c.files[1])
    later = c.seq(2, 4)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(c.files[1], lines)
    return Expected("reordered", 2, 3, later)


def swap_two_files(c: Chain) -> Expected:
    """Files 000002 and 000003 change names: every record is still there, in the wrong order (it was reported
    as records "missing" that were in the other file)."""
    later = c.seq(3, 1)
    second, third = c.files[1].read_bytes(), c.files[2].read_bytes()
    c.files[1].write_bytes(third)
    c.files[2].write_bytes(second)
    return Expected("reordered", 2, 1, later)


def move_a_line_into_the_next_file(c: Chain) -> Expected:
    lines = lines_of(c.files[1])
    later = c.seq(2, 4)
    write_lines(c.files[1], lines[:2] + lines[3:])
    write_lines(c.files[2], [lines[2], *lines_of(c.files[2])])
    return Expected("reordered", 2, 3, later)


def replace_a_file_by_another_chains(c: Chain) -> Expected:
    """Files of two chains mixed: the second file of another writer's chain (from the same start, with the same
    sequence numbers) in this chain's place. The rotation checkpoint before it, as its index copy has it, is
    intact: the file that follows is what differs (the checkpoint was blamed)."""
    other = build(c.directory.parent / "other")
    c.files[1].write_bytes(other.files[1].read_bytes())
    return Expected("modified", 2, 1, c.seq(2, 1))


def modify_the_prev_of_a_files_first_record(c: Chain) -> Expected:
    c.edit(2, 1, lambda r: r.update(prev="e" * 64))
    return Expected("modified", 2, 1, c.seq(2, 1))


def truncate_after_an_indexed_checkpoint(c: Chain) -> Expected:
    """The chain is cut right after a checkpoint and the last file removed: it still ends sealed, but the
    index lists later checkpoints."""
    line = c.line_numbers(2, "audit_checkpoint")[0]
    next_indexed = next(cp["seq"] for cp in records_of(c.index) if cp["seq"] > c.seq(2, line))
    write_lines(c.files[1], lines_of(c.files[1])[:line])
    c.files[2].unlink()
    return Expected("truncated", 2, None, next_indexed)


def remove_the_final_checkpoint(c: Chain) -> Expected:
    lines = lines_of(c.files[2])
    final = c.seq(3, len(lines))
    write_lines(c.files[2], lines[:-1])
    return Expected("truncated", 3, None, final)


def first_record_not_chain_start(c: Chain) -> Expected:
    c.edit(1, 1, lambda r: r.update(event="configuration_loaded", correlation_id="-"))
    return Expected("modified", 1, 1, 1)


def modify_the_final_checkpoint(c: Chain) -> Expected:
    """The chain's last line, turned into an ordinary checkpoint (so that records could follow it): nothing after
    it hashes it, but ``final`` is signed (keys.checkpoint_message)."""
    line = len(lines_of(c.files[2]))
    c.edit(3, line, lambda r: r["data"].update(final=False))
    return Expected("bad checkpoint signature", 3, line, c.seq(3, line))


def replace_the_final_checkpoint_by_a_forged_record(c: Chain) -> Expected:
    """An intruder turns the sealed end of a closed chain into a login of their choosing."""
    line = len(lines_of(c.files[2]))

    def forge(r: dict[str, Any]) -> None:
        del r["data"]
        r.update(event="assertion_issued", outcome="success", correlation_id="FORGED", user="SE2120001009-x",
                 user_kind="hsa_id", municipality="kommun-a", sp="https://sp.example/md", client="192.0.2.9")

    c.edit(3, line, forge)
    return Expected("modified", 3, line, c.seq(3, line))


TAMPERS = [
    pytest.param(modify_middle_record, id="modify-middle-record"),
    pytest.param(modify_last_sealed_record, id="modify-last-sealed-record"),
    pytest.param(modify_unsigned_checkpoint_field, id="modify-checkpoint-unsigned-field"),
    pytest.param(modify_signed_checkpoint_field, id="modify-checkpoint-signed-time"),
    pytest.param(modify_sealed_hash_of_checkpoint, id="modify-checkpoint-covers-hash"),
    pytest.param(resign_checkpoint_with_another_key, id="forge-checkpoint-other-key"),
    pytest.param(flip_a_signature_byte, id="forge-checkpoint-flipped-signature-byte"),
    pytest.param(delete_middle_line, id="delete-middle-line"),
    pytest.param(delete_middle_file, id="delete-middle-rotated-file"),
    pytest.param(insert_duplicate_line, id="insert-duplicate-line"),
    pytest.param(swap_two_lines, id="swap-two-lines"),
    pytest.param(swap_two_files, id="swap-two-files"),
    pytest.param(move_a_line_into_the_next_file, id="move-a-line-into-the-next-file"),
    pytest.param(replace_a_file_by_another_chains, id="replace-a-file-by-another-chains"),
    pytest.param(modify_the_prev_of_a_files_first_record, id="modify-prev-after-a-checkpoint"),
    pytest.param(truncate_after_an_indexed_checkpoint, id="truncate-after-indexed-checkpoint"),
    pytest.param(remove_the_final_checkpoint, id="remove-final-checkpoint"),
    pytest.param(first_record_not_chain_start, id="first-record-not-chain-start"),
    pytest.param(modify_the_final_checkpoint, id="modify-final-checkpoint"),
    pytest.param(replace_the_final_checkpoint_by_a_forged_record, id="forge-record-over-final-checkpoint"),
]


@pytest.mark.parametrize("tamper", TAMPERS)
def test_tampering_is_detected_where_it_happened(chain: Chain, tamper: Callable[[Chain], Expected]) -> None:
    files = list(chain.files)
    expected = tamper(chain)
    result = verified(chain.directory, KEY)
    assert not result.ok
    problem = result.first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line, problem.seq) == (
        expected.what, str(files[expected.file - 1]), expected.line, expected.seq), str(problem)


def test_a_chain_cut_short_names_where_it_ends_now_and_which_records_are_gone(chain: Chain) -> None:
    """The reviewer reads how much is gone and from where: the problem said only "the chain ends at seq 40 but was
    sealed up to seq 43", naming neither the index line that says so, nor the chain's last checkpoint (seq 43 was
    only the first one it no longer reaches), nor where the chain now ends."""
    index = records_of(chain.index)
    expected = truncate_after_an_indexed_checkpoint(chain)
    lines = records_of(chain.files[1])
    end = lines[-1]["seq"]
    first = next(n for n, cp in enumerate(index, start=1) if cp["seq"] == expected.seq)
    problem = verified(chain.directory, KEY).first_problem()
    assert problem is not None
    assert problem.detail == (
        f"the chain ends at seq {end} ({chain.files[1].name}:{len(lines)}), but {chain.index.name} lists a "
        f"checkpoint at seq {expected.seq} (line {first}), and its last at seq {index[-1]['seq']} (line "
        f"{len(index)}): records {end + 1}..{index[-1]['seq']} at least are gone from its end (a file deleted, or "
        "one cut short)")


def test_a_deleted_file_names_the_records_it_held_and_when_they_were_written(chain: Chain) -> None:
    """"file 000002 of the chain is missing" said neither which records went with it nor from when."""
    before, first, after = records_of(chain.files[0])[-1], records_of(chain.files[1])[0], records_of(chain.files[2])[0]
    chain.files[1].unlink()
    problem = verified(chain.directory, KEY).first_problem()
    assert problem is not None
    assert problem.detail == (f"file 000002 of the chain is missing: records {first['seq']}..{after['seq'] - 1}, "
                              f"written between {before['time']} and {after['time']}")


def test_torn_last_line_without_attestation(tmp_path: Path) -> None:
    chain = build(tmp_path / "audit", closed=False, tail=3)
    lines = lines_of(chain.files[2])
    last = json.loads(lines[-1])
    assert last["event"] == "certificate_accepted"  # not sealed, not in the index
    write_lines(chain.files[2], [*lines[:-1], lines[-1][:40]])
    result = verified(chain.directory, KEY)
    problem = result.first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line, problem.seq) == (
        "torn", str(chain.files[2]), len(lines), last["seq"])
    assert f"records up to seq {last['seq'] - 1} verify" in problem.detail


def test_a_torn_line_inside_the_chain_is_a_modification(chain: Chain) -> None:
    lines = lines_of(chain.files[0])
    write_lines(chain.files[0], [*lines[:-1], lines[-1][:-1]])  # the newline of file 1's last line is gone
    problem = verified(chain.directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line) == ("modified", str(chain.files[0]), len(lines))


# --- warnings and keys --------------------------------------------------------------------------------


def test_records_after_the_last_checkpoint_are_only_a_warning(tmp_path: Path) -> None:
    chain = build(tmp_path / "audit", closed=False, tail=3)
    result = verified(chain.directory, KEY)
    assert result.ok
    (report,) = result.chains
    assert report.last_seq == report.sealed_seq + 3
    assert report.problems == []
    assert report.warnings == [
        f"records {report.sealed_seq + 1}..{report.last_seq} follow the last checkpoint (not sealed yet: the writer "
        "is running, or crashed and no writer has attested it)"]
    assert not report.closed


def test_the_wrong_key_is_an_unknown_key(chain: Chain) -> None:
    result = verified(chain.directory, OTHER_KEY)
    problem = result.first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line, problem.seq) == ("unknown key", str(chain.files[0]), 2, 2)
    assert key_id(KEY.public_key()) in problem.detail
    assert key_id(OTHER_KEY.public_key()) in problem.detail


def test_no_key_at_all_is_an_unknown_key(chain: Chain) -> None:
    problem = verify([chain.directory], AuditKeyring([])).first_problem()
    assert problem is not None
    assert problem.what == "unknown key"


def test_one_trusted_key_among_others_suffices(chain: Chain) -> None:
    assert verify([chain.directory], keyring_of(OTHER_KEY, KEY)).ok


def test_the_public_half_verifies_on_the_command_line(chain: Chain, tmp_path: Path) -> None:
    public = tmp_path / "audit.pub"
    public.write_bytes(public_pem(KEY.public_key()))
    assert b"PRIVATE" not in public.read_bytes()
    assert key_id(load_public_key(public.read_bytes())) == key_id(KEY.public_key())
    result = CliRunner().invoke(main, ["audit", "verify", str(chain.directory), "--key", str(public)])
    assert result.exit_code == 0, result.output
    assert f"{chain.name}: intact; " in result.stdout
    assert ", closed" in result.stdout


def test_verifying_single_files_of_a_chain(chain: Chain) -> None:
    """Files given one by one (not the directory) are read as the same chain."""
    assert verify(chain.files, keyring_of(KEY)).ok
    missing_first = verify(chain.files[1:], keyring_of(KEY)).first_problem()
    assert missing_first is not None
    assert (missing_first.what, missing_first.file, missing_first.seq) == ("missing", str(chain.files[1]), 1)


# --- closed chains, the .closed marker and the checkpoint index (docs/audit.md, "Files and tamper evidence") ---


@dataclass(frozen=True)
class Found:
    """Where the first problem must point: the file as a path (it may be one the tamperer added)."""
    what: str
    file: Path
    line: int | None
    seq: int | None


def on_the_command_line(directory: Path, tmp_path: Path) -> tuple[int, str]:
    """``broker audit verify DIR --key PUB``: exit status and everything it printed."""
    public = tmp_path / "reviewer.pub"
    public.write_bytes(public_pem(KEY.public_key()))
    result = CliRunner().invoke(main, ["audit", "verify", str(directory), "--key", str(public)])
    return result.exit_code, result.output


def assert_first_problem(c: Chain, found: Found, tmp_path: Path) -> None:
    problem = verified(c.directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line, problem.seq) == (
        found.what, str(found.file), found.line, found.seq), str(problem)
    exit_code, output = on_the_command_line(c.directory, tmp_path)
    assert exit_code == 1, output
    assert f"FIRST PROBLEM: {problem}" in output


def closed_marker(c: Chain) -> Path:
    return c.directory / f"{c.name}.closed"


def last_line(c: Chain) -> bytes:
    return lines_of(c.files[-1])[-1]


def chained(after: bytes, **fields: Any) -> bytes:
    """A forged record that links correctly to the line ``after`` (what an intruder who can read the chain
    makes: the hash chain alone does not stop it, only a signed checkpoint after it would)."""
    seq = json.loads(after)["seq"] + 1
    return dump({"v": 1, "seq": seq, "prev": line_hash(after), "time": json.loads(after)["time"], "instance": "i1",
                 "event": "assertion_issued", "outcome": "success", "correlation_id": "FORGED",
                 "user": "SE2120001009-x", "user_kind": "hsa_id", **fields})


def append_a_chained_record(c: Chain) -> Found:
    """The reviewer's case: a correctly linked login after the final checkpoint."""
    lines = lines_of(c.files[2])
    write_lines(c.files[2], [*lines, chained(lines[-1])])
    return Found("inserted", c.files[2], len(lines) + 1, json.loads(lines[-1])["seq"] + 1)


def append_a_chained_record_and_move_the_marker(c: Chain) -> Found:
    """The same, with ``.closed`` rewritten to name the forged record as the end."""
    lines = lines_of(c.files[2])
    forged = chained(lines[-1])
    write_lines(c.files[2], [*lines, forged])
    closed_marker(c).write_text(json.dumps({"seq": json.loads(forged)["seq"], "hash": line_hash(forged)}) + "\n")
    return Found("inserted", c.files[2], len(lines) + 1, json.loads(forged)["seq"])


def append_a_forged_periodic_checkpoint_copy(c: Chain) -> Found:
    """A validly signed earlier checkpoint, copied after the final one."""
    lines = lines_of(c.files[2])
    write_lines(c.files[2], [*lines, lines[c.line_numbers(3, "audit_checkpoint")[0] - 1]])
    return Found("inserted", c.files[2], len(lines) + 1, c.seq(3, c.line_numbers(3, "audit_checkpoint")[0]))


def append_an_incomplete_line(c: Chain) -> Found:
    lines = lines_of(c.files[2])
    write_lines(c.files[2], [*lines, chained(lines[-1])[:50]])
    return Found("inserted", c.files[2], len(lines) + 1, None)


def add_a_rotated_file(c: Chain) -> Found:
    added = c.directory / f"{c.name}.000004.jsonl"
    write_lines(added, [chained(last_line(c))])
    return Found("inserted", added, None, json.loads(last_line(c))["seq"] + 1)


AFTER_FINAL = [
    pytest.param(append_a_chained_record, id="append-chained-record"),
    pytest.param(append_a_chained_record_and_move_the_marker, id="append-chained-record-and-move-closed-marker"),
    pytest.param(append_a_forged_periodic_checkpoint_copy, id="append-copy-of-signed-checkpoint"),
    pytest.param(append_an_incomplete_line, id="append-incomplete-line"),
    pytest.param(add_a_rotated_file, id="add-rotated-file"),
]


@pytest.mark.parametrize("tamper", AFTER_FINAL)
def test_anything_after_the_final_checkpoint_is_inserted(chain: Chain, tmp_path: Path,
                                                         tamper: Callable[[Chain], Found]) -> None:
    """``ChainWriter.close`` never appends again (a restarted broker starts a new chain): whatever follows
    the final checkpoint, however well chained, is an insertion, not an unsealed tail."""
    assert json.loads(last_line(chain))["data"]["final"] is True
    assert_first_problem(chain, tamper(chain), tmp_path)


def cut_back(c: Chain, file: int, line: int) -> None:
    """Cut the chain after ``line`` of ``file`` and its index after the checkpoints still in it: what an
    intruder does so that the index does not give the truncation away."""
    write_lines(c.files[file - 1], lines_of(c.files[file - 1])[:line])
    for later in c.files[file:]:
        later.unlink()
    end = c.seq(file, line)
    write_lines(c.index, [raw for raw in lines_of(c.index) if json.loads(raw)["seq"] <= end])


def final_seq_and_hash(c: Chain) -> tuple[int, str]:
    marker = json.loads(closed_marker(c).read_text())
    assert (marker["seq"], marker["hash"]) == (json.loads(last_line(c))["seq"], line_hash(last_line(c)))
    return int(marker["seq"]), str(marker["hash"])


def cut_chain_and_index_back_to_a_checkpoint(c: Chain) -> Found:
    """The reviewer's case: an earlier, validly signed checkpoint becomes the apparent end."""
    final, _ = final_seq_and_hash(c)
    cut_back(c, 2, c.line_numbers(2, "audit_checkpoint")[0])
    return Found("truncated", c.files[1], None, final)


def cut_back_and_rewrite_the_marker_to_fit(c: Chain) -> Found:
    line = c.line_numbers(2, "audit_checkpoint")[0]
    end, end_line = c.seq(2, line), lines_of(c.files[1])[line - 1]
    cut_back(c, 2, line)
    closed_marker(c).write_text(json.dumps({"seq": end, "hash": line_hash(end_line)}) + "\n")
    return Found("truncated", c.files[1], line, end)  # a periodic checkpoint where a final one should be


def remove_the_final_checkpoint_and_its_index_copy(c: Chain) -> Found:
    final, _ = final_seq_and_hash(c)
    cut_back(c, 3, len(lines_of(c.files[2])) - 1)
    return Found("truncated", c.files[2], None, final)


def replace_the_final_checkpoint_and_its_index_copy(c: Chain) -> Found:
    final, _ = final_seq_and_hash(c)
    lines = lines_of(c.files[2])
    cut_back(c, 3, len(lines) - 1)
    write_lines(c.files[2], [*lines[:-1], chained(lines[-2])])
    return Found("modified", c.files[2], len(lines), final)


def move_the_marker_back(c: Chain) -> Found:
    line = c.line_numbers(2, "audit_checkpoint")[0]
    end, end_line = c.seq(2, line), lines_of(c.files[1])[line - 1]
    closed_marker(c).write_text(json.dumps({"seq": end, "hash": line_hash(end_line)}) + "\n")
    return Found("inserted", c.files[1], line + 1, end + 1)


def garble_the_marker(c: Chain) -> Found:
    closed_marker(c).write_text('{"seq": "eighteen"}\n')
    return Found("modified", closed_marker(c), None, None)


def _refit_the_final_checkpoint(c: Chain, change: Callable[[dict[str, Any]], bytes]) -> Found:
    """The final checkpoint (the chain's last line: no record after it hashes it) changed where its signature does
    not reach, its index copy and the ``.closed`` marker rewritten to match: only the line itself can show it."""
    final, _ = final_seq_and_hash(c)
    lines = lines_of(c.files[2])
    lines[-1] = change(json.loads(lines[-1]))
    write_lines(c.files[2], lines)
    write_lines(c.index, [*lines_of(c.index)[:-1], lines[-1]])
    closed_marker(c).write_text(json.dumps({"seq": final, "hash": line_hash(lines[-1])}) + "\n")
    return Found("modified", c.files[2], len(lines), final)


def add_a_refusal_to_the_final_checkpoint(c: Chain) -> Found:
    def change(r: dict[str, Any]) -> bytes:
        r.update(outcome="failure", reason="revoked", user="SE2120001009-victim", correlation_id="FORGED")
        return dump(r)
    return _refit_the_final_checkpoint(c, change)


def rename_the_final_checkpoints_instance(c: Chain) -> Found:
    return _refit_the_final_checkpoint(c, lambda r: dump({**r, "instance": "another-host"}))


def reserialise_the_final_checkpoint(c: Chain) -> Found:
    return _refit_the_final_checkpoint(c, lambda r: (json.dumps(r, indent=None) + "\n").encode())


def duplicate_a_key_in_the_final_checkpoint(c: Chain) -> Found:
    return _refit_the_final_checkpoint(c, lambda r: dump(r).replace(b'"outcome":"info"',
                                                                    b'"outcome":"failure","outcome":"info"'))


CLOSED_MARKER = [
    pytest.param(add_a_refusal_to_the_final_checkpoint, id="final-checkpoint-outcome-and-user-refitted"),
    pytest.param(rename_the_final_checkpoints_instance, id="final-checkpoint-instance-refitted"),
    pytest.param(reserialise_the_final_checkpoint, id="final-checkpoint-reserialised-refitted"),
    pytest.param(duplicate_a_key_in_the_final_checkpoint, id="final-checkpoint-duplicate-key-refitted"),
    pytest.param(cut_chain_and_index_back_to_a_checkpoint, id="cut-chain-and-index-back-to-checkpoint"),
    pytest.param(cut_back_and_rewrite_the_marker_to_fit, id="cut-back-and-rewrite-closed-marker"),
    pytest.param(remove_the_final_checkpoint_and_its_index_copy, id="remove-final-checkpoint-and-index-copy"),
    pytest.param(replace_the_final_checkpoint_and_its_index_copy, id="replace-final-checkpoint-and-index-copy"),
    pytest.param(move_the_marker_back, id="closed-marker-names-earlier-record"),
    pytest.param(garble_the_marker, id="closed-marker-unreadable"),
]


@pytest.mark.parametrize("tamper", CLOSED_MARKER)
def test_a_closed_chain_ends_exactly_where_its_closed_marker_says(chain: Chain, tmp_path: Path,
                                                                  tamper: Callable[[Chain], Found]) -> None:
    """``ChainWriter.close`` writes the final checkpoint, then ``<chain>.closed`` with its seq and hash."""
    assert_first_problem(chain, tamper(chain), tmp_path)


def test_the_truncation_message_names_the_marker_and_both_ends(chain: Chain) -> None:
    final, digest = final_seq_and_hash(chain)
    cut_chain_and_index_back_to_a_checkpoint(chain)
    lines = lines_of(chain.files[1])
    end = json.loads(lines[-1])["seq"]
    problem = verified(chain.directory, KEY).first_problem()
    assert problem is not None
    # where it ends now, and which records are gone (it named the two ends by their hashes alone)
    assert problem.detail == (
        f"{chain.name}.closed records the chain's end as its final checkpoint at seq {final} (hash {digest}), "
        f"but the chain ends at seq {end} (hash {line_hash(lines[-1])}, {chain.files[1].name}:{len(lines)}): "
        f"records {end + 1}..{final} are gone from its end (a file deleted, or one cut short)")


def delete_the_index(c: Chain) -> Found:
    c.index.unlink()
    return Found("missing", c.index, None, None)


def empty_the_index(c: Chain) -> Found:
    c.index.write_bytes(b"")
    return Found("missing", c.index, None, None)


def keep_only_the_first_line_and_delete_the_index(c: Chain) -> Found:
    """The reviewer's case: the ``.closed`` marker still tells where the chain ended."""
    final, _ = final_seq_and_hash(c)
    write_lines(c.files[0], lines_of(c.files[0])[:1])
    for later in c.files[1:]:
        later.unlink()
    c.index.unlink()
    return Found("truncated", c.files[0], None, final)


def cut_to_the_first_checkpoint_and_delete_index_and_marker(c: Chain) -> Found:
    """Without the marker the chain looks like a writer stopped right after its first checkpoint; only a
    later writer's attestation could show that (see the test below), so the missing index stands."""
    cut_back(c, 1, c.line_numbers(1, "audit_checkpoint")[0])
    c.index.unlink()
    closed_marker(c).unlink(missing_ok=True)
    return Found("missing", c.index, None, None)


MISSING_INDEX = [
    pytest.param(True, delete_the_index, id="delete-index-of-closed-chain"),
    pytest.param(False, delete_the_index, id="delete-index-of-open-chain"),
    pytest.param(True, empty_the_index, id="empty-index-of-closed-chain"),
    pytest.param(True, keep_only_the_first_line_and_delete_the_index, id="keep-first-line-delete-index"),
    pytest.param(True, cut_to_the_first_checkpoint_and_delete_index_and_marker,
                 id="cut-to-first-checkpoint-delete-index-and-marker"),
]


@pytest.mark.parametrize(("closed", "tamper"), MISSING_INDEX)
def test_a_chain_with_checkpoints_needs_its_checkpoint_index(tmp_path: Path, closed: bool,
                                                             tamper: Callable[[Chain], Found]) -> None:
    """The writer copies every checkpoint into ``<chain>.checkpoints.jsonl``, the first one while it starts
    the chain: without the index a truncation up to a checkpoint would go unnoticed."""
    built = build(tmp_path / "audit", closed=closed, tail=0 if closed else 3)
    assert_first_problem(built, tamper(built), tmp_path)


# --- what stays intact ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("closed", "tail", "warnings"), [
    pytest.param(True, 0, 0, id="closed"),
    pytest.param(False, 0, 0, id="open-ending-on-a-periodic-checkpoint"),
    pytest.param(False, 3, 1, id="open-with-records-after-the-last-periodic-checkpoint"),
])
def test_untampered_chains_verify_intact(tmp_path: Path, closed: bool, tail: int, warnings: int) -> None:
    """A closed chain has nothing after its final checkpoint and ends where ``.closed`` says; a running
    writer's records after its last periodic checkpoint are only a warning."""
    built = build(tmp_path / "audit", closed=closed, tail=tail)
    assert closed_marker(built).exists() is closed
    result = verified(built.directory, KEY)
    assert result.ok, str(result.first_problem())
    (report,) = result.chains
    assert report.closed is closed
    assert len(report.warnings) == warnings
    assert all("follow the last checkpoint" in w for w in report.warnings)
    exit_code, output = on_the_command_line(built.directory, tmp_path)
    assert exit_code == 0, output
    assert f"{built.name}: intact; " in output


def test_a_writer_stopped_before_indexing_its_first_checkpoint_is_explained_by_an_attestation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one chain with a checkpoint and no index the writer leaves: the index could not be written as it
    started (a full disk), so its start failed and it wrote nothing more. The next chain attests that end."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)

    def full_disk(path: Path, line: bytes) -> None:
        raise AuditUnavailable(f"cannot write {path}: No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(chain_module, "_append_whole_line", full_disk)
        failed = make_writer(directory, clock, KEY)
        with pytest.raises(AuditUnavailable):
            failed.checkpoint()
    stopped, (file,) = only_chain(directory)
    assert [r["event"] for r in records_of(file)] == ["audit_chain_started", "audit_checkpoint"]
    assert not (directory / f"{stopped}.checkpoints.jsonl").exists()
    problem = verified(directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file) == ("missing", str(directory / f"{stopped}.checkpoints.jsonl"))

    failed.checkpoint()  # the disk has room again: a new chain, which attests the stopped one
    failed.close()
    result = verified(directory, KEY)
    assert result.ok, str(result.first_problem())
    reports = {r.chain: r for r in result.chains}
    assert reports[stopped].warnings == [
        "no checkpoint index: the writer stopped before copying its first checkpoint there (attested by a later "
        "writer)"]


# --- chains nobody signed: anyone can write a chain of hashes ------------------------------------------------


def forged_chain(directory: Path, name: str, *events: dict[str, Any]) -> Path:
    """A chain written by someone without the key: correctly linked records, starting as a writer starts one."""
    start = {"time": "2026-11-27T09:00:00.000Z", "instance": "i1", "event": "audit_chain_started",
             "outcome": "info", "data": {"chain": name, "key_id": key_id(KEY.public_key()), "pid": 1}}
    prev, lines = chain_module.GENESIS, []
    for seq, event in enumerate((start, *events), start=1):
        line = dump({"v": 1, "seq": seq, "prev": prev, **event})
        prev = line_hash(line)
        lines.append(line)
    path = directory / f"{name}.000001.jsonl"
    path.write_bytes(b"".join(lines))
    return path


FORGED_LOGIN = {"time": "2026-11-27T09:00:01.000Z", "instance": "i1", "event": "assertion_issued",
                "outcome": "success", "correlation_id": "FORG-ED00-0000-0001", "user": "SE2120001009-victim",
                "user_kind": "hsa_id", "sp": "https://ehr.example/sp"}


def test_a_chain_without_a_checkpoint_holding_events_is_unsealed(chain: Chain, tmp_path: Path) -> None:
    name = "i1.20261127T090000000Z.abcdef"
    forged = forged_chain(chain.directory, name, FORGED_LOGIN)
    result = verified(chain.directory, KEY)
    reports = {r.chain: r for r in result.chains}
    assert reports[chain.name].problems == []
    (problem,) = reports[name].problems
    assert (problem.what, problem.file, problem.line, problem.seq) == ("unsealed", str(forged), 2, 2)
    exit_code, output = on_the_command_line(chain.directory, tmp_path)
    assert exit_code == 1
    assert "unsealed" in output


def test_a_forged_index_line_naming_a_record_that_is_no_checkpoint_is_modified(chain: Chain) -> None:
    # a copy of an ordinary record in the index would vouch for nothing: only signed checkpoints belong there
    ordinary = lines_of(chain.files[0])[3]
    with chain.index.open("ab") as index:
        index.write(ordinary)
    problem = verified(chain.directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line) == ("modified", str(chain.files[0]), 4)
    assert "is no checkpoint" in problem.detail


def test_an_attestation_no_checkpoint_seals_settles_nothing(tmp_path: Path) -> None:
    """A writer that crashed leaves an open chain with records after its last checkpoint; only an attestation
    that a checkpoint of the attesting chain seals may settle it, or anyone could attest any end."""
    directory = tmp_path / "audit"
    crashed = build(directory, closed=False, tail=3)
    report = verified(directory, KEY).chains[0]
    name = "i2.20261127T090000000Z.fedcba"
    forged_chain(directory, name, {
        "time": "2026-11-27T09:00:01.000Z", "instance": "i2", "event": "audit_chain_recovered", "outcome": "info",
        "data": {"chain": crashed.name, "last_seq": report.last_seq, "last_hash": report.last_hash}})
    reports = {r.chain: r for r in verified(directory, KEY).chains}
    assert reports[name].problems[0].what == "unsealed"
    assert any("follow the last checkpoint" in w for w in reports[crashed.name].warnings)  # not settled by it


GARBLED = [
    pytest.param(b'{"seq":1e400,"prev":"x"}\n', id="seq-past-float-range"),
    pytest.param(b"[" * 100000 + b"]" * 100000 + b"\n", id="nested-past-the-recursion-limit"),
    pytest.param(b"[1,2]\n", id="array"),
    pytest.param(b'"text"\n', id="string"),
    pytest.param(b"7\n", id="number"),
]


@pytest.mark.parametrize("line", GARBLED)
def test_a_garbled_line_is_a_problem_never_a_crash(chain: Chain, tmp_path: Path, line: bytes) -> None:
    lines = lines_of(chain.files[1])
    write_lines(chain.files[1], [*lines[:2], line, *lines[3:]])
    problem = verified(chain.directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line) == ("modified", str(chain.files[1]), 3)
    exit_code, output = on_the_command_line(chain.directory, tmp_path)
    assert exit_code == 1
    assert "Traceback" not in output
    # the reviewer's other tools pass the line over
    found = CliRunner().invoke(main, ["audit", "query", str(chain.directory), "--format", "jsonl"])
    assert found.exit_code == 0, found.output
    assert len(found.output.splitlines()) > 0


def test_a_first_record_whose_data_is_no_object_is_modified(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    name = "x.20260101T000000000Z.aaaaaa"
    (directory / f"{name}.000001.jsonl").write_bytes(
        b'{"v":1,"seq":1,"prev":"' + b"0" * 64 + b'","event":"audit_chain_started","data":[1]}\n')
    problem = verified(directory, KEY).first_problem()
    assert problem is not None
    assert problem.what == "modified"


def test_an_unreadable_index_or_chain_file_is_named(chain: Chain, tmp_path: Path) -> None:
    chain.index.unlink()
    chain.index.mkdir()
    problem = verified(chain.directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file) == ("missing", str(chain.index))
    unreadable = chain.directory / "zz.20260101T000000000Z.aaaaaa.000001.jsonl"
    unreadable.mkdir()
    found = CliRunner().invoke(main, ["audit", "query", str(chain.directory)])
    assert found.exit_code == 0
    assert f"skipped {unreadable}" in found.output


def stopped_while_starting(directory: Path, monkeypatch: pytest.MonkeyPatch, failed_starts: int) -> ChainWriter:
    """A closed chain under OTHER_KEY, then a writer under KEY whose next ``failed_starts`` starts each stop at
    their first checkpoint (a full disk; after the key rotation record): the writer, ready to start again."""
    clock = FixedClock(T0)
    first = make_writer(directory, clock, OTHER_KEY)
    first.checkpoint()
    first.close()
    real_write = chain_module.os.write

    def full_disk_on_checkpoint(fd: int, data: bytes | memoryview) -> int:
        if b'"audit_checkpoint"' in bytes(data):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    writer = make_writer(directory, clock, KEY)
    with monkeypatch.context() as patched:
        patched.setattr(chain_module.os, "write", full_disk_on_checkpoint)
        for _ in range(failed_starts):
            with pytest.raises(AuditUnavailable):
                writer.checkpoint()
    return writer


STOPPED_WHILE_STARTING = "no checkpoint: the writer stopped while starting the chain (attested by a later writer)"


@pytest.mark.parametrize("failed_starts", [1, 2, 3])
def test_writers_stopped_while_starting_are_settled_by_attestations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     failed_starts: int) -> None:
    """A full disk for several requests in a row: each start stops at its first checkpoint and attests the one
    before; the writer that finally starts attests only the last. Each attestation counts once the next one
    vouches for the chain holding it, so every chain verifies, with a warning."""
    directory = tmp_path / "audit"
    writer = stopped_while_starting(directory, monkeypatch, failed_starts)
    writer.checkpoint()  # room again
    writer.close()
    result = verified(directory, KEY, OTHER_KEY)
    assert result.ok, str(result.first_problem())
    stopped = [r for r in result.chains if r.checkpoints == 0]
    assert len(stopped) == failed_starts
    assert all(r.warnings == [STOPPED_WHILE_STARTING] for r in stopped)


def test_a_writer_stopped_while_starting_is_unsealed_until_attested(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain holds no checkpoint, but only start-time records: unsealed until the next writer attests that
    end, then a warning."""
    directory = tmp_path / "audit"
    writer = stopped_while_starting(directory, monkeypatch, 1)
    (stopped,) = [p for p in directory.glob("*.000001.jsonl")
                  if [r["event"] for r in records_of(p)] == ["audit_chain_started", "audit_key_rotated"]]
    alone = verified(directory, KEY, OTHER_KEY).first_problem()
    assert alone is not None
    assert (alone.what, alone.file) == ("unsealed", str(stopped))
    writer.checkpoint()  # room again: a new chain, which attests the stopped one
    writer.close()
    result = verified(directory, KEY, OTHER_KEY)
    assert result.ok, str(result.first_problem())
    (report,) = [r for r in result.chains if r.files == [str(stopped)]]
    assert report.warnings == [STOPPED_WHILE_STARTING]


@pytest.mark.parametrize("planted", ["closed", "checkpoints.jsonl"])
def test_a_deeply_nested_marker_or_index_line_is_a_problem_never_a_crash(chain: Chain, tmp_path: Path,
                                                                          planted: str) -> None:
    """``b"[" * 100000``: json.loads raises RecursionError, which crashed the verifier on a `.closed` marker."""
    (chain.directory / f"{chain.name}.{planted}").write_bytes(b"[" * 100000 + b"]" * 100000 + b"\n")
    result = verified(chain.directory, KEY)
    problem = result.first_problem()
    assert problem is not None
    assert problem.what == "modified", str(problem)
    assert Path(problem.file).name == f"{chain.name}.{planted}"
    code, output = on_the_command_line(chain.directory, tmp_path)
    assert code == 1
    assert "modified" in output


# --- attestations of crashed chains ----------------------------------------------------------------------


def crash(directory: Path, clock: FixedClock, *, instance: str = "wa", tail: int = 3) -> Path:
    """A writer that dies (kill -9: its lock goes, no final checkpoint) with ``tail`` logins after its last
    checkpoint; its (only) file."""
    writer = make_writer(directory, clock, KEY, instance=instance, interval=dt.timedelta(seconds=10))
    trail = make_trail(writer, clock)
    write_events(trail, 4, clock=clock, step=dt.timedelta(seconds=4))
    write_events(trail, tail, clock=clock, step=dt.timedelta(seconds=1))
    writer._close_file()
    return directory / f"{writer.chain_id}.000001.jsonl"


def start_and_close(directory: Path, clock: FixedClock, instance: str) -> str:
    """A later writer: it attests every crashed chain as it starts; closed cleanly."""
    clock.advance(dt.timedelta(seconds=5))
    writer = make_writer(directory, clock, KEY, instance=instance)
    writer.checkpoint()
    writer.close()
    return writer.chain_id


def test_a_second_attestation_of_a_shorter_end_does_not_overrule_the_first(tmp_path: Path) -> None:
    """Attested records cut off: the intruder removes the `.recovered` marker, so that the next writer attests
    the shorter end. Only the last attestation of a chain used to count, and the chain verified intact."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    file = crash(directory, clock)
    first = start_and_close(directory, clock, "wb")
    assert verified(directory, KEY).ok
    attested_seq = json.loads(lines_of(file)[-1])["seq"]
    (directory / f"{file.name.removesuffix('.000001.jsonl')}.recovered").unlink()
    write_lines(file, lines_of(file)[:-2])
    start_and_close(directory, clock, "wc")
    problem = verified(directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.seq) == ("truncated", str(file), attested_seq - 2)
    assert problem.detail.startswith(f"{first} (seq ")
    assert f"attested seq {attested_seq} " in problem.detail


def test_records_appended_after_the_attested_end_and_attested_again_are_inserted(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    file = crash(directory, clock)
    start_and_close(directory, clock, "wb")
    attested_seq = json.loads(lines_of(file)[-1])["seq"]
    (directory / f"{file.name.removesuffix('.000001.jsonl')}.recovered").unlink()
    file.write_bytes(file.read_bytes() + chained(lines_of(file)[-1], event="assertion_issued", outcome="success"))
    start_and_close(directory, clock, "wc")
    problem = verified(directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.seq) == ("inserted", str(file), attested_seq + 1)


@pytest.mark.parametrize(("torn_by_the_crash", "now", "what"), [
    pytest.param(b"", b'{"v":1,"seq":99,"event":"assertion_iss', "inserted", id="appended-to-a-whole-end"),
    pytest.param(b'{"v":1,"se', b'{"v":1,"seq":99,"event":"assertion_iss', "inserted", id="torn-line-extended"),
    pytest.param(b'{"v":1,"se', b"", "modified", id="torn-line-removed"),
])
def test_a_torn_line_must_be_the_one_the_attestation_recorded(tmp_path: Path, torn_by_the_crash: bytes,
                                                               now: bytes, what: str) -> None:
    """The attestation records how many bytes of a torn line followed the crashed chain's last record; a torn
    line appended after it was accepted as the crash's (a warning) whatever its length."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    file = crash(directory, clock, tail=1)
    file.write_bytes(file.read_bytes() + torn_by_the_crash)
    start_and_close(directory, clock, "wb")
    assert verified(directory, KEY).ok
    whole = file.read_bytes()[: len(file.read_bytes()) - len(torn_by_the_crash)]
    file.write_bytes(whole + now)
    problem = verified(directory, KEY).first_problem()
    assert problem is not None
    assert (problem.what, problem.file) == (what, str(file))
    assert f"with a torn line of {len(torn_by_the_crash)} byte(s) after it; {len(now)} byte(s) follow it now" \
        in problem.detail


def test_a_lone_start_record_is_unsealed(chain: Chain, tmp_path: Path) -> None:
    """A chain of one line, its audit_chain_started record, which anyone can write (with a user, an outcome,
    a time in it): nothing signed vouches for it, and it verified intact."""
    name = "i1.20261127T090000000Z.abcdef"
    forged = forged_chain(chain.directory, name)
    forged.write_bytes(dump({**json.loads(forged.read_bytes()), "outcome": "success",
                             "user": "SE2120001009-victim", "correlation_id": "FORG-ED00-0000-0001"}))
    reports = {r.chain: r for r in verified(chain.directory, KEY).chains}
    assert reports[chain.name].problems == []
    (problem,) = reports[name].problems
    assert (problem.what, problem.file, problem.line, problem.seq) == ("unsealed", str(forged), 1, 1)
    exit_code, output = on_the_command_line(chain.directory, tmp_path)
    assert exit_code == 1
    assert "unsealed" in output


def test_a_writer_stopped_after_its_start_record_is_unsealed_until_attested(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """What a writer leaves when the disk refuses everything after its first line: unsealed, until the next
    writer attests exactly that end."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    real_write = chain_module.os.write

    def full_disk_after_the_start(fd: int, data: bytes | memoryview) -> int:
        if b'"audit_chain_started"' not in bytes(data):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    writer = make_writer(directory, clock, KEY)
    with monkeypatch.context() as patched:
        patched.setattr(chain_module.os, "write", full_disk_after_the_start)
        with pytest.raises(AuditUnavailable):
            writer.checkpoint()
    stopped, (file,) = only_chain(directory)
    assert [r["event"] for r in records_of(file)] == ["audit_chain_started"]
    alone = verified(directory, KEY).first_problem()
    assert alone is not None
    assert (alone.what, alone.file, alone.seq) == ("unsealed", str(file), 1)
    writer.checkpoint()  # room again: a new chain, which attests the stopped one
    writer.close()
    result = verified(directory, KEY)
    assert result.ok, str(result.first_problem())
    (report,) = [r for r in result.chains if r.chain == stopped]
    assert report.warnings == [STOPPED_WHILE_STARTING]


# --- chains collected from several directories ---------------------------------------------------------------


@pytest.mark.parametrize("twice", [
    pytest.param(lambda d: [d, Path(f"{d}/")], id="dir-and-dir-slash"),
    pytest.param(lambda d: [d, d / ".." / d.name], id="dir-through-dotdot"),
    pytest.param(lambda d: [d, *sorted(d.glob("*.000001.jsonl"))], id="dir-and-one-of-its-files"),
])
def test_a_file_named_twice_is_read_once(chain: Chain, twice: Callable[[Path], list[Path]]) -> None:
    """`verify DIR DIR/` read every file twice and reported the second reading as inserted."""
    result = verify(twice(chain.directory), keyring_of(KEY))
    assert result.ok, str(result.first_problem())
    assert result.chains[0].files == [str(f) for f in chain.files]


def archive_the_first_file(c: Chain, tmp_path: Path) -> Path:
    archive = tmp_path / "archive"
    archive.mkdir()
    c.files[0].rename(archive / c.files[0].name)
    c.files[0] = archive / c.files[0].name
    return archive


def test_a_chain_collected_from_an_archive_and_the_live_directory_finds_its_index_and_marker(
        chain: Chain, tmp_path: Path) -> None:
    """docs/deployment.md: collect the directories and verify them together. The index and the `.closed`
    marker were looked for next to the chain's first file only: with that file archived, the chain "had no
    index" (missing)."""
    archive = archive_the_first_file(chain, tmp_path)
    result = verify([archive, chain.directory], keyring_of(KEY))
    assert result.ok, str(result.first_problem())
    assert result.chains[0].closed


def test_a_chain_whose_record_files_were_all_archived_finds_its_index_and_marker_in_the_live_directory(
        chain: Chain, tmp_path: Path) -> None:
    """Every record file of a finished chain moved to the archive (`mv *.0000*.jsonl`), its index and `.closed`
    marker left where the writer made them, both directories given: the index and marker were looked for only
    beside the record files, so the chain "had no checkpoint index" (missing), and a marker left behind was never
    held against the chain, whatever was cut off its end."""
    archive = tmp_path / "archive"
    archive.mkdir()
    for path in chain.files:
        path.rename(archive / path.name)
    moved = [archive / path.name for path in chain.files]
    result = verify([archive, chain.directory], keyring_of(KEY))
    assert result.ok, str(result.first_problem())
    assert result.chains[0].closed
    final, _ = final_seq_and_hash(replace(chain, files=moved))
    write_lines(moved[-1], lines_of(moved[-1])[:-1])  # the final checkpoint cut off, the index copy kept
    write_lines(chain.index, lines_of(chain.index)[:-1])  # and its copy in the index, so only the marker tells
    problem = verify([archive, chain.directory], keyring_of(KEY)).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.seq) == ("truncated", str(moved[-1]), final)


def copy_into_an_archive(c: Chain, tmp_path: Path, *numbers: int) -> Path:
    archive = tmp_path / "archive"
    archive.mkdir(exist_ok=True)
    for n in numbers:
        shutil.copy2(c.files[n - 1], archive / c.files[n - 1].name)
    return archive


@pytest.mark.parametrize("numbers", [pytest.param((1,), id="first-file"), pytest.param((1, 2), id="two-files"),
                                     pytest.param((3,), id="last-file")])
def test_a_file_copied_into_an_archive_is_read_once(chain: Chain, tmp_path: Path, numbers: tuple[int, ...]) -> None:
    """Files copied (not moved) into an archive, both directories given: the second copy of file 000001 was
    reported as "missing: file 000002 of the chain is missing" (which was there), at the first file."""
    archive = copy_into_an_archive(chain, tmp_path, *numbers)
    result = verify([archive, chain.directory], keyring_of(KEY))
    assert result.ok, str(result.first_problem())
    assert len(result.chains[0].files) == 3


def test_a_copy_made_while_the_file_was_written_is_read_once(tmp_path: Path) -> None:
    """A copy of a file taken before its writer had finished it holds a beginning of it: the longer holds all it
    says, and is the one read."""
    c = build(tmp_path / "audit", closed=False, tail=3)
    archive = tmp_path / "archive"
    archive.mkdir()
    last = c.files[-1]
    (archive / last.name).write_bytes(last.read_bytes()[:-40])  # a torn line too
    result = verify([archive, c.directory], keyring_of(KEY))
    assert result.ok, str(result.first_problem())
    assert result.chains[0].files == [str(f) for f in c.files]


def test_two_copies_of_a_file_that_differ_are_a_modification(chain: Chain, tmp_path: Path) -> None:
    archive = copy_into_an_archive(chain, tmp_path, 2)
    chain.edit(2, 3, lambda r: r.update(outcome="failure"))  # the live copy changed
    problem = verify([archive, chain.directory], keyring_of(KEY)).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line, problem.seq) == (
        "modified", str(chain.files[1]), 3, chain.seq(2, 3))
    assert problem.detail == (f"{archive / chain.files[1].name} is another copy of this file, which differs from "
                              "it from this line on")


def test_the_marker_and_index_found_in_another_directory_still_judge_the_chain(chain: Chain,
                                                                                tmp_path: Path) -> None:
    archive = archive_the_first_file(chain, tmp_path)
    final, _ = final_seq_and_hash(chain)
    cut_back(chain, 3, len(lines_of(chain.files[2])) - 1)  # the final checkpoint cut off
    problem = verify([archive, chain.directory], keyring_of(KEY)).first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.seq) == ("truncated", str(chain.files[2]), final)


# --- a chain whose record files are gone -----------------------------------------------------------------------


def keep_the_index_and_marker(c: Chain) -> list[Path]:
    return [c.index, c.directory / f"{c.name}.closed"]


def keep_the_marker(c: Chain) -> list[Path]:
    c.index.unlink()
    return [c.directory / f"{c.name}.closed"]


def keep_the_index(c: Chain) -> list[Path]:
    (c.directory / f"{c.name}.closed").unlink()
    return [c.index]


@pytest.mark.parametrize("left", [pytest.param(keep_the_index_and_marker, id="index-and-closed-marker-left"),
                                  pytest.param(keep_the_marker, id="closed-marker-left"),
                                  pytest.param(keep_the_index, id="index-left")])
def test_a_chain_whose_record_files_were_deleted_is_missing(chain: Chain, tmp_path: Path,
                                                            left: Callable[[Chain], list[Path]]) -> None:
    """Every record file of a chain deleted, its index or marker left: the chain was passed over (no record file,
    no chain), and beside another chain the trail verified intact; alone, "no audit chains found"."""
    for path in chain.files:
        path.unlink()
    remaining = left(chain)
    other = make_writer(chain.directory, FixedClock(T0 + dt.timedelta(days=1)), KEY, instance="i2")
    write_events(make_trail(other, FixedClock(T0)), 2)
    other.close()
    result = verified(chain.directory, KEY)
    assert not result.ok
    problem = result.first_problem()
    assert problem is not None
    assert (problem.what, problem.file, problem.line, problem.seq) == ("missing", str(remaining[0]), None, None)
    assert problem.detail == (f"no record file of chain {chain.name} is left beside "
                              f"{', '.join(p.name for p in remaining)}")
    assert [c.chain for c in result.chains if not c.problems] != []  # the other chain is judged on its own
    status, output = on_the_command_line(chain.directory, tmp_path)
    assert status == 1
    assert f"{chain.name}: NOT INTACT" in output
