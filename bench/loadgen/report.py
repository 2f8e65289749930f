"""The result of a load test: the generators' counts added up, latency percentiles, CPU per login, and the
exact configuration, as text and as JSON."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen.generator import GeneratorResult


def write_json(path: Path, data: Any) -> None:
    """A tool's ``--json`` results, indented; the file's directory made if missing (``var/`` in a fresh checkout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    configuration: dict[str, Any]
    logins: int
    in_window: int
    duration: float
    warmup_logins: int
    errors: dict[str, int]
    examples: dict[str, list[str]]
    elapsed: float
    latency: dict[str, float]          # seconds
    cpu: dict[str, float]              # seconds during the timed part, by process group
    cpu_notes: list[str]
    presigned: int
    presign_seconds: float
    signed_during_run: int
    expired_unused: int
    verified: int
    verify_failures: list[str]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        """Logins completed within the timed part, per second of it (the ones still running at its end
        finish afterwards and count in ``logins``, their latencies and errors, not in the rate)."""
        return self.in_window / self.duration

    def as_json(self) -> dict[str, Any]:
        return {
            "configuration": self.configuration,
            "logins": self.logins,
            "logins_in_timed_part": self.in_window,
            "logins_per_second": round(self.rate, 1),
            "errors": self.error_count,
            "errors_by_kind": self.errors,
            "error_examples": self.examples,
            "elapsed_seconds": round(self.elapsed, 3),
            "latency_ms": {k: round(v * 1000, 2) for k, v in self.latency.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu.items()},
            "cpu_ms_per_login": {k: round(v / self.logins * 1000, 3) if self.logins else None
                                 for k, v in self.cpu.items()},
            "cpu_notes": self.cpu_notes,
            "warmup_logins": self.warmup_logins,
            "requests": {"presigned": self.presigned, "presign_seconds": round(self.presign_seconds, 2),
                         "signed_during_run": self.signed_during_run, "expired_unused": self.expired_unused},
            "verified_by_sp": self.verified,
            "verify_failures": self.verify_failures,
        }


def summarise(configuration: dict[str, Any], results: list[GeneratorResult], cpu: dict[str, float],
              cpu_notes: list[str]) -> Summary:
    latencies = sorted(x for r in results for x in r.latencies)
    errors: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for result in results:
        errors.update(result.errors)
        for kind, found in result.examples.items():
            examples.setdefault(kind, []).extend(found)
    latency = {"p50": percentile(latencies, 0.50), "p90": percentile(latencies, 0.90),
               "p99": percentile(latencies, 0.99), "max": latencies[-1] if latencies else 0.0}
    return Summary(
        configuration=configuration,
        logins=sum(r.logins for r in results),
        in_window=sum(r.in_window for r in results),
        duration=float(configuration["duration"]),
        warmup_logins=sum(r.warmup_logins for r in results),
        errors=dict(sorted(errors.items())),
        examples=examples,
        elapsed=max((r.elapsed for r in results), default=0.0),
        latency=latency,
        cpu=cpu,
        cpu_notes=cpu_notes,
        presigned=sum(r.presigned for r in results),
        presign_seconds=max((r.presign_seconds for r in results), default=0.0),
        signed_during_run=sum(r.signed_during_run for r in results),
        expired_unused=sum(r.expired_unused for r in results),
        verified=sum(r.verified for r in results),
        verify_failures=[f for r in results for f in r.verify_failures],
    )


_CPU_LABELS = {"broker": "broker (gunicorn masters and workers)", "nginx": "nginx (master and workers)",
               "redis": "Redis (INFO cpu: the whole server, any other client included)",
               "generators": "load generators (not the system under test)"}


def text(summary: Summary) -> str:
    c = summary.configuration
    ms = {k: v * 1000 for k, v in summary.latency.items()}
    lines = [
        f"complete certificate logins: {c['clients']} clients for {c['duration']} s, {c['path']}",
        f"  logins:          {summary.logins} ({summary.in_window} within the {summary.duration:g} s, the rest "
        f"finishing by {summary.elapsed:.1f} s; + {summary.warmup_logins} warm-up)",
        f"  logins/s:        {summary.rate:,.1f}",
        f"  latency:         p50 {ms['p50']:.1f} ms, p90 {ms['p90']:.1f} ms, p99 {ms['p99']:.1f} ms, "
        f"max {ms['max']:.1f} ms",
        f"  errors:          {summary.error_count}",
    ]
    for kind, count in summary.errors.items():
        lines.append(f"    {kind}: {count}")
        lines.extend(f"      e.g. {example}" for example in summary.examples.get(kind, []))
    lines.append("  CPU per login (during the timed part):")
    for name, seconds in summary.cpu.items():
        per = f"{seconds / summary.logins * 1000:.2f} ms" if summary.logins else "-"
        lines.append(f"    {_CPU_LABELS.get(name, name)}: {per} ({seconds:.1f} s)")
    lines.extend(f"    note: {note}" for note in summary.cpu_notes)
    lines.append(f"  verified by the pysaml2 SP afterwards: {summary.verified} sampled responses"
                 + (f", {len(summary.verify_failures)} refused" if summary.verify_failures else ""))
    lines.extend(f"    refused: {failure}" for failure in summary.verify_failures[:5])
    lines.append(f"  AuthnRequests: {summary.presigned} signed before timing by the SP "
                 f"({summary.presign_seconds:.1f} s), {summary.signed_during_run} during the run"
                 + (f"; {summary.expired_unused} pre-signed ones dropped as too old" if summary.expired_unused else ""))
    lines.append("configuration:")
    lines.extend(f"  {key}: {value}" for key, value in c.items())
    return "\n".join(lines)
