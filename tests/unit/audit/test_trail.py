"""The audit trail: JSON lines, redaction at the source, durability, fail closed."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.chain import ChainSettings, ChainWriter
from broker.audit.events import AuditEvent, new_correlation_id
from broker.audit.keys import AuditSigner
from broker.audit.query import SYSTEM_EVENTS, records
from broker.audit.trail import MAX_DETAIL, AuditTrail, Pseudonymiser, render_client_address
from broker.clock import FixedClock
from broker.errors import AuditUnavailable
from broker.model import CertificateFacts, Identity
from tests.factories.audit import login_event, make_trail, make_writer, write_events

T0 = dt.datetime(2026, 11, 27, 8, 0, 0, 123456, tzinfo=dt.UTC)
KEY = b"k" * 32
BO = Identity("personnummer", "191212121212", "kommun-b", "Bo", "Demosson", "Bo Demosson")
ANNA = Identity("hsa_id", "SE2120001009-anna", "kommun-a")
FACTS = CertificateFacts("ab" * 32, "1f", "CN=Kommun A Test Person CA", T0, T0)


def _writer(directory: Path) -> ChainWriter:
    settings = ChainSettings(directory, "i1", dt.timedelta(hours=1), 1 << 30, dt.timedelta(days=1))
    return ChainWriter(settings, AuditSigner(Ed25519PrivateKey.generate()), FixedClock(T0), background=False)


def _trail(path: Path, mode: str = "clear") -> AuditTrail:
    return AuditTrail(_writer(path), FixedClock(T0), pseudonym_key=KEY, instance_id="i1",
                      client_address=mode)  # type: ignore[arg-type]


def _lines(path: Path) -> list[dict[str, object]]:
    """The event records (without the chain's own), without the chain fields."""
    return [{k: v for k, v in r.items() if k not in ("_chain", "seq", "prev")}
            for r in records([path]) if r["event"] not in SYSTEM_EVENTS]


def test_record_has_the_documented_fields(tmp_path: Path) -> None:
    path = tmp_path / "audit"
    trail = _trail(path)
    trail.record(AuditEvent("certificate_accepted", "success", "CID-1", identity=ANNA, certificate=FACTS,
                            sp="https://sp.example/md", client_address="192.0.2.7"))
    trail.sync()
    (line,) = _lines(path)
    assert line == {
        "v": 1, "time": "2026-11-27T08:00:00.123Z", "instance": "i1", "event": "certificate_accepted",
        "outcome": "success", "correlation_id": "CID-1", "municipality": "kommun-a",
        "user": "SE2120001009-anna", "user_kind": "hsa_id", "cert_sha256": "ab" * 32, "cert_serial": "1f",
        "cert_issuer": "CN=Kommun A Test Person CA", "sp": "https://sp.example/md", "client": "192.0.2.7",
    }


@pytest.mark.parametrize(("detail", "written"), [
    pytest.param("x" * MAX_DETAIL, "x" * MAX_DETAIL, id="at-the-bound-whole"),
    pytest.param("x" * (MAX_DETAIL + 1), "x" * (MAX_DETAIL - 1) + "…", id="one-over-cut"),
    pytest.param("<" * 200_000, "<" * (MAX_DETAIL - 1) + "…", id="what-a-peer-sent-cut"),
])
def test_a_records_detail_is_bounded(tmp_path: Path, detail: str, written: str) -> None:
    """The detail often quotes what a peer sent before anything about it was verified: whatever a caller passes,
    a record carries at most MAX_DETAIL characters of it, so nobody writes kilobytes into the trail per request."""
    path = tmp_path / "audit"
    trail = _trail(path)
    trail.record(AuditEvent("saml_request_rejected", "failure", "CID-1", reason="saml_request_malformed",
                            detail=detail, client_address="192.0.2.7"))
    trail.sync()
    (line,) = _lines(path)
    assert line["detail"] == written


BO_PSEUDONYM = Pseudonymiser(KEY).personnummer("191212121212")


@pytest.mark.parametrize(("detail", "written"), [
    # an IdP's StatusMessage, quoted in upstream_status: free text of a peer, which may name the user
    pytest.param("urn:oasis:names:tc:SAML:2.0:status:Responder: user 191212121212 has no account",
                 f"urn:oasis:names:tc:SAML:2.0:status:Responder: user {BO_PSEUDONYM} has no account", id="12-digits"),
    pytest.param("Användaren 19121212-1212 saknas", f"Användaren {BO_PSEUDONYM} saknas", id="12-digits-dash"),
    pytest.param("user 121212+1212 locked", f"user {BO_PSEUDONYM} locked", id="10-digits-over-100"),
    pytest.param("samordningsnummer 190101619997.", f"samordningsnummer "
                 f"{Pseudonymiser(KEY).personnummer('190101619997')}.", id="samordningsnummer"),
    pytest.param("org 2120001009, seq 123456789012, id 191212121213", "org 2120001009, seq 123456789012, "
                 "id 191212121213", id="other-numbers-stay"),
])
def test_a_personnummer_in_a_detail_is_replaced_by_its_pseudonym(tmp_path: Path, detail: str,
                                                                  written: str) -> None:
    """docs/audit.md: a detail never holds a personnummer. Details quote what peers sent (a municipal IdP's
    StatusMessage, parts of a refused message): a personnummer there went into the trail in clear."""
    path = tmp_path / "audit"
    trail = _trail(path)
    trail.record(AuditEvent("upstream_authn_result", "failure", "CID-1", reason="upstream_status", detail=detail,
                            client_address="192.0.2.7"))
    trail.sync()
    (line,) = _lines(path)
    assert line["detail"] == written



@pytest.mark.parametrize(("outcome", "status", "detail"), [
    pytest.param("success", "Success: användaren 19121212-1212 är utloggad", None, id="success-with-a-message"),
    pytest.param("failure", "Success / PartialLogout: user 191212121212 still has a session",
                 "https://idp.kommun-b.example answered Success / PartialLogout: user 191212121212 still has a session",
                 id="partial-logout"),
])
def test_a_personnummer_in_a_peers_logout_status_is_replaced_by_its_pseudonym(
        tmp_path: Path, outcome: str, status: str, detail: str | None) -> None:
    """logout_propagated's data.status quotes the participant's LogoutResponse: its status codes and StatusMessage,
    a peer's free text, which may name the user (docs/audit.md: a personnummer appears only as its pseudonym). The
    detail quoting the same text was redacted; data.status went into the trail in clear."""
    path = tmp_path / "audit"
    trail = _trail(path)
    trail.record(AuditEvent("logout_propagated", outcome, "CID-1", reason=None if detail is None else "logout_partial",
                            detail=detail, client_address="192.0.2.7",
                            data={"side": "idp", "peer": "https://idp.kommun-b.example", "status": status}))
    trail.sync()
    (line,) = _lines(path)
    assert line["data"]["status"] == status.replace("19121212-1212", BO_PSEUDONYM).replace("191212121212",
                                                                                           BO_PSEUDONYM)
    assert "1212121212" not in "".join(p.read_text() for p in path.glob("*.jsonl"))

def test_personnummer_is_replaced_by_a_stable_keyed_pseudonym(tmp_path: Path) -> None:
    path = tmp_path / "audit"
    trail = _trail(path)
    for _ in range(2):
        trail.record(AuditEvent("certificate_accepted", "success", "C", identity=BO))
    trail.sync()
    text = "".join(p.read_text() for p in path.glob("*.jsonl"))
    assert "191212121212" not in text
    assert "1212121212" not in text
    users = {line["user"] for line in _lines(path)}
    assert users == {Pseudonymiser(KEY).personnummer("191212121212")}
    (user,) = users
    assert isinstance(user, str)
    assert user.startswith("pnr:")
    assert len(user) == 36
    assert Pseudonymiser(b"another key" * 3).personnummer("191212121212") != user


@pytest.mark.parametrize(("identity", "user"), [
    pytest.param(Identity("opaque", "191212121212", "kommun-c"), BO_PSEUDONYM, id="opaque-12-digits"),
    pytest.param(Identity("opaque", "19121212-1212", "kommun-c"), BO_PSEUDONYM, id="opaque-with-dash"),
    pytest.param(Identity("opaque", "121212+1212", "kommun-c"), BO_PSEUDONYM, id="opaque-10-digits-over-100"),
    # an HSA-id rule whose pattern (the operator's own) let a personnummer through
    pytest.param(Identity("hsa_id", "191212121212", "kommun-a"), BO_PSEUDONYM, id="hsa-id-pattern-too-wide"),
    # an account named by the personnummer: the number replaced where it stands, as in a detail
    pytest.param(Identity("opaque", "191212121212@kommun.se", "kommun-c"), BO_PSEUDONYM + "@kommun.se",
                 id="opaque-holding-12-digits"),
    pytest.param(Identity("opaque", "u19121212-1212", "kommun-c"), "u" + BO_PSEUDONYM, id="opaque-holding-dashed"),
    pytest.param(Identity("opaque", "anna.demosson", "kommun-c"), "anna.demosson", id="account-name-in-clear"),
    pytest.param(Identity("opaque", "191212121213@kommun.se", "kommun-c"), "191212121213@kommun.se",
                 id="holding-a-wrong-check-digit-in-clear"),
    pytest.param(Identity("opaque", "191212121213", "kommun-c"), "191212121213", id="wrong-check-digit-in-clear"),
    pytest.param(ANNA, "SE2120001009-anna", id="hsa-id-in-clear"),
])
def test_an_identifier_that_is_a_personnummer_is_recorded_as_its_pseudonym(
        tmp_path: Path, identity: Identity, user: str) -> None:
    """REFERENCE.md, Logging law and privacy: a personnummer appears in the trail only as its keyed pseudonym,
    whichever identity rule read it; `query --personnummer-stdin` finds it there (and --user refuses one)."""
    path = tmp_path / "audit"
    trail = _trail(path)
    trail.record(AuditEvent("assertion_issued", "success", "C", identity=identity, sp="https://sp.example"))
    trail.sync()
    (line,) = _lines(path)
    assert (line["user"], line["user_kind"], line["municipality"]) == (user, identity.kind,
                                                                       identity.municipality_id)
    if BO_PSEUDONYM in user:
        assert "1212-1212" not in "".join(p.read_text() for p in path.glob("*.jsonl"))
        assert "1212121212" not in "".join(p.read_text() for p in path.glob("*.jsonl"))


@pytest.mark.parametrize(
    ("mode", "address", "expected"),
    [
        pytest.param("clear", "192.0.2.7", "192.0.2.7", id="clear"),
        pytest.param("truncated", "192.0.2.7", "192.0.2.0/24", id="truncated-v4"),
        pytest.param("truncated", "2001:db8:1:2::7", "2001:db8:1::/48", id="truncated-v6"),
        pytest.param("truncated", "not-an-ip", "invalid", id="truncated-invalid"),
        # a dual-stack listener ([::]) shows an IPv4 user as ::ffff:192.0.2.7 (RFC 4291 §2.5.5.2): its /48 was
        # "::/48", every IPv4 user's address the same and where they came from lost
        pytest.param("truncated", "::ffff:192.0.2.7", "192.0.2.0/24", id="truncated-v4-mapped"),
        pytest.param("clear", "::ffff:192.0.2.7", "192.0.2.7", id="clear-v4-mapped"),
    ],
)
def test_client_address_modes(mode: str, address: str, expected: str) -> None:
    assert render_client_address(address, mode, Pseudonymiser(KEY)) == expected  # type: ignore[arg-type]


def test_pseudonymised_client_address_is_keyed() -> None:
    a = render_client_address("192.0.2.7", "pseudonymised", Pseudonymiser(KEY))
    b = render_client_address("192.0.2.7", "pseudonymised", Pseudonymiser(b"x" * 32))
    assert a is not None
    assert a.startswith("ip:")
    assert "192.0.2.7" not in a
    assert a != b


def test_an_ipv4_user_has_one_pseudonym_whichever_listener_saw_them() -> None:
    """Through a dual-stack listener the same IPv4 user arrives as ::ffff:192.0.2.7: a second pseudonym, under
    which a reviewer looking for the first found none of that user's events."""
    pseudonymiser = Pseudonymiser(KEY)
    assert render_client_address("::ffff:192.0.2.7", "pseudonymised", pseudonymiser) == \
        render_client_address("192.0.2.7", "pseudonymised", pseudonymiser)


def test_correlation_ids_are_readable_and_distinct() -> None:
    ids = {new_correlation_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 19 and i.count("-") == 3 for i in ids)


def test_unwritable_directory_fails_closed(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the audit directory should be")
    trail = AuditTrail(_writer(blocker / "audit"), FixedClock(T0), pseudonym_key=KEY, instance_id="i1")
    with pytest.raises(AuditUnavailable) as caught:
        trail.record(AuditEvent("login_started", "info", "C"))
    assert caught.value.reason == "audit_unavailable"


def test_concurrent_writers_keep_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit"
    trail = _trail(path)

    def write(n: int) -> None:
        for i in range(200):
            trail.record(AuditEvent("login_started", "info", f"C{n}-{i}", detail="x" * 300))
            trail.sync()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _lines(path)
    assert len(lines) == 800
    assert len({line["correlation_id"] for line in lines}) == 800


def test_a_failed_sync_leaves_nothing_pending_for_the_next_request_on_the_thread(tmp_path: Path) -> None:
    """A request whose records were in a file removed before they were synced fails closed; the next request on
    the same worker thread records nothing, and its sync failed too, for the first request's records."""
    clock = FixedClock(T0)
    writer = make_writer(tmp_path, clock, Ed25519PrivateKey.generate())
    worker = make_trail(writer, clock)
    worker.record(login_event(1))
    for path in tmp_path.glob("*.000001.jsonl"):
        path.unlink()  # a clean-up job
    with pytest.raises(AuditUnavailable, match=r"\.000001\.jsonl was removed or replaced while open"):
        worker.sync()
    write_events(make_trail(writer, clock), 1)  # other threads go on, in a new file
    worker.sync()  # the next request on the first thread, which recorded nothing


def test_a_request_whose_records_were_in_a_lost_file_is_told_which_file(tmp_path: Path) -> None:
    """The writer has moved on to a new file when the second request syncs: the file named is the one its
    records were in, not the new one."""
    clock = FixedClock(T0)
    writer = make_writer(tmp_path, clock, Ed25519PrivateKey.generate())
    first, second = make_trail(writer, clock), make_trail(writer, clock)
    first.record(login_event(1))
    second.record(login_event(2))
    (lost,) = tmp_path.glob("*.000001.jsonl")
    lost.unlink()
    with pytest.raises(AuditUnavailable):
        first.sync()
    write_events(make_trail(writer, clock), 1)  # the chain goes on in file 2
    with pytest.raises(AuditUnavailable) as raised:
        second.sync()
    assert raised.value.detail == f"the records of this request were in {lost}, which was lost before they were synced"
