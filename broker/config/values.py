"""Configuration value types that carry their own parsing and schema.

File-backed values (certificates, keys, CRLs, secrets) are read and checked
here, once, at load time: a config that loads is a config whose files parse.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key, pkcs7

from broker.config.typed import ParseContext
from broker.config.yamlsource import UTF16, FileRefused, KeyPath, integer_hint, is_utf16, read_regular_file
from broker.pki.naming import display_subject, not_a_ca
from broker.pki.reading import check_each, read_crl


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected {what} as a string, got {value!r}")
    return value


MAX_KEY_FILE_BYTES = 1024 * 1024                 # a key, a certificate, a CA bundle, a secret
MAX_CRL_FILE_BYTES = 1024 * 1024 * 1024          # a CRL (a large CA's lists reach hundreds of megabytes)


def read_configured_file(path: Path, what: str, limit: int) -> bytes:
    """The content of a file the configuration names (:func:`read_regular_file`: a regular file of at most
    ``limit`` bytes, never a FIFO or device that would hang the load), or ValueError saying what is wrong."""
    try:
        return read_regular_file(path, limit)
    except FileNotFoundError:
        raise ValueError(f"{what} file not found: {path}") from None
    except FileRefused as exc:
        raise ValueError(f"{what} file {path} cannot be used: {exc}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {path}: {exc.strerror}") from None


def _read(ctx: ParseContext, value: Any, what: str, limit: int = MAX_KEY_FILE_BYTES) -> tuple[Path, bytes]:
    rel = _require_str(value, f"a path to {what}")
    path = ctx.resolve(rel)
    return path, read_configured_file(path, what, limit)


# A secret belongs in a file; one pasted in place of the file's path is still a secret, and messages go to
# terminals, logs and the audit trail: a secret file's configured value is never repeated back.
_NOT_SHOWN = "the value is not shown: it may be a secret written inline"


def _read_secret(ctx: ParseContext, value: Any, what: str = "secret") -> tuple[Path, bytes]:
    """The path and content of a file holding a secret (a shared secret, a private key); a problem with the
    configured value is said without it: a key pasted in place of its path is as secret as the file."""
    if not isinstance(value, str) or not value.strip():
        kind = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping"}
        shown = "nothing (null)" if value is None else f"{kind.get(type(value), 'another value')} ({_NOT_SHOWN})"
        raise ValueError(f"expected a path to a file holding the {what}, got {shown}")
    path = ctx.resolve(value)
    try:
        return path, read_regular_file(path, MAX_KEY_FILE_BYTES)
    except FileNotFoundError:
        raise ValueError(f"{what} file not found ({_NOT_SHOWN})") from None
    except FileRefused as exc:  # it exists: a path, not a secret
        raise ValueError(f"{what} file {path} cannot be used: {exc}") from None
    except OSError as exc:  # ENAMETOOLONG, EACCES ...: the path may be the secret too
        raise ValueError(f"cannot read {what} file: {exc.strerror} ({_NOT_SHOWN})") from None


# --- plain values ----------------------------------------------------------------

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


MAX_DURATION_SECONDS = 3650 * 86400


@dataclass(frozen=True, order=True)
class Duration:
    """A span of time: a number of seconds, or a string like ``500ms``, ``30s``, ``10m``, ``8h``, ``1h30m``, ``7d``."""

    seconds: float

    @property
    def timedelta(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.seconds)

    @classmethod
    def parse(cls, text: str) -> Duration:
        text = text.strip()
        pos, total = 0, 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"expected a duration like 30s, 10m, 8h or 1h30m, got {text!r}")
        return cls(total)

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> Duration:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_DURATION_SECONDS:
            # an integer past a float's range (10^400) cannot even be converted: OverflowError
            digits = len(str(abs(value)))
            shown = str(value) if digits <= 20 else f"a number of {digits} digits"
            raise ValueError(f"expected at most 3650d (ten years), got {shown}" if value > 0
                             else f"expected a positive duration, got {shown}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            d = cls(float(value))
        elif isinstance(value, str):
            try:
                d = cls.parse(value)
            except ValueError as exc:
                raise ValueError(f"{exc}{integer_hint(value)}") from None
        else:
            raise ValueError(f"expected a duration like 30s, 10m or 8h, got {value!r}")
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        if math.isnan(d.seconds) or d.seconds <= 0 or (math.isinf(d.seconds) and not isinstance(value, str)):
            raise ValueError(f"expected a positive duration, got {shown}")
        if d.seconds > MAX_DURATION_SECONDS:  # (infinity too) nothing is configured for longer; past it, dates overflow
            raise ValueError(f"expected at most 3650d (ten years), got {shown}")
        return d

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_SECONDS, "description": "seconds"},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
            ]
        }

    def __str__(self) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if self.seconds >= size and self.seconds % size == 0:
                return f"{int(self.seconds // size)}{unit}"
        return f"{self.seconds * 1000:g}ms"


_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+\Z")
_OID_SCHEMA = r"^[0-2](\.(0|[1-9][0-9]*))+$"   # the same in ECMA-262, which has no \Z


class Oid(str):
    """A dotted-decimal object identifier such as ``1.2.752.29.4.13``."""

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> Oid:
        text = _require_str(value, "an OID")
        if not _OID.match(text):
            raise ValueError(f"expected a dotted OID like 1.2.752.74.8.512, got {text!r}")
        return cls(text)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        # JSON Schema patterns are ECMA-262 (JSON Schema 2020-12 Validation §6.3.3), where \Z is no anchor
        return {"type": "string", "pattern": _OID_SCHEMA}


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")   # a DNS name (RFC 1123 §2.1) or a dotted IPv4 address


class _Url(str):
    """Base of the URL types: one pattern, one message, one schema each."""

    pattern: ClassVar[re.Pattern[str]]
    expected: ClassVar[str]
    schema_pattern: ClassVar[str]

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> Self:
        return cls.parse(_require_str(value, "a URL"))

    @classmethod
    def parse(cls, text: str) -> Self:
        """``text`` as this kind of URL, or ValueError saying what was expected (the configuration's rule, also
        for the commands' URL options)."""
        if not cls.pattern.match(text):
            raise ValueError(f"expected {cls.expected}, got {text!r}")
        try:  # the host and port as every client will read them (a port past 65535, "a:b:c", "[[x]")
            parts = urlsplit(text)
            port, host = parts.port, parts.hostname
        except ValueError as exc:
            raise ValueError(f"expected {cls.expected}, got {text!r} ({exc})") from None
        if not host or port == 0:
            raise ValueError(f"expected {cls.expected} with a host{' and a port from 1 to 65535' if port == 0 else ''}"
                             f", got {text!r}")
        # urlsplit reads past what no client resolves or connects to: "[::1]8443" as host ::1 without a port,
        # "a..b" and "-a" as host names (RFC 3986 §3.2.2; RFC 1123 §2.1: labels of letters, digits, inner hyphens)
        netloc = parts.netloc
        if netloc.startswith("["):
            if netloc[netloc.index("]") + 1:][:1] not in ("", ":"):
                raise ValueError(f"expected {cls.expected}, got {text!r} (after the IPv6 address only :port may "
                                 "follow)")
        elif not _HOST_NAME.fullmatch(host):
            raise ValueError(f"expected {cls.expected}, got {text!r} ({host!r} is not a host name: labels of "
                             "letters, digits and '-' between dots, none empty or starting or ending with '-')")
        return cls(cls.normalise(text))

    @staticmethod
    def normalise(text: str) -> str:
        return text

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "format": "uri", "pattern": cls.schema_pattern}


class HttpsUrl(_Url):
    """An absolute https:// URL without query or fragment."""

    pattern = re.compile(r"^https://[A-Za-z0-9.\-\[\]:]+(/[^\s?#]*)?\Z")
    expected = "an https:// URL without query or fragment"
    schema_pattern = "^https://"

    @staticmethod
    def normalise(text: str) -> str:
        return text.rstrip("/")


class HttpsQueryUrl(_Url):
    """An absolute https:// URL that may have a query but no fragment: a document's address, such as Entra ID's
    per-application federation metadata (``.../federationmetadata.xml?appid=<application id>``)."""

    pattern = re.compile(r"^https://[A-Za-z0-9.\-\[\]:]+(/[^\s?#]*)?(\?[^\s#]*)?\Z")
    expected = "an https:// URL without a fragment (#...)"
    schema_pattern = "^https://[^#]*$"

    @staticmethod
    def normalise(text: str) -> str:
        return text if "?" in text else text.rstrip("/")


class HttpUrl(_Url):
    """An absolute http:// or https:// URL (revocation data is usually served over plain HTTP: it is signed)."""

    pattern = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/\S*)?\Z")
    expected = "an http:// or https:// URL"
    schema_pattern = "^https?://"


class EntityId(str):
    """A SAML entityID (SAML Core §8.3.6: a URI of at most 1024 characters)."""

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> EntityId:
        text = _require_str(value, "an entity ID")
        if len(text) > 1024 or not re.match(r"^(https?|urn):\S+\Z", text):
            raise ValueError(f"expected an entity ID (an https:// URL or urn:, at most 1024 characters), "
                             f"got {text!r}")
        return cls(text)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "maxLength": 1024, "pattern": r"^(https?|urn):\S+$"}


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by personnummer and organisationsnummer."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class OrganizationNumber(str):
    """A Swedish organisationsnummer: ten digits (a hyphen after six is accepted), Luhn-checked."""

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> OrganizationNumber:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError("expected the organisation number as a quoted string (\"2120001234\")")
        text = _require_str(value, "an organisation number")
        if not re.fullmatch(r"[0-9]{6}-?[0-9]{4}", text):
            raise ValueError(f"expected a 10-digit organisation number, got {value!r} (form NNNNNN-NNNN)")
        text = text.replace("-", "")
        if not luhn_valid(text):
            raise ValueError(f"organisation number {value!r} fails its check digit")
        return cls(text)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^\d{6}-?\d{4}$"}


class Regex(str):
    """A Python regular expression, matched against the whole value with ``re.ASCII`` (``\\w``, ``\\d`` are ASCII
    only), as identities are (broker.pki.identity, broker.saml.upstream_mapping): compiled so here, so that a pattern
    whose own ``(?u)`` contradicts that flag is refused now, not with a ValueError at every login."""

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> Regex:
        text = _require_str(value, "a regular expression")
        try:
            re.compile(text, re.ASCII)
        except (re.error, ValueError) as exc:  # ValueError: a (?u) of its own, which re.ASCII contradicts
            raise ValueError(f"invalid regular expression: {exc}") from None
        return cls(text)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "format": "regex"}


@dataclass(frozen=True)
class IpNetwork:
    """An IPv4 or IPv6 network in CIDR form; a bare address means that one host."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> IpNetwork:
        text = _require_str(value, "a network")
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"expected a network like 10.0.0.0/24 or 127.0.0.1, got {text!r} ({exc})") from None
        mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
        if mapped is not None:
            # ::ffff:10.0.4.5, as a dual-stack listener shows an IPv4 peer, is that IPv4 address (RFC 4291
            # §2.5.5.2), which is how peers are compared: written in this form it would never match (a prefix
            # under 96 leaves host bits in ::ffff, which strict parsing has refused above)
            return cls(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
        return cls(network)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "examples": ["127.0.0.1/32", "10.20.0.0/16", "::1"]}

    def __contains__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return address in self.network


# --- file-backed values ----------------------------------------------------------


@dataclass(frozen=True)
class SecretFile:
    """A file holding a random secret of at least 32 bytes (e.g. ``head -c 32 /dev/urandom > f``)."""

    path: Path
    value: bytes

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> SecretFile:
        p, data = _read_secret(ctx, value)
        if data.isascii():  # a hex or base64 text file: the trailing newline is not part of the secret
            data = data.strip()
        if len(data) < 32:
            raise ValueError(f"secret in {p} is {len(data)} bytes; at least 32 random bytes are required")
        return cls(p, data)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to a file with at least 32 random bytes"}

    def __repr__(self) -> str:  # never print the secret
        return f"SecretFile({self.path})"


_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")


def _pem_labels(data: bytes) -> set[str]:
    """The labels of the PEM blocks in ``data`` (RFC 7468 §2)."""
    return {m.group(1).decode("ascii") for m in _PEM_LABEL.finditer(data)}


def _what_pem_holds(label: str) -> str:
    """A PEM label (RFC 7468 §5-§13) in the words an operator knows the file by."""
    if "PRIVATE KEY" in label:
        return f"a private key ({label})"
    if label == "X509 CRL":
        return "a CRL (X509 CRL), which goes where CRLs are given"
    if label in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"):
        return f"a certificate signing request ({label}, not the certificate issued for it)"
    return f"a PEM block {label}"


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, or the single certificate in a DER file. ValueError otherwise, saying
    what the file holds instead where that is a usual mistake: nothing, or a PKCS#7 bundle (a .p7b file, as CAs
    publish their chains and Windows exports them), whose certificates are in it but not as PEM or DER; and
    whatever the parser raised (cryptography raises ``x509.InvalidVersion``, no ValueError, for a version other
    than v1 to v3)."""
    if not data.strip():
        raise ValueError("the file is empty")
    if is_utf16(data):
        raise ValueError(f"{UTF16}; save it as ASCII or UTF-8")
    pem = b"-----BEGIN" in data
    try:
        return x509.load_pem_x509_certificates(data) if pem else [x509.load_der_x509_certificate(data)]
    except ValueError:
        try:
            bundled = pkcs7.load_pem_pkcs7_certificates(data) if pem else pkcs7.load_der_pkcs7_certificates(data)
        except ValueError:
            bundled = []
        if not bundled:
            labels = _pem_labels(data) if pem else set()
            if labels and not labels & {"CERTIFICATE", "TRUSTED CERTIFICATE"}:
                raise ValueError(f"it holds {', '.join(_what_pem_holds(label) for label in sorted(labels))}, not "
                                 "a certificate (-----BEGIN CERTIFICATE-----): give the certificate file") from None
            raise
    except Exception as exc:  # an operator's file must never become anything but "not a certificate"
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    inform = "" if pem else " -inform DER"
    raise ValueError(f"a PKCS#7 bundle (.p7b) of {len(bundled)} certificate(s); write them as PEM: openssl pkcs7 "
                     f"-print_certs{inform} -in FILE -out FILE.pem")


@dataclass(frozen=True)
class CertificateFile:
    """A file with exactly one X.509 certificate (PEM or DER)."""

    path: Path
    certificate: x509.Certificate

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> CertificateFile:
        p, data = _read(ctx, value, "certificate")
        try:
            certs = load_certificates(data)
        except ValueError as exc:
            raise ValueError(f"{p} does not hold a readable X.509 certificate ({exc})") from None
        if len(certs) != 1:
            raise ValueError(f"{p} must hold exactly one certificate, found {len(certs)}")
        check_each(certs, p)  # read whole now (a duplicated extension, an unreadable name), not where first used
        return cls(p, certs[0])

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to a PEM or DER certificate"}


@dataclass(frozen=True)
class CaCertificates:
    """A file with one or more CA certificates (PEM bundle or one DER certificate).

    Each must be a CA: basicConstraints with cA=TRUE (RFC 5280 §4.2.1.9) and,
    where key usage is present, keyCertSign (§4.2.1.3).
    """

    path: Path
    certificates: tuple[x509.Certificate, ...]

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> CaCertificates:
        p, data = _read(ctx, value, "CA certificate")
        try:
            certs = load_certificates(data)
        except ValueError as exc:
            raise ValueError(f"{p} does not hold readable X.509 certificates ({exc})") from None
        if not certs:
            raise ValueError(f"{p} holds no certificate")
        # read every lazily parsed part once (a duplicated extension, an unreadable name), so a broken CA
        # certificate is a configuration problem here, not an error where it is first read
        check_each(certs, p)
        for cert in certs:
            if problem := not_a_ca(cert):
                # a user's certificate given as a CA (the sample, say): its subject masked, as everywhere it is shown
                raise ValueError(f"{p}: {display_subject(cert)} {problem}")
        return cls(p, tuple(certs))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to a PEM bundle or DER file of CA certificates"}


@dataclass(frozen=True)
class CrlFile:
    """A file with one certificate revocation list (PEM or DER); its signature is checked
    against the municipality's CAs after parsing."""

    path: Path
    crl: x509.CertificateRevocationList

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> CrlFile:
        p, data = _read(ctx, value, "CRL", MAX_CRL_FILE_BYTES)
        try:
            crl = read_crl(data)  # one reading for the configuration and every later re-read of the file
        except ValueError as exc:
            raise ValueError(f"{p} does not hold a readable CRL ({exc})") from None
        return cls(p, crl)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to a PEM or DER CRL"}


SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class PrivateKeyFile:
    """A PEM private key (unencrypted PKCS#8 or traditional): RSA >= 2048 bits or ECDSA P-256/384/521."""

    path: Path
    key: SigningKey
    pem: bytes

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> PrivateKeyFile:
        p, data = _read_secret(ctx, value, "private key")
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{p} does not hold an unencrypted PEM private key ({exc})") from None
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise ValueError(f"{p}: RSA key of {key.key_size} bits; at least 2048 are required")
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
                raise ValueError(f"{p}: curve {key.curve.name} is not allowed (P-256, P-384, P-521)")
        else:
            raise ValueError(f"{p}: only RSA and ECDSA signing keys are supported")
        return cls(p, key, data)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to an unencrypted PEM private key"}

    def __repr__(self) -> str:  # never print key material
        return f"PrivateKeyFile({self.path})"


@dataclass(frozen=True)
class WritableDirectory:
    """A directory the broker writes into; it must exist or be creatable."""

    path: Path

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> WritableDirectory:
        p = ctx.resolve(_require_str(value, "a directory path"))
        if p.exists() and not p.is_dir():
            raise ValueError(f"{p} exists and is not a directory")
        parent = p
        while not parent.exists():
            if parent.parent == parent:
                break
            parent = parent.parent
        if not parent.is_dir():
            raise ValueError(f"{p} cannot be created: {parent} is not a directory")
        return cls(p)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path of a directory the broker writes into"}


@dataclass(frozen=True)
class Ed25519KeyFile:
    """A PEM Ed25519 private key (``openssl genpkey -algorithm ed25519`` or ``broker audit keygen``)."""

    path: Path
    key: Ed25519PrivateKey

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> Ed25519KeyFile:
        p, data = _read_secret(ctx, value, "Ed25519 private key")
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{p} does not hold an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{p}: the audit signing key must be Ed25519, not {type(key).__name__.lstrip('_')}")
        return cls(p, key)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to a PEM Ed25519 private key"}

    def __repr__(self) -> str:  # never print key material
        return f"Ed25519KeyFile({self.path})"


@dataclass(frozen=True)
class Ed25519PublicKeyFile:
    """A PEM Ed25519 public key (an earlier audit key, kept to verify old checkpoints)."""

    path: Path
    key: Ed25519PublicKey

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> Ed25519PublicKeyFile:
        p, data = _read(ctx, value, "Ed25519 public key")
        try:
            key = load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{p} does not hold a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{p}: not an Ed25519 public key")
        return cls(p, key)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to a PEM Ed25519 public key"}
