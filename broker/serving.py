"""``broker serve``: the broker under gunicorn (HTTP; TLS terminates at the reverse proxy).

Listen address, workers and threads: the command line's flags, else broker.yaml's ``server`` section, read
at start. Several instances (on one host or many) share nothing but Redis and, if they like, the audit
directory (one chain per process); gunicorn's control socket is off, so two instances on one host do not
compete for ``$HOME/.gunicorn/gunicorn.ctl``, and the broker is steered by signals alone.

Configuration reload: SIGHUP to the master (``broker reload``). gunicorn calls ``on_reload`` in the master,
where the broker loads and validates the configuration and swaps it into the preloaded app; gunicorn then
starts new workers from that app and lets the old ones finish their requests. An invalid configuration is
refused (logged and audited) and the new workers serve the previous one. A changed ``server`` section is
logged and recorded (``configuration_loaded``'s ``restart_needed``) as needing a restart: the listener and the
worker count stay as started; so is a larger
``client_certificate.proxy.max_bytes`` (:func:`broker.app.restart_needed`): gunicorn's header line limit stays as
started.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from broker.access_log import AccessLog
from broker.app import MemoryStoreRefused, create_app, reload_configuration
from broker.config.loader import Settings, load_settings
from broker.config.schema import ServerConfig
from broker.errors import ConfigError
from broker.metrics import worker_exited
from broker.session.redis_client import RedisChoiceRefused
from broker.web.limits import header_field_size


def effective_server(configured: ServerConfig, *, bind: str | None = None, workers: int | None = None,
                     threads: int | None = None) -> ServerConfig:
    """broker.yaml's ``server`` section with the command line's values in place of the ones it gives."""
    return ServerConfig(bind=configured.bind if bind is None else bind,
                        workers=configured.workers if workers is None else workers,
                        threads=configured.threads if threads is None else threads,
                        request_timeout=configured.request_timeout)


def run_gunicorn(config_dir: Path, *, bind: str | None = None, workers: int | None = None,
                 threads: int | None = None, pid_file: Path | None = None) -> int:
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
    except (MemoryStoreRefused, RedisChoiceRefused) as exc:
        sys.stderr.write(f"serve: {exc}\n")
        return 2
    server = effective_server(settings.broker.server, bind=bind, workers=workers, threads=threads)
    # flags are checked by click; a bind given on the command line is checked here like the configured one, also
    # against the rest of broker.yaml (a unix socket next to trusted proxies: BrokerConfig.config_check)
    problems = [message for _, message in server.config_check()]
    problems += [message for key, message in replace(settings.broker, server=server).config_check()
                 if key[0] == "server"]
    if problems:
        sys.stderr.write(f"serve: --bind: {problems[0]}\n")
        return 2

    # request size limits (broker.web.limits): HTTP-Redirect messages need more than gunicorn's default request line
    # of 4094 bytes (8190 is its maximum); one header line must hold the proxy's certificate header, with room to
    # spare: a header somewhat past max_bytes reaches the app, which refuses it as proxy_header_too_large (audited,
    # and the page says which limit) rather than gunicorn as request_headers_too_large ("clear your cookies")
    proxy = settings.broker.client_certificate.proxy
    field_size = header_field_size(proxy.max_bytes, proxy.header, proxy.chain_header)

    def server_kept(loaded: Settings) -> bool:
        """Whether the loaded server section, with the command line's values in place of the ones it gives,
        differs from the one the listener and the workers were started with (which a reload keeps)."""
        return effective_server(loaded.broker.server, bind=bind, workers=workers, threads=threads) != server

    def on_reload(_arbiter: object) -> None:
        reload_configuration(app, config_dir, server_kept=server_kept)

    def child_exit(_arbiter: object, worker: Any) -> None:
        worker_exited(worker.pid)

    class _App(BaseApplication):  # type: ignore[misc]
        request_timeout = server.request_timeout.seconds  # read by the workers (broker.slow_clients)

        def load_config(self) -> None:
            self.cfg.set("bind", server.bind)
            self.cfg.set("workers", server.workers)
            self.cfg.set("threads", server.threads)
            # gunicorn's gthread / sync workers, each request given server.request_timeout to arrive
            self.cfg.set("worker_class", "broker.slow_clients.DeadlineThreadWorker" if server.threads > 1
                         else "broker.slow_clients.DeadlineSyncWorker")
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", AccessLog)  # short lines without the SAML messages (broker.access_log)
            # forwarding headers (SCRIPT_NAME, which moves the path the app routes on; X-Forwarded-Proto) are no
            # peer's to set: gunicorn trusts 127.0.0.1 and ::1 for them by default, the broker builds nothing on
            # them, and its only trusted proxies are its configuration's (client_certificate.proxy)
            self.cfg.set("forwarded_allow_ips", "")
            self.cfg.set("forwarder_headers", "")
            self.cfg.set("limit_request_line", 8190)
            self.cfg.set("limit_request_field_size", field_size)
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
