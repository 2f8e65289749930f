"""A strict parser from YAML data to frozen dataclasses, and the JSON Schema of the same types.

One description of the configuration (the dataclasses in :mod:`broker.config.schema`)
serves three purposes: parsing, error messages and the editor schema.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]``,
``X | None``, ``tuple[X, ...]``, nested frozen dataclasses, and any class with
``from_config(value, ctx, path)`` and ``json_schema()`` classmethods (file-backed
values such as certificates, durations, networks). Unknown keys, missing
required keys and wrong types are reported with file, line and key path; all
problems are collected, not just the first.

Field metadata understood: ``doc`` (description), ``min`` and ``max`` (integers,
inclusive), ``min_items`` (tuples), ``examples``. A dataclass may define
``config_check(self) -> Iterable[tuple[KeyPath, str]]`` for cross-field rules;
paths it yields are relative to the dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, get_args, get_origin, get_type_hints

from broker.config.yamlsource import KeyPath, YamlSource, integer_hint
from broker.errors import ConfigIssue

T = TypeVar("T")


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


class ParseContext:
    """State of one file's parse: where it is, where relative paths start, what went wrong."""

    def __init__(self, source: YamlSource, config_dir: Path) -> None:
        self.source = source
        self.config_dir = config_dir
        self.issues: list[ConfigIssue] = []

    def error(self, path: KeyPath, message: str) -> Any:
        self.issues.append(self.source.issue(path, message))
        return INVALID

    def resolve(self, value: str) -> Path:
        """A configured path: absolute, or relative to the configuration directory."""
        p = Path(value)
        return p if p.is_absolute() else self.config_dir / p


class ConfigValueType(Protocol):
    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> Any: ...

    @classmethod
    def json_schema(cls) -> dict[str, Any]: ...


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_custom(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "from_config") and hasattr(tp, "json_schema")


def parse_document(cls: type[T], source: YamlSource, config_dir: Path) -> tuple[T | None, list[ConfigIssue]]:
    """Parse a whole file into ``cls``; returns (instance or None, issues)."""
    ctx = ParseContext(source, config_dir)
    result = parse_value(cls, source.data, ctx, ())
    if ctx.issues or result is INVALID:
        return None, ctx.issues
    return typing.cast(T, result), []


def parse_value(tp: Any, value: Any, ctx: ParseContext, path: KeyPath, meta: Any = None) -> Any:
    meta = meta or {}
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(get_args(tp)):
            return None
        if len(args) != 1:
            raise TypeError(f"unsupported union {tp}")
        return parse_value(args[0], value, ctx, path, meta)
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed and type(value) is type(allowed[0]):
            return value
        choices = ", ".join(str(a) for a in allowed)
        return ctx.error(path, f"expected one of: {choices}; got {_describe(value)}")
    if origin is tuple:
        (item_tp, ellipsis) = get_args(tp)
        if ellipsis is not Ellipsis:
            raise TypeError(f"unsupported tuple {tp}")
        if not isinstance(value, list):
            return ctx.error(path, f"expected a list, got {_describe(value)}")
        min_items = meta.get("min_items", 0)
        if len(value) < min_items:
            return ctx.error(path, f"expected at least {min_items} item(s), got {len(value)}")
        items = [parse_value(item_tp, item, ctx, (*path, i)) for i, item in enumerate(value)]
        return INVALID if any(i is INVALID for i in items) else tuple(items)
    if _is_custom(tp):
        try:
            return tp.from_config(value, ctx, path)
        except ValueError as exc:
            return ctx.error(path, str(exc))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _parse_dataclass(tp, value, ctx, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        return ctx.error(path, f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            digits = len(str(abs(value)))
            shown = str(value) if digits <= 20 else f"a number of {digits} digits"
            if "min" in meta and value < meta["min"]:
                return ctx.error(path, f"expected an integer >= {meta['min']}, got {shown}")
            if "max" in meta and value > meta["max"]:
                return ctx.error(path, f"expected an integer <= {meta['max']}, got {shown}")
            return value
        return ctx.error(path, f"expected an integer, got {_describe(value)}{integer_hint(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return ctx.error(path, f"expected a number, got {_describe(value)}{integer_hint(value)}")
    if tp is str:
        if isinstance(value, str):
            if not value.strip():
                return ctx.error(path, "expected a non-empty string")
            return value
        hint = " (quote the value in YAML)" if isinstance(value, bool | int | float) else ""
        return ctx.error(path, f"expected a string, got {_describe(value)}{hint}")
    raise TypeError(f"unsupported configuration type {tp!r}")


def _parse_dataclass(cls: type[Any], value: Any, ctx: ParseContext, path: KeyPath) -> Any:
    if not isinstance(value, dict):
        return ctx.error(path, f"expected a mapping, got {_describe(value)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    ok = True
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            allowed = ", ".join(fields)
            ctx.error((*path, key), f"unknown key (allowed here: {allowed}){suggestion}")
            ok = False
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                ctx.error(path, f"missing required key {name!r}: {f.metadata.get('doc', '')}".rstrip(": "))
                ok = False
            continue
        parsed = parse_value(hints[name], value[name], ctx, (*path, name), f.metadata)
        if parsed is INVALID:
            ok = False
        else:
            kwargs[name] = parsed
    if not ok:
        return INVALID
    instance = cls(**kwargs)
    check = getattr(instance, "config_check", None)
    if check is not None:
        problems: Iterable[tuple[KeyPath, str]] = check()
        found = False
        for rel, message in problems:
            ctx.error((*path, *rel), message)
            found = True
        if found:
            return INVALID
    return instance


# --- JSON Schema (draft 2020-12) -------------------------------------------------


def json_schema(cls: type[Any], title: str) -> dict[str, Any]:
    """The JSON Schema of a configuration file whose root is ``cls``."""
    defs: dict[str, Any] = {}
    root = _schema_of(cls, defs, {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        **root,
        "$defs": defs,
    }


def _schema_of(tp: Any, defs: dict[str, Any], meta: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    out: dict[str, Any]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        out = {"anyOf": [_schema_of(args[0], defs, {}), {"type": "null"}]}
    elif origin is Literal:
        out = {"enum": list(get_args(tp))}
    elif origin is tuple:
        out = {"type": "array", "items": _schema_of(get_args(tp)[0], defs, {})}
        if meta.get("min_items"):
            out["minItems"] = meta["min_items"]
    elif _is_custom(tp):
        out = dict(tp.json_schema())
    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            hints = get_type_hints(tp)
            props: dict[str, Any] = {}
            required: list[str] = []
            for f in dataclasses.fields(tp):
                prop = _schema_of(hints[f.name], defs, f.metadata)
                if "doc" in f.metadata:
                    prop["description"] = f.metadata["doc"]
                if f.default is not dataclasses.MISSING and _jsonable(f.default):
                    prop["default"] = f.default
                if "examples" in f.metadata:
                    prop["examples"] = list(f.metadata["examples"])
                props[f.name] = prop
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    required.append(f.name)
            schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
            if required:
                schema["required"] = required
            if tp.__doc__:
                schema["description"] = " ".join(tp.__doc__.split())
            defs[name] = schema
        out = {"$ref": f"#/$defs/{name}"}
    elif tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer"}
        if "min" in meta:
            out["minimum"] = meta["min"]
        if "max" in meta:
            out["maximum"] = meta["max"]
    elif tp is float:
        out = {"type": "number"}
    elif tp is str:
        out = {"type": "string", "minLength": 1}
    else:
        raise TypeError(f"unsupported configuration type {tp!r}")
    return out


def _jsonable(value: Any) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, tuple):
        return all(_jsonable(v) for v in value)
    return False
