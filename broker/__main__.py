"""``python -m broker ...``: the same command line as the ``broker`` script (a virtualenv without its scripts on
PATH, a container's entrypoint)."""

from broker.cli import main

if __name__ == "__main__":
    main(prog_name="broker")
