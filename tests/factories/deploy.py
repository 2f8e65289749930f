"""The deployment files (docker-compose.yml, deploy/) as the tests read and run them.

The compose stack's nginx configuration names paths inside its container (``/etc/nginx/tls``,
``/etc/nginx/broker``), listens on 443 and reaches the replicas by the compose service name ``broker``.
:func:`nginx_conf_on_loopback` turns it into the same configuration for a loopback test: each container path
becomes the host directory docker-compose.yml mounts there (here: the test's generated one), ``listen 443``
a loopback port, and the one ``server broker:8080`` line one line per broker instance the test runs (nginx
resolves upstream names when it loads, and ``broker`` exists only inside the compose network). Every
replacement must find its text, so a change to the file that these tests would no longer cover fails them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
NGINX_CONF = REPO / "deploy" / "nginx" / "broker.conf"
OVERLAY = REPO / "deploy" / "compose" / "broker.yaml"
SENTINEL_OVERLAY = REPO / "deploy" / "compose" / "broker-sentinel.yaml"
SENTINEL_CONF = REPO / "deploy" / "redis" / "sentinel.conf"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"

# where `broker proxy-config nginx` writes for the compose stack, as docs/deployment.md tells operators
PROXY_DIR_IN_CONTAINER = "/etc/nginx/broker"
UPSTREAM = "http://brokers"
PROXY_CONFIG_COMMAND = ("broker proxy-config nginx --config var/demo/config --out var/proxy "
                        f"--proxy-dir {PROXY_DIR_IN_CONTAINER} --upstream {UPSTREAM}")

_VARIABLE = re.compile(r"^\$\{(?P<name>[A-Z_]+):-(?P<default>[^}]+)\}$")
_UPSTREAM_SERVER = re.compile(r"^(?P<indent>[ \t]*)server broker:8080(?P<params>[^;]*);$", re.MULTILINE)


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def default_of(source: str) -> tuple[str | None, str]:
    """``${NAME:-default}`` → (NAME, default); a plain path → (None, path)."""
    found = _VARIABLE.match(source)
    if found is None:
        return None, source
    return found["name"], found["default"]


def volume_parts(volume: str) -> tuple[str, str]:
    """(source, target) of a short volume syntax ``source:target[:mode]``; the source may be ``${NAME:-x}``."""
    cut = volume.index("}") + 1 if volume.startswith("${") else volume.index(":")
    return volume[:cut], volume[cut:].split(":")[1]


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts: container path → host path (variables at their defaults, relative to the repo)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume_parts(str(volume))
        _, path = default_of(source)
        if path.startswith(("./", "/")):
            mounts[target] = path
    return mounts


def nginx_conf_on_loopback(*, mounted: dict[str, Path], port: int, upstreams: list[str]) -> str:
    """deploy/nginx/broker.conf for a loopback nginx (see the module's docstring). ``mounted``: container
    directory → the host directory holding what compose would mount there."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    for inside, outside in mounted.items():
        assert f"{inside}/" in text, f"{NGINX_CONF.name} names nothing under {inside}"
        text = text.replace(f"{inside}/", f"{outside}/")
    assert text.count("listen 443 ssl;") == 1, "expected one `listen 443 ssl;`"
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    found = _UPSTREAM_SERVER.search(text)
    assert found is not None, "expected `server broker:8080 ...;` in the upstream block"
    lines = "\n".join(f"{found['indent']}server {address}{found['params']};" for address in upstreams)
    return text[:found.start()] + lines + text[found.end():]
