"""Audit cost per login: four records (as a certificate login writes) and one durable sync, with group commit.

    .venv/bin/python bench/audit.py [--logins 4000] [--dir /path/on/the/real/disk]

Runs 1, 8 and 32 concurrent "requests" (threads); each writes the four records
of a login through the real AuditTrail and ChainWriter (hash chain, JSON,
checkpoints) and then syncs before it would respond. Reports microseconds of
audit work per login and how many fsyncs the group commit needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import MappingProxyType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from broker.audit.chain import ChainSettings, ChainWriter  # noqa: E402
from broker.audit.events import AuditEvent  # noqa: E402
from broker.audit.keys import AuditKeyring, AuditSigner  # noqa: E402
from broker.audit.trail import AuditTrail  # noqa: E402
from broker.audit.verify import verify  # noqa: E402
from broker.clock import SystemClock  # noqa: E402
from broker.model import CertificateFacts, Identity  # noqa: E402

ANNA = Identity("hsa_id", "SE2120001009-anna", "kommun-a", "Anna", "Andersson", "Anna Andersson")
NOW = dt.datetime.now(dt.UTC)
FACTS = CertificateFacts("ab" * 32, "2c7234b7c5ecb377c6f2adc9663a4628e3c83349", "CN=Kommun A Demo Person CA", NOW, NOW)
SP = "https://cosmic.region.example.se/saml/sp"


class CountingFsync:
    """Counts os.fsync calls (how many the group commit needed)."""

    def __init__(self) -> None:
        self.count = 0
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        self.count += 1
        self._real(fd)


def login(trail: AuditTrail, n: int) -> None:
    cid = f"BENCH-{n:08d}"
    trail.record(AuditEvent("login_started", "info", cid, sp=SP, client_address="192.0.2.10",
                            data=MappingProxyType({"request_id": f"_r{n}", "binding": "redirect"})))
    trail.record(AuditEvent("certificate_presented", "info", cid, certificate=FACTS, sp=SP,
                            client_address="192.0.2.10", data=MappingProxyType({"via": "proxy"})))
    trail.record(AuditEvent("certificate_accepted", "success", cid, identity=ANNA, certificate=FACTS, sp=SP,
                            client_address="192.0.2.10",
                            data=MappingProxyType({"loa": "http://id.elegnamnden.se/loa/1.0/loa3",
                                                   "policy": "2.999.1.3", "revocation": "ocsp"})))
    trail.record(AuditEvent("assertion_issued", "success", cid, identity=ANNA, sp=SP, client_address="192.0.2.10",
                            data=MappingProxyType({"loa": "http://id.elegnamnden.se/loa/1.0/loa3", "nameid": "x" * 43,
                                                   "nameid_format": "persistent",
                                                   "attributes": ("employeeHsaId", "givenName", "sn")})))
    trail.sync()


def run(directory: Path, threads: int, logins: int) -> tuple[float, float, int, AuditKeyring]:
    key = Ed25519PrivateKey.generate()
    writer = ChainWriter(ChainSettings(directory, "bench", dt.timedelta(seconds=60), 1 << 30, dt.timedelta(days=1)),
                         AuditSigner(key), SystemClock(), background=False)
    trail = AuditTrail(writer, SystemClock(), pseudonym_key=b"k" * 32, instance_id="bench")
    login(trail, 0)  # starts the chain (first file, first checkpoint)
    counter = CountingFsync()
    os.fsync = counter  # type: ignore[assignment]
    per_thread = logins // threads
    start, cpu = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=lambda t=t: [login(trail, t * per_thread + i + 1)
                                                    for i in range(per_thread)]) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    os.fsync = counter._real
    writer.close()
    done = per_thread * threads
    return elapsed / done, cpu / done, counter.count, AuditKeyring([key.public_key()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=4000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    print(f"audit cost per login (4 records + fsync), {args.logins} logins per run")
    for threads in (1, 8, 32):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            per_login, cpu, fsyncs, keyring = run(Path(tmp), threads, args.logins)
            intact = verify([Path(tmp)], keyring).ok
            print(f"  {threads:>2} concurrent: {per_login * 1e6:8.1f} us per login (wall), {cpu * 1e6:6.1f} us CPU, "
                  f"{fsyncs:>5} fsyncs for {args.logins} logins ({fsyncs / args.logins:.2f} per login), "
                  f"chain {'intact' if intact else 'NOT INTACT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
