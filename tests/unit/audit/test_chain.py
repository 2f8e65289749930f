"""The hash chain as written (docs/audit.md, "Files and tamper evidence"): seq/prev links, signed checkpoints
every checkpoint_interval, rotation by size and by age, clean close, key rotation, group commit.

The links and signatures are checked here independently of broker.audit.verify (hashlib and the public key
itself); verify() is then asked too, as a reviewer would.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import errno
import hashlib
import itertools
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import broker.audit.chain as chain_module
from broker.audit.chain import ChainWriter
from broker.audit.events import AuditEvent
from broker.audit.verify import verify
from broker.clock import FixedClock, SystemClock
from broker.errors import AuditUnavailable
from tests.factories.audit import (
    T0,
    keyring_of,
    lines_of,
    login_event,
    make_trail,
    make_writer,
    only_chain,
    records_of,
    verified,
    write_events,
)

GENESIS = "0" * 64
SECOND = dt.timedelta(seconds=1)


def sha(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def kid(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def assert_signed(key: Ed25519PrivateKey, chain: str, record: dict[str, Any]) -> None:
    """The checkpoint's Ed25519 signature over domain|chain|covers_seq|covers_hash|time|final-or-open (keys.py)."""
    data = record["data"]
    message = b"|".join([b"broker-audit-checkpoint-v2", chain.encode(), str(data["covers_seq"]).encode(),
                         data["covers_hash"].encode(), record["time"].encode(),
                         b"final" if data["final"] else b"open"])
    key.public_key().verify(base64.b64decode(data["signature"]), message)  # raises if it does not verify


def assert_linked(files: list[Path]) -> list[dict[str, Any]]:
    """Every line whole JSON; seq 1, 2, ... across the files; prev = SHA-256 of the line before."""
    raw = [line for path in files for line in lines_of(path)]
    assert raw
    assert all(line.endswith(b"\n") for line in raw)
    records = [json.loads(line) for line in raw]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert [r["prev"] for r in records] == [GENESIS] + [sha(line) for line in raw[:-1]]
    return records


def index_copy(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint index holds of a checkpoint: the very same record (the same line, byte for byte)."""
    return dict(checkpoint)


def checkpoints(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == "audit_checkpoint"]


# --- links ----------------------------------------------------------------------------------------


def test_every_record_names_its_predecessor_by_hash(tmp_path: Path) -> None:
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key)
    write_events(make_trail(writer, clock), 20)
    chain, files = only_chain(tmp_path)
    assert [p.name for p in files] == [f"{chain}.000001.jsonl"]
    records = assert_linked(files)
    first = records[0]
    assert first["event"] == "audit_chain_started"
    assert first["prev"] == GENESIS
    assert first["data"] == {"chain": chain, "key_id": kid(key), "pid": os.getpid()}
    assert re.fullmatch(r"i1\.20261127T080000(\d{3})?Z\.[0-9a-f]{6}", chain)  # <instance>.<start UTC>.<random>
    assert records[1]["event"] == "audit_checkpoint"  # the start is sealed at once
    assert [r["event"] for r in records[2:]] == ["certificate_accepted"] * 20
    assert writer.chain_id == chain
    assert verified(tmp_path, key).ok


def test_checkpoint_follows_the_first_record_after_the_interval(tmp_path: Path) -> None:
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key, interval=dt.timedelta(seconds=10))
    trail = make_trail(writer, clock)
    write_events(trail, 1)                        # seq 1 started, 2 checkpoint, 3 event
    clock.advance(9 * SECOND)
    write_events(trail, 1)                        # 9 s after the checkpoint: none yet
    clock.advance(SECOND)
    write_events(trail, 1)                        # 10 s: sealed right after this record
    clock.advance(5 * SECOND)
    write_events(trail, 1)
    clock.advance(10 * SECOND)
    write_events(trail, 2)
    chain, files = only_chain(tmp_path)
    records = assert_linked(files)
    assert [r["event"] for r in records] == [
        "audit_chain_started", "audit_checkpoint", "certificate_accepted", "certificate_accepted",
        "certificate_accepted", "audit_checkpoint", "certificate_accepted", "certificate_accepted",
        "audit_checkpoint", "certificate_accepted"]
    raw = lines_of(files[0])
    for cp in checkpoints(records):
        seq = cp["seq"]
        assert cp["data"]["covers_seq"] == seq - 1
        assert cp["data"]["covers_hash"] == sha(raw[seq - 2]) == cp["prev"]
        assert cp["data"]["chain"] == chain
        assert cp["data"]["key_id"] == kid(key)
        assert cp["data"]["final"] is False
        assert cp["data"]["file"] == 1
        assert_signed(key, chain, cp)
    assert [cp["time"] for cp in checkpoints(records)] == [
        "2026-11-27T08:00:00.123Z", "2026-11-27T08:00:10.123Z", "2026-11-27T08:00:25.123Z"]
    index = records_of(tmp_path / f"{chain}.checkpoints.jsonl")
    assert index == [index_copy(cp) for cp in checkpoints(records)]
    report = verified(tmp_path, key).chains[0]
    assert (report.checkpoints, report.sealed_seq, report.last_seq) == (3, 9, 10)


def test_records_are_sealed_in_the_background_within_the_interval(tmp_path: Path) -> None:
    """docs: checkpoints are written at most checkpoint_interval after a record, even if nothing follows."""
    key = Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, SystemClock(), key, interval=dt.timedelta(milliseconds=200), background=True)
    try:
        trail = make_trail(writer, SystemClock())
        write_events(trail, 1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.05)
            raw = [line for path in only_chain(tmp_path)[1] for line in lines_of(path) if line.endswith(b"\n")]
            records = [json.loads(line) for line in raw]
            if records[-1]["event"] == "audit_checkpoint" and records[-1]["seq"] > 3:
                break
        assert [r["event"] for r in records[:4]] == [
            "audit_chain_started", "audit_checkpoint", "certificate_accepted", "audit_checkpoint"]
        assert records[3]["data"]["covers_seq"] == 3
    finally:
        writer.close()


# --- rotation -------------------------------------------------------------------------------------


def assert_rotated_with_a_seal(files: list[Path]) -> None:
    """Each file but the last ends with a checkpoint sealing the line before it; the next file goes on."""
    for older, newer in itertools.pairwise(files):
        old_lines, new_lines = lines_of(older), lines_of(newer)
        last = json.loads(old_lines[-1])
        assert last["event"] == "audit_checkpoint"
        assert last["data"]["covers_seq"] == last["seq"] - 1
        assert last["data"]["covers_hash"] == sha(old_lines[-2])
        first = json.loads(new_lines[0])
        assert first["prev"] == sha(old_lines[-1])
        assert first["seq"] == last["seq"] + 1


def test_rotation_by_size_keeps_the_chain(tmp_path: Path) -> None:
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key, rotate_bytes=4000)
    write_events(make_trail(writer, clock), 40)
    chain, files = only_chain(tmp_path)
    assert [p.name for p in files] == [f"{chain}.{n:06d}.jsonl" for n in range(1, len(files) + 1)]
    assert len(files) >= 3
    for path in files[:-1]:
        assert path.stat().st_size >= 4000  # rotated only once the size was reached
    assert_rotated_with_a_seal(files)
    records = assert_linked(files)
    assert [cp["data"]["file"] for cp in checkpoints(records)] == [1, *range(1, len(files))]
    assert sum(r["event"] == "certificate_accepted" for r in records) == 40
    assert verified(tmp_path, key).ok


def test_rotation_by_time_keeps_the_chain(tmp_path: Path) -> None:
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key, rotate_interval=dt.timedelta(hours=1))
    trail = make_trail(writer, clock)
    write_events(trail, 3)
    clock.advance(dt.timedelta(minutes=59, seconds=59))
    write_events(trail, 1)
    assert len(only_chain(tmp_path)[1]) == 1
    clock.advance(SECOND)
    write_events(trail, 2)
    clock.advance(dt.timedelta(hours=3))
    write_events(trail, 1)
    _, files = only_chain(tmp_path)
    assert len(files) == 3
    assert_rotated_with_a_seal(files)
    assert [r["event"] for r in records_of(files[1])] == [
        "certificate_accepted", "certificate_accepted", "audit_checkpoint"]
    assert [r["event"] for r in records_of(files[2])] == ["certificate_accepted"]
    assert_linked(files)
    assert verified(tmp_path, key).ok


@pytest.mark.parametrize("step", [pytest.param(dt.timedelta(minutes=1), id="a-minute"),
                                  pytest.param(dt.timedelta(days=1), id="a-day")])
def test_rotation_by_time_after_the_clock_is_stepped_back(tmp_path: Path, step: dt.timedelta) -> None:
    """A file opened before the clock was stepped back (NTP correcting a clock that ran ahead) has an opening time in
    the future of the clock now: it is rotated within rotate_interval of the clock's time, not the size of the step
    later (a daily file kept for two days after a clock that ran a day ahead)."""
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key, rotate_interval=dt.timedelta(hours=1))
    trail = make_trail(writer, clock)
    write_events(trail, 2)
    clock.set(T0 - step)
    write_events(trail, 1)
    clock.advance(dt.timedelta(hours=1))
    write_events(trail, 1)
    _, files = only_chain(tmp_path)
    assert len(files) >= 2
    assert_rotated_with_a_seal(files)
    assert_linked(files)
    writer.close()
    assert verified(tmp_path, key).ok


# --- close ----------------------------------------------------------------------------------------


def test_close_writes_a_final_checkpoint_and_the_closed_marker(tmp_path: Path) -> None:
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key)
    write_events(make_trail(writer, clock), 5)
    chain, files = only_chain(tmp_path)
    assert not (tmp_path / f"{chain}.closed").exists()
    writer.close()
    writer.close()  # twice is harmless
    raw = lines_of(files[-1])
    records = assert_linked(files)
    final = records[-1]
    assert final["event"] == "audit_checkpoint"
    assert final["data"]["final"] is True
    assert final["data"]["covers_seq"] == final["seq"] - 1 == 7
    assert_signed(key, chain, final)
    assert json.loads((tmp_path / f"{chain}.closed").read_text()) == {"seq": final["seq"], "hash": sha(raw[-1])}
    assert records_of(tmp_path / f"{chain}.checkpoints.jsonl")[-1] == index_copy(final)
    report = verified(tmp_path, key).chains[0]
    assert report.closed
    assert report.warnings == []
    assert report.sealed_seq == report.last_seq == final["seq"]


# --- other writers in the directory ------------------------------------------------------------------


def start(directory: Path, clock: FixedClock, key: Ed25519PrivateKey, instance: str) -> ChainWriter:
    writer = make_writer(directory, clock, key, instance=instance)
    writer.checkpoint()
    return writer


def own_records(directory: Path, writer: ChainWriter) -> list[dict[str, Any]]:
    return [r for path in sorted(directory.glob(f"{writer.chain_id}.0*.jsonl")) for r in records_of(path)]


def test_a_new_writer_records_the_change_of_signing_key(tmp_path: Path) -> None:
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    clock = FixedClock(T0)
    first = start(tmp_path, clock, old_key, "i1")
    write_events(make_trail(first, clock), 2)
    first.close()
    clock.advance(dt.timedelta(minutes=5))
    second = start(tmp_path, clock, new_key, "i1")
    events = [r["event"] for r in own_records(tmp_path, second)]
    assert events[:3] == ["audit_chain_started", "audit_key_rotated", "audit_checkpoint"]
    rotated = own_records(tmp_path, second)[1]
    assert rotated["data"] == {"old_key_id": kid(old_key), "new_key_id": kid(new_key)}
    assert rotated["outcome"] == "info"
    second.close()
    assert verified(tmp_path, old_key, new_key).ok
    only_new = verified(tmp_path, new_key)
    problem = only_new.first_problem()
    assert problem is not None
    assert (problem.what, problem.seq) == ("unknown key", 2)
    assert first.chain_id in problem.file
    # which key is wanted, and how the reviewer knows it is the trail's own earlier one: the later chain that
    # recorded the change from it (its signature verified), and when; it named the key ids alone
    second_file = tmp_path / f"{second.chain_id}.000001.jsonl"
    assert problem.detail == (
        f"signed with key {kid(old_key)}; known: {kid(new_key)}; the signing key before {kid(new_key)}, replaced "
        f"at {rotated['time']} (audit_key_rotated, {second_file.name}:2): give its public key with --key or in "
        "audit.verification_keys")


def test_an_unknown_key_no_later_chain_replaced_says_so(tmp_path: Path) -> None:
    key, other, clock = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), FixedClock(T0)
    writer = start(tmp_path, clock, key, "i1")
    write_events(make_trail(writer, clock), 2)
    writer.close()
    problem = verified(tmp_path, other).first_problem()
    assert problem is not None
    assert problem.detail == (f"signed with key {kid(key)}; known: {kid(other)}; no chain given records a change "
                              "from it (audit_key_rotated)")


def test_an_unsealed_change_of_key_vouches_for_no_key(tmp_path: Path) -> None:
    """A record after a chain's last checkpoint is signed by nothing yet: whoever can write the files can append an
    audit_key_rotated from a key of their own to the live chain. Such a record does not make a forger's key the
    trail's earlier one, which the reviewer is told to give."""
    real, forger, clock = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), FixedClock(T0)
    forged = start(tmp_path / "forged", clock, forger, "i1")
    write_events(make_trail(forged, clock), 2)
    forged.close()
    live = start(tmp_path / "live", clock, real, "i1")   # its writer knows of no earlier key
    write_events(make_trail(live, clock), 1)
    (path,) = sorted((tmp_path / "live").glob(f"{live.chain_id}.0*.jsonl"))
    lines = lines_of(path)
    last = json.loads(lines[-1])
    appended = {"v": 1, "seq": last["seq"] + 1, "prev": sha(lines[-1]), "time": last["time"], "instance": "i1",
                "event": "audit_key_rotated", "outcome": "info",
                "data": {"old_key_id": kid(forger), "new_key_id": kid(real)}}
    path.write_bytes(b"".join(lines) + json.dumps(appended, separators=(",", ":")).encode() + b"\n")

    result = verify([tmp_path / "live", tmp_path / "forged"], keyring_of(real))

    assert {c.chain: c.problems for c in result.chains}[live.chain_id] == []
    problem = result.first_problem()
    assert problem is not None
    assert problem.detail == (f"signed with key {kid(forger)}; known: {kid(real)}; no chain given records a change "
                              "from it (audit_key_rotated)")


def test_the_same_key_is_no_rotation(tmp_path: Path) -> None:
    key, clock = Ed25519PrivateKey.generate(), FixedClock(T0)
    start(tmp_path, clock, key, "i1").close()
    clock.advance(dt.timedelta(minutes=5))
    second = start(tmp_path, clock, key, "i1")
    assert [r["event"] for r in own_records(tmp_path, second)] == [
        "audit_chain_started", "audit_checkpoint", "audit_checkpoint"]


def test_a_live_or_closed_chain_is_not_attested_as_crashed(tmp_path: Path) -> None:
    key, clock = Ed25519PrivateKey.generate(), FixedClock(T0)
    closed = start(tmp_path, clock, key, "closed")
    closed.close()
    alive = start(tmp_path, clock, key, "alive")  # holds the lock on its file
    write_events(make_trail(alive, clock), 3)
    clock.advance(SECOND)
    newcomer = start(tmp_path, clock, key, "new")
    assert "audit_chain_recovered" not in [r["event"] for r in own_records(tmp_path, newcomer)]
    assert list(tmp_path.glob("*.recovered")) == []
    write_events(make_trail(alive, clock), 1)  # the live writer goes on undisturbed
    alive.close()
    newcomer.close()
    result = verified(tmp_path, key)
    assert result.ok
    assert len(result.chains) == 3
    assert all(c.closed and not c.warnings for c in result.chains)


# --- group commit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rotate_bytes", [pytest.param(1 << 30, id="one-file"), pytest.param(20000, id="rotating")])
def test_concurrent_appends_and_syncs_keep_lines_whole_and_seqs_contiguous(tmp_path: Path, rotate_bytes: int) -> None:
    key = Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, SystemClock(), key, rotate_bytes=rotate_bytes,
                         interval=dt.timedelta(milliseconds=5))
    trail = make_trail(writer, SystemClock())
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(150):
                trail.record(AuditEvent("login_started", "info", f"T{n}-{i:03d}", sp="https://sp.example/md",
                                        client_address="192.0.2.7", detail="x" * (i % 7 * 40)))
                trail.sync()
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    writer.close()
    _, files = only_chain(tmp_path)
    records = assert_linked(files)
    logins = [r for r in records if r["event"] == "login_started"]
    assert len(logins) == 1200
    assert len({r["correlation_id"] for r in logins}) == 1200
    for n in range(8):  # each thread's records in its own order
        mine = [r["correlation_id"] for r in logins if r["correlation_id"].startswith(f"T{n}-")]
        assert mine == [f"T{n}-{i:03d}" for i in range(150)]
    assert checkpoints(records)
    assert verified(tmp_path, key).ok


def test_a_worker_forked_while_a_thread_holds_the_writers_locks_can_write(tmp_path: Path) -> None:
    """gunicorn forks workers from the master, whose checkpoint and forwarding threads take the writer's and the
    forwarder's locks: a child forked at that moment inherited them held, by a thread it does not have, and its
    first audit record hung for good."""
    import io

    from broker.audit.forward import StdoutForwarder

    clock, key = SystemClock(), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key)
    forwarder = StdoutForwarder(100, io.StringIO())
    trail = make_trail(writer, clock, forwarders=[forwarder])
    trail.record(login_event(1))
    trail.sync()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with writer._lock, writer._sync_lock, forwarder._lock, forwarder._queue.mutex:
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the child: a record, its fsync and a forwarded copy, within 5 s or SIGALRM ends it
        code = 1
        try:
            signal.alarm(5)
            trail.record(login_event(2))
            trail.sync()
            forwarder._count("dropped")
            forwarder.stats()  # /admin/health, which reads the queue's size
            code = 0
        finally:
            os._exit(code)
    release.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- sync racing a rotation ------------------------------------------------------------------------------


@pytest.mark.parametrize("fsync_after_the_rotation", ["succeeds", "fails"])
def test_a_sync_racing_a_rotation_syncs_its_own_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           fsync_after_the_rotation: str) -> None:
    """Thread A takes the file to sync under the lock; before its fsync, thread B's append rotates (fsyncs the
    file and closes the writer's descriptor). A failed with EBADF though its record was durable; and a failure
    named the new file, not the one A's records were in."""
    key = Ed25519PrivateKey.generate()
    clock = FixedClock(T0)
    writer = make_writer(tmp_path, clock, key)
    trail = make_trail(writer, clock)
    write_events(trail, 1)
    token, _ = writer.append(trail.format(login_event(1)))  # thread A's record
    real_fsync = chain_module.os.fsync
    rotated: list[bool] = []

    def fsync(fd: int) -> None:
        if not rotated:
            rotated.append(True)
            writer.settings = dataclasses.replace(writer.settings, rotate_bytes=1)  # the file is full
            writer.append(trail.format(login_event(2)))  # thread B, meanwhile: rotates
            assert writer._file_index == 2
            if fsync_after_the_rotation == "fails":
                raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(chain_module.os, "fsync", fsync)
    first = only_chain(tmp_path)[1][0]
    if fsync_after_the_rotation == "fails":
        with pytest.raises(AuditUnavailable) as raised:
            writer.sync(token)
        assert raised.value.detail == f"cannot sync {first}: Input/output error"
    else:
        writer.sync(token)
    writer.close()


def test_a_record_written_right_after_an_appends_checkpoint_is_sealed_within_the_interval(tmp_path: Path) -> None:
    """docs: checkpoints are written at most checkpoint_interval after a record. The background thread polled
    every half interval: a checkpoint an append wrote between two polls pushed the next one to up to 1.5
    intervals after it, and a record written right after that checkpoint waited that long."""
    key = Ed25519PrivateKey.generate()
    interval = 0.6
    writer = make_writer(tmp_path, SystemClock(), key, interval=dt.timedelta(seconds=interval), background=True)
    try:
        trail = make_trail(writer, SystemClock())
        writer.checkpoint()  # started: the thread's polls run from here
        time.sleep(interval * 1.15)  # past a poll, short of the next: the next record's own checkpoint is due
        write_events(trail, 2)  # the first seals itself with a checkpoint; the second follows it
        written = time.monotonic()
        (path,) = only_chain(tmp_path)[1]
        seq = records_of(path)[-1]["seq"]
        while not any(r["event"] == "audit_checkpoint" and r["data"]["covers_seq"] >= seq for r in records_of(path)):
            assert time.monotonic() - written < 3 * interval
            time.sleep(0.01)
        assert time.monotonic() - written <= interval + 0.15
    finally:
        writer.close()


CLOCK_STEPS = [pytest.param(dt.timedelta(minutes=1), id="a-minute"), pytest.param(dt.timedelta(hours=1), id="an-hour")]


@pytest.mark.parametrize("step", CLOCK_STEPS)
def test_a_record_written_after_the_clock_is_stepped_back_is_sealed_within_the_interval(tmp_path: Path,
                                                                                       step: dt.timedelta) -> None:
    """docs: checkpoints are written at most checkpoint_interval after a record. After the clock is stepped back
    (NTP correcting a clock that ran ahead) the last checkpoint's time lies in the future: the interval counted from
    it would leave every record unsealed for the size of the step as well."""
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    interval = 10 * SECOND
    writer = make_writer(tmp_path, clock, key, interval=interval)
    trail = make_trail(writer, clock)
    write_events(trail, 1)
    clock.advance(interval)
    write_events(trail, 1)  # sealed by its own checkpoint
    (path,) = only_chain(tmp_path)[1]
    sealed = records_of(path)[-1]["seq"]

    clock.set(T0 - step)
    write_events(trail, 1)  # the file is rotated too (its opening time lies ahead): the record lands in the next
    clock.advance(interval)
    write_events(trail, 1)
    after = [r for file in only_chain(tmp_path)[1] for r in records_of(file) if r["seq"] > sealed]
    stepped = next(r["seq"] for r in after if r["event"] == "certificate_accepted")
    assert any(r["event"] == "audit_checkpoint" and r["data"]["covers_seq"] >= stepped for r in after)
    writer.close()
    assert verified(tmp_path, key).ok  # checkpoint times that go back are no tampering


@pytest.mark.parametrize("step", CLOCK_STEPS)
def test_the_background_thread_seals_within_the_interval_after_the_clock_is_stepped_back(
        tmp_path: Path, step: dt.timedelta) -> None:
    """The background thread waited until the clock reached the last checkpoint's time plus the interval: after
    a step back, the size of the step longer (a record written just before it stayed unsealed for an hour)."""
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key, interval=dt.timedelta(milliseconds=300), background=True)
    try:
        write_events(make_trail(writer, clock), 1)  # started and sealed at T0, then one record left to the thread
        (path,) = only_chain(tmp_path)[1]
        seq = records_of(path)[-1]["seq"]
        clock.set(T0 - step)
        deadline = time.monotonic() + 3
        while not any(r["event"] == "audit_checkpoint" and r["data"]["covers_seq"] >= seq for r in records_of(path)):
            assert time.monotonic() < deadline, "not sealed"
            time.sleep(0.02)
    finally:
        writer.close()


@pytest.mark.parametrize(("instance", "in_chain_ids"), [
    pytest.param("host+1", "host_1", id="plus"),
    pytest.param("värd 1/a", "v_rd_1_a", id="non-ascii-space-slash"),
    pytest.param("..hidden", "hidden", id="leading-dots"),
    pytest.param("", "broker", id="empty"),
    pytest.param("web-1.example.org", "web-1.example.org", id="a-host-name-as-it-is"),
])
def test_an_instance_name_outside_the_file_pattern_still_gives_chains_every_tool_finds(
        tmp_path: Path, instance: str, in_chain_ids: str) -> None:
    """A chain named with characters FILE_PATTERN does not allow was written, but verify, query and the
    recovering writer never found its files."""
    key = Ed25519PrivateKey.generate()
    clock = FixedClock(T0)
    writer = make_writer(tmp_path, clock, key, instance=instance)
    write_events(make_trail(writer, clock), 2)
    writer.close()
    chain, (path,) = only_chain(tmp_path)
    assert chain == writer.chain_id
    assert chain.startswith(f"{in_chain_ids}.20261127T")
    assert records_of(path)[0]["instance"] == instance
    result = verified(tmp_path, key)
    assert result.ok, str(result.first_problem())
