"""Copies of the audit events for a SIEM (docs/audit.md, "Forwarding"): RFC 5424 syslog over UDP, or TCP with
RFC 6587 octet counting; JSON lines on a stream; never in the way of a login.

Real receivers listen on 127.0.0.1 (socketserver in a thread); the messages are parsed here by the
RFC 5424 grammar (HEADER SP STRUCTURED-DATA [SP MSG]) and compared with the records in the audit file.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.app import create_app
from broker.audit.events import AuditEvent
from broker.audit.forward import StdoutForwarder, SyslogForwarder
from broker.audit.trail import MAX_DETAIL, AuditTrail
from broker.clock import FixedClock
from broker.config.loader import load_settings
from broker.session.store import RedisStore
from tests.factories.audit import (
    ANNA,
    BO,
    FACTS,
    PSEUDONYM_KEY,
    T0,
    make_writer,
    only_chain,
    records_of,
)
from tests.factories.saml import BASE_URL, Browser, make_sp, saml_response_form

HEADER = re.compile(r"^<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>\S+) "
                    r"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) ")


@dataclass(frozen=True)
class Syslog:
    pri: int
    version: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd_id: str
    params: dict[str, str]
    msg: dict[str, Any]


def parse_rfc5424(message: bytes) -> Syslog:
    """One RFC 5424 message with exactly one SD-ELEMENT and a JSON MSG."""
    text = message.decode("utf-8")
    head = HEADER.match(text)
    assert head is not None, text[:120]
    rest = text[head.end():]
    assert rest.startswith("["), rest[:60]
    i = 1
    sd_id_end = min(p for p in (rest.find(" ", i), rest.find("]", i)) if p != -1)
    sd_id = rest[i:sd_id_end]
    i = sd_id_end
    params: dict[str, str] = {}
    while rest[i] == " ":
        eq = rest.index("=", i)
        name = rest[i + 1:eq]
        assert re.fullmatch(r"[!-~]{1,32}", name), name
        assert not set(name) & set('= ]"'), name
        assert rest[eq + 1] == '"'
        i, value = eq + 2, []
        while rest[i] != '"':
            if rest[i] == "\\" and rest[i + 1] in '"\\]':  # RFC 5424 §6.3.3
                value.append(rest[i + 1])
                i += 2
            else:
                assert rest[i] != "]", "an unescaped ] inside a PARAM-VALUE"
                value.append(rest[i])
                i += 1
        params[name] = "".join(value)
        i += 1
    assert rest[i] == "]", rest[i:i + 20]
    assert rest[i + 1] == " ", "MSG must follow the structured data after one space"
    text_msg = rest[i + 2:]
    # RFC 5424 §6.4: MSG in UTF-8 starts with the BOM; without it, MSG-ANY is octets of no stated encoding
    assert text_msg.isascii() or text_msg.startswith("\ufeff"), "MSG in UTF-8 without the BOM"
    msg = json.loads(text_msg.removeprefix("\ufeff"))
    return Syslog(int(head["pri"]), int(head["version"]), head["timestamp"], head["hostname"], head["app"],
                  head["procid"], head["msgid"], sd_id, params, msg)


# --- receivers -----------------------------------------------------------------------------------------


class Received:
    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.messages: list[bytes] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def add(self, message: bytes) -> None:
        with self.lock:
            self.messages.append(message)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.01)
        with self.lock:
            return list(self.messages)

    def parsed(self) -> list[Syslog]:
        with self.lock:
            return [parse_rfc5424(m) for m in self.messages]


def udp_receiver() -> tuple[socketserver.UDPServer, Received]:
    received = Received("udp")

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            received.add(self.request[0])

    server = socketserver.UDPServer(("127.0.0.1", 0), Handler)
    server.max_packet_size = 65535  # every datagram whole, as sent (socketserver's own default cuts at 8,192)
    return server, received


def tcp_receiver() -> tuple[socketserver.ThreadingTCPServer, Received]:
    """RFC 6587 §3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG, repeated; anything else is an error."""
    received = Received("tcp")

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                digits = b""
                while (c := self.rfile.read(1)) not in (b" ", b""):
                    digits += c
                if not c and not digits:
                    return  # the sender closed between frames
                if not digits.isdigit() or digits.startswith(b"0") or not c:
                    received.errors.append(f"bad frame header {digits[:20]!r}")
                    return
                body = self.rfile.read(int(digits))
                if len(body) != int(digits):
                    received.errors.append("short frame")
                    return
                received.add(body)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server, received


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[tuple[str, Received]]:
    """(host:port, messages) of a running syslog receiver; the transport is the test's ``transport`` param."""
    server, received = udp_receiver() if request.param == "udp" else tcp_receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert received.errors == []


@dataclass
class Setup:
    trail: AuditTrail
    forwarder: SyslogForwarder
    directory: Path
    key: Ed25519PrivateKey

    def file_records(self) -> list[dict[str, Any]]:
        return [r for path in only_chain(self.directory)[1] for r in records_of(path)]

    def close(self) -> None:
        self.trail.close()


def forwarding_trail(directory: Path, address: str, transport: str, *, facility: str = "local3",
                     app_name: str = "broker-test", queue_size: int = 100, max_message_bytes: int = 2048) -> Setup:
    """A chain in ``directory`` whose events and checkpoints are copied to syslog, wired as the app does."""
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    forwarder = SyslogForwarder(address, transport, facility, app_name, queue_size,
                                max_message_bytes=max_message_bytes)
    writer = make_writer(directory, clock, key, on_checkpoint=lambda r: forwarder.submit(dict(r)))
    trail = AuditTrail(writer, clock, pseudonym_key=PSEUDONYM_KEY, instance_id="i1", forwarders=[forwarder])
    return Setup(trail, forwarder, directory, key)


EVENTS: list[AuditEvent] = [
    AuditEvent("login_started", "info", "C-1", sp="https://sp.example/md", client_address="192.0.2.7",
               data={"binding": "redirect", "request_id": "id-1"}),
    AuditEvent("certificate_rejected", "failure", "C-2", reason="certificate_expired", client_address="192.0.2.8"),
    AuditEvent("assertion_issued", "success", "C-3", identity=BO, sp="https://sp.example/md",
               client_address="192.0.2.9", data={"loa": "loa2", "nameid": "n", "nameid_format": "persistent",
                                                 "attributes": ("givenName",), "session": "new"}),
    AuditEvent("certificate_accepted", "success", "C-4", identity=ANNA, certificate=FACTS, sp="https://sp.example/md",
               client_address="192.0.2.10", data={"loa": "loa3", "policy": "2.999.1.3"}),
]

SEVERITY = {"failure": 4, "info": 6, "success": 6}
SD_FIELDS = ("event", "outcome", "correlation_id", "reason", "municipality", "sp", "user")


def send_events(setup: Setup, events: list[AuditEvent]) -> None:
    for event in events:
        setup.trail.record(event)
        setup.trail.sync()


@pytest.mark.parametrize("receiver", ["udp", "tcp"], indirect=True)
def test_events_arrive_as_rfc5424_with_structured_data(tmp_path: Path, receiver: tuple[str, Received]) -> None:
    address, received = receiver
    setup = forwarding_trail(tmp_path, address, received.transport)
    try:
        send_events(setup, EVENTS)
        messages = received.wait_for(len(EVENTS) + 1)  # and the checkpoint that sealed the chain's start
    finally:
        setup.close()
    assert len(messages) == len(EVENTS) + 1
    by_cid = {r.get("correlation_id"): r for r in setup.file_records()}
    parsed = [parse_rfc5424(m) for m in messages]
    events = [p for p in parsed if p.msgid != "audit_checkpoint"]
    assert [p.params["correlation_id"] for p in events] == ["C-1", "C-2", "C-3", "C-4"]
    for p in events:
        record = by_cid[p.params["correlation_id"]]
        assert p.pri == 19 * 8 + SEVERITY[record["outcome"]]  # local3
        assert p.version == 1
        assert p.timestamp == record["time"] == "2026-11-27T08:00:00.123Z"
        assert p.hostname == socket.gethostname()
        assert p.app == "broker-test"
        assert p.procid == str(os.getpid())
        assert p.msgid == record["event"]
        assert p.sd_id == "broker@32473"
        assert {k: v for k, v in p.params.items() if k != "seq"} == {
            k: str(record[k]) for k in SD_FIELDS if k in record}
        assert {k: record[k] for k in p.msg} == p.msg  # every value in MSG is the record's
    assert by_cid["C-3"]["user"].startswith("pnr:")
    assert "191212121212" not in b"".join(messages).decode()


@pytest.mark.parametrize("receiver", ["udp"], indirect=True)
def test_messages_carry_the_whole_record_as_written(tmp_path: Path, receiver: tuple[str, Received]) -> None:
    """docs: structured data [broker@32473 seq=... event=...], "the whole record as JSON in MSG" - so a SIEM
    can match each copy to its place in the hash chain."""
    address, received = receiver
    setup = forwarding_trail(tmp_path, address, "udp")
    try:
        send_events(setup, EVENTS)
        received.wait_for(len(EVENTS) + 1)
    finally:
        setup.close()
    received.wait_for(len(EVENTS) + 2)
    written = setup.file_records()
    by_seq = {r["seq"]: r for r in written}
    forwarded = received.parsed()
    # the events, the checkpoint written when the chain started, and the final one written on close
    assert len(forwarded) == len(EVENTS) + 2
    differences = []
    for p in forwarded:
        if "seq" not in p.params:
            differences.append(f"{p.msgid}: no seq= in the structured data")
            continue
        record = by_seq[int(p.params["seq"])]
        if p.msg != record:
            missing = sorted(set(record) - set(p.msg))
            differences.append(f"{p.msgid} seq {record['seq']}: MSG lacks {missing}")
    assert differences == []


SPECIAL = 'q"uote]bracket\\back'


@pytest.mark.parametrize("receiver", ["udp"], indirect=True)
def test_structured_data_values_are_escaped(tmp_path: Path, receiver: tuple[str, Received]) -> None:
    address, received = receiver
    setup = forwarding_trail(tmp_path, address, "udp")
    try:
        send_events(setup, [AuditEvent("saml_request_rejected", "failure", SPECIAL, reason="x]y\"z\\",
                                       sp='https://sp.example/"a]\\', client_address="192.0.2.7")])
        messages = received.wait_for(2)
    finally:
        setup.close()
    (message,) = [m for m in messages if b"saml_request_rejected" in m]
    raw = message.decode()
    assert 'correlation_id="q\\"uote\\]bracket\\\\back"' in raw
    p = parse_rfc5424(message)
    assert p.params["correlation_id"] == SPECIAL
    assert p.params["reason"] == 'x]y"z\\'
    assert p.params["sp"] == 'https://sp.example/"a]\\'
    assert p.msg["correlation_id"] == SPECIAL


@pytest.mark.parametrize("receiver", ["udp"], indirect=True)
def test_a_record_with_text_beyond_ascii_is_a_well_formed_msg(tmp_path: Path,
                                                              receiver: tuple[str, Received]) -> None:
    """RFC 5424 §6.4: a MSG encoded in UTF-8 MUST start with the BOM. The records' operator text is Swedish
    ("Göteborgs Stad", "…" where it was cut): it went out as UTF-8 without one, for a receiver to guess."""
    address, received = receiver
    setup = forwarding_trail(tmp_path, address, "udp")
    detail = "Inloggningen från Göteborgs Stad nekades …"
    try:
        send_events(setup, [AuditEvent("login_refused", "failure", "C-1", reason="certificate_missing",
                                       detail=detail, client_address="192.0.2.7")])
        messages = received.wait_for(2)
    finally:
        setup.close()
    (message,) = [m for m in messages if b"login_refused" in m]
    msg = message[message.index(b"] ") + 2:]
    assert msg.isascii() or msg.startswith(b"\xef\xbb\xbf"), msg[:40]
    assert parse_rfc5424(message).msg["detail"] == detail


def configuration_loaded(files: int) -> AuditEvent:
    return AuditEvent("configuration_loaded", "info", "-", data={
        "config_sha256": "c" * 64, "files": {f"certs/kommun-{n:03d}/issuing-ca.pem": "d" * 64 for n in range(files)}})


@pytest.mark.parametrize("limit", [480, 1180, 2048, 8192])
@pytest.mark.parametrize("receiver", ["udp"], indirect=True)
def test_udp_datagrams_fit_the_limit_and_say_what_they_left_out(tmp_path: Path, receiver: tuple[str, Received],
                                                               limit: int) -> None:
    """RFC 5426 §3.2: receivers must take 480 (IPv4) or 1180 (IPv6) octets and should take 2048. A record longer
    than one datagram (a configuration_loaded with hundreds of file hashes, a long detail) went out as it was, cut
    by the receiver or refused by the network (EMSGSIZE past 64 KiB: only counted as an error). Each copy now fits
    max_message_bytes: one that does not goes without its data and detail (the file holds them; seq finds the
    record), marked truncated= with the whole message's length; one that fits is whole."""
    address, received = receiver
    setup = forwarding_trail(tmp_path, address, "udp", max_message_bytes=limit)
    events = [configuration_loaded(300), configuration_loaded(700),
              AuditEvent("login_refused", "failure", "C-1", reason="certificate_missing", detail="ö" * MAX_DETAIL,
                         client_address="192.0.2.7"),
              AuditEvent("login_started", "info", "C-2", sp="https://sp.example/md", client_address="192.0.2.7",
                         data={"binding": "redirect"}),
              AuditEvent("login_started", "info", "C-3", sp="https://sp.example/" + "x" * 1000,
                         client_address="192.0.2.7", data={"binding": "redirect"})]
    try:
        send_events(setup, events)
        messages = received.wait_for(len(events) + 1)
        assert wait_until(lambda: setup.forwarder.stats()["sent"] == len(events) + 1)
        assert setup.forwarder.stats() == {"sent": len(events) + 1, "dropped": 0, "errors": 0, "queued": 0}
    finally:
        setup.close()
    assert len(messages) == len(events) + 1
    assert max(len(m) for m in messages) <= limit
    by_seq = {r["seq"]: r for r in setup.file_records()}
    whole: dict[str, bool] = {}
    for message in messages:
        p = parse_rfc5424(message + b" {}" if message.endswith(b"]") else message)  # MSG left out: nothing there
        record = by_seq[int(p.params["seq"])]
        assert p.msgid == record["event"]
        whole[str(record.get("correlation_id", record["event"]))] = "truncated" not in p.params
        if "truncated" not in p.params:
            assert p.msg == record
            continue
        assert int(p.params["truncated"]) > max(limit, len(json.dumps(record, separators=(",", ":"))))
        assert {k: record[k] for k in p.msg} == p.msg  # what MSG holds is the record's
        assert "data" not in p.msg
        assert "detail" not in p.msg
        if p.msg:
            assert {"seq", "prev", "time", "event"} | ({"correlation_id"} & set(record)) <= set(p.msg)
    assert whole["C-2"]  # a short record is whole, even in 480 octets


@pytest.mark.parametrize("receiver", ["tcp"], indirect=True)
def test_tcp_frames_count_octets_not_characters(tmp_path: Path, receiver: tuple[str, Received]) -> None:
    address, received = receiver
    setup = forwarding_trail(tmp_path, address, "tcp")
    details = ["", "å" * 10, "ä€" * 300, "€" * MAX_DETAIL, "😀 " * 50]  # the longest a record holds: 6,000 octets
    try:
        # the SP in the structured data is UTF-8 (RFC 5424 §6.3.3), so octets and characters differ in the frame
        send_events(setup, [AuditEvent("login_refused", "failure", f"C-{n}", reason="certificate_missing",
                                       detail=d, sp=f"https://sp.example/{d[:20]}", client_address="192.0.2.7")
                            for n, d in enumerate(details)])
        messages = received.wait_for(len(details) + 1)
        assert wait_until(lambda: setup.forwarder.stats()["sent"] == len(details) + 1)
        assert setup.forwarder.stats() == {"sent": len(details) + 1, "dropped": 0, "errors": 0, "queued": 0}
    finally:
        setup.close()
    assert len(messages) == len(details) + 1  # the receiver found every frame boundary (errors: none)
    parsed = [p for p in received.parsed() if p.msgid == "login_refused"]
    assert [p.msg.get("detail", "") for p in parsed] == details
    assert [p.params["sp"] for p in parsed] == [f"https://sp.example/{d[:20]}" for d in details]


# --- a receiver that is gone or stuck -----------------------------------------------------------------


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_dead_receiver_never_holds_up_a_record(tmp_path: Path) -> None:
    setup = forwarding_trail(tmp_path, f"127.0.0.1:{closed_port()}", "tcp")
    try:
        timings = []
        for n in range(30):
            started = time.perf_counter()
            setup.trail.record(AuditEvent("login_started", "info", f"C-{n}", sp="https://sp.example/md"))
            setup.trail.sync()
            timings.append(time.perf_counter() - started)
        assert max(timings) < 0.1, timings
        assert wait_until(lambda: setup.forwarder.stats()["errors"] == 31)  # 30 events and the start checkpoint
        assert setup.forwarder.stats() == {"sent": 0, "dropped": 0, "errors": 31, "queued": 0}
    finally:
        setup.close()
    assert [r["correlation_id"] for r in setup.file_records() if r["event"] == "login_started"] == [
        f"C-{n}" for n in range(30)]  # the audit file, not the copy, is the record


def test_a_receiver_that_closed_the_connection_loses_no_copy(tmp_path: Path) -> None:
    """A syslog receiver restarting, or closing idle connections, closes the TCP connection. The next copy was
    written into the closed connection and counted as sent (the peer answers it with a reset: lost without a
    trace), the one after failed (an error, lost too). Each copy now goes out on a connection that is open."""
    server, received = tcp_receiver()

    class ClosingIdleConnections(server.RequestHandlerClass):  # type: ignore[misc,name-defined]
        def handle(self) -> None:
            self.connection.settimeout(0.1)
            try:
                while True:
                    digits = b""
                    while (c := self.rfile.read(1)) not in (b" ", b""):
                        digits += c
                    if not digits:
                        return
                    received.add(self.rfile.read(int(digits)))
            except TimeoutError:
                return  # idle for 0.1 s: the receiver closes the connection

    server.RequestHandlerClass = ClosingIdleConnections
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    setup = forwarding_trail(tmp_path, f"127.0.0.1:{server.server_address[1]}", "tcp")
    try:
        for n in range(4):
            setup.trail.record(AuditEvent("login_started", "info", f"C-{n}", sp="https://sp.example/md"))
            setup.trail.sync()
            time.sleep(0.4)  # the receiver closes the connection before the next copy
        assert wait_until(lambda: len(received.messages) == 5, timeout=3)  # and the chain's start checkpoint
        assert setup.forwarder.stats() == {"sent": 5, "dropped": 0, "errors": 0, "queued": 0}
        assert [p.params["correlation_id"] for p in received.parsed() if p.msgid == "login_started"] == [
            f"C-{n}" for n in range(4)]
    finally:
        setup.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert received.errors == []


def test_a_full_queue_drops_copies_and_counts_them(tmp_path: Path) -> None:
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(1)  # not accepted, not read for now: the sender blocks once the buffers are full
    setup = forwarding_trail(tmp_path, f"127.0.0.1:{stuck.getsockname()[1]}", "tcp", queue_size=2)
    big = "z" * 60000
    recorded = 0
    drained = bytearray()
    drain: threading.Thread | None = None
    try:
        timings = []
        while setup.forwarder.stats()["dropped"] < 3 and recorded < 1000:
            started = time.perf_counter()
            setup.trail.record(AuditEvent("login_refused", "failure", f"C-{recorded}", reason="certificate_missing",
                                          detail=big))
            timings.append(time.perf_counter() - started)
            recorded += 1
        assert max(timings) < 0.1
        stats = setup.forwarder.stats()
        assert stats["dropped"] >= 3
        assert stats["queued"] <= 2
        assert stats["errors"] == 0
        assert stats["sent"] + stats["dropped"] + stats["queued"] <= recorded + 1  # + the start checkpoint

        connection, _ = stuck.accept()  # the receiver gets going again: what was queued is delivered

        def read_all() -> None:
            with connection:
                while chunk := connection.recv(1 << 20):
                    drained.extend(chunk)

        drain = threading.Thread(target=read_all)
        drain.start()
        assert wait_until(lambda: setup.forwarder.stats()["queued"] == 0)
        after = setup.forwarder.stats()
        assert wait_until(lambda: setup.forwarder.stats()["sent"] + after["dropped"] == recorded + 1)
        assert setup.forwarder.stats()["dropped"] == after["dropped"] == stats["dropped"]
    finally:
        setup.close()
        if drain is not None:
            drain.join(10)
        stuck.close()
    assert sum(r["event"] == "login_refused" for r in setup.file_records()) == recorded  # the file has them all
    assert drained.count(b"login_refused [broker@32473 ") == recorded - stats["dropped"]


@pytest.mark.parametrize("receiver", ["udp"], indirect=True)
def test_closing_forwards_the_final_checkpoint(tmp_path: Path, receiver: tuple[str, Received]) -> None:
    """The final checkpoint is the one that proves where a closed chain ends; the SIEM needs it too."""
    address, received = receiver
    setup = forwarding_trail(tmp_path, address, "udp")
    send_events(setup, EVENTS[:1])
    setup.close()
    final = setup.file_records()[-1]
    assert final["data"]["final"] is True
    received.wait_for(3, timeout=2)
    forwarded = [p.msg for p in received.parsed() if p.msgid == "audit_checkpoint"]
    assert final["data"]["signature"] in [m["data"]["signature"] for m in forwarded]
    assert setup.forwarder.stats()["queued"] == 0


# --- stdout ----------------------------------------------------------------------------------------------


def test_stdout_forwarder_writes_one_json_line_per_event(tmp_path: Path) -> None:
    stream = io.StringIO()
    forwarder = StdoutForwarder(100, stream)
    clock, key = FixedClock(T0), Ed25519PrivateKey.generate()
    writer = make_writer(tmp_path, clock, key)
    trail = AuditTrail(writer, clock, pseudonym_key=PSEUDONYM_KEY, instance_id="i1", forwarders=[forwarder])
    try:
        for event in EVENTS:
            trail.record(event)
            trail.sync()
        assert wait_until(lambda: stream.getvalue().count("\n") == len(EVENTS), 5)
        assert wait_until(lambda: forwarder.stats()["sent"] == len(EVENTS))
        assert forwarder.stats() == {"sent": len(EVENTS), "dropped": 0, "errors": 0, "queued": 0}
    finally:
        trail.close()
    lines = stream.getvalue().splitlines()
    copies = [json.loads(line) for line in lines]
    assert all(line == json.dumps(c, ensure_ascii=False, separators=(",", ":")) for line, c in zip(
        lines, copies, strict=True))
    written = [r for path in only_chain(tmp_path)[1] for r in records_of(path) if r["event"] != "audit_checkpoint"
               and r["event"] != "audit_chain_started"]
    assert [c["correlation_id"] for c in copies] == [r["correlation_id"] for r in written]
    for copy, record in zip(copies, written, strict=True):
        assert {k: record[k] for k in copy} == copy


def forwarder_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The forwarder's own warnings: other loggers (a background thread of another test's app) may write too."""
    return [r.getMessage() for r in caplog.records
            if r.name == "broker.audit" and r.levelname == "WARNING"]


def test_every_new_failure_count_is_logged_from_the_first(caplog: pytest.LogCaptureFixture) -> None:
    """forward.py: "a warning is logged whenever the counters of failures grow" (at 1, 2, 4, 8 ... failures)."""
    broken = io.StringIO()
    broken.close()  # every write fails (ValueError)
    forwarder = StdoutForwarder(100, broken)
    with caplog.at_level("WARNING", logger="broker.audit"):
        try:
            forwarder.submit({"event": "login_started", "correlation_id": "C-1"})
            assert wait_until(lambda: forwarder.stats()["errors"] == 1)
            time.sleep(0.05)
            first = forwarder_warnings(caplog)
            for n in range(2, 5):
                forwarder.submit({"event": "login_started", "correlation_id": f"C-{n}"})
                assert wait_until(lambda n=n: forwarder.stats()["errors"] == n)
            assert forwarder.stats() == {"sent": 0, "dropped": 0, "errors": 4, "queued": 0}
        finally:
            forwarder.close()
    logged = forwarder_warnings(caplog)
    assert [m for m in logged if m.endswith("0 dropped, 2 send errors so far")]
    assert [m for m in logged if m.endswith("0 dropped, 4 send errors so far")]
    assert first == ["audit forwarding to stdout: 0 dropped, 1 send errors so far"]


# --- the app ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("receiver", ["tcp"], indirect=True)
def test_logins_are_forwarded_and_admin_health_counts_them(config_dir: Path, demo_material: Any, redis_url: str,
                                                      redis_prefix: str, receiver: tuple[str, Received]) -> None:
    address, received = receiver
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["audit"]["forward"] = {"syslog": {"address": address, "transport": "tcp", "facility": "auth",
                                           "app_name": "broker-it"}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    app = create_app(load_settings(config_dir), store=RedisStore(redis_url, prefix=redis_prefix),
                     instance_id="test")
    services = app.extensions["broker"]
    try:
        sp = make_sp(demo_material.root, services.metadata.document(), services.settings.broker.idp.entity_id)
        with app.test_client() as client:
            client.environ_base["wsgi.url_scheme"] = "https"
            client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
            browser = Browser(client, (Path(demo_material.users) / "anna.pem").read_text())
            response = browser.get(sp.login_url())
            assert response.status_code == 200
            sp.accept(saml_response_form(response)[1]["SAMLResponse"])
            services.audit.sink.checkpoint()  # seal the login now rather than in 60 s
            # the chain's files, not its checkpoint index (whose random chain suffix may also start with 0)
            written = [r for p in sorted((config_dir / "audit").glob("test.*.[0-9][0-9][0-9][0-9][0-9][0-9].jsonl"))
                       for r in records_of(p)]
            copies = [r for r in written if r["event"] != "audit_chain_started"]
            received.wait_for(len(copies))
            assert wait_until(lambda: sum(s["sent"] for s in services.audit.forwarding_stats().values())
                              == len(copies))
            token = (config_dir / "keys" / "admin.token").read_text().strip()
            health = client.get("/admin/health", headers={"Authorization": f"Bearer {token}"})
        forwarded = received.parsed()
        assert [(p.msgid, p.params.get("correlation_id")) for p in forwarded] == [
            (r["event"], r.get("correlation_id")) for r in copies]
        login = [r["event"] for r in copies if r["event"] not in ("audit_checkpoint", "configuration_loaded")]
        assert login == ["login_started", "certificate_presented", "certificate_accepted", "assertion_issued"]
        checkpoints = [r["data"]["signature"] for r in copies if r["event"] == "audit_checkpoint"]
        assert len(checkpoints) == 2
        assert [p.msg["data"]["signature"] for p in forwarded if p.msgid == "audit_checkpoint"] == checkpoints
        assert all(p.app == "broker-it" and p.pri // 8 == 4 for p in forwarded)  # facility auth
        assert health.status_code == 200
        assert health.get_json()["audit_forwarding"] == {
            f"syslog tcp://{address}": {"sent": len(copies), "dropped": 0, "errors": 0, "queued": 0}}
    finally:
        services.audit.close()  # while the receiver still listens; not again at exit
        atexit.unregister(services.audit.close)
