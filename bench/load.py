"""Load test: complete certificate logins from many browsers at once against N instances of `broker serve`,
behind nginx as in production (or straight to the instances).

    .venv/bin/python bench/load.py --clients 200 --duration 60 --instances 2 --via nginx --json load.json

Everything runs on loopback in a temporary directory: demo material (anna's certificate, Kommun A, LoA 3),
a Redis key prefix of this run's own on --redis (or --private-redis), --instances times `broker serve` (gunicorn,
--workers and --threads each) and, with --via nginx, nginx in front of them (TLS with the client-certificate
request, the certificate forwarded in the header, an upstream block with every instance and keep-alive
connections), configured from `broker proxy-config nginx`. With --via direct the browsers talk HTTP to the
instances and send the certificate header themselves, from 127.0.0.1, the trusted proxy address.

--generators processes (not the broker's) run --clients browsers in all (asyncio, aiohttp). Each browser
logs in again and again for --duration seconds, each time as a fresh browser without cookies: an
SP-signed AuthnRequest (HTTP-Redirect) to /saml/idp/sso with the certificate, answered by the auto-post page
with a signed Success Response to that request. The connection is kept alive between logins, as a browser
keeps it (--fresh-connections: a new connection and TLS handshake per login). The SP signs the requests
into a pool before timing; a sample of the Responses is verified by the real pysaml2 SP afterwards.

Printed: logins, errors by kind, logins/s, p50/p90/p99/max latency, CPU per login of the broker processes,
nginx, Redis and the generators, and the configuration. Exit status: 0 with no error and at least one
login, 1 otherwise, 2 when the stack could not be started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import shlex
import sys
import tempfile
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen.generator import GeneratorResult, GeneratorSpec, run_generator  # noqa: E402
from bench.loadgen.report import Summary, summarise, text, write_json  # noqa: E402
from bench.loadgen.reports import Reports  # noqa: E402
from bench.loadgen.stack import USER, CpuMeter, Stack, StackOptions  # noqa: E402

PRESIGN_PER_SECOND = 400   # requests signed before timing, per second of --duration (more are signed if needed)
PRESIGN_SECONDS = 420      # at most for this many seconds: older requests would be dropped (POOL_MAX_AGE)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--via", choices=("nginx", "direct"), default="nginx",
                        help="nginx in front (TLS, client certificate) or HTTP straight to the instances")
    parser.add_argument("--clients", type=int, default=200, help="concurrent browsers")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of timed load")
    parser.add_argument("--instances", type=int, default=2, help="`broker serve` instances")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per instance")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--generators", type=int, default=2, help="load-generator processes")
    parser.add_argument("--nginx-workers", default="auto", help="nginx worker_processes")
    parser.add_argument("--upstream-keepalive", type=int, default=32,
                        help="idle keep-alive connections per nginx worker to the instances")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="the Redis to use, with a key prefix of this run's own")
    parser.add_argument("--private-redis", action="store_true", help="start a redis-server of this run's own")
    parser.add_argument("--fresh-connections", action="store_true",
                        help="a new connection (and TLS handshake) per login instead of keep-alive")
    parser.add_argument("--presign", type=int, default=None,
                        help=f"AuthnRequests signed before timing [default: {PRESIGN_PER_SECOND} per second of "
                             f"--duration, at most {PRESIGN_SECONDS} s of it, plus one per client]")
    parser.add_argument("--verify", type=int, default=20, help="sampled Responses verified by the pysaml2 SP")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one login may take")
    parser.add_argument("--signing-backend", choices=("cryptography", "libxmlsec1", "xmlsec1"), default="cryptography",
                        help="how the broker signs Responses (idp.signing.backend): in process, by default or "
                             "through python-xmlsec, or pysaml2's xmlsec1 program each time")
    parser.add_argument("--workdir", type=Path, help="keep the stack's files (logs, audit) here")
    parser.add_argument("--json", type=Path, help="write the result to this file as JSON")
    args = parser.parse_args(argv)
    for name in ("clients", "instances", "workers", "threads", "generators"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    args.generators = min(args.generators, args.clients)
    if args.presign is None:
        args.presign = int(min(args.duration, PRESIGN_SECONDS) * PRESIGN_PER_SECOND) + args.clients
    return args


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never print a password
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def configuration(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    nginx = stack.nginx
    if args.via == "nginx":
        path = (f"through nginx (TLS, client certificate in the handshake) to {args.instances} instance(s) "
                f"of broker serve")
    else:
        path = f"HTTP straight to {args.instances} instance(s) of broker serve (certificate header from 127.0.0.1)"
    return {
        "path": path,
        "command": shlex.join([Path(sys.executable).name, "bench/load.py", *sys.argv[1:]]),
        "via": args.via,
        "instances": args.instances,
        "workers_per_instance": args.workers,
        "threads_per_worker": args.threads,
        "signing_backend": args.signing_backend,
        "nginx_workers": args.nginx_workers if nginx else None,
        "nginx_upstream_keepalive": args.upstream_keepalive if nginx else None,
        "nginx_version": nginx.version() if nginx else None,
        "clients": args.clients,
        "generators": args.generators,
        "duration": args.duration,
        "connections": "new per login" if args.fresh_connections else "kept alive between logins",
        "user": f"{USER} (Kommun A, HSA-id, LoA 3, revocation by CRL files)",
        "redis": f"{'private redis-server ' if args.private_redis else ''}{_safe_url(stack.redis_url)}",
        "redis_key_prefix": stack.prefix,
        "cpus": os.cpu_count(),
        "load_average_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


class Generators:
    """The load-generator processes, started before the stack so that their imports overlap its start."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.inbox: Queue[GeneratorSpec | None] = context.Queue()
        self.messages: Queue[tuple[str, int, object]] = context.Queue()
        self.go = context.Event()
        self.processes: list[BaseProcess] = [
            context.Process(target=run_generator, args=(self.inbox, self.messages, self.go), daemon=True)
            for _ in range(count)]
        for process in self.processes:
            process.start()
        self.reports = Reports(self.messages, self.processes)

    def collect(self, kind: str, timeout: float) -> dict[int, object]:
        """Wait for one ``kind`` report from every generator; a generator's failure ends the run."""
        return self.reports.collect(kind, timeout)

    def close(self) -> None:
        for _ in self.processes:
            self.inbox.put(None)  # for those still waiting for a spec
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)


def drive(args: argparse.Namespace, stack: Stack, generators: Generators) -> Summary:
    shares = [args.clients // args.generators + (1 if i < args.clients % args.generators else 0)
              for i in range(args.generators)]
    for index, clients in enumerate(shares):
        generators.inbox.put(GeneratorSpec(
            index=index, clients=clients, first_client=sum(shares[:index]), duration=args.duration,
            targets=stack.targets, headers=stack.headers, client_cert=stack.client_cert, ca_file=stack.ca_file,
            demo_root=str(stack.demo.root), idp_metadata=stack.idp_metadata, idp_entity_id=stack.idp_entity_id,
            presign=args.presign * clients // args.clients + 1,
            verify=max(1, args.verify * clients // args.clients), timeout=args.timeout,
            fresh_connections=args.fresh_connections, seed=index))
    config = configuration(args, stack)
    # generous: signing the pool (about 1 ms a request), then one warm-up login per browser
    generators.collect("ready", args.presign / args.generators * 0.005 + args.timeout + 120)
    meter = stack.meter()
    before = meter.read()
    generators.go.set()
    generators.collect("timed", args.duration + args.timeout + 120)
    after = meter.read()
    config["load_average_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    payloads = generators.collect("result", 600)
    results = [payload for _, payload in sorted(payloads.items()) if isinstance(payload, GeneratorResult)]
    cpu, notes = CpuMeter.spent(before, after)
    cpu["generators"] = sum(r.cpu_seconds for r in results)
    return summarise(config, results, cpu, notes)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    generators = Generators(args.generators)
    try:
        with tempfile.TemporaryDirectory(prefix="broker-load-") as temporary:
            workdir = args.workdir.resolve() if args.workdir else Path(temporary)
            workdir.mkdir(parents=True, exist_ok=True)
            options = StackOptions(via=args.via, instances=args.instances, workers=args.workers,
                                   threads=args.threads, nginx_workers=args.nginx_workers,
                                   upstream_keepalive=args.upstream_keepalive, redis_url=args.redis,
                                   private_redis=args.private_redis, workdir=workdir,
                                   signing_backend=args.signing_backend)
            stack = Stack(options)
            try:
                with stack:
                    summary = drive(args, stack, generators)
            except RuntimeError as exc:
                print(f"load: {exc}", file=sys.stderr)
                print(stack.logs(), file=sys.stderr)
                return 2
            if summary.error_count:
                print(stack.logs(), file=sys.stderr)
    finally:
        generators.close()
    print(text(summary))
    if args.json:
        write_json(args.json, summary.as_json())
    return 0 if summary.error_count == 0 and summary.logins > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
