"""Redis deployments for the store's tests, started once per test run and only when a test asks: a primary
with a replica under three sentinels, and a three-primary Redis Cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.factories.redis_cluster import RedisClusterNodes
from tests.factories.redis_sentinel import SentinelGroup


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path_factory.mktemp("sentinel")) as group:
        yield group


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    with RedisClusterNodes(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes
