"""A real browser for tests: Debian's Chromium, headless, with a certificate in a private NSS database.

The pieces, each as an operator or a user would set them up on a workstation:

* :class:`NssHome`: a home directory whose NSS database (``~/.pki/nssdb``, where Chromium on Linux keeps
  client certificates and locally trusted CAs) holds a user's PKCS#12 (``pk12util``) and trusts a TLS CA
  for server certificates (``certutil -t "C,,"``);
* :class:`AutoSelectPolicy`: the managed policy ``AutoSelectCertificateForUrls`` in a file of its own under
  ``/etc/chromium/policies/managed`` (where Debian's Chromium reads policies), so that the browser presents
  the certificate to one origin without asking (headless Chromium has no dialog to ask in); removed on exit;
* :class:`Chromium`: ``chromium --headless=new --no-sandbox`` with a private ``--user-data-dir``, driven over
  the Chrome DevTools Protocol on ``--remote-debugging-pipe`` (JSON messages separated by NUL bytes on file
  descriptors 3 and 4: no port, no websocket library). Pages are followed by polling the document's URL and
  state, which sees through redirects and auto-submitted forms alike.

Chromium runs in a process group of its own; :meth:`Chromium.stop` closes the browser and then kills
whatever is left of that group (renderers, the GPU process, crashpad). A missing program fails the test with
the package to install, never a skip.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from tests.factories.lifecycle import Service

INSTALL_HINT = "sudo apt-get install -y chromium libnss3-tools"
POLICY_DIR = Path("/etc/chromium/policies/managed")
VIEWPORT = (1280, 900)


def program(name: str) -> str:
    """``name`` on PATH, or a failed test naming the packages that provide it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"the browser tests run {name}, which is not installed: {INSTALL_HINT}", pytrace=False)
    return found


def _run(*command: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


# --- the user's certificate store ------------------------------------------------------------------


@dataclass(frozen=True)
class NssHome:
    """A ``HOME`` whose ``~/.pki/nssdb`` is the NSS database Chromium reads."""

    home: Path

    @property
    def database(self) -> str:
        return f"sql:{self.home / '.pki' / 'nssdb'}"

    @classmethod
    def create(cls, home: Path, *, pkcs12: Path, password: str, trusted_ca: Path, ca_nickname: str) -> NssHome:
        """An empty-password database with ``pkcs12`` imported (key, certificate and the chain it carries)
        and ``trusted_ca`` trusted to issue TLS server certificates, and nothing else."""
        nss = cls(home)
        (home / ".pki" / "nssdb").mkdir(parents=True)
        certutil, pk12util = program("certutil"), program("pk12util")
        _run(certutil, "-N", "-d", nss.database, "--empty-password")
        _run(pk12util, "-i", str(pkcs12), "-d", nss.database, "-W", password, "-K", "")
        _run(certutil, "-A", "-d", nss.database, "-n", ca_nickname, "-t", "C,,", "-i", str(trusted_ca))
        return nss

    def listing(self) -> str:
        """``certutil -L``: the nicknames and trust flags in the database."""
        return _run(program("certutil"), "-L", "-d", self.database)

    def private_keys(self) -> str:
        """``certutil -K``: the private keys in the database."""
        return _run(program("certutil"), "-K", "-d", self.database)


# --- the managed policy ----------------------------------------------------------------------------


class AutoSelectPolicy:
    """``AutoSelectCertificateForUrls`` for ``origin``: present the certificate whose issuer's CN is
    ``issuer_cn`` without asking. Chromium reads the file at start; it is removed when the block ends.

    Chromium merges the files of the policy directory, and of two that set the same policy it applies one: test
    processes running at once (pytest-xdist workers, or two runs) take turns, each holding a lock on
    ``LOCK`` while its file exists."""

    LOCK = Path(tempfile.gettempdir()) / "broker-browser-test-policy.lock"

    def __init__(self, origin: str, issuer_cn: str, directory: Path = POLICY_DIR) -> None:
        self.directory = directory
        self.path = directory / f"broker-browser-test-{os.getpid()}-{secrets.token_hex(4)}.json"
        rule = {"pattern": origin, "filter": {"ISSUER": {"CN": issuer_cn}}}
        self.document = {"AutoSelectCertificateForUrls": [json.dumps(rule)]}

    def __enter__(self) -> Self:
        self._lock = self.LOCK.open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # released when the file is removed (or this process ends)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.document, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            self._lock.close()
            pytest.fail(
                f"the browser test writes a Chromium policy (AutoSelectCertificateForUrls) to {self.directory}, "
                f"which is not writable ({exc.strerror}). Run the tests as root, or once: "
                f"sudo mkdir -p {self.directory} && sudo chown $(id -un) {self.directory}", pytrace=False)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.path.unlink(missing_ok=True)
        self._lock.close()


# --- the browser -------------------------------------------------------------------------------------


class DevToolsError(RuntimeError):
    """An error answer of the DevTools protocol (e.g. evaluating in a page that is being replaced)."""


class DevTools:
    """The Chrome DevTools Protocol over ``--remote-debugging-pipe``: one call at a time; events are
    read and dropped (pages are followed by polling, see :meth:`Chromium.wait_for`), but for those a test
    asked to :meth:`keep`."""

    def __init__(self, commands: int, answers: int) -> None:
        self._commands = commands
        self._answers = answers
        self._buffer = b""
        self._last_id = 0
        self._kept: set[str] = set()
        self._events: list[dict[str, Any]] = []

    def keep(self, method: str) -> None:
        """Keep the events named ``method`` for :meth:`take` from now on."""
        self._kept.add(method)

    def take(self, method: str, wait: float) -> list[dict[str, Any]]:
        """The kept events named ``method`` that arrived so far or arrive within ``wait`` seconds (their
        ``params``), in order; each is taken once."""
        deadline = time.monotonic() + wait
        with contextlib.suppress(TimeoutError):
            while True:
                self._note(self._read(deadline, "events"))
        taken = [e["params"] for e in self._events if e["method"] == method]
        self._events = [e for e in self._events if e["method"] != method]
        return taken

    def _note(self, message: dict[str, Any]) -> None:
        if message.get("method") in self._kept:
            self._events.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = 20.0) -> dict[str, Any]:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline, method)
            if answer.get("id") != self._last_id:
                self._note(answer)  # an event
                continue
            if "error" in answer:
                raise DevToolsError(f"{method}: {answer['error'].get('message')}")
            result: dict[str, Any] = answer.get("result", {})
            return result

    def _read(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._answers], [], [], remaining)[0]:
                raise TimeoutError(f"Chromium did not answer {method}")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise ConnectionError(f"Chromium closed the DevTools pipe (during {method})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def close(self) -> None:
        for fd in (self._commands, self._answers):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True)
class PageState:
    url: str
    ready: str
    title: str
    lang: str
    text: str


_STATE = """JSON.stringify({url: location.href, ready: document.readyState, title: document.title,
                            lang: document.documentElement.lang,
                            text: document.body ? document.body.innerText : ""})"""


def _high(fd: int) -> int:
    """``fd`` moved to a number >= 10, out of the way of the 3 and 4 the child must see."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium(Service):
    """Headless Chromium with one page, ``HOME`` set to ``home`` (its NSS database)."""

    def __init__(self, workdir: Path, *, home: Path, accept_language: str = "sv-SE,sv,en") -> None:
        self.binary = program("chromium")
        self.workdir = workdir
        self.home = home
        self.accept_language = accept_language
        self.log_file = workdir / "chromium.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.devtools: DevTools | None = None
        self.session: str | None = None
        self._held: list[dict[str, Any]] = []

    def start(self) -> None:
        profile = self.workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        commands_read, commands_write = os.pipe()
        answers_read, answers_write = os.pipe()
        commands_read, answers_write = _high(commands_read), _high(answers_write)
        args = ["--headless=new", "--no-sandbox", f"--user-data-dir={profile}", "--remote-debugging-pipe",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--accept-lang={self.accept_language}", "about:blank"]
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.workdir / "xdg-config"),
                   XDG_CACHE_HOME=str(self.workdir / "xdg-cache"))
        log = self.log_file.open("wb")
        try:
            # bash puts the pipe ends on descriptors 3 and 4, where --remote-debugging-pipe expects them
            self.process = subprocess.Popen(
                ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{commands_read} 4>&{answers_write}', self.binary, *args],
                pass_fds=(commands_read, answers_write), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=env, start_new_session=True)
        finally:
            log.close()
            os.close(commands_read)
            os.close(answers_write)
        self.devtools = DevTools(commands_write, answers_read)
        try:
            target = self.devtools.call("Target.createTarget", {"url": "about:blank"}, timeout=30)["targetId"]
            self.session = self.devtools.call("Target.attachToTarget",
                                              {"targetId": target, "flatten": True})["sessionId"]
            width, height = VIEWPORT
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except (TimeoutError, ConnectionError, DevToolsError) as exc:
            self.stop()
            raise RuntimeError(f"Chromium did not start: {exc}\n{self.log()}") from exc

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 20.0) -> dict[str, Any]:
        assert self.devtools is not None, "Chromium is not running"
        return self.devtools.call(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str, timeout: float = 20.0) -> None:
        try:
            answer = self.call("Page.navigate", {"url": url}, timeout=timeout)
        except TimeoutError:
            # e.g. a server asked for a client certificate that no AutoSelectCertificateForUrls rule answers:
            # headless Chromium then waits for a choice nobody can make
            raise AssertionError(f"Chromium did not start loading {url} within {timeout} s (waiting for a "
                                 f"client certificate to be chosen?)\n{self.log()}") from None
        if answer.get("errorText"):
            raise AssertionError(f"Chromium could not open {url}: {answer['errorText']}")

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise DevToolsError(f"{expression}: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    def state(self) -> PageState | None:
        """The page now, or None while it is being replaced."""
        try:
            return PageState(**json.loads(self.evaluate(_STATE)))
        except (DevToolsError, TypeError):
            return None

    def wait_for(self, done: Callable[[PageState], bool], what: str, timeout: float = 20.0) -> PageState:
        """Poll until a fully loaded page satisfies ``done``; fail naming ``what`` and the last page seen."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            state = self.state()
            if state is not None:
                last = state
                if state.ready == "complete" and done(state):
                    return state
            time.sleep(0.1)
        seen = f"{last.url}\n{last.title}\n{last.text[:2000]}" if last else "(no page)"
        raise AssertionError(f"the browser did not reach {what} within {timeout} s; last page:\n{seen}")

    def center(self, selector: str) -> tuple[float, float]:
        """The middle of the element ``selector`` in the viewport (scrolled into view first)."""
        x, y = self.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        return float(x), float(y)

    def click(self, where: str | tuple[float, float], *, count: int = 1) -> None:
        """The user clicks (``count`` 2: double-clicks) the element ``where`` names, or the point it is, with
        the mouse: real input events, handled as a user's are. Input reaches a page whose navigation is under
        way, when Runtime.evaluate waits for the next one (so a point is found with :meth:`center` before)."""
        x, y = self.center(where) if isinstance(where, str) else where
        for n in range(1, count + 1):
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent",
                          {"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": n})

    def hold_requests(self, url_pattern: str) -> None:
        """Hold every request whose URL matches ``url_pattern`` (``*`` any text) before it leaves the browser
        (DevTools ``Fetch``, request stage) until :meth:`release_requests`; :meth:`held_requests` lists them."""
        assert self.devtools is not None, "Chromium is not running"
        self.devtools.keep("Fetch.requestPaused")
        self._held = []
        self.call("Fetch.enable", {"patterns": [{"urlPattern": url_pattern, "requestStage": "Request"}]})

    def held_requests(self, *, wait: float = 0.0, at_least: int = 0) -> list[dict[str, Any]]:
        """The requests held so far (their ``Fetch.requestPaused`` parameters: ``request``, ``requestId``):
        as soon as ``at_least`` are held (failing after 20 s), or else after ``wait`` seconds."""
        assert self.devtools is not None, "Chromium is not running"
        deadline = time.monotonic() + (20.0 if at_least else wait)
        while True:
            self._held += self.devtools.take("Fetch.requestPaused", 0.05)
            if at_least and len(self._held) >= at_least:
                return list(self._held)
            if time.monotonic() >= deadline:
                if len(self._held) < at_least:
                    raise AssertionError(f"{len(self._held)} requests held within 20 s, not {at_least}")
                return list(self._held)

    def release_requests(self) -> None:
        """Let the held requests go on (one the browser cancelled meanwhile is gone) and hold no more."""
        for held in self._held:
            with contextlib.suppress(DevToolsError):
                self.call("Fetch.continueRequest", {"requestId": held["requestId"]})
        self.call("Fetch.disable")

    def screenshot(self, path: Path) -> Path:
        """The viewport as a PNG at ``path``."""
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def log(self, tail: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-tail:] if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.devtools is not None:
            if self.process is not None and self.process.poll() is None:
                with contextlib.suppress(TimeoutError, ConnectionError, DevToolsError, OSError):
                    self.devtools.call("Browser.close", timeout=5)
            self.devtools.close()
            self.devtools = None
        if self.process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the group is Chromium's own (start_new_session)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None



def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; ValueError if ``data`` is no PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
