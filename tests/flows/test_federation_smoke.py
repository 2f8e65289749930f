"""The federated login end to end, the shortest path: Karin of Kommun C at the demo SP."""

from __future__ import annotations

from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from tests.factories.idp import KARIN, federated_login
from tests.factories.saml import Browser, saml_response_form

LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"


def test_karin_logs_in_through_kommun_c_idp(browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    browser.certificate_pem = None
    answer = federated_login(browser, sp, idp, KARIN)
    _, fields = saml_response_form(answer)
    result = sp.accept(fields["SAMLResponse"])
    assert result.loa == LOA3
    assert result.attributes["employeeHsaId"] == ["SE2120003005-K001"]
    assert result.attributes["givenName"] == ["Karin"]
