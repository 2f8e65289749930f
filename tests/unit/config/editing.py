"""Editing a private copy of the example configuration, and reading what the loader says about it.

A test changes one thing in ``config_dir`` (a line, a file), loads the
directory and compares *every* reported issue with the expected ones: file,
line, key path, and a fragment of the message that names what was expected.
Lines are given as numbers or as the start of the line they must point at
(located in the edited file), so an expectation reads like the YAML it is about.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.config.loader import load_settings
from broker.errors import ConfigError, ConfigIssue

BROKER = "broker.yaml"
KOMMUN_A = "municipalities/kommun-a.yaml"
KOMMUN_B = "municipalities/kommun-b.yaml"
DEMO_SP = "service-providers/demo-sp.yaml"

Edit = Callable[[Path], None]


def replace_once(file: Path, old: str, new: str) -> None:
    """Replace the single occurrence of ``old`` in ``file`` (fails if it is absent or repeated)."""
    text = file.read_text(encoding="utf-8")
    count = text.count(old)
    assert count == 1, f"{old!r} occurs {count} times in {file}; an edit must be unambiguous"
    file.write_text(text.replace(old, new), encoding="utf-8")


def replacing(rel: str, old: str, new: str) -> Edit:
    """An edit of ``<config_dir>/<rel>`` replacing the one occurrence of ``old`` with ``new``."""

    def edit(config_dir: Path) -> None:
        replace_once(config_dir / rel, old, new)

    return edit


def replacing_block(rel: str, header: str, new: str) -> Edit:
    """An edit of ``<config_dir>/<rel>`` replacing the one block that starts with the line ``header`` (compared
    without a trailing comment) and runs through every following line indented deeper, or blank, with ``new``:
    a whole mapping such as ``"  revocation:"``, whatever the example holds under it."""

    def edit(config_dir: Path) -> None:
        file = config_dir / rel
        lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
        starts = [n for n, line in enumerate(lines) if line.split(" #", 1)[0].rstrip() == header]
        assert len(starts) == 1, f"{len(starts)} lines of {file} are {header!r}; an edit must be unambiguous"
        start = starts[0]
        indent = len(header) - len(header.lstrip())
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
            end += 1
        file.write_text("".join([*lines[:start], new, *lines[end:]]), encoding="utf-8")

    return edit


def combined(*edits: Edit) -> Edit:
    def edit(config_dir: Path) -> None:
        for e in edits:
            e(config_dir)

    return edit


def write_text(file: Path, text: str) -> Path:
    """Write dedented ``text`` (so tests can indent their YAML) and return the path."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(textwrap.dedent(text), encoding="utf-8")
    return file


def line_of(file: Path, start: str) -> int:
    """The 1-based number of the one line of ``file`` that begins (after indentation) with ``start``."""
    lines = file.read_text(encoding="utf-8").splitlines()
    hits = [n for n, line in enumerate(lines, 1) if line.lstrip().startswith(start)]
    assert len(hits) == 1, f"{len(hits)} lines of {file} start with {start!r}; expected exactly one"
    return hits[0]


@dataclass(frozen=True)
class Expected:
    """One expected issue. ``line``: a number, the start of the line it must name, or None (no line)."""

    file: str
    line: int | str | None
    key: str
    fragment: str

    def resolve(self, root: Path) -> tuple[str, int | None, str]:
        line = line_of(root / self.file, self.line) if isinstance(self.line, str) else self.line
        return self.file, line, self.key


def load_issues(config_dir: Path) -> list[ConfigIssue]:
    """The issues of a configuration that must not load."""
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir)
    return list(info.value.issues)


def _order(where: tuple[str, int | None, str]) -> tuple[str, int, str]:
    return where[0], where[1] or 0, where[2]


def assert_issues(actual: Sequence[ConfigIssue], expected: Sequence[Expected], root: Path) -> None:
    """``actual`` are exactly the ``expected`` issues (in any order), each message holding its fragment."""
    shown = "\n".join(f"  {i}  [line={i.line!r} key={i.key!r}]" for i in actual) or "  (none)"
    got = sorted(((i.file, i.line, i.key) for i in actual), key=_order)
    want = sorted((e.resolve(root) for e in expected), key=_order)
    assert got == want, f"issues reported:\n{shown}"
    unused = [((i.file, i.line, i.key), i.message) for i in actual]
    for e in expected:
        where = e.resolve(root)
        match = next((pair for pair in unused if pair[0] == where and e.fragment in pair[1]), None)
        assert match is not None, f"no issue at {where} says {e.fragment!r}; issues reported:\n{shown}"
        unused.remove(match)
