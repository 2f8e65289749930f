"""``broker demo``, ``broker serve`` and ``broker metadata``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from broker.clock import SystemClock
from broker.config.loader import load_settings
from broker.errors import ConfigError
from broker.saml.idp_metadata import IdpMetadata
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
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="address:port to listen on (HTTP)")
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(config_dir: Path, bind: str, workers: int, threads: int) -> None:
    """Serve the broker under gunicorn behind a TLS-terminating proxy (Redis required)."""
    from broker.serving import run_gunicorn

    sys.exit(run_gunicorn(config_dir, bind=bind, workers=workers, threads=threads))


@click.command()
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
def metadata(config_dir: Path) -> None:
    """Print the broker's signed IdP metadata."""
    settings = load_settings(config_dir)
    signing = settings.broker.idp.signing
    base = settings.broker.idp.base_url
    doc = IdpMetadata(settings, SystemClock(), XmlSigner(signing.key.pem, signing.certificate.certificate,
                                                          signing.key.key),
                      sso_url=base + "/saml/idp/sso", slo_url=base + "/saml/idp/slo").document()
    sys.stdout.buffer.write(doc)
