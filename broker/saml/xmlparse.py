"""The one hardened XML parser for untrusted SAML input.

lxml with DTD loading, entity resolution and network access off, and any
document carrying a DOCTYPE refused outright (SAML messages never need one;
entity expansion and external entities are the classic XML attacks).
Comments and processing instructions are dropped while parsing.
"""

from __future__ import annotations

import re
import threading

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
# 256 KiB message, for good (111 MB after 280 posts). Each untrusted document is therefore parsed in a thread of its
# own, which ends with the parse: its dictionary goes with the document (libxml2 counts the documents using it).
# One thread per document, not a pool: the dictionary is also written, without any lock, by whoever adds a name to
# the document afterwards (lxml making an element, libxmlsec1 registering an ID), and a pool's thread would be
# filling it with the next message's names at the same time (heap corruption: the worker died).


def _parse(data: bytes) -> etree._Element:
    try:
        return etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXml(f"not well-formed XML: {exc}") from None


def _parse_into(data: bytes, outcome: list[etree._Element | BaseException]) -> None:
    try:
        outcome.append(_parse(data))
    except BaseException as exc:  # handed to the caller, raised there as if parsed in its own thread
        outcome.append(exc)


def _parse_alone(data: bytes) -> etree._Element:
    """``data`` parsed in a thread that parses nothing else (see above)."""
    outcome: list[etree._Element | BaseException] = []
    thread = threading.Thread(target=_parse_into, args=(data, outcome), name="xml-parser", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had (the process's limit): the caller's own does it
        return _parse(data)
    thread.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


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
    root = _parse_alone(data)
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
        raise UnsafeXml("document type declarations are not allowed")
    return root
