"""`broker readiness` end to end: the command (exit codes, --json, --html, --municipality, --endpoint,
--offline, the audit record), the CA-list check against real TLS servers on loopback, and synthetic logins
through the in-process demo server (pyOpenSSL, client certificates requested, /diagnose as JSON).

Nothing is mocked: the configuration is the generated example (tests/conftest.py ``config_dir``), TLS
endpoints are real servers on 127.0.0.1 (tests/factories/tls_servers.py), the demo is
``broker.demo.server.build_server`` on a free port with its revocation server on the next one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from broker.cli import main
from broker.clock import FixedClock, SystemClock
from broker.config.loader import load_settings
from broker.demo.materials import DemoLayout
from broker.demo.server import build_server
from broker.readiness.runner import ReadinessOptions, run
from broker.readiness.synthetic import synthetic_login
from tests.conftest import EXAMPLE
from tests.factories.loopback_peer import LoopbackPeer
from tests.factories.metadata import closed_port_https_url
from tests.factories.ports import free_port
from tests.factories.tls_servers import ServerIdentity, TlsEndpoint
from tests.flows.conftest import audit_lines
from tests.unit.readiness.configs import edit_municipality, now_utc, only, section, set_readiness, statuses

NOW = now_utc()


@pytest.fixture(autouse=True)
def no_redis_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command pings REDIS_URL when it is set; the example configures no Redis. Tests set it explicitly."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def readiness_cli(config_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["readiness", "--config", str(config_dir), *args])


def readiness_runs(config_dir: Path) -> list[dict[str, object]]:
    return [r for r in audit_lines(config_dir) if r["event"] == "readiness_run"]


def report_of(result: Result) -> dict[str, object]:
    return json.loads(result.stdout)


def municipality_checks(report: dict[str, object], mid: str) -> list[dict[str, object]]:
    (found,) = [m for m in report["municipalities"] if m["id"] == mid]  # type: ignore[union-attr,index]
    return found["checks"]  # type: ignore[no-any-return]


def check_statuses(report: dict[str, object], mid: str, check_id: str) -> list[object]:
    return [c["status"] for c in municipality_checks(report, mid) if c["id"] == check_id]


# --- the command --------------------------------------------------------------------------------------------


def test_the_audit_record_says_at_which_instant_expiries_were_judged(config_dir: Path) -> None:
    set_readiness(config_dir)

    readiness_cli(config_dir, "--municipality", "kommun-a", "--offline")
    readiness_cli(config_dir, "--municipality", "kommun-a", "--offline", "--at", "2030-01-02")

    today, go_live = readiness_runs(config_dir)
    assert "at" not in today["data"]  # type: ignore[operator]
    assert go_live["data"]["at"] == "2030-01-02T00:00:00+00:00"  # type: ignore[index]


def test_exit_0_when_nothing_fails_and_the_run_is_audited(config_dir: Path) -> None:
    set_readiness(config_dir)

    result = readiness_cli(config_dir, "--municipality", "kommun-a", "--offline")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Readiness ")
    assert "(production)" in out.splitlines()[0]
    assert "WARN  Municipality A (kommun-a, active, login: certificate)" in out
    assert "  PASS  sample certificate accepted: Anna Demosson: hsa_id SE2120001009-anna" in out
    assert "  WARN  advertised CA list not checked" in out
    assert "        fix: Name the URL where users log in" in out
    assert "\x1b[" not in out
    assert "Municipality B" not in out
    (record,) = readiness_runs(config_dir)
    assert record["outcome"] == "success"
    data = record["data"]
    assert data["municipalities"] == ["kommun-a"]  # type: ignore[index]
    assert data["fail"] == 0  # type: ignore[index]
    assert data["warn"] >= 1  # type: ignore[index,operator]
    assert data["endpoints"] == []  # type: ignore[index]
    assert record["detail"] == f"0 failed, {data['warn']} warnings"  # type: ignore[index]


def test_exit_1_when_something_fails_and_the_failure_is_audited(config_dir: Path) -> None:
    set_readiness(config_dir)
    url = closed_port_https_url().rstrip("/")

    result = readiness_cli(config_dir, "--municipality", "kommun-a", "--endpoint", url)

    assert result.exit_code == 1, result.output
    assert f"FAIL  endpoint {url}" in result.stdout
    assert "  FAIL  endpoint not reachable" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAIL  ")
    (record,) = readiness_runs(config_dir)
    assert record["outcome"] == "failure"
    assert record["data"]["fail"] == 2  # type: ignore[index]  # the handshake, and kommun-a's advertises
    assert record["data"]["endpoints"] == [url]  # type: ignore[index]


def test_exit_2_for_an_unknown_municipality(config_dir: Path) -> None:
    result = readiness_cli(config_dir, "--municipality", "kommun-x", "--offline")

    assert result.exit_code == 2
    assert "no municipality kommun-x" in result.stderr
    assert "kommun-a, kommun-b, kommun-c" in result.stderr
    assert result.stdout == ""
    assert readiness_runs(config_dir) == []



@pytest.mark.parametrize("content", [pytest.param(b"not a certificate\n", id="not-pem"),
                                     pytest.param(b"", id="empty")])
@pytest.mark.parametrize("as_json", [pytest.param((), id="text"), pytest.param(("--json",), id="json")])
def test_exit_2_for_a_ca_file_without_certificates(config_dir: Path, tmp_path: Path, content: bytes,
                                                   as_json: tuple[str, ...]) -> None:
    """--ca-file names a file that holds no certificate: unusable input, said as such. It crashed the run with
    a Python traceback (exit 1, read as "something FAILs") once a check used it: here the IdP's SSO endpoint."""
    ca_file = tmp_path / "server-ca.pem"
    ca_file.write_bytes(content)

    result = readiness_cli(config_dir, "--municipality", "kommun-c", "--ca-file", str(ca_file), *as_json)

    assert result.exit_code == 2, result.output
    assert f"--ca-file {ca_file}: no PEM certificate" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert readiness_runs(config_dir) == []


def test_exit_2_for_an_invalid_configuration(config_dir: Path) -> None:
    (config_dir / "broker.yaml").write_text("idp: [\n", encoding="utf-8")

    result = readiness_cli(config_dir, "--offline")

    assert result.exit_code == 2
    assert "broker config check" in result.stderr


def test_json_report_parses_and_html_dashboard_is_written(config_dir: Path, tmp_path: Path) -> None:
    set_readiness(config_dir)
    html_file = tmp_path / "readiness.html"

    result = readiness_cli(config_dir, "--offline", "--json", "--html", str(html_file))

    assert result.exit_code in (0, 1), result.output
    report = report_of(result)
    assert report["version"] == 1
    assert report["environment"] == "production"
    assert [m["id"] for m in report["municipalities"]] == ["kommun-a", "kommun-b", "kommun-c"]  # type: ignore[union-attr,index]
    assert report["endpoints"] == []
    assert result.exit_code == (1 if report["result"] == "fail" else 0)
    assert check_statuses(report, "kommun-b", "sample.certificate") == ["pass"]
    sample = next(c for c in municipality_checks(report, "kommun-b") if c["id"] == "sample.certificate")
    assert "19121212-****" in sample["evidence"]  # type: ignore[operator]
    page = html_file.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.split("<h2>Endpoints and the broker</h2>")[0].count("<tr>") == 1 + 3
    assert "<script" not in page
    assert "dashboard written to" not in result.stdout  # the JSON stays parseable


def test_html_dashboard_with_the_text_report(config_dir: Path, tmp_path: Path) -> None:
    set_readiness(config_dir)
    html_file = tmp_path / "out.html"

    result = readiness_cli(config_dir, "--offline", "--municipality", "kommun-c", "--html", str(html_file))

    assert f"dashboard written to {html_file}" in result.stdout
    assert "Municipality C" in html_file.read_text(encoding="utf-8")


def test_session_store_down_fails_the_run(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_readiness(config_dir)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")

    result = readiness_cli(config_dir, "--municipality", "kommun-a", "--json")

    assert result.exit_code == 1
    broker = report_of(result)["broker"]
    assert [c["status"] for c in broker["checks"] if c["id"] == "broker.session_store"] == ["fail"]  # type: ignore[index]


def test_session_store_answering_passes(config_dir: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    set_readiness(config_dir)
    monkeypatch.setenv("REDIS_URL", redis_url)

    result = readiness_cli(config_dir, "--municipality", "kommun-a", "--json")

    broker = report_of(result)["broker"]
    assert [c["status"] for c in broker["checks"] if c["id"] == "broker.session_store"] == ["pass"]  # type: ignore[index]


def test_offline_does_not_ping_the_session_store(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_readiness(config_dir)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")

    result = readiness_cli(config_dir, "--municipality", "kommun-a", "--json", "--offline")

    broker = report_of(result)["broker"]
    assert [c["id"] for c in broker["checks"]] == ["broker.idp_signing", "broker.sp_signing",  # type: ignore[index]
                                                  "broker.sp_decryption", "broker.sp_metadata",
                                                  "broker.sp_endpoints", "broker.secret_permissions",
                                                  "broker.session_cookie"]


# --- the CA list a real TLS endpoint advertises, through the command ----------------------------------------------


@pytest.fixture(scope="module")
def identity() -> ServerIdentity:
    return ServerIdentity.generate(NOW)


def configured_cas(config_dir: Path, mid: str) -> list[x509.Certificate]:
    cl = load_settings(config_dir).municipalities[mid].config.certificate
    assert cl is not None
    return [*cl.anchors(), *cl.intermediate_certificates()]


@pytest.mark.parametrize(("setup", "advertises", "endpoint_checks", "exit_code"), [
    ("advertised", "pass", [("endpoint.handshake", "pass"), ("endpoint.server_certificate", "pass"),
                            ("endpoint.server_chain", "pass"), ("endpoint.ca_list", "pass")], 0),
    ("missing", "fail", [("endpoint.handshake", "pass"), ("endpoint.server_certificate", "pass"),
                         ("endpoint.server_chain", "pass"), ("endpoint.ca_list", "pass")], 1),
    ("empty", "warn", [("endpoint.handshake", "pass"), ("endpoint.server_certificate", "pass"),
                       ("endpoint.server_chain", "pass"), ("endpoint.ca_list_empty", "warn")], 0),
])
def test_ca_list_of_a_real_tls_endpoint(config_dir: Path, identity: ServerIdentity, setup: str, advertises: str,
                                        endpoint_checks: list[tuple[str, str]], exit_code: int,
                                        tmp_path: Path) -> None:
    """The key requirement: Kommun A's CA advertised, missing (only Kommun B's), an empty list. The login
    page's own CA is given with --ca-file (its chain verifies)."""
    client_cas = {"advertised": configured_cas(config_dir, "kommun-a") + configured_cas(config_dir, "kommun-b"),
                  "missing": configured_cas(config_dir, "kommun-b"), "empty": []}[setup]
    with TlsEndpoint(identity, client_cas=client_cas) as endpoint:
        set_readiness(config_dir, endpoints=[endpoint.url])
        (tmp_path / "ca.pem").write_bytes(identity.ca_pem)
        result = readiness_cli(config_dir, "--municipality", "kommun-a", "--json",
                               "--ca-file", str(tmp_path / "ca.pem"))
        assert len(endpoint.recorded(1)) == 1

    assert result.exit_code == exit_code, result.output
    report = report_of(result)
    (found,) = report["endpoints"]  # type: ignore[misc]
    assert found["id"] == endpoint.url
    assert [(c["id"], c["status"]) for c in found["checks"]] == endpoint_checks
    assert found["advertised"] == [n.rfc4514_string() for n in endpoint.advertised]
    assert found["certificate_requested"] is True
    assert check_statuses(report, "kommun-a", "endpoint.advertises") == [advertises]
    (record,) = readiness_runs(config_dir)
    assert record["data"]["endpoints"] == [endpoint.url]  # type: ignore[index]


@pytest.mark.parametrize(("alpn", "check_id"), [((b"h2", b"http/1.1"), "endpoint.http2_per_path"),
                                                ((b"http/1.1",), "endpoint.certificate_request")],
                         ids=["h2", "http/1.1"])
def test_endpoint_without_a_certificate_request_fails(config_dir: Path, identity: ServerIdentity,
                                                      alpn: tuple[bytes, ...], check_id: str) -> None:
    set_readiness(config_dir)
    with TlsEndpoint(identity, request_certificate=False, alpn=alpn) as endpoint:
        result = readiness_cli(config_dir, "--municipality", "kommun-b", "--endpoint", endpoint.url, "--json")

    assert result.exit_code == 1
    report = report_of(result)
    (found,) = report["endpoints"]  # type: ignore[misc]
    assert (check_id, "fail") in [(c["id"], c["status"]) for c in found["checks"]]
    assert check_statuses(report, "kommun-b", "endpoint.advertises") == ["fail"]


# --- synthetic logins through the demo server ---------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    layout: DemoLayout
    base_url: str

    @property
    def ca_file(self) -> Path:
        return self.layout.tls / "ca.pem"


def _port_pair() -> int:
    """A free port whose successor is free too (the demo's revocation server listens on port + 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    port = _port_pair()
    server, layout, base_url = build_server(tmp_path_factory.mktemp("demo") / "demo", EXAMPLE, "localhost", port,
                                            quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Demo(layout, base_url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def demo_config(demo: Demo, tmp_path: Path) -> Path:
    """A copy of the running demo's configuration (readiness.endpoints: the demo's URL), safe to edit."""
    target = tmp_path / "config"
    shutil.copytree(demo.layout.config, target)
    for f in (target / "audit").glob("*"):
        f.unlink()
    return target


def synthetic(config_dir: Path, mid: str, ca_file: Path | None) -> list[object]:
    settings = load_settings(config_dir)
    report = run(settings, SystemClock(), ReadinessOptions(municipalities=(mid,), login=True, ca_file=ca_file))
    return list(section(report, mid).checks)


def test_synthetic_login_with_the_sample_passes(demo: Demo, demo_config: Path) -> None:
    checks = synthetic(demo_config, "kommun-a", demo.ca_file)

    login = only(checks, "login.synthetic")  # type: ignore[arg-type]
    assert (login.status, login.title, login.subject) == ("pass", "synthetic login accepted", demo.base_url)
    assert "kommun-a, http://id.elegnamnden.se/loa/1.0/loa3" in login.evidence
    assert statuses(checks, "endpoint.advertises") == ["pass"]  # type: ignore[arg-type]


def test_synthetic_login_of_kommun_b_passes_with_its_ocsp_responder(demo: Demo, demo_config: Path) -> None:
    checks = synthetic(demo_config, "kommun-b", demo.ca_file)

    assert statuses(checks, "login.synthetic") == ["pass"]  # type: ignore[arg-type]
    sample = only(checks, "sample.certificate")  # type: ignore[arg-type]
    assert sample.evidence.endswith("revocation crl+ocsp")  # the CA by the root's CRL, Bo by OCSP


def test_synthetic_login_with_another_municipalitys_sample_fails(demo: Demo, demo_config: Path) -> None:
    for suffix in ("pem", "key"):
        shutil.copyfile(demo.layout.users / f"bo.{suffix}", demo_config / "certs" / "kommun-a" / f"other.{suffix}")
    edit_municipality(demo_config, "kommun-a", lambda doc: doc.__setitem__("readiness", {
        "sample_certificate": "certs/kommun-a/other.pem", "sample_key": "certs/kommun-a/other.key"}))

    checks = synthetic(demo_config, "kommun-a", demo.ca_file)

    login = only(checks, "login.synthetic")  # type: ignore[arg-type]
    assert (login.status, login.title) == ("fail", "mapped to another municipality")
    assert "kommun-b" in login.evidence
    assert statuses(checks, "sample.certificate") == ["fail"]  # type: ignore[arg-type]


def test_synthetic_login_with_a_revoked_sample_fails(demo: Demo, demo_config: Path) -> None:
    for suffix in ("pem", "key"):
        shutil.copyfile(demo.layout.users / f"cecilia.{suffix}",
                        demo_config / "certs" / "kommun-a" / f"other.{suffix}")
    edit_municipality(demo_config, "kommun-a", lambda doc: doc.__setitem__("readiness", {
        "sample_certificate": "certs/kommun-a/other.pem", "sample_key": "certs/kommun-a/other.key"}))

    login = only(synthetic(demo_config, "kommun-a", demo.ca_file), "login.synthetic")  # type: ignore[arg-type]

    assert (login.status, login.title) == ("fail", "the broker refused the certificate: revoked")


def test_synthetic_login_without_the_servers_ca_fails(demo: Demo, demo_config: Path) -> None:
    login = only(synthetic(demo_config, "kommun-a", None), "login.synthetic")  # type: ignore[arg-type]

    assert (login.status, login.title) == ("fail", "synthetic login failed")
    assert "CERTIFICATE_VERIFY_FAILED" in login.evidence


def test_synthetic_login_needs_the_sample_key(demo: Demo, demo_config: Path) -> None:
    edit_municipality(demo_config, "kommun-a", lambda doc: doc["readiness"].pop("sample_key"))

    checks = synthetic(demo_config, "kommun-a", demo.ca_file)

    # asked for and not run: said so, not left out without a word
    assert statuses(checks, "login.synthetic") == ["warn"]  # type: ignore[arg-type]
    assert statuses(checks, "sample.certificate") == ["pass"]  # type: ignore[arg-type]


def test_the_demo_is_ready_for_go_live(demo: Demo, demo_config: Path) -> None:
    """`broker readiness --config <demo>/config --ca-file <demo CA> --login` (what `broker demo` suggests):
    every check of every municipality passes against the running demo."""
    result = readiness_cli(demo_config, "--ca-file", str(demo.ca_file), "--login", "--json")

    report = report_of(result)
    not_passed = [(s["id"], c["id"], c["status"], c["evidence"])
                  for s in [report["broker"], *report["endpoints"], *report["municipalities"]]  # type: ignore[list-item]
                  for c in s["checks"] if c["status"] != "pass"]
    assert not_passed == []
    assert result.exit_code == 0
    assert [c["status"] for m in report["municipalities"] for c in m["checks"]  # type: ignore[union-attr]
            if c["id"] == "login.synthetic"] == ["pass", "pass"]
    assert check_statuses(report, "kommun-c", "saml.sso_endpoint") == ["pass"]
    (clock,) = [c for c in report["broker"]["checks"] if c["id"] == "broker.clock"]  # type: ignore[index]
    assert clock["evidence"].startswith("1 server(s) agree within ")  # the demo's revocation server
    (record,) = readiness_runs(demo_config)
    assert record["outcome"] == "success"
    assert record["data"]["endpoints"] == [demo.base_url]  # type: ignore[index]


@pytest.mark.parametrize(("minutes", "status", "title"), [
    pytest.param(0, "pass", "host clock in step", id="in-step"),
    pytest.param(-10, "fail", "host clock wrong", id="ten-minutes-behind"),
    pytest.param(10, "fail", "host clock wrong", id="ten-minutes-ahead"),
])
def test_the_host_clock_is_compared_with_the_servers_readiness_asks(demo: Demo, demo_config: Path, minutes: int,
                                                                    status: str, title: str) -> None:
    """The demo's CRL server answers over HTTP with a ``Date``; a host clock ten minutes off (the clock readiness
    is given) is past every clock skew the example tolerates, and the evidence names the server compared."""
    clock = FixedClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes))

    report = run(load_settings(demo_config), clock, ReadinessOptions(municipalities=("kommun-b",)))

    check = only(list(report.broker.checks), "broker.clock")
    assert (check.status, check.title) == (status, title)
    assert "localhost " in check.evidence  # the demo's revocation server, on the next port
    if minutes:
        direction = "ahead of" if minutes > 0 else "behind"
        assert re.match(f"the host clock is (599|600|601) s {direction} the servers' ", check.evidence)


def test_offline_there_is_no_clock_to_compare(config_dir: Path) -> None:
    report = run(load_settings(config_dir), SystemClock(), ReadinessOptions(municipalities=("kommun-a",),
                                                                            network=False))

    assert [c.id for c in report.broker.checks if c.id == "broker.clock"] == []


def test_a_synthetic_login_runs_at_every_address_of_the_host(demo: Demo) -> None:
    """Two nodes behind the login host name: the demo broker, and one whose TLS server completes the handshake (the
    demo's own server certificate) but reaches no broker. Each is asked; the failing node is named."""
    port = int(demo.base_url.rsplit(":", 1)[1])
    chain = tuple(x509.load_pem_x509_certificates((demo.layout.tls / "server.pem").read_bytes()))
    identity = ServerIdentity(x509.load_pem_x509_certificate(demo.ca_file.read_bytes()), chain,
                              (demo.layout.tls / "server.key").read_bytes())
    sample, key = demo.layout.users / "anna.pem", demo.layout.users / "anna.key"
    with TlsEndpoint(identity, host="127.0.0.2", port=port):
        both = synthetic_login(demo.base_url, "kommun-a", sample, key, timeout=5, ca_file=demo.ca_file,
                               addresses=["127.0.0.1", "127.0.0.2"])
    alone = synthetic_login(demo.base_url, "kommun-a", sample, key, timeout=5, ca_file=demo.ca_file,
                            addresses=["127.0.0.1"])

    assert (both.status, both.title) == ("fail", "synthetic login failed at some addresses")
    assert both.evidence.startswith(f"at 127.0.0.1: {demo.base_url}/saml/idp/diagnose?format=json: kommun-a, ")
    assert f"; at 127.0.0.2: {demo.base_url}/saml/idp/diagnose?format=json: " in both.evidence
    assert (alone.status, alone.title) == ("pass", "synthetic login accepted")


class TricklingNode(LoopbackPeer):
    """A node that completes the TLS handshake at once (the demo's server certificate), reads the request, then
    sends its HTTP answer a byte every 0.05 s: each byte in time for a per-read timeout, the answer never done."""

    def __init__(self, layout: DemoLayout) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(layout.tls / "server.pem", layout.tls / "server.key")
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        with self.context.wrap_socket(conn, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                request += chunk
            body = b'{"certificate": true}' + b" " * 2000
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body:
                if self.stop.is_set():
                    return
                tls.sendall(bytes([byte]))
                time.sleep(0.05)


def test_a_synthetic_login_answered_a_byte_at_a_time_fails_at_the_timeout(demo: Demo) -> None:
    """readiness.timeout bounds the whole exchange, not each read: a node (or a proxy before it) that trickles its
    answer, each byte in time for a per-read timeout, does not hold `broker readiness --login`."""
    sample, key = demo.layout.users / "anna.pem", demo.layout.users / "anna.key"
    node = TricklingNode(demo.layout)
    pool = ThreadPoolExecutor(max_workers=1)  # bounded here too: before, it took minutes
    endpoint = f"https://localhost:{node.port}"
    try:
        started = time.monotonic()
        login = pool.submit(synthetic_login, endpoint, "kommun-a", sample, key, timeout=1.0,
                            ca_file=demo.ca_file).result(timeout=5)
        took = time.monotonic() - started
    finally:
        node.close()
        pool.shutdown()

    assert (login.status, login.title) == ("fail", "synthetic login failed")
    assert login.evidence == f"{endpoint}/saml/idp/diagnose?format=json: no complete answer within 1 s"
    assert took < 1 + 3.0  # the bound and the client's own set-up on a slow machine; unbounded, minutes
