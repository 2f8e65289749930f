"""bench/load.py, the load test, works: a short run through real nginx to two `broker serve` instances.

The numbers are not judged here (docs/performance.md has them); only that the tool starts the whole stack,
drives complete certificate logins from its own processes, counts them without error, has the real pysaml2
SP accept a sample, and cleans up after itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.factories.nginx import nginx_binary
from tests.factories.saml import xmlsec_binary

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_short_load_run_through_nginx_has_no_error(tmp_path: Path, redis_url: str) -> None:
    nginx_binary()
    xmlsec_binary()
    result_file = tmp_path / "var" / "load.json"   # a directory not there yet, as var/ in a fresh checkout
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), "--clients", "4", "--duration", "3", "--instances", "2",
         "--via", "nginx", "--redis", redis_url, "--verify", "4", "--json", str(result_file)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    assert done.returncode == 0, done.stdout + done.stderr[-6000:]

    result = json.loads(result_file.read_text())
    assert result["errors"] == 0, result["errors_by_kind"]
    assert result["logins"] > 0
    assert result["logins_per_second"] > 0
    assert result["verified_by_sp"] == 4
    assert result["configuration"]["via"] == "nginx"
    assert result["configuration"]["instances"] == 2
    assert result["cpu_ms_per_login"]["broker"] > 0
    assert result["cpu_ms_per_login"]["nginx"] > 0
    assert "errors:          0" in done.stdout

    prefix = result["configuration"]["redis_key_prefix"]
    assert prefix.startswith("load:")
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=prefix + "*", count=1000)) == []  # the run's keys are gone
    finally:
        client.close()
