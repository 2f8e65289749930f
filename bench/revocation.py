"""Revocation cost per login with a warm cache, and lookups in a 100,000-entry CRL.

    .venv/bin/python bench/revocation.py [--rounds 200000]

1. Warm cache: a leaf checked by OCSP (answer cached in the process) and its
   issuing CA checked by the root's CRL (held in memory): the revocation work a
   login adds once the status is known. Target: under 50 microseconds.
2. Cold shared cache: the same, but the process cache is cleared each time, so
   the signed response is read from Redis and verified again (another instance
   already asked the responder).
3. A 100,000-entry CRL: build, verify and index (background work), then the
   cost of one lookup on the login path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from broker.clock import FixedClock  # noqa: E402
from broker.config.schema import CrlConfig, OcspConfig, RevocationConfig  # noqa: E402
from broker.config.values import HttpUrl  # noqa: E402
from broker.pki.revocation.crls import CrlSource, CrlStore, verify_crl  # noqa: E402
from broker.pki.revocation.engine import RevocationChecker  # noqa: E402
from broker.pki.revocation.http import FetchLimits, HttpFetcher  # noqa: E402
from broker.pki.truststore import revocation_policy  # noqa: E402
from broker.session.store import RedisStore  # noqa: E402
from tests.factories.ocsp_responder import OcspResponder  # noqa: E402
from tests.factories.pki import Hierarchy  # noqa: E402
from tests.factories.pki_cases import crl as big_crl  # noqa: E402


def per_call(fn: object, rounds: int) -> float:
    call = fn  # type: ignore[assignment]
    for _ in range(min(1000, rounds)):
        call()  # type: ignore[operator]
    start = time.perf_counter()
    for _ in range(rounds):
        call()  # type: ignore[operator]
    return (time.perf_counter() - start) / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200_000)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    h = Hierarchy.build(now)
    leaf = h.leaf().certificate
    chain = (leaf, h.issuing.certificate, h.root.certificate)
    clock = FixedClock(now)
    with OcspResponder(h.issuing, now=now) as responder:
        config = RevocationConfig(mode="check", methods=("ocsp", "crl"),
                                  ocsp=OcspConfig(url=HttpUrl(responder.url)),
                                  crl=CrlConfig(distribution_points=False))
        policy, _ = revocation_policy(config, (h.root.certificate, h.issuing.certificate),
                                      [(Path("/bench/root.crl"), h.root.crl())])
        shared = RedisStore(args.redis, prefix=f"bench-revocation:{os.getpid()}:")
        fetcher = HttpFetcher()
        checker = RevocationChecker(clock, crls=CrlStore(clock, fetcher=fetcher, shared=shared), fetcher=fetcher,
                                    shared=shared, refresh_interval=0)
        checker.register(policy)
        first = checker.check(chain, policy)
        assert first.summary == "crl+ocsp", first.summary
        warm = per_call(lambda: checker.check(chain, policy), args.rounds)

        def cold_local() -> None:
            checker._cache.clear()  # the point: another instance's answer, read from Redis
            checker.check(chain, policy)

        cold = per_call(cold_local, max(2000, args.rounds // 100))
        hits = responder.hits

    print(f"warm cache, leaf by OCSP + CA by CRL:  {warm * 1e6:7.2f} us per login   (target < 50 us)")
    print(f"shared cache only (Redis + verify):    {cold * 1e6:7.2f} us per login   (responder asked {hits}x)")

    t = time.perf_counter()
    crl = big_crl(h.issuing, extra_serials=100_000)
    build = time.perf_counter() - t
    t = time.perf_counter()
    verified = verify_crl(crl, (h.root.certificate, h.issuing.certificate))
    index = time.perf_counter() - t
    store = CrlStore(clock, fetcher=None, shared=None)
    source = CrlSource("/bench/big.crl", "file", (h.root.certificate, h.issuing.certificate),
                       FetchLimits(1, 1, 1 << 26), dt.timedelta(hours=1))
    store.add(source, verified)
    lookup = per_call(lambda: store.check(leaf, h.issuing.certificate, [source], now, dt.timedelta(0)),
                      args.rounds // 4)
    membership = per_call(lambda: 10**30 + 4242 in verified.revoked, args.rounds)
    print(f"100,000-entry CRL: built in {build:.2f} s (test fixture), verified and indexed in {index:.2f} s "
          f"(background), {len(verified):,} serials")
    print(f"  CRL check of one certificate on the login path: {lookup * 1e6:7.2f} us")
    print(f"  serial membership test alone:                   {membership * 1e9:7.1f} ns")
    checker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
