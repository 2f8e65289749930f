"""Audit-trail test material: hash-chain writers on a FixedClock, their keyrings, events through an AuditTrail,
and small helpers to read and edit the chain files as a tamperer (or a crash) would.

Subprocess helpers run the real ChainWriter in another interpreter (kill -9, file-size limits, several
writers at once); they are given the key as a PEM file written by the test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.chain import ChainSettings, ChainWriter, chain_files
from broker.audit.events import AuditEvent
from broker.audit.keys import AuditKeyring, AuditSigner
from broker.audit.trail import AuditTrail
from broker.audit.verify import Verification, verify
from broker.clock import Clock, FixedClock
from broker.model import CertificateFacts, Identity

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 27, 8, 0, 0, 123000, tzinfo=dt.UTC)
PSEUDONYM_KEY = b"p" * 32
SP = "https://localhost:8443/demo-sp/metadata"
ANNA = Identity("hsa_id", "SE2120001009-anna", "kommun-a")
BO = Identity("personnummer", "191212121212", "kommun-b", "Bo", "Demosson", "Bo Demosson")
FACTS = CertificateFacts("ab" * 32, "1f", "CN=Kommun A Test Person CA", T0, T0)


def make_writer(directory: Path, clock: Clock, key: Ed25519PrivateKey, *, rotate_bytes: int = 1 << 30,
                interval: dt.timedelta = dt.timedelta(hours=1), rotate_interval: dt.timedelta = dt.timedelta(days=1),
                instance: str = "i1", background: bool = False, on_checkpoint: Any = None) -> ChainWriter:
    """A ChainWriter signing with ``key``; checkpoints every ``interval``, rotation by size and age."""
    settings = ChainSettings(directory, instance, interval, rotate_bytes, rotate_interval)
    return ChainWriter(settings, AuditSigner(key), clock, background=background, on_checkpoint=on_checkpoint)


def keyring_of(*keys: Ed25519PrivateKey) -> AuditKeyring:
    return AuditKeyring([k.public_key() for k in keys])


def make_trail(sink: ChainWriter, clock: Clock, *, pseudonym_key: bytes = PSEUDONYM_KEY,
               forwarders: Sequence[Any] = ()) -> AuditTrail:
    return AuditTrail(sink, clock, pseudonym_key=pseudonym_key, instance_id="i1", forwarders=forwarders)


def login_event(n: int, *, detail: str | None = None) -> AuditEvent:
    """A certificate login event for the n-th user of a test (alternately Anna and Bo)."""
    return AuditEvent("certificate_accepted", "success", f"CID-{n:04d}", identity=ANNA if n % 2 else BO,
                      certificate=FACTS, sp=SP, client_address="192.0.2.7", detail=detail,
                      data={"loa": "loa3", "policy": "2.999.1.3"})


def write_events(trail: AuditTrail, n: int, *, clock: FixedClock | None = None,
                 step: dt.timedelta = dt.timedelta(0), detail: str | None = None) -> None:
    """``n`` events through ``trail`` (synced); the clock, if given, advances ``step`` before each."""
    for i in range(n):
        if clock is not None:
            clock.advance(step)
        trail.record(login_event(i, detail=detail))
        trail.sync()


# --- reading and editing the files ----------------------------------------------------------------


def only_chain(directory: Path) -> tuple[str, list[Path]]:
    chains = chain_files(directory)
    assert len(chains) == 1, sorted(chains)
    ((chain, files),) = chains.items()
    return chain, [p for _, p in files]


def lines_of(path: Path) -> list[bytes]:
    """The lines of a file with their newlines (a torn last line without)."""
    return path.read_bytes().splitlines(keepends=True)


def records_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in lines_of(path)]


def write_lines(path: Path, lines: Sequence[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def dump(record: dict[str, Any]) -> bytes:
    """A record serialised the way the writer does."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def verified(directory: Path, *keys: Ed25519PrivateKey) -> Verification:
    return verify([directory], keyring_of(*keys))


# --- other processes -------------------------------------------------------------------------------


def write_key(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


WRITER_PRELUDE = """
import datetime as dt, json, os, sys, threading
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from broker.audit.chain import ChainSettings, ChainWriter
from broker.audit.events import AuditEvent
from broker.audit.keys import AuditSigner
from broker.audit.trail import AuditTrail
from broker.clock import FixedClock, SystemClock
from broker.errors import AuditUnavailable
directory, key_file = Path(sys.argv[1]), Path(sys.argv[2])
key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
"""


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """``sys.executable -c WRITER_PRELUDE + code args...`` with the repository importable."""
    return subprocess.Popen([sys.executable, "-c", WRITER_PRELUDE + code, *args], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WRITER_PRELUDE + code, *args], env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
