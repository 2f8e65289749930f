"""``broker serve`` gives each request ``server.request_timeout`` to arrive (broker/slow_clients.py): clients that
send their request a byte at a time ("slowloris") are disconnected instead of holding every worker thread, while
normal clients, kept-alive connections and request bodies are served as before."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from gunicorn.http.errors import LimitRequestLine

from broker.slow_clients import _error_answer
from tests.factories.serve import BrokerServe, serving_from_config
from tests.flows.conftest import audit_lines

TIMEOUT = 2.0


@pytest.fixture
def serve(config_dir: Path, tmp_path: Path, redis_url: str, redis_prefix: str) -> BrokerServe:
    return serving_from_config(config_dir, tmp_path / "serve", redis_url=redis_url, redis_prefix=redis_prefix,
                               server={"workers": 1, "threads": 2, "request_timeout": f"{TIMEOUT:g}s"})


def _slow_client(port: int, closed: list[float], stop: threading.Event) -> None:
    """Sends a request head one byte every 0.3 s; records when the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for byte in head:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.3)
            try:
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        closed.append(time.monotonic())


def test_slow_clients_are_cut_off_and_the_others_served(serve: BrokerServe) -> None:
    with serve:
        assert "Using worker: broker.slow_clients.DeadlineThreadWorker" in serve.log()
        closed: list[float] = []
        stop = threading.Event()
        slow = [threading.Thread(target=_slow_client, args=(serve.port, closed, stop), daemon=True)
                for _ in range(3)]  # more than the worker's two threads
        started = time.monotonic()
        for thread in slow:
            thread.start()
        try:
            time.sleep(0.5)  # the slow clients hold both threads now
            answered = requests.get(serve.url + "/healthz", timeout=15)
            waited = time.monotonic() - started
            assert answered.status_code == 200
            assert waited < 3 * TIMEOUT + 2  # before: no answer while the slow clients kept sending (40 s measured)
            for thread in slow:
                thread.join(timeout=4 * TIMEOUT)
            assert len(closed) == 3  # each was disconnected ...
            assert all(at - started >= TIMEOUT - 0.5 for at in closed)  # ... after its deadline, not before
        finally:
            stop.set()
        log = serve.log()
        assert f"did not send its request within {TIMEOUT:.0f} s; connection closed" in log
        assert "Traceback" not in log


def test_normal_requests_keep_alive_and_bodies_are_unaffected(serve: BrokerServe) -> None:
    with serve, requests.Session() as session:
        for _ in range(3):  # one kept-alive connection, each request its own deadline
            assert session.get(serve.url + "/healthz", timeout=10).status_code == 200
            time.sleep(TIMEOUT / 2)
        # a POST body is read under the deadline too: a form of 200 kB arrives whole (the answer is the
        # broker's refusal of a malformed SAML message, not a cut connection)
        refused = session.post(serve.url + "/saml/idp/sso", data={"SAMLRequest": "x" * 200_000}, timeout=10)
        assert refused.status_code == 400
        assert refused.headers["X-Broker-Reason"].startswith("saml_request")


def test_connections_that_send_nothing_hold_no_thread_and_are_closed_after_the_deadline(serve: BrokerServe) -> None:
    # gunicorn 27 gave a new connection a thread at once, which waited 5 s for its first byte: ten silent
    # connections held both threads for ~25 s per request behind them (measured: 24.8 s each)
    with serve:
        silent = [socket.create_connection(("127.0.0.1", serve.port), timeout=30) for _ in range(10)]
        try:
            time.sleep(0.3)
            for _ in range(3):
                started = time.monotonic()
                assert requests.get(serve.url + "/healthz", timeout=15).status_code == 200
                assert time.monotonic() - started < 1.0
            # each silent connection is closed once it has been silent for request_timeout
            for sock in silent:
                sock.settimeout(TIMEOUT + 3)
                assert sock.recv(1) == b""
        finally:
            for sock in silent:
                sock.close()
        assert "Traceback" not in serve.log()


def test_a_connection_that_sends_after_a_pause_is_served(serve: BrokerServe) -> None:
    with serve, socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
        time.sleep(TIMEOUT / 2)  # silent, but less than request_timeout
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")


# --- what gunicorn refuses before the app sees a request: the broker's page, not gunicorn's -------------------


def _raw(port: int, data: bytes) -> tuple[list[bytes], bytes]:
    """Send ``data`` as is; the answer's status line and headers, and its body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


@pytest.mark.parametrize(("request_bytes", "status", "reason"), [
    pytest.param(b"GET /saml/idp/sso?SAMLRequest=" + b"a" * 8300 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                 "request_uri_too_long", id="request-line-over-8190-bytes"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431,
                 "request_headers_too_large", id="header-field-over-the-limit"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: a\r\n" % i for i in range(101)) + b"\r\n", 431,
                 "request_headers_too_large", id="over-100-header-fields"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n<script>alert(1)</script>: a\r\n\r\n", 400,
                 "request_malformed", id="header-name-with-markup"),
    pytest.param(b"G<script>T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request_malformed", id="invalid-method"),
    # gunicorn's InvalidRequestLine carries the raw line as its ``req``: no answer at all was sent
    pytest.param(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request_malformed", id="asterisk-target"),
    pytest.param(b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request_malformed", id="control-character-in-target"),
    # request smuggling's classic (RFC 9112 §6.3: a sender must not send both)
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 400, "request_malformed", id="content-length-and-chunked"),
])
def test_requests_gunicorn_refuses_get_the_brokers_page(serve: BrokerServe, request_bytes: bytes, status: int,
                                                        reason: str) -> None:
    with serve:
        head, body = _raw(serve.port, request_bytes)
        log = serve.log()
    assert head[0].startswith(b"HTTP/1.1 %d " % status)
    headers = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip() for line in head[1:]}
    assert headers[b"x-broker-reason"] == reason.encode()
    assert headers[b"connection"] == b"close"
    assert int(headers[b"content-length"]) == len(body)
    for name in (b"content-security-policy", b"x-content-type-options", b"x-frame-options", b"cache-control"):
        assert name in headers
    reference = re.search(rb"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", body)
    assert reference is not None
    assert b"<script>" not in body
    # the operator finds the refusal by the reference ID the user quotes
    assert f"[{reference.group(0).decode()}] invalid request from ip=127.0.0.1" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"GET /saml/idp/sso?SAMLRequest=fZJBT8MwDIX%2F&RelayState=/patient/191212121212\x7f HTTP/1.1\r\n"
                 b"Host: x\r\n\r\n", id="control-character"),
    # some clients send a query's non-ASCII characters unencoded
    pytest.param("GET /saml/idp/sso?SAMLRequest=fZJBT8MwDIX%2F&RelayState=/patient/191212121212/v\u00e5rd HTTP/1.1"
                 "\r\nHost: x\r\n\r\n".encode(), id="unencoded-utf-8"),
    pytest.param(b"GET /saml/idp/sso?RelayState=it's/191212121212\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
                 id="quote-in-the-query"),
])
def test_a_refused_request_line_is_logged_without_its_query_string(serve: BrokerServe, request_bytes: bytes) -> None:
    """docs/deployment.md, Logs: the SAML messages, their signatures and RelayState (an SP's deep link, which may
    name a patient) stay out of the log. gunicorn's refusal of a request target names the whole target, query
    string included; the warning line names its path."""
    with serve:
        head, _ = _raw(serve.port, request_bytes)
        log = serve.log()
    assert head[0].startswith(b"HTTP/1.1 400 ")
    assert "invalid request from ip=127.0.0.1" in log
    assert "/saml/idp/sso" in log
    assert "191212121212" not in log
    assert "SAMLRequest" not in log
    assert "RelayState" not in log


@pytest.mark.parametrize(("request_bytes", "reason", "rule"), [
    pytest.param(b"GET /saml/idp/sso?SAMLRequest=" + b"a" * 8300 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 "request_uri_too_long", "GET /saml/idp/sso", id="authnrequest-past-the-request-line"),
    pytest.param(b"GET /saml/idp/sso?SAMLRequest=\xff HTTP/1.1\r\nHost: x\r\n\r\n", "request_malformed",
                 "GET /saml/idp/sso", id="query-octet-not-ascii"),
    pytest.param(b"POST /saml/sp/acs HTTP/1.1\r\nHost: x\r\n<script>: a\r\nContent-Length: 0\r\n\r\n",
                 "request_malformed", "POST /saml/sp/acs", id="header-name-with-markup-at-the-acs"),
    pytest.param(b"GET /saml/idp/login/abc HTTP/1.1\r\nHost: x\r\n"
                 + b"".join(b"X-H%d: a\r\n" % i for i in range(101)) + b"\r\n",
                 "request_headers_too_large", "GET /saml/idp/login/<login_id>", id="over-100-headers-at-resume"),
])
def test_a_login_request_gunicorn_refuses_is_audited_under_the_pages_reference(
        serve: BrokerServe, config_dir: Path, request_bytes: bytes, reason: str, rule: str) -> None:
    """The reference on the page leads support to the refusal in the audit trail, as it does for the app's own
    refusals at a login endpoint (test_web_hardening); gunicorn's were only in the log."""
    with serve:
        _head, body = _raw(serve.port, request_bytes)
    reference = re.search(rb"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", body)
    assert reference is not None
    refused, = [e for e in audit_lines(config_dir) if e.get("correlation_id") == reference.group(0).decode()]
    assert (refused["event"], refused["reason"]) == ("login_refused", reason)
    assert str(refused["detail"]).startswith(f"{rule}: ")
    assert refused["client"] == "127.0.0.1"
    assert "aaaaaaaa" not in str(refused["detail"])
    assert "SAMLRequest" not in str(refused["detail"])  # the refused query stays out of the trail


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"GET /?q=" + b"a" * 8300 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="landing-page"),
    pytest.param(b"GET /saml/idp/sso" + b"a" * 8300 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="path-past-the-capture"),
    pytest.param(b"GET /saml/idp/sso\xff HTTP/1.1\r\nHost: x\r\n\r\n", id="path-octet-not-ascii"),
    pytest.param(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", id="asterisk-target"),
])
def test_a_request_gunicorn_refuses_elsewhere_is_not_audited(serve: BrokerServe, config_dir: Path,
                                                            request_bytes: bytes) -> None:
    with serve:
        head, _body = _raw(serve.port, request_bytes)
    assert head[0].startswith(b"HTTP/1.1 4")
    assert [e for e in audit_lines(config_dir) if e["event"] == "login_refused"] == []


def test_an_unparseable_request_line_does_not_kill_a_sync_worker(config_dir: Path, tmp_path: Path, redis_url: str,
                                                                 redis_prefix: str) -> None:
    """With ``threads: 1`` (gunicorn's sync worker) the refusal of a request line such as ``GET *`` raised in
    the error handler and killed the worker: every such request cost a worker restart."""
    serve = serving_from_config(config_dir, tmp_path / "serve", redis_url=redis_url, redis_prefix=redis_prefix,
                                server={"workers": 1, "threads": 1})
    with serve:
        for _ in range(3):
            head, _ = _raw(serve.port, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head[0].startswith(b"HTTP/1.1 400 ")
        log = serve.log()
    assert "Exception in worker process" not in log
    assert "Traceback" not in log


def test_a_certificate_header_past_its_limit_is_the_apps_refusal(config_dir: Path, tmp_path: Path, redis_url: str,
                                                                 redis_prefix: str) -> None:
    """A trusted proxy's certificate header one byte over client_certificate.proxy.max_bytes is refused by the
    app as proxy_header_too_large (audited), not by gunicorn's field limit as a header too large for a browser
    ("clear your cookies")."""
    limit = 16384

    def trust_loopback(data: dict[str, Any]) -> None:
        data["client_certificate"]["proxy"].update(trusted_networks=["127.0.0.1/32"], max_bytes=limit)

    serve = serving_from_config(config_dir, tmp_path / "serve", redis_url=redis_url, redis_prefix=redis_prefix,
                                server={"workers": 1, "threads": 2}, edit=trust_loopback)
    with serve:
        head, _ = _raw(serve.port, b"GET /diagnose HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-SSL-Client-Cert: "
                       + b"a" * (limit + 1) + b"\r\n\r\n")
    headers = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip() for line in head[1:]}
    assert head[0].startswith(b"HTTP/1.1 400 ")
    assert headers[b"x-broker-reason"] == b"proxy_header_too_large"


def test_a_refused_request_gunicorn_parsed_keeps_its_access_line(serve: BrokerServe) -> None:
    # Content-Length beside chunked: gunicorn parsed the request line and refuses the headers; the access line
    # names it (with the page's reference ID), as gunicorn's own handler did
    with serve:
        _head, body = _raw(serve.port, b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        time.sleep(0.3)
        log = serve.log()
    reference = re.search(rb"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", body)
    assert reference is not None
    line = re.search(rf'"POST /smuggle HTTP/1.1" 400 (\d+) [0-9.]+ms {reference.group(0).decode()} ', log)
    assert line is not None, log[-1500:]
    # the bytes of the page, as every access line counts them (it said 0)
    assert int(line.group(1)) == len(body)


def test_refusals_are_no_latency_samples_of_the_index_page(app: Flask) -> None:
    metrics = app.extensions["broker_runtime"].metrics

    def samples() -> float:
        return sum(sample.value for family in metrics.latency.collect() for sample in family.samples
                   if sample.name.endswith("_count") and sample.labels.get("endpoint") == "ops.index")

    before = samples()
    for _ in range(3):
        _error_answer(app, "request_uri_too_long", None, LimitRequestLine(9000, 8190), "192.0.2.1")
    assert samples() == before


def test_a_silent_connection_does_not_hold_a_graceful_stop(config_dir: Path, tmp_path: Path, redis_url: str,
                                                           redis_prefix: str) -> None:
    # it has no request to finish: a stopping worker closes it at once, instead of after request_timeout (which
    # is 20 s by default, past docker stop's 10 s: the worker would be killed before sealing the audit chain).
    # A long request_timeout here, so that the stop's own time on a busy machine is far from it
    serve = serving_from_config(config_dir, tmp_path / "serve", redis_url=redis_url, redis_prefix=redis_prefix,
                                server={"workers": 1, "threads": 2, "request_timeout": "20s"})
    serve.start()
    try:
        with socket.create_connection(("127.0.0.1", serve.port), timeout=60):
            time.sleep(0.5)
            started = time.monotonic()
            assert serve.process is not None
            serve.process.send_signal(signal.SIGTERM)
            serve.process.wait(timeout=60)
            took = time.monotonic() - started
    finally:
        if serve.process is not None and serve.process.poll() is None:
            serve.stop()
    assert took < 10
