"""`broker readiness` on a configuration that does not load: exit 2, and the problems themselves, as `broker
config check` lists them (``<dir>/<file>:<line>: <key>: <message>`` on stderr), or with ``--json`` a
machine-readable verdict on stdout instead of nothing. Driven through click's test runner on a copy of the
example configuration (tests/conftest.py ``config_dir``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from broker.cli import main
from tests.unit.config.editing import KOMMUN_A, line_of, replacing


@pytest.fixture(autouse=True)
def no_redis_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def two_problems(config_dir: Path) -> list[str]:
    """A typo'd key and a wrong enum in kommun-a.yaml; the lines `broker config check` prints for them."""
    replacing(KOMMUN_A, "status: active", "status: live")(config_dir)
    replacing(KOMMUN_A, "max_chain_depth: 4", "max_chain_depth: four")(config_dir)
    check = run("config", "check", str(config_dir))
    assert check.exit_code == 1
    listed = check.stderr.splitlines()[:-1]   # the last line counts them
    assert len(listed) == 2
    return listed


def test_invalid_configuration_lists_the_problems_as_config_check_does(config_dir: Path) -> None:
    listed = two_problems(config_dir)

    result = run("readiness", "--config", str(config_dir), "--offline")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        *listed, "the configuration is invalid: 2 problem(s) (`broker config check` lists the same)"]
    assert listed[0] == (f"{config_dir}/{KOMMUN_A}:{line_of(config_dir / KOMMUN_A, 'status: live')}: status: "
                         "expected one of: onboarding, active, suspended; got a string ('live')")


def test_invalid_configuration_with_json_is_a_json_verdict(config_dir: Path) -> None:
    two_problems(config_dir)

    result = run("readiness", "--config", str(config_dir), "--offline", "--json")

    assert result.exit_code == 2
    verdict = json.loads(result.stdout)
    assert verdict == {"version": 1, "result": "invalid", "issues": [
        {"file": f"{config_dir}/{KOMMUN_A}", "line": line_of(config_dir / KOMMUN_A, "status: live"), "key": "status",
         "message": "expected one of: onboarding, active, suspended; got a string ('live')"},
        {"file": f"{config_dir}/{KOMMUN_A}", "line": line_of(config_dir / KOMMUN_A, "max_chain_depth: four"),
         "key": "certificate.max_chain_depth", "message": "expected an integer, got a string ('four')"},
    ]}
    assert result.stderr.splitlines() == [
        "the configuration is invalid: 2 problem(s) (`broker config check` lists the same)"]


def test_a_missing_directory_is_a_json_verdict_too(tmp_path: Path) -> None:
    result = run("readiness", "--config", str(tmp_path / "nowhere"), "--json")

    assert result.exit_code == 2
    verdict = json.loads(result.stdout)
    assert (verdict["version"], verdict["result"]) == (1, "invalid")
    assert len(verdict["issues"]) >= 1
    assert set(verdict["issues"][0]) == {"file", "line", "key", "message"}


def test_an_alias_bomb_is_reported_fast_by_readiness(config_dir: Path) -> None:
    """The review's s5/s6: `readiness` used to hang on a billion-laughs file; now it names the key and exits 2."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = config_dir / KOMMUN_A
    path.write_text(path.read_text(encoding="utf-8") + "\nx_bomb:\n" + "".join(f"  {line}\n" for line in lines),
                    encoding="utf-8")

    started = time.monotonic()
    result = run("readiness", "--config", str(config_dir), "--offline", "--json")
    elapsed = time.monotonic() - started

    assert result.exit_code == 2
    (issue,) = json.loads(result.stdout)["issues"]
    assert issue == {"file": f"{config_dir}/{KOMMUN_A}", "line": line_of(path, "a4:"), "key": "x_bomb.a4",
                     "message": "too many nodes (YAML aliases expand to more than 100000)"}
    assert elapsed < 5, f"{elapsed:.1f} s"


def test_metadata_of_an_invalid_configuration_lists_the_problems(config_dir: Path) -> None:
    listed = two_problems(config_dir)

    result = run("metadata", "--config", str(config_dir))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[:2] == listed
    assert "Traceback" not in result.output


def test_a_dashboard_that_cannot_be_written_is_exit_2_not_a_readiness_verdict(config_dir: Path,
                                                                              tmp_path: Path) -> None:
    result = run("readiness", "--config", str(config_dir), "--offline", "--html",
                 str(tmp_path / "no-such-directory" / "readiness.html"))

    assert result.exit_code == 2
    assert "cannot write the dashboard to" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_unusable_redis_url_is_exit_2_unless_offline_asks_no_redis(config_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_URL is held to redis.url's rules when readiness is to ask the store (docs/redis.md); --offline asks
    no Redis, so the variable plays no part there."""
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")

    refused = run("readiness", "--config", str(config_dir), "--municipality", "kommun-a")
    offline = run("readiness", "--config", str(config_dir), "--municipality", "kommun-a", "--offline")

    assert refused.exit_code == 2
    assert "unusable input: REDIS_URL: the URL holds a password" in refused.stderr
    assert "hunter2" not in refused.output
    assert offline.exit_code == 0, offline.output
