"""SAML peers for the flow tests: a real pysaml2 SP (xmlsec1 backend, independent of the broker's
in-process signing) and a browser that carries a client certificate through the Flask test client."""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from broker.demo.sp import DemoSp, DemoSpSettings

BASE_URL = "https://localhost:8443"


def xmlsec_binary() -> str:
    found = shutil.which("xmlsec1")
    if found is None:
        raise RuntimeError("the flow tests need the xmlsec1 program (sudo apt-get install -y xmlsec1)")
    return found


def make_sp(layout_root: Path, idp_metadata: bytes, idp_entity_id: str) -> DemoSp:
    settings = DemoSpSettings(base_url=BASE_URL + "/demo-sp", key_file=layout_root / "sp" / "sp.key",
                              cert_file=layout_root / "sp" / "sp.crt", xmlsec_binary=xmlsec_binary())
    return DemoSp(settings, idp_metadata, idp_entity_id)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][str(a["name"])] = a.get("value") or ""


def forms(response: TestResponse) -> list[tuple[str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(response.get_data(as_text=True))
    return parser.forms


def saml_response_form(response: TestResponse) -> tuple[str, dict[str, str]]:
    """The (action, fields) of the form that carries a SAMLResponse."""
    for action, fields in forms(response):
        if "SAMLResponse" in fields:
            return action, fields
    raise AssertionError(f"no SAMLResponse form in the page (status {response.status_code})")


def decoded_response(response: TestResponse) -> str:
    _, fields = saml_response_form(response)
    return base64.b64decode(fields["SAMLResponse"]).decode()


@dataclass
class Browser:
    """A browser session: cookies persist; a client certificate (PEM) and remote address are sent."""

    client: FlaskClient
    certificate_pem: str | None = None
    remote_addr: str = "192.0.2.10"
    headers: dict[str, str] = field(default_factory=dict)

    def _environ(self) -> dict[str, str]:
        env = {"REMOTE_ADDR": self.remote_addr}
        if self.certificate_pem:
            env["SSL_CLIENT_CERT"] = self.certificate_pem
        return env

    def get(self, url: str) -> TestResponse:
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        return self.client.get(path, environ_base=self._environ(), headers=self.headers)

    def post(self, url: str, data: dict[str, str]) -> TestResponse:
        return self.client.post(urlsplit(url).path, data=data, environ_base=self._environ(), headers=self.headers)

    def post_body(self, url: str, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> TestResponse:
        """A POST whose body is exactly ``body`` (a form encoded by hand)."""
        return self.client.post(urlsplit(url).path, data=body, content_type=content_type,
                                environ_base=self._environ(), headers=self.headers)
