"""Complete SP-initiated certificate logins over real HTTP: the broker under gunicorn with 1 and 2 workers,
against the same flow signed by pysaml2's default `xmlsec1` backend, in one run.

    .venv/bin/python bench/logins.py [--clients 50] [--duration 20] [--json logins.json]

Each configuration is one `bench/load.py --via direct` run (a fresh stack: demo material, `broker serve`
on loopback without TLS, the certificate header from the trusted address 127.0.0.1, real Redis, audit
fsynced before every answer); the load generators run in their own processes. Printed per configuration:
logins/s, p50 and p99 latency, the broker's CPU per login (gunicorn master and workers, from /proc) and
what that CPU cost means per core (1000 ms / CPU per login), then the ratios against the `xmlsec1`
baseline. Exit status 1 if any run had an error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen.report import write_json  # noqa: E402

# the labels of the runs, as printed and as the keys of --json (bench/targets.py reads two of them)
TWO_WORKERS = "broker, 2 workers"
XMLSEC1_BASELINE = "same flow, pysaml2 xmlsec1 backend, 1 worker"


@dataclass(frozen=True)
class Run:
    label: str
    workers: int
    threads: int
    backend: str


def run(spec: Run, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    command = [sys.executable, str(REPO / "bench" / "load.py"), "--via", "direct", "--instances", "1",
               "--workers", str(spec.workers), "--threads", str(spec.threads), "--signing-backend", spec.backend,
               "--clients", str(args.clients), "--duration", str(args.duration), "--generators",
               str(args.generators), "--redis", args.redis, "--json", str(out)]
    print(f"--- {spec.label}: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if not out.exists():
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{spec.label}: the run produced no result (exit {done.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent browsers per run")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of timed load per run")
    parser.add_argument("--baseline-duration", type=float, default=None,
                        help="seconds for the xmlsec1 run [default: --duration]")
    parser.add_argument("--generators", type=int, default=1, help="load-generator processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", type=Path, help="write every run's result here")
    parser.add_argument("--libxmlsec1", action="store_true",
                        help="also run 2 workers signing through python-xmlsec (idp.signing.backend: libxmlsec1)")
    args = parser.parse_args()

    runs = [Run("broker, 1 worker", 1, args.threads, "cryptography"),
            Run(TWO_WORKERS, 2, args.threads, "cryptography"),
            *([Run("broker, 2 workers, libxmlsec1 signing", 2, args.threads, "libxmlsec1")] if args.libxmlsec1 else []),
            Run(XMLSEC1_BASELINE, 1, args.threads, "xmlsec1")]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
        for index, spec in enumerate(runs):
            duration = args.baseline_duration if spec.backend == "xmlsec1" and args.baseline_duration else None
            local = argparse.Namespace(**{**vars(args), "duration": duration or args.duration})
            results[spec.label] = run(spec, local, Path(tmp) / f"run{index}.json")

    print()
    print(f"complete certificate logins, {args.clients} concurrent clients, HTTP on loopback, {os.cpu_count()} cores")
    header = f"{'configuration':48} {'logins/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU/login':>10} {'/s per core':>12}"
    print(header)
    print("-" * len(header))
    per_core: dict[str, float] = {}
    failed = False
    for label, result in results.items():
        cpu_ms = result["cpu_ms_per_login"].get("broker") or 0.0
        per_core[label] = 1000.0 / cpu_ms if cpu_ms else 0.0
        latency = result["latency_ms"]
        print(f"{label:48} {result['logins_per_second']:>9.1f} {latency['p50']:>8.1f} {latency['p99']:>8.1f} "
              f"{cpu_ms:>8.2f}ms {per_core[label]:>12.0f}")
        if result["errors"]:
            failed = True
            print(f"  errors: {result['errors_by_kind']}")
    baseline = per_core[runs[-1].label]
    if baseline:
        print()
        for spec in runs[:-1]:
            print(f"{spec.label}: {per_core[spec.label] / baseline:.1f}x the xmlsec1 baseline per core, "
                  f"{results[spec.label]['logins_per_second'] / results[runs[-1].label]['logins_per_second']:.1f}x "
                  f"its throughput")
    if args.json:
        write_json(args.json, results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
