"""`broker proxy-config nginx` against a real nginx, in front of a real `broker serve`.

One stack per module: the example configuration (generated material) trusting 127.0.0.1/32 as its proxy,
`broker serve` (gunicorn, 2 workers) on a loopback port with a Redis key prefix of its own, the files
`broker proxy-config nginx --upstream <that port>` writes, and nginx (the distribution's binary) serving
HTTPS on another loopback port with the minimal server block around the generated snippet.

What is checked: the snippet passes `nginx -t`; a live handshake advertises exactly the configured CAs;
certificates reach the broker through nginx as nginx saw them (a client's own header never does); the
operators' endpoints are closed at the proxy; `broker readiness --endpoint` finds the CAs of Kommun A and B;
a whole certificate login with curl, from the SP's AuthnRequest to the assertion the SP accepts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import yaml
from cryptography import x509

from broker.audit.query import records
from broker.pki.tls import probe_endpoint
from broker.readiness.synthetic import synthetic_login
from tests.factories.authnrequests import AuthnRequests, sp_accepts
from tests.factories.cli import broker_cli as broker
from tests.factories.https_client import saml_response_in
from tests.factories.nginx import Nginx
from tests.factories.ports import free_port
from tests.factories.redis_server import forget_keys
from tests.factories.saml import BASE_URL, make_sp
from tests.factories.serve import BrokerServe
from tests.factories.tls_servers import ServerIdentity, TlsEndpoint

HEADER = "X-SSL-Client-Cert"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"


@dataclass
class Stack:
    config: Path
    out: Path
    users: Path
    tls: Path
    serve: BrokerServe
    nginx: Nginx
    token: str
    redis_url: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.nginx.port}"

    def get(self, path: str, *, user: str | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        """An HTTPS request through nginx, with ``user``'s certificate and key when given (the server
        certificate verified against the demo TLS CA)."""
        cert = (str(self.users / f"{user}.pem"), str(self.users / f"{user}.key")) if user else None
        return requests.get(self.url + path, cert=cert, verify=str(self.tls / "ca.pem"), headers=headers or {},
                            timeout=15, allow_redirects=False)

    def audit(self) -> list[dict[str, Any]]:
        return list(records([self.config / "audit"]))

    def escaped(self, user: str) -> str:
        return quote((self.users / f"{user}.pem").read_text())


def configured_cas(config: Path) -> list[x509.Certificate]:
    """Anchors and intermediates of every certificate municipality, from the YAML files themselves."""
    found = []
    for path in sorted((config / "municipalities").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        certificate = data.get("certificate")
        if not certificate:
            continue
        for name in (*certificate["trust_anchors"], *certificate.get("intermediates", [])):
            found.append(x509.load_pem_x509_certificate((config / name).read_bytes()))
    return found


@contextmanager
def running_stack(root: Path, demo_material: Any, redis_url: str, *, trusted: str,
                  proxy_bind: str | None = None, operators_own: str = "") -> Iterator[Stack]:
    """The stack, with ``trusted`` as the broker's only proxy network; nginx connects to the broker from
    ``proxy_bind`` when given (another loopback address, so that a client on 127.0.0.1 is not the proxy), and
    ``operators_own`` is what the operator wrote in the server block beside the snippet (``{upstream}``: the
    broker's address)."""
    config = root / "config"
    shutil.copytree(demo_material.config, config)
    for f in (config / "audit").glob("*"):
        f.unlink()
    prefix = f"test:{secrets.token_hex(6)}:"
    path = config / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["trusted_networks"] = [trusted]
    data["redis"] = {"url": redis_url, "key_prefix": prefix}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    serve = BrokerServe(config, root / "serve", redis_url=redis_url)
    out = root / "proxy"
    written = broker("proxy-config", "nginx", "--config", str(config), "--out", str(out), "--upstream", serve.url)
    assert written.returncode == 0, written.stdout + written.stderr
    tls = Path(demo_material.tls)
    bind = f"proxy_bind {proxy_bind};\n" if proxy_bind else ""
    nginx = Nginx(root / "nginx", certificate=tls / "server.pem", key=tls / "server.key",
                  server_body=f"{bind}include {out / 'broker-client-auth.conf'};\n"
                              + operators_own.replace("{upstream}", serve.url))
    token = (config / "keys" / "admin.token").read_text().strip()
    try:
        with serve, nginx:
            yield Stack(config, out, Path(demo_material.users), tls, serve, nginx, token, redis_url)
    finally:
        forget_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_material: Any, redis_url: str) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("nginx-stack"), demo_material, redis_url,
                       trusted="127.0.0.1/32") as running:
        yield running


# --- the generated files pass nginx -t ----------------------------------------------------------


def test_generated_snippet_passes_nginx_t(tmp_path: Path, demo_material: Any, config_dir: Path) -> None:
    out = tmp_path / "proxy"
    written = broker("proxy-config", "nginx", "--config", str(config_dir), "--out", str(out),
                     "--upstream", "http://127.0.0.1:8080")
    assert written.returncode == 0, written.stdout + written.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "broker-client-auth.conf", "broker-client-cas.pem", "broker-server.example.conf"]
    tls = Path(demo_material.tls)
    nginx = Nginx(tmp_path / "nginx", certificate=tls / "server.pem", key=tls / "server.key",
                  server_body=f"include {out / 'broker-client-auth.conf'};")
    checked = nginx.check()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_an_https_upstream_is_refused_without_the_ca_that_verifies_it(tmp_path: Path, config_dir: Path) -> None:
    # nginx does not check a backend's certificate unless told to: the certificate header would travel to
    # whoever answers at that address
    written = broker("proxy-config", "nginx", "--config", str(config_dir), "--out", str(tmp_path / "proxy"),
                     "--upstream", "https://broker.internal:8443")
    assert written.returncode != 0
    assert "--upstream-ca" in written.stderr
    assert not (tmp_path / "proxy").exists()


@pytest.mark.parametrize(("backend_ca", "status"), [
    pytest.param("issuer", 200, id="backend-certificate-from-the-given-ca-reached"),
    pytest.param("other", 502, id="backend-certificate-from-another-ca-refused-by-nginx"),
])
def test_an_https_upstream_is_verified_by_nginx(tmp_path: Path, demo_material: Any, config_dir: Path,
                                                backend_ca: str, status: int) -> None:
    now = dt.datetime.now(dt.UTC)
    backend = ServerIdentity.generate(now, "Backend TLS CA")
    trusted = backend if backend_ca == "issuer" else ServerIdentity.generate(now, "Another TLS CA")
    ca_file = tmp_path / "backend-ca.pem"
    ca_file.write_bytes(trusted.ca_pem)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nbackend"
    with TlsEndpoint(backend, request_certificate=False, http_answer=answer) as endpoint:
        out = tmp_path / "proxy"
        written = broker("proxy-config", "nginx", "--config", str(config_dir), "--out", str(out),
                         "--upstream", f"https://localhost:{endpoint.port}", "--upstream-ca", str(ca_file))
        assert written.returncode == 0, written.stdout + written.stderr
        assert "proxy_ssl_verify on;" in (out / "broker-client-auth.conf").read_text()
        tls = Path(demo_material.tls)
        nginx = Nginx(tmp_path / "nginx", certificate=tls / "server.pem", key=tls / "server.key",
                      server_body=f"include {out / 'broker-client-auth.conf'};")
        with nginx:
            response = requests.get(f"https://127.0.0.1:{nginx.port}/", verify=str(tls / "ca.pem"), timeout=15,
                                    allow_redirects=False)
    assert response.status_code == status
    assert ("backend" in response.text) is (status == 200)


# --- the live handshake ---------------------------------------------------------------------------


def test_handshake_advertises_exactly_the_configured_municipal_cas(stack: Stack) -> None:
    probe = probe_endpoint("127.0.0.1", stack.nginx.port, server_name="localhost", timeout=10)
    assert probe.certificate_requested is True
    expected = configured_cas(stack.config)
    assert len(expected) == 4  # Kommun A and B: a root and an issuing CA each; Kommun C logs in with SAML
    advertised = sorted(n.public_bytes() for n in probe.ca_names)
    assert advertised == sorted(c.subject.public_bytes() for c in expected), \
        [n.rfc4514_string() for n in probe.ca_names]


# --- through nginx to the broker ------------------------------------------------------------------


def test_client_certificate_reaches_the_broker_through_nginx(stack: Stack) -> None:
    response = stack.get("/diagnose?format=json", user="anna")
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"], verdict["loa"]) == (
        True, True, "kommun-a", LOA3)
    viewed = [r for r in stack.audit() if r.get("correlation_id") == verdict["correlation_id"]]
    assert [r["event"] for r in viewed] == ["diagnose_viewed"]
    assert viewed[0]["data"] == {"accepted": True, "via": "proxy"}  # the header of the trusted proxy
    assert viewed[0]["municipality"] == "kommun-a"


def test_forged_header_without_a_certificate_never_reaches_the_broker(stack: Stack) -> None:
    # the control: sent straight from 127.0.0.1 (the trusted proxy's address), the broker would believe it
    direct = requests.get(stack.serve.url + "/diagnose?format=json", headers={HEADER: stack.escaped("anna")},
                          timeout=10).json()
    assert (direct["certificate"], direct["municipality"]) == (True, "kommun-a")

    before = len(stack.audit())
    response = stack.get("/diagnose?format=json", headers={HEADER: stack.escaped("anna")})
    assert response.status_code == 400, response.text
    assert "nginx" in response.text  # nginx's own page: refused in the server block, whatever the location
    assert len(stack.audit()) == before  # nothing reached the broker


@pytest.mark.parametrize(("name", "status"), [("x-ssl-client-cert", 400), ("X_SSL_Client_Cert", 200)])
def test_forged_header_variants_never_reach_the_broker(stack: Stack, name: str, status: int) -> None:
    """Another spelling of the header: nginx matches header names case-insensitively (refused), and drops
    names with underscores (gunicorn would read them as the same CGI variable)."""
    response = stack.get("/diagnose?format=json", headers={name: stack.escaped("anna")})
    assert response.status_code == status, response.text
    if status == 200:
        verdict = response.json()
        assert (verdict["certificate"], verdict["municipality"]) == (False, None)


def test_forged_header_next_to_a_real_certificate_never_reaches_the_broker(stack: Stack) -> None:
    before = len(stack.audit())
    response = stack.get("/diagnose?format=json", user="bo", headers={HEADER: stack.escaped("anna")})
    assert response.status_code == 400, response.text
    assert len(stack.audit()) == before
    verdict = stack.get("/diagnose?format=json", user="bo").json()  # without the forged copy: Bo, as nginx saw him
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"]) == (True, True, "kommun-b")


def test_an_expired_card_gets_the_brokers_answer_not_nginx_s(stack: Stack) -> None:
    """OpenSSL finds fault with an expired certificate (error 10), which optional_no_ca does not forgive: without
    the snippet's error_page 495 nginx answered its own bare 400 and the broker never saw the card. The broker
    explains it, with the certificate as nginx received it."""
    response = stack.get("/diagnose?format=json", user="david")
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"], verdict["reason"]) == (
        True, False, "kommun-a", "certificate_expired")
    viewed = [r for r in stack.audit() if r.get("correlation_id") == verdict["correlation_id"]]
    assert viewed[0]["data"] == {"accepted": False, "via": "proxy"}


@pytest.mark.parametrize("path", ["/metrics", "/admin/status", "/%6Detrics", "//admin/status"])
def test_operators_endpoints_stay_closed_to_an_expired_card(stack: Stack, path: str) -> None:
    response = stack.get(path, user="david", headers={"Authorization": f"Bearer {stack.token}"})
    assert response.status_code == 404, (path, response.status_code)
    assert "nginx" in response.text  # nginx's own page: the request never reached the broker


@pytest.mark.parametrize("path", ["/metrics", "/admin/status", "/%6Detrics", "/admin/%73tatus", "//metrics",
                                  "/admin//status", "/metrics?x=1", "/./admin/status"])
def test_operators_endpoints_are_closed_at_the_proxy(stack: Stack, path: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {stack.token}"}):
        response = stack.get(path, headers=headers)
        assert response.status_code == 404, (path, headers, response.status_code)
        assert "broker_logins" not in response.text
        assert "Broker status" not in response.text


def test_operators_endpoints_answer_the_token_behind_the_proxy(stack: Stack) -> None:
    """The 404s above are the proxy's: the broker itself answers the same token (so it was the right one)."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    assert requests.get(stack.serve.url + "/metrics", headers=headers, timeout=10).status_code == 200
    assert requests.get(stack.serve.url + "/admin/status", headers=headers, timeout=30).status_code == 200
    through = stack.get("/metrics", headers=headers)
    assert through.status_code == 404
    assert "nginx" in through.text  # nginx's own error page, not the broker's


# --- broker readiness reads the live list ------------------------------------------------------------


def test_readiness_finds_both_certificate_municipalities_advertised(stack: Stack) -> None:
    endpoint = stack.url
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    result = broker("readiness", "--config", str(stack.config), "--endpoint", endpoint, "--json",
                    "--municipality", "kommun-a", "--municipality", "kommun-b", env=env, timeout=50)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    section = next(s for s in report["endpoints"] if s["id"] == endpoint)
    assert section["certificate_requested"] is True
    assert sorted(section["advertised"]) == sorted(c.subject.rfc4514_string() for c in configured_cas(stack.config))
    assert {c["id"]: c["status"] for c in section["checks"]}["endpoint.ca_list"] == "pass"
    assert "endpoint.ca_list_extra" not in [c["id"] for c in section["checks"]]
    for municipality in ("kommun-a", "kommun-b"):
        found = next(s for s in report["municipalities"] if s["id"] == municipality)
        advertises = [c for c in found["checks"] if c["id"] == "endpoint.advertises" and c["subject"] == endpoint]
        assert [c["status"] for c in advertises] == ["pass"], (municipality, advertises)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("listen", ["ssl", "ssl http2"], ids=["http/1.1", "h2"])
@pytest.mark.parametrize(("verify", "required"), [("on", True), ("optional_no_ca", False)],
                         ids=["verify-client-on", "optional-no-ca"])
def test_readiness_finds_nginx_requiring_a_certificate_over_either_protocol(
        tmp_path: Path, demo_material: Any, config_dir: Path, address: str, listen: str, verify: str,
        required: bool) -> None:
    """nginx ``ssl_verify_client on`` completes the handshake and answers the request 400 "No required SSL
    certificate was sent"; over HTTP/2 it sends its SETTINGS first, unasked (RFC 9113 §3.4), and the answer after
    them. Either way a browser without a card meets nginx's page instead of the broker's. An endpoint given by its
    IPv6 address is asked for ``[::1]`` (RFC 3986 §3.2.2), in ``Host`` and in ``:authority`` alike: nginx answers
    a bare ``::1`` 400 for the host, not for the certificate."""
    out = tmp_path / "proxy"
    written = broker("proxy-config", "nginx", "--config", str(config_dir), "--out", str(out),
                     "--upstream", "http://127.0.0.1:9")
    assert written.returncode == 0, written.stdout + written.stderr
    tls = Path(demo_material.tls)
    port = free_port()
    server = f"""server {{
        listen 127.0.0.1:{port} {listen};
        listen [::1]:{port} {listen};
        ssl_certificate     {tls / "server.pem"};
        ssl_certificate_key {tls / "server.key"};
        ssl_verify_client {verify};
        ssl_client_certificate {out / "broker-client-cas.pem"};
        location / {{ return 200 "broker"; }}
    }}"""
    with Nginx(tmp_path / "nginx", certificate=tls / "server.pem", key=tls / "server.key", port=port,
               http_body=server):
        found = probe_endpoint(address, port, timeout=10)
    assert found.alpn == ("h2" if "http2" in listen else "http/1.1")
    assert found.certificate_requested is True
    assert (found.required is not None) is required, found.required
    if required:
        assert "400" in (found.required or "")


# --- a whole certificate login through nginx, with curl ------------------------------------------------------


def test_certificate_login_through_nginx_with_curl(stack: Stack, demo_material: Any, tmp_path: Path) -> None:
    """The demo SP's signed AuthnRequest (HTTP-Redirect), fetched with curl presenting Anna's certificate and key
    in the handshake with nginx: the broker got the certificate from nginx's header and answered with an
    assertion the SP (pysaml2) accepts."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("this test logs in with curl: sudo apt-get install -y curl", pytrace=False)
    demo_root = Path(demo_material.root)
    metadata = requests.get(stack.serve.url + "/saml/idp/metadata", timeout=10)
    sp = make_sp(demo_root, metadata.content, BASE_URL + "/saml/idp/metadata")
    craft = AuthnRequests(sp, demo_root / "sp" / "sp.key")
    crafted = craft.build()
    url = stack.url + craft.redirect(crafted).removeprefix(BASE_URL)
    headers = tmp_path / "headers"
    fetched = subprocess.run(
        [curl, "--silent", "--show-error", "--cert", str(stack.users / "anna.pem"),
         "--key", str(stack.users / "anna.key"), "--cacert", str(stack.tls / "ca.pem"),
         "--dump-header", str(headers), "--write-out", "%{http_code}", "--output", str(tmp_path / "page.html"), url],
        capture_output=True, text=True, timeout=30, check=False)
    assert (fetched.returncode, fetched.stdout) == (0, "200"), fetched.stderr + headers.read_text()
    assert "x-broker-reason" not in headers.read_text().lower()

    result = sp_accepts(sp, saml_response_in((tmp_path / "page.html").read_text()), crafted.request_id)
    hsa = [v.text for s in result.assertion.attribute_statement for a in s.attribute
           if a.name == "urn:oid:1.2.752.29.6.2.1" for v in a.attribute_value]
    assert hsa == ["SE2120001009-anna"]

    started = [r for r in stack.audit() if r["event"] == "login_started"
               and r["data"]["request_id"] == crafted.request_id]
    assert len(started) == 1
    login = [r for r in stack.audit() if r.get("correlation_id") == started[0]["correlation_id"]]
    presented = [r for r in login if r["event"] == "certificate_presented"]
    assert [r["data"] for r in presented] == [{"via": "proxy"}]  # nginx's header, from the trusted address
    assert (login[0]["event"], login[-1]["event"]) == ("login_started", "assertion_issued")
    assert login[-1]["cert_sha256"] == presented[0]["cert_sha256"]

    # the access line of that request names the login's correlation ID, and no line carries a SAML message
    written = stack.serve.log(tail=10_000_000).splitlines()
    line = re.compile(r'^127\.0\.0\.1 - \[[^]]+\] "GET /saml/idp/sso HTTP/1\.[01]" 200 \d+ [\d.]+ms '
                      + re.escape(started[0]["correlation_id"]) + r' "curl/[^"]+"$')
    assert len([w for w in written if line.match(w)]) == 1, "\n".join(written[-20:])
    assert not [w for w in written if "SAMLRequest" in w or "Signature=" in w]


# --- nginx on its own address: the header straight from anywhere else is ignored ---------------------------


def test_a_forged_header_sent_straight_to_the_broker_gets_no_login(tmp_path: Path, demo_material: Any,
                                                                  redis_url: str) -> None:
    """Production shape on loopback: nginx reaches the broker from 127.0.0.2 (proxy_bind), the only trusted
    proxy address. A client on 127.0.0.1 that skips nginx and sends Anna's certificate in the header itself is
    treated as presenting no certificate: no assertion, and the attempt is audited as proxy_header_untrusted."""
    with running_stack(tmp_path, demo_material, redis_url, trusted="127.0.0.2/32",
                       proxy_bind="127.0.0.2") as strict:
        through = strict.get("/diagnose?format=json", user="anna").json()  # the proxy's header is believed
        assert (through["certificate"], through["accepted"], through["municipality"]) == (True, True, "kommun-a")

        direct = requests.get(strict.serve.url + "/diagnose?format=json", headers={HEADER: strict.escaped("anna")},
                              timeout=10).json()
        assert (direct["certificate"], direct["accepted"], direct["municipality"]) == (False, False, None)

        demo_root = Path(demo_material.root)
        metadata = requests.get(strict.serve.url + "/saml/idp/metadata", timeout=10)
        sp = make_sp(demo_root, metadata.content, BASE_URL + "/saml/idp/metadata")
        craft = AuthnRequests(sp, demo_root / "sp" / "sp.key")
        crafted = craft.build()
        page = requests.get(strict.serve.url + craft.redirect(crafted).removeprefix(BASE_URL),
                            headers={HEADER: strict.escaped("anna")}, timeout=10, allow_redirects=False)
        # no assertion: the user is asked to choose a municipality (Kommun C logs in with its own IdP)
        assert (page.status_code, "SAMLResponse" in page.text) == (200, False)
        assert 'name="municipality"' in page.text

        audit = strict.audit()
        started = [r for r in audit if r["event"] == "login_started" and r["data"]["request_id"] == crafted.request_id]
        assert len(started) == 1
        login = [r for r in audit if r.get("correlation_id") == started[0]["correlation_id"]]
        assert "proxy_header_untrusted" in [r["event"] for r in login]
        assert not [r for r in login if r["event"] in ("certificate_presented", "certificate_accepted",
                                                          "assertion_issued")]
        untrusted = [r for r in login if r["event"] == "proxy_header_untrusted"]
        assert untrusted[0]["client"] == "127.0.0.1"


@pytest.mark.parametrize("operators_own", [
    pytest.param("location /saml/ { proxy_pass {upstream}; }", id="a-location-that-only-proxies"),
    pytest.param("location /saml/ { proxy_pass {upstream}; proxy_set_header Host $host; }",
                 id="a-location-setting-a-header-of-its-own"),
])
@pytest.mark.parametrize("name", [HEADER, HEADER.lower()])
def test_a_forged_header_never_reaches_the_broker_through_an_operators_location(
        tmp_path: Path, demo_material: Any, redis_url: str, operators_own: str, name: str) -> None:
    """nginx gives a location none of another location's proxy_set_header: through an operator's own location for
    /saml/ the snippet's replacement of the header does not apply, and nginx would pass a client's copy on to the
    broker, which believes its trusted proxy. nginx refuses a request carrying the header in the server block,
    before any location is chosen, so that no location forwards it."""
    with running_stack(tmp_path, demo_material, redis_url, trusted="127.0.0.1/32",
                       operators_own=operators_own) as stack:
        for path in ("/saml/idp/diagnose?format=json", "/diagnose?format=json"):
            forged = stack.get(path, headers={name: stack.escaped("anna")})
            assert forged.status_code == 400, (path, forged.status_code, forged.text[:300])
            assert "nginx" in forged.text  # nginx's own page: the request never reached the broker
        assert [r for r in stack.audit() if r["event"] == "diagnose_viewed"] == []
        # an empty copy carries no certificate: the broker reads it as none, wherever it arrives
        empty = stack.get("/saml/idp/diagnose?format=json", headers={name: ""})
        assert (empty.status_code, empty.json()["certificate"]) == (200, False)


# --- the synthetic login takes the path a login takes ------------------------------------------------------------


@pytest.mark.parametrize(("operators_own", "status", "title"), [
    ("", "pass", "synthetic login accepted"),
    ("location /saml/ { proxy_pass {upstream}; proxy_set_header Host $host; }", "fail",
     "the certificate did not reach the broker"),
], ids=["the-snippet-alone", "an-operators-location-for-saml"])
def test_the_synthetic_login_meets_the_proxy_route_of_the_login_path(tmp_path: Path, demo_material: Any,
                                                                    redis_url: str, operators_own: str, status: str,
                                                                    title: str) -> None:
    """nginx gives a location that sets any proxy_set_header none of the server's: an operator's own location for
    /saml/ drops the snippet's certificate header, and every real login arrives without a certificate while
    /diagnose (under the snippet's "location /") still sees it. The synthetic login asks below /saml/idp/, as the
    SPs' AuthnRequests arrive, so it fails there too."""
    with running_stack(tmp_path, demo_material, redis_url, trusted="127.0.0.1/32",
                       operators_own=operators_own) as stack:
        check = synthetic_login(stack.url, "kommun-a", stack.users / "anna.pem", stack.users / "anna.key",
                                timeout=10, ca_file=stack.tls / "ca.pem")
        assert stack.get("/diagnose?format=json", user="anna").json()["certificate"] is True

    assert (check.status, check.title) == (status, title)
