"""``broker serve``: the broker under gunicorn (HTTP; TLS terminates at the reverse proxy).

Configuration reload: SIGHUP to the master (``broker reload``). gunicorn calls ``on_reload`` in the master,
where the broker loads and validates the configuration and swaps it into the preloaded app; gunicorn then
starts new workers from that app and lets the old ones finish their requests. An invalid configuration is
refused (logged and audited) and the new workers serve the previous one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from broker.app import MemoryStoreRefused, create_app, reload_configuration
from broker.config.loader import load_settings
from broker.errors import ConfigError
from broker.metrics import worker_exited


def run_gunicorn(config_dir: Path, *, bind: str, workers: int, threads: int, pid_file: Path | None = None) -> int:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # the workers' metrics add up through files in a fresh directory (prometheus_client multiprocess mode)
        metrics_dir = tempfile.mkdtemp(prefix="broker-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(_remove_in, os.getpid(), metrics_dir)
    try:
        settings = load_settings(config_dir)
        app = create_app(settings)
    except ConfigError as exc:
        sys.stderr.write(f"serve: invalid configuration:\n{exc}\n")
        return 2
    except MemoryStoreRefused as exc:
        sys.stderr.write(f"serve: {exc}\n")
        return 2

    def on_reload(_arbiter: object) -> None:
        reload_configuration(app, config_dir)

    def child_exit(_arbiter: object, worker: Any) -> None:
        worker_exited(worker.pid)

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("accesslog", "-")
            # the app (keys, trust stores) is built once in the master and shared by forked workers
            self.cfg.set("preload_app", True)
            self.cfg.set("on_reload", on_reload)
            self.cfg.set("child_exit", child_exit)
            if pid_file is not None:
                self.cfg.set("pidfile", str(pid_file))

        def load(self) -> Any:
            return app

    os.environ.setdefault("SERVER_SOFTWARE", "broker")
    _App().run()
    return 0


def _remove_in(owner: int, directory: str) -> None:
    """Remove the metrics directory when the master exits. Forked workers inherit the atexit hooks and leave
    through sys.exit, so a worker ending on reload would otherwise delete the files its siblings still use."""
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)
