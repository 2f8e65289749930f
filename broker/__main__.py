"""``python -m broker ...``: the same command line as the ``broker`` script (a virtualenv without its scripts on
PATH, a container's entrypoint)."""

from broker.cli import main

main(prog_name="broker")
