"""The hardened parser (broker.saml.xmlparse): the same refusals in every thread, one parser per thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from broker.saml import xmlparse
from broker.saml.xmlparse import UnsafeXml, parse_untrusted

XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
BILLION = b'<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r>&b;</r>'
COMMENTED = b"<NameID>admin<!---->.evil.example</NameID>"


def in_fresh_thread(data: bytes) -> str:
    """What parsing ``data`` gives in a new thread (so with a parser that thread makes for itself)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        def run() -> str:
            try:
                root = parse_untrusted(data, 1 << 16)
            except UnsafeXml as exc:
                return f"refused: {exc}"
            return f"text: {''.join(root.itertext())} / first: {root.text}"
        return pool.submit(run).result()


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param(XXE, "refused: document type declarations are not allowed", id="external-entity"),
    pytest.param(BILLION, "refused: document type declarations are not allowed", id="entity-expansion"),
    pytest.param(COMMENTED, "text: admin.evil.example / first: admin.evil.example", id="comment-removed"),
    pytest.param(b"<a><b></a>", "refused: not well-formed", id="not-well-formed"),
])
def test_every_thread_parses_with_the_same_hardening(data: bytes, expected: str) -> None:
    assert in_fresh_thread(data).startswith(expected)


def test_threads_do_not_share_a_parser() -> None:
    parsers: dict[int, object] = {}
    barrier = threading.Barrier(4)

    def grab() -> None:
        barrier.wait()
        parse_untrusted(b"<r/>", 100)
        parsers[threading.get_ident()] = xmlparse._parser()

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in parsers.values()}) == 4
    assert xmlparse._parser() is xmlparse._parser()  # and one thread keeps its own
