"""The pages people see meet WCAG 2.1 AA as axe-core checks it, in a real browser, in Swedish and English.

Swedish public-sector services must meet WCAG 2.1 AA (lagen om tillgänglighet till digital offentlig service,
EN 301 549). Each distinct page kind is rendered by the broker's own page functions, in both languages: an error
page of every reason family (one answering a GET, with the language link; one answering a POST, with the
explanation in the other language beneath), the choice of municipality, the logged-out page (partial, with the
hand-back form), the SAML POST page as a browser without scripts shows it, and /diagnose with and without a
certificate. Each must also reflow at 320 CSS pixels (SC 1.4.10), which axe-core does not check. A small HTTP
server on loopback serves them with the broker's static files; one headless Chromium
(:mod:`tests.factories.browser`) loads each, runs axe-core (``tests/peers/axe``, installed by ``./dev test``)
with the WCAG 2.0/2.1 A and AA rules, and the test fails on any violation of impact serious or critical, naming
the rule, the page and the elements. No rule is excluded.

The POST page is served with an empty ``autosubmit.js``: the page then stays as a user without scripts sees it
(the button, the explanation), instead of posting to an SP that is not there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from flask import Flask

from broker.app import create_app
from broker.config.loader import load_settings
from broker.config.schema import LocalizedText
from broker.errors import BrokerError
from broker.flow import Discovery, LoginFailed, PostToSp
from broker.flow.results import LogoutDone
from broker.reasons import REASONS
from broker.session.store import RedisStore
from broker.web.pages import diagnose_page, discovery_page, error_page, logged_out_page, post_page
from broker.web.services import services
from tests.conftest import REPO
from tests.factories.browser import VIEWPORT, Chromium

pytestmark = pytest.mark.slow

AXE = REPO / "tests" / "peers" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
STATIC = REPO / "broker" / "web" / "static"
REFID = "ABCD-0123-4567-89EF"
SP_URL = "https://sp.example.org/acs"
SP_NAME = LocalizedText(sv="Journalsystemet", en="The patient record system")
# axe-core's tags for the success criteria of WCAG 2.0 and 2.1, levels A and AA
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")


@dataclass(frozen=True)
class Page:
    name: str
    html: str


def _families() -> dict[str, str]:
    """One reason code per family: the first in the table."""
    first: dict[str, str] = {}
    for row in REASONS.values():
        first.setdefault(row.family, row.code)
    return first


def _pages(app: Flask) -> list[Page]:
    pages: list[Page] = []
    # the rows /diagnose shows (broker.web.ops), with values as long as real ones
    rows = [("subject", "CN=Anna Andersson,SERIALNUMBER=19121212****,O=Kommun A,C=SE"),
            ("issuer", "CN=SITHS e-id Person HSA-id 3 CA v1,O=Inera AB,C=SE"), ("serial", "1f" * 16),
            ("valid_from", "2024-01-01T00:00:00+00:00"), ("valid_until", "2026-01-01T00:00:00+00:00"),
            ("policies", "1.2.752.29.4.13.1.2.3.4.5, 1.2.752.146.200.3.1.0.0"), ("sha256", "ab" * 32),
            ("via", "proxy-header"), ("municipality", "Kommun A"), ("loa", "http://id.elegnamnden.se/loa/1.0/loa3")]

    def add(name: str, path: str, render: Any, method: str = "GET") -> None:
        with app.test_request_context(path, method=method):
            pages.append(Page(name, render().get_data(as_text=True)))

    back = PostToSp(SP_URL, {"SAMLResponse": "PHNhbWxwOlJlc3BvbnNlLz4="}, REFID, SP_NAME)
    for lang in ("sv", "en"):
        q = f"?lang={lang}"
        for family, code in sorted(_families().items()):
            add(f"error-{family}-{lang}", f"/saml/idp/sso{q}",
                lambda code=code: error_page(BrokerError(code), REFID))
        add(f"error-certificate_missing-{lang}", f"/saml/idp/sso{q}",
            lambda: error_page(BrokerError("certificate_missing"), REFID,
                               LoginFailed(BrokerError("certificate_missing"), REFID, SP_NAME,
                                           retry_login_id="L1", back_to_sp=back, choose_again=True)))
        add(f"error-answering-a-post-{lang}", f"/saml/sp/acs{q}",
            lambda: error_page(BrokerError("upstream_response_malformed"), REFID,
                               LoginFailed(BrokerError("upstream_response_malformed"), REFID, SP_NAME,
                                           back_to_sp=back)), method="POST")

        def discovery() -> Any:
            options = tuple(services().settings.municipalities.values())
            return discovery_page(Discovery("L1", options, REFID, SP_NAME, preselected=options[0].id))

        add(f"discovery-{lang}", f"/discovery{q}&login=L1", discovery)
        add(f"discovery-no-match-{lang}", f"/discovery{q}&login=L1&q=stockholm",
            lambda: discovery_page(Discovery("L1", (), REFID, SP_NAME), "stockholm"))
        add(f"logged-out-{lang}", f"/saml/idp/slo{q}", lambda: logged_out_page(LogoutDone(REFID)))
        add(f"logged-out-partial-{lang}", f"/saml/idp/slo{q}",
            lambda: logged_out_page(LogoutDone(REFID, partial=(SP_NAME, "https://idp.kommun-c.example/"),
                                               next=back)))
        add(f"post-{lang}", f"/saml/idp/sso{q}", lambda: post_page(back))
        add(f"diagnose-none-{lang}", f"/diagnose{q}", lambda: diagnose_page(None, False, None, REFID))
        add(f"diagnose-refused-{lang}", f"/diagnose{q}",
            lambda: diagnose_page([*rows[:-1], ("reason", "certificate_expired")], False,
                                  BrokerError("certificate_expired", params={"not_after": "2026-01-01"}), REFID))
        add(f"diagnose-accepted-{lang}", f"/diagnose{q}", lambda: diagnose_page(rows, True, None, REFID))
    return pages


class _Site(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            body = b"" if name == "autosubmit.js" else (STATIC / name).read_bytes()
            kind = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}[name.rsplit(".", 1)[1]]
        else:
            body, kind = self.pages[path.removeprefix("/")].encode(), "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Site:
    url: str
    names: list[str]


@pytest.fixture(scope="module")
def site(demo_material: Any, redis_url: str) -> Iterator[Site]:
    """The pages, served on loopback; rendering reaches neither the store nor the audit trail."""
    app = create_app(load_settings(demo_material.config), store=RedisStore(redis_url, prefix="test:unused:"),
                     instance_id="test")
    pages = _pages(app)
    handler = type("Handler", (_Site,), {"pages": {p.name: p.html for p in pages}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", [p.name for p in pages])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    workdir = tmp_path_factory.mktemp("axe-chromium")
    home = workdir / "home"
    home.mkdir()
    with Chromium(workdir, home=home) as chromium:
        yield chromium


def _violations(browser: Chromium, url: str) -> list[dict[str, Any]]:
    browser.goto(url)
    browser.wait_for(lambda page: page.url == url, url)
    browser.evaluate(AXE.read_text(encoding="utf-8"))
    options = json.dumps({"runOnly": {"type": "tag", "values": WCAG_AA}, "resultTypes": ["violations"]})
    found: str = browser.call("Runtime.evaluate", {
        "expression": f"axe.run(document, {options}).then(r => JSON.stringify(r.violations))",
        "awaitPromise": True, "returnByValue": True}, timeout=60)["result"]["value"]
    violations: list[dict[str, Any]] = json.loads(found)
    return violations


def test_axe_is_installed() -> None:
    assert AXE.is_file(), "axe-core is missing: ./dev test installs it (npm ci --prefix tests/peers/axe)"


def test_every_page_kind_has_no_serious_wcag_violation(site: Site, chromium: Chromium) -> None:
    assert len(site.names) == len(set(site.names))
    problems = []
    for name in site.names:
        for v in _violations(chromium, f"{site.url}/{name}"):
            if v["impact"] in BLOCKING:
                targets = "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
                problems.append(f"{name}: {v['id']} ({v['impact']}): {v['help']}: {targets}")
    assert problems == [], "\n".join(problems)


def test_every_page_reflows_at_320_css_pixels(site: Site, chromium: Chromium) -> None:
    """WCAG 2.1 SC 1.4.10 (Reflow): at 320 CSS pixels wide (a phone, or 1280 pixels zoomed to 400 %) nothing
    needs scrolling sideways: no text, no field, no reference number overflows the page."""
    width, height = VIEWPORT
    chromium.call("Emulation.setDeviceMetricsOverride",
                  {"width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": False})
    try:
        wide = []
        for name in site.names:
            url = f"{site.url}/{name}"
            chromium.goto(url)
            chromium.wait_for(lambda page, url=url: page.url == url, url)
            scroll, client = chromium.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            if scroll > client:
                wide.append(f"{name}: {scroll} px wide in a {client} px viewport")
    finally:
        chromium.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    assert wide == [], "\n".join(wide)
