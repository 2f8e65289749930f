"""Loading a configuration directory into :class:`Settings`, once, strictly.

Every problem is collected as a :class:`ConfigIssue` (file, line, key path,
expected value) and raised together in one :class:`ConfigError`, so that
``broker config check`` shows regional IT the whole list at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from broker.config.schema import BrokerConfig, MunicipalityConfig, RevocationConfig, ServiceProviderConfig
from broker.config.typed import parse_document
from broker.config.yamlsource import KeyPath, YamlSource, format_path, load_yaml
from broker.errors import ConfigError, ConfigIssue
from broker.pki.truststore import TrustDomain, TrustIndex, municipality_domain
from broker.saml.metadata import IdpMetadata, SpMetadata, parse_idp_metadata, parse_sp_metadata
from broker.saml.xmlenc import AssertionEncrypter, EncryptionUnsupported, encrypter_for

T = TypeVar("T")

_ID = re.compile(r"^[a-z0-9][a-z0-9\-]{0,62}\Z")
MUNICIPALITIES_DIR = "municipalities"
SERVICE_PROVIDERS_DIR = "service-providers"


@dataclass(frozen=True)
class Municipality:
    id: str
    config: MunicipalityConfig
    idp_metadata: IdpMetadata | None = None   # login: saml with a local metadata file, parsed at load

    @property
    def status(self) -> str:
        return self.config.status


@dataclass(frozen=True)
class ServiceProvider:
    id: str
    config: ServiceProviderConfig
    metadata: SpMetadata
    encrypter: AssertionEncrypter | None = None   # with encrypt_assertions: its key set up once, at load

    @property
    def entity_id(self) -> str:
        return self.config.entity_id

    @property
    def requires_signed_requests(self) -> bool:
        """Whether this SP's AuthnRequests must be signed: its metadata says it signs them (AuthnRequestsSigned,
        SAML Metadata §2.4.4) or its file requires it (``require_signed_requests``)."""
        return self.metadata.authn_requests_signed or self.config.require_signed_requests


@dataclass(frozen=True)
class Settings:
    """The whole, validated configuration. Immutable; shared by every request."""

    config_dir: Path
    broker: BrokerConfig
    municipalities: Mapping[str, Municipality]
    service_providers: Mapping[str, ServiceProvider]
    trust: TrustIndex

    def sp_by_entity_id(self, entity_id: str) -> ServiceProvider | None:
        for sp in self.service_providers.values():
            if sp.entity_id == entity_id:
                return sp
        return None


def _load(cls: type[T], path: Path, display: str, config_dir: Path,
          issues: list[ConfigIssue]) -> tuple[T | None, YamlSource | None]:
    source, read = load_yaml(path, display)
    issues.extend(read)
    if source is None:
        return None, None
    value, problems = parse_document(cls, source, config_dir)
    # a value the YAML reading refused (and reported) is not reported again as missing or mistyped
    refused = [format_path(place) for place in source.refused]
    issues.extend(p for p in problems if not any(_within(p.key, place) for place in refused))
    return (None if read else value), source


def _same_checks(revocation: RevocationConfig) -> RevocationConfig:
    """``revocation`` with its CRL files and URLs in one order: listed in another, they are the same checks (the
    order of ``methods`` is not: it is the order of the checks)."""
    crl = revocation.crl
    return replace(revocation, crl=replace(crl, files=tuple(sorted(crl.files, key=lambda f: str(f.path))),
                                           urls=tuple(sorted(crl.urls))))


def _within(key: str, place: str) -> bool:
    """``key`` (``a.b[0].c``) is ``place`` or below it."""
    return key == place or key.startswith((place + ".", place + "[")) or not place


def _shared_idp_issues(entity_id: str, sharing: Sequence[str], municipalities: Mapping[str, Municipality],
                       sources: Mapping[str, YamlSource]) -> list[ConfigIssue]:
    """Municipalities sharing the IdP ``entity_id`` (a joint ADFS): each must tell its own users apart, or a user
    of one could log in as staff of another by choosing it. A personnummer cannot (it names no municipality); a
    pattern can, unless it is another's too, or lets in another's own HSA-ids (``SE<its organisation number>-``).
    """
    issues: list[ConfigIssue] = []
    for mid in sharing:
        saml = municipalities[mid].config.saml
        assert saml is not None  # grouped by their IdPs
        others = [o for o in sharing if o != mid]
        named = ", ".join(repr(o) for o in others)
        path = ("saml", "identity", "pattern")
        if saml.identity.type == "personnummer":
            issues.append(sources[mid].issue(("saml", "identity", "type"), (
                f"the IdP {entity_id} also serves municipality {named}: a personnummer does not say which "
                "municipality the user works for; identify users by an attribute that does (e.g. employeeHsaId "
                "with this municipality's HSA-id prefix as saml.identity.pattern)")))
            continue
        pattern = saml.identity.pattern
        if pattern is None:
            issues.append(sources[mid].issue(path, (
                f"the IdP {entity_id} also serves municipality {named}: set saml.identity.pattern so that only "
                "this municipality's users match (e.g. its HSA-id prefix ^SE<organisation number>-)")))
            continue
        for other in others:
            theirs = municipalities[other].config
            other_pattern = theirs.saml.identity.pattern if theirs.saml is not None else None
            matched = next((sample for sample in _own_hsa_id_samples(theirs.organization_number)
                            if re.fullmatch(str(pattern), sample, re.ASCII)), None)
            if other_pattern is not None and _unanchored(other_pattern) == _unanchored(pattern):
                issues.append(sources[mid].issue(path, (
                    f"municipality {other!r}, which shares the IdP {entity_id}, has the same pattern: each "
                    "municipality's pattern must match only its own users")))
            elif matched is not None:
                issues.append(sources[mid].issue(path, (
                    f"it matches {matched}, an HSA-id of municipality {other!r}, which shares the IdP "
                    f"{entity_id}: each municipality's pattern must match only its own users (e.g. "
                    "^SE<organisation number>-[A-Za-z0-9]+$)")))
    return issues


def _own_hsa_id_samples(organization_number: str) -> tuple[str, ...]:
    """HSA-ids a municipality issues itself (``SE<organisation number>-`` and a local part of letters and digits),
    in the shapes local parts take: digits, capitals, lower case, mixed, short and long. A pattern that lets in
    none of these is taken to keep that municipality's users out (regular expressions cannot be intersected in
    general; these are the forms HSA-ids have)."""
    prefix = f"SE{organization_number}-"
    return tuple(prefix + local for local in (
        "x1", "1", "1234", "12345678", "A", "ABCD", "AB12", "abcd", "ab12", "Ab1", "K001", "abcdEFGH1234",
        "0" * 32, "Z" * 32, "z" * 32, "aB3" * 11))


def _unanchored(pattern: str) -> str:
    """A full-match pattern without the anchors that change nothing when it is matched whole."""
    text = str(pattern)
    text = text[1:] if text.startswith("^") else text[2:] if text.startswith("\\A") else text
    return text[:-1] if text.endswith("$") else text[:-2] if text.endswith("\\Z") else text


def _sp_references(sid: str, src: YamlSource, entity_id: object, listed: Sequence[object],
                   municipalities: Mapping[str, Municipality], entity_ids: dict[str, str],
                   issues: list[ConfigIssue]) -> bool:
    """Check what service provider ``sid`` says of the other files: each municipality ``listed`` names exists (an
    item that is no string is reported by the schema), and ``entity_id`` is no other service provider's, which it
    then claims. Whether a problem was found."""
    bad = False
    for i, mid in enumerate(listed):
        if not isinstance(mid, str):
            continue
        if mid not in municipalities and not any(i.file == f"{MUNICIPALITIES_DIR}/{mid}.yaml" for i in issues):
            issues.append(src.issue(("municipalities", i),
                                    f"no municipality {mid!r} (expected a file {MUNICIPALITIES_DIR}/{mid}.yaml)"))
            bad = True
    if not isinstance(entity_id, str):
        return bad
    if entity_id in entity_ids:
        issues.append(src.issue(("entity_id",), f"entity ID already used by service provider "
                                                f"{entity_ids[entity_id]!r}"))
        return True
    entity_ids[entity_id] = sid  # claimed even by a service provider with other problems
    return bad


def _files(config_dir: Path, sub: str, issues: list[ConfigIssue]) -> list[tuple[str, Path]]:
    folder = config_dir / sub
    if not folder.is_dir():
        issues.append(ConfigIssue(sub + "/", None, "", "directory not found"))
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            # an editor's lock or backup (Emacs' .#kommun-a.yaml, a symbolic link to nothing) or another hidden
            # file: no configuration, as for the fingerprint (broker.config.summary), and no reason to refuse a reload
            continue
        if p.suffix.lower() == ".yml" or (p.suffix.lower() == ".yaml" and p.suffix != ".yaml"):
            # read by nobody otherwise: a municipality that silently does not exist
            issues.append(ConfigIssue(f"{sub}/{p.name}", None, "", "use the .yaml extension (lower case)"))
        elif p.suffix == ".yaml":
            if not _ID.match(p.stem):
                issues.append(ConfigIssue(f"{sub}/{p.name}", None, "",
                                          "file name must be an id: lower-case letters, digits and '-'"))
            else:
                out.append((p.stem, p))
    return out


def load_settings(config_dir: Path) -> Settings:
    """Load and validate ``config_dir``; raise :class:`ConfigError` listing every problem."""
    config_dir = config_dir.resolve()
    issues: list[ConfigIssue] = []
    if not config_dir.is_dir():
        raise ConfigError([ConfigIssue(str(config_dir), None, "", "configuration directory not found")])

    broker, broker_source = _load(BrokerConfig, config_dir / "broker.yaml", "broker.yaml", config_dir, issues)

    municipalities: dict[str, Municipality] = {}
    domains: list[TrustDomain] = []
    sources: dict[str, YamlSource] = {}
    for mid, path in _files(config_dir, MUNICIPALITIES_DIR, issues):
        display = f"{MUNICIPALITIES_DIR}/{path.name}"
        m, src = _load(MunicipalityConfig, path, display, config_dir, issues)
        if m is not None and src is not None:
            sources[mid] = src
            if m.saml is not None:  # login: saml
                metadata = None
                if m.saml.metadata.file is not None:
                    try:
                        metadata = parse_idp_metadata(m.saml.metadata.file.xml, m.saml.entity_id)
                    except ValueError as exc:
                        issues.append(src.issue(("saml", "metadata", "file"),
                                                f"{m.saml.metadata.file.path}: {exc}"))
                        continue
                municipalities[mid] = Municipality(mid, m, metadata)
                continue
            if m.certificate is None:
                continue
            domain, problems = municipality_domain(mid, m, m.certificate)
            issues.extend(src.issue(path, message) for path, message in problems)
            if domain is not None:
                municipalities[mid] = Municipality(mid, m)
                domains.append(domain)

    # Municipalities are selected by the issuer of the user's certificate. A CA that issues to several
    # municipalities (Efos, SITHS e-id) chooses none by itself: each of them must say where its certificates name
    # its organisation number (certificate.organization_from), or the choice would be ambiguous.
    claimed: dict[bytes, tuple[str, list[tuple[str, KeyPath]]]] = {}
    for mid, mun in municipalities.items():
        cl = mun.config.certificate
        if cl is None:
            continue
        for key, files in (("trust_anchors", cl.trust_anchors), ("intermediates", cl.intermediates)):
            for fi, f in enumerate(files):
                for cert in f.certificates:
                    _, owners = claimed.setdefault(cert.subject.public_bytes(), (cert.subject.rfc4514_string(), []))
                    if mid not in (owner for owner, _ in owners):
                        owners.append((mid, ("certificate", key, fi)))
    differing: set[str] = set()
    for ca, owners in claimed.values():
        if len(owners) < 2:
            continue
        first_id = owners[0][0]
        first = municipalities[first_id].config.certificate
        for mid, where in owners:
            cl = municipalities[mid].config.certificate
            if cl is None or first is None:  # pragma: no cover - only certificate municipalities claim CAs
                continue
            if cl.organization_from == "none":
                co_owners = ", ".join(repr(owner) for owner, _ in owners if owner != mid)
                issues.append(sources[mid].issue(where, (
                    f"CA {ca} also issues to {co_owners}: set certificate.organization_from (hsa_id or "
                    "organization_identifier) in each of them, so that a certificate names its municipality")))
            # the shared CA's status is one answer, cached once for all of them: under one policy
            if mid not in differing and _same_checks(cl.revocation) != _same_checks(first.revocation):
                differing.add(mid)
                issues.append(sources[mid].issue(("certificate", "revocation"), (
                    f"CA {ca} also issues to {first_id!r}, whose revocation settings differ: municipalities "
                    "sharing a CA check its certificates' status the same way; make certificate.revocation the "
                    "same in each")))

    # The organisation number is what SPs receive as the user's organisation (organizationIdentifier,
    # orgAffiliation) and what a municipal IdP's default HSA-id pattern is built from: two municipalities with
    # one number (a copied file not yet edited) would be one organisation to every SP.
    numbered: dict[str, str] = {}
    for mid, mun in sorted(municipalities.items()):
        number = mun.config.organization_number
        if number in numbered:
            issues.append(sources[mid].issue(("organization_number",), f"organisation number {number} is already "
                                             f"municipality {numbered[number]!r}'s; each municipality has its own"))
        else:
            numbered[number] = mid

    # A municipality with its own IdP is the user's choice (discovery), not a fact the IdP asserts: when
    # several municipalities share an IdP (a joint ADFS), each must tell its own users apart, or a user of
    # one could log in as staff of another by choosing it.
    by_idp: dict[str, list[str]] = {}
    for mid, mun in municipalities.items():
        if mun.config.saml is not None:
            by_idp.setdefault(mun.config.saml.entity_id, []).append(mid)
    for entity_id, sharing in by_idp.items():
        if len(sharing) >= 2:
            issues += _shared_idp_issues(entity_id, sorted(sharing), municipalities, sources)

    sps: dict[str, ServiceProvider] = {}
    entity_ids: dict[str, str] = {}
    for sid, path in _files(config_dir, SERVICE_PROVIDERS_DIR, issues):
        display = f"{SERVICE_PROVIDERS_DIR}/{path.name}"
        sp, src = _load(ServiceProviderConfig, path, display, config_dir, issues)
        if src is None:
            continue
        if sp is None:
            # the file's own problems are reported; what it says of the others (its municipalities, its entity ID)
            # is checked as written, so that every problem is reported at once
            raw = src.data if isinstance(src.data, dict) else {}
            listed = raw.get("municipalities")
            _sp_references(sid, src, raw.get("entity_id"), listed if isinstance(listed, list) else [],
                           municipalities, entity_ids, issues)
            continue
        bad = _sp_references(sid, src, sp.entity_id, sp.municipalities, municipalities, entity_ids, issues)
        try:
            meta = parse_sp_metadata(sp.metadata.xml, sp.entity_id)
        except ValueError as exc:
            issues.append(src.issue(("metadata",), f"{sp.metadata.path}: {exc}"))
            continue
        if meta.authn_requests_signed and not meta.signing_certificates:
            issues.append(src.issue(("metadata",), "metadata says AuthnRequestsSigned but holds no signing key"))
            bad = True
        elif sp.require_signed_requests and not meta.signing_certificates:
            # every request would be refused at the SSO endpoint: no key to verify its signature with
            issues.append(src.issue(("require_signed_requests",), f"{sp.metadata.path}: signed requests are "
                                                                   "required but the metadata holds no signing key "
                                                                   "the broker can use"))
            bad = True
        encrypter = None
        if sp.encrypt_assertions:
            try:
                encrypter = encrypter_for(meta.encryption_keys, sp.entity_id)
            except EncryptionUnsupported as exc:
                issues.append(src.issue(("encrypt_assertions",), f"{sp.metadata.path}: {exc}"))
                bad = True
        if not bad:
            sps[sid] = ServiceProvider(sid, sp, meta, encrypter)

    if broker is not None and broker.sp is None:
        for mid, mun in municipalities.items():
            if mun.config.login == "saml":
                issues.append(sources[mid].issue(("login",), "login: saml needs the broker's SP settings: add an "
                                                              "sp section to broker.yaml"))
    if broker is not None and broker_source is not None and broker.idp.entity_id in entity_ids:
        issues.append(broker_source.issue(("idp", "entity_id"),
                                          f"the broker's entity ID is also used by a service provider "
                                          f"({entity_ids[broker.idp.entity_id]!r})"))

    if issues or broker is None:
        issues.sort(key=lambda i: (i.file != "broker.yaml", i.file, i.line or 0))
        raise ConfigError(issues or [ConfigIssue("broker.yaml", None, "", "could not be loaded")])
    return Settings(
        config_dir=config_dir,
        broker=broker,
        municipalities=MappingProxyType(municipalities),
        service_providers=MappingProxyType(sps),
        trust=TrustIndex(domains),
    )
