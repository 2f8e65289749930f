"""A regional SP added to a test's copy of the configuration, as regional IT adds one: its metadata file and its
``service-providers/<id>.yaml`` (the format of config/example/service-providers/demo-sp.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def register_sp(config_dir: Path, sp_id: str, *, entity_id: str, name: str, metadata: bytes,
                **settings: Any) -> Path:
    """``metadata/<sp_id>.xml`` and ``service-providers/<sp_id>.yaml``: the SP named ``name`` (in both languages),
    for Kommun A and Kommun B, its AuthnRequests required signed, and ``settings`` (release, sign_response,
    encrypt_assertions ...) over those. Returns the file written."""
    (config_dir / "metadata" / f"{sp_id}.xml").write_bytes(metadata)
    path = config_dir / "service-providers" / f"{sp_id}.yaml"
    path.write_text(yaml.safe_dump({
        "entity_id": entity_id,
        "name": {"sv": name, "en": name},
        "metadata": f"metadata/{sp_id}.xml",
        "municipalities": ["kommun-a", "kommun-b"],
        "require_signed_requests": True,
        **settings,
    }, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
