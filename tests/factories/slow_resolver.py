"""A name resolver that takes its time: ``socket.getaddrinfo`` answering for one made-up name only after a real
delay, as a resolver waiting on an unanswering DNS server does, and then with 127.0.0.1; every other name resolves
as before. For the tests of the deadlines that must cover name resolution (revocation and metadata fetches,
readiness), which comes before any socket exists."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest


def resolve_slowly(monkeypatch: pytest.MonkeyPatch, host: str, seconds: float) -> None:
    """Until the test ends, resolving ``host`` takes ``seconds`` and gives loopback (socket.getaddrinfo is one
    function for urllib3, the broker and the standard library alike)."""
    real = socket.getaddrinfo

    def getaddrinfo(name: str | bytes | None, *args: Any, **kwargs: Any) -> Any:
        if name == host:
            time.sleep(seconds)
            name = "127.0.0.1"
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
