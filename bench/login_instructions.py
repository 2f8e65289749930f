"""Machine instructions per certificate login, counted by valgrind's callgrind: a measure other tenants of a
shared machine cannot move.

    .venv/bin/python bench/login_instructions.py [--logins 200] [--redis redis://127.0.0.1:6379/0] [--keep FILE]

The same complete login as bench/login_wsgi.py (SP-signed AuthnRequest over HTTP-Redirect, anna's certificate,
failed-login counters, certificate with CRLs, signed Response, session, four audit events with fsync, auto-post
page), called as a WSGI application directly. The script starts itself again under
``valgrind --tool=callgrind --collect-atstart=no``; counting is switched on (``CALLGRIND_TOGGLE_COLLECT``, from a
small library compiled here with gcc against valgrind's callgrind.h) only while the app handles a login, so
start-up, the demo keys and the making of requests are not counted. Instructions in the kernel (system calls)
and the time spent waiting for Redis are not counted either: the count is the broker's user-space work.

CPU time per instruction differs between machines and moves with the load on a shared one; the count does not,
for the same code, inputs and library builds (PYTHONHASHSEED is fixed). Compare counts before and after a
change, not across machines. Under valgrind the login runs about 50 times slower; 200 logins take a few minutes.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

import login_wsgi  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

_TOGGLE_C = """
#include <valgrind/callgrind.h>
void toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
int on_valgrind(void) { return RUNNING_ON_VALGRIND; }
"""


def _toggle_library(directory: Path) -> Path:
    source, library = directory / "toggle.c", directory / "toggle.so"
    source.write_text(_TOGGLE_C)
    done = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"cannot compile the callgrind toggle (needs gcc and valgrind's headers):\n{done.stderr}")
    return library


def need_tools() -> None:
    """Exit with the command that installs them when valgrind or gcc (which builds the toggle library) is missing."""
    for program in ("valgrind", "gcc"):
        if shutil.which(program) is None:
            sys.exit(f"{program} is not installed (Debian: apt-get install valgrind gcc)")


def callgrind(script: Path, inner_args: list[str], counted: str, keep: Path | None) -> tuple[int, int]:
    """Run ``script --inner *inner_args`` under callgrind, collecting only between the script's toggles: (how many
    it counted, as its "<counted> counted: N" line says, and the instructions executed meanwhile)."""
    with tempfile.TemporaryDirectory() as tmp:
        library = _toggle_library(Path(tmp))
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0", "BENCH_CALLGRIND_TOGGLE": str(library)}
        command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}",
                   sys.executable, str(script), "--inner", *inner_args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"the run under valgrind failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
        units = re.search(rf"^{counted} counted: (\d+)$", done.stdout, re.M)
        totals = re.search(r"^(?:totals|summary): (\d+)", out.read_text(), re.M)
        if units is None or totals is None:
            sys.exit(f"callgrind wrote no totals, or the run no '{counted} counted' line:\n{done.stdout[-3000:]}")
        if keep is not None:
            shutil.copyfile(out, keep)
    return int(units.group(1)), int(totals.group(1))


def _count(args: argparse.Namespace) -> int:
    """Run this script under callgrind and print instructions per login."""
    need_tools()
    logins, instructions = callgrind(HERE, ["--logins", str(args.logins), "--redis", args.redis], "logins",
                                     args.keep)
    print(f"complete certificate logins through WSGI under callgrind, real Redis ({args.redis})")
    print(f"  logins counted:        {logins}")
    print(f"  instructions per login: {instructions / logins / 1e6:.2f} million (user space, the broker's work)")
    return 0


def _inner(args: argparse.Namespace) -> int:
    """Under valgrind: make the logins, counting only while the app handles them."""
    toggle = ctypes.CDLL(os.environ["BENCH_CALLGRIND_TOGGLE"])
    if not toggle.on_valgrind():
        sys.exit("--inner runs only under valgrind; run the script without it")
    with login_wsgi.prepared(args.logins, args.redis) as bench:
        def login(url: str, *, counted: bool) -> None:
            environ = EnvironBuilder(path=url, base_url=login_wsgi.BASE_URL, environ_base=bench.environ).get_environ()
            status: list[str] = []
            if counted:
                toggle.toggle_collect()
            body = b"".join(bench.app(environ, lambda s, h, e=None: status.append(s)))
            if counted:
                toggle.toggle_collect()
            if not status or not status[0].startswith("200") or b"SAMLResponse" not in body:
                sys.exit(f"a login failed: {status}")

        for url in bench.urls[:login_wsgi.WARM_UP]:
            login(url, counted=False)
        for url in bench.urls[login_wsgi.WARM_UP:]:
            login(url, counted=True)
    print(f"logins counted: {args.logins}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--keep", type=Path, metavar="FILE",
                        help="keep callgrind's output there (callgrind_annotate FILE: where the instructions go)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return _inner(args) if args.inner else _count(args)


if __name__ == "__main__":
    sys.exit(main())
