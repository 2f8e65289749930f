"""SimpleSAMLphp 1.19 (Debian's ``simplesamlphp`` package) as a peer of the broker, in both roles at once: service
providers (``saml:SP`` authentication sources) logging in at the broker, and a municipality's IdP
(``saml20-idp-hosted`` with an ``exampleauth:UserPass`` source) that the broker logs users in at.

The package's code under ``/usr/share/simplesamlphp`` is used as installed; nothing under ``/etc/simplesamlphp``
or ``/var/lib/simplesamlphp`` is read or written. The configuration lives in a private directory, named by the
``SIMPLESAMLPHP_CONFIG_DIR`` environment variable (SimpleSAMLphp's own way to keep its configuration elsewhere):
``config.php``, ``authsources.php``, ``metadata/*.php`` (flat files), ``cert/`` (keys the test generated), and
the logs, sessions and temporary files beside them.

Two servers, children of the test:

* PHP's built-in web server (``php -S 127.0.0.1:<port>``, four worker processes) with SimpleSAMLphp's ``www/`` as
  document root and a router script that serves a small test application under ``/app/`` (``app.php``, JSON pages
  a test reads: the attributes, NameID and AuthnContext an SP got, its logout status, the error an SP was given,
  the IdP's session) and leaves every other path to SimpleSAMLphp;
* nginx in front of it on ``https://localhost:<port>`` (the demo TLS server certificate), as deployments put
  TLS in front of SimpleSAMLphp. ``baseurlpath`` is that full https URL, so SimpleSAMLphp builds its endpoint
  URLs (and checks Destination and Recipient against them) as the browser sees them; and it knows it is
  served over https, which its IdP reports as the AuthnContextClassRef PasswordProtectedTransport.

Remote metadata is converted from the SAML metadata XML by SimpleSAMLphp's own ``SAMLParser`` (what the admin
module's metadata converter and metarefresh do), after ``SAMLParser::validateSignature`` checked the document's
signature with the certificate the operator got out of band; the operator's own settings for the peer (which
messages to sign and verify, the attribute NameFormat ...) are merged over it (:meth:`SimpleSamlPhp.trust`).

A missing program or package fails the test with the apt packages to install (never a skip).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, TypeAlias

import pytest
import requests

from tests.factories.lifecycle import Service, end_process
from tests.factories.metadata import SigningKey
from tests.factories.nginx import Nginx
from tests.factories.ports import free_port

# php-cgi satisfies the ``php`` package's need for a server API (php8.2 depends on libapache2-mod-php8.2 | php8.2-fpm
# | php8.2-cgi: unnamed, apt takes mod_php and switches the system's Apache to prefork); php-xml brings DOM, which
# SimpleSAMLphp's SAML library is built on and which the simplesamlphp package does not depend on; php-mbstring is
# optional (a polyfill stands in), for speed as SimpleSAMLphp recommends
PACKAGES = "php-cli php-cgi php-xml php-mbstring simplesamlphp"
INSTALL = f"sudo apt-get install -y --no-install-recommends {PACKAGES}"
ROOT = Path("/usr/share/simplesamlphp")

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
URI_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

MetadataSet: TypeAlias = Literal["saml20-idp-remote", "saml20-sp-remote"]
PhpValue: TypeAlias = "str | int | bool | Sequence[PhpValue] | Mapping[str | int, PhpValue] | None"
Options: TypeAlias = tuple[tuple[str, "PhpValue"], ...]


def php_literal(value: PhpValue) -> str:
    """``value`` as a PHP literal (configuration files are PHP arrays)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "[" + ", ".join(f"{php_literal(k)} => {php_literal(v)}" for k, v in value.items()) + "]"
    return "[" + ", ".join(php_literal(v) for v in value) + "]"


def _php_file(assignments: str) -> str:
    return "<?php\n// written by tests/factories/simplesamlphp.py\n" + assignments


# --- what the test configures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpSource:
    """A ``saml:SP`` authentication source: its id (the authsources.php key, part of its endpoint URLs), its
    entityID, the IdP it logs in at, and further options of the source (``sign.authnrequest``,
    ``AuthnContextClassRef`` ...). Every source signs with the SP key of :class:`SimpleSamlPhp`."""

    id: str
    entity_id: str
    idp: str
    options: Options = ()


@dataclass(frozen=True)
class User:
    """An ``exampleauth:UserPass`` user: the password and the attributes the IdP releases (Name → values)."""

    username: str
    password: str
    attributes: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class HostedIdp:
    """The ``saml20-idp-hosted`` entry: its entityID, the users of its ``exampleauth:UserPass`` source, and
    further options of the entry (``authproc``, ``attributes.NameFormat`` ...)."""

    entity_id: str
    users: tuple[User, ...]
    options: Options = ()

    source: ClassVar[str] = "idp-users"   # the authsources.php key of its UserPass source


class SimpleSamlPhpRefused(Exception):
    """SimpleSAMLphp refused a metadata document: the converter's message, and SimpleSAMLphp's log of the attempt
    (on the PHP CLI its logger writes to standard error)."""

    def __init__(self, message: str, log: str) -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Trusted:
    """A peer's metadata as SimpleSAMLphp holds it after conversion: the entity ID and the metadata array (what
    SAMLParser read, the operator's options merged over it)."""

    entity_id: str
    metadata: dict[str, Any]


# --- PHP around SimpleSAMLphp ----------------------------------------------------------------------------------

_ROUTER = """<?php
// PHP's built-in web server: the test application under /app/, every other path from SimpleSAMLphp's www/
$path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if (strncmp($path, '/app/', 5) === 0) {
    require __DIR__ . '/app.php';
    return true;
}
return false;
"""

# The test application: what an application behind SimpleSAMLphp reads through its public API (\\SimpleSAML\\Auth\\
# Simple, \\SimpleSAML\\Auth\\State), as JSON. /app/<source>/<action>.
_APP = """<?php
require_once '__ROOT__/lib/_autoload.php';

$base = __BASE__;
$parts = explode('/', substr((string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH), 5), 2);
$source = $parts[0];
$action = $parts[1] ?? '';
$here = $base . '/app/' . $source;

function answer(array $document): void
{
    header('Content-Type: application/json');
    echo json_encode($document, JSON_UNESCAPED_SLASHES);
    exit;
}

function name_id($nameId): ?array
{
    if ($nameId === null) {
        return null;
    }
    return ['value' => $nameId->getValue(), 'format' => $nameId->getFormat(),
            'name_qualifier' => $nameId->getNameQualifier(), 'sp_name_qualifier' => $nameId->getSPNameQualifier()];
}

if ($source === 'health') {
    \\SimpleSAML\\Configuration::getInstance();
    answer(['ok' => true]);
}

$as = new \\SimpleSAML\\Auth\\Simple($source);
switch ($action) {
    case 'attributes':
        // the protected page: SimpleSAMLphp logs the user in first and comes back to this very URL (its query
        // included, as requireAuth() does by default); its errors go to the error page below
        $as->requireAuth(['ReturnTo' => $base . $_SERVER['REQUEST_URI'], 'ErrorURL' => $here . '/error']);
        answer([
            'source' => $source,
            'attributes' => $as->getAttributes(),
            'name_id' => name_id($as->getAuthData('saml:sp:NameID')),
            'authn_context' => $as->getAuthData('saml:sp:AuthnContext'),
            'idp' => $as->getAuthData('saml:sp:IdP'),
            'session_index' => $as->getAuthData('saml:sp:SessionIndex'),
        ]);
        break;
    case 'session':
        $session = \\SimpleSAML\\Session::getSessionFromRequest();
        $idp = [];
        foreach ($session->getAssociations(__IDP__) as $id => $association) {
            $idp[] = $id;
        }
        answer(['authenticated' => $as->isAuthenticated(), 'idp_associations' => $idp]);
        break;
    case 'logout':
        $as->logout(['ReturnTo' => $here . '/logged-out', 'ReturnStateParam' => 'LogoutState',
                     'ReturnStateStage' => 'TestAppLogout']);
        break;
    case 'logged-out':
        if (!isset($_GET['LogoutState'])) {
            answer(['logged_out' => true, 'status' => null]);
        }
        $state = \\SimpleSAML\\Auth\\State::loadState((string) $_GET['LogoutState'], 'TestAppLogout');
        answer(['logged_out' => true, 'status' => $state['saml:sp:LogoutStatus'] ?? null]);
        break;
    case 'error':
        $state = \\SimpleSAML\\Auth\\State::loadExceptionState();
        $e = $state[\\SimpleSAML\\Auth\\State::EXCEPTION_DATA];
        $error = ['class' => get_class($e), 'message' => $e->getMessage()];
        if ($e instanceof \\SimpleSAML\\Module\\saml\\Error) {
            $error += ['status' => $e->getStatus(), 'sub_status' => $e->getSubStatus(),
                       'status_message' => $e->getStatusMessage()];
        }
        answer(['error' => $error, 'authenticated' => $as->isAuthenticated()]);
        break;
}
http_response_code(404);
answer(['unknown' => $action]);
"""

# SAML metadata XML (standard input) → SimpleSAMLphp's metadata arrays, by its own SAMLParser, the signature
# checked first when a certificate is named. Prints JSON: the entities' arrays and their PHP text (var_export).
_CONVERT = """<?php
require_once '__ROOT__/lib/_autoload.php';

$set = $argv[1];
$certificate = $argv[2] ?? '';
$entities = \\SimpleSAML\\Metadata\\SAMLParser::parseDescriptorsString(stream_get_contents(STDIN));
$out = [];
foreach ($entities as $entityId => $entity) {
    if ($certificate !== '' && !$entity->validateSignature([$certificate])) {
        fwrite(STDERR, "the metadata of $entityId is not signed by $certificate\\n");
        exit(3);
    }
    $metadata = $set === 'saml20-idp-remote' ? $entity->getMetadata20IdP() : $entity->getMetadata20SP();
    if ($metadata === null) {
        fwrite(STDERR, "$entityId has no role for $set\\n");
        exit(4);
    }
    $out[] = ['entity_id' => $entityId, 'metadata' => $metadata, 'php' => var_export($metadata, true)];
}
echo json_encode($out, JSON_UNESCAPED_SLASHES);
"""


def program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"these tests run SimpleSAMLphp under PHP, and no {name} program was found: {INSTALL}",
                    pytrace=False)
    return found


def _installed(php: str) -> None:
    """SimpleSAMLphp's package and the PHP extensions it needs, or a failed test naming the packages."""
    if not (ROOT / "lib" / "_autoload.php").exists():
        pytest.fail(f"these tests run SimpleSAMLphp 1.19, and {ROOT} holds no installation: {INSTALL}", pytrace=False)
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30, check=False).stdout.split()
    missing = [m for m in ("dom", "openssl") if m not in modules]
    if missing:
        pytest.fail(f"PHP lacks the extensions {', '.join(missing)} that SimpleSAMLphp needs: {INSTALL}",
                    pytrace=False)


@dataclass
class SimpleSamlPhp(Service):
    """SimpleSAMLphp at ``https://localhost:<port>/``: the ``sources`` (SPs) and, when given, ``idp``.

    ``sp_key`` signs for every SP source (and decrypts what is encrypted for them; their metadata publishes its
    certificate for signing and encryption), ``idp_key`` for the hosted IdP. ``tls_certificate`` and ``tls_key``
    are nginx's, issued for ``localhost`` by ``tls_ca``.
    """

    workdir: Path
    tls_certificate: Path
    tls_key: Path
    tls_ca: Path
    sp_key: SigningKey
    idp_key: SigningKey
    sources: Sequence[SpSource]
    idp: HostedIdp | None = None
    port: int = field(default_factory=free_port)
    php_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    front: Nginx | None = field(default=None, init=False)
    _remote: dict[str, dict[str, str]] = field(default_factory=dict, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    # --- URLs -------------------------------------------------------------------------------------------------

    def app(self, source: str, action: str) -> str:
        """A page of the test application for ``source`` (an SP source id, or the IdP's user source)."""
        return f"{self.base_url}/app/{source}/{action}"

    def acs(self, source: str) -> str:
        return f"{self.base_url}/module.php/saml/sp/saml2-acs.php/{source}"

    def sp_slo(self, source: str) -> str:
        return f"{self.base_url}/module.php/saml/sp/saml2-logout.php/{source}"

    def sp_metadata_url(self, source: str) -> str:
        return f"{self.base_url}/module.php/saml/sp/metadata.php/{source}"

    @property
    def idp_sso(self) -> str:
        return f"{self.base_url}/saml2/idp/SSOService.php"

    @property
    def idp_slo(self) -> str:
        return f"{self.base_url}/saml2/idp/SingleLogoutService.php"

    @property
    def idp_metadata_url(self) -> str:
        return f"{self.base_url}/saml2/idp/metadata.php"

    @property
    def login_form(self) -> str:
        return f"{self.base_url}/module.php/core/loginuserpass.php"

    # --- configuration ----------------------------------------------------------------------------------------

    def _write(self, relative: str, text: str, mode: int = 0o644) -> Path:
        path = self.config_dir.parent / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    def _config_php(self) -> str:
        d = self.workdir
        config: dict[str | int, PhpValue] = {
            # the full public URL: SimpleSAMLphp builds its URLs (and checks Destination/Recipient) from it, not
            # from the request that reached PHP from nginx
            "baseurlpath": self.base_url + "/",
            "application": {"baseURL": self.base_url},
            "certdir": str(d / "cert") + "/",
            "loggingdir": str(d / "log") + "/",
            "datadir": str(d / "data") + "/",
            "tempdir": str(d / "tmp"),
            "metadatadir": str(d / "metadata") + "/",
            "secretsalt": secrets.token_hex(16),
            "auth.adminpassword": secrets.token_hex(16),
            "technicalcontact_name": "Regional IT",
            "technicalcontact_email": "it-support@example.se",
            "timezone": "Europe/Stockholm",
            "logging.level": 7,           # \SimpleSAML\Logger::DEBUG
            "logging.handler": "file",
            "logging.logfile": "simplesamlphp.log",
            "showerrors": True,
            "errorreporting": False,
            "enable.saml20-idp": self.idp is not None,
            "module.enable": {"core": True, "saml": True, "exampleauth": self.idp is not None},
            "store.type": "phpsession",
            "session.phpsession.savepath": str(d / "sessions"),
            "session.cookie.secure": True,
            # the broker's answers reach the ACS as cross-site POSTs: a browser sends the session cookie with them
            # only if it is SameSite=None (unset, SimpleSAMLphp 1.19 leaves it to the browser's default, Lax; the
            # package's config.php sets None for the browsers that understand it)
            "session.cookie.samesite": "None",
            "language.cookie.secure": True,
            # only redirects to SimpleSAMLphp's own host (ReturnTo, RelayState URLs): the package's default
            "trusted.url.domains": [],
        }
        return _php_file(f"$config = {php_literal(config)};\n")

    def _authsources_php(self) -> str:
        sources: dict[str | int, PhpValue] = {}
        for source in self.sources:
            sources[source.id] = {0: "saml:SP", "entityID": source.entity_id, "idp": source.idp,
                                  "privatekey": "sp.key", "certificate": "sp.crt", **dict(source.options)}
        if self.idp is not None:
            users: dict[str | int, PhpValue] = {0: "exampleauth:UserPass"}
            for user in self.idp.users:
                released: dict[str | int, PhpValue] = {name: list(values) for name, values in user.attributes}
                users[f"{user.username}:{user.password}"] = released
            sources[self.idp.source] = users
        return _php_file(f"$config = {php_literal(sources)};\n")

    def _idp_hosted_php(self) -> str:
        assert self.idp is not None
        entry: dict[str | int, PhpValue] = {
            "host": "__DEFAULT__",
            "privatekey": "idp.key",
            "certificate": "idp.crt",
            "auth": self.idp.source,
            **dict(self.idp.options),
        }
        return _php_file(f"$metadata[{php_literal(self.idp.entity_id)}] = {php_literal(entry)};\n")

    def write_configuration(self) -> None:
        for sub in ("cert", "log", "data", "tmp", "sessions", "metadata", "www"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self._write("cert/sp.key", self.sp_key.key_pem.decode(), 0o600)
        self._write("cert/sp.crt", self.sp_key.cert_pem.decode())
        self._write("cert/idp.key", self.idp_key.key_pem.decode(), 0o600)
        self._write("cert/idp.crt", self.idp_key.cert_pem.decode())
        self._write("config/config.php", self._config_php(), 0o600)
        self._write("config/authsources.php", self._authsources_php(), 0o600)
        if self.idp is not None:
            self._write("metadata/saml20-idp-hosted.php", self._idp_hosted_php())
        for metadata_set in ("saml20-idp-remote", "saml20-sp-remote"):
            self._write_remote(metadata_set)
        idp_id = f"saml2:{self.idp.entity_id}" if self.idp is not None else ""
        self._write("www/router.php", _ROUTER)
        self._write("www/app.php", _APP.replace("__ROOT__", str(ROOT)).replace("__BASE__", php_literal(self.base_url))
                    .replace("__IDP__", php_literal(idp_id)))
        self._write("www/convert.php", _CONVERT.replace("__ROOT__", str(ROOT)))

    def _write_remote(self, metadata_set: str) -> None:
        entries = self._remote.get(metadata_set, {})
        self._write(f"metadata/{metadata_set}.php", _php_file("".join(entries.values())))

    def environment(self) -> dict[str, str]:
        return {**os.environ, "SIMPLESAMLPHP_CONFIG_DIR": str(self.config_dir)}

    # --- the operator's metadata exchange ---------------------------------------------------------------------

    def trust(self, metadata_set: MetadataSet, document: bytes, *, signed_by: Path | None,
              options: Mapping[str, PhpValue] | None = None) -> Trusted:
        """Convert ``document`` (one entity's SAML metadata) into ``metadata_set`` with SimpleSAMLphp's SAMLParser,
        after checking its signature with ``signed_by`` (when given), and merge the operator's ``options`` over
        it. SimpleSAMLphp reads its metadata files on every request (opcache is off, see :meth:`start`): no
        restart. Raises :class:`SimpleSamlPhpRefused` with SimpleSAMLphp's message when it refuses the document."""
        done = subprocess.run([program("php"), str(self.workdir / "www" / "convert.php"), metadata_set,
                               str(signed_by) if signed_by else ""], input=document, capture_output=True,
                              timeout=30, check=False, env=self.environment())
        if done.returncode != 0:
            output = (done.stderr + done.stdout).decode(errors="replace").strip()
            raise SimpleSamlPhpRefused(output.splitlines()[-1] if output else f"exit {done.returncode}", output)
        (converted,) = json.loads(done.stdout)
        entity_id = str(converted["entity_id"])
        merged: dict[str | int, PhpValue] = {}
        for name, value in (options or {}).items():
            merged[name] = value
        self._remote.setdefault(metadata_set, {})[entity_id] = (
            f"$metadata[{php_literal(entity_id)}] = array_replace({converted['php']}, {php_literal(merged)});\n")
        self._write_remote(metadata_set)
        return Trusted(entity_id, {**converted["metadata"], **(options or {})})

    def sp_metadata(self, source: str) -> bytes:
        """The SP source's metadata, as SimpleSAMLphp publishes it (what its operator sends the IdP)."""
        return self._get(self.sp_metadata_url(source))

    def idp_metadata(self) -> bytes:
        """The hosted IdP's metadata, as SimpleSAMLphp publishes it."""
        return self._get(self.idp_metadata_url)

    def _get(self, url: str) -> bytes:
        answer = requests.get(url, verify=str(self.tls_ca), timeout=10)
        assert answer.status_code == 200, (answer.status_code, answer.text[-2000:], self.logs())
        return answer.content

    # --- processes --------------------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        php = program("php")
        _installed(php)
        self.write_configuration()
        self._log = (self.workdir / "log" / "php-server.log").open("ab")
        www = self.workdir / "www"
        # a few workers (PHP_CLI_SERVER_WORKERS), so that a slow request does not hold up the next; in a process
        # group of their own, since the server's parent leaves its workers running when it is ended (see stop)
        self.process = subprocess.Popen(
            # no opcache: the built-in server ("cli-server") is not covered by opcache.enable_cli, and opcache would
            # keep serving a metadata file rewritten within opcache.revalidate_freq (2 s) of its last check
            [php, "-d", "display_errors=0", "-d", "log_errors=1", "-d", "opcache.enable=0",
             "-d", f"error_log={self.workdir / 'log' / 'php-errors.log'}",
             "-S", f"127.0.0.1:{self.php_port}", "-t", str(ROOT / "www"), str(www / "router.php")],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env={**self.environment(), "PHP_CLI_SERVER_WORKERS": "4"}, start_new_session=True)
        self.front = Nginx(self.workdir / "nginx", certificate=self.tls_certificate, key=self.tls_key,
                           port=self.port, server_body=f"""
        location / {{
            proxy_pass http://127.0.0.1:{self.php_port};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
            # SimpleSAMLphp's redirects carry whole SAML messages in the Location header
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
        }}""")
        self.front.start()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"php -S exited with {self.process.returncode}:\n{self.logs()}")
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(self.app("health", ""), verify=str(self.tls_ca), timeout=5)
                if answer.status_code == 200 and answer.json() == {"ok": True}:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"SimpleSAMLphp did not answer within {timeout} s:\n{self.logs()}")
            time.sleep(0.05)

    def log(self, since: int = 0) -> str:
        """SimpleSAMLphp's own log (``logging.handler: file``), from the offset ``since`` (see :meth:`log_size`)."""
        path = self.workdir / "log" / "simplesamlphp.log"
        if not path.exists():
            return ""
        with path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        """Where the log ends now: what a test gives :meth:`log` to read only what happened after."""
        path = self.workdir / "log" / "simplesamlphp.log"
        return path.stat().st_size if path.exists() else 0

    def logs(self, tail: int = 6000) -> str:
        """The tails of SimpleSAMLphp's log, PHP's error log and the server's output."""
        return "\n".join(f"--- {name}\n" + (self.workdir / "log" / name).read_text(errors="replace")[-tail:]
                         for name in ("simplesamlphp.log", "php-errors.log", "php-server.log")
                         if (self.workdir / "log" / name).exists())

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
            self.front = None
        if self.process is not None:
            # the workers are the parent's children in its process group (the group's id is the parent's pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            end_process(self.process, grace=5)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
