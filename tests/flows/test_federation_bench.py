"""bench/federation.py, the federated login leg over HTTP, works against the broker: a short run.

The numbers are not judged here (docs/performance.md has them), nor is SATOSA run (its virtualenv is made
by hand, bench/satosa/setup.sh); only that the tool starts `broker serve`, prepares complete legs through the
SP, the broker and the IdP, posts them to the ACS without error, has the real pysaml2 SP accept a sample,
and removes its Redis keys.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from bench.loadgen.reports import Reports
from tests.factories.saml import xmlsec_binary

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_short_federation_run_has_no_error(tmp_path: Path, redis_url: str) -> None:
    xmlsec_binary()
    result_file = tmp_path / "federation.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "federation.py"), "--only", "broker", "--clients", "2",
         "--generators", "1", "--duration", "2", "--legs", "30", "--verify", "3", "--redis", redis_url,
         "--json", str(result_file)],
        capture_output=True, text=True, timeout=180, check=False, cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    assert done.returncode == 0, done.stdout + done.stderr[-6000:]

    broker = json.loads(result_file.read_text())["results"]["broker"]
    assert broker["errors"] == 0, broker["errors_by_kind"]
    assert broker["legs"] > 0
    assert broker["legs_per_second"] > 0
    assert broker["cpu_ms_per_leg"] > 0
    assert broker["cpu_ms_per_leg_in_child_processes"] == 0   # no subprocess on the broker's path
    assert broker["verified_by_sp"] == 3
    assert broker["verify_failures"] == []

    prefix = broker["redis_key_prefix"]
    assert prefix.startswith("bench-federation:")
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=prefix + "*", count=1000)) == []  # the run's keys are gone
    finally:
        client.close()


def test_a_generator_that_ends_without_reporting_stops_the_wait_at_once() -> None:
    """A generator process that ends (status 0) without its report is named within seconds, instead of the
    parent waiting out the whole timeout."""
    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    silent = context.Process(target=time.sleep, args=(0,), daemon=True)
    silent.start()
    silent.join(timeout=30)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"load generator 0 \(exit status 0\) ended without reporting 'ready'"):
        Reports(messages, [silent]).collect("ready", 600)
    assert time.monotonic() - started < 10


def test_a_report_that_comes_before_its_turn_is_kept_for_it() -> None:
    """Generator 0 reports its result while generator 1's end of timing is still awaited: the result is kept
    for the collection of results (it used to be dropped, and the run waited for it until its timeout)."""
    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    for report in [("ready", 0, None), ("ready", 1, None), ("timed", 0, None), ("result", 0, "r0"),
                   ("timed", 1, None), ("result", 1, "r1")]:
        messages.put(report)
    generators: Any = [SimpleNamespace(exitcode=None), SimpleNamespace(exitcode=None)]
    reports = Reports(messages, generators)
    assert reports.collect("ready", 10) == {0: None, 1: None}
    assert reports.collect("timed", 10) == {0: None, 1: None}
    generators[0].exitcode = 0  # it has ended after its result; that result is already here
    started = time.monotonic()
    assert reports.collect("result", 10) == {0: "r0", 1: "r1"}
    assert time.monotonic() - started < 5


def test_a_failure_ends_the_wait_with_its_traceback() -> None:
    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    messages.put(("failed", 1, "Traceback (most recent call last): ... ValueError: boom"))
    generators: Any = [SimpleNamespace(exitcode=None), SimpleNamespace(exitcode=None)]
    with pytest.raises(RuntimeError, match=r"load generator 1 failed:\nTraceback .* ValueError: boom"):
        Reports(messages, generators).collect("ready", 10)


def test_targets_runs_both_tools_and_checks_every_target(tmp_path: Path, redis_url: str) -> None:
    """bench/targets.py, the one command of docs/performance.md: both tools run (here briefly, SATOSA left out),
    and each target is reported with what was measured; a target not measured is said to be so."""
    xmlsec_binary()
    result_file = tmp_path / "targets.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "targets.py"), "--clients", "4", "--duration", "2",
         "--baseline-duration", "2", "--legs", "30", "--federation-clients", "2", "--federation-duration", "2",
         "--no-satosa", "--redis", redis_url, "--json", str(result_file)],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]

    result = json.loads(result_file.read_text())
    measured = {t["target"]: t for t in result["targets"]}
    assert list(measured) == [
        "certificate logins per second per core (2 workers)", "p99 latency with 4 clients (2 workers)",
        "logins per core against the xmlsec1 backend, same run", "federated legs per second per core",
        "federated legs per CPU-second against SATOSA, same run"]
    logins = result["logins"]["broker, 2 workers"]
    assert measured["certificate logins per second per core (2 workers)"]["measured"] == pytest.approx(
        1000 / logins["cpu_ms_per_login"]["broker"])
    assert measured["p99 latency with 4 clients (2 workers)"]["measured"] == logins["latency_ms"]["p99"]
    assert measured["logins per core against the xmlsec1 backend, same run"]["measured"] > 1
    assert measured["federated legs per second per core"]["measured"] == (
        result["federation"]["results"]["broker"]["legs_per_second_per_core"])
    assert measured["federated legs per CPU-second against SATOSA, same run"] == {
        "target": "federated legs per CPU-second against SATOSA, same run", "wanted": 50, "below": False,
        "measured": None, "met": None}
    assert "federated legs per CPU-second against SATOSA, same run" in done.stdout
    assert "not measured" in done.stdout
