"""Several broker instances on one Redis: any instance serves any step of a login (DESIGN.md, "Scale and
failure": stateless instances, no sticky sessions).

One stack per module: two `broker serve` processes, A and B (gunicorn, one worker each, their own ports), on
one configuration directory, one Redis and one key prefix, as replicas run. Each has a front door of its own:
an nginx on another loopback port whose server block includes what `broker proxy-config nginx --upstream
<that instance>` wrote, so the test (a real HTTP client: requests with one cookie jar, TLS verified) chooses
which instance answers each step, and a client certificate reaches the broker the production way: in the TLS
handshake with nginx, forwarded in the header only nginx (127.0.0.1, the trusted network) may send. The
service provider is the demo's pysaml2 SP, which builds and signs the AuthnRequests and LogoutRequests and
validates the Responses (signature, audience, InResponseTo, times).

Which instance did what is read from the audit trail, not assumed: every broker process writes its own
chain, whose first record names the process (``audit_chain_started``: pid), and each process belongs to A or
to B (the gunicorn master or its worker).

Also here: the compose stack's nginx configuration (deploy/nginx/broker.conf) in front of both instances,
and `broker serve` taking its listen address, workers and threads from broker.yaml.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from copy import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from saml2 import BINDING_HTTP_REDIRECT
from saml2.response import AuthnResponse
from saml2.saml import NameID

from broker.audit.query import records
from broker.demo.sp import DemoSp
from tests.factories.authnrequests import (
    DIGEST_SHA256,
    RSA_SHA256,
    SP_SLO_URL,
    AuthnRequests,
    redirect_message,
    sp_accepts,
    status_codes,
)
from tests.factories.cli import broker_cli as broker
from tests.factories.deploy import nginx_conf_on_loopback
from tests.factories.https_client import Card, HttpsBrowser, at, discovery_form, reason, retry_link, saml_response
from tests.factories.nginx import Nginx
from tests.factories.ports import free_port
from tests.factories.redis_server import forget_keys
from tests.factories.saml import BASE_URL, make_sp
from tests.factories.serve import BrokerServe, serving_from_config

HSA_ID_ATTRIBUTE = "urn:oid:1.2.752.29.6.2.1"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
COOKIE = "__Host-broker_session"
ANNA = "SE2120001009-anna"


def proxy_config(config: Path, out: Path, upstream: str) -> Path:
    """`broker proxy-config nginx`: the files for a proxy in front of ``upstream``; the snippet's path."""
    written = broker("proxy-config", "nginx", "--config", str(config), "--out", str(out), "--upstream", upstream)
    assert written.returncode == 0, written.stdout + written.stderr
    return out / "broker-client-auth.conf"


@dataclass
class Instance:
    name: str
    serve: BrokerServe
    door: Nginx

    @property
    def url(self) -> str:
        """This instance's front door (nginx, HTTPS)."""
        return f"https://127.0.0.1:{self.door.port}"

    def processes(self) -> set[int]:
        return {self.serve.pid, *self.serve.workers_now()}


@dataclass
class Cluster:
    config: Path
    users: Path
    tls: Path
    demo_root: Path
    a: Instance
    b: Instance

    def card(self, user: str) -> Card:
        return Card.of(self.users, user)

    def browser(self) -> HttpsBrowser:
        return HttpsBrowser(self.tls / "ca.pem")

    def audit(self) -> list[dict[str, Any]]:
        """Every audit record, with ``_instance``: the name of the instance whose process wrote it."""
        found = list(records([self.config / "audit"]))
        pid_of = {r["data"]["chain"]: r["data"]["pid"] for r in found if r["event"] == "audit_chain_started"}
        owner = {pid: i.name for i in (self.a, self.b) for pid in i.processes()}
        for record in found:
            record["_instance"] = owner.get(pid_of.get(record["_chain"], -1), "?")
        return found

    def login(self, request_id: str) -> list[dict[str, Any]]:
        """The audit records of the login that began with AuthnRequest ``request_id`` (one correlation ID)."""
        found = self.audit()
        started = [r for r in found if r["event"] == "login_started" and r["data"]["request_id"] == request_id]
        assert len(started) == 1, [r["event"] for r in found][-20:]
        return [r for r in found if r.get("correlation_id") == started[0]["correlation_id"]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, demo_material: Any, redis_url: str) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("instances")
    config = root / "config"
    shutil.copytree(demo_material.config, config)
    for f in (config / "audit").glob("*"):
        f.unlink()
    prefix = f"test:{secrets.token_hex(6)}:"
    path = config / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["trusted_networks"] = ["127.0.0.1/32"]
    data["redis"] = {"url": redis_url, "key_prefix": prefix}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    tls = Path(demo_material.tls)
    instances = []
    for name in ("a", "b"):
        serve = BrokerServe(config, root / f"serve-{name}", redis_url=redis_url, workers=1, threads=2)
        snippet = proxy_config(config, root / f"proxy-{name}", serve.url)
        door = Nginx(root / f"nginx-{name}", certificate=tls / "server.pem", key=tls / "server.key",
                     server_body=f"include {snippet};")
        instances.append(Instance(name, serve, door))
    try:
        with ExitStack() as stack:
            for instance in instances:
                stack.enter_context(instance.serve)
                stack.enter_context(instance.door)
            yield Cluster(config, Path(demo_material.users), tls, Path(demo_material.root), *instances)
    finally:
        forget_keys(redis_url, prefix)


@pytest.fixture
def sp(cluster: Cluster) -> DemoSp:
    """The demo SP (pysaml2) with the broker's metadata, as instance A publishes it."""
    metadata = requests.get(cluster.a.serve.url + "/saml/idp/metadata", timeout=10)
    assert metadata.status_code == 200
    return make_sp(cluster.demo_root, metadata.content, BASE_URL + "/saml/idp/metadata")


@pytest.fixture
def craft(sp: DemoSp, cluster: Cluster) -> AuthnRequests:
    return AuthnRequests(sp, cluster.demo_root / "sp" / "sp.key")


@pytest.fixture
def browser(cluster: Cluster) -> Iterator[HttpsBrowser]:
    b = cluster.browser()
    yield b
    b.close()


def hsa_id(result: AuthnResponse) -> list[str]:
    values = [v.text for s in result.assertion.attribute_statement for a in s.attribute
              if a.name == HSA_ID_ATTRIBUTE for v in a.attribute_value]
    return [str(v) for v in values]


def events(login: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(instance, event) of a login's audit records, in the order each instance wrote them."""
    return [(r["_instance"], r["event"]) for r in login]


def logout_url(sp: DemoSp, name_id: NameID) -> str:
    """The SP's own signed HTTP-Redirect LogoutRequest (pysaml2), to the broker's SLO endpoint."""
    (binding, info), = sp.client.global_logout(name_id, sign=True, sign_alg=RSA_SHA256,
                                               digest_alg=DIGEST_SHA256).values()
    assert binding == BINDING_HTTP_REDIRECT
    return str(dict(info["headers"])["Location"])


# --- (a) a login on A is single sign-on on B ------------------------------------------------------------


def test_login_on_a_gives_single_sign_on_on_b(cluster: Cluster, sp: DemoSp, craft: AuthnRequests,
                                              browser: HttpsBrowser) -> None:
    first = craft.build()
    answer = browser.get(at(cluster.a.url, craft.redirect(first)), card=cluster.card("anna"))
    one = sp_accepts(sp, saml_response(answer), first.request_id)
    assert hsa_id(one) == [ANNA]

    # the second service visit reaches B, in a handshake without a certificate: only the session cookie
    second = craft.build()
    again = browser.get(at(cluster.b.url, craft.redirect(second)))
    two = sp_accepts(sp, saml_response(again), second.request_id)
    assert hsa_id(two) == [ANNA]
    assert two.name_id.text == one.name_id.text  # the same persistent NameID: the same user, the same session

    logged_in = cluster.login(first.request_id)
    assert {i for i, _ in events(logged_in)} == {"a"}
    presented = [r for r in logged_in if r["event"] == "certificate_presented"]
    assert [r["data"]["via"] for r in presented] == ["proxy"]  # nginx's header, from the trusted address
    reused = cluster.login(second.request_id)
    assert {i for i, _ in events(reused)} == {"b"}
    assert [e for _, e in events(reused)] == ["login_started", "session_reused", "assertion_issued"]
    issued = reused[-1]
    assert (issued["data"]["session"], issued["data"]["request_id"]) == ("reused", second.request_id)
    # no certificate reached B (it recorded no certificate_presented): what it records names the card the
    # session rests on, the one presented to A
    card = {r["cert_sha256"] for r in logged_in if "cert_sha256" in r}
    assert len(card) == 1
    assert [r["event"] for r in reused if "cert_sha256" in r] == ["session_reused", "assertion_issued"]
    assert {r["cert_sha256"] for r in reused if "cert_sha256" in r} == card


# --- (b) a logout on B ends the session on A ---------------------------------------------------------------


def test_logout_on_b_ends_the_session_on_a(cluster: Cluster, sp: DemoSp, craft: AuthnRequests,
                                           browser: HttpsBrowser) -> None:
    first = craft.build()
    answer = browser.get(at(cluster.a.url, craft.redirect(first)), card=cluster.card("anna"))
    name_id = sp_accepts(sp, saml_response(answer), first.request_id).name_id
    session_cookie = copy(next(c for c in browser.session.cookies if c.name == COOKIE))

    url = logout_url(sp, name_id)
    done = browser.get(at(cluster.b.url, url))
    assert done.status_code == 303, (done.status_code, reason(done))
    message = redirect_message(done.headers["Location"])
    assert message.url == SP_SLO_URL
    assert status_codes(message.root) == (SUCCESS, None)
    logouts = [r for r in cluster.audit() if r["event"] == "logout"
               and r["data"]["request_id"] == redirect_message(url, "SAMLRequest").root.get("ID")]
    assert [(r["_instance"], r["outcome"], r["data"]["session_ended"]) for r in logouts] == [("b", "success", True)]

    # B cleared the cookie; put it back, as a browser that kept it would send it: A must not honour it
    assert COOKIE not in browser.session.cookies
    browser.session.cookies.set_cookie(session_cookie)

    later = craft.build()
    asked = browser.get(at(cluster.a.url, craft.redirect(later)))  # no certificate: only the dead session
    assert "kommun-a" in discovery_form(asked).choices["municipality"]  # A asks who the user is
    assert [e for _, e in events(cluster.login(later.request_id))] == ["login_started"]

    # a new authentication with the certificate makes a new session
    fresh = craft.build()
    answer = browser.get(at(cluster.a.url, craft.redirect(fresh)), card=cluster.card("anna"))
    assert hsa_id(sp_accepts(sp, saml_response(answer), fresh.request_id)) == [ANNA]
    issued = [r for r in cluster.login(fresh.request_id) if r["event"] == "assertion_issued"]
    assert [(r["_instance"], r["data"]["session"]) for r in issued] == [("a", "new")]


# --- (c) a login started on A completes on B ----------------------------------------------------------------


def test_municipality_chosen_on_b_completes_a_login_started_on_a(cluster: Cluster, sp: DemoSp,
                                                                  craft: AuthnRequests,
                                                                  browser: HttpsBrowser) -> None:
    """A shows the discovery page (no certificate yet); the choice, posted to B with the page's form token and
    with the certificate in B's handshake, completes the pending login stored by A."""
    crafted = craft.build()
    form = discovery_form(browser.get(at(cluster.a.url, craft.redirect(crafted))))
    assert "kommun-a" in form.choices["municipality"]

    chosen = browser.post(cluster.b.url + form.action, {**form.fields, "municipality": "kommun-a"},
                          card=cluster.card("anna"))
    result = sp_accepts(sp, saml_response(chosen), crafted.request_id)  # InResponseTo: the request A received
    assert hsa_id(result) == [ANNA]

    login = events(cluster.login(crafted.request_id))
    assert login[0] == ("a", "login_started")
    assert ("b", "assertion_issued") in login
    assert {i for i, _ in login} == {"a", "b"}


def test_try_again_on_b_with_a_certificate_completes_a_login_refused_on_a(cluster: Cluster, sp: DemoSp,
                                                                           craft: AuthnRequests,
                                                                           browser: HttpsBrowser) -> None:
    """A refuses for want of a certificate and keeps the request ("try again"); the retry reaches B, now with
    the card inserted, and B answers the SP's original request."""
    crafted = craft.build()
    form = discovery_form(browser.get(at(cluster.a.url, craft.redirect(crafted))))
    refused = browser.post(cluster.a.url + form.action, {**form.fields, "municipality": "kommun-a"})
    assert reason(refused) == "certificate_missing"

    retried = browser.get(cluster.b.url + retry_link(refused), card=cluster.card("anna"))
    result = sp_accepts(sp, saml_response(retried), crafted.request_id)
    assert hsa_id(result) == [ANNA]

    login = events(cluster.login(crafted.request_id))
    assert ("a", "login_refused") in login
    assert login[-1] == ("b", "assertion_issued")


# --- the compose stack's nginx configuration in front of both instances ------------------------------------


def test_compose_nginx_conf_spreads_requests_over_both_instances(cluster: Cluster, sp: DemoSp,
                                                                  craft: AuthnRequests, browser: HttpsBrowser,
                                                                  tmp_path: Path) -> None:
    """deploy/nginx/broker.conf with the snippet `broker proxy-config nginx --upstream http://brokers` writes,
    its upstream block naming A and B: certificates reach both, and a login works through it."""
    snippet = proxy_config(cluster.config, tmp_path / "proxy", "http://brokers")
    port = free_port()
    conf = nginx_conf_on_loopback(mounted={"/etc/nginx/tls": cluster.tls, "/etc/nginx/broker": snippet.parent},
                                  port=port, upstreams=[cluster.a.serve.url.split("//")[1],
                                                        cluster.b.serve.url.split("//")[1]])
    front = f"https://127.0.0.1:{port}"
    with Nginx(tmp_path / "nginx", certificate=cluster.tls / "server.pem", key=cluster.tls / "server.key",
               port=port, http_body=conf):
        seen = []
        for _ in range(6):
            verdict = browser.get(front + "/diagnose?format=json", card=cluster.card("anna")).json()
            assert (verdict["certificate"], verdict["accepted"], verdict["municipality"]) == (True, True, "kommun-a")
            seen.append(verdict["correlation_id"])
        by = {r["correlation_id"]: r["_instance"] for r in cluster.audit() if r["event"] == "diagnose_viewed"}
        assert {by[c] for c in seen} == {"a", "b"}  # round robin over the replicas

        crafted = craft.build()
        answer = browser.get(at(front, craft.redirect(crafted)), card=cluster.card("anna"))
        assert hsa_id(sp_accepts(sp, saml_response(answer), crafted.request_id)) == [ANNA]


# --- broker serve reads its server section ---------------------------------------------------------------


def settled_workers(serve: BrokerServe, expected: int, timeout: float = 15.0) -> set[int]:
    """The master's workers once ``expected`` of them have been there for half a second (or what is there at
    the timeout): workers start one by one, and a reload replaces them."""
    deadline = time.monotonic() + timeout
    stable_since, last = time.monotonic(), serve.workers_now()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = serve.workers_now()
        if now != last:
            stable_since, last = time.monotonic(), now
        elif len(now) == expected and time.monotonic() - stable_since >= 0.5:
            return now
    return serve.workers_now()


def test_forwarding_headers_from_a_local_peer_change_nothing(cluster: Cluster) -> None:
    """gunicorn's default trusts 127.0.0.1 and ::1 to set SCRIPT_NAME (which moves the path the app routes on)
    and the scheme headers; broker serve trusts no peer for them, so from the broker's own host they are
    ignored like from anywhere else (its trusted proxies are its configuration's, for the certificate header)."""
    plain = requests.get(cluster.a.serve.url + "/saml/idp/metadata", timeout=10)
    forged = requests.get(cluster.a.serve.url + "/saml/idp/metadata", timeout=10,
                          headers={"SCRIPT_NAME": "/saml", "X-Forwarded-Proto": "https"})
    assert (plain.status_code, forged.status_code) == (200, 200)
    assert forged.content == plain.content


def test_serve_takes_bind_workers_and_threads_from_broker_yaml(config_dir: Path, tmp_path: Path, redis_url: str,
                                                              redis_prefix: str) -> None:
    serve = serving_from_config(config_dir, tmp_path / "serve", redis_url=redis_url, redis_prefix=redis_prefix,
                                server={"workers": 2, "threads": 1})
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    with serve:  # started only when /healthz answers on the configured port
        assert len(settled_workers(serve, 2)) == 2  # the second worker may still be starting
        assert "Using worker: broker.slow_clients.DeadlineSyncWorker" in serve.log()  # threads: 1

        # a changed server section is not applied by a reload: said in the log and in the reload's audit record,
        # the running workers stay
        data["server"]["workers"] = 3
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        done = broker("reload", "--config", str(config_dir), "--pid-file", str(serve.pid_file))
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 10
        while "takes effect when the broker restarts" not in serve.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "broker.yaml's server section changed; it takes effect when the broker restarts" in serve.log()
        loads = [r for r in records([config_dir / "audit"]) if r.get("event") == "configuration_loaded"]
        assert [r["data"].get("restart_needed") for r in loads] == [None, ["server"]]
        assert len(settled_workers(serve, 2)) == 2  # the reload replaces the workers: wait until it is done
        assert requests.get(serve.url + "/healthz", timeout=10).status_code == 200


def test_serve_refuses_a_bad_bind_on_the_command_line(config_dir: Path, redis_url: str) -> None:
    result = subprocess.run([sys.executable, "-m", "broker.cli", "serve", "--config", str(config_dir),
                             "--bind", "127.0.0.1:99999"], capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "REDIS_URL": redis_url})
    assert result.returncode == 2
    assert "--bind: expected host:port" in result.stderr


@pytest.mark.parametrize(("flag", "value"), [pytest.param("--workers", "1025", id="workers"),
                                             pytest.param("--threads", "1025", id="threads"),
                                             pytest.param("--workers", "0", id="no-workers")])
def test_serve_holds_workers_and_threads_on_the_command_line_to_broker_yamls_range(config_dir: Path, flag: str,
                                                                                   value: str) -> None:
    """server.workers and server.threads are 1 to 1024 in broker.yaml; the flags that replace them must not let
    a typo fork thousands of copies of the app. Refused before anything starts (no Redis is even asked)."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run([sys.executable, "-m", "broker.cli", "serve", "--config", str(config_dir), flag, value],
                            capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for '{flag}': {value} is not in the range 1<=x<=1024" in result.stderr


def test_serve_refuses_a_unix_socket_on_the_command_line_when_proxies_are_trusted(config_dir: Path, tmp_path: Path,
                                                                                  redis_url: str) -> None:
    """broker.yaml may not bind a unix socket and trust proxies (the peer has no address to match, so every
    certificate header would be ignored); --bind must not get around that rule."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"]["trusted_networks"] = ["127.0.0.1/32"]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    socket_path = tmp_path / "broker.sock"
    result = subprocess.run([sys.executable, "-m", "broker.cli", "serve", "--config", str(config_dir),
                             "--bind", f"unix:{socket_path}"], capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "REDIS_URL": redis_url})
    assert result.returncode == 2, result.stderr
    assert "--bind: a unix socket gives the broker no peer address" in result.stderr
    assert not socket_path.exists()
