"""The load generators' reports to the process that runs them: ``(kind, generator index, payload)`` on one queue.

Each generator reports its stages in order (``ready``, ``timed``, ``result``, or ``failed`` at any point), but
the generators do not keep pace with each other: one may report its ``result`` while another's ``timed`` is
still awaited. Such an early report is kept for its turn; dropping it left the run waiting for a report that
had already come, until its timeout, with every generator long gone.
"""

from __future__ import annotations

import queue
import time
from collections import defaultdict
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue


class Reports:
    """Collects one report of a kind from every generator (``processes[i]`` reports as index ``i``)."""

    def __init__(self, messages: Queue[tuple[str, int, object]], processes: Sequence[BaseProcess]) -> None:
        self._messages = messages
        self._processes = processes
        self._early: defaultdict[str, dict[int, object]] = defaultdict(dict)

    def collect(self, kind: str, timeout: float) -> dict[int, object]:
        """Every generator's ``kind`` report, by index. Raises RuntimeError when one reports ``failed``, when
        one has ended without this report, or after ``timeout`` seconds."""
        found = self._early.pop(kind, {})
        deadline = time.monotonic() + timeout
        while len(found) < len(self._processes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the load generators did not report {kind!r} within {timeout:.0f} s")
            try:
                got, index, payload = self._messages.get(timeout=1.0)
            except queue.Empty:
                # a second without a report: one from a generator that has ended would have arrived by now
                gone = [f"{i} (exit status {p.exitcode})" for i, p in enumerate(self._processes)
                        if p.exitcode is not None and i not in found]
                if gone:
                    raise RuntimeError(f"load generator {', '.join(gone)} ended without reporting {kind!r}") from None
                continue
            if got == "failed":
                raise RuntimeError(f"load generator {index} failed:\n{payload}")
            if got == kind:
                found[index] = payload
            else:
                self._early[got][index] = payload
        return found
