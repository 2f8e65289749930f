"""Whole certificate logins through the Flask app, answered to a real pysaml2 SP."""

from __future__ import annotations

from pathlib import Path

from broker.demo.sp import DemoSp
from tests.factories.saml import Browser, saml_response_form
from tests.flows.conftest import audit_lines


def login(browser: Browser, sp: DemoSp, **kwargs: bool) -> tuple[int, object]:
    response = browser.get(sp.login_url(**kwargs))
    if response.status_code != 200:
        return response.status_code, response.headers.get("X-Broker-Reason")
    _action, fields = saml_response_form(response)
    return 200, sp.accept(fields["SAMLResponse"])


def test_anna_logs_in_with_loa3_and_hsa_id(browser: Browser, sp: DemoSp, config_dir: Path) -> None:
    status, result = login(browser, sp)
    assert status == 200
    assert result.loa == "http://id.elegnamnden.se/loa/1.0/loa3"  # type: ignore[attr-defined]
    assert result.attributes["employeeHsaId"] == ["SE2120001009-anna"]  # type: ignore[attr-defined]
    events = [e["event"] for e in audit_lines(config_dir)]
    assert events == ["login_started", "certificate_presented", "certificate_accepted", "assertion_issued"]
