"""The broker at a public HTTPS address, for tests with a real peer in front of a browser (the interoperability
tests): ``broker serve`` behind the nginx that ``broker proxy-config nginx`` configures (it asks for the client
certificate in the TLS handshake and forwards it from the trusted address 127.0.0.1), on a copy of the demo
configuration whose public URL is nginx's; a browser with a card; and the broker's auto-submitting form read off a
page.

:meth:`PublicBroker.prepare` copies and edits the configuration (the test then adds its SPs or changes a
municipality); :meth:`PublicBroker.running` starts ``broker serve`` and nginx and, afterwards, removes the run's
Redis keys.
"""

from __future__ import annotations

import base64
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import redis
import requests
import yaml
from lxml import etree

from broker.audit.query import records
from tests.factories.authnrequests import NS
from tests.factories.cli import broker_cli
from tests.factories.https_client import Card, HttpsBrowser, page, reason
from tests.factories.nginx import Nginx
from tests.factories.ports import free_port
from tests.factories.serve import BrokerServe


@dataclass
class PublicBroker:
    root: Path
    config: Path
    users: Path
    tls: Path
    nginx_port: int
    redis_url: str
    prefix: str
    serve: BrokerServe          # made by prepare, started by running
    nginx: Nginx | None = None

    @classmethod
    def prepare(cls, root: Path, demo_material: Any, redis_url: str) -> PublicBroker:
        """The demo configuration in ``root/config``, its audit trail empty, its IdP and SP entity IDs and base URL
        at nginx's port, the proxy header trusted from 127.0.0.1, and Redis keys under a prefix of this run."""
        config = root / "config"
        shutil.copytree(demo_material.config, config)
        for f in (config / "audit").glob("*"):
            f.unlink()
        nginx_port = free_port()
        public = f"https://localhost:{nginx_port}"
        prefix = f"test:{secrets.token_hex(6)}:"
        path = config / "broker.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["idp"].update(base_url=public, entity_id=public + "/saml/idp/metadata")
        data["sp"].update(entity_id=public + "/saml/sp/metadata")
        data["client_certificate"]["proxy"]["trusted_networks"] = ["127.0.0.1/32"]
        data["redis"] = {"url": redis_url, "key_prefix": prefix}
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        serve = BrokerServe(config, root / "serve", redis_url=redis_url, workers=1, threads=4)
        return cls(root, config, Path(demo_material.users), Path(demo_material.tls), nginx_port, redis_url, prefix,
                   serve)

    @property
    def url(self) -> str:
        """The broker's public URL (its SAML endpoints are at nginx)."""
        return f"https://localhost:{self.nginx_port}"

    @property
    def idp_entity_id(self) -> str:
        return self.url + "/saml/idp/metadata"

    @property
    def sp_entity_id(self) -> str:
        return self.url + "/saml/sp/metadata"

    @contextmanager
    def running(self) -> Iterator[PublicBroker]:
        """``broker serve`` and nginx (configured by ``broker proxy-config nginx``) on the configuration as it is
        now; the run's Redis keys removed afterwards."""
        out = self.root / "proxy"
        written = broker_cli("proxy-config", "nginx", "--config", str(self.config), "--out", str(out),
                             "--upstream", self.serve.url)
        assert written.returncode == 0, written.stdout + written.stderr
        self.nginx = Nginx(self.root / "nginx", certificate=self.tls / "server.pem", key=self.tls / "server.key",
                           port=self.nginx_port, server_body=f"include {out / 'broker-client-auth.conf'};")
        try:
            with self.serve, self.nginx:
                yield self
        finally:
            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()

    def visitor(self, user: str | None = None) -> Visitor:
        """A new browser; with ``user``'s card when given."""
        return Visitor(HttpsBrowser(self.tls / "ca.pem"), Card.of(self.users, user) if user else None)

    def audit(self) -> list[dict[str, Any]]:
        return list(records([self.config / "audit"]))


@dataclass
class Visitor:
    """One browser (a cookie jar) and maybe a card, presented whenever a server asks (only nginx, at the broker)."""

    browser: HttpsBrowser
    card: Card | None

    def get(self, url: str) -> requests.Response:
        return self.browser.get(url, card=self.card)

    def post(self, url: str, data: dict[str, str]) -> requests.Response:
        return self.browser.post(url, data, card=self.card)

    def follow(self, response: requests.Response, hops: int = 8, *, within: str = "") -> requests.Response:
        """The page at the end of ``response``'s redirects; with ``within``, only those to URLs that start with it
        (the redirect leaving it is returned)."""
        for _ in range(hops):
            if response.status_code not in (302, 303):
                return response
            location = urljoin(response.url, response.headers["Location"])
            if not location.startswith(within):
                return response
            response = self.get(location)
        raise AssertionError(f"more than {hops} redirects, the last to {response.url}")


@dataclass(frozen=True)
class Posted:
    """An auto-submitting HTTP-POST form (the broker's, or a peer IdP's): where it posts, its fields, and the SAML
    message it carries."""

    action: str
    fields: dict[str, str]
    root: etree._Element

    def assertion(self) -> etree._Element:
        found = self.root.find("saml:Assertion", NS)
        assert found is not None, etree.tostring(self.root)[:2000]
        return found

    def text(self, path: str) -> str:
        found = self.assertion().find(path, NS)
        assert found is not None, path
        assert found.text is not None, path
        return found.text


def posted(response: requests.Response, parameter: str = "SAMLResponse") -> Posted:
    """The page's one form carrying ``parameter`` (no error page of the broker's own)."""
    assert (response.status_code, reason(response)) == (200, None), \
        (response.status_code, reason(response), response.text[-1500:])
    forms = [f for f in page(response).forms if parameter in f.fields]
    assert len(forms) == 1, response.text[-1500:]
    return Posted(urljoin(response.url, forms[0].action), forms[0].fields,
                  etree.fromstring(base64.b64decode(forms[0].fields[parameter])))
