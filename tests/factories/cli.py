"""The broker's command line, run as its own process (``python -m broker.cli``), as an operator runs it."""

from __future__ import annotations

import subprocess
import sys


def broker_cli(*args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``broker ARGS``: its exit status and everything it printed (never raises for a non-zero status)."""
    return subprocess.run([sys.executable, "-m", "broker.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)
