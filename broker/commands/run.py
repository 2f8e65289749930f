"""``broker demo``, ``broker serve``, ``broker reload`` and ``broker metadata``."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from broker.clock import SystemClock
from broker.commands.common import settings_or_exit
from broker.config.loader import load_settings
from broker.errors import ConfigError
from broker.saml.idp_metadata import IdpMetadata
from broker.saml.signing_backend import signer_for
from broker.saml.sp_metadata import SpMetadataDocument
from broker.saml.xmldsig import XmlSigner


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="where the demo material lives (default var/demo, or $BROKER_DEMO_DIR)")
@click.option("--example", type=click.Path(path_type=Path), default=None, help="the example config to run")
@click.option("--host", default="localhost", show_default=True)
@click.option("--port", default=8443, show_default=True, type=int)
@click.option("--check", is_flag=True, help="run every demo user's login, print a table, exit")
@click.option("--regenerate", is_flag=True, help="throw away the demo PKI and keys and make new ones")
def demo(workdir: Path | None, example: Path | None, host: str, port: int, check: bool, regenerate: bool) -> None:
    """Run the broker and a demo SP over HTTPS on localhost, on a generated demo PKI."""
    from broker.demo.server import default_workdir, run  # the demo's dependencies load only for the demo

    try:
        code = run(workdir or default_workdir(), example, host, port, check=check, regenerate=regenerate)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        click.echo(f"demo: {exc}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"demo: the example configuration is invalid:\n{exc}", err=True)
        sys.exit(2)
    sys.exit(code)


@click.command()
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
@click.option("--bind", help="address:port to listen on (HTTP) [default: server.bind in broker.yaml, "
              "else 127.0.0.1:8080]")
# the range broker.yaml's server.workers and server.threads are held to (broker.config.schema.ServerConfig)
@click.option("--workers", type=click.IntRange(min=1, max=1024),
              help="worker processes [default: server.workers in broker.yaml, else 2]")
@click.option("--threads", type=click.IntRange(min=1, max=1024),
              help="threads per worker [default: server.threads in broker.yaml, else 4]")
@click.option("--pid-file", type=click.Path(path_type=Path, dir_okay=False),
              help="write the master's PID here (for `broker reload --pid-file`)")
def serve(config_dir: Path, bind: str | None, workers: int | None, threads: int | None,
          pid_file: Path | None) -> None:
    """Serve the broker under gunicorn behind a TLS-terminating proxy (Redis required). SIGHUP reloads the
    configuration. Listen address, workers and threads come from broker.yaml's server section unless given
    here."""
    from broker.serving import run_gunicorn

    sys.exit(run_gunicorn(config_dir, bind=bind, workers=workers, threads=threads, pid_file=pid_file))


PROC = Path("/proc")   # proc(5): whose the PID is

# the subcommands whose process reloads its configuration on SIGHUP (any other's would end: SIGHUP's default)
_RELOADING = frozenset({"serve", "demo"})


def not_a_broker(pid: int, proc: Path) -> str | None:
    """Why ``pid`` is not a broker to send SIGHUP to, or None when it is one. kill(2) treats 0 and negative
    numbers as process groups, -1 as every process the caller may signal (as root: all of them), and 1 is
    init, which a stray signal would reconfigure or stop, unless the broker itself runs as PID 1 (in a
    container). So the number must be a process, and its command line (``proc``/<pid>/cmdline, proc(5)) a
    ``broker serve`` or ``broker demo`` (``broker ...``, ``python -m broker.cli ...``) or a gunicorn master
    that renamed itself (``gunicorn: master [...]``). Without a procfs, the command line cannot be checked and
    only the number is."""
    if pid <= 0:
        return (f"{pid} is not a process ID (kill would signal {'every process' if pid == -1 else 'a process group'}"
                "); give the broker's PID")
    if not (proc / "self").exists():
        return "PID 1 is init, not the broker" if pid == 1 else None
    try:
        args = [a.decode(errors="replace") for a in (proc / str(pid) / "cmdline").read_bytes().split(b"\0") if a]
    except FileNotFoundError:
        return f"no process {pid}"
    except OSError as exc:
        return f"cannot tell whether process {pid} is the broker ({exc.strerror})"
    if args and args[0].startswith("gunicorn: master"):
        return None
    for i, arg in enumerate(args[:-1]):
        program = Path(arg).name
        if (program == "broker" or arg == "broker.cli") and args[i + 1] in _RELOADING:
            return None
    shown = " ".join(args)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return (f"process {pid} is not the broker (its command line: {shown or 'none, a kernel thread or a zombie'}); "
            "give the PID of `broker serve` (its --pid-file) or of `broker demo`")


@click.command()
@click.option("--config", "config_dir", required=True, envvar="BROKER_CONFIG", type=click.Path(path_type=Path))
@click.option("--pid-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="the PID file `broker serve --pid-file` writes")
@click.option("--pid", type=int, help="the PID of the broker (gunicorn master, or the demo)")
def reload(config_dir: Path, pid_file: Path | None, pid: int | None) -> None:
    """Validate the configuration, then tell the running broker to load it (SIGHUP).

    Nothing is sent when the configuration has problems: they are listed (file:line: key: message) and the
    exit status is 1. The broker validates again when it loads, and keeps the old configuration if the
    files changed in between; sessions are not touched.
    """
    if (pid_file is None) == (pid is None):
        raise click.UsageError("give --pid-file or --pid")
    try:
        load_settings(config_dir)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        click.echo(f"{len(exc.issues)} problem(s): nothing reloaded", err=True)
        sys.exit(1)
    if pid is None:
        assert pid_file is not None
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            raise click.ClickException(f"{pid_file} holds no PID") from None
    refusal = not_a_broker(pid, PROC)
    if refusal is not None:
        raise click.ClickException(f"{'--pid' if pid_file is None else pid_file}: {refusal}; nothing sent")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise click.ClickException(f"no process {pid}") from None
    except PermissionError:
        raise click.ClickException(f"not allowed to signal process {pid}") from None
    click.echo(f"configuration valid; asked process {pid} to reload it (see its log and the audit trail: "
               "configuration_loaded or configuration_rejected)")


@click.command()
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
@click.option("--sp", "sp_side", is_flag=True, help="the broker's SP metadata (for municipal IdPs) instead")
def metadata(config_dir: Path, sp_side: bool) -> None:
    """Print the broker's signed IdP metadata (for the regional SPs), or with --sp its SP metadata."""
    from broker.app import SLO_PATH, SP_ACS_PATH, SP_SLO_PATH, SSO_PATH

    settings = settings_or_exit(config_dir)
    base = settings.broker.idp.base_url
    validity = settings.broker.idp.metadata_validity.timedelta
    if sp_side:
        sp = settings.broker.sp
        if sp is None:
            raise click.ClickException("broker.yaml has no sp section: the broker is no SP toward municipal IdPs")
        signer = XmlSigner(sp.signing.certificate.certificate, sp.signing.key.key)
        doc = SpMetadataDocument(sp, SystemClock(), signer, acs_url=base + SP_ACS_PATH, slo_url=base + SP_SLO_PATH,
                                 validity=validity).document()
    else:
        signing = settings.broker.idp.signing
        signer = signer_for(signing)
        doc = IdpMetadata(settings, SystemClock(), signer, sso_url=base + SSO_PATH, slo_url=base + SLO_PATH).document()
    sys.stdout.buffer.write(doc)
