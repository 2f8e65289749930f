"""IdP metadata and gunicorn's fork.

``broker serve`` runs gunicorn with ``preload_app``: ``create_app`` (in the master) calls
``UpstreamMetadata.start()``, whose thread takes each URL source's ``MetadataState.lock`` for the whole fetch.
Workers are forked right after, normally while that first fetch is still on the network. A forked worker
inherits the lock *held* by a thread that does not exist in it, so every ``refresh`` there waits
``timeout + 1`` s, gives up silently (no ``last_error``) and the worker never gets the IdP's metadata:
every login at that municipality fails with ``upstream_metadata_unavailable`` after a multi-second hang, in
that worker, until it is restarted (and a worker respawned later, while the master is refreshing, fares the
same). The test forks while the start-up fetch is in flight, as gunicorn does.

The registry replaces its locks in a forked child (``os.register_at_fork``) and records a refresh that
could not run.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from broker.clock import FixedClock
from broker.config.loader import load_settings
from broker.errors import UpstreamRejected
from broker.pki.revocation.http import FetchLimits
from broker.saml.upstream_metadata import UpstreamMetadata
from tests.factories.metadata import SigningKey, prepare, pysaml2_idp_metadata, sign
from tests.unit.config.editing import replacing_block

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
IDP_BASE = "https://localhost:8443/demo-idp"
URL = "https://metadata.kommun-c.example/FederationMetadata.xml"


class SlowFetcher:
    """Stands in for HttpFetcher: in the process that made it, the first fetch waits until released (a
    metadata server that takes its time); anywhere else (a forked worker) it answers at once."""

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.owner = os.getpid()
        self.entered = threading.Event()
        self.release = threading.Event()

    def get(self, url: str, limits: FetchLimits, accept: str | None = None) -> bytes:
        if os.getpid() == self.owner:
            self.entered.set()
            self.release.wait(10)
        return self.document


def test_a_worker_forked_during_the_start_up_fetch_gets_the_idp_metadata(
        demo_material: Any, tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(demo_material.config, config)
    signer = SigningKey.generate("Kommun C metadata signing", NOW)
    idp_key = SigningKey.generate("Kommun C IdP signing", NOW)
    (config / "certs" / "kommun-c").mkdir(parents=True, exist_ok=True)
    (config / "certs" / "kommun-c" / "md-signing.pem").write_bytes(signer.cert_pem)
    replacing_block("municipalities/kommun-c.yaml", "  metadata:",
                    f"  metadata:\n    url: {URL}\n    signing_certificates: [certs/kommun-c/md-signing.pem]\n"
                    "    timeout: 1s\n")(config)
    municipality = load_settings(config).municipalities["kommun-c"]
    document = sign(prepare(pysaml2_idp_metadata(IDP_BASE, idp_key, tmp_path / "idp"),
                            valid_until=NOW + dt.timedelta(days=7)), signer)

    fetcher = SlowFetcher(document)
    upstream = UpstreamMetadata([municipality], FixedClock(NOW), fetcher)  # type: ignore[arg-type]
    upstream.start()                       # create_app in gunicorn's master (preload_app)
    assert fetcher.entered.wait(5)         # the start-up fetch is on the network, holding the state's lock

    read, write = os.pipe()
    pid = os.fork()                        # gunicorn forks a worker
    if pid == 0:  # pragma: no cover - the worker
        os.close(read)
        try:
            result = "ok " + upstream.get("kommun-c").entity_id
        except UpstreamRejected as exc:
            result = f"{exc.reason}: {exc.detail}"
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    fetcher.release.set()
    try:
        with os.fdopen(read, "rb") as pipe:
            result = pipe.read().decode()
        os.waitpid(pid, 0)
    finally:
        upstream.close()
    assert upstream.get("kommun-c").entity_id == IDP_BASE + "/metadata"  # the master got it
    assert result == f"ok {IDP_BASE}/metadata", f"the forked worker has no IdP metadata: {result}"


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Any:
    yield
    for thread in [t for t in threading.enumerate() if t.name == "idp-metadata"]:
        thread.join(timeout=3)
