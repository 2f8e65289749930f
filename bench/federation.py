"""The federated login leg over real HTTP: the municipal IdP's Response posted to the ACS, answered with the
signed Response to the SP. Against SATOSA on the same machine with ``--baseline satosa``.

    bench/satosa/setup.sh     # once, for --baseline satosa
    .venv/bin/python bench/federation.py --baseline satosa [--clients 20 --duration 10 --workers 2 --threads 4]

The broker runs as ``broker serve`` (gunicorn, --workers, --threads) on loopback, on the demo material (the demo
SP, Kommun C with its pysaml2 IdP) and a Redis key prefix of this run's own. SATOSA (``bench/satosa/setup.sh``
makes its virtualenv) runs under the same gunicorn settings as a SAML-to-SAML proxy in front of the same SP and
IdP (bench/satosa/proxy.py says how it is configured).

Before timing, --generators processes (not the proxy's) prepare the legs (--legs for the broker, --satosa-legs
for SATOSA), each as a fresh browser: the real pysaml2 demo SP signs an AuthnRequest (HTTP-Redirect); the
browser takes it to the proxy (to the broker with ``?municipality=kommun-c``, the SP's hint, so no discovery
page), which binds the login to the browser with a cookie (``__Host-broker_binding``; SATOSA's state cookie) and
redirects to Kommun C's IdP; the real pysaml2 IdP checks the request's signature and builds and signs
(RSA-SHA256, the xmlsec1 program) karin's Response. The proxy's AuthnRequest IDs are single-use and bound to
that browser's cookie, so each prepared leg is one browser's: its cookie, its form, the ID of the SP's request.

Timed: --clients browsers in all (asyncio, aiohttp, keep-alive connections) post the prepared forms to the
ACS with their cookie, for --duration seconds or until the legs run out. Every answer must be the auto-post
page with a signed Success Response to the SP's very request (string checks); afterwards a sample goes through
the real pysaml2 SP (signature with xmlsec1, audience, recipient, InResponseTo, times).

Printed per proxy: legs, legs/s, p50/p99 latency, the proxy's CPU per leg (utime + stime of the gunicorn master
and workers from /proc, plus their reaped children's: the xmlsec1 processes pysaml2 runs), cores used; with a
baseline, the ratios broker/SATOSA of throughput and of legs per CPU-second (throughput per core used).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import platform
import random
import resource
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402

from bench.loadgen.generator import check_answer, request_id  # noqa: E402
from bench.loadgen.report import percentile, write_json  # noqa: E402
from bench.loadgen.reports import Reports  # noqa: E402
from bench.satosa.proxy import COOKIE as SATOSA_COOKIE  # noqa: E402
from bench.satosa.proxy import SatosaProxy, installed_version  # noqa: E402
from broker.demo.idp import DEMO_IDP_USERS, DemoIdp, DemoIdpSettings  # noqa: E402
from broker.demo.materials import DemoLayout, generate  # noqa: E402
from broker.demo.sp import DemoSp, DemoSpSettings  # noqa: E402
from broker.web.services import BINDING_COOKIE  # noqa: E402
from tests.factories.redis_server import free_port  # noqa: E402
from tests.factories.serve import BrokerServe  # noqa: E402

EXAMPLE = REPO / "config" / "example"
BASE_URL = "https://localhost:8443"   # the address config/example (and so the SP's and IdP's metadata) names
KARIN = DEMO_IDP_USERS[0]             # Kommun C: HSA-id, X509 ClassRef (LoA 3), given name, surname, display name
MAX_AGE = 240.0    # seconds: the IdP's assertions live 5 minutes; a leg older than this is not posted


# --- what a load generator gets and gives back ---------------------------------------------------------

@dataclass(frozen=True)
class Peers:
    """The proxy under test as its SP and its IdP see it, and where the browsers reach it."""

    system: str                    # "broker" or "satosa"
    base_url: str                  # http://127.0.0.1:PORT
    idp_metadata: bytes            # the proxy as IdP (for the SP)
    idp_entity_id: str
    sp_metadata: bytes             # the proxy as SP (for the municipal IdP)
    cookie: str                    # the cookie that binds the login to the browser
    sso_query: str                 # added to the SP's AuthnRequest URL
    demo_root: str                 # the SP's and the IdP's keys


@dataclass(frozen=True)
class GeneratorSpec:
    index: int
    peers: Peers
    legs: int          # timed legs to prepare (plus one warm-up leg per client)
    clients: int
    duration: float
    verify: int
    timeout: float
    threads: int       # preparation threads (the IdP's xmlsec1 signatures run in parallel)


@dataclass
class GeneratorResult:
    index: int
    prepared: int = 0
    prepare_seconds: float = 0.0
    legs: int = 0                  # successful timed legs
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    started: float = 0.0           # time.monotonic() (one clock for every process on the machine)
    ended: float = 0.0
    exhausted: bool = False        # the prepared legs ran out before --duration
    cpu_seconds: float = 0.0       # this process's, during the timed part
    verified: int = 0
    verify_failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Leg:
    """One browser at the IdP's auto-post page: what it posts to the proxy's ACS, with its cookie."""

    path: str
    fields: dict[str, str]
    cookie: str
    request_id: str                # the SP's AuthnRequest ID: the proxy's Response must answer it
    prepared_at: float


# --- the load-generator process ------------------------------------------------------------------------

class _Generator:
    def __init__(self, spec: GeneratorSpec) -> None:
        self.spec = spec
        peers = spec.peers
        root = Path(peers.demo_root)
        xmlsec = shutil.which("xmlsec1")
        self.sp = DemoSp(DemoSpSettings(base_url=BASE_URL + "/demo-sp", key_file=root / "sp" / "sp.key",
                                        cert_file=root / "sp" / "sp.crt", xmlsec_binary=xmlsec),
                         peers.idp_metadata, peers.idp_entity_id)
        self.idp = DemoIdp(DemoIdpSettings(base_url=BASE_URL + "/demo-idp", key_file=root / "idp" / "idp.key",
                                           cert_file=root / "idp" / "idp.crt", xmlsec_binary=xmlsec),
                           peers.sp_metadata)
        self.result = GeneratorResult(spec.index)
        self.errors: Counter[str] = Counter()
        self.sample: list[str] = []
        self.seen = 0
        self.random = random.Random(spec.index)
        self.browsers = threading.local()

    def prepare_one(self, _: int) -> Leg:
        """SP → proxy (SSO, cookie set) → IdP (Response signed): the browser at the IdP's auto-post page."""
        peers = self.spec.peers
        session: requests.Session | None = getattr(self.browsers, "session", None)
        if session is None:
            session = self.browsers.session = requests.Session()
        login = urlsplit(self.sp.login_url())
        query = login.query + (f"&{peers.sso_query}" if peers.sso_query else "")
        answer = session.get(f"{peers.base_url}{login.path}?{query}", allow_redirects=False, timeout=30)
        cookie = answer.cookies.get(peers.cookie)
        session.cookies.clear()   # a fresh browser each time
        if answer.status_code not in (302, 303) or cookie is None:
            raise RuntimeError(f"the {peers.system} did not send the browser to the IdP: {answer.status_code} "
                               f"{answer.headers.get('X-Broker-Reason', '')} {answer.text[:300]}")
        request, relay_state = self.idp.parse_redirect(answer.headers["Location"])
        post = self.idp.respond(request, relay_state, KARIN)
        return Leg(urlsplit(post.url).path, post.fields, f"{peers.cookie}={cookie}",
                   request_id(login.geturl()), time.monotonic())

    def prepare(self) -> list[Leg]:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.spec.threads) as pool:
            legs = list(pool.map(self.prepare_one, range(self.spec.legs + self.spec.clients)))
        self.result.prepared = len(legs)
        self.result.prepare_seconds = time.perf_counter() - started
        return legs

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        self.result.examples.setdefault(kind, detail[:300])

    async def post(self, session: aiohttp.ClientSession, leg: Leg, timed: bool) -> None:
        started = time.perf_counter()
        try:
            async with session.post(self.spec.peers.base_url + leg.path, data=leg.fields,
                                    headers={"Cookie": leg.cookie}, allow_redirects=False) as answer:
                body = await answer.read()
                status, reason = answer.status, answer.headers.get("X-Broker-Reason")
        except TimeoutError:
            self.error("timeout", f"after {time.perf_counter() - started:.1f} s")
            return
        except aiohttp.ClientError as exc:
            self.error(f"connection:{type(exc).__name__}", str(exc))
            return
        finished = time.perf_counter()
        kind, saml_response = check_answer(status, reason, body, leg.request_id)
        if kind is not None:
            self.error(kind if timed else f"warmup/{kind}", f"{status} {body[:300]!r}")
            return
        assert saml_response is not None
        if not timed:
            return
        self.result.legs += 1
        self.result.latencies.append(finished - started)
        self.seen += 1   # a uniform sample of the answers for the SP (Algorithm R)
        if len(self.sample) < self.spec.verify:
            self.sample.append(saml_response)
        elif (slot := self.random.randrange(self.seen)) < self.spec.verify:
            self.sample[slot] = saml_response

    async def drive(self, legs: list[Leg], messages: Queue[tuple[str, int, object]], go: Event) -> None:
        spec = self.spec
        connector = aiohttp.TCPConnector(limit=spec.clients)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                         timeout=aiohttp.ClientTimeout(total=spec.timeout)) as session:
            # warm-up: one leg per client (connections open, workers warm); checked, not timed
            await asyncio.gather(*(self.post(session, leg, False) for leg in legs[:spec.clients]))
            pool = deque(legs[spec.clients:])
            messages.put(("ready", spec.index, None))
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            cpu = _own_cpu()
            self.result.started = time.monotonic()
            deadline = self.result.started + spec.duration

            async def client() -> None:
                while pool and time.monotonic() < deadline:
                    leg = pool.popleft()
                    if time.monotonic() - leg.prepared_at > MAX_AGE:
                        self.error("leg_too_old", "prepared more than 4 minutes before: the assertion may expire")
                        continue
                    await self.post(session, leg, True)

            await asyncio.gather(*(client() for _ in range(spec.clients)))
            self.result.ended = time.monotonic()
            self.result.exhausted = not pool and self.result.ended < deadline
            self.result.cpu_seconds = _own_cpu() - cpu
            messages.put(("timed", spec.index, None))

    def verify(self) -> None:
        for saml_response in self.sample:
            try:
                self.sp.accept(saml_response)
            except Exception as exc:  # whatever pysaml2 raises, the Response was refused
                self.result.verify_failures.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                self.result.verified += 1


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_generator(spec: GeneratorSpec, messages: Queue[tuple[str, int, object]], go: Event) -> None:
    """A load-generator process. To the parent: ``ready`` (legs prepared, connections warm), ``timed``, then
    ``result`` with the :class:`GeneratorResult`, or ``failed`` with a traceback."""
    try:
        generator = _Generator(spec)
        legs = generator.prepare()
        asyncio.run(generator.drive(legs, messages, go))
        generator.verify()
        generator.result.errors = dict(generator.errors)
        messages.put(("result", spec.index, generator.result))
    except BaseException:
        messages.put(("failed", spec.index, traceback.format_exc()))
        raise


# --- CPU of a gunicorn master and its workers ----------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proxy_cpu(master: int) -> dict[int, tuple[float, float]]:
    """pid → (utime + stime, cutime + cstime) in seconds, of ``master`` and its children (the workers). The
    second is what a worker's reaped children used: the xmlsec1 processes pysaml2 runs (``man 5 proc``); the
    master's would be its workers' when one ends, so it is left out."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        pid = int(stat.parent.name)
        if pid == master:
            found[pid] = ((int(fields[11]) + int(fields[12])) / _TICK, 0.0)
        elif int(fields[1]) == master:
            found[pid] = ((int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK)
    return found


def _redis_cpu(url: str) -> float:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]  # sync client: a dict
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


# --- one measurement -----------------------------------------------------------------------------------

def measure(peers: Peers, master: int, args: argparse.Namespace, legs_wanted: int,
            redis_url: str | None) -> dict[str, Any]:
    """Prepare, time and check the legs against one proxy; its numbers as a JSON-able dict."""
    context = multiprocessing.get_context("spawn")
    messages: Queue[tuple[str, int, object]] = context.Queue()
    go = context.Event()
    count = args.generators
    specs = [GeneratorSpec(index=i, peers=peers, legs=legs_wanted // count + (i < legs_wanted % count),
                           clients=args.clients // count + (i < args.clients % count), duration=args.duration,
                           verify=max(1, args.verify // count), timeout=args.timeout, threads=args.prepare_threads)
             for i in range(count)]
    processes = [context.Process(target=run_generator, args=(spec, messages, go), daemon=True) for spec in specs]
    for process in processes:
        process.start()
    try:
        print(f"{peers.system}: preparing {legs_wanted + args.clients} legs in {count} processes ...", flush=True)
        prepared_at = time.monotonic()
        reports = Reports(messages, processes)
        reports.collect("ready", 600)
        prepare_wall = time.monotonic() - prepared_at
        if prepare_wall + args.duration > MAX_AGE:
            print(f"{peers.system}: preparing took {prepare_wall:.0f} s: the first legs may be too old to post "
                  f"(more than {MAX_AGE:.0f} s); fewer legs or more --generators", file=sys.stderr)
        before, redis_before = proxy_cpu(master), _redis_cpu(redis_url) if redis_url else None
        load_before = os.getloadavg()
        go.set()
        reports.collect("timed", args.duration + args.timeout + 60)
        after, redis_after = proxy_cpu(master), _redis_cpu(redis_url) if redis_url else None
        load_after = os.getloadavg()
        results = [r for _, r in sorted(reports.collect("result", 600).items())
                   if isinstance(r, GeneratorResult)]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    own = sum(cpu[0] - before.get(pid, (0.0, 0.0))[0] for pid, cpu in after.items())
    children = sum(cpu[1] - before.get(pid, (0.0, 0.0))[1] for pid, cpu in after.items())
    legs = sum(r.legs for r in results)
    window = max(r.ended for r in results) - min(r.started for r in results)
    latencies = sorted(x for r in results for x in r.latencies)
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for r in results:
        errors.update(r.errors)
        for kind, example in r.examples.items():
            examples.setdefault(kind, example)
    per_leg = (own + children) / legs if legs else None
    summary = {
        "system": peers.system,
        "legs": legs,
        "seconds": round(window, 3),
        "legs_per_second": round(legs / window, 1) if window else None,
        "latency_ms": {"p50": round(percentile(latencies, 0.5) * 1000, 2),
                       "p90": round(percentile(latencies, 0.9) * 1000, 2),
                       "p99": round(percentile(latencies, 0.99) * 1000, 2),
                       "max": round(latencies[-1] * 1000, 2) if latencies else 0.0},
        "cpu_ms_per_leg": round(per_leg * 1000, 3) if per_leg else None,
        "cpu_ms_per_leg_in_child_processes": round(children / legs * 1000, 3) if legs else None,
        "cores_used": round((own + children) / window, 2) if window else None,
        "legs_per_second_per_core": round(legs / (own + children), 1) if own + children else None,
        "generator_cpu_ms_per_leg": round(sum(r.cpu_seconds for r in results) / legs * 1000, 3) if legs else None,
        "legs_ran_out": any(r.exhausted for r in results),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "error_examples": examples,
        "verified_by_sp": sum(r.verified for r in results),
        "verify_failures": [f for r in results for f in r.verify_failures],
        "prepared": sum(r.prepared for r in results),
        "prepare_seconds": round(prepare_wall, 1),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "workers_replaced": sorted(set(before) - set(after)),   # their CPU during the run is not counted
    }
    if redis_before is not None and redis_after is not None:
        summary["redis_cpu_ms_per_leg"] = round((redis_after - redis_before) / legs * 1000, 3) if legs else None
    return summary


# --- the two systems -----------------------------------------------------------------------------------

def run_broker(args: argparse.Namespace, workdir: Path, demo: DemoLayout) -> dict[str, Any]:
    config = workdir / "broker-config"
    shutil.copytree(demo.config, config)
    prefix = f"bench-federation:{secrets.token_hex(6)}:"
    broker_yaml = config / "broker.yaml"
    data = yaml.safe_load(broker_yaml.read_text(encoding="utf-8"))
    data["redis"] = {"url": args.redis, "key_prefix": prefix}
    broker_yaml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    serve = BrokerServe(config, workdir / "broker", redis_url=args.redis, workers=args.workers,
                        threads=args.threads)
    try:
        serve.start(timeout=60)
        peers = Peers("broker", serve.url, _get(serve.url + "/saml/idp/metadata"), data["idp"]["entity_id"],
                      _get(serve.url + "/saml/sp/metadata"), BINDING_COOKIE, "municipality=kommun-c",
                      str(demo.root))
        summary = measure(peers, serve.pid, args, args.legs, args.redis)
        if summary["errors"]:
            print(serve.log(), file=sys.stderr)
        summary["version"] = "broker " + _git_describe()
        summary["redis_key_prefix"] = prefix
        return summary
    finally:
        serve.stop()
        _forget(args.redis, prefix)


def run_satosa(args: argparse.Namespace, workdir: Path, demo: DemoLayout) -> dict[str, Any]:
    proxy = SatosaProxy(workdir / "satosa", demo, port=free_port(), workers=args.workers, threads=args.threads)
    with proxy:
        peers = Peers("satosa", proxy.url, proxy.metadata(proxy.idp_entity_id), proxy.idp_entity_id,
                      proxy.metadata(proxy.sp_entity_id), SATOSA_COOKIE, "", str(demo.root))
        summary = measure(peers, proxy.pid, args, args.satosa_legs, None)
        if summary["errors"]:
            print(proxy.log(), file=sys.stderr)
    summary["version"] = installed_version()
    return summary


def _get(url: str) -> bytes:
    answer = requests.get(url, timeout=30)
    answer.raise_for_status()
    return answer.content


def _forget(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
    finally:
        client.close()


def _git_describe() -> str:
    found = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=REPO,
                           timeout=30, check=False)
    return found.stdout.strip() or "(no git)"


# --- report --------------------------------------------------------------------------------------------

def _row(s: dict[str, Any]) -> str:
    child = s["cpu_ms_per_leg_in_child_processes"] or 0.0
    return (f"{s['system']:<8}{s['legs']:>7}{s['legs_per_second'] or 0:>9.1f}{s['cores_used'] or 0:>7.2f}"
            f"{s['legs_per_second_per_core'] or 0:>10.1f}{s['latency_ms']['p50']:>9.1f}{s['latency_ms']['p99']:>9.1f}"
            f"{s['cpu_ms_per_leg'] or 0:>9.2f}{child:>9.2f}{s['errors']:>8}  {s['verified_by_sp']} verified by the SP"
            + ("  (legs ran out)" if s["legs_ran_out"] else "")
            + ("  (a worker was replaced: its CPU is not counted)" if s["workers_replaced"] else ""))


def report(configuration: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    print(f"\nfederated login leg: IdP Response → ACS → signed Response to the SP; {configuration['clients']} "
          f"clients, {configuration['workers']} workers x {configuration['threads']} threads, "
          f"{configuration['cpus']} CPUs, load average {configuration['load_average']}")
    print(f"{'':<8}{'legs':>7}{'legs/s':>9}{'cores':>7}{'per core':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms':>9}"
          f"{'xmlsec1':>9}{'errors':>8}")
    for s in results:
        print(_row(s))
        for kind, example in s["error_examples"].items():
            print(f"    {kind}: {example}")
    for s in results:
        print(f"  {s['system']}: {s['version']}; {s['prepared']} legs prepared in {s['prepare_seconds']} s"
              + (f"; Redis CPU {s['redis_cpu_ms_per_leg']} ms per leg (whole server)"
                 if "redis_cpu_ms_per_leg" in s else ""))
    out: dict[str, Any] = {"configuration": configuration, "results": {s["system"]: s for s in results}}
    by = out["results"]
    if "broker" in by and "satosa" in by and by["satosa"]["legs_per_second"] and by["broker"]["cpu_ms_per_leg"]:
        broker, satosa = by["broker"], by["satosa"]
        ratio = out["ratio_broker_to_satosa"] = {
            "throughput": round(broker["legs_per_second"] / satosa["legs_per_second"], 2),
            "per_core": round(satosa["cpu_ms_per_leg"] / broker["cpu_ms_per_leg"], 2),
        }
        line = (f"broker/SATOSA: legs/s x{ratio['throughput']}; legs per CPU-second (legs/s per core used) "
                f"x{ratio['per_core']}")
        if broker.get("redis_cpu_ms_per_leg"):
            # an upper bound of the broker's Redis share: the server's whole CPU, other clients included
            ratio["per_core_with_redis"] = round(
                satosa["cpu_ms_per_leg"] / (broker["cpu_ms_per_leg"] + broker["redis_cpu_ms_per_leg"]), 2)
            line += f", x{ratio['per_core_with_redis']} with Redis's CPU added to the broker's"
        print(line)
    return out


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20, help="concurrent browsers posting to the ACS")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of timed load (at most)")
    parser.add_argument("--legs", type=int, default=4000,
                        help="legs prepared for the broker; the timed part ends early if they run out")
    parser.add_argument("--satosa-legs", type=int, default=300, help="legs prepared for SATOSA")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (each proxy)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (each proxy)")
    parser.add_argument("--generators", type=int, default=2, help="load-generator processes")
    parser.add_argument("--prepare-threads", type=int, default=3, help="threads preparing legs, per generator")
    parser.add_argument("--baseline", choices=("none", "satosa"), default="none",
                        help="also measure SATOSA (bench/satosa/setup.sh first), after the broker")
    parser.add_argument("--only", choices=("broker", "satosa"), help="measure one system only")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="the broker's Redis (a key prefix of this run's own, removed afterwards)")
    parser.add_argument("--verify", type=int, default=20, help="answers verified by the pysaml2 SP, per proxy")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--workdir", type=Path, help="keep the configurations and logs here")
    args = parser.parse_args(argv)
    for name in ("clients", "legs", "satosa_legs", "workers", "threads", "generators", "prepare_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.generators = min(args.generators, args.clients)
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    systems = [args.only] if args.only else ["broker", *(["satosa"] if args.baseline == "satosa" else [])]
    configuration = {
        "command": shlex.join([Path(sys.executable).name, "bench/federation.py", *sys.argv[1:]]),
        "clients": args.clients, "duration": args.duration, "legs": args.legs, "satosa_legs": args.satosa_legs,
        "workers": args.workers,
        "threads": args.threads, "generators": args.generators, "cpus": os.cpu_count(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()), "python": platform.python_version(),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "user": f"{KARIN.name} (Kommun C's pysaml2 IdP, signed Assertion, RSA-SHA256)",
    }
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as temporary:
        workdir = args.workdir.resolve() if args.workdir else Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        demo = generate(workdir / "demo", EXAMPLE, dt.datetime.now(dt.UTC))
        for system in systems:
            try:
                results.append((run_broker if system == "broker" else run_satosa)(args, workdir, demo))
            except RuntimeError as exc:
                print(f"federation: {system}: {exc}", file=sys.stderr)
                return 2
    out = report(configuration, results)
    if args.json:
        write_json(args.json, out)
    failed = any(s["errors"] or s["verify_failures"] or not s["legs"] for s in results)
    return 1 if failed else 0


if __name__ == "__main__":
    # run as bench.federation, so that what goes to and from the load generators pickles by that module's name
    from bench import federation

    sys.exit(federation.main())
