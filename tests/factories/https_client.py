"""A browser as a plain HTTP client: ``requests`` with one cookie jar, over real TLS (nginx in front of the
broker), presenting a client certificate in the handshake only when a step says so; and readers for the pages
it gets back (the auto-submitting SAMLResponse form, the discovery page, the error page's "try again" link).

The broker's cookies are ``Secure``: the jar sends them over https only, as a browser does, and to every port
of the host, so the front doors of several broker instances on one loopback address share them like the
replicas behind one public name do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.factories.saml import BASE_URL


@dataclass(frozen=True)
class Card:
    """A user's client certificate and key (PEM files), as a TLS client presents them."""

    certificate: Path
    key: Path

    @classmethod
    def of(cls, users: Path, name: str) -> Card:
        return cls(users / f"{name}.pem", users / f"{name}.key")


@dataclass
class HttpsBrowser:
    """One browser: its cookies persist across requests and hosts' ports; ``ca`` verifies the servers."""

    ca: Path
    session: requests.Session = field(default_factory=requests.Session)

    def get(self, url: str, *, card: Card | None = None) -> requests.Response:
        return self.session.get(url, cert=_cert(card), verify=str(self.ca), timeout=30, allow_redirects=False)

    def post(self, url: str, data: dict[str, str], *, card: Card | None = None) -> requests.Response:
        return self.session.post(url, data=data, cert=_cert(card), verify=str(self.ca), timeout=30,
                                 allow_redirects=False)

    def close(self) -> None:
        self.session.close()


def _cert(card: Card | None) -> tuple[str, str] | None:
    return (str(card.certificate), str(card.key)) if card is not None else None


def at(door: str, url: str) -> str:
    """``url`` (a broker URL under the configured base URL, as SAML messages name it) through ``door``
    (``https://127.0.0.1:<port>``), path and query unchanged."""
    parts = urlsplit(url)
    assert url.startswith(BASE_URL + "/"), url
    return door + parts.path + ("?" + parts.query if parts.query else "")


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)
    choices: dict[str, list[str]] = field(default_factory=dict)   # radio groups: name → values offered


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.buttons: list[str] = []   # links shown as buttons ("try again")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", "")))
        elif tag == "a" and a.get("href") and "button" in a.get("class", "").split():
            self.buttons.append(a["href"])
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") == "radio":
                self.forms[-1].choices.setdefault(a["name"], []).append(a.get("value", ""))
            elif a.get("type") != "checkbox":
                self.forms[-1].fields[a["name"]] = a.get("value", "")


def page(response: requests.Response | str) -> _Page:
    """The forms and buttons of a response's page (or of an HTML text)."""
    parser = _Page()
    parser.feed(response if isinstance(response, str) else response.text)
    return parser


def reason(response: requests.Response) -> str | None:
    """The reason code of a refusal (the broker's ``X-Broker-Reason`` header), None when nothing was refused."""
    return response.headers.get("X-Broker-Reason")


def saml_response(response: requests.Response) -> str:
    """The SAMLResponse the broker's page would post to the SP (the page must be that form, not a refusal)."""
    assert (response.status_code, reason(response)) == (200, None), \
        (response.status_code, reason(response), response.text[-1500:])
    return saml_response_in(response.text)


def saml_response_in(html: str) -> str:
    """The SAMLResponse field of the auto-submitting form in ``html``."""
    for form in page(html).forms:
        if "SAMLResponse" in form.fields:
            return form.fields["SAMLResponse"]
    raise AssertionError(f"no SAMLResponse form in the page:\n{html[-1500:]}")


def discovery_form(response: requests.Response) -> Form:
    """The choice form of a discovery page (the broker asks which municipality; nothing refused or answered)."""
    assert (response.status_code, reason(response)) == (200, None), (response.status_code, reason(response))
    for form in page(response).forms:
        if "municipality" in form.choices:
            return form
    raise AssertionError(f"not a discovery page:\n{response.text[-1500:]}")


def retry_link(response: requests.Response) -> str:
    """The "try again" link of an error page: the pending login, kept for another attempt."""
    found = [link for link in page(response).buttons if link.startswith("/saml/idp/login/")]
    assert len(found) == 1, (reason(response), found)
    return found[0]
