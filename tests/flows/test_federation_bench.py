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
from typing import Any

import pytest
import redis

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
    parent waiting out the whole preparation timeout."""
    from bench.federation import _collect

    context = multiprocessing.get_context("spawn")
    messages: Any = context.Queue()
    silent = context.Process(target=time.sleep, args=(0,), daemon=True)
    silent.start()
    silent.join(timeout=30)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"load generator 0 \(exit status 0\) ended without reporting 'ready'"):
        _collect(messages, [silent], "ready", 600)
    assert time.monotonic() - started < 10
