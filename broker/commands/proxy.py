"""``broker proxy-config``: the reverse proxy's client-certificate settings, from the broker's configuration."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from broker.clock import SystemClock
from broker.commands.common import settings_or_exit
from broker.proxy_config import HAPROXY, ProxyFiles, client_ca_bundle
from broker.proxy_config import apache as apache_files
from broker.proxy_config import haproxy as haproxy_files
from broker.proxy_config import nginx as nginx_files

# what ends or changes a word in nginx's, HAProxy's and Apache's configuration files (white space, quotes,
# escapes, nginx's ';' and braces, comments, HAProxy's environment variables)
_NOT_IN_A_WORD = re.compile(r"[\s\"'\\;#{}$]")


def _word(value: str, option: str) -> str:
    """``value`` (a path or an address), which the proxy's configuration holds as one unquoted word; refused
    when it cannot be one, rather than written into a file that the proxy's own check refuses or reads
    otherwise."""
    if _NOT_IN_A_WORD.search(value):
        raise click.BadParameter(f"{value!r} cannot be written into the proxy's configuration as one word (white "
                                 "space, quotes, '\\', ';', '#', braces and '$' cannot be in it)", param_hint=option)
    return value


@click.group("proxy-config")
def proxy_config() -> None:
    """Write the proxy's client-CA bundle and settings from this configuration (so they never drift)."""


@proxy_config.command("nginx")
@click.option("--config", "config_dir", required=True, envvar="BROKER_CONFIG", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="directory for the bundle and the snippets (created if missing)")
@click.option("--upstream", default="http://127.0.0.1:8080", show_default=True,
              help="where `broker serve` listens, or http://NAME for an nginx upstream block of several instances")
@click.option("--proxy-dir", help="the --out directory as nginx will see it, when that differs (nginx in a "
              "container: /etc/nginx/broker) [default: --out]")
@click.option("--upstream-ca", help="for an https --upstream: the file (as nginx opens it) of the CA certificates "
              "that issued the backend's certificate, which nginx then verifies")
def nginx(config_dir: Path, out_dir: Path, upstream: str, proxy_dir: str | None, upstream_ca: str | None) -> None:
    """The client-CA bundle, a snippet for the broker's server block, and an example server block."""
    settings = settings_or_exit(config_dir)
    if proxy_dir is not None and not proxy_dir.startswith("/"):
        raise click.BadParameter("an absolute path, as nginx opens it", param_hint="--proxy-dir")
    seen_as = _word(str(out_dir.resolve()), "--out") if proxy_dir is None \
        else _word(proxy_dir.rstrip("/") or "/", "--proxy-dir")
    try:
        if upstream_ca is not None and not upstream_ca.startswith("/"):
            raise click.BadParameter("an absolute path, as nginx opens it", param_hint="--upstream-ca")
        written = nginx_files(settings, out_dir=seen_as, upstream=_word(upstream, "--upstream"),
                              now=SystemClock().now(),
                              upstream_ca=None if upstream_ca is None else _word(upstream_ca, "--upstream-ca"))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _write(out_dir, written, "nginx -t && nginx -s reload")


def _write(out_dir: Path, written: ProxyFiles, then: str) -> None:
    """The files into ``out_dir`` (created if missing); a directory that cannot be made or written is unusable
    input (exit 2, with the system's reason), not a traceback."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in written.files.items():
            target = out_dir / name
            temporary = target.with_name(f".{name}.tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, target)  # a proxy reloading meanwhile never reads half a file
            click.echo(f"wrote {target}")
    except OSError as exc:
        raise click.BadParameter(f"cannot write to {out_dir}: {exc.strerror}", param_hint="--out") from None
    for mid, cas in written.cas.items():
        click.echo(f"  {mid}: {len(cas)} CA certificate(s)")
    click.echo(f"then: {then}, and `broker readiness` to see the advertised list")


@proxy_config.command("haproxy")
@click.option("--config", "config_dir", required=True, envvar="BROKER_CONFIG", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="directory for the bundle and the frontend (created if missing)")
@click.option("--upstream", default="http://127.0.0.1:8080", show_default=True,
              help="where `broker serve` listens")
@click.option("--bind", "bind", default=":443", show_default=True, help="the frontend's listening address")
@click.option("--certificate", help="the server certificate, its chain and key in one PEM file "
              "[default: /etc/haproxy/tls/<host>.pem]")
def haproxy(config_dir: Path, out_dir: Path, upstream: str, bind: str, certificate: str | None) -> None:
    """The client-CA bundle and a frontend and backend to load after HAProxy's main configuration."""
    settings = settings_or_exit(config_dir)
    try:
        written = haproxy_files(settings, out_dir=_word(str(out_dir.resolve()), "--out"),
                                upstream=_word(upstream, "--upstream"), now=SystemClock().now(),
                                bind=_word(bind, "--bind"),
                                certificate=None if certificate is None else _word(certificate, "--certificate"))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _write(out_dir, written, f"haproxy -c -f <main> -f {out_dir / HAPROXY} and a reload")


@proxy_config.command("apache")
@click.option("--config", "config_dir", required=True, envvar="BROKER_CONFIG", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="directory for the bundle and the snippets (created if missing)")
@click.option("--upstream", default="http://127.0.0.1:8080", show_default=True,
              help="where `broker serve` listens")
def apache(config_dir: Path, out_dir: Path, upstream: str) -> None:
    """The client-CA bundle, a snippet for the broker's <VirtualHost>, and an example virtual host."""
    settings = settings_or_exit(config_dir)
    try:
        written = apache_files(settings, out_dir=_word(str(out_dir.resolve()), "--out"),
                               upstream=_word(upstream, "--upstream"), now=SystemClock().now())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _write(out_dir, written, "apachectl configtest && apachectl graceful")


@proxy_config.command("bundle")
@click.option("--config", "config_dir", required=True, envvar="BROKER_CONFIG", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="directory for the bundle (created if missing)")
def bundle(config_dir: Path, out_dir: Path) -> None:
    """The client-CA bundle alone (broker-client-cas.pem), for a proxy configured by hand (Envoy, RFC 9440)."""
    settings = settings_or_exit(config_dir)
    try:
        written = client_ca_bundle(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _write(out_dir, written, "point the proxy's advertised client CAs at it and reload")
