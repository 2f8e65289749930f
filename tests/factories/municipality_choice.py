"""A browser without a client certificate at the demo SP, which accepts certificate municipalities (Kommun A
and B) and one that logs in with its own IdP (Kommun C): the broker asks which municipality (the discovery
page), and choosing a certificate municipality there without a card ends at ``certificate_missing``."""

from __future__ import annotations

from html.parser import HTMLParser

from werkzeug.test import TestResponse

from tests.factories.idp import discovery_form
from tests.factories.saml import Browser

CERTIFICATE_MUNICIPALITY = "kommun-a"  # login: certificate in config/example


class _Choices(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("type") == "radio" and a.get("name") == "municipality":
            self.values.append(a.get("value") or "")


def offered(page: TestResponse) -> list[str]:
    """The municipality ids a discovery page offers to choose from."""
    parser = _Choices()
    parser.feed(page.get_data(as_text=True))
    return parser.values


def is_discovery_page(response: TestResponse) -> bool:
    """The broker asks the user to choose a municipality (nothing refused, nothing answered yet)."""
    return response.status_code == 200 and "X-Broker-Reason" not in response.headers and bool(offered(response))


def choose(browser: Browser, page: TestResponse, municipality: str = CERTIFICATE_MUNICIPALITY) -> TestResponse:
    """Choose ``municipality`` on the discovery page ``page``; the broker's answer to the choice."""
    assert is_discovery_page(page), (page.status_code, page.headers.get("X-Broker-Reason"))
    assert municipality in offered(page), offered(page)
    return browser.post("/discovery", {**discovery_form(page), "municipality": municipality})
