"""The one hardened XML parser for untrusted SAML input.

lxml with DTD loading, entity resolution and network access off, and any
document carrying a DOCTYPE refused outright (SAML messages never need one;
entity expansion and external entities are the classic XML attacks).
Comments and processing instructions are dropped while parsing.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from lxml import etree


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        # Comments go at parse time: signatures are computed over canonical XML without comments anyway, and a
        # comment inside a signed text node (<NameID>admin<!---->.evil.example</NameID>) would otherwise split
        # it, so that reading only the first text node yields a value nobody signed.
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


# One parser per thread: lxml serialises concurrent use of one parser object, so the request threads of a
# worker would queue behind each other on a shared one.
_local = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _new_parser()
    return parser


# lxml interns every element, attribute and namespace name it parses into a dictionary of the parsing thread
# (libxml2's xmlDict), which it never shrinks while the thread lives: untrusted messages full of names never seen
# before (any web page can make browsers post them to the ACS) grew a worker's request threads by ~400 KB per
# 256 KiB message, for good (111 MB after 280 posts). Untrusted documents are therefore parsed in threads of their
# own, retired once they have parsed _BYTES_PER_POOL between them: a retired thread's dictionary goes with the last
# document parsed into it (libxml2 counts the documents using it).
_PARSER_THREADS = 4
_BYTES_PER_POOL = 8 << 20


class _ParserThreads:
    """The threads untrusted documents are parsed in (a forked worker makes its own: threads do not survive a
    fork), replaced by new ones after they have parsed ``_BYTES_PER_POOL``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._parsed = 0
        # a thread of gunicorn's master (the metadata refresher) may hold the lock at a fork
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool = None

    def parse(self, data: bytes) -> etree._Element:
        with self._lock:
            pool = self._pool
            if pool is None or self._pid != os.getpid() or self._parsed >= _BYTES_PER_POOL:
                if pool is not None and self._pid == os.getpid():
                    pool.shutdown(wait=False)  # its threads end once the parses given to them are done
                pool = self._pool = ThreadPoolExecutor(max_workers=_PARSER_THREADS, thread_name_prefix="xml-parser")
                self._pid, self._parsed = os.getpid(), 0
            self._parsed += len(data)
            pending = pool.submit(_parse, data)
        return pending.result()


def _parse(data: bytes) -> etree._Element:
    try:
        return etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXml(f"not well-formed XML: {exc}") from None


_PARSERS = _ParserThreads()


# XML 1.0 (fifth edition) §2.3 NameStartChar and NameChar, without ":" (Namespaces in XML §3: NCName)
_NAME_START = ("A-Z_a-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C-\u200D"
               "\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD\U00010000-\U000EFFFF")
_NCNAME = re.compile(f"[{_NAME_START}][{_NAME_START}\\-.0-9\u00B7\u0300-\u036F\u203F-\u2040]*")


def is_ncname(value: str) -> bool:
    """Whether ``value`` is an XML NCName (Namespaces in XML §3 over XML 1.0 §2.3): the lexical space of xs:ID
    and of a namespace prefix."""
    return _NCNAME.fullmatch(value) is not None


class UnsafeXml(ValueError):
    """The input is not well-formed, or uses a feature refused for safety."""


def parse_untrusted(data: bytes, max_bytes: int) -> etree._Element:
    """Parse ``data`` into its root element; raise :class:`UnsafeXml` saying why not."""
    if len(data) > max_bytes:
        raise UnsafeXml(f"document larger than {max_bytes} bytes")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise UnsafeXml("document type declarations are not allowed")
    root = _PARSERS.parse(data)
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
        raise UnsafeXml("document type declarations are not allowed")
    return root


_NON_NEGATIVE = re.compile(r"\+?[0-9]+")
_LARGE = 1 << 31


def non_negative_integer(text: str) -> int:
    """An xs:nonNegativeInteger attribute value (XML Schema Part 2 §3.3.20: optional "+", digits; whitespace
    collapsed), as an int; values past 2**31 are read as 2**31, which no count here comes near, so that no
    4,300-digit value reaches ``int``. ValueError for anything else."""
    value = text.strip()
    if not _NON_NEGATIVE.fullmatch(value):
        raise ValueError(f"{text[:40]!r} is not an xs:nonNegativeInteger")
    digits = value.lstrip("+").lstrip("0") or "0"
    return int(digits) if len(digits) <= 9 else _LARGE
