"""What a configuration is made of, to record in the audit trail and to say what changed since last time."""

from __future__ import annotations

import hashlib
from typing import Any

from broker.config.loader import Settings


def fingerprint(settings: Settings) -> dict[str, str]:
    """SHA-256 of every regular file under the configuration directory (except the audit trail itself)."""
    root = settings.config_dir
    audit_dir = settings.broker.audit.directory.path.resolve()
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        resolved = path.resolve()
        if resolved == audit_dir or audit_dir in resolved.parents:
            continue
        try:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
    return out


def summary(settings: Settings) -> dict[str, Any]:
    files = fingerprint(settings)
    overall = hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
    return {
        "config_sha256": overall,
        "municipalities": {m.id: m.status for m in settings.municipalities.values()},
        "service_providers": sorted(sp.entity_id for sp in settings.service_providers.values()),
        "files": files,
    }


def changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, list[str]]:
    """Files added, removed and modified since ``previous`` (a summary recorded earlier)."""
    if not previous:
        return {"added": sorted(current["files"]), "removed": [], "modified": []}
    old, new = previous.get("files") or {}, current["files"]
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "modified": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }
