"""Complete certificate logins per second through the WSGI app (no HTTP server, no TLS).

Each login: an SP-signed AuthnRequest over HTTP-Redirect arrives at /saml/idp/sso
with anna's client certificate; the broker verifies the request signature,
checks the failed-login counters (Redis), validates the certificate (path,
profile, CRL), signs the Response, stores the session with the SP as its
participant (Redis), writes and fsyncs the audit events and returns the
auto-post page.

    .venv/bin/python bench/login_wsgi.py [--logins 2000] [--redis redis://127.0.0.1:6379/0]

Requests are prepared before timing (the SP's work is not the broker's); a
sample of responses is verified afterwards by the real pysaml2 SP.

CPU per login is also reported per batch of 100 logins: on a shared virtual
machine the others' load slows some batches down, and the median and best
batch say what a login costs with less of that noise in it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from flask import Flask

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from broker.app import create_app  # noqa: E402
from broker.config.loader import load_settings  # noqa: E402
from broker.demo.materials import generate  # noqa: E402
from broker.session.store import RedisStore  # noqa: E402
from tests.factories.saml import BASE_URL, make_sp, saml_response_form  # noqa: E402

BATCH = 100
WARM_UP = 50


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Prepared:
    """A broker app on the demo configuration, with the SP's login URLs made in advance."""

    app: Flask
    sp: Any                      # tests.factories.saml's pysaml2 SP
    urls: list[str]              # paths of the SP's signed HTTP-Redirect AuthnRequests, one per login
    environ: dict[str, str]      # anna's certificate as the TLS layer hands it over, and the host


@contextlib.contextmanager
def prepared(logins: int, redis_url: str, signing_backend: str = "cryptography") -> Iterator[Prepared]:
    """The demo configuration in a temporary directory, the app on it and ``logins`` + 50 (warm-up) login URLs;
    the audit chain is sealed on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = generate(Path(tmp) / "demo", REPO / "config" / "example", dt.datetime.now(dt.UTC))
        broker_yaml = layout.config / "broker.yaml"
        data = yaml.safe_load(broker_yaml.read_text())
        data["idp"]["signing"]["backend"] = signing_backend
        broker_yaml.write_text(yaml.safe_dump(data, allow_unicode=True))
        settings = load_settings(layout.config)
        store = RedisStore(redis_url, prefix="bench:")
        app = create_app(settings, store=store, instance_id="bench")
        metadata = app.extensions["broker"].metadata.document()
        sp = make_sp(layout.root, metadata, settings.broker.idp.entity_id)
        pem = (layout.users / "anna.pem").read_text()
        urls = [sp.login_url().split(BASE_URL, 1)[1] for _ in range(logins + WARM_UP)]
        environ = {"SSL_CLIENT_CERT": pem, "REMOTE_ADDR": "192.0.2.10", "wsgi.url_scheme": "https",
                   "HTTP_HOST": BASE_URL.split("://", 1)[1]}
        try:
            yield Prepared(app, sp, urls, environ)
        finally:
            app.extensions["broker"].audit.close()  # seal the chain while its directory still exists


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=2000)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--signing-backend", choices=("cryptography", "libxmlsec1", "xmlsec1"), default="cryptography",
                        help="idp.signing.backend")
    args = parser.parse_args()

    with prepared(args.logins, args.redis, args.signing_backend) as bench:
        app, environ = bench.app, bench.environ
        client = app.test_client()
        for url in bench.urls[:WARM_UP]:
            client.get(url, environ_base=environ)
        urls = bench.urls[WARM_UP:]

        latencies = []
        samples = []
        batches: list[float] = []
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        batch_cpu = cpu0
        for i, url in enumerate(urls):
            if i and i % BATCH == 0:
                now_cpu = cpu_seconds()
                batches.append((now_cpu - batch_cpu) / BATCH)
                batch_cpu = now_cpu
            client = app.test_client()  # every login is a new user session
            t = time.perf_counter()
            response = client.get(url, environ_base=environ)
            latencies.append(time.perf_counter() - t)
            if response.status_code != 200:
                print(f"login {i} failed: {response.status_code} {response.headers.get('X-Broker-Reason')}")
                return 1
            if i % max(1, args.logins // 20) == 0:
                samples.append(saml_response_form(response)[1]["SAMLResponse"])
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0

        for saml_response in samples:  # the real pysaml2 SP (xmlsec1) accepts what was produced
            bench.sp.accept(saml_response)

    latencies.sort()
    n = len(latencies)
    print(f"complete certificate logins through WSGI, 1 thread, real Redis ({args.redis}), "
          f"signing backend {args.signing_backend}")
    print(f"  logins:        {n}")
    print(f"  logins/s:      {n / wall:,.0f}")
    print(f"  CPU per login: {cpu / n * 1000:.2f} ms (this process; Redis not included)")
    if batches:
        print(f"  per batch of {BATCH}: median {statistics.median(batches) * 1000:.2f} ms, "
              f"best {min(batches) * 1000:.2f} ms ({len(batches)} batches)")
    print(f"  p50 / p99:     {statistics.median(latencies) * 1000:.2f} ms / {latencies[int(n * 0.99)] * 1000:.2f} ms")
    print(f"  verified by the pysaml2 SP: {len(samples)} sampled responses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
