"""broker.access_log: one short line per request, no SAML message in it, nothing a client can forge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from broker.access_log import AccessLog, access_line
from broker.web.services import CORRELATION_ENVIRON

WHEN = "[27/Nov/2026:10:00:00 +0000]"
TOOK = dt.timedelta(microseconds=3140)
SAML_QUERY = "SAMLRequest=fZJNb9swDIb%2FiqF7Yst2YkeIA2TNBgTo1qIpdtiloGUmESpLnih327%2BfnCZAd9lV4sv3eUmtCX"


def environ(**extra: Any) -> dict[str, Any]:
    base = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
            "RAW_URI": f"/saml/idp/sso?{SAML_QUERY}&RelayState=secret-state&SigAlg=x&Signature=y",
            "PATH_INFO": "/saml/idp/sso", "QUERY_STRING": SAML_QUERY, "HTTP_USER_AGENT": "curl/8.5.0",
            CORRELATION_ENVIRON: "3F9A-C21B-77D0-1E2F"}
    base.update(extra)
    return base


def test_a_login_line_has_the_path_and_the_correlation_id_but_no_saml_message() -> None:
    line = access_line(environ(), "200 OK", 5821, TOOK, WHEN)
    assert line == ('127.0.0.1 - [27/Nov/2026:10:00:00 +0000] "GET /saml/idp/sso HTTP/1.1" 200 5821 3.1ms '
                    '3F9A-C21B-77D0-1E2F "curl/8.5.0"')


@pytest.mark.parametrize(("extra", "status", "sent", "expected"), [
    pytest.param({CORRELATION_ENVIRON: None, "RAW_URI": "/healthz", "HTTP_USER_AGENT": None}, 200, 2,
                 '127.0.0.1 - [27/Nov/2026:10:00:00 +0000] "GET /healthz HTTP/1.1" 200 2 3.1ms - "-"',
                 id="no-correlation-id-no-agent"),
    pytest.param({"REQUEST_METHOD": "POST", "RAW_URI": "/saml/sp/acs"}, "403 FORBIDDEN", None,
                 '127.0.0.1 - [27/Nov/2026:10:00:00 +0000] "POST /saml/sp/acs HTTP/1.1" 403 - 3.1ms '
                 '3F9A-C21B-77D0-1E2F "curl/8.5.0"', id="post-nothing-sent"),
    pytest.param({"RAW_URI": "/saml/idp/resume%3Fx?login_id=L-1"}, "302 FOUND", 0,
                 '127.0.0.1 - [27/Nov/2026:10:00:00 +0000] "GET /saml/idp/resume%3Fx HTTP/1.1" 302 0 3.1ms '
                 '3F9A-C21B-77D0-1E2F "curl/8.5.0"', id="path-kept-percent-encoded"),
    pytest.param({"RAW_URI": None}, "200 OK", 1,
                 '127.0.0.1 - [27/Nov/2026:10:00:00 +0000] "GET /saml/idp/sso HTTP/1.1" 200 1 3.1ms '
                 '3F9A-C21B-77D0-1E2F "curl/8.5.0"', id="path-info-without-raw-uri"),
])
def test_lines(extra: dict[str, Any], status: str | int, sent: int | None, expected: str) -> None:
    assert access_line(environ(**extra), status, sent, TOOK, WHEN) == expected


@pytest.mark.parametrize(("extra", "absent", "present"), [
    pytest.param({"HTTP_USER_AGENT": 'x" 200 1 0.0ms FORGED "y\n127.0.0.9 - [forged]'}, '" 200 1 0.0ms FORGED "',
                 '\\" 200 1 0.0ms FORGED \\"y\\n127.0.0.9', id="agent-with-quotes-and-newline"),
    pytest.param({"RAW_URI": '/x"\r\n/y\\?q=1'}, "\r", '"GET /x\\"\\r\\n/y\\\\ HTTP/1.1"', id="path-with-crlf"),
    pytest.param({"HTTP_USER_AGENT": "Mozilla \u00e5\u00e4\u00f6 \x1b[31m"}, "\x1b",
                 "Mozilla \\u00e5\\u00e4\\u00f6 \\u001b[31m", id="agent-non-ascii-and-escape-sequence"),
    pytest.param({"REQUEST_METHOD": 'GE"T'}, 'GE"T', '"GE\\"T /saml/idp/sso', id="method"),
])
def test_client_chosen_values_cannot_forge_or_break_a_line(extra: dict[str, Any], absent: str,
                                                           present: str) -> None:
    line = access_line(environ(**extra), "200 OK", 1, TOOK, WHEN)
    assert absent not in line
    assert present in line
    assert line.isascii()
    assert line.isprintable()  # no newline, no control character


@pytest.fixture
def made() -> Iterator[list[AccessLog]]:
    """The loggers a test makes; their file handlers are closed afterwards (gunicorn's loggers are global)."""
    loggers: list[AccessLog] = []
    yield loggers
    for logger in loggers:
        for log in (logger.error_log, logger.access_log):
            for handler in list(log.handlers):
                handler.close()
                log.removeHandler(handler)


def gunicorn_logger(made: list[AccessLog], tmp_path: Path, *, access: bool = True) -> tuple[AccessLog, Path]:
    cfg = Config()
    log_file = tmp_path / "access.log"
    if access:
        cfg.set("accesslog", str(log_file))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    logger = AccessLog(cfg)
    made.append(logger)
    return logger, log_file


def test_gunicorn_writes_the_line(made: list[AccessLog], tmp_path: Path) -> None:
    logger, log_file = gunicorn_logger(made, tmp_path)
    logger.access(SimpleNamespace(status="200 OK", sent=5821), None, environ(), TOOK)
    written = log_file.read_text().splitlines()
    assert len(written) == 1
    assert written[0].startswith("127.0.0.1 - [")
    assert written[0].endswith('"GET /saml/idp/sso HTTP/1.1" 200 5821 3.1ms 3F9A-C21B-77D0-1E2F "curl/8.5.0"')
    assert "SAMLRequest" not in log_file.read_text()


def test_a_line_that_cannot_be_made_goes_to_the_error_log_and_the_request_is_not_failed(
        made: list[AccessLog], tmp_path: Path) -> None:
    logger, log_file = gunicorn_logger(made, tmp_path)
    logger.access(SimpleNamespace(), None, environ(), TOOK)  # no status: a broken response object
    assert log_file.read_text() == ""
    assert "AttributeError" in (tmp_path / "error.log").read_text()


def test_no_access_log_configured_writes_nothing(made: list[AccessLog], tmp_path: Path) -> None:
    logger, _ = gunicorn_logger(made, tmp_path, access=False)
    logger.access(SimpleNamespace(status="200 OK", sent=1), None, environ(), TOOK)
    assert list(tmp_path.iterdir()) == [tmp_path / "error.log"]
    assert "GET" not in (tmp_path / "error.log").read_text()
