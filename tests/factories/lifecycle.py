"""What every started test peer shares: used as a context manager, and its child process ended firmly.

A peer subclasses :class:`Service` and writes ``start`` and ``stop`` (``stop`` must work on a peer that started
only in part); :func:`end_process` is the signal, grace period and SIGKILL that ending a child takes.
"""

from __future__ import annotations

import signal
import subprocess
from types import TracebackType
from typing import Any, Self


class Service:
    """``with peer:`` starts it and stops it; a start that fails part-way is stopped before the error goes on."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def end_process(process: subprocess.Popen[Any], how: signal.Signals = signal.SIGTERM, grace: float = 10) -> None:
    """Send ``how`` to a child that still runs, give it ``grace`` seconds, then SIGKILL it; always reaped."""
    if process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
