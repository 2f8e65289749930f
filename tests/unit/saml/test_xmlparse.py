"""The hardened parser (broker.saml.xmlparse): the same refusals in every thread, one parser per thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

from broker.saml import xmlparse
from broker.saml.xmlparse import UnsafeXml, is_ncname, parse_untrusted

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


def resident_kib() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


def test_names_never_seen_before_do_not_grow_the_process_for_good() -> None:
    """lxml keeps every name it parses in a dictionary of the parsing thread for as long as the thread lives: 300
    messages of 9,000 element names each (what anyone can post to the ACS, 240 KB apiece) grew a request thread by
    110 MB, kept after the messages were gone."""
    def message(n: int) -> bytes:
        names = "".join(f"<n{n}x{i}/>" for i in range(9000))
        return f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">{names}</samlp:Response>'.encode()

    for n in range(300):  # what the process holds at most (parsers' dictionaries, allocator arenas) is reached
        parse_untrusted(message(n), 1 << 20)
    before = resident_kib()
    for n in range(300, 600):
        parse_untrusted(message(n), 1 << 20)
    assert resident_kib() - before < 40_000  # 87 MB more when every name stayed


@pytest.mark.parametrize(("value", "expected"), [
    # what real SPs send as IDs: pysaml2, python3-saml, Shibboleth/SimpleSAMLphp/samlify/ADFS, Keycloak, xmlsec
    pytest.param("id-6b3a9f1c2e", True, id="pysaml2"),
    pytest.param("ONELOGIN_4fee3b046395c4e751011e97f8900b5273d56685", True, id="python3-saml"),
    pytest.param("_5d7c2a9e-0f3b-4c1d-9a8e-2b6f1c3d4e5f", True, id="underscore-guid"),
    pytest.param("ID_0c1f8a3e-9b2d-4e6f-8a7c-5d3e2f1a0b9c", True, id="keycloak"),
    pytest.param("pfx41d8ef22-e612-8c50-9960-1b16f15741b3", True, id="xmlsec-sample"),
    pytest.param("a\u00b7b", True, id="middle-dot-inside"),
    pytest.param("_e\u0301", True, id="combining-accent-inside"),
    pytest.param("\u00fc", True, id="latin-letter"),
    pytest.param("1abc", False, id="starts-with-digit"),
    pytest.param("-abc", False, id="starts-with-hyphen"),
    pytest.param(".abc", False, id="starts-with-dot"),
    pytest.param("a b", False, id="space"),
    pytest.param("a:b", False, id="colon"),
    pytest.param("", False, id="empty"),
    # Python's \w takes these, XML 1.0 §2.3 does not (libxml2 refuses them as names)
    pytest.param("\u00aaabc", False, id="feminine-ordinal-first"),
    pytest.param("_\u00b2", False, id="superscript-two"),
])
def test_is_ncname_follows_xml_names(value: str, expected: bool) -> None:
    """Namespaces in XML §3 over XML 1.0 §2.3 (fifth edition): the lexical space of xs:ID."""
    assert is_ncname(value) is expected


def test_documents_parsed_for_different_callers_do_not_share_a_names_dictionary() -> None:
    """A document's names dictionary (libxml2's xmlDict) is written by whoever adds a name to the document (lxml
    making an element, libxmlsec1 registering an ID), without any lock: a dictionary another parse is filling at the
    same time is corrupted (glibc's "double free or corruption" ended the worker). A name put into one parsed
    document is therefore none of another's: exclusive canonicalisation renders a PrefixList entry only when the
    document's dictionary holds the name."""
    first = parse_untrusted(b"<r/>", 100)
    etree.SubElement(first, "zq7prefixfromanotherdocument")
    second = parse_untrusted(b"<r/>", 100)
    etree.SubElement(second, "d", nsmap={"zq7prefixfromanotherdocument": "urn:x"})  # (a declaration: no name)
    canonical = etree.tostring(second, method="c14n", exclusive=True,
                               inclusive_ns_prefixes=["zq7prefixfromanotherdocument"])
    assert canonical == b"<r><d></d></r>"


_CONCURRENT_IDS = """
import sys, threading, time
import xmlsec
from broker.saml.xmlparse import parse_untrusted

stop = threading.Event()

def others(k):
    n = 0
    while not stop.is_set():
        names = "".join(f"<o{k}n{n}x{i} a{n}y{i}='1'/>" for i in range(3000))
        parse_untrusted(f"<r>{names}</r>".encode(), 1 << 22)
        n += 1

def request():
    until = time.monotonic() + float(sys.argv[1])
    n = 0
    while time.monotonic() < until:
        root = parse_untrusted(b"<r><a/></r>", 100)
        for i in range(20):
            root[0].set("ID", f"_id{n}_{i}")
            xmlsec.SignatureContext().register_id(root[0], "ID")
        n += 1
    print("done", n)

threads = [threading.Thread(target=others, args=(k,)) for k in range(3)]
for t in threads:
    t.start()
main = threading.Thread(target=request)
main.start()
main.join()
stop.set()
for t in threads:
    t.join()
"""


def test_a_parsed_document_is_used_while_other_documents_are_parsed() -> None:
    """What verifying a signature does (libxmlsec1 registers the signed element's ID in the document's dictionary)
    while other requests' messages are parsed: one request's document and another's parse never meet in one
    dictionary, so the process lives (it died within a second when they did)."""
    done = subprocess.run([sys.executable, "-c", _CONCURRENT_IDS, "4"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[3], timeout=120, check=False)
    assert (done.returncode, done.stdout.split()[:1]) == (0, ["done"]), done.stderr[-2000:]
