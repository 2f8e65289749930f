"""A real browser logs in with a client certificate: Chromium, nginx, `broker serve` and the pysaml2 demo SP.

The topology is the demo's, with the broker behind the reverse proxy an operator runs: one HTTPS origin
``https://127.0.0.1:<port>`` served by nginx (the distribution's binary), configured with the files of
`broker proxy-config nginx` (a client certificate requested in every handshake, advertising the configured
municipalities' CAs). nginx passes ``/demo-sp/`` to the demo SP (:mod:`broker.demo.sp`, a real pysaml2 SP,
plain HTTP on loopback) and everything else to `broker serve` (gunicorn, Redis). The demo material is
generated for that origin (the SP's metadata, the broker's endpoints and the TLS certificate name it).

The browser is Debian's Chromium, headless, with a home of its own whose NSS database holds anna's PKCS#12
(Kommun A, LoA 3) and trusts the demo TLS CA; a managed policy (``AutoSelectCertificateForUrls``) lets it
present anna's certificate to this origin without a dialog. It starts at the SP, like a user:

* with Kommun A's CAs advertised, the handshake carries anna's certificate, the broker answers the SP, and
  the browser lands on the SP's page of anna's attributes;
* with a CA bundle that leaves Kommun A out, Chromium finds no certificate the server asks for and sends
  none, and the user lands on the broker's page that says no certificate was chosen and links to /diagnose.

The demo SP here admits the certificate municipalities only: with Kommun C (which logs in with its own IdP)
among its municipalities, a browser without a certificate would be offered the choice of municipality first.
A second SP of the same stack, at /demo-sp-choice/ (the demo SP's class and keys under another entity ID),
admits Kommun A and Kommun C, so that a browser that sends no certificate is offered that choice; Kommun C's
own IdP (the demo's, :mod:`broker.demo.idp`) answers at /demo-idp/.

Forms are sent once: a double click on the discovery page's "Continue", or a click on the SAML POST page's
button while its auto-submit is on its way, posts nothing more (``static/submitonce.js``). The tests hold the
form's requests in the browser (DevTools ``Fetch``), count them and let them go on.

Screenshots of the SP's page and of the error page in Swedish and English are written for review to
``tests/artifacts/screenshots/`` (git-ignored), or to ``$BROKER_SCREENSHOTS_DIR``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.audit.query import records
from broker.config.loader import load_settings
from broker.demo.idp import DemoIdp, demo_idp_app
from broker.demo.materials import P12_PASSWORD, DemoLayout, generate
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from broker.pki.tls import probe_endpoint
from tests.conftest import EXAMPLE, REPO
from tests.factories.browser import VIEWPORT, AutoSelectPolicy, Chromium, NssHome, PageState, png_size
from tests.factories.cli import broker_cli
from tests.factories.demo_sp_server import DemoSpServer
from tests.factories.nginx import Nginx
from tests.factories.ports import free_port
from tests.factories.redis_server import forget_keys
from tests.factories.serve import BrokerServe

pytestmark = pytest.mark.slow

LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
KOMMUN_A_ISSUER = "Kommun A Demo Person CA"


def screenshot_dir() -> Path:
    return Path(os.environ.get("BROKER_SCREENSHOTS_DIR") or REPO / "tests" / "artifacts" / "screenshots")


@dataclass
class BrowserStack:
    root: Path
    layout: DemoLayout
    port: int
    serve: BrokerServe
    sp: DemoSpServer
    nss: NssHome
    proxy_all: Path            # `broker proxy-config nginx` as written
    proxy_without_a: Path      # the same, its bundle without Kommun A's CAs
    choice_sp: DemoSp          # the SP at /demo-sp-choice/: Kommun A and Kommun C (its requests only)

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def nginx(self, proxy: Path) -> Nginx:
        """nginx on the stack's port: /demo-sp/ to the SP, the rest as the generated snippet says."""
        tls = self.layout.tls
        body = f"""location /demo-sp/ {{
            proxy_pass http://127.0.0.1:{self.sp.port};
            proxy_set_header Host $http_host;
        }}
        location /demo-idp/ {{
            proxy_pass http://127.0.0.1:{self.sp.port};
            proxy_set_header Host $http_host;
        }}
        include {proxy / 'broker-client-auth.conf'};"""
        return Nginx(self.root / f"nginx-{proxy.name}", certificate=tls / "server.pem", key=tls / "server.key",
                     server_body=body, port=self.port)

    def chromium(self, name: str) -> Chromium:
        return Chromium(self.root / name, home=self.nss.home)

    def audit(self) -> list[dict[str, Any]]:
        return list(records([self.layout.config / "audit"]))


def _broker(*args: str) -> None:
    done = broker_cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def _without(bundle: Path, municipality: str) -> None:
    """Drop ``municipality``'s certificates from a bundle of `broker proxy-config nginx` (each one follows
    its ``# <municipality>: <subject>`` line)."""
    entries = re.findall(r"^# [^\n]*\n-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                         bundle.read_text(encoding="utf-8"), flags=re.M | re.S)
    kept = [e for e in entries if not e.startswith(f"# {municipality}:")]
    assert 0 < len(kept) < len(entries)
    bundle.write_text("".join(kept), encoding="utf-8")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[BrowserStack]:
    root = tmp_path_factory.mktemp("browser")
    port = free_port()
    origin = f"https://127.0.0.1:{port}"
    layout = generate(root / "demo", EXAMPLE, dt.datetime.now(dt.UTC), base_url=origin)
    config = layout.config
    prefix = f"test:{secrets.token_hex(6)}:"
    path = config / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["trusted_networks"] = ["127.0.0.1/32"]
    data["redis"] = {"url": redis_url, "key_prefix": prefix}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    path = config / "service-providers" / "demo-sp.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["municipalities"] = ["kommun-a", "kommun-b"]  # certificate logins only (see the module's docstring)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    xmlsec = shutil.which("xmlsec1")
    demo_sp = layout.sp_settings(origin, xmlsec)
    choice = DemoSpSettings(base_url=origin + "/demo-sp-choice", key_file=demo_sp.key_file,
                            cert_file=demo_sp.cert_file, xmlsec_binary=xmlsec)
    (config / "metadata" / "demo-sp-choice.xml").write_bytes(sp_metadata(choice))
    data.update(entity_id=choice.base_url + "/metadata", metadata="metadata/demo-sp-choice.xml",
                name={"sv": "Valtjänsten", "en": "The choice service"}, municipalities=["kommun-a", "kommun-c"])
    (config / "service-providers" / "demo-sp-choice.yaml").write_text(yaml.safe_dump(data, sort_keys=False),
                                                                       encoding="utf-8")

    serve = BrokerServe(config, root / "serve", redis_url=redis_url)
    proxy_all, proxy_without_a = root / "proxy-all", root / "proxy-without-kommun-a"
    for out in (proxy_all, proxy_without_a):
        _broker("proxy-config", "nginx", "--config", str(config), "--out", str(out), "--upstream", serve.url)
    _without(proxy_without_a / "broker-client-cas.pem", "kommun-a")

    nss = NssHome.create(root / "home", pkcs12=layout.users / "anna.p12", password=P12_PASSWORD.decode(),
                         trusted_ca=layout.tls / "ca.pem", ca_nickname="Broker Demo TLS CA")
    with contextlib.ExitStack() as stack:
        stack.callback(forget_keys, redis_url, prefix)
        stack.enter_context(serve)
        idp_metadata = requests.get(serve.url + "/saml/idp/metadata", timeout=10)
        idp_metadata.raise_for_status()
        broker_sp_metadata = requests.get(serve.url + "/saml/sp/metadata", timeout=10)
        broker_sp_metadata.raise_for_status()
        entity_id = load_settings(config).broker.idp.entity_id
        sp = DemoSp(demo_sp, idp_metadata.content, entity_id)
        municipal_idp = DemoIdp(layout.idp_settings(origin, xmlsec), broker_sp_metadata.content)
        sp_server = stack.enter_context(DemoSpServer(sp, {"/demo-idp": demo_idp_app(municipal_idp)}))
        stack.enter_context(AutoSelectPolicy(origin, KOMMUN_A_ISSUER))
        yield BrowserStack(root, layout, port, serve, sp_server, nss, proxy_all, proxy_without_a,
                           DemoSp(choice, idp_metadata.content, entity_id))


@pytest.fixture
def screenshots(capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, Path]]:
    """Name → path of the screenshots a test takes; each is checked (a PNG of the viewport's size) and its
    path printed past pytest's capture."""
    taken: dict[str, Path] = {}
    yield taken
    for path in taken.values():
        data = path.read_bytes()
        assert len(data) > 5000, path
        assert png_size(data) == VIEWPORT, path
    with capsys.disabled():
        for path in taken.values():
            print(f"\nscreenshot: {path}")


def _sha256(pem: Path) -> str:
    return x509.load_pem_x509_certificate(pem.read_bytes()).fingerprint(hashes.SHA256()).hex()


# --- the certificate reaches the broker: anna lands on the SP's page --------------------------------


def test_nss_database_holds_annas_key_and_trusts_the_tls_ca(stack: BrowserStack) -> None:
    listing = stack.nss.listing()
    assert re.search(r"^Broker Demo TLS CA\s+C,,\s*$", listing, flags=re.M), listing
    assert re.search(r"^anna\s+u,u,u\s*$", listing, flags=re.M), listing  # the certificate with its key
    assert "anna" in stack.nss.private_keys()


def test_anna_logs_in_at_the_sp_with_her_certificate(stack: BrowserStack,
                                                     screenshots: dict[str, Path]) -> None:
    with stack.nginx(stack.proxy_all), stack.chromium("chromium-anna") as browser:
        browser.goto(stack.origin + "/demo-sp/login")
        page = browser.wait_for(lambda p: p.url == stack.origin + "/demo-sp/acs", "the SP's page after login")
        assert page.title == "Logged in", page.text
        loa = browser.evaluate("document.querySelector('dd.loa').textContent")
        attributes = browser.evaluate("""Object.fromEntries([...document.querySelectorAll('table tr')]
            .map(row => [row.querySelector('th').textContent, row.querySelector('td').textContent]))""")
        screenshots["sp"] = browser.screenshot(screenshot_dir() / "sp-logged-in-anna.png")
    assert loa == LOA3
    assert attributes["employeeHsaId"] == "SE2120001009-anna"
    assert (attributes["givenName"], attributes["sn"]) == ("Anna", "Demosson")
    assert attributes["o"] == "Kommun A"

    # the certificate the browser chose by itself (the policy) was anna's, and it came through nginx
    accepted = [r for r in stack.audit() if r["event"] == "certificate_accepted"]
    assert len(accepted) == 1
    presented = next(r for r in stack.audit() if r["event"] == "certificate_presented"
                     and r["correlation_id"] == accepted[0]["correlation_id"])
    assert presented["data"]["via"] == "proxy"
    assert accepted[0]["municipality"] == "kommun-a"
    assert accepted[0]["cert_sha256"] == _sha256(stack.layout.users / "anna.pem")


# --- no certificate is sent: the broker says so, in Swedish and English ------------------------------


def _is_error_page(lang: str) -> Callable[[PageState], bool]:
    def done(page: PageState) -> bool:
        return "/saml/idp/" in page.url and page.lang == lang and f"lang={lang}" in page.url
    return done


def test_without_kommun_a_advertised_the_browser_sends_no_certificate(stack: BrowserStack,
                                                                       screenshots: dict[str, Path]) -> None:
    titles = {"sv": "Inget certifikat valdes", "en": "No certificate was chosen"}
    with stack.nginx(stack.proxy_without_a) as nginx, stack.chromium("chromium-no-ca") as browser:
        advertised = probe_endpoint("127.0.0.1", nginx.port, server_name="localhost", timeout=10).ca_names
        assert advertised, "nginx asks for a certificate"
        assert not [n for n in advertised if "Kommun A" in n.rfc4514_string()]

        browser.goto(stack.origin + "/demo-sp/login")
        page = browser.wait_for(lambda p: "/saml/idp/sso" in p.url, "the broker's page")
        assert page.lang == "sv"  # the browser asks for Swedish first
        assert browser.evaluate("document.querySelector('.refid').dataset.reason") == "certificate_missing"
        for lang in ("en", "sv"):  # the page's own language link (it retries the login in that language)
            browser.goto(browser.evaluate(f"document.querySelector('a[hreflang={lang}]').href"))
            page = browser.wait_for(_is_error_page(lang), f"the error page in {lang}")
            assert page.title.startswith(titles[lang]), page.title
            assert browser.evaluate("document.querySelector('.refid').dataset.reason") == "certificate_missing"
            diagnose = browser.evaluate("document.querySelector('a.diagnose').href")
            assert diagnose == stack.origin + "/diagnose"
            screenshots[lang] = browser.screenshot(screenshot_dir() / f"no-certificate-{lang}.png")

        browser.goto(diagnose)
        page = browser.wait_for(lambda p: p.url == stack.origin + "/diagnose", "the diagnosis page")
        assert "Din webbläsare skickade inget certifikat." in page.text  # the language chosen last

    refused = [r for r in stack.audit() if r["event"] == "login_refused"]
    assert [r["reason"] for r in refused] == ["certificate_missing"] * 3
    assert not [r for r in stack.audit() if r["event"] == "certificate_presented"
                and r["correlation_id"] in {x["correlation_id"] for x in refused}]


# --- a form is sent once ---------------------------------------------------------------------------


def _eventually(browser: Chromium, expression: str, timeout: float = 5.0) -> bool:
    """Whether ``expression`` is true in the page within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while browser.evaluate(expression) is not True:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_double_click_on_the_discovery_choice_goes_on_to_the_municipalitys_idp(stack: BrowserStack) -> None:
    """The choice consumes the pending login: a second post of it found the login used, and the browser, which
    shows the answer to the post it sent last, ended on "login expired" (login_unknown) instead of the IdP.
    The user double-clicks "Continue" and clicks it once more while the answer loads: one post leaves."""
    with stack.nginx(stack.proxy_without_a), stack.chromium("chromium-discovery") as browser:
        browser.goto(stack.choice_sp.login_url())
        browser.wait_for(lambda p: "/saml/idp/sso" in p.url, "the discovery page")
        assert browser.evaluate("[...document.querySelectorAll('input[name=municipality]')].map(e => e.value)") \
            == ["kommun-a", "kommun-c"]
        browser.click("#m-kommun-c")
        button = browser.center("form[method=post] button")

        # the form's submissions seen after submitonce.js, kept from leaving the page for now
        browser.evaluate("""window.seen = []; window.held = true; window.addEventListener("submit", event => {
            window.seen.push(event.defaultPrevented); if (window.held) event.preventDefault(); })""")
        browser.click(button, count=2)
        # the second is cancelled; or, on a busy machine, the button was disabled before it came, so it made none
        assert browser.evaluate("window.seen") in ([False, True], [False])
        assert _eventually(browser, "document.querySelector('form[method=post] button').disabled")
        # the page shown again from the back/forward cache: the form can be sent again
        browser.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
        assert browser.evaluate("document.querySelector('form[method=post] button').disabled") is False
        browser.evaluate("window.held = false")

        browser.hold_requests("*/discovery")
        browser.click(button, count=2)
        browser.held_requests(at_least=1)
        browser.click(button)  # while the answer to the first loads
        held = browser.held_requests(wait=1.0)
        assert [(r["request"]["method"], r["request"]["url"]) for r in held] == \
            [("POST", stack.origin + "/discovery")]

        browser.release_requests()
        page = browser.wait_for(lambda p: p.url.startswith(stack.origin + "/demo-idp/sso?"), "Kommun C's IdP")
        assert page.title == "Kommun C: log in", page.text
    assert not [r for r in stack.audit() if r.get("reason") == "login_unknown"]


def test_a_click_during_the_auto_submit_sends_the_saml_response_once(stack: BrowserStack) -> None:
    """The POST page submits itself and keeps its button for users without JavaScript: a click (here a double
    click) while the Response is on its way sent it again, and the SP refuses a Response it has seen."""
    with stack.nginx(stack.proxy_all), stack.chromium("chromium-post") as browser:
        # where the button is, on the page as a browser without JavaScript shows it (and stays on)
        browser.call("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.goto(stack.origin + "/demo-sp/login")
        browser.wait_for(lambda p: "/saml/idp/sso" in p.url, "the broker's POST page")
        button = browser.center("#saml-post button")
        browser.call("Emulation.setScriptExecutionDisabled", {"value": False})

        browser.hold_requests("*/demo-sp/acs")
        browser.goto(stack.origin + "/demo-sp/login")  # answered from anna's session: the same page
        browser.held_requests(at_least=1)  # the auto-submit, held: the broker's page is still shown
        browser.click(button, count=2)
        held = browser.held_requests(wait=1.0)
        assert [(r["request"]["method"], r["request"]["url"]) for r in held] == \
            [("POST", stack.origin + "/demo-sp/acs")]

        browser.release_requests()
        page = browser.wait_for(lambda p: p.url == stack.origin + "/demo-sp/acs", "the SP's page after login")
        assert page.title == "Logged in", page.text
