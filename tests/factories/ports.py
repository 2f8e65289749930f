"""Loopback ports for the servers a test starts itself (Redis, gunicorn, nginx, HAProxy, peers).

A port found by binding port 0 and closing the socket stays free only until somebody else binds it, and the
server it is meant for binds it a moment later. Two test processes running at once (pytest-xdist workers) could
be handed the same port in that window, and the kernel hands the same range out as the local ports of outgoing
connections. So each test process takes its ports in turn from a block of its own, below the kernel's ephemeral
range (32768 and up on Linux): no other worker of the run chooses from that block, no outgoing connection is given
a port from it, and within the process a port is not handed out again until the block wraps around. Where a run's
blocks lie depends on the run (its xdist id, or the process id of a run without workers), so that two runs at
once (two checkouts on one machine) seldom share a block, and a port is checked to be free when it is chosen.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import socket

FIRST = 10_000
BLOCK = 250  # ports per test process, in blocks below 20000: their +10000 companions lie below 30000
BLOCKS = 40

_turns = itertools.count()  # this process's place in its block


@functools.cache
def _block_start() -> int:
    """The first port of this process's block: the run's first block (by its xdist id, shared by its workers,
    or by this process's id outside xdist), then one block further for each worker number (gw0, gw1, ...)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid {os.getpid()}"
    first = int.from_bytes(hashlib.sha256(run.encode()).digest()[:4], "big") % BLOCKS
    return FIRST + (first + index) % BLOCKS * BLOCK


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(companions: tuple[int, ...] = ()) -> int:
    """A free port p of this process's block such that p + c is free too for each offset c in ``companions``
    (the demo serves revocation data on p + 1, a Redis Cluster node its bus on p + 10000). Companions inside the
    block are skipped over, so that the next call does not hand them out."""
    start = _block_start()
    skip = 1 + max((c for c in companions if c < BLOCK), default=0)
    for _ in range(BLOCK):
        port = start + next(_turns) % BLOCK
        for _companion in range(skip - 1):
            next(_turns)
        if port + skip - 1 < start + BLOCK and all(_bindable(port + c) for c in (0, *companions)):
            return port
    raise RuntimeError(f"no free port in {start}-{start + BLOCK - 1} on 127.0.0.1")


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free (the demo serves revocation data on p + 1)."""
    return free_port((1,))
