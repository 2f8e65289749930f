"""SATOSA as a SAML-to-SAML proxy on loopback: its configuration, and gunicorn serving it.

SATOSA runs from its own virtualenv (``bench/satosa/.venv``, made by ``bench/satosa/setup.sh``) as
``gunicorn satosa.wsgi:app``; this module only writes YAML and starts that process, it never imports SATOSA.

The configuration is SATOSA's documented SAML2 frontend and SAML2 backend, in front of the same peers the broker
has in the demo: the demo SP (``config/metadata/demo-sp.xml``) and Kommun C's pysaml2 IdP
(``config/metadata/kommun-c-idp.xml``). As the broker does for that SP and that IdP:

* the backend signs its AuthnRequests (HTTP-Redirect, RSA-SHA256) and requires a signed Assertion;
* the frontend signs the Assertion (not the Response: the demo SP wants the Assertion signed), RSA-2048 with
  RSA-SHA256 and SHA-256 digests, the algorithms SATOSA's frontend defaults to;
* pysaml2 signs and verifies with its default backend, the ``xmlsec1`` program (one process per signature and
  per verification), as SATOSA deployments run.

Two settings differ from what the broker does, because SATOSA works that way:

* ``allow_unsolicited: true`` in the backend, as SATOSA's example configuration has it: SATOSA remembers the
  IDs of its AuthnRequests in the memory of the worker process that sent them, so with several gunicorn
  workers a Response reaching another worker would be refused. The login stays bound to the browser by
  SATOSA's state cookie (the RelayState must match the one in the cookie), as the broker binds it with its
  ``__Host-broker_binding`` cookie; SATOSA keeps no replay cache (the broker does, in Redis);
* the frontend does not check the SP's AuthnRequest signature (SATOSA does not hand the HTTP-Redirect query
  signature to pysaml2). That request is outside the measured leg.

Logging: SATOSA's own at INFO (its production level; DEBUG would log every attribute value) and gunicorn's
access log, both into ``satosa.log``, as the broker's access log and audit trail go to files.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from broker.demo.certificates import CertificateAuthority, write_key, write_pem
from broker.demo.materials import DemoLayout
from tests.factories.lifecycle import Service, end_process

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"

FRONTEND = "Saml2IDP"   # the module names SATOSA's documentation uses; they are the first path segment
BACKEND = "Saml2SP"
COOKIE = "SATOSA_STATE"

_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"

# internal name → SAML names: the first is what the frontend sends (the URIs the broker sends for these
# attributes), every one is what the backend accepts (Kommun C's IdP sends ADFS claim URIs and Sambi's name)
ATTRIBUTES: dict[str, list[str]] = {
    "employeehsaid": ["urn:oid:1.2.752.29.6.2.1", "http://sambi.se/attributes/1/employeeHsaId"],
    "givenname": ["urn:oid:2.5.4.42", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"],
    "surname": ["urn:oid:2.5.4.4", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"],
    "displayname": ["urn:oid:2.16.840.1.113730.3.1.241",
                    "http://schemas.microsoft.com/identity/claims/displayname"],
}


def installed_version() -> str:
    """The SATOSA version in bench/satosa/.venv (asked of that interpreter: this one has no SATOSA)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no SATOSA virtualenv at {VENV}: run bench/satosa/setup.sh first")
    found = subprocess.run([str(python), "-c", "from importlib.metadata import version as v; "
                            "print(v('satosa'), v('pysaml2'), v('gunicorn'))"],
                           capture_output=True, text=True, timeout=60, check=True)
    satosa, pysaml2, gunicorn = found.stdout.split()
    return f"SATOSA {satosa} (pysaml2 {pysaml2}, gunicorn {gunicorn})"


class SatosaProxy(Service):
    """Start with ``with SatosaProxy(...) as proxy``; the configuration goes to ``workdir``."""

    def __init__(self, workdir: Path, demo: DemoLayout, *, port: int, workers: int, threads: int) -> None:
        self.workdir = workdir
        self.demo = demo
        self.port = port
        self.workers = workers
        self.threads = threads
        self.log_file = workdir / "satosa.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def idp_entity_id(self) -> str:
        """The frontend: SATOSA as IdP toward the SP."""
        return f"{self.url}/{FRONTEND}/proxy.xml"

    @property
    def sp_entity_id(self) -> str:
        """The backend: SATOSA as SP toward the municipal IdP."""
        return f"{self.url}/{BACKEND}/proxy_saml2_backend.xml"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    # --- configuration -------------------------------------------------------------------------

    def configure(self) -> Path:
        """Keys and YAML in ``workdir``; returns proxy_conf.yaml."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        for name, label in (("frontend", "SATOSA frontend signing"), ("backend", "SATOSA backend signing")):
            issued = CertificateAuthority.root(label, now, key="rsa2048", valid_days=3650)
            write_key(self.workdir / f"{name}.key", issued.key)
            write_pem(self.workdir / f"{name}.crt", issued.certificate)
        xmlsec = shutil.which("xmlsec1")
        if xmlsec is None:
            raise RuntimeError("SATOSA (pysaml2) needs the xmlsec1 program: apt-get install -y xmlsec1")
        metadata = self.demo.config / "metadata"
        files = {
            "internal_attributes.yaml": {"attributes": {k: {"saml": v} for k, v in ATTRIBUTES.items()}},
            "saml2_frontend.yaml": self._frontend(xmlsec, metadata / "demo-sp.xml"),
            "saml2_backend.yaml": self._backend(xmlsec, metadata / "kommun-c-idp.xml"),
            "proxy_conf.yaml": {
                "BASE": self.url,
                "COOKIE_STATE_NAME": COOKIE,
                "CONTEXT_STATE_DELETE": True,
                "STATE_ENCRYPTION_KEY": secrets.token_urlsafe(32),
                "INTERNAL_ATTRIBUTES": str(self.workdir / "internal_attributes.yaml"),
                "BACKEND_MODULES": [str(self.workdir / "saml2_backend.yaml")],
                "FRONTEND_MODULES": [str(self.workdir / "saml2_frontend.yaml")],
                "MICRO_SERVICES": [],
                # disable_existing_loggers false: gunicorn's access log (configured before SATOSA loads) stays on
                "LOGGING": {"version": 1, "disable_existing_loggers": False,
                            "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                                    "formatter": "plain", "level": "INFO"}},
                            "loggers": {"satosa": {"level": "INFO"}, "saml2": {"level": "WARNING"}},
                            "root": {"level": "INFO", "handlers": ["stderr"]}},
            },
        }
        for name, content in files.items():
            (self.workdir / name).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
        return self.workdir / "proxy_conf.yaml"

    def _frontend(self, xmlsec: str, sp_metadata: Path) -> dict[str, Any]:
        return {
            "module": "satosa.frontends.saml2.SAMLFrontend",
            "name": FRONTEND,
            "config": {
                "entityid_endpoint": True,   # serves its metadata at the entity ID (read by the SP)
                "endpoints": {"single_sign_on_service": {_REDIRECT: "sso/redirect", _POST: "sso/post"}},
                "idp_config": {
                    "entityid": self.idp_entity_id,
                    "key_file": str(self.workdir / "frontend.key"),
                    "cert_file": str(self.workdir / "frontend.crt"),
                    "xmlsec_binary": xmlsec,
                    "metadata": {"local": [str(sp_metadata)]},
                    "service": {"idp": {
                        "name": "SATOSA proxy IdP",
                        "endpoints": {"single_sign_on_service": []},   # SATOSA fills them in
                        "name_id_format": [_PERSISTENT, _TRANSIENT],
                        "signing_algorithm": _RSA_SHA256,
                        "digest_algorithm": _SHA256,
                        "want_authn_requests_signed": False,
                        "policy": {"default": {
                            "attribute_restrictions": None,
                            "fail_on_missing_requested": False,
                            "lifetime": {"minutes": 5},
                            "name_form": _URI,
                            "sign_assertion": True,
                            "sign_response": False,
                        }},
                    }},
                },
            },
        }

    def _backend(self, xmlsec: str, idp_metadata: Path) -> dict[str, Any]:
        return {
            "module": "satosa.backends.saml2.SAMLBackend",
            "name": BACKEND,
            "config": {
                "entityid_endpoint": True,   # serves its metadata at the entity ID (read by the IdP)
                "sp_config": {
                    "entityid": self.sp_entity_id,
                    "key_file": str(self.workdir / "backend.key"),
                    "cert_file": str(self.workdir / "backend.crt"),
                    "xmlsec_binary": xmlsec,
                    "metadata": {"local": [str(idp_metadata)]},
                    "allow_unknown_attributes": True,
                    "service": {"sp": {
                        "name": "SATOSA proxy SP",
                        "endpoints": {"assertion_consumer_service": [[f"{self.url}/{BACKEND}/acs/post", _POST]]},
                        "authn_requests_signed": True,
                        "want_assertions_signed": True,
                        "want_response_signed": False,
                        "allow_unsolicited": True,   # see the module docstring
                        "signing_algorithm": _RSA_SHA256,
                        "digest_algorithm": _SHA256,
                        "name_id_format": _PERSISTENT,
                    }},
                },
            },
        }

    # --- the process ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        gunicorn = VENV / "bin" / "gunicorn"
        if not gunicorn.exists():
            raise RuntimeError(f"no SATOSA virtualenv at {VENV}: run bench/satosa/setup.sh first")
        config = self.configure()
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(SATOSA_CONFIG=str(config), PYTHONUNBUFFERED="1", XDG_RUNTIME_DIR=str(self.workdir))
        # gunicorn as `broker serve` runs it: gthread workers, the app built once in the master, an access log
        flags = ["--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--threads", str(self.threads),
                 "--worker-class", "gthread" if self.threads > 1 else "sync", "--preload", "--no-control-socket",
                 "--access-logfile", "-", "--limit-request-line", "8190", "--pid", str(self.workdir / "satosa.pid")]
        log = self.log_file.open("ab")
        try:
            self.process = subprocess.Popen([str(gunicorn), *flags, "satosa.wsgi:app"], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                            cwd=self.workdir)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SATOSA exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.metadata(self.idp_entity_id)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SATOSA did not serve its metadata within {timeout} s:\n{self.log()}")

    def metadata(self, entity_id: str) -> bytes:
        """The frontend's or the backend's metadata, from its entity ID URL."""
        with urllib.request.urlopen(entity_id, timeout=10) as answer:
            body: bytes = answer.read()
        return body

    def log(self, tail: int = 6000) -> str:
        return self.log_file.read_text(errors="replace")[-tail:] if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        end_process(self.process, signal.SIGINT, grace=15)  # gunicorn: quick shutdown of master and workers
        self.process = None

