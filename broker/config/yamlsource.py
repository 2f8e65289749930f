"""YAML loading that remembers where every key came from.

PyYAML's composer gives every node a start mark; we keep a map from key path
to line so that the typed parser can say ``municipalities/a.yaml:12:
certificate.policies[0].loa: ...``. Duplicate keys (which PyYAML silently
collapses to the last one) are errors here.

An alias (YAML 1.1 §3.2.2.2, ``*name``) is the node of its anchor once more,
so ten aliases of a list of ten aliases of ... build 10^n values from a few
lines ("billion laughs"). Building stops at :data:`MAX_NODES` values per file
(a real configuration file has a few hundred) and says where; an alias inside
its own anchor (a value containing itself) is an error too.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.errors import ConfigIssue

KeyPath = tuple[str | int, ...]

MAX_NODES = 100_000   # values and keys built from one file, alias expansions included
MAX_FILE_BYTES = 1024 * 1024   # one YAML file; a real one is a few kilobytes


class FileRefused(Exception):
    """A configured file that is no regular file (a FIFO, a device, a socket) or is larger than its limit."""


def read_regular_file(path: Path, limit: int) -> bytes:
    """The content of ``path``, a regular file of at most ``limit`` bytes (symbolic links followed).

    Anything else is refused before it is read, with :class:`FileRefused`: a FIFO (``mkfifo``) would block
    the read until a writer comes, forever for ``config check`` and for the gunicorn master reloading on
    SIGHUP, and a device such as /dev/zero never ends. The file is opened without blocking (open(2)
    O_NONBLOCK, which a FIFO needs and a regular file ignores) and its type taken from the open descriptor,
    so a file swapped after the check is not read either; at most ``limit`` + 1 bytes are read, whatever the
    size said. A directory raises IsADirectoryError and a missing file FileNotFoundError, as reading would."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                    else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "not a regular file")
            raise FileRefused(f"{kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1024 * 1024, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise FileRefused(f"larger than {_size(limit)}")
    finally:
        os.close(fd)


UTF16 = "the file is UTF-16 text (Windows' \"Unicode\", as PowerShell 5 writes it)"


def is_utf16(data: bytes) -> bool:
    """Whether ``data`` is UTF-16 text: it starts with a byte order mark, or (without one) every other byte of its
    start is NUL, as in ASCII text written in UTF-16. (Read as UTF-8, the first fails at its first byte with no
    word of the cause, and the second passes, its NULs refused as YAML or PEM later.)"""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = data[:64]
    return len(head) >= 4 and (not any(head[0::2]) or not any(head[1::2]))


def _size(limit: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True)
class YamlSource:
    """A parsed YAML document plus the line of every key path (1-based)."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    # the places whose value the reading refused (an unknown tag, a recursive alias) and left empty: reported
    # there once, not again by the schema as a missing or mistyped value
    refused: frozenset[KeyPath] = frozenset()

    def line(self, path: KeyPath) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        return ConfigIssue(self.file, self.line(path), format_path(path), message)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose integers are decimal. YAML 1.1's other forms (yaml.org/type/int.html) read a value as
    something else than it says: base 60 turns ``idle_timeout: 1:30`` into 90, a leading zero means octal
    (``idle_timeout: 0600`` is 384 seconds, ``failures_per_address: 010`` is 8), and 0x/0b are hexadecimal and
    binary. Such values stay strings, which the schema refuses where a number belongs, saying why
    (:func:`integer_hint`); YAML 1.2's core schema has given up base 60 and the leading-zero octal too."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if not (tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in regexp.pattern)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern in (
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9_]*)$"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
):
    _StrictLoader.add_implicit_resolver(_tag, re.compile(_pattern), list("-+0123456789."))


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)")


def _other_number_form(node: yaml.Node) -> str:
    """Why a scalar tagged ``!!int`` or ``!!float`` explicitly is refused, or empty: the tag makes PyYAML's
    constructor read YAML 1.1's other forms (yaml.org/type/int.html, float.html), which :class:`_StrictLoader` keeps
    a plain value from being read as: ``!!int 010`` is octal 8, ``!!int 0x1F`` 31, ``!!int 1:30`` base 60."""
    if node.tag not in (_INT_TAG, _FLOAT_TAG) or not isinstance(node.value, str):
        return ""
    text = node.value.strip()
    shown = repr(text) if len(text) <= 40 else repr(text[:37] + "...")
    if ":" in text:
        return (f"YAML value {shown} does not fit its tag {node.tag} (YAML 1.1 reads {text[:40]} as a number in base "
                "60: write the number in decimal)")
    if node.tag == _INT_TAG and not _DECIMAL_INT.fullmatch(text) and _OTHER_BASE.fullmatch(text):
        return f"YAML value {shown} does not fit its tag {node.tag}{integer_hint(text)}"
    return ""


_OTHER_BASE = re.compile(r"[-+]?0(?:[0-9_]+|[xX][0-9a-fA-F_]+|[bB][01_]+|[oO][0-7_]+)")


def integer_hint(value: object) -> str:
    """Why ``value``, a string where a number belongs, is one: YAML 1.1 would have read ``0600`` as octal, and
    the loader keeps it a string instead (:class:`_StrictLoader`). Empty for any other value."""
    if not isinstance(value, str) or not _OTHER_BASE.fullmatch(value.strip()):
        return ""
    text = value.strip()
    sign = text[0] if text[0] in "+-" else ""
    digits = text.lstrip("+-")
    if digits[1:2].isdigit() or digits[1:2] == "_":
        decimal = digits.lstrip("0_") or "0"
        return f" (a leading zero: write {sign}{decimal}; YAML 1.1 reads a number with one as octal)"
    kind = {"x": "hexadecimal", "b": "binary", "o": "octal"}[digits[1].lower()]
    return f" (write the number in decimal: {text} is the {kind} form)"


class _TooManyNodes(Exception):
    """Building passed :data:`MAX_NODES`; ``path`` is where (see :meth:`_Builder._where`)."""

    def __init__(self, path: KeyPath, aliased: bool) -> None:
        super().__init__(format_path(path))
        self.path = path
        self.aliased = aliased


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.issues: list[ConfigIssue] = []
        self.refused: set[KeyPath] = set()
        self._scalars = yaml.constructor.SafeConstructor()
        self._built = 0
        self._seen: set[int] = set()      # nodes built once: meeting one again is an alias expansion
        self._open: set[int] = set()      # collections being built (an alias to one is a cycle)
        self._alias_at: KeyPath | None = None   # the outermost alias expansion being built, if any

    @staticmethod
    def _where(path: KeyPath) -> KeyPath:
        """The key that holds ``path``: list indices dropped (an index's recorded line is its anchor's)."""
        while path and isinstance(path[-1], int):
            path = path[:-1]
        return path

    def too_many(self, exc: _TooManyNodes) -> ConfigIssue:
        where = self._where(exc.path)
        cause = f"YAML aliases expand to more than {MAX_NODES}" if exc.aliased else f"more than {MAX_NODES}"
        return ConfigIssue(self.file, self.lines.get(where), format_path(where), f"too many nodes ({cause})")

    def _count(self, path: KeyPath) -> None:
        self._built += 1
        if self._built > MAX_NODES:
            raise _TooManyNodes(path if self._alias_at is None else self._alias_at, self._alias_at is not None)

    def _scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        if problem := _other_number_form(node):
            self.issues.append(ConfigIssue(self.file, node.start_mark.line + 1, format_path(path), problem))
            return None
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # e.g. an unknown tag such as `!include`, or `!!python/object`
            problem = getattr(exc, "problem", None) or str(exc)
            self.issues.append(ConfigIssue(self.file, node.start_mark.line + 1, format_path(path),
                                           f"YAML value cannot be read: {problem}"))
            return None
        except (ValueError, TypeError, AttributeError, LookupError):
            # e.g. `!!int four`, `!!timestamp soon`, 5000 digits; `!!bool maybe` (KeyError: PyYAML looks the word up
            # in its table of YAML 1.1 booleans, yaml.org/type/bool.html)
            text = str(node.value)
            if re.fullmatch(r"[-+]?[0-9]{41,}", text):  # past Python's limit for reading an integer (4300 digits)
                message = f"an integer of {len(text.lstrip('+-'))} digits is far past any setting"
            else:
                shown = repr(text) if len(text) <= 40 else repr(text[:37] + "...")
                message = f"YAML value {shown} does not fit its tag {node.tag}"
            self.issues.append(ConfigIssue(self.file, node.start_mark.line + 1, format_path(path), message))
            return None

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        """The value of ``node``; raises :class:`_TooManyNodes` past :data:`MAX_NODES`."""
        self._count(path)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            reported = len(self.issues)
            value = self._scalar(node, path)
            if len(self.issues) > reported:  # refused: the place is left empty (a mapping's key is not a place)
                self.refused.add(path)
            return value
        if node.tag not in _COLLECTION_TAGS:  # `!!python/object/apply:...` or `!include` on a list or mapping
            self.issues.append(ConfigIssue(self.file, node.start_mark.line + 1, format_path(path),
                                           f"YAML tag {node.tag} is not allowed (plain lists and mappings only)"))
            self.refused.add(path)
            return None
        key = id(node)
        if key in self._open:
            where = self._where(path)
            self.issues.append(ConfigIssue(self.file, self.lines.get(where), format_path(where),
                                           "recursive YAML alias (the value contains itself)"))
            self.refused.add(path)
            return None
        outermost = self._alias_at is None and key in self._seen
        if outermost:
            self._alias_at = path
        self._seen.add(key)
        self._open.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._open.discard(key)
            if outermost:
                self._alias_at = None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            pairs, merged = self._pairs(node, path, frozenset())
        except _MergeRefused as exc:
            self.issues.append(ConfigIssue(self.file, exc.node.start_mark.line + 1, format_path(path),
                                           f"YAML merge error: {exc}"))
            self.refused.add(path)  # left empty: its keys are not missing
            return out
        explicit_keys: set[str] = set()
        for index, (key_node, value_node) in enumerate(pairs):
            self._count(path)
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                # a list or mapping as a key (`? [a, b]`) is never a configuration key: refused unbuilt, as
                # building it could expand aliases past MAX_NODES uncounted, and showing it could be as large
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                self.issues.append(ConfigIssue(self.file, line, format_path(path),
                                               f"a key must be a string, not a {kind} (a YAML complex key)"))
                continue
            key = self._scalar(key_node, path)
            if not isinstance(key, str):
                shown = repr(key) if len(repr(key)) <= 40 else repr(key)[:37] + "..."
                self.issues.append(ConfigIssue(self.file, line, format_path(path), f"key {shown} must be a string"))
                continue
            from_merge = index < merged
            if key in explicit_keys or (from_merge and key in out):
                self.issues.append(
                    ConfigIssue(self.file, line, format_path((*path, key)), "duplicate key")
                )
                continue
            if not from_merge:
                explicit_keys.add(key)  # an explicit key overrides a merged one (YAML merge semantics)
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out

    def _pairs(self, node: yaml.MappingNode, path: KeyPath,
               merging: frozenset[int]) -> tuple[list[tuple[yaml.Node, yaml.Node]], int]:
        """The key and value nodes of ``node`` with its merge keys (``<<``, yaml.org/type/merge.html) resolved,
        and how many of them were merged: the merged pairs come first (a later mapping of a merged list before an
        earlier one), then the node's own. This is PyYAML's ``flatten_mapping``, except that the node is left as
        it is: that one rewrites it in place, so an anchored mapping with a merge key, built again through an
        alias, seemed to hold its merged keys twice (a false "duplicate key"). Every merged pair counts toward
        :data:`MAX_NODES` (a merge of merges of the same mapping doubles at each step)."""
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                own.append((key_node, value_node))
                continue
            if isinstance(value_node, yaml.MappingNode):
                sources = [value_node]
            elif isinstance(value_node, yaml.SequenceNode):
                sources = list(value_node.value)
                for sub in sources:
                    if not isinstance(sub, yaml.MappingNode):
                        raise _MergeRefused(sub, f"expected a mapping for merging, but found {sub.id}")
            else:
                raise _MergeRefused(value_node, f"expected a mapping or list of mappings for merging, but found "
                                                f"{value_node.id}")
            for sub in reversed(sources):
                if id(sub) in merging or sub is node:
                    raise _MergeRefused(sub, "the mapping merges itself (a recursive YAML alias)")
                sub_pairs, _ = self._pairs(sub, path, merging | {id(node)})
                for pair in sub_pairs:
                    self._count(path)
                    merged.append(pair)
        return merged + own, len(merged)


class _MergeRefused(Exception):
    """A merge key (``<<``) whose value is no mapping or list of mappings, or a mapping merging itself."""

    def __init__(self, node: yaml.Node, problem: str) -> None:
        super().__init__(problem)
        self.node = node


_MERGE_TAG = "tag:yaml.org,2002:merge"


_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


_STRUCTURAL_NBSP = re.compile(r"^[ \t\u00a0]*\u00a0|:\u00a0", re.MULTILINE)


def _nbsp_line(text: str, error_line: int | None) -> int | None:
    """The last line up to ``error_line`` (1-based) with a non-breaking space where YAML needs a plain one (in the
    indentation, or after a key's colon): it looks like a space, but YAML reads it as text, so the key or the
    indentation is not what it seems and the error shows at that line or a later one."""
    if error_line is None:
        return None
    found = None
    for match in _STRUCTURAL_NBSP.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if line > error_line:
            break
        found = line
    return found


_SWALLOWED_KEY = re.compile(r"\n[ \t]*[A-Za-z_][A-Za-z0-9_]*:[ \t\n]")


def _quote_left_open(text: str, error_line: int | None) -> tuple[int, int] | None:
    """Where a quote left open began and where its value ended (1-based lines), when a syntax error at
    ``error_line`` follows such a value: a quoted scalar that runs over lines that look like keys of their own
    (``status: active``), which the scanner took as text up to the next quote. PyYAML reports the error only
    where the value ends, or later; the line to fix is where it began."""
    if error_line is None:
        return None
    try:
        for token in yaml.scan(text, Loader=_StrictLoader):
            if token.start_mark.line + 1 > error_line:
                return None
            if isinstance(token, yaml.ScalarToken) and token.style in ('"', "'") \
                    and token.end_mark.line > token.start_mark.line \
                    and _SWALLOWED_KEY.search(text, token.start_mark.index, token.end_mark.index):
                return token.start_mark.line + 1, token.end_mark.line + 1
    except yaml.YAMLError:
        return None
    return None


def load_yaml(path: Path, display: str) -> tuple[YamlSource | None, list[ConfigIssue]]:
    """Parse one YAML file: its source and its issues. The source is None when the file cannot be read as YAML
    at all (missing, not UTF-8, a syntax error, too large or deep); a file with problems in single places (a
    duplicate key, whose first value is kept; a key that is no string, or a value with a tag, left out) gives
    its source too, so that the rest of the file is still checked and every problem is reported at once."""
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)  # before composing: PyYAML holds all of it, several times
    except FileNotFoundError:
        return None, [ConfigIssue(display, None, "", "file not found")]
    except FileRefused as exc:
        return None, [ConfigIssue(display, None, "", f"cannot read file: {exc} (a configuration file is a regular "
                                                     f"file of at most {_size(MAX_FILE_BYTES)})")]
    except OSError as exc:
        return None, [ConfigIssue(display, None, "", f"cannot read file: {exc}")]
    if is_utf16(data):
        return None, [ConfigIssue(display, None, "", f"not UTF-8: {UTF16}; save it as UTF-8")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # the line an editor shows, not a byte offset
        bad_line = data.count(b"\n", 0, exc.start) + 1
        return None, [ConfigIssue(display, bad_line, "", f"not UTF-8: byte 0x{data[exc.start]:02x} (save the file as "
                                                     "UTF-8; Latin-1 editors write å, ä, ö as single bytes)")]
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
    except yaml.reader.ReaderError as exc:  # a control character, refused before parsing with an offset, no line
        return None, [ConfigIssue(display, text.count("\n", 0, exc.position) + 1, "",
                                  f"character U+{exc.character:04X} is not allowed in YAML (a control character, "
                                  "often pasted from a terminal or a word processor: remove it)")]
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        return None, [ConfigIssue(display, None, "", "YAML nested too deeply")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or str(exc)
        if isinstance(exc, yaml.composer.ComposerError) and exc.context and exc.problem:
            # the composer's problem ends a sentence its context begins ("expected a single document in the
            # stream" ... "but found another document"; "found duplicate anchor 'x'; first occurrence" ... "second
            # occurrence"): alone it says nothing
            first = f" at line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
            message = f"{exc.context}{first}, {exc.problem}"
        elif exc.context_mark is not None and (mark is None or mark.index >= len(text) - 1):
            # the problem was only noticed at the end (an unclosed quote): point where it began
            mark = exc.context_mark
            message = f"{message} ({exc.context} that starts here)"
        line = mark.line + 1 if mark is not None else None
        opened = _quote_left_open(text, line)
        nbsp = _nbsp_line(text, line)
        if nbsp is not None:
            line = nbsp
            message += (f" (line {nbsp} holds a non-breaking space, U+00A0, often pasted from a web page or a word "
                        "processor: write a plain space)")
        elif "'\\t'" in message:
            message += " (YAML takes no tab for indentation or after a colon: use spaces)"
        elif opened is not None:
            line = opened[0]
            message += (f" (the quoted value that starts at line {opened[0]} runs on to line {opened[1]}, over the "
                        "keys below it: is its closing quote missing?)")
        return None, [ConfigIssue(display, line, "", f"YAML syntax error: {message}")]
    except yaml.YAMLError as exc:
        return None, [ConfigIssue(display, None, "", f"YAML error: {exc}")]
    if node is None:
        return YamlSource(display, {}, {(): 1}), []
    builder = _Builder(display)
    try:
        data = builder.build(node, ())
    except _TooManyNodes as exc:
        return None, [*builder.issues, builder.too_many(exc)]
    except RecursionError:
        return None, [ConfigIssue(display, None, "", "YAML nested too deeply")]
    except yaml.YAMLError as exc:
        return None, [ConfigIssue(display, None, "", f"YAML error: {exc}")]
    return YamlSource(display, data, builder.lines, frozenset(builder.refused)), builder.issues
