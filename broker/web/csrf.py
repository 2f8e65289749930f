"""Form tokens against cross-site request forgery on the forms that post to the broker itself.

The one such form is the discovery page's choice (POST /discovery): a forged choice would carry the victim's
browser into a login the attacker started (login CSRF) or plant a remembered municipality. Besides the
Origin / Fetch Metadata check of the endpoint, the form carries a token (OWASP CSRF Prevention Cheat Sheet,
"signed double-submit cookie"):

* the browser holds a random secret (256 bits) in the cookie ``__Host-broker_csrf``: Secure, HttpOnly,
  SameSite=Lax (docs/security.md says why not Strict), Path=/ and no Domain; the ``__Host-`` prefix makes
  browsers refuse the cookie from a sibling subdomain or over plain HTTP (RFC 6265bis §4.1.3.2), so an
  attacker cannot plant a secret of their own;
* the form carries HMAC-SHA256(key, purpose ‖ secret), the key derived with HKDF (RFC 5869) from the
  broker's ``idp.nameid_key`` (shared by every instance, so any instance can check a token another issued);
* the check recomputes the token from the cookie and compares in constant time (``hmac.compare_digest``).

An attacker's page can make the victim's browser post, but can neither read the page's token nor compute one
for the victim's cookie. The SAML forms the broker serves (the auto-submitted HTTP-POST forms toward service
providers and municipal IdPs, the "back to the service" form on error pages, the "continue" form after a
logout) post *to another site* by design: a token would be meaningless to the receiver. Those messages are
protected by their XML signatures, InResponseTo and one-time use, and the municipal IdP's answer also by the
browser-binding cookie (:mod:`broker.flow.upstream`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.errors import RequestRejected
from broker.session.sessions import new_token

COOKIE = "__Host-broker_csrf"
FIELD = "csrf_token"
DISCOVERY = "discovery-choice"  # the purpose bound into the token: a token for one form is not one for another

_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}\Z")  # new_token(): 32 random bytes, URL-safe base64 without padding
_HKDF_INFO = b"broker form-token key v1"


class FormTokens:
    """Issue and check form tokens bound to the browser's secret cookie and to the form's purpose."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a form-token key needs at least 32 bytes")
        self._key = key

    @classmethod
    def derived_from(cls, secret: bytes) -> FormTokens:
        """A key of its own from a configured secret (HKDF-SHA256 with a label of this use only)."""
        return cls(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret))

    @staticmethod
    def new_secret() -> str:
        return new_token()

    @staticmethod
    def usable_secret(value: str | None) -> str | None:
        """The cookie's value if it has the shape of a secret the broker issued, else None."""
        return value if value is not None and _SECRET.fullmatch(value) else None

    def token(self, secret: str, purpose: str) -> str:
        mac = hmac.new(self._key, b"\x00".join([purpose.encode(), secret.encode()]), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def verify(self, cookie: str | None, presented: str | None, purpose: str) -> None:
        """Raise ``csrf_token_invalid`` unless ``presented`` is the token of ``cookie`` for ``purpose``."""
        secret = self.usable_secret(cookie)
        if secret is None:
            raise RequestRejected("csrf_token_invalid", f"no usable {COOKIE} cookie came with the form")
        if not presented:
            raise RequestRejected("csrf_token_invalid", f"the form carried no {FIELD}")
        expected = self.token(secret, purpose)
        if not hmac.compare_digest(expected.encode("ascii"), presented.encode("utf-8", "replace")):
            raise RequestRejected("csrf_token_invalid", f"the form's {FIELD} does not belong to this browser")
