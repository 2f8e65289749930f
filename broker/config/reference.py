"""The configuration reference as Markdown, derived from the same dataclasses the loader parses with.

``broker config reference`` prints it; docs/configuration.md is its output
(a test keeps the two identical).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

from broker.config.schema import BrokerConfig, MunicipalityConfig, ServiceProviderConfig
from broker.config.typed import _is_custom
from broker.config.yamlsource import MAX_FILE_BYTES

FILES = (
    ("broker.yaml", BrokerConfig),
    ("municipalities/<id>.yaml", MunicipalityConfig),
    ("service-providers/<id>.yaml", ServiceProviderConfig),
)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _type_name(inner[0]) + " (optional)"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(get_args(tp)[0])}"
    if _is_custom(tp):
        name: str = tp.__name__
        return {"Duration": "duration", "SecretFile": "secret file", "CaCertificates": "CA certificate file",
                "CertificateFile": "certificate file", "CrlFile": "CRL file", "PrivateKeyFile": "private key file",
                "WritableDirectory": "directory", "Ed25519KeyFile": "Ed25519 private key file",
                "Ed25519PublicKeyFile": "Ed25519 public key file", "MetadataFile": "metadata file",
                "IpNetwork": "network", "HostPort": "host:port",
                "Oid": "OID", "HttpsUrl": "https URL", "HttpsQueryUrl": "https URL", "EntityId": "entity ID",
                "OrganizationNumber": "organisation number", "Regex": "regex"}.get(name, name)
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(tp, str(tp))


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
        if value is None:
            return "none"
        if isinstance(value, tuple):
            return "`[" + ", ".join(str(v) for v in value) + "]`"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        return f"`{value}`"
    if f.default_factory is not dataclasses.MISSING:
        return "(see below)"
    return "**required**"


def _bounds(f: dataclasses.Field[Any]) -> str:
    """The range an integer field accepts (its ``min`` and ``max``), as the type column shows it."""
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if low is None and high is None:
        return ""
    if high is None:
        return f", at least {low}"
    return f", {low} to {high}" if low is not None else f", at most {high}"


def _rows(cls: type[Any], prefix: str, out: list[str]) -> None:
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        inner = tp
        origin = get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            inner = next(a for a in get_args(tp) if a is not type(None))
        if origin is tuple and dataclasses.is_dataclass(get_args(tp)[0]) and not _is_custom(get_args(tp)[0]):
            out.append(f"| `{key}` | list of mappings | {_default(f)} | {f.metadata.get('doc', '')} |")
            _rows(get_args(tp)[0], f"{key}[].", out)
            continue
        out.append(f"| `{key}` | {_type_name(tp)}{_bounds(f)} | {_default(f)} | {f.metadata.get('doc', '')} |")
        if dataclasses.is_dataclass(inner) and not _is_custom(inner) and isinstance(inner, type):
            _rows(inner, f"{key}.", out)


def markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the configuration schema (`broker config reference`); "
        "`broker config schema --kind ...` prints the same as JSON Schema for editors.",
        "Paths are relative to the configuration directory. Durations: seconds, or `500ms`, `30s`, `10m`, "
        "`8h`, `1h30m`, `7d`. Integers are decimal (a leading zero is refused, never read as octal). Unknown keys "
        f"are errors. Each YAML file is a regular file of at most {MAX_FILE_BYTES >> 20} MiB; the files it names "
        "(keys, certificates, metadata, CRLs) are regular files too, never a FIFO or a device. Names starting "
        "with '.' (editors' locks and backups) are ignored in municipalities/ and service-providers/.",
        "",
    ]
    for name, cls in FILES:
        lines += [f"## `{name}`", "", " ".join((cls.__doc__ or "").split()), "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        _rows(cls, "", lines)
        lines.append("")
    return "\n".join(lines)
