"""Every performance measurement of docs/performance.md in one run, checked against the targets.

    .venv/bin/python bench/targets.py [--duration 15] [--json var/targets.json]

1. `bench/logins.py`: complete SP-initiated certificate logins over HTTP with 50 clients against `broker serve`
   (gunicorn, 1 and 2 workers) and, in the same run, the same flow signing through pysaml2's default `xmlsec1`
   backend.
2. `bench/federation.py --baseline satosa`: the federated login leg (the IdP's signed Response at the ACS,
   answered with the broker's signed Response) against the broker and against SATOSA from PyPI between the
   same SP and IdP. SATOSA's virtualenv is made by `bench/satosa/setup.sh` when it is missing (it downloads
   SATOSA from PyPI); `--no-satosa` measures the broker's leg alone.

Then one table: each target, what was measured and whether it is met. Per core means per CPU-second the
broker's processes used (gunicorn master and workers, from /proc). Exit status: 0 when every run was free of
errors, 1 when a run had errors or produced no result, 3 with `--strict` when a target was missed.
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
from bench.logins import TWO_WORKERS, XMLSEC1_BASELINE  # noqa: E402

SATOSA_VENV = REPO / "bench" / "satosa" / ".venv"


@dataclass(frozen=True)
class Target:
    what: str
    wanted: float
    at_most: bool          # the measured value must stay below ``wanted`` (latency), else reach it
    measured: float | None
    unit: str

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured < self.wanted if self.at_most else self.measured >= self.wanted

    def row(self) -> str:
        wanted = f"{'<' if self.at_most else '>='} {self.wanted:g}{self.unit}"
        measured = "not measured" if self.measured is None else f"{self.measured:.1f}{self.unit}"
        verdict = {True: "met", False: "NOT met", None: "-"}[self.met]
        return f"{self.what:58} {wanted:>12} {measured:>14}  {verdict}"


def targets(logins: dict[str, Any], federation: dict[str, Any] | None) -> list[Target]:
    """The issue's targets against what the two tools wrote (their --json)."""
    two = logins[TWO_WORKERS]
    cpu = two["cpu_ms_per_login"].get("broker")
    baseline_cpu = logins[XMLSEC1_BASELINE]["cpu_ms_per_login"].get("broker")
    broker_leg = (federation or {}).get("results", {}).get("broker")
    ratio = (federation or {}).get("ratio_broker_to_satosa")
    return [
        Target("certificate logins per second per core (2 workers)", 1000, False,
               1000 / cpu if cpu else None, "/s"),
        Target(f"p99 latency with {two['configuration']['clients']} clients (2 workers)", 25, True,
               two["latency_ms"]["p99"], " ms"),
        Target("logins per core against the xmlsec1 backend, same run", 20, False,
               baseline_cpu / cpu if cpu and baseline_cpu else None, "x"),
        Target("federated legs per second per core", 500, False,
               broker_leg["legs_per_second_per_core"] if broker_leg else None, "/s"),
        Target("federated legs per CPU-second against SATOSA, same run", 50, False,
               ratio["per_core"] if ratio else None, "x"),
    ]


def _run(label: str, command: list[str], out: Path) -> tuple[dict[str, Any] | None, int]:
    print(f"=== {label}: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, cwd=REPO, check=False)
    if not out.exists():
        print(f"targets: {label} produced no result (exit status {done.returncode})", file=sys.stderr)
        return None, done.returncode or 1
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent browsers of the certificate logins")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of timed load per login run")
    parser.add_argument("--baseline-duration", type=float, default=10.0, help="seconds for the xmlsec1 run")
    parser.add_argument("--legs", type=int, default=2500, help="federated legs prepared for the broker")
    parser.add_argument("--satosa-legs", type=int, default=150, help="federated legs prepared for SATOSA")
    parser.add_argument("--federation-clients", type=int, default=20, help="browsers posting to the ACS")
    parser.add_argument("--federation-duration", type=float, default=5.0,
                        help="seconds of timed federated legs (at most; the broker's legs may run out first)")
    parser.add_argument("--no-satosa", action="store_true", help="measure the broker's federated leg alone")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--strict", action="store_true", help="exit status 3 when a target is missed")
    parser.add_argument("--json", type=Path, help="write both tools' results and the targets here")
    args = parser.parse_args(argv)

    if not args.no_satosa and not (SATOSA_VENV / "bin" / "gunicorn").exists():
        print("=== SATOSA's virtualenv is missing: bench/satosa/setup.sh", flush=True)
        if subprocess.run([str(REPO / "bench" / "satosa" / "setup.sh")], cwd=REPO, check=False).returncode:
            print("targets: bench/satosa/setup.sh failed (or run with --no-satosa)", file=sys.stderr)
            return 1

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="broker-targets-") as tmp:
        logins_out, federation_out = Path(tmp) / "logins.json", Path(tmp) / "federation.json"
        logins, logins_status = _run("certificate logins", [
            python, str(REPO / "bench" / "logins.py"), "--clients", str(args.clients), "--duration",
            str(args.duration), "--baseline-duration", str(args.baseline_duration), "--redis", args.redis,
            "--json", str(logins_out)], logins_out)
        federation, federation_status = _run("federated login leg", [
            python, str(REPO / "bench" / "federation.py"), "--clients", str(args.federation_clients),
            "--duration", str(args.federation_duration),
            "--legs", str(args.legs), "--satosa-legs", str(args.satosa_legs), "--redis", args.redis,
            *(["--only", "broker"] if args.no_satosa else ["--baseline", "satosa"]),
            "--json", str(federation_out)], federation_out)
    if logins is None:
        return 1

    checked = targets(logins, federation)
    print(f"\nthe targets, on this machine ({os.cpu_count()} cores)")
    header = f"{'target':58} {'wanted':>12} {'measured':>14}  verdict"
    print(header)
    print("-" * len(header))
    for target in checked:
        print(target.row())
    if args.json:
        write_json(args.json, {
            "logins": logins, "federation": federation,
            "targets": [{"target": t.what, "wanted": t.wanted, "below": t.at_most, "measured": t.measured,
                         "met": t.met} for t in checked]})
    if logins_status or federation_status:
        return 1
    return 3 if args.strict and not all(t.met for t in checked) else 0


if __name__ == "__main__":
    sys.exit(main())
