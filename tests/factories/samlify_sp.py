"""samlify (Node.js) as a regional SAML service provider of the broker: an implementation independent of pysaml2,
libxmlsec1 and lxml, for interoperability tests of the broker's IdP side (tests/flows/test_interop_samlify_sp.py).

:class:`SamlifySp` runs ``tests/peers/samlify/sp.js`` with ``node`` on a free loopback port (the script listens on
port 0 and reports the one it got) and talks to it over HTTP, as the SP's operator and as the browser:

* the operator: :meth:`SamlifySp.metadata` (samlify's own SP metadata, around keys the test makes: RSA-2048 for
  signing and for encryption), :meth:`SamlifySp.configure` (the broker's IdP metadata, and the SP's choices of
  :class:`SpPolicy`); :func:`register_with_broker` writes the SP into the broker's configuration;
* the browser: :meth:`SamlifySp.login_request` and :meth:`SamlifySp.logout_request` give the signed messages samlify
  sends to the broker; :meth:`SamlifySp.acs` and :meth:`SamlifySp.slo` take the broker's messages to samlify and
  return what samlify made of them.

The SP's public URLs are under :data:`SP_BASE` (https, as behind its TLS proxy); :meth:`SamlifySp.slo` and
:meth:`SamlifySp.acs` carry a message for such a URL to the loopback server, as that proxy would. What samlify
refuses comes back as :class:`SamlifyRefused` with samlify's error. Without Node.js or the packages of
``tests/peers/samlify/package-lock.json`` the tests fail with the command that installs them, never a skip (the
checks are samlify_peer's).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lxml import etree

from tests.factories.samlify_idp import Binding, Delivery, FormPost, logout_request_at
from tests.factories.samlify_peer import PEER_DIR, Answer, KeyFiles, NodePeer
from tests.factories.sp_files import register_sp

SP_BASE = "https://samordning.region.example/samlify-sp"   # the SP's public URL (its TLS proxy's)
SP_ENTITY_ID = SP_BASE + "/metadata"
SP_ACS_URL = SP_BASE + "/acs"
SP_SLO_URL = SP_BASE + "/slo"
SP_ID = "samlify-sp"                                         # the broker's service-providers/<id>.yaml

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"



# --- keys and policy --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpKeys:
    """The SP's signing key (AuthnRequests, logout messages) and its encryption key (EncryptedAssertions)."""

    signing: KeyFiles
    encryption: KeyFiles

    @classmethod
    def generate(cls, directory: Path, now: dt.datetime) -> SpKeys:
        return cls(KeyFiles.generate(directory, "sp-signing", "Samordning SP signing (samlify)", now),
                   KeyFiles.generate(directory, "sp-encryption", "Samordning SP encryption (samlify)", now))


@dataclass(frozen=True)
class SpPolicy:
    """What a test chooses on both sides: samlify's settings and the broker's file for the SP.

    ``want_message_signed``: samlify's ``wantMessageSigned``; ``sign_response``: the broker's. ``encrypted``: samlify's
    ``isAssertionEncrypted`` and the broker's ``encrypt_assertions``. ``encryption_methods``: EncryptionMethods the
    operator adds to the encryption KeyDescriptor of the broker's copy of samlify's metadata (samlify's generator
    cannot list any).
    """

    sign_response: bool = False
    want_message_signed: bool = False
    encrypted: bool = False
    encryption_methods: tuple[str, ...] = ()


# --- the SP's metadata in the broker's configuration ------------------------------------------------------------


def with_encryption_methods(metadata: bytes, methods: tuple[str, ...]) -> bytes:
    """``metadata`` with ``methods`` as md:EncryptionMethod children of its encryption KeyDescriptor (SAML Metadata
    §2.4.1.1: after ds:KeyInfo), as an operator edits the file samlify produced."""
    if not methods:
        return metadata
    root = etree.fromstring(metadata)
    descriptors = root.findall(f".//{{{MD}}}KeyDescriptor[@use='encryption']")
    assert len(descriptors) == 1, f"expected one encryption KeyDescriptor, found {len(descriptors)}"
    for method in methods:
        etree.SubElement(descriptors[0], f"{{{MD}}}EncryptionMethod", Algorithm=method)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def register_with_broker(config_dir: Path, metadata: bytes, policy: SpPolicy, *,
                         municipalities: tuple[str, ...] = ("kommun-a", "kommun-b"),
                         release: tuple[str, ...] = ("employeeHsaId", "personalIdentityNumber", "givenName", "sn",
                                                     "displayName")) -> Path:
    """The SP's metadata file (with ``policy``'s EncryptionMethods) and its ``service-providers/samlify-sp.yaml``."""
    return register_sp(config_dir, SP_ID, entity_id=SP_ENTITY_ID, name="Samordningstjänsten (samlify)",
                       metadata=with_encryption_methods(metadata, policy.encryption_methods),
                       municipalities=list(municipalities), release=list(release),
                       nameid_formats=["persistent", "transient"], sign_response=policy.sign_response,
                       encrypt_assertions=policy.encrypted)


# --- what samlify sent and saw -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A request samlify made: its ID and how it travels (a Redirect URL, or an HTTP-POST form)."""

    request_id: str
    delivery: Delivery


@dataclass(frozen=True)
class AuthnContext:
    """RequestedAuthnContext (SAML Core §3.3.2.2.1): ClassRefs and Comparison."""

    class_refs: tuple[str, ...]
    comparison: str = "exact"


@dataclass(frozen=True)
class Login:
    """What samlify's ``parseLoginResponse`` extracted from the broker's Response (its loginResponseFields), plus
    the NameID Format, AuthnContextClassRef and SubjectConfirmationData that sp.js reads with samlify's Extractor."""

    extract: dict[str, Any]

    @property
    def name_id(self) -> str:
        return str(self.extract["nameID"])

    @property
    def name_id_format(self) -> str:
        return str(self.extract["nameIDFormat"])

    @property
    def session_index(self) -> str:
        return str(self.extract["sessionIndex"]["sessionIndex"])

    @property
    def authn_context_class_ref(self) -> str:
        return str(self.extract["authnContextClassRef"])

    @property
    def attributes(self) -> dict[str, str | list[str]]:
        """By Name; samlify gives a single value as a string, several as a list."""
        found: dict[str, str | list[str]] = self.extract["attributes"]
        return found

    @property
    def in_response_to(self) -> str:
        return str(self.extract["response"]["inResponseTo"])


def _delivery(made: dict[str, Any]) -> Delivery:
    if made["binding"] == "redirect":
        return str(made["url"])
    return FormPost(str(made["action"]), {k: str(v) for k, v in made["fields"].items()})


# --- the peer ------------------------------------------------------------------------------------------------------


class SamlifySp(NodePeer):
    """``node sp.js`` on 127.0.0.1 (a free port), as the SP :data:`SP_ENTITY_ID` with ``keys``."""

    script = PEER_DIR / "sp.js"

    def __init__(self, workdir: Path, keys: SpKeys, start_timeout: float = 60.0) -> None:
        super().__init__(workdir, start_timeout)
        self.keys = keys

    def arguments(self) -> list[str]:
        return ["--entity-id", SP_ENTITY_ID, "--base-url", SP_BASE,
                "--signing-key", str(self.keys.signing.key_file), "--signing-cert", str(self.keys.signing.cert_file),
                "--encryption-key", str(self.keys.encryption.key_file),
                "--encryption-cert", str(self.keys.encryption.cert_file)]

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _request(self, method: str, target: str, body: bytes | None = None,
                 content_type: str | None = None) -> Answer:
        """``target``: a path with its query, or a URL under :data:`SP_BASE` (the SP's proxy passes it on)."""
        if target.startswith(SP_BASE + "/"):
            target = target[len(SP_BASE):]
        assert target.startswith("/"), f"{target} is not this SP's"
        return self.exchange(method, target, body, content_type)

    def _json(self, path: str, document: dict[str, Any]) -> Answer:
        return self._request("POST", path, json.dumps(document).encode(), "application/json")

    # --- the operator ---------------------------------------------------------------------------------------

    def metadata(self) -> bytes:
        """samlify's SP metadata (ServiceProvider.getMetadata): AuthnRequestsSigned, WantAssertionsSigned, a
        signing and an encryption certificate, the HTTP-POST ACS, SLO for HTTP-Redirect and HTTP-POST."""
        answer = self._request("GET", "/metadata")
        answer.refused_unless(200)
        return answer.body

    def configure(self, idp_metadata: bytes, policy: SpPolicy) -> dict[str, Any]:
        """Trust the IdP of ``idp_metadata`` and set samlify's side of ``policy``; what samlify read from the
        metadata. Forgets every pending request."""
        answer = self._json("/configure", {"idp_metadata": idp_metadata.decode(),
                                           "want_message_signed": policy.want_message_signed,
                                           "assertion_encrypted": policy.encrypted})
        answer.refused_unless(200)
        return answer.json

    # --- samlify sends ----------------------------------------------------------------------------------------

    def login_request(self, binding: Binding = "redirect", *, relay_state: str | None = None,
                      is_passive: bool = False, force_authn: bool = False, name_id_format: str | None = None,
                      authn_context: AuthnContext | None = None) -> Sent:
        """samlify's signed AuthnRequest (``createLoginRequest``): samlify's own template, or, for IsPassive,
        ForceAuthn, a NameIDPolicy Format or a RequestedAuthnContext, sp.js's template filled by samlify."""
        wanted: dict[str, Any] = {"binding": binding, "relay_state": relay_state, "is_passive": is_passive,
                                  "force_authn": force_authn, "name_id_format": name_id_format}
        if authn_context is not None:
            wanted["authn_context"] = {"class_refs": list(authn_context.class_refs),
                                       "comparison": authn_context.comparison}
        answer = self._json("/login-requests", wanted)
        answer.refused_unless(200)
        made = answer.json
        return Sent(str(made["id"]), _delivery(made))

    def logout_request(self, login: Login, binding: Binding = "redirect", *, relay_state: str = "",
                       session_index: bool = True) -> Sent:
        """samlify's signed LogoutRequest (``createLogoutRequest``) for the user of ``login``."""
        answer = self._json("/logout-requests", {
            "name_id": login.name_id, "session_index": login.session_index if session_index else None,
            "binding": binding, "relay_state": relay_state})
        answer.refused_unless(200)
        made = answer.json
        return Sent(str(made["id"]), _delivery(made))

    # --- samlify receives --------------------------------------------------------------------------------------

    def acs(self, post: FormPost) -> Login:
        """The broker's auto-submitted Response at the SP's ACS: ``parseLoginResponse``, then the application's
        checks (Destination, Audience, SubjectConfirmationData, InResponseTo of a pending request, once)."""
        answer = self._request("POST", post.action, urlencode(post.fields).encode(),
                               "application/x-www-form-urlencoded")
        answer.refused_unless(200)
        return Login(answer.json)

    def slo(self, sent: Delivery, *, reply: Binding = "redirect") -> tuple[Delivery, dict[str, Any]]:
        """The broker's LogoutRequest at the SP's SLO endpoint: samlify's LogoutResponse (the URL of its 303, or its
        form with ``reply="post"``) and what samlify read from the request once verified."""
        return logout_request_at(self._request, sent, reply)

    def logout_response(self, sent: Delivery) -> dict[str, Any]:
        """The broker's LogoutResponse at the SP's SLO endpoint: what samlify read from it once verified."""
        if isinstance(sent, FormPost):
            answer = self._request("POST", sent.action, urlencode(sent.fields).encode(),
                                   "application/x-www-form-urlencoded")
        else:
            answer = self._request("GET", sent)
        answer.refused_unless(200)
        return answer.extract

