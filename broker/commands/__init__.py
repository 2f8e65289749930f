"""The ``broker`` command's subcommand groups, one module each; :mod:`broker.cli` assembles them."""
