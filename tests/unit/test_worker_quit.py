"""The gthread worker of ``broker serve`` (broker/slow_clients.py ``DeadlineThreadWorker``) ends on SIGQUIT/SIGINT
even when the signal lands while the worker's main thread is handing a connection to its thread pool.

gunicorn 27's own handler shuts the pool down inside the signal handler; the pool's ``submit`` holds the pool's
shutdown lock (not re-entrant), so a signal landing there left the worker waiting on its own lock forever (an
orphaned worker, holding the listening port, after its master was killed). The handler runs in the thread it
interrupted: these tests call it from a thread holding that lock, as ``submit`` does.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from broker.slow_clients import DeadlineThreadWorker


class _Config:
    def worker_int(self, worker: Any) -> None:
        pass


def _worker(cls: type[ThreadWorker]) -> ThreadWorker:
    """A worker with just what its quit handler touches (gunicorn's __init__ wants a whole arbiter)."""
    worker = cls.__new__(cls)
    worker.tpool = ThreadPoolExecutor(max_workers=2)
    worker.alive = True
    worker.cfg = _Config()
    return worker


def _quit_inside_submit(worker: ThreadWorker, outcome: list[str]) -> None:
    """What the main thread does when the signal lands inside tpool.submit: the handler runs, lock held."""
    with worker.tpool._shutdown_lock:  # type: ignore[attr-defined]
        try:
            worker.handle_quit(signal.SIGQUIT, None)
        except SystemExit as exc:
            outcome.append(f"SystemExit({exc.code})")


def test_quit_inside_submit_ends_the_worker_and_shuts_the_pool_down() -> None:
    worker = _worker(DeadlineThreadWorker)
    outcome: list[str] = []
    handler = threading.Thread(target=_quit_inside_submit, args=(worker, outcome), daemon=True)
    handler.start()
    handler.join(timeout=5)

    assert not handler.is_alive(), "the quit handler deadlocked on the pool's lock"
    assert outcome == ["SystemExit(0)"]
    assert worker.alive is False
    deadline = time.monotonic() + 5
    while not worker.tpool._shutdown and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    assert worker.tpool._shutdown  # type: ignore[attr-defined]  # done from another thread, once the lock was free


def test_gunicorns_own_handler_deadlocks_there() -> None:
    """The control: gunicorn's ThreadWorker.handle_quit, in the same place, never returns."""
    worker = _worker(ThreadWorker)
    outcome: list[str] = []
    handler = threading.Thread(target=_quit_inside_submit, args=(worker, outcome), daemon=True)
    handler.start()
    handler.join(timeout=1)

    assert handler.is_alive()   # waiting on a lock its own thread holds (a daemon thread: it ends with the run)
    assert outcome == []
