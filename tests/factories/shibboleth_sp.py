"""A real Shibboleth Service Provider 3 (Debian's ``libapache2-mod-shib`` and ``shibd``) on a loopback port.

Two processes, children of the test, each with a configuration of its own; nothing is read from or written to
``/etc/shibboleth``, ``/var/log/shibboleth``, ``/var/run/shibboleth``, ``/var/cache/shibboleth`` or the system's
Apache (:meth:`ShibbolethSp.environment` points the SP library's default directories at the SP's own):

* ``shibd -F -f -c <dir>/shibboleth2.xml``: the SP's out-of-process half (SAML processing, sessions, metadata),
  listening on a UnixListener socket in ``<dir>/run``, logging at INFO to ``<dir>/log/shibd.log``;
* ``apache2 -f <dir>/apache2.conf -DFOREGROUND`` with ``mod_shib`` (``ShibConfig`` names the same file; it logs
  to Apache's error log and, at WARN, to the processes' output in ``<dir>/log/stderr.log``), serving HTTPS on
  ``127.0.0.1:<port>`` under the name ``localhost``: each application's handler at ``<prefix>/Shibboleth.sso``,
  and at each :class:`Resource` a CGI script that answers with the environment mod_shib gave it (the attributes,
  the ``Shib-*`` variables, ``REMOTE_USER``: what an application behind the SP reads). Apache turns ``-`` in
  variable names into ``_`` for CGI (``Shib-AuthnContext-Class`` arrives as ``Shib_AuthnContext_Class``,
  ``persistent-id`` as ``persistent_id``).

Started as root, Apache's children run as ``nobody`` (Apache refuses to serve as root), and mod_shib reads its
configuration, the templates and the shibd socket in those children, as the CGI script runs there. The test's
pytest directory is private to root (0700), so the SP's files live in a directory of their own under the
system's temporary directory, which others may traverse but not list (0711); the private keys in it stay
readable by root (shibd) only. :meth:`ShibbolethSp.logs` shows the logs' tails; :meth:`ShibbolethSp.stop`
copies the logs to the ``workdir`` the test gave and removes that directory.

A setting a real deployment would also make is commented where it is written. A missing program or module
fails the test with the packages to install (never a skip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
import requests

from tests.factories.lifecycle import Service, end_process
from tests.factories.ports import free_port

PACKAGES = "apache2 libapache2-mod-shib shibboleth-sp-utils"
MODULES_DIR = Path("/usr/lib/apache2/modules")
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
# prefork: mod_shib and CGI in plain child processes (no cgid daemon and socket to set up)
_APACHE_MODULES = ("mpm_prefork", "authn_core", "authz_core", "ssl", "socache_shmcb", "alias", "cgi")


def program(name: str) -> str:
    """``name`` from PATH, /usr/sbin or /usr/bin, or a failed test naming the packages to install."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                       None)
    if found is None:
        pytest.fail(f"these tests run a real Shibboleth SP behind Apache, and no {name} program was found (PATH, "
                    f"/usr/sbin, /usr/bin): sudo apt-get install -y {PACKAGES}", pytrace=False)
    return found


@dataclass(frozen=True)
class IdpSource:
    """The IdP the SP logs in at, and where its metadata comes from: a URL, believed only when the document's
    signature verifies with ``signing_certificate`` (a ``Signature`` MetadataFilter, as federations publish)."""

    entity_id: str
    metadata_url: str
    signing_certificate: Path


@dataclass(frozen=True)
class Application:
    """A Shibboleth application: ``default`` (ApplicationDefaults) or an ApplicationOverride, each with its own
    entityID (``https://localhost:<port><prefix>/shibboleth``), handler (``<prefix>/Shibboleth.sso``) and
    sessions. ``settings`` are further attributes of its element (e.g. ``requireSignedAssertions``), ``logout``
    of its ``<Logout>`` element (e.g. ``asynchronous``)."""

    id: str = "default"
    prefix: str = ""
    settings: tuple[tuple[str, str], ...] = ()
    logout: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Resource:
    """A protected URL path (the environment echo): a session of ``application`` is required; ``settings`` are
    ``ShibRequestSetting`` content settings for requests to it (e.g. ``authnContextClassRef``)."""

    path: str
    application: str = "default"
    settings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MappedAttribute:
    """An attribute-map.xml entry: the SAML Attribute Name (NameFormat uri) and the id the SP exports it as."""

    name: str
    id: str


_CGI = """#!/bin/sh
# The environment mod_shib set for this request, as NUL-separated NAME=value pairs (no value can pass for another)
printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'
exec env -0
"""

# ``name=value`` lines a test can read; Shibboleth fills in the <shibmlp/> tags (HTML-escaped)
_SESSION_ERROR = "<html><body><pre>\nshibboleth-error\n" + "".join(
    f"{tag}=<shibmlp {tag}/>\n" for tag in ("errorType", "errorText", "statusCode", "statusCode2", "statusMessage",
                                            "entityID", "requestURL")) + "</pre></body></html>\n"
_LOGOUT = "<html><body><pre>\nshibboleth-logout={kind}\n</pre></body></html>\n"

_PROTOCOLS = """<Protocols xmlns="urn:mace:shibboleth:2.0:native:sp:protocols">
  <!-- the SAML 2.0 and local parts of the package's protocols.xml -->
  <Protocol id="SAML2">
    <Service id="SSO">
      <Initiator id="SAML2"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" path="/SAML2/POST"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST-SimpleSign" path="/SAML2/POST-SimpleSign"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" path="/SAML2/Artifact"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:PAOS" path="/SAML2/ECP"/>
    </Service>
    <Service id="Logout">
      <Initiator id="SAML2"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" path="/SLO/SOAP"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" path="/SLO/Redirect"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" path="/SLO/POST"/>
      <Binding id="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" path="/SLO/Artifact"/>
    </Service>
  </Protocol>
  <Protocol id="Local">
    <Service id="Logout">
      <Initiator id="Local"/>
    </Service>
  </Protocol>
</Protocols>
"""

_SECURITY_POLICY = """<SecurityPolicies xmlns="urn:mace:shibboleth:3.0:native:sp:config">
  <!-- the package's default policy: replay and freshness, conditions (audience), signatures -->
  <Policy id="default" validate="false">
    <PolicyRule type="MessageFlow" checkReplay="true" expires="60"/>
    <PolicyRule type="Conditions">
      <PolicyRule type="Audience"/>
    </PolicyRule>
    <PolicyRule type="ClientCertAuth" errorFatal="true"/>
    <PolicyRule type="XMLSigning" errorFatal="true"/>
    <PolicyRule type="SimpleSigning" errorFatal="true"/>
  </Policy>
  <!-- SHA-1 and the other algorithms Shibboleth considers weak are refused -->
  <ExcludedAlgorithms excludeDefaults="true"/>
</SecurityPolicies>
"""

_LOGGER = """log4j.rootCategory={level}, out
log4j.category.XMLTooling.XMLObject=WARN
log4j.category.XMLTooling.XMLObjectBuilder=WARN
log4j.category.XMLTooling.KeyInfoResolver=WARN
log4j.category.Shibboleth.PropertySet=WARN
log4j.category.XMLTooling.Signature.Debugger=WARN
log4j.appender.out={appender}
{file}log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%d{{%H:%M:%S}} %p %c %x: %m%n
"""


def _attributes(pairs: tuple[tuple[str, str], ...]) -> str:
    return "".join(f" {name}={quoteattr(value)}" for name, value in pairs)


class ShibbolethSp(Service):
    """shibd and Apache with mod_shib serving ``https://localhost:<port>``, logging in at ``idp``."""

    def __init__(self, workdir: Path, *, idp: IdpSource, certificate: Path, key: Path, tls_ca: Path,
                 signing_key: Path, signing_certificate: Path, applications: Sequence[Application],
                 resources: Sequence[Resource], attributes: Sequence[MappedAttribute], port: int | None = None) -> None:
        """``certificate`` and ``key``: Apache's TLS server certificate (for ``localhost``), issued by ``tls_ca``;
        ``signing_key`` and ``signing_certificate``: the SP's SAML key pair (it signs AuthnRequests and
        LogoutRequests with it; its metadata publishes it). ``applications`` must include ``default``."""
        self.apache = program("apache2")
        self.shibd = program("shibd")
        self.metagen = program("shib-metagen")
        if not (MODULES_DIR / "mod_shib.so").exists():
            pytest.fail(f"these tests run a real Shibboleth SP, and {MODULES_DIR / 'mod_shib.so'} is missing: "
                        f"sudo apt-get install -y {PACKAGES}", pytrace=False)
        if "default" not in [a.id for a in applications]:
            raise ValueError("the applications must include 'default' (Shibboleth's ApplicationDefaults)")
        self.workdir = workdir
        self.tls_ca = tls_ca
        self.port = port or free_port()
        self.idp = idp
        self.applications = {a.id: a for a in applications}
        self.resources = tuple(resources)
        self.attributes = tuple(attributes)
        self.shibd_process: subprocess.Popen[bytes] | None = None
        self.apache_process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="shibboleth-sp-"))  # reachable by nobody: the docstring
        self.directory.chmod(0o711)
        for sub in ("run", "log", "cache", "templates", "cgi", "keys"):
            (self.directory / sub).mkdir(mode=0o711)
        self.config = self.directory / "shibboleth2.xml"
        self.socket = self.directory / "run" / "shibd.sock"
        self.log_dir = self.directory / "log"
        self.tls_certificate = self._copy(certificate, "keys/tls.pem", 0o644)
        self.tls_key = self._copy(key, "keys/tls.key", 0o600)
        self.signing_certificate = self._copy(signing_certificate, "keys/sp-signing.pem", 0o644)
        self.signing_key = self._copy(signing_key, "keys/sp-signing.key", 0o600)
        self.idp_signing_certificate = self._copy(idp.signing_certificate, "keys/idp-signing.pem", 0o644)

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def entity_id(self, application: str = "default") -> str:
        return f"{self.base_url}{self.applications[application].prefix}/shibboleth"

    def handler(self, application: str = "default") -> str:
        """The application's handler URL; its endpoints are below it (``/SAML2/POST``, ``/SLO/Redirect`` ...)."""
        return f"{self.base_url}{self.applications[application].prefix}/Shibboleth.sso"

    def metadata(self, application: str = "default") -> bytes:
        """The application's SP metadata as ``shib-metagen`` writes it, what an SP operator sends the IdP: SAML 2.0
        only, the SingleLogoutService endpoints, the signing certificate in a KeyDescriptor without ``use``
        (signing and encryption). ``shib-metagen`` puts the handler at ``https://<host>/Shibboleth.sso``, so an
        application's prefix goes into the host argument."""
        prefix = self.applications[application].prefix
        done = subprocess.run([self.metagen, "-2", "-L", "-c", str(self.signing_certificate),
                               "-h", f"localhost:{self.port}{prefix}", "-e", self.entity_id(application)],
                              capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"shib-metagen exited with {done.returncode}: {done.stderr.decode(errors='replace')}")
        return done.stdout

    # --- configuration ---------------------------------------------------------------------------

    def _copy(self, source: Path, target: str, mode: int) -> Path:
        path = self.directory / target
        shutil.copyfile(source, path)
        path.chmod(mode)
        return path

    def _write(self, name: str, text: str, mode: int = 0o644) -> Path:
        path = self.directory / name
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    def _sessions(self, application: Application) -> str:
        # as the package's shibboleth2.xml: HTTPS only (handlerSSL, Secure cookies); relayState="ss:mem" keeps the
        # target URL in shibd and sends a 71-byte reference (the broker takes at most 80 bytes, Bindings §3.4.3)
        templates = self.directory / "templates"
        error = templates / "sessionError.html"
        return f"""    <Sessions lifetime="28800" timeout="3600" relayState="ss:mem" checkAddress="false"
        handlerURL="{application.prefix}/Shibboleth.sso" handlerSSL="true" cookieProps="https" redirectLimit="exact">
      <SSO entityID={quoteattr(self.idp.entity_id)}>SAML2</SSO>
      <Logout{_attributes(application.logout)}>SAML2 Local</Logout>
      <Handler type="Status" Location="/Status" acl="127.0.0.1 ::1"/>
      <Handler type="Session" Location="/Session" showAttributeValues="true" contentType="application/json"/>
    </Sessions>
    <Errors supportContact="root@localhost" session="{error}" metadata="{error}" access="{error}" ssl="{error}"
        localLogout="{templates / 'localLogout.html'}" globalLogout="{templates / 'globalLogout.html'}"
        partialLogout="{templates / 'partialLogout.html'}"/>
"""

    def shibboleth2_xml(self, *, idp_certificate: Path, backing_file: Path, socket: Path) -> str:
        """The SP's configuration, trusting metadata signed with ``idp_certificate``."""
        d = self.directory
        overrides = "".join(
            f'    <ApplicationOverride id="{a.id}" entityID={quoteattr(self.entity_id(a.id))}'
            f"{_attributes(a.settings)}>\n{self._sessions(a)}    </ApplicationOverride>\n"
            for a in self.applications.values() if a.id != "default")
        default = self.applications["default"]
        return f"""<SPConfig xmlns="urn:mace:shibboleth:3.0:native:sp:config"
    xmlns:conf="urn:mace:shibboleth:3.0:native:sp:config" clockSkew="180">
  <OutOfProcess logger="{d / 'shibd.logger'}"/>
  <InProcess logger="{d / 'native.logger'}"/>
  <UnixListener address="{socket}"/>
  <!-- signing="true": AuthnRequests and LogoutRequests are signed (the broker's file for this SP requires signed
       requests), with RSA-SHA256 and SHA-256 digests (written out: the broker refuses SHA-1).
       encryption="false": what this SP sends is not encrypted (the broker's IdP metadata has no encryption key,
       so the NameID of a LogoutRequest could not be); what it receives may be (the broker's encrypt_assertions),
       and is decrypted with the SP's own key, which its metadata publishes for both uses. -->
  <ApplicationDefaults entityID={quoteattr(self.entity_id())} REMOTE_USER="persistent-id"
      signing="true" encryption="false" signingAlg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
      digestAlg="http://www.w3.org/2001/04/xmlenc#sha256"{_attributes(default.settings)}>
{self._sessions(default)}
    <!-- the broker's metadata from its URL, believed only with the broker's signature on it -->
    <MetadataProvider type="XML" validate="true" url={quoteattr(self.idp.metadata_url)}
        backingFilePath="{backing_file}" maxRefreshDelay="3600">
      <MetadataFilter type="Signature" certificate="{idp_certificate}" verifyBackup="false"/>
      <MetadataFilter type="RequireValidUntil" maxValidityInterval="2419200"/>
    </MetadataProvider>
    <AttributeExtractor type="XML" validate="true" reloadChanges="false" path="{d / 'attribute-map.xml'}"/>
    <CredentialResolver type="File" key="{self.signing_key}" certificate="{self.signing_certificate}"/>
{overrides}  </ApplicationDefaults>
  <SecurityPolicyProvider type="XML" validate="true" path="{d / 'security-policy.xml'}"/>
  <ProtocolProvider type="XML" validate="true" reloadChanges="false" path="{d / 'protocols.xml'}"/>
</SPConfig>
"""

    def _attribute_map(self) -> str:
        entries = "".join(f"  <Attribute name={quoteattr(a.name)} id={quoteattr(a.id)}/>\n" for a in self.attributes)
        # the persistent NameID as Shibboleth's own attribute-map.xml decodes it: NameQualifier!SPNameQualifier!value
        return f"""<Attributes xmlns="urn:mace:shibboleth:2.0:attribute-map"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Attribute name="{NAMEID_PERSISTENT}" id="persistent-id">
    <AttributeDecoder xsi:type="NameIDAttributeDecoder" formatter="$NameQualifier!$SPNameQualifier!$Name"
        defaultQualifiers="true"/>
  </Attribute>
{entries}</Attributes>
"""

    def _apache_conf(self) -> str:
        modules = "\n".join(f"LoadModule {m}_module {MODULES_DIR / f'mod_{m}.so'}" for m in _APACHE_MODULES)
        user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
        run, log, cgi = self.directory / "run", self.log_dir, self.directory / "cgi" / "environment"
        locations = []
        for a in self.applications.values():
            if a.prefix:  # requests below the prefix, its handler's included, belong to the application
                locations.append(f"  <Location {a.prefix}>\n    ShibRequestSetting applicationId {a.id}\n  </Location>")
            locations.append(f"  <Location {a.prefix}/Shibboleth.sso>\n    SetHandler shib\n    AuthType None\n"
                             f"    Require all granted\n  </Location>")
        for r in self.resources:
            settings = "".join(f"\n    ShibRequestSetting {name} {value}"
                               for name, value in (("applicationId", r.application), *r.settings))
            locations.append(f"  ScriptAlias {r.path} {cgi}\n  <Location {r.path}>\n    AuthType shibboleth\n"
                             f"    ShibRequestSetting requireSession 1{settings}\n    Require shib-session\n"
                             f"  </Location>")
        body = "\n".join(locations)
        return f"""ServerRoot {self.directory}
{modules}
LoadModule mod_shib {MODULES_DIR / 'mod_shib.so'}
{user}ServerName localhost
Listen 127.0.0.1:{self.port}
PidFile {run / 'apache2.pid'}
DefaultRuntimeDir {run}
Mutex file:{run} default
ErrorLog {log / 'apache-error.log'}
LogLevel warn
StartServers 2
MinSpareServers 1
MaxSpareServers 4
MaxRequestWorkers 8
SSLSessionCache shmcb:{run / 'ssl_scache'}(512000)
ShibConfig {self.config}
ShibCompatValidUser Off
<VirtualHost 127.0.0.1:{self.port}>
  # the SP builds its own URLs (its ACS, the Destination it checks) from the canonical name, not the Host header
  ServerName https://localhost:{self.port}
  UseCanonicalName On
  SSLEngine on
  SSLCertificateFile {self.tls_certificate}
  SSLCertificateKeyFile {self.tls_key}
{body}
</VirtualHost>
"""

    def write_configuration(self) -> None:
        self._write("templates/sessionError.html", _SESSION_ERROR)
        for kind in ("local", "global", "partial"):
            self._write(f"templates/{kind}Logout.html", _LOGOUT.format(kind=kind))
        self._write("cgi/environment", _CGI, 0o755)
        self._write("protocols.xml", _PROTOCOLS)
        self._write("security-policy.xml", _SECURITY_POLICY)
        self._write("attribute-map.xml", self._attribute_map())
        self._write("shibboleth2.xml", self.shibboleth2_xml(idp_certificate=self.idp_signing_certificate,
                                                            backing_file=self.directory / "cache" / "idp.xml",
                                                            socket=self.socket))
        self._write("shibd.logger", _LOGGER.format(level="INFO", appender="org.apache.log4j.FileAppender",
                                                   file=f"log4j.appender.out.fileName={self.log_dir / 'shibd.log'}\n"))
        # mod_shib, in Apache's children, logs to their standard error: Apache's error log; shibd -t to its output
        for logger in ("native.logger", "console.logger"):
            self._write(logger, _LOGGER.format(level="WARN", appender="org.apache.log4j.ConsoleAppender", file=""))
        self._write("apache2.conf", self._apache_conf())

    # --- processes -------------------------------------------------------------------------------

    def check(self, idp_certificate: Path | None = None) -> str:
        """What ``shibd -t`` (load the whole configuration, the IdP's metadata included, and exit) says, with the
        metadata signature checked against ``idp_certificate`` instead of the IdP's when given (in a copy of the
        configuration with a backup file of its own, so that no copy the running shibd saved stands in)."""
        config = self.config
        if idp_certificate is not None:
            certificate = self._copy(idp_certificate, "keys/check-idp.pem", 0o644)
            config = self._write("check-shibboleth2.xml", self.shibboleth2_xml(
                idp_certificate=certificate, backing_file=self.directory / "cache" / "check-idp.xml",
                socket=self.directory / "run" / "check.sock"))
        done = subprocess.run([self.shibd, "-t", "-c", str(config)], capture_output=True, text=True, timeout=60,
                              check=False, env=self.environment("console.logger"))
        return f"exit {done.returncode}\n{done.stdout}{done.stderr}"

    def environment(self, logger: str) -> dict[str, str]:
        """The environment for shibd and mod_shib: the SP library sets up its logging from ``logger`` and knows
        this directory's parts as its configuration, log, cache and run directories before it has read
        shibboleth2.xml (left alone, it logs that first part to /var/log/shibboleth, and mod_shib to syslog)."""
        d = self.directory
        return {**os.environ, "SHIBSP_LOGGING": str(d / logger), "SHIBSP_CFGDIR": str(d),
                "SHIBSP_LOGDIR": str(self.log_dir), "SHIBSP_CACHEDIR": str(d / "cache"),
                "SHIBSP_RUNDIR": str(d / "run")}

    def _spawn(self, command: list[str], logger: str) -> subprocess.Popen[bytes]:
        with (self.log_dir / "stderr.log").open("ab") as out:
            # a session of its own: at shutdown prefork's parent ends its children with killpg(getpgrp()), which in
            # the test's process group would end the test run too
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.environment(logger), start_new_session=True)

    def start(self, timeout: float = 30.0) -> None:
        self.write_configuration()
        deadline = time.monotonic() + timeout
        self.shibd_process = self._spawn([self.shibd, "-F", "-f", "-c", str(self.config),
                                          "-p", str(self.directory / "run" / "shibd.pid")], "shibd.logger")
        while not self.socket.exists():  # shibd listens once its configuration (and the metadata) is loaded
            if self.shibd_process.poll() is not None:
                raise RuntimeError(f"shibd exited with {self.shibd_process.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"shibd did not open its socket within {timeout} s:\n{self.logs()}")
            time.sleep(0.05)
        self.apache_process = self._spawn([self.apache, "-f", str(self.directory / "apache2.conf"),
                                           "-d", str(self.directory), "-DFOREGROUND"], "native.logger")
        while True:  # the Status handler answers OK once mod_shib reaches shibd
            if self.apache_process.poll() is not None:
                raise RuntimeError(f"apache2 exited with {self.apache_process.returncode}:\n{self.logs()}")
            with contextlib.suppress(requests.RequestException):
                status = requests.get(self.url("/Shibboleth.sso/Status"), verify=str(self.tls_ca), timeout=5)
                if status.status_code == 200 and "<OK/>" in status.text:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Shibboleth SP did not report OK within {timeout} s:\n{self.logs()}")
            time.sleep(0.1)

    def shibd_log(self) -> str:
        path = self.log_dir / "shibd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, tail: int = 6000) -> str:
        """The tails of shibd's log, Apache's error log (with mod_shib's warnings) and the processes' output."""
        directory = self.log_dir if self.log_dir.exists() else self.workdir / "log"
        return "\n".join(f"--- {name}\n" + (directory / name).read_text(errors="replace")[-tail:]
                         for name in ("shibd.log", "apache-error.log", "stderr.log") if (directory / name).exists())

    def stop(self) -> None:
        for process in (self.apache_process, self.shibd_process):
            if process is not None:
                end_process(process)
        self.apache_process = self.shibd_process = None
        if self.directory.exists():
            shutil.copytree(self.log_dir, self.workdir / "log", dirs_exist_ok=True)
            shutil.rmtree(self.directory, ignore_errors=True)
