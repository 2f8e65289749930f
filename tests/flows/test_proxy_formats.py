"""`broker proxy-config haproxy|apache` against a real HAProxy and a real Apache, in front of a real `broker serve`.

One stack per proxy format, started once per module: the example configuration (generated material) with
``client_certificate.proxy`` set to the format (trusting 127.0.0.1/32), `broker serve` on a loopback port
with a Redis key prefix of its own, the files `broker proxy-config <proxy>` writes, and the proxy (the
distribution's binary, tests/factories/proxies.py) serving HTTPS on another loopback port.

* ``haproxy``: HAProxy's native format (``%[ssl_c_der,base64]``), the chain in a second header
  (``%[ssl_c_chain_der,base64]``);
* ``haproxy-rfc9440``: HAProxy writing RFC 9440's ``Client-Cert`` (``:%[ssl_c_der,base64]:``);
* ``apache``: Apache's ``%{SSL_CLIENT_CERT}s`` through mod_headers, the chain from
  ``SSL_CLIENT_CERT_CHAIN_n``.

What is checked: the generated file passes the proxy's own configuration test; a live handshake advertises
exactly the configured CAs; a client certificate (and the chain the client sent) reaches the broker in that
format; a header a client forges never does (alone, next to a real certificate, in another spelling); a
client without a certificate arrives with none; a forged X-Forwarded-For does not become the client address;
the operators' endpoints are closed at the proxy. nginx has the same checks in tests/flows/test_nginx.py;
Envoy is not packaged for Debian, so its format is proven by unit tests only
(tests/unit/pki/test_proxy_headers.py).
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509

from broker.audit.query import records
from broker.config.loader import load_settings
from broker.pki.proxy_headers import ProxyFormat
from broker.pki.tls import probe_endpoint
from broker.slow_clients import longest_request_seconds
from tests.factories.cli import broker_cli as broker
from tests.factories.nginx import Nginx
from tests.factories.ports import free_port
from tests.factories.proxies import Apache, ForegroundProxy, HAProxy
from tests.factories.proxy_headers import headers_for
from tests.factories.redis_server import forget_keys
from tests.factories.serve import BrokerServe

LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"


@dataclass(frozen=True)
class Setup:
    proxy: str
    format: ProxyFormat
    header: str
    chain_header: str | None


SETUPS = {
    "haproxy": Setup("haproxy", "haproxy_base64_der", "X-SSL-Client-Cert", "X-SSL-Client-Chain"),
    "haproxy-rfc9440": Setup("haproxy", "rfc9440", "Client-Cert", None),
    "apache": Setup("apache", "apache_pem", "X-SSL-Client-Cert", "X-SSL-Client-Chain"),
}


def configured_cas(config: Path) -> list[x509.Certificate]:
    """Anchors and intermediates of every certificate municipality, from the YAML files themselves."""
    found = []
    for path in sorted((config / "municipalities").glob("*.yaml")):
        certificate = yaml.safe_load(path.read_text(encoding="utf-8")).get("certificate")
        for name in (*certificate["trust_anchors"], *certificate.get("intermediates", [])) if certificate else ():
            found.append(x509.load_pem_x509_certificate((config / name).read_bytes()))
    return found


@dataclass
class Stack:
    setup: Setup
    config: Path
    out: Path
    users: Path
    tls: Path
    serve: BrokerServe
    proxy: ForegroundProxy
    issuing_ca: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.proxy.port}"

    def get(self, path: str, *, user: str | None = None, with_chain: bool = False,
            headers: dict[str, str] | None = None) -> requests.Response:
        """An HTTPS request through the proxy, with ``user``'s certificate (and, ``with_chain``, the issuing
        CA sent after it in the handshake); the server certificate verified against the demo TLS CA."""
        cert = None
        if user is not None:
            pem = self.users / f"{user}.pem"
            if with_chain:
                pem = self.out.parent / f"{user}-with-chain.pem"
                pem.write_text((self.users / f"{user}.pem").read_text() + self.issuing_ca.read_text())
            cert = (str(pem), str(self.users / f"{user}.key"))
        return requests.get(self.url + path, cert=cert, verify=str(self.tls / "ca.pem"), headers=headers or {},
                            timeout=15, allow_redirects=False)

    def diagnose(self, **kwargs: Any) -> dict[str, Any]:
        response = self.get("/diagnose?format=json", **kwargs)
        assert response.status_code == 200, response.text
        verdict: dict[str, Any] = response.json()
        return verdict

    def audit_of(self, correlation_id: str) -> list[dict[str, Any]]:
        return [r for r in records([self.config / "audit"]) if r.get("correlation_id") == correlation_id]

    def forged(self, user: str) -> dict[str, str]:
        """The header this stack's proxy would send for ``user``, written by the client instead."""
        cert = x509.load_pem_x509_certificate((self.users / f"{user}.pem").read_bytes())
        value, _ = headers_for(self.setup.format, cert)
        assert value is not None
        return {self.setup.header: value}


@pytest.fixture(scope="module", params=list(SETUPS), ids=list(SETUPS))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, demo_material: Any,
          redis_url: str) -> Iterator[Stack]:
    setup = SETUPS[request.param]
    root = tmp_path_factory.mktemp(f"{request.param}-stack")
    config = root / "config"
    shutil.copytree(demo_material.config, config)
    for f in (config / "audit").glob("*"):
        f.unlink()
    prefix = f"test:{secrets.token_hex(6)}:"
    path = config / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    proxy_settings = {"trusted_networks": ["127.0.0.1/32"], "format": setup.format, "header": setup.header}
    if setup.chain_header is not None:
        proxy_settings["chain_header"] = setup.chain_header
    data["client_certificate"]["proxy"].update(proxy_settings)
    data["redis"] = {"url": redis_url, "key_prefix": prefix}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    serve = BrokerServe(config, root / "serve", redis_url=redis_url, workers=1)
    out = root / "proxy"
    tls = Path(demo_material.tls)
    port = free_port()
    proxy: ForegroundProxy
    if setup.proxy == "haproxy":
        crt = HAProxy.combined_pem(tls / "server.pem", tls / "server.key", root / "server-with-key.pem")
        written = broker("proxy-config", "haproxy", "--config", str(config), "--out", str(out), "--upstream",
                         serve.url, "--bind", f"127.0.0.1:{port}", "--certificate", str(crt))
        proxy = HAProxy(root / "haproxy", out / "broker-haproxy.cfg", port)
    else:
        written = broker("proxy-config", "apache", "--config", str(config), "--out", str(out), "--upstream", serve.url)
        proxy = Apache(root / "apache", certificate=tls / "server.pem", key=tls / "server.key", port=port,
                       vhost_body=f"Include {out / 'broker-apache.conf'}")
    assert written.returncode == 0, written.stdout + written.stderr
    try:
        with serve, proxy:
            yield Stack(setup, config, out, Path(demo_material.users), tls, serve, proxy,
                        config / "certs" / "kommun-a" / "issuing-ca.pem")
    finally:
        forget_keys(redis_url, prefix)


# --- the generated configuration ------------------------------------------------------------------------------


def test_generated_configuration_passes_the_proxys_own_check(stack: Stack) -> None:
    checked = stack.proxy.check()
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_handshake_advertises_exactly_the_configured_municipal_cas(stack: Stack) -> None:
    probe = probe_endpoint("127.0.0.1", stack.proxy.port, server_name="localhost", timeout=10)
    assert probe.certificate_requested is True
    expected = configured_cas(stack.config)
    assert len(expected) == 4  # Kommun A and B: a root and an issuing CA each
    assert sorted(n.public_bytes() for n in probe.ca_names) == sorted(c.subject.public_bytes() for c in expected)


# --- through the proxy to the broker ------------------------------------------------------------------------


def test_client_certificate_reaches_the_broker_in_the_proxys_format(stack: Stack) -> None:
    verdict = stack.diagnose(user="anna")
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"], verdict["loa"]) == (
        True, True, "kommun-a", LOA3)
    assert "SE2120001009-anna" in verdict["subject"]
    assert verdict["chain"] == []  # the client sent its certificate alone
    viewed = stack.audit_of(verdict["correlation_id"])
    assert [r["event"] for r in viewed] == ["diagnose_viewed"]  # no proxy_header_* event: the format was right
    assert viewed[0]["data"] == {"accepted": True, "via": "proxy"}


def test_the_chain_the_client_sent_reaches_the_broker(stack: Stack) -> None:
    verdict = stack.diagnose(user="anna", with_chain=True)
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"]) == (True, True, "kommun-a")
    issuing = x509.load_pem_x509_certificate(stack.issuing_ca.read_bytes()).subject.rfc4514_string()
    # HAProxy writes no RFC 9440 Client-Cert-Chain (ssl_c_chain_der is one byte string): the leaf alone
    assert verdict["chain"] == ([issuing] if stack.setup.chain_header is not None else [])


def test_client_without_certificate_arrives_with_none(stack: Stack) -> None:
    verdict = stack.diagnose()
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"]) == (False, False, None)
    mine = stack.audit_of(verdict["correlation_id"])
    assert [r["event"] for r in mine] == ["diagnose_viewed"]
    assert mine[0]["data"] == {"accepted": False, "via": "none"}


def test_forged_header_without_a_certificate_never_reaches_the_broker(stack: Stack) -> None:
    # the control: sent straight from 127.0.0.1 (the trusted proxy's address), the broker would believe it
    direct = requests.get(stack.serve.url + "/diagnose?format=json", headers=stack.forged("anna"), timeout=10).json()
    assert (direct["certificate"], direct["municipality"]) == (True, "kommun-a")

    verdict = stack.diagnose(headers=stack.forged("anna"))
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"]) == (False, False, None)
    assert [r["event"] for r in stack.audit_of(verdict["correlation_id"])] == ["diagnose_viewed"]


def test_forged_chain_header_never_reaches_the_broker(stack: Stack) -> None:
    """The proxy replaces the chain header it forwards; one it does not forward the broker does not read."""
    issuing = x509.load_pem_x509_certificate(stack.issuing_ca.read_bytes())
    _, chain_value = headers_for(stack.setup.format, issuing, (issuing,))
    assert chain_value is not None
    name = stack.setup.chain_header or "Client-Cert-Chain"
    verdict = stack.diagnose(user="anna", headers={name: chain_value})
    assert (verdict["accepted"], verdict["chain"]) == (True, [])


def test_forged_header_next_to_a_real_certificate_is_replaced(stack: Stack) -> None:
    verdict = stack.diagnose(user="bo", headers=stack.forged("anna"))
    assert (verdict["certificate"], verdict["accepted"], verdict["municipality"]) == (True, True, "kommun-b")


@pytest.mark.parametrize("spelling", [str.lower, str.upper, lambda name: name.replace("-", "_")],
                         ids=["lower-case", "upper-case", "underscores"])
def test_forged_header_in_another_spelling_never_reaches_the_broker(stack: Stack, spelling: Any) -> None:
    """The proxies match header names case-insensitively (removed or replaced); a name with underscores passes
    them but gunicorn drops it rather than read it as the same CGI variable."""
    ((name, value),) = stack.forged("anna").items()
    verdict = stack.diagnose(headers={spelling(name): value})
    assert (verdict["certificate"], verdict["municipality"]) == (False, None)


def test_forged_forwarded_for_does_not_become_the_client_address(stack: Stack) -> None:
    verdict = stack.diagnose(headers={"X-Forwarded-For": "203.0.113.9"})
    (viewed,) = stack.audit_of(verdict["correlation_id"])
    assert viewed["client"] == "127.0.0.1"  # audit.client_address: clear in the example configuration


@pytest.mark.parametrize("path", ["/metrics", "/admin/status", "/%6Detrics", "/admin/%73tatus", "//metrics",
                                  "/admin//status", "/metrics?x=1", "/./admin/status", "/admin%2Fstatus"])
def test_operators_endpoints_are_closed_at_the_proxy(stack: Stack, path: str) -> None:
    token = (stack.config / "keys" / "admin.token").read_text().strip()
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        response = stack.get(path, headers=headers)
        assert response.status_code == 404, (path, headers, response.status_code)
        assert "broker_logins" not in response.text
        assert "Broker status" not in response.text


# --- formats a proxy cannot write are refused when the configuration is generated ------------------------------


@pytest.mark.parametrize(("proxy", "fmt", "fragment"), [
    pytest.param("apache", "haproxy_base64_der", "set it to apache_pem", id="apache-cannot-write-haproxy-format"),
    pytest.param("haproxy", "apache_pem", "set it to haproxy_base64_der or rfc9440", id="haproxy-cannot-write-pem"),
    pytest.param("haproxy", "envoy_xfcc", "which haproxy does not write", id="haproxy-cannot-write-xfcc"),
    pytest.param("nginx", "apache_pem", "set it to nginx_escaped_pem", id="nginx-cannot-write-apache-format"),
])
def test_proxy_config_refuses_a_format_the_proxy_cannot_write(config_dir: Path, tmp_path: Path, proxy: str,
                                                               fmt: ProxyFormat, fragment: str) -> None:
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["format"] = fmt
    if fmt == "envoy_xfcc":
        data["client_certificate"]["proxy"]["header"] = "X-Forwarded-Client-Cert"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = broker("proxy-config", proxy, "--config", str(config_dir), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert fragment in result.stderr
    assert not (tmp_path / "out" / "broker-client-cas.pem").exists()


@pytest.mark.parametrize(("proxy", "fmt", "written", "pattern"), [
    pytest.param("nginx", "nginx_escaped_pem", "broker-client-auth.conf", r"proxy_read_timeout (\d+)s;", id="nginx"),
    pytest.param("haproxy", "haproxy_base64_der", "broker-haproxy.cfg", r"timeout server (\d+)s", id="haproxy"),
    pytest.param("apache", "apache_pem", "broker-apache.conf", r"ProxyTimeout (\d+)", id="apache"),
])
def test_the_proxy_waits_for_the_broker_as_long_as_a_login_may_take(config_dir: Path, tmp_path: Path, proxy: str,
                                                                    fmt: ProxyFormat, written: str,
                                                                    pattern: str) -> None:
    """A certificate login may wait on revocation sources in turn, each within its timeout (an OCSP responder,
    then a CRL server that do not answer: 3 s + 30 s by default, per certificate of the path), and gunicorn lets
    it (broker.slow_clients.longest_request_seconds). A proxy that gave up after 30 s showed the user its own 504
    while the broker went on to answer (a login, or the refusal that says why) to no one."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["format"] = fmt
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = broker("proxy-config", proxy, "--config", str(config_dir), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    settings = load_settings(config_dir)
    longest = longest_request_seconds(settings, settings.broker.server.request_timeout.seconds)
    waits = [int(s) for s in re.findall(pattern, (tmp_path / "out" / written).read_text(encoding="utf-8"))]
    assert waits, pattern
    assert min(waits) >= longest, (waits, longest)


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    return tmp_path / "a-file" / "proxy"


@pytest.mark.parametrize("proxy", ["nginx", "haproxy", "apache"])
@pytest.mark.parametrize("where", [
    pytest.param(_under_a_file, id="under-a-file"),
    pytest.param(lambda tmp_path: Path("/proc/broker-proxy"), id="cannot-be-created"),
])
def test_proxy_config_says_why_it_cannot_write_the_out_directory(config_dir: Path, tmp_path: Path, proxy: str,
                                                                 where: Any) -> None:
    """An --out that cannot be made or written is unusable input: exit 2 naming the directory and the system's
    reason, no Python traceback."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["format"] = {"nginx": "nginx_escaped_pem", "haproxy": "haproxy_base64_der",
                                                     "apache": "apache_pem"}[proxy]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    out = where(tmp_path)
    result = broker("proxy-config", proxy, "--config", str(config_dir), "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--out: cannot write to {out}:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("proxy", "options", "option"), [
    pytest.param("nginx", ["--out", "{tmp}/proxy files"], "--out", id="nginx-out-with-a-space"),
    pytest.param("nginx", ["--out", "{tmp}/out", "--proxy-dir", "/etc/nginx/broker;"], "--proxy-dir",
                 id="nginx-proxy-dir-with-a-semicolon"),
    pytest.param("haproxy", ["--out", "{tmp}/proxy files"], "--out", id="haproxy-out-with-a-space"),
    pytest.param("haproxy", ["--out", "{tmp}/out", "--certificate", "/etc/haproxy/tls/my cert.pem"], "--certificate",
                 id="haproxy-certificate-with-a-space"),
    pytest.param("haproxy", ["--out", "{tmp}/out", "--bind", ":443 #"], "--bind", id="haproxy-bind-with-a-comment"),
    pytest.param("apache", ["--out", "{tmp}/proxy files"], "--out", id="apache-out-with-a-space"),
    pytest.param("apache", ["--out", "{tmp}/out", "--upstream", "http://127.0.0.1:8080/#"], "--upstream",
                 id="apache-upstream-with-a-comment"),
])
def test_proxy_config_refuses_a_path_the_proxys_configuration_cannot_hold(config_dir: Path, tmp_path: Path,
                                                                         proxy: str, options: list[str],
                                                                         option: str) -> None:
    """A path written into the proxy's configuration as a word: white space, quotes, ';', '#', braces or '$' in it
    would make a file that the proxy's own check refuses (or reads otherwise), so the command refuses it first."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["format"] = {"nginx": "nginx_escaped_pem", "haproxy": "haproxy_base64_der",
                                                     "apache": "apache_pem"}[proxy]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = broker("proxy-config", proxy, "--config", str(config_dir),
                    *(o.replace("{tmp}", str(tmp_path)) for o in options))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Invalid value for {option}:" in result.stderr
    assert "cannot be written into" in result.stderr
    assert not any(tmp_path.glob("*/broker-client-cas.pem"))


def test_nginx_clears_a_chain_header_it_cannot_fill(config_dir: Path, tmp_path: Path, demo_material: Any) -> None:
    """nginx has no variable for the client's chain: with chain_header configured, the snippet only removes a
    client's copy (an empty value; a request carrying one is refused), and still passes nginx -t."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["chain_header"] = "X-SSL-Client-Chain"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    result = broker("proxy-config", "nginx", "--config", str(config_dir), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    snippet = (out / "broker-client-auth.conf").read_text()
    assert 'proxy_set_header X-SSL-Client-Chain "";' in snippet
    # and refused in the server block, as the certificate header is, whatever location the request would reach
    assert 'if ($http_x_ssl_client_chain != "") { return 400; }' in snippet
    tls = Path(demo_material.tls)
    checked = Nginx(tmp_path / "nginx", certificate=tls / "server.pem", key=tls / "server.key",
                    server_body=f"include {out / 'broker-client-auth.conf'};").check()
    assert checked.returncode == 0, checked.stderr


def test_haproxy_clears_a_forged_header_whatever_frontend_routes_to_the_broker(
        tmp_path: Path, demo_material: Any, redis_url: str) -> None:
    """A HAProxy that already serves other sites routes to the generated backend from a frontend of its own (one
    port 443, a use_backend by host name). The generated rules that remove a client's copy of the certificate
    headers belong to the backend, so that they hold for every frontend that sends requests to the broker: a
    forged header through another frontend reached the broker, which believes HAProxy."""
    config = tmp_path / "config"
    shutil.copytree(demo_material.config, config)
    prefix = f"test:{secrets.token_hex(6)}:"
    path = config / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"].update({"trusted_networks": ["127.0.0.1/32"], "format": "haproxy_base64_der",
                                                "header": "X-SSL-Client-Cert", "chain_header": "X-SSL-Client-Chain"})
    data["redis"] = {"url": redis_url, "key_prefix": prefix}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    serve = BrokerServe(config, tmp_path / "serve", redis_url=redis_url, workers=1)
    out = tmp_path / "proxy"
    tls = Path(demo_material.tls)
    port, other = free_port(), free_port()
    crt = HAProxy.combined_pem(tls / "server.pem", tls / "server.key", tmp_path / "server-with-key.pem")
    written = broker("proxy-config", "haproxy", "--config", str(config), "--out", str(out), "--upstream", serve.url,
                     "--bind", f"127.0.0.1:{port}", "--certificate", str(crt))
    assert written.returncode == 0, written.stdout + written.stderr
    generated = out / "broker-haproxy.cfg"
    generated.write_text(generated.read_text() + f"""
frontend operators_own
    mode http
    bind 127.0.0.1:{other}
    default_backend broker
""")
    anna = x509.load_pem_x509_certificate((Path(demo_material.users) / "anna.pem").read_bytes())
    issuing = x509.load_pem_x509_certificate((config / "certs" / "kommun-a" / "issuing-ca.pem").read_bytes())
    value, chain_value = headers_for("haproxy_base64_der", anna, (issuing,))
    assert value is not None
    assert chain_value is not None
    try:
        with serve, HAProxy(tmp_path / "haproxy", generated, port):
            for name in ("X-SSL-Client-Cert", "x-ssl-client-cert"):
                for headers in ({name: value, "X-SSL-Client-Chain": chain_value}, {name: value},
                                {"X-SSL-Client-Chain": chain_value}):
                    # a chain header left in place would arrive without its certificate: refused, no JSON
                    response = requests.get(f"http://127.0.0.1:{other}/diagnose?format=json", timeout=15,
                                            headers=headers)
                    assert response.status_code == 200, response.text
                    verdict = response.json()
                    assert (verdict["certificate"], verdict["municipality"]) == (False, None)
    finally:
        forget_keys(redis_url, prefix)
