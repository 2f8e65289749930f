"""``broker serve``: the broker under gunicorn (HTTP; TLS terminates at the reverse proxy)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from broker.app import MemoryStoreRefused, create_app
from broker.config.loader import load_settings
from broker.errors import ConfigError


def run_gunicorn(config_dir: Path, *, bind: str, workers: int, threads: int) -> int:
    try:
        settings = load_settings(config_dir)
        app = create_app(settings)
    except ConfigError as exc:
        sys.stderr.write(f"serve: invalid configuration:\n{exc}\n")
        return 2
    except MemoryStoreRefused as exc:
        sys.stderr.write(f"serve: {exc}\n")
        return 2

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("accesslog", "-")
            # the app (keys, trust stores) is built once in the master and shared by forked workers
            self.cfg.set("preload_app", True)

        def load(self) -> Any:
            return app

    os.environ.setdefault("SERVER_SOFTWARE", "broker")
    _App().run()
    return 0
