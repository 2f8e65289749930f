"""The ``broker`` command: one group per concern, defined in :mod:`broker.commands`."""

from __future__ import annotations

import click

from broker.commands.audit import audit
from broker.commands.cert import cert
from broker.commands.config import config
from broker.commands.proxy import proxy_config
from broker.commands.readiness import readiness
from broker.commands.revocation import revocation
from broker.commands.run import demo, metadata, reload, serve


@click.group()
@click.version_option(package_name="broker")
def main() -> None:
    """Federated authentication broker for Swedish regional healthcare."""


for command in (config, cert, revocation, readiness, proxy_config, audit, demo, serve, reload, metadata):
    main.add_command(command)


if __name__ == "__main__":  # `python -m broker.cli`
    main()
