"""Machine instructions per federated login leg, counted by valgrind's callgrind: a measure other tenants of a
shared machine cannot move.

    .venv/bin/python bench/federation_instructions.py [--legs 40] [--redis redis://127.0.0.1:6379/0] [--keep FILE]

What is counted is the leg a federated login adds at the ACS, as ``bench/federation.py`` times it over HTTP:
Kommun C's signed Response (the demo's pysaml2 IdP, user karin) posted to ``/saml/sp/acs`` with the browser's
binding cookie, answered with the auto-post page carrying the broker's signed Response to the SP. The broker takes
the pending login (Redis, one use), validates the Response (signature in process, every check of
docs/federation.md), records the Assertion ID against replay, creates the session, writes and fsyncs the audit
events, signs its own Response and renders the page. The WSGI app is called directly. Before counting, each leg
is prepared as a fresh browser: the demo SP's AuthnRequest to the broker (``?municipality=kommun-c``, no discovery
page), the broker's AuthnRequest to the IdP and the IdP's Response, by an app of its own on the same configuration
and Redis, outside valgrind (pysaml2 under valgrind would take most of an hour). As in
``bench/login_instructions.py`` (whose toggle this uses), counting is on only while the app handles the POST.
The IdP's assertions live 5 minutes: on a busy machine the last legs can outlive them (the run stops at the first
leg refused, naming its reason code).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(REPO))

import federation  # noqa: E402
import login_instructions  # noqa: E402
from flask import Flask  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from broker.app import create_app  # noqa: E402
from broker.config.loader import load_settings  # noqa: E402
from broker.demo.materials import generate  # noqa: E402
from broker.session.store import RedisStore  # noqa: E402
from tests.factories.idp import ACS_URL, KARIN, make_idp, to_idp  # noqa: E402
from tests.factories.saml import BASE_URL, Browser, make_sp  # noqa: E402

WARM_UP = 10


def _app(config: Path, redis_url: str, prefix: str, instance_id: str) -> Flask:
    return create_app(load_settings(config), store=RedisStore(redis_url, prefix=prefix), instance_id=instance_id)


def _prepare(root: Path, config: Path, legs: int, redis_url: str, prefix: str) -> list[dict[str, Any]]:
    """Each leg as a fresh browser up to the IdP's Response: what it posts to the ACS, with its cookies. Made by an
    app of its own on the same configuration and Redis (the pending logins are there), outside valgrind."""
    app = _app(config, redis_url, prefix, "bench-prepare")
    services = app.extensions["broker"]
    settings = services.settings
    sp = make_sp(root, services.metadata.document(), settings.broker.idp.entity_id)
    idp = make_idp(root, services.sp_metadata.document())
    prepared = []
    try:
        for _ in range(legs):
            browser = Browser(app.test_client())
            at = to_idp(browser, idp, browser.get(sp.login_url() + "&municipality=kommun-c"))
            post = idp.respond(at.request, at.relay_state, KARIN)
            assert post.url == ACS_URL, post.url
            cookies = "; ".join(f"{c.key}={c.value}" for c in browser.client._cookies.values())
            prepared.append({"fields": post.fields, "cookie": cookies, "remote_addr": browser.remote_addr})
    finally:
        services.audit.close()
    return prepared


def _count(args: argparse.Namespace) -> int:
    """Prepare the legs, then post them under callgrind and print instructions per leg."""
    login_instructions.need_tools()
    with tempfile.TemporaryDirectory() as tmp:
        layout = generate(Path(tmp) / "demo", REPO / "config" / "example", dt.datetime.now(dt.UTC))
        legs_file = Path(tmp) / "legs.json"
        # a key prefix of the run's own (two runs at once on one Redis must not meet), removed afterwards
        prefix = f"bench-fed-{secrets.token_hex(4)}:"
        try:
            legs_file.write_text(json.dumps(_prepare(layout.root, layout.config, args.legs + WARM_UP, args.redis,
                                                     prefix)))
            legs, instructions = login_instructions.callgrind(
                HERE, ["--config", str(layout.config), "--legs-file", str(legs_file), "--prefix", prefix,
                       "--redis", args.redis], "legs", args.keep)
        finally:
            federation._forget(args.redis, prefix)
    print(f"federated login legs at the ACS through WSGI under callgrind, real Redis ({args.redis})")
    print(f"  legs counted:        {legs}")
    print(f"  instructions per leg: {instructions / legs / 1e6:.2f} million (user space, the broker's work)")
    return 0


def _inner(args: argparse.Namespace) -> int:
    """Under valgrind: post each prepared Response, counting only while the app handles it."""
    toggle = ctypes.CDLL(os.environ["BENCH_CALLGRIND_TOGGLE"])
    if not toggle.on_valgrind():
        sys.exit("--inner runs only under valgrind; run the script without it")
    app = _app(args.config, args.redis, args.prefix, "bench")
    legs = json.loads(args.legs_file.read_text())
    environs = [EnvironBuilder(path="/saml/sp/acs", method="POST", base_url=BASE_URL, data=leg["fields"],
                               headers={"Cookie": leg["cookie"]},
                               environ_base={"REMOTE_ADDR": leg["remote_addr"]}).get_environ() for leg in legs]
    try:
        for i, environ in enumerate(environs):
            counted = i >= WARM_UP
            answer: list[tuple[str, list[tuple[str, str]]]] = []
            if counted:
                toggle.toggle_collect()
            body = b"".join(app(environ, lambda s, h, e=None, seen=answer: seen.append((s, h))))
            if counted:
                toggle.toggle_collect()
            if not answer or not answer[0][0].startswith("200") or b"SAMLResponse" not in body:
                reason = dict(answer[0][1]).get("X-Broker-Reason") if answer else None
                sys.exit(f"leg {i} failed: {answer[0][0] if answer else None} {reason}")
    finally:
        app.extensions["broker"].audit.close()  # seal the chain while its directory still exists
    print(f"legs counted: {len(environs) - WARM_UP}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, default=40)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--keep", type=Path, metavar="FILE",
                        help="keep callgrind's output there (callgrind_annotate FILE: where the instructions go)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--legs-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return _inner(args) if args.inner else _count(args)


if __name__ == "__main__":
    sys.exit(main())
