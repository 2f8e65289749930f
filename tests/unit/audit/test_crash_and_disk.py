"""Crashes, full disks and concurrent writers (docs/audit.md, "Crashes" and "Durability").

Writers run in other interpreters (``sys.executable -c``) so they can be killed with SIGKILL, limited with
RLIMIT_FSIZE (a file-size limit: a write past it fails with EFBIG, like a full disk) or run side by side.
The test process then verifies the directory as a reviewer would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask

import broker.audit.chain as chain_module
from broker.app import create_app
from broker.audit.chain import ChainWriter, chain_files, line_hash
from broker.audit.query import records
from broker.audit.trail import AuditTrail
from broker.audit.verify import Verification
from broker.clock import FixedClock
from broker.config.loader import load_settings
from broker.errors import AuditUnavailable
from broker.session.store import RedisStore
from tests.factories.audit import (
    T0,
    lines_of,
    login_event,
    make_trail,
    make_writer,
    only_chain,
    records_of,
    run_python,
    start_python,
    verified,
    write_key,
)
from tests.factories.saml import BASE_URL, Browser, forms, make_sp

PROBLEMS_A_CRASH_MAY_NOT_CAUSE = {"modified", "missing", "inserted", "reordered", "truncated",
                                  "bad checkpoint signature", "unknown key"}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def key_file(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    return write_key(tmp_path / "audit-signing.key", key)


def whole_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def assert_every_line_is_whole_json(directory: Path, *, allow_torn_tail: bool = False) -> None:
    for files in chain_files(directory).values():
        for index, (_, path) in enumerate(files):
            raw = lines_of(path)
            if allow_torn_tail and index == len(files) - 1 and raw and not raw[-1].endswith(b"\n"):
                raw = raw[:-1]
            for line in raw:
                assert line.endswith(b"\n"), (path.name, line[:80])
                json.loads(line)


# --- kill -9 under load ------------------------------------------------------------------------------------

LOAD = """
clock = SystemClock()
settings = ChainSettings(directory, "victim", dt.timedelta(milliseconds=20), 1 << 30, dt.timedelta(days=1))
writer = ChainWriter(settings, AuditSigner(key), clock, background=False)
trail = AuditTrail(writer, clock, pseudonym_key=b"p" * 32, instance_id="victim")

def work(n):
    i = 0
    while True:
        trail.record(AuditEvent("login_started", "info", f"T{n}-{i}", sp="https://sp.example/md",
                                client_address="192.0.2.7", detail="x" * (i % 9 * 60)))
        trail.sync()
        i += 1

threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def kill_under_load(directory: Path, key_file: Path, lines: int) -> None:
    process = start_python(LOAD, str(directory), str(key_file))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            files = list(directory.glob("victim.*.000001.jsonl"))
            if files and whole_lines(files[0]) >= lines:
                break
            time.sleep(0.002)
        assert process.poll() is None, process.communicate()[1]
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(10)
        process.communicate()
    assert process.returncode == -signal.SIGKILL


def assert_crashed_chain_before_recovery(result: Verification, files: list[Path]) -> None:
    """Intact up to its last whole line (unsealed tail: a warning), or torn exactly at the last line."""
    (report,) = result.chains
    raw = lines_of(files[-1])
    whole = [line for line in raw if line.endswith(b"\n")]
    if len(whole) < len(raw):
        (problem,) = report.problems
        assert (problem.what, problem.file, problem.line) == ("torn", str(files[-1]), len(raw)), str(problem)
    else:
        assert report.problems == [], [str(p) for p in report.problems]
        if report.sealed_seq < report.last_seq:
            assert "follow the last checkpoint" in report.warnings[0]
    assert not {p.what for p in report.problems} & PROBLEMS_A_CRASH_MAY_NOT_CAUSE
    assert report.last_seq == json.loads(whole[-1])["seq"]


@pytest.mark.parametrize("lines", [pytest.param(300, id="run-1"), pytest.param(500, id="run-2"),
                                   pytest.param(700, id="run-3")])
def test_kill_9_under_load_then_recovery_and_verify(tmp_path: Path, key: Ed25519PrivateKey, key_file: Path,
                                                    lines: int) -> None:
    directory = tmp_path / "audit"
    kill_under_load(directory, key_file, lines)
    crashed, files = only_chain(directory)
    assert_every_line_is_whole_json(directory, allow_torn_tail=True)
    assert_crashed_chain_before_recovery(verified(directory, key), files)

    raw = lines_of(files[-1])
    torn = b"" if raw[-1].endswith(b"\n") else raw[-1]
    last_whole = raw[-2] if torn else raw[-1]

    clock = FixedClock(T0)
    recovering = make_writer(directory, clock, key, instance="next")
    recovering.checkpoint()  # starts the new chain: it attests the crashed one
    (attestation,) = [r for r in records_of(next(directory.glob(f"{recovering.chain_id}.000001.jsonl")))
                      if r["event"] == "audit_chain_recovered"]
    assert attestation["data"] == {"chain": crashed, "file": files[-1].name,
                                   "last_seq": json.loads(last_whole)["seq"], "last_hash": line_hash(last_whole),
                                   "torn_bytes": len(torn)}
    assert (directory / f"{crashed}.recovered").exists()
    recovering.close()

    result = verified(directory, key)
    assert result.ok, str(result.first_problem())
    reports = {r.chain: r for r in result.chains}
    assert reports[crashed].sealed_seq == reports[crashed].last_seq == json.loads(last_whole)["seq"]
    if torn:
        assert [w for w in reports[crashed].warnings if w.startswith("torn last line")]
    else:
        assert reports[crashed].warnings == []
    assert [a["chain"] for a in reports[recovering.chain_id].attestations] == [crashed]


CRASH_AFTER_WRITES = """
clock = FixedClock(dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.timezone.utc))
settings = ChainSettings(directory, "victim", dt.timedelta(hours=1), 1 << 30, dt.timedelta(days=1))
writer = ChainWriter(settings, AuditSigner(key), clock, background=False)
trail = AuditTrail(writer, clock, pseudonym_key=b"p" * 32, instance_id="victim")
for i in range(6):
    trail.record(AuditEvent("login_started", "info", f"C{i}", sp="https://sp.example/md", client_address="192.0.2.7"))
    trail.sync()
writer.checkpoint()  # what a rotation does before it leaves the file
os._exit(0)  # no close: like a crash
"""


@pytest.mark.parametrize("first_line", [pytest.param(b"", id="empty-new-file"),
                                        pytest.param(b'{"v":1,"seq":10,"prev":"', id="torn-first-line")])
def test_crash_right_after_rotation_is_attested_from_the_previous_file(tmp_path: Path, key: Ed25519PrivateKey,
                                                                       key_file: Path, first_line: bytes) -> None:
    """A writer rotates by sealing its file, creating <chain>.000002.jsonl (O_EXCL, fsync of the directory)
    and then writing to it; killed in between, it leaves an empty (or torn) last file. The chain up to
    the end of file 1 is whole and sealed, so the recovery must attest that, not seq 0."""
    directory = tmp_path / "audit"
    finished = run_python(CRASH_AFTER_WRITES, str(directory), str(key_file))
    assert finished.returncode == 0, finished.stderr
    crashed, (first,) = only_chain(directory)
    (directory / first.name.replace(".000001.", ".000002.")).write_bytes(first_line)
    last_whole = lines_of(first)[-1]
    assert json.loads(last_whole)["event"] == "audit_checkpoint"

    recovering = make_writer(directory, FixedClock(T0), key, instance="next")
    recovering.checkpoint()
    recovering.close()
    (attestation,) = [r for r in records_of(next(directory.glob(f"{recovering.chain_id}.000001.jsonl")))
                      if r["event"] == "audit_chain_recovered"]
    assert (attestation["data"]["chain"], attestation["data"]["last_seq"], attestation["data"]["last_hash"]) == (
        crashed, json.loads(last_whole)["seq"], line_hash(last_whole))
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


# --- disk full --------------------------------------------------------------------------------------------

LIMIT = 32768

FILL = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
limit = int(sys.argv[5])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
interval = dt.timedelta(seconds=float(sys.argv[3]))
stop_at = sys.argv[4]
clock = FixedClock(dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.timezone.utc))
settings = ChainSettings(directory, "full", interval, 1 << 30, dt.timedelta(days=1))
writer = ChainWriter(settings, AuditSigner(key), clock, background=False)
trail = AuditTrail(writer, clock, pseudonym_key=b"p" * 32, instance_id="full")

def record(i):
    trail.record(AuditEvent("login_started", "info", f"C{i:05d}", sp="https://sp.example/md",
                            client_address="192.0.2.7", detail="d" * 150))
    trail.sync()

written, failures = [], []
for i in range(3000):
    try:
        record(i)
        written.append(i)
    except AuditUnavailable as exc:
        failures.append({"i": i, "error": str(exc)})
        if stop_at in str(exc):
            break
after = None
try:
    record(99999)
    after = "written"
except AuditUnavailable as exc:
    after = str(exc)
print(json.dumps({"written": written, "failures": failures, "after": after}))
"""


def fill(directory: Path, key_file: Path, *, interval: float, stop_at: str) -> dict[str, Any]:
    finished = run_python(FILL, str(directory), str(key_file), str(interval), stop_at, str(LIMIT))
    assert finished.returncode == 0, finished.stderr
    return dict(json.loads(finished.stdout))


def test_full_disk_cuts_the_partial_line_back_and_the_chain_goes_on(tmp_path: Path, key: Ed25519PrivateKey,
                                                                    key_file: Path) -> None:
    directory = tmp_path / "audit"
    outcome = fill(directory, key_file, interval=3600, stop_at=".jsonl")
    (failure,) = outcome["failures"]
    assert "File too large" in failure["error"]
    assert outcome["written"] == list(range(failure["i"]))
    assert outcome["after"] == "written"  # the next record goes to a fresh file
    _, files = only_chain(directory)
    assert len(files) == 2
    full = files[0]
    assert full.stat().st_size < LIMIT
    assert full.read_bytes().endswith(b"\n")  # the partial line was cut back
    assert_every_line_is_whole_json(directory)
    logins = [r["correlation_id"] for path in files for r in records_of(path) if r["event"] == "login_started"]
    assert logins == [f"C{i:05d}" for i in outcome["written"]] + ["C99999"]
    abandoned = records_of(files[1])[0]
    assert abandoned["event"] == "audit_file_abandoned"
    assert abandoned["data"] == {"file": full.name, "bytes": full.stat().st_size, "truncated_partial_line": True,
                                 "torn_bytes": 0, "error": "File too large"}
    assert abandoned["prev"] == line_hash(lines_of(full)[-1])
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())
    assert not [p for c in result.chains for p in c.problems]


def test_full_disk_while_writing_the_checkpoint_index(tmp_path: Path, key: Ed25519PrivateKey,
                                                      key_file: Path) -> None:
    """A checkpoint after every record: the index fills up too. Whatever write fails, no file may be left
    with a partial line that the verifier then calls a modification."""
    directory = tmp_path / "audit"
    outcome = fill(directory, key_file, interval=0, stop_at="checkpoints.jsonl")
    assert "checkpoints.jsonl" in outcome["failures"][-1]["error"]
    result = verified(directory, key)
    problems = [p for c in result.chains for p in c.problems]
    assert not [p for p in problems if p.what == "modified"], [str(p) for p in problems]
    assert result.ok
    for path in directory.glob("*.checkpoints.jsonl"):
        assert path.read_bytes().endswith(b"\n")


# --- the audit directory fails under a running app ------------------------------------------------------------


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> RedisStore:
    return RedisStore(redis_url, prefix=redis_prefix)


def replace_by_a_file(directory: Path) -> None:
    """Root ignores file modes, so the directory is made unusable by putting a regular file in its place."""
    for f in directory.iterdir():
        f.unlink()
    directory.rmdir()
    directory.write_text("not a directory\n")


def login_page(app: Flask, demo_material: Any, user: str = "anna") -> Any:
    metadata = app.extensions["broker"].metadata.document()
    sp = make_sp(demo_material.root, metadata, app.extensions["broker"].settings.broker.idp.entity_id)
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        browser = Browser(client, (Path(demo_material.users) / f"{user}.pem").read_text())
        return browser.get(sp.login_url(force_authn=True))


def assert_fails_closed(response: Any) -> None:
    assert response.status_code == 503
    assert response.headers["X-Broker-Reason"] == "audit_unavailable"
    assert not any("SAMLResponse" in fields for _, fields in forms(response))
    assert "SAMLResponse" not in response.get_data(as_text=True)


def test_login_fails_closed_when_the_audit_directory_is_replaced_after_start(
        config_dir: Path, demo_material: Any, store: RedisStore) -> None:
    app = create_app(load_settings(config_dir), store=store, instance_id="test")
    assert list((config_dir / "audit").glob("test.*.000001.jsonl"))  # the chain is open
    replace_by_a_file(config_dir / "audit")
    assert_fails_closed(login_page(app, demo_material))


def test_login_fails_closed_when_the_audit_directory_is_unusable_from_the_start(
        config_dir: Path, demo_material: Any, store: RedisStore) -> None:
    settings = load_settings(config_dir)
    replace_by_a_file(config_dir / "audit")
    app = create_app(settings, store=store, instance_id="test")
    for _attempt in range(2):
        assert_fails_closed(login_page(app, demo_material))


def test_logins_work_again_once_the_audit_directory_is_back(config_dir: Path, demo_material: Any,
                                                           store: RedisStore) -> None:
    """Like the session store, the audit recovers without a restart once its directory is usable again."""
    settings = load_settings(config_dir)
    replace_by_a_file(config_dir / "audit")
    app = create_app(settings, store=store, instance_id="test")
    assert_fails_closed(login_page(app, demo_material))
    (config_dir / "audit").unlink()
    (config_dir / "audit").mkdir()
    response = login_page(app, demo_material)
    assert response.status_code == 200, response.headers.get("X-Broker-Reason")
    assert any("SAMLResponse" in fields for _, fields in forms(response))


def test_readiness_and_metrics_show_an_audit_trail_that_cannot_be_written(
        config_dir: Path, demo_material: Any, store: RedisStore) -> None:
    """Logins failing closed for the audit trail take the process out of a load balancer's rotation (/readyz
    503) and are counted (they leave no audit record to count them by); the probe brings it back once the
    directory is usable again, without a login."""
    app = create_app(load_settings(config_dir), store=store, instance_id="test")
    client = app.test_client()
    assert client.get("/readyz").get_json()["checks"]["audit"] == "ok"
    replace_by_a_file(config_dir / "audit")
    for _attempt in range(3):
        assert_fails_closed(login_page(app, demo_material))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json() == {"status": "unavailable",
                                "checks": {"session_store": "ok", "audit": "audit_unavailable"}}
    failures = app.extensions["broker_runtime"].metrics.audit_failures._value.get()
    assert failures >= 3

    (config_dir / "audit").unlink()
    (config_dir / "audit").mkdir()
    assert client.get("/readyz").status_code == 200  # the probe's checkpoint went through
    assert login_page(app, demo_material).status_code == 200


# --- several writer processes at once -----------------------------------------------------------------------

CONCURRENT = """
clock = SystemClock()
name = sys.argv[3]
settings = ChainSettings(directory, name, dt.timedelta(milliseconds=10), 30000, dt.timedelta(days=1))
writer = ChainWriter(settings, AuditSigner(key), clock, background=False)
trail = AuditTrail(writer, clock, pseudonym_key=b"p" * 32, instance_id=name)

def work(n):
    for i in range(250):
        trail.record(AuditEvent("login_started", "info", f"{name}-{n}-{i:03d}", sp="https://sp.example/md",
                                client_address="192.0.2.7", detail="y" * (i % 5 * 70)))
        trail.sync()

threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
writer.close()
print(writer.chain_id)
"""


def test_writer_processes_side_by_side_keep_their_chains_apart(tmp_path: Path, key: Ed25519PrivateKey,
                                                               key_file: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    processes = [start_python(CONCURRENT, str(directory), str(key_file), f"w{n}") for n in range(3)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    chains = {out.strip(): n for n, (out, _) in enumerate(outputs)}
    assert set(chain_files(directory)) == set(chains)
    assert_every_line_is_whole_json(directory)
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())
    for report in result.chains:
        assert report.closed
        assert report.warnings == []
        assert len(report.files) >= 2  # rotated while the others wrote
        name = f"w{chains[report.chain]}"
        logins = [r["correlation_id"] for _, path in chain_files(directory)[report.chain]
                  for r in records_of(path) if r["event"] == "login_started"]
        assert sorted(logins) == sorted(f"{name}-{n}-{i:03d}" for n in range(2) for i in range(250))
        assert report.attestations == []
    assert list(directory.glob("*.recovered")) == []


def _with_unsynced(tmp_path: Path, key: Ed25519PrivateKey,
                   count: int) -> tuple[Path, FixedClock, ChainWriter, AuditTrail, tuple[int, ...]]:
    """A chain in ``tmp_path``/audit whose first record is synced, and ``count`` more appended but not synced yet:
    the directory, clock, writer, trail and those records' tokens."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    writer = make_writer(directory, clock, key)
    trail = make_trail(writer, clock)
    trail.record(login_event(0))
    trail.sync()
    tokens = tuple(writer.append(trail.format(login_event(n)))[0] for n in range(1, count + 1))
    return directory, clock, writer, trail, tokens


def test_every_request_whose_records_were_in_a_removed_file_fails_closed(tmp_path: Path,
                                                                         key: Ed25519PrivateKey) -> None:
    """Two requests append, then the file is removed (a cleanup job, logrotate). The first to sync finds it gone
    and fails closed; the second must too: its records were in the same file. It was told they were durable,
    since the first had already marked the file abandoned and the check was skipped."""
    directory, _clock, writer, trail, (first, second) = _with_unsynced(tmp_path, key, 2)
    for path in directory.glob("*.000001.jsonl"):
        path.unlink()
    with pytest.raises(AuditUnavailable):
        writer.sync(second)
    # the next request's records go to a fresh file, and are durable again ...
    third, _ = writer.append(trail.format(login_event(3)))
    writer.sync(third)
    assert any(path.name.endswith(".000002.jsonl") for path in directory.iterdir())
    # ... which does not make the first request's record, lost with the removed file, durable
    with pytest.raises(AuditUnavailable):
        writer.sync(first)


def test_a_writer_starting_while_another_creates_its_file_does_not_attest_it(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writer A's file must be locked before any other writer can see it: B, starting in between (another
    gunicorn worker), would find it unlocked, attest A's live chain as crashed at its last record, and the
    verifier would then report A's untampered chain as truncated."""
    directory = tmp_path / "audit"
    directory.mkdir()
    clock = FixedClock(T0)
    first = make_writer(directory, clock, key, instance="wa")
    second = make_writer(directory, clock, key, instance="wb")
    real_flock = chain_module.fcntl.flock
    started: list[str] = []

    class SecondStartsMeanwhile:
        LOCK_EX, LOCK_NB, LOCK_SH = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_SH

        @staticmethod
        def flock(fd: int, operation: int) -> None:
            if operation & fcntl.LOCK_EX and not started:
                started.append("wb")
                second.checkpoint()  # B starts (and looks for crashed chains) before A's lock is taken
            real_flock(fd, operation)

    monkeypatch.setattr(chain_module, "fcntl", SecondStartsMeanwhile)
    trail = make_trail(first, clock)
    for n in range(3):
        trail.record(login_event(n))
        trail.sync()
    trail.close()
    make_trail(second, clock).close()
    assert started == ["wb"]
    assert not list(directory.glob("*.recovered"))
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())
    assert not list(directory.glob(".*"))  # no hidden file left behind


def test_a_file_system_without_hard_links_still_gets_its_chain(tmp_path: Path, key: Ed25519PrivateKey,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # SMB and some FUSE mounts refuse link(): the file is then created in place and locked at once
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(chain_module.os, "link", no_links)
    directory, trail = started_trail(tmp_path, key)
    trail.close()
    assert verified(directory, key).ok
    assert not list(directory.glob(".*"))


def started_trail(tmp_path: Path, key: Ed25519PrivateKey) -> tuple[Path, AuditTrail]:
    """An audit trail in ``tmp_path``/audit on a fixed clock, its chain started with one record, synced."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    trail = make_trail(make_writer(directory, clock, key), clock)
    trail.record(login_event(1))
    trail.sync()
    return directory, trail


class FailingWrites:
    """``os.write`` in the audit writer fails with ENOSPC for the files ``failing`` picks (by path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failing: Any = lambda path: False
        real_write = os.write

        def write(fd: int, data: Any) -> int:
            if self.failing(os.readlink(f"/proc/self/fd/{fd}")):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(chain_module.os, "write", write)


class FullDisk(FailingWrites):
    """Every write of the audit writer fails with ENOSPC while ``full`` (a file system without room)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(monkeypatch)
        self.full = True
        self.failing = lambda path: self.full


def test_a_disk_that_stays_full_leaves_one_empty_file_not_one_per_refused_request(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write fails with ENOSPC for a while (the file system is full): each request is refused, and the
    writer retries the one new (empty) file instead of making another per attempt, while the background
    checkpoint thread, whose interval passes meanwhile, writes nowhere; once there is room, the chain goes on
    there, naming the file it abandoned, and verifies."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    writer = make_writer(directory, clock, key, interval=dt.timedelta(seconds=0.1), background=True)
    trail = make_trail(writer, clock)
    trail.record(login_event(1))
    trail.sync()
    disk = FullDisk(monkeypatch)
    for i in range(2, 40):
        with pytest.raises(AuditUnavailable, match="No space left on device"):
            trail.record(login_event(i))
        if i % 10 == 0:
            clock.advance(dt.timedelta(seconds=1))  # a checkpoint is due: the thread's turns come meanwhile
            time.sleep(0.15)
    _, files = only_chain(directory)
    assert len(files) == 2, [f.name for f in files]
    assert files[1].stat().st_size == 0

    disk.full = False
    trail.record(login_event(40))
    trail.sync()
    trail.close()

    _, files = only_chain(directory)
    assert len(files) == 2
    abandoned = records_of(files[1])[0]
    assert abandoned["event"] == "audit_file_abandoned"
    assert abandoned["data"]["file"] == files[0].name
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


@pytest.mark.parametrize("refused", [1, 2, 5])
def test_closing_right_after_a_full_disk_records_the_outage_first(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch, refused: int) -> None:
    """A clean stop once there is room again: the abandonment is written (in a new file) before the final
    checkpoint seals the chain, so the refused writes leave their trace."""
    directory, trail = started_trail(tmp_path, key)
    disk = FullDisk(monkeypatch)
    for i in range(refused):
        with pytest.raises(AuditUnavailable):
            trail.record(login_event(2 + i))
    disk.full = False
    trail.close()

    _, files = only_chain(directory)
    assert len(files) == 2
    first, *rest = records_of(files[1])
    assert first["event"] == "audit_file_abandoned"
    assert first["data"]["file"] == files[0].name
    assert rest[-1]["event"] == "audit_checkpoint"
    assert rest[-1]["data"]["final"] is True
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


def test_a_writer_that_cannot_start_on_a_full_disk_leaves_nothing_per_refused_request(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh writer (a new worker after a reload or a respawn) on a full disk: its file can be made, not one
    line written. Each refused request used to leave an empty chain behind, which the first writer after the
    outage then attested one by one (a record and a marker each, quadratic in their number)."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    trail = make_trail(make_writer(directory, clock, key), clock)
    disk = FullDisk(monkeypatch)
    for i in range(20):
        with pytest.raises(AuditUnavailable, match="No space left on device"):
            trail.record(login_event(i))
    assert chain_files(directory) == {}
    assert sorted(p.name for p in directory.iterdir()) == []

    disk.full = False
    trail.record(login_event(20))
    trail.sync()
    trail.close()
    assert len(chain_files(directory)) == 1
    assert not list(directory.glob("*.recovered"))
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


def test_a_full_disk_while_writing_the_closed_marker_leaves_no_empty_marker(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """The final checkpoint is written, the `.closed` marker is not: no empty marker may stay behind (the
    verifier reports one as modified, on an untampered trail)."""
    directory, trail = started_trail(tmp_path, key)
    writes = FailingWrites(monkeypatch)
    writes.failing = lambda path: ".closed." in path
    trail.close()
    assert not list(directory.glob("*.closed"))
    assert not list(directory.glob(".*"))
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


def test_an_attestation_the_disk_refuses_leaves_the_crashed_chain_to_the_next_writer(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """The marker that says a crashed chain is attested is written only once the attestation is durable: written
    first, with the attestation then refused by a full disk, it kept every later writer from attesting the chain,
    and the untampered trail failed verification for good."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    crashed = make_writer(directory, clock, key, instance="wa")
    trail = make_trail(crashed, clock)
    trail.record(login_event(1))
    trail.sync()
    crashed._close_file()  # the process dies: its lock goes, no final checkpoint
    writes = FailingWrites(monkeypatch)
    written: list[str] = []

    def after_its_first_line(path: str) -> bool:  # the new chain's start record goes in, its attestation does not
        written.append(path)
        return ".jsonl" in path and "wb." in path and len([p for p in written if "wb." in p]) > 1

    writes.failing = after_its_first_line
    second = make_trail(make_writer(directory, clock, key, instance="wb"), clock)
    with pytest.raises(AuditUnavailable):
        second.record(login_event(2))
    assert not list(directory.glob("*.recovered"))

    writes.failing = lambda path: False
    third = make_trail(make_writer(directory, clock, key, instance="wc"), clock)
    third.record(login_event(3))
    third.sync()
    third.close()
    # the crashed chain, and the start that wrote one line before the disk refused the rest
    assert sorted(p.name.split(".")[0] for p in directory.glob("*.recovered")) == ["wa", "wb"]
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


# --- what an intruder may plant in the audit directory ----------------------------------------------

NESTED = b"[" * 100000 + b"]" * 100000 + b"\n"  # json.loads raises RecursionError on it


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("where", ["crashed-chain-last-line", "another-chain-index"])
def test_a_deeply_nested_line_does_not_stop_a_writer_from_starting(
        tmp_path: Path, key: Ed25519PrivateKey, where: str) -> None:
    """A new writer reads lines back from files others wrote (the last record of a crashed chain, the first
    line of each checkpoint index for the key rotation): a line nested past the parser's recursion limit is a
    line that is no record, not a RecursionError that failed every request's start with a 500 and kept a
    locked chain file open per attempt."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    crashed = make_writer(directory, clock, key, instance="wa")
    make_trail(crashed, clock).record(login_event(1))
    crashed._close_file()  # the process dies: its lock goes, no final checkpoint
    if where == "crashed-chain-last-line":
        (path,) = directory.glob("wa.*.000001.jsonl")
        path.write_bytes(path.read_bytes() + NESTED)
    else:
        (directory / "z.29991231T000000000Z.abcdef.checkpoints.jsonl").write_bytes(NESTED)
    before = open_fds()
    writer = make_writer(directory, clock, key, instance="wb")
    trail = make_trail(writer, clock)
    trail.record(login_event(2))
    trail.sync()
    (attestation,) = [r for r in records_of(next(directory.glob("wb.*.000001.jsonl")))
                      if r["event"] == "audit_chain_recovered"]
    assert attestation["data"]["last_seq"] == 3  # started, checkpoint, the login: the planted line is no record
    trail.close()
    assert open_fds() == before


def test_a_start_that_fails_unexpectedly_fails_closed_and_lets_its_file_go(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever stops a start (here a RecursionError from a reader), the request is refused as an audit
    failure (503), and the start's file descriptor and lock are released: each attempt used to keep one open
    and its chain locked for good, unattested, as if its writer still lived."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)

    def fails(self: ChainWriter) -> list[dict[str, Any]]:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(ChainWriter, "_recover_crashed_chains", fails)
    before = open_fds()
    trail = make_trail(make_writer(directory, clock, key, instance="wa"), clock)
    for i in range(3):
        with pytest.raises(AuditUnavailable, match="could not start: RecursionError"):
            trail.record(login_event(i))
    assert open_fds() == before
    files = [p for chain in chain_files(directory).values() for _, p in chain]
    for path in files:  # unlocked: for the next writer to attest
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result, failing the test if it has not returned within ``seconds`` (it runs in a daemon
    thread, which a hang leaves behind)."""
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked (opening a FIFO waits for a writer)"
    assert done, "raised"
    return done[0]


def test_a_fifo_named_like_a_chain_file_hangs_no_writer_and_is_reported(
        tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """Anyone who can write to the audit directory can make a FIFO under a chain file's name; opening it to
    read blocked until someone wrote to it, which hung every writer's start (it looks at each unlocked chain's
    last file), verify and query. It is no audit file: the writer passes it over, verify names it."""
    directory = tmp_path / "audit"
    directory.mkdir()
    fifo = directory / "x.20261127T000000000Z.abcdef.000001.jsonl"
    os.mkfifo(fifo)
    os.mkfifo(directory / "y.20261127T000000000Z.abcdef.checkpoints.jsonl")  # read for the key rotation
    clock = FixedClock(T0)
    trail = make_trail(make_writer(directory, clock, key), clock)

    def log_in() -> None:
        trail.record(login_event(1))
        trail.sync()
        trail.close()

    within(10, log_in)
    result: Verification = within(10, lambda: verified(directory, key))
    problem = result.first_problem()
    assert problem is not None
    assert (problem.file, problem.what, problem.detail) == (
        str(fifo), "missing", "cannot read: not a regular file")
    found = within(10, lambda: list(records([directory], lambda path, why: None)))
    assert [r["event"] for r in found if r["event"] == "certificate_accepted"] == ["certificate_accepted"]


@pytest.mark.parametrize("torn", [
    pytest.param(b"", id="ends-on-a-whole-line"),
    pytest.param(b'{"v":1,"seq":9,"detail":"' + b"y" * 300_000, id="torn-line-longer-than-the-window"),
])
def test_a_crashed_chain_whose_last_record_is_longer_than_the_tail_window_is_attested_at_it(
        tmp_path: Path, key: Ed25519PrivateKey, torn: bytes) -> None:
    """The next writer reads a crashed chain's end from a window at the end of its last file (256 KiB): a last
    record longer than that (a long detail) was not found, the chain was attested at seq 0, and the untampered
    chain verified as truncated; a torn line longer than the window was attested short."""
    directory = tmp_path / "audit"
    clock = FixedClock(T0)
    crashed = make_writer(directory, clock, key, instance="wa")
    trail = make_trail(crashed, clock)
    trail.record(login_event(1))
    trail.record(login_event(2, detail="x" * 300_000))
    trail.sync()
    crashed._close_file()  # the process dies: its lock goes, no final checkpoint
    (file,) = directory.glob("wa.*.000001.jsonl")
    last = json.loads(lines_of(file)[-1])
    file.write_bytes(file.read_bytes() + torn)
    later = make_writer(directory, clock, key, instance="wb")
    later.checkpoint()
    later.close()
    (attestation,) = [r["data"] for r in records_of(next(directory.glob("wb.*.000001.jsonl")))
                      if r["event"] == "audit_chain_recovered"]
    assert (attestation["last_seq"], attestation["torn_bytes"]) == (last["seq"], len(torn))
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


@pytest.mark.parametrize("tampered", [False, True])
def test_a_partial_line_a_failed_cut_back_left_is_explained_by_the_abandonment_record(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch, tampered: bool) -> None:
    """A write puts out half a line and fails (EIO), and cutting the file back fails too: the half line stays,
    and the chain goes on in a new file whose first record names the abandoned file and its size before the
    failed write. The verifier called that untampered chain modified; a torn line of another length is."""
    directory, trail = started_trail(tmp_path, key)
    real_write = os.write
    writes: list[int] = []

    def half_then_eio(fd: int, data: Any) -> int:
        writes.append(fd)
        if len(writes) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.EIO, "Input/output error")

    def eio(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(chain_module.os, "write", half_then_eio)
        patched.setattr(chain_module.os, "ftruncate", eio)
        with pytest.raises(AuditUnavailable):
            trail.record(login_event(2))
    trail.record(login_event(3))  # the disk works again: the chain goes on in file 2
    trail.sync()
    trail.close()
    _, (first, second) = only_chain(directory)
    abandoned = records_of(second)[0]
    assert abandoned["event"] == "audit_file_abandoned"
    assert abandoned["data"]["truncated_partial_line"] is False
    torn_at = len(lines_of(first))
    assert abandoned["data"]["torn_bytes"] == len(lines_of(first)[-1]) > 0
    if tampered:
        first.write_bytes(first.read_bytes() + b"x")
    result = verified(directory, key)
    if tampered:
        problem = result.first_problem()
        assert problem is not None
        assert (problem.what, problem.file, problem.line) == ("modified", str(first), torn_at)
    else:
        assert result.ok, str(result.first_problem())
        assert result.chains[0].warnings == [
            f"torn line at {first}:{torn_at}: a write failed and could not be cut back (audit_file_abandoned "
            f"at the start of {second.name})"]


@pytest.mark.parametrize("where", [pytest.param("sync", id="a-request-s-sync"),
                                   pytest.param("checkpoint", id="a-checkpoint-s-sync")])
def test_records_a_failed_fsync_may_have_lost_are_never_reported_durable(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """fsync fails (EIO: the disk did not take the written pages). Linux reports a writeback error once per open
    file: the pages are dropped and the next fsync of the file succeeds without them. A request whose records
    were written before the failure was then told they were durable by its own later fsync, and a login answered
    on records no reviewer will ever read. Every request with records in that file since its last good fsync
    fails closed, and the chain goes on in a new file that names the abandoned one."""
    directory, _clock, writer, trail, (first, second) = _with_unsynced(tmp_path, key, 2)
    real_fsync = os.fsync
    failed: list[int] = []
    meanwhile: list[int] = []  # another request's record, written while the failing fsync ran
    chain_file = only_chain(directory)[1][0]

    def eio_once(fd: int) -> None:  # the chain file's first fsync (not the checkpoint index's)
        if not failed and os.fstat(fd).st_ino == chain_file.stat().st_ino:
            failed.append(fd)
            meanwhile.append(writer.append(trail.format(login_event(9)))[0])
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    with monkeypatch.context() as patched:
        patched.setattr(chain_module.os, "fsync", eio_once)
        failing_fsync = (lambda: writer.sync(first)) if where == "sync" else writer.checkpoint
        with pytest.raises(AuditUnavailable):
            failing_fsync()
        with pytest.raises(AuditUnavailable):  # its own fsync now succeeds: the kernel told the failure once
            writer.sync(second)
        with pytest.raises(AuditUnavailable):
            writer.sync(meanwhile[0])
    # the next request's records go to a fresh file, which says why, and are durable
    third, _ = writer.append(trail.format(login_event(3)))
    writer.sync(third)
    with pytest.raises(AuditUnavailable):
        writer.sync(first)
    writer.close()
    _, files = only_chain(directory)
    assert len(files) == 2
    abandoned = records_of(files[1])[0]
    assert abandoned["event"] == "audit_file_abandoned"
    assert abandoned["data"]["file"] == files[0].name
    assert abandoned["data"]["error"] == "Input/output error"
    result = verified(directory, key)
    assert result.ok, str(result.first_problem())


@pytest.mark.parametrize("fails", [
    pytest.param("request", id="a-request-s-fsync-fails-while-a-checkpoint-s-succeeds"),
    pytest.param("checkpoint", id="a-checkpoint-s-fsync-fails-while-a-request-s-succeeds"),
])
def test_an_fsync_that_succeeds_beside_a_failed_one_makes_nothing_durable_that_the_failure_lost(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch, fails: str) -> None:
    """A request's fsync (on its own descriptor, outside the writer's lock) and a checkpoint's (under it) may run at
    once on the same open file. Linux reports the writeback error to one of them only: the other succeeds although
    the pages were dropped. Whichever fails, the records written before it and not yet synced are lost for every
    request that wrote them, also when the other fsync's success was noted first or last."""
    directory, _clock, writer, _trail, (first, second) = _with_unsynced(tmp_path, key, 2)
    real_fsync = os.fsync
    chain_file = only_chain(directory)[1][0]
    calls: list[int] = []

    def concurrent(fd: int) -> None:
        if os.fstat(fd).st_ino != chain_file.stat().st_ino:
            real_fsync(fd)  # the checkpoint index
            return
        calls.append(fd)
        if len(calls) == 1:  # the request's fsync: a checkpoint's runs meanwhile
            with contextlib.suppress(AuditUnavailable):
                writer.checkpoint()
            if fails == "request":
                raise OSError(errno.EIO, "Input/output error")
            return
        if fails == "checkpoint":
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    with monkeypatch.context() as patched:
        patched.setattr(chain_module.os, "fsync", concurrent)
        with pytest.raises(AuditUnavailable):
            writer.sync(first)
        with pytest.raises(AuditUnavailable):
            writer.sync(second)
    writer.close()


def test_an_fsync_that_fails_after_its_file_was_left_loses_what_was_written_to_that_file_meanwhile(
        tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request's fsync fails on a file the writer has left meanwhile (a rotation, whose own fsync of that file
    the kernel no longer told of the error): what other requests wrote to that file while the failing fsync ran is
    lost with it, as when the file is still the open one, and those requests fail closed too."""
    directory, clock, writer, trail, (first,) = _with_unsynced(tmp_path, key, 1)
    real_fsync = os.fsync
    chain_file = only_chain(directory)[1][0]
    meanwhile: list[int] = []

    def rotation_meanwhile(fd: int) -> None:
        if meanwhile or os.fstat(fd).st_ino != chain_file.stat().st_ino:
            real_fsync(fd)
            return
        meanwhile.append(writer.append(trail.format(login_event(2)))[0])  # still to the first file
        clock.advance(dt.timedelta(days=2))  # the next record starts a new file (rotate_interval)
        writer.append(trail.format(login_event(3)))
        assert len(only_chain(directory)[1]) == 2
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(chain_module.os, "fsync", rotation_meanwhile)
        with pytest.raises(AuditUnavailable):
            writer.sync(first)
        with pytest.raises(AuditUnavailable):
            writer.sync(meanwhile[0])
    writer.close()
