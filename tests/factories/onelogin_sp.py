"""A second, independent SAML SP for interoperability tests: OneLogin's python3-saml (``onelogin.saml2``).

pysaml2 is the broker's own library and the SP of the other flow tests; python3-saml shares no code with it
(its own templates, its own XML-DSig calls into libxmlsec1, its own checks of a Response), so it finds what
pysaml2 and the broker might agree on by accident. The SP is set up as its documentation tells an integrator:

* the IdP side of its settings comes from the broker's published metadata, read by
  ``OneLogin_Saml2_IdPMetadataParser`` (never written by hand); the SP's own ``sp`` and ``security`` sections
  are the integrator's (:func:`settings_from_idp_metadata` says which of the two wins where they overlap);
* the broker learns the SP from the metadata ``OneLogin_Saml2_Settings.get_sp_metadata()`` produces
  (:func:`sp_metadata`), registered as a ``service-providers/`` file like any other SP
  (:func:`register_with_broker`);
* every HTTP request that reaches the SP becomes python3-saml's ``request_data`` dict, built from the URL
  the test browser was sent to or the form it was given (:func:`redirect_request_data`,
  :func:`post_request_data`), exactly as a Flask or Django view would build it from its own request.

Strict mode throughout (``strict: True``); the security section a test varies is :class:`SpPolicy`.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives import serialization
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth  # type: ignore[import-untyped]
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request  # type: ignore[import-untyped]
from onelogin.saml2.constants import OneLogin_Saml2_Constants  # type: ignore[import-untyped]
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser  # type: ignore[import-untyped]
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request  # type: ignore[import-untyped]
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # type: ignore[import-untyped]
from onelogin.saml2.utils import OneLogin_Saml2_Utils  # type: ignore[import-untyped]

from broker.demo.certificates import CertificateAuthority
from tests.factories.sp_files import register_sp

# Another host than the broker's, so that python3-saml's Destination and Recipient checks compare whole URLs.
SP_BASE = "https://samverkan.region.example/onelogin-sp"
SP_ENTITY_ID = SP_BASE + "/metadata"
SP_ACS_URL = SP_BASE + "/acs"
SP_SLO_URL = SP_BASE + "/slo"
SP_LOGIN_URL = SP_BASE + "/login"   # the SP's own page that starts a login (python3-saml's default RelayState)
SP_ID = "onelogin-sp"               # the broker's service-providers/<id>.yaml

PERSISTENT = OneLogin_Saml2_Constants.NAMEID_PERSISTENT
TRANSIENT = OneLogin_Saml2_Constants.NAMEID_TRANSIENT
RSA_SHA256 = OneLogin_Saml2_Constants.RSA_SHA256
SHA256 = OneLogin_Saml2_Constants.SHA256


# --- the SP's key and settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class SpKeys:
    """The SP's RSA key and self-signed certificate (PEM), as its vendor would generate them."""

    key_pem: str
    cert_pem: str

    @classmethod
    def generate(cls, now: dt.datetime) -> SpKeys:
        ca = CertificateAuthority.root("OneLogin SP signing", now, key="rsa2048")
        key = ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
        return cls(key.decode(), ca.certificate.public_bytes(serialization.Encoding.PEM).decode())


@dataclass(frozen=True)
class SpPolicy:
    """The ``security`` section choices the tests vary; the defaults are a strict, SHA-1-free integrator.

    ``requested_authn_context``: False sends no RequestedAuthnContext; a tuple sends those ClassRefs with
    ``comparison``; True is python3-saml's default (PasswordProtectedTransport, exact).
    """

    want_messages_signed: bool = True
    authn_requests_signed: bool = True
    requested_authn_context: tuple[str, ...] | bool = False
    comparison: str = "exact"
    fail_on_authn_context_mismatch: bool = False
    nameid_format: str = PERSISTENT
    sign_logout_messages: bool = True   # the broker refuses unsigned ones (Profiles §4.4.4.1, §4.4.4.2)
    # the SP's metadata then publishes its certificate for encryption too; the broker's file says encrypt
    want_assertions_encrypted: bool = False

    def security(self) -> dict[str, Any]:
        requested: list[str] | bool = (list(self.requested_authn_context)
                                       if isinstance(self.requested_authn_context, tuple)
                                       else self.requested_authn_context)
        return {
            "authnRequestsSigned": self.authn_requests_signed,
            "logoutRequestSigned": self.sign_logout_messages,
            "logoutResponseSigned": self.sign_logout_messages,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": self.want_messages_signed,
            "wantAssertionsEncrypted": self.want_assertions_encrypted,
            "wantNameId": True,
            "wantAttributeStatement": True,
            "signatureAlgorithm": RSA_SHA256,
            "digestAlgorithm": SHA256,
            "rejectDeprecatedAlgorithm": True,  # SHA-1 signatures and digests are refused
            "requestedAuthnContext": requested,
            "requestedAuthnContextComparison": self.comparison,
            "failOnAuthnContextMismatch": self.fail_on_authn_context_mismatch,
            "signMetadata": False,
        }


def own_settings(keys: SpKeys, policy: SpPolicy) -> dict[str, Any]:
    """The integrator's part of the settings: strict mode, the SP's endpoints and key, the security policy."""
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": SP_ENTITY_ID,
            "assertionConsumerService": {"url": SP_ACS_URL, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
            "singleLogoutService": {"url": SP_SLO_URL, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
            "NameIDFormat": policy.nameid_format,
            "x509cert": keys.cert_pem,
            "privateKey": keys.key_pem,
        },
        "security": policy.security(),
    }


def sp_metadata(keys: SpKeys, policy: SpPolicy) -> bytes:
    """The SP's metadata from ``get_sp_metadata()``, checked by python3-saml's own ``validate_metadata``."""
    settings = OneLogin_Saml2_Settings(own_settings(keys, policy), sp_validation_only=True)
    metadata = settings.get_sp_metadata()
    errors = settings.validate_metadata(metadata)
    assert not errors, f"python3-saml finds its own metadata invalid: {errors}"
    return metadata if isinstance(metadata, bytes) else str(metadata).encode()


def register_with_broker(config_dir: Path, metadata: bytes, *, sign_response: bool, encrypt_assertions: bool = False,
                         municipalities: tuple[str, ...] = ("kommun-a", "kommun-b"),
                         release: tuple[str, ...] = ("employeeHsaId", "personalIdentityNumber", "givenName", "sn",
                                                     "displayName")) -> Path:
    """The SP's metadata file and its ``service-providers/onelogin-sp.yaml``."""
    return register_sp(config_dir, SP_ID, entity_id=SP_ENTITY_ID, name="Samverkanstjänsten (python3-saml)",
                       metadata=metadata, municipalities=list(municipalities), release=list(release),
                       nameid_formats=["persistent", "transient"], sign_response=sign_response,
                       encrypt_assertions=encrypt_assertions)


def settings_from_idp_metadata(idp_metadata: bytes, keys: SpKeys, policy: SpPolicy, *,
                               metadata_wins: bool = False) -> OneLogin_Saml2_Settings:
    """python3-saml's settings: the ``idp`` section parsed from the broker's metadata (HTTP-Redirect SSO and
    SLO endpoints, the signing certificate) and the SP's own ``sp`` and ``security`` sections.

    ``merge_settings(settings, new)`` lets ``new`` win; python3-saml means it to "update the settings with the
    data extracted from the IdP metadata" (``metadata_wins``), and the parser also turns the IdP's
    WantAuthnRequestsSigned into ``security.authnRequestsSigned`` and its first NameIDFormat into
    ``sp.NameIDFormat``. That order is the integrator's default (test_interop_onelogin's
    ``test_sp_set_up_as_python3_saml_intends_signs_its_requests``); the other tests vary exactly those choices
    (unsigned requests, the transient format) through ``policy``, so by default the SP's own settings are
    merged over the metadata's, as an integrator does who sets them on purpose.
    """
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(idp_metadata)
    own = own_settings(keys, policy)
    merge = OneLogin_Saml2_IdPMetadataParser.merge_settings
    return OneLogin_Saml2_Settings(merge(own, parsed) if metadata_wins else merge(parsed, own))


# --- python3-saml's request_data --------------------------------------------------------------------


def _base(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    # http_host carries the port when there is one (python3-saml's server_port key is deprecated and warns)
    return {"https": "on" if parts.scheme == "https" else "off", "http_host": parts.netloc,
            "script_name": parts.path}


def page_request_data(url: str) -> dict[str, Any]:
    """A plain GET of one of the SP's own pages (e.g. its login page)."""
    return {**_base(url), "get_data": {}, "post_data": {}}


def redirect_request_data(location: str, *, raw_query: bool = True) -> dict[str, Any]:
    """A GET that arrives at the SP with an HTTP-Redirect message (the broker's 303 Location).

    ``raw_query``: python3-saml checks the query signature over the raw query string as it arrived
    (``validate_signature_from_qs``), as SAML Bindings §3.4.4.1 requires of the receiver; without it,
    python3-saml re-encodes the decoded values with ``quote_plus`` and verifies that, which agrees with the
    sender only when both encode alike (python3-saml's own default, kept for the cases that show the broker's
    encoding agrees with it).
    """
    parts = urlsplit(location)
    data = {**_base(location), "get_data": dict(parse_qsl(parts.query, keep_blank_values=True)), "post_data": {}}
    if raw_query:
        data["query_string"] = parts.query
        data["validate_signature_from_qs"] = True
    return data


def post_request_data(action: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """A POST of an auto-submitted form (HTTP-POST binding) to ``action``."""
    return {**_base(action), "get_data": {}, "post_data": dict(fields)}


# --- the SP ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentRequest:
    """A request the SP sent: its ID, its XML, and how it travels (a Redirect URL, or POST form fields)."""

    request_id: str
    xml: bytes
    url: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> etree._Element:
        return etree.fromstring(self.xml)


@dataclass(frozen=True)
class SloAnswer:
    """What python3-saml made of a logout message at its SLO endpoint: the Auth (errors, last request or
    response) and, for a LogoutRequest, the URL of its LogoutResponse."""

    auth: OneLogin_Saml2_Auth
    redirect: str | None
    session_deleted: bool      # python3-saml called the application's delete-session callback


class OneLoginSp:
    """One python3-saml SP. Each call is one HTTP request at the SP: a fresh ``OneLogin_Saml2_Auth`` with that
    request's data, sharing the one settings object, as a web application would."""

    def __init__(self, settings: OneLogin_Saml2_Settings) -> None:
        self.settings = settings

    def auth(self, request_data: dict[str, Any]) -> OneLogin_Saml2_Auth:
        return OneLogin_Saml2_Auth(request_data, old_settings=self.settings)

    def login(self, *, relay_state: str | None = None, force_authn: bool = False, is_passive: bool = False,
              subject: str | None = None) -> SentRequest:
        """``login()`` at the SP's login page: the signed HTTP-Redirect URL to the broker's SSO endpoint.
        Without ``relay_state`` python3-saml sends the login page's own URL; ``subject`` asks for that NameID
        (python3-saml's ``name_id_value_req``: a Subject in the AuthnRequest)."""
        auth = self.auth(page_request_data(SP_LOGIN_URL))
        url = auth.login(return_to=relay_state, force_authn=force_authn, is_passive=is_passive,
                         name_id_value_req=subject)
        return SentRequest(str(auth.get_last_request_id()), str(auth.get_last_request_xml()).encode(), str(url))

    def login_post(self, *, relay_state: str | None = None) -> SentRequest:
        """An AuthnRequest for the HTTP-POST binding (Bindings §3.5), which ``login()`` does not offer:
        python3-saml's own AuthnRequest with an enveloped signature by its ``add_sign``."""
        request = OneLogin_Saml2_Authn_Request(self.settings)
        return self._posted(request.get_id(), request.get_xml(), self.settings.get_idp_sso_url(), relay_state)

    def logout_post(self, *, name_id: str, session_index: str | None, name_id_format: str | None = None,
                    relay_state: str | None = None) -> SentRequest:
        """A LogoutRequest for the HTTP-POST binding, signed by python3-saml's ``add_sign``."""
        request = OneLogin_Saml2_Logout_Request(self.settings, name_id=name_id, session_index=session_index,
                                                name_id_format=name_id_format)
        return self._posted(request.id, request.get_xml(), self.settings.get_idp_slo_url(), relay_state)

    def _posted(self, request_id: Any, xml: Any, url: Any, relay_state: str | None) -> SentRequest:
        """An enveloped signature by python3-saml's ``add_sign`` (libxmlsec1: RSA-SHA256, SHA-256 digest,
        exclusive C14N, after the Issuer) and the form fields of the HTTP-POST binding."""
        sp = self.settings.get_sp_data()
        signed = OneLogin_Saml2_Utils.add_sign(xml, sp["privateKey"], sp["x509cert"], sign_algorithm=RSA_SHA256,
                                               digest_algorithm=SHA256)
        data = signed if isinstance(signed, bytes) else str(signed).encode()
        fields = {"SAMLRequest": base64.b64encode(data).decode()}
        if relay_state is not None:
            fields["RelayState"] = relay_state
        return SentRequest(str(request_id), data, str(url), fields)

    def acs(self, action: str, fields: Mapping[str, str], request_id: str) -> OneLogin_Saml2_Auth:
        """The broker's auto-submitted Response, posted to ``action``: ``process_response`` for ``request_id``."""
        auth = self.auth(post_request_data(action, fields))
        auth.process_response(request_id=request_id)
        return auth

    def logout(self, *, name_id: str | None, session_index: str | None, name_id_format: str | None = None,
               nq: str | None = None, spnq: str | None = None, relay_state: str | None = None) -> SentRequest:
        """``logout()``: the signed HTTP-Redirect LogoutRequest URL to the broker's SLO endpoint."""
        auth = self.auth(page_request_data(SP_BASE + "/logout"))
        url = auth.logout(return_to=relay_state, name_id=name_id, session_index=session_index, nq=nq,
                          name_id_format=name_id_format, spnq=spnq)
        return SentRequest(str(auth.get_last_request_id()), str(auth.get_last_request_xml()).encode(), str(url))

    def slo(self, location: str, *, request_id: str | None = None, raw_query: bool = True) -> SloAnswer:
        """``process_slo`` on what arrived at the SP's SLO endpoint (``location``: the broker's 303 target)."""
        ended: list[bool] = []
        auth = self.auth(redirect_request_data(location, raw_query=raw_query))
        redirect = auth.process_slo(request_id=request_id, delete_session_cb=lambda: ended.append(True))
        return SloAnswer(auth, str(redirect) if redirect is not None else None, bool(ended))


def logout_request_fields(xml: str | bytes) -> tuple[str | None, str | None, list[str]]:
    """(NameID, its Format, SessionIndexes) of a LogoutRequest, read by python3-saml's own accessors."""
    data = OneLogin_Saml2_Logout_Request.get_nameid_data(xml)
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(xml)
    return data.get("Value"), data.get("Format"), [str(i) for i in indexes]


def certificate_body(pem: bytes | str) -> str:
    """The base64 body of a PEM certificate, as python3-saml keeps ``x509cert`` after parsing metadata."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    return "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
