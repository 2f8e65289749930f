"""bench/federation.py, the federated login leg over HTTP, works against the broker: a short run.

The numbers are not judged here (docs/performance.md has them), nor is SATOSA run (its virtualenv is made
by hand, bench/satosa/setup.sh); only that the tool starts `broker serve`, prepares complete legs through the
SP, the broker and the IdP, posts them to the ACS without error, has the real pysaml2 SP accept a sample,
and removes its Redis keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
