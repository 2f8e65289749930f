"""Shared fixtures: a real Redis, the example configuration with generated material, the app.

Redis: REDIS_URL if set, else the local server on 127.0.0.1:6379. If neither
answers, a private ``redis-server`` is started on a free loopback port; if
that binary is missing too, the run stops with a clear message (never a
silent skip).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.factories.redis_server import RedisServer, forget_keys

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "example"


def _reachable(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
    except redis.RedisError:
        return False
    return True


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if _reachable(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.exit(
            f"No Redis at {url} and no redis-server binary to start a private one. "
            "Install it (sudo apt-get install -y redis-server) or set REDIS_URL.",
            returncode=3,
        )
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (on a free loopback port), for tests that stop, fill or reconfigure it."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    prefix = f"test:{secrets.token_hex(6)}:"
    yield prefix
    forget_keys(redis_url, prefix)


@pytest.fixture(scope="session", autouse=True)
def _configured_private_keys_parsed_once() -> Iterator[None]:
    """The suite loads the example configuration about a thousand times, and parsing its private keys (OpenSSL
    checks each RSA key pair: ~25 ms a key, six keys) was most of each load. A key is immutable, so the same
    PEM bytes give an equal key: the configuration loader's parsing is memoised for this test session only
    (refusals are not, they raise each time). The broker itself parses its keys once per (re)load."""
    import broker.config.values as values

    parse = values.load_pem_private_key

    @functools.lru_cache(maxsize=512)
    def parsed_once(data: bytes, password: bytes | None = None) -> Any:
        return parse(data, password=password)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(values, "load_pem_private_key", parsed_once)
        yield


@pytest.fixture(autouse=True)
def _apps_closed_when_their_test_ends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``create_app`` asks for its audit chain to be sealed at interpreter exit. In the suite that would be
    a thousand apps sealed at the end of the run, in temporary directories long removed (each an error line,
    and every writer kept alive until then): the seals a test's apps asked for run when the test ends, while
    their directories still exist. Apps of wider-scoped fixtures, built before this fixture, keep the real
    registration."""
    import broker.app

    class _AtTestEnd:
        def __init__(self) -> None:
            self.calls: list[Any] = []

        def register(self, call: Any) -> Any:
            self.calls.append(call)
            return call

    deferred = _AtTestEnd()
    monkeypatch.setattr(broker.app, "atexit", deferred)
    yield
    for call in reversed(deferred.calls):
        call()


@pytest.fixture(scope="session")
def demo_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def demo_material(tmp_path_factory: pytest.TempPathFactory, demo_now: dt.datetime):  # type: ignore[no-untyped-def]
    """config/example plus generated PKI, keys and SP metadata (the demo's own generator), made once."""
    from broker.demo.materials import generate

    return generate(tmp_path_factory.mktemp("demo") / "work", EXAMPLE, demo_now)


@pytest.fixture
def config_dir(demo_material, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A private copy of the generated example configuration, safe to edit."""
    target = tmp_path / "config"
    shutil.copytree(demo_material.config, target)
    for f in (target / "audit").glob("*"):
        f.unlink()
    return target
