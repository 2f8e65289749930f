"""YAML loading that remembers where every key came from.

PyYAML's composer gives every node a start mark; we keep a map from key path
to line so that the typed parser can say ``municipalities/a.yaml:12:
certificate.policies[0].loa: ...``. Duplicate keys (which PyYAML silently
collapses to the last one) are errors here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.errors import ConfigIssue

KeyPath = tuple[str | int, ...]


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


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.issues: list[ConfigIssue] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            self._scalars.flatten_mapping(node)  # resolve YAML merge keys (<<)
            for key_node, value_node in node.value:
                key = self._scalars.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.issues.append(
                        ConfigIssue(self.file, line, format_path(path), f"key {key!r} must be a string")
                    )
                    continue
                if key in out:
                    self.issues.append(
                        ConfigIssue(self.file, line, format_path((*path, key)), "duplicate key")
                    )
                    continue
                self.lines[(*path, key)] = line
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node, deep=True)


def load_yaml(path: Path, display: str) -> tuple[YamlSource | None, list[ConfigIssue]]:
    """Parse one YAML file; returns the source or the issues that prevented it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [ConfigIssue(display, None, "", "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(display, None, "", f"cannot read file: {exc}")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return None, [ConfigIssue(display, line, "", f"YAML syntax error: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [ConfigIssue(display, None, "", f"YAML error: {exc}")]
    if node is None:
        return YamlSource(display, {}, {(): 1}), []
    builder = _Builder(display)
    try:
        data = builder.build(node, ())
    except yaml.YAMLError as exc:
        return None, [ConfigIssue(display, None, "", f"YAML error: {exc}")]
    if builder.issues:
        return None, builder.issues
    return YamlSource(display, data, builder.lines), []
