"""OCSP requests and the verification of responses (RFC 6960). Pure: bytes in, verified answer out.

A response is accepted only if (RFC 6960 §3.2, §4.2.2.2):

* its status is ``successful`` and it parses;
* it is signed by the issuing CA itself, or by a delegated responder whose
  certificate is included, was issued directly by that same CA (signed with
  SHA-256 or stronger), carries id-kp-OCSPSigning, has a KeyUsage (if any)
  with digitalSignature, no
  critical extension the broker does not process, and is valid now; the
  signature uses SHA-256 or stronger;
* at least one SingleResponse covers exactly the certificate asked about
  (serial and the issuer's name and key hashes, in whatever hash algorithm);
  when several do (RFC 6960 §4.2.2.3 allows more entries than were asked
  for), any "revoked" one decides (one revoked for good before one on hold), else
  the freshest "good" one, else the freshest "unknown" one;
* the deciding entry's thisUpdate is not in the future and its nextUpdate not
  in the past (both with the configured clock skew) nor before its thisUpdate; without nextUpdate the
  answer counts as fresh only for a short configured age;
* when a nonce was sent and is required, the same nonce comes back.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, OCSPExtensionOID

from broker.errors import CertificateRejected
from broker.lru import by_identity
from broker.pki.algorithms import weak_key_reason, weak_signature_reason
from broker.pki.der import SEQUENCE, der_items

Status = Literal["good", "revoked", "unknown"]
_STRONG = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
_UNAVAILABLE_STATUSES = (ocsp.OCSPResponseStatus.TRY_LATER, ocsp.OCSPResponseStatus.INTERNAL_ERROR)
_LAST_INSTANT = dt.datetime.max.replace(tzinfo=dt.UTC)

# The critical extensions a delegated responder's certificate may carry. RFC 5280 §4.2: a certificate with a
# critical extension the relying party does not recognise, or cannot process, MUST be rejected. Each one here is
# either processed by _check_delegate or cannot narrow what the key may sign:
_DELEGATE_CRITICAL_EXTENSIONS: frozenset[x509.ObjectIdentifier] = frozenset({
    ExtensionOID.KEY_USAGE,                 # processed: digitalSignature is required (RFC 5280 §4.2.1.3)
    ExtensionOID.EXTENDED_KEY_USAGE,        # processed: id-kp-OCSPSigning is required (RFC 6960 §4.2.2.2)
    ExtensionOID.BASIC_CONSTRAINTS,         # limits certificate issuing only, which a responder key is not used
                                            # for here; often critical in end-entity certificates (RFC 5280 §4.2.1.9)
    ExtensionOID.OCSP_NO_CHECK,             # "do not check this responder's revocation" (RFC 6960 §4.2.2.2.1),
                                            # which is what the broker does for every delegate
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,    # identifiers only; RFC 5280 §4.2.1.1/§4.2.1.2 want them non-critical,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,  # but marked critical they still restrict nothing
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,  # names only; critical when the subject is empty (RFC 5280 §4.2.1.6)
})
# Deliberately absent: certificatePolicies. Marked critical it obliges the relying party to interpret the policies
# and their qualifiers (RFC 5280 §4.2.1.4), and no policy processing is done for a responder's certificate. Any
# other critical extension (name or policy constraints, private key usage period, unknown OIDs ...) is refused.


@dataclass(frozen=True)
class OcspAnswer:
    """A verified answer about one certificate."""

    status: Status
    this_update: dt.datetime
    next_update: dt.datetime | None
    produced_at: dt.datetime
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    responder: str
    # a delegated responder's certificate without id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): its own status is
    # for the caller's policy to check; None when the CA signed, or the delegate is exempt
    unchecked_delegate: x509.Certificate | None = None

    @property
    def final(self) -> bool:
        """Revoked for good: revocation is final (RFC 5280 §3.3), only a certificateHold may be lifted, so the
        answer goes on saying so once it is no longer fresh."""
        return self.status == "revoked" and self.revocation_reason != x509.ReasonFlags.certificate_hold.name


def build_request(cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None,
                  cert_id_hash: Literal["sha1", "sha256"]) -> bytes:
    """A DER OCSPRequest for ``cert``. SHA-1 in the CertID is only an identifier (RFC 6960 §4.1.1), which
    most responders still require; it is not a signature."""
    # SHA-1 here names the certificate in the request; it protects nothing
    algorithm: hashes.SHA1 | hashes.SHA256 = (
        hashes.SHA1() if cert_id_hash == "sha1" else hashes.SHA256()  # noqa: S303
    )
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


# RFC 5019 §5: a request whose GET URL (scheme, host, path and the encoded request) is at most this long goes by GET
GET_URL_MAX_BYTES = 255


def get_url(responder: str, request: bytes) -> str | None:
    """The URL asking ``responder`` for ``request`` (a DER OCSPRequest) by GET (RFC 6960 Appendix A.1: "{url}/{url-
    encoding of base-64 encoding of the DER encoding of the OCSPRequest}"), or None when it would be longer than
    :data:`GET_URL_MAX_BYTES` (RFC 5019 §5: POST then) or the responder's URL carries a query or fragment, after
    which no path can be appended. The responder's path is kept; a trailing "/" is not doubled."""
    parts = urlsplit(responder)
    if parts.query or parts.fragment or responder.endswith(("?", "#")):
        return None
    # standard base64, its "+", "/" and "=" percent-encoded (RFC 3986 §2.1), as A.1 asks
    encoded = quote(base64.b64encode(request).decode("ascii"), safe="")
    url = responder.rstrip("/") + "/" + encoded
    return url if len(url.encode()) <= GET_URL_MAX_BYTES else None


@by_identity(16384)
def responder_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """OCSP responder URLs from the certificate's Authority Information Access (RFC 5280 §4.2.2.1)."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(
        d.access_location.value
        for d in aia
        if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
        and d.access_location.value.lower().startswith(("http://", "https://"))
    )


def _cert_id_hashes(cert: x509.Certificate, issuer: x509.Certificate,
                    algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of the CertID for ``cert`` (RFC 6960 §4.1.1), as cryptography computes
    them for a request: no hand-rolled DER."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()
    return request.issuer_name_hash, request.issuer_key_hash


def _invalid(detail: str) -> CertificateRejected:
    return CertificateRejected("revocation_response_invalid", detail)


def _verify_signature(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    try:
        algorithm = response.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise _invalid(f"unsupported signature algorithm {response.signature_algorithm_oid.dotted_string}") from None
    key = signer.public_key()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(response.signature, response.tbs_response_bytes)
            return
        if not isinstance(algorithm, _STRONG):
            name = algorithm.name if algorithm else "none"
            raise _invalid(f"the response is signed with {name}; SHA-256 or stronger is required")
        if isinstance(key, rsa.RSAPublicKey):
            if response.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS:
                raise _invalid("RSASSA-PSS signed OCSP responses are not supported")
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            raise _invalid(f"unsupported responder key type {type(key).__name__}")
    except InvalidSignature:
        raise _invalid("the response's signature does not verify") from None


def _check_delegate(candidate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
                    skew: dt.timedelta) -> str:
    """Refuse ``candidate`` as a delegated responder for ``issuer``'s certificates unless it is one
    (RFC 6960 §4.2.2.2; RFC 5280 §4.2, §4.2.1.3); return how the answer names it.

    RFC 6960 does not require the delegate not to be a CA (basicConstraints cA), so that is not checked.
    """
    who = candidate.subject.rfc4514_string()
    if candidate.issuer != issuer.subject:
        raise _invalid(f"delegated responder {who} is not issued by the certificate's CA")
    try:
        candidate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise _invalid(f"delegated responder {who} is not signed by the certificate's CA") from None
    # the CA's signature on it is what makes the delegate's key speak for the CA: held to the floor of the path's
    # signatures (cryptography's check above accepts SHA-1 under RSASSA-PSS, RFC 4055 §3.1)
    weak = weak_signature_reason(candidate)
    if weak is not None:
        raise _invalid(f"delegated responder {who}: its certificate is {weak}")
    try:
        extensions = candidate.extensions
    except (ValueError, x509.DuplicateExtension) as exc:  # malformed, or duplicate (no ValueError in cryptography)
        raise _invalid(f"delegated responder {who} has unreadable extensions ({exc})") from None
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise _invalid(f"delegated responder {who} lacks id-kp-OCSPSigning")
    for extension in extensions:
        if extension.critical and extension.oid not in _DELEGATE_CRITICAL_EXTENSIONS:
            raise _invalid(f"delegated responder {who} carries critical extension {extension.oid.dotted_string}, "
                           "which the broker does not process")
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    # the response's signature is neither on a certificate nor on a CRL: digitalSignature (RFC 5280 §4.2.1.3);
    # nonRepudiation (contentCommitment) alone marks a key for another service
    if key_usage is not None and not key_usage.digital_signature:
        raise _invalid(f"delegated responder {who} has a KeyUsage without digitalSignature")
    # the skew moves "now", never the certificate's times: notAfter 99991231235959Z ("no well-defined expiration
    # date", RFC 5280 §4.1.2.5) plus a skew is past the last instant a datetime holds
    if not (candidate.not_valid_before_utc <= now + skew and now - skew <= candidate.not_valid_after_utc):
        raise _invalid(f"delegated responder certificate {who} is not valid now")
    # the key that says "good" is held to the floor every CA key of a path meets (RSA 2048, P-256 and up)
    weak = weak_key_reason(candidate)
    if weak is not None:
        raise _invalid(f"delegated responder {who} has a key too weak to trust: {weak}")
    return f"delegated responder {who}"


def _check_critical_extensions(response: ocsp.OCSPResponse) -> None:
    """RFC 6960 §4.4: an extension may be ignored only when it is not critical. The broker processes the nonce
    (§4.4.1) and nothing else, so any other critical extension of the response, or of any of its
    SingleResponses, refuses the answer. cryptography reads a SingleResponse's extensions only when the response
    holds one, so those of each entry are read from the signed ResponseData (:func:`_single_extension_oids`)."""
    try:
        found = [(e.oid.dotted_string, e.critical) for e in response.extensions]
    except (ValueError, x509.DuplicateExtension) as exc:  # malformed, or duplicate (no ValueError in cryptography)
        raise _invalid(f"the response has unreadable extensions ({exc})") from None
    try:
        found += _single_extension_oids(response.tbs_response_bytes)
    except ValueError as exc:
        raise _invalid(f"the response's entries cannot be read ({exc})") from None
    for oid, critical in found:
        if critical and oid != OCSPExtensionOID.NONCE.dotted_string:
            raise _invalid(f"the response carries critical extension {oid}, which the broker does not process")


def _single_extension_oids(response_data: bytes) -> list[tuple[str, bool]]:
    """(OID, critical) of every singleExtensions entry of every SingleResponse in a DER ResponseData (RFC 6960
    §4.2.1). Structure only: the bytes were parsed and their signature verified by cryptography before this; any
    deviation from DER's shape raises ValueError and refuses the response."""
    (tag, start, end), = der_items(response_data)
    if tag != SEQUENCE:
        raise ValueError("ResponseData is not a SEQUENCE")
    fields = der_items(response_data, start, end)
    # version [0]?, responderID [1]|[2], producedAt, responses, responseExtensions [1]?: the responses follow
    # producedAt (a GeneralizedTime), which tells the byName responderID [1] from the extensions [1]
    produced = next((i for i, (t, _, _) in enumerate(fields) if t == 0x18), None)
    if produced is None or produced + 1 >= len(fields) or fields[produced + 1][0] != SEQUENCE:
        raise ValueError("no responses after producedAt")
    found: list[tuple[str, bool]] = []
    _, rstart, rend = fields[produced + 1]
    for single_tag, sstart, send in der_items(response_data, rstart, rend):
        if single_tag != SEQUENCE:
            raise ValueError("a SingleResponse is not a SEQUENCE")
        # certID, certStatus, thisUpdate, nextUpdate [0]?, singleExtensions [1]?
        for tag, estart, eend in der_items(response_data, sstart, send)[3:]:
            if tag != 0xA1:
                continue
            (seq_tag, xstart, xend), = der_items(response_data, estart, eend)
            if seq_tag != SEQUENCE:
                raise ValueError("singleExtensions is not a SEQUENCE")
            for ext_tag, fstart, fend in der_items(response_data, xstart, xend):
                parts = der_items(response_data, fstart, fend)
                if ext_tag != SEQUENCE or not parts or parts[0][0] != 0x06:
                    raise ValueError("an extension is not a SEQUENCE starting with its OID")
                critical = len(parts) == 3 and parts[1][0] == 0x01 and response_data[parts[1][1]:parts[1][2]] != b"\x00"
                found.append((_oid_text(response_data[parts[0][1]:parts[0][2]]), critical))
    return found


def _oid_text(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets (X.690 §8.19)."""
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or content[-1] & 0x80:
        raise ValueError("malformed OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime,
            skew: dt.timedelta) -> tuple[x509.Certificate, str]:
    """The certificate whose key must have signed ``response`` (RFC 6960 §4.2.2.2)."""
    issuer_key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    if response.responder_key_hash == issuer_key_hash or response.responder_name == issuer.subject:
        return issuer, "the issuing CA"
    candidates = [candidate for candidate in response.certificates if _names_responder(response, candidate)]
    if not candidates:
        raise _invalid("the response is signed by neither the issuing CA nor an authorised responder")
    # a name is no key: a responder named byName may send another certificate of its name beside its own (its
    # previous one, across a renewal); the one whose key made the signature is the signer (RFC 6960 §4.2.1)
    signer = candidates[0] if len(candidates) == 1 else next(
        (candidate for candidate in candidates if _signed_with(response, candidate)), candidates[0])
    return signer, _check_delegate(signer, issuer, now, skew)


def _names_responder(response: ocsp.OCSPResponse, candidate: x509.Certificate) -> bool:
    """Whether the response's ResponderID (RFC 6960 §4.2.1: byName, or byKey) names ``candidate``."""
    if response.responder_name is not None:
        return response.responder_name == candidate.subject
    by_key = _key_hash(candidate)
    return by_key is not None and response.responder_key_hash == by_key


def _signed_with(response: ocsp.OCSPResponse, candidate: x509.Certificate) -> bool:
    """Whether ``candidate``'s key verifies the response's signature (False when that key cannot be read: the
    response's certs lie outside its signed data, :func:`_key_hash`)."""
    try:
        _verify_signature(response, candidate)
    except (CertificateRejected, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _key_hash(cert: x509.Certificate) -> bytes | None:
    """The KeyHash a responder ID byKey gives for ``cert`` (RFC 6960 §4.2.1: SHA-1 of its subjectPublicKey), or None
    when its public key cannot be read (an algorithm or curve cryptography does not know). The response's certs
    lie outside the signed ResponseData, so anyone on the way from the responder can put such a certificate there:
    it names no responder, and must not end the check with anything but a refusal."""
    try:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    except (UnsupportedAlgorithm, ValueError):
        return None


def _entries_for(response: ocsp.OCSPResponse, cert: x509.Certificate,
                 issuer: x509.Certificate) -> list[ocsp.OCSPSingleResponse]:
    """Every SingleResponse whose CertID names ``cert``: its serial and ``issuer``'s name and key hashes, in the
    entry's own hash algorithm (RFC 6960 §4.1.1). Entries about other certificates are ignored."""
    hashes_by_algorithm: dict[str, tuple[bytes, bytes] | None] = {}
    out: list[ocsp.OCSPSingleResponse] = []
    for candidate in response.responses:
        if candidate.serial_number != cert.serial_number:
            continue
        try:
            algorithm = candidate.hash_algorithm
        except UnsupportedAlgorithm:
            continue
        if algorithm.name not in hashes_by_algorithm:
            try:
                hashes_by_algorithm[algorithm.name] = _cert_id_hashes(cert, issuer, algorithm)
            except (ValueError, UnsupportedAlgorithm):
                hashes_by_algorithm[algorithm.name] = None
        if (candidate.issuer_name_hash, candidate.issuer_key_hash) == hashes_by_algorithm[algorithm.name]:
            out.append(candidate)
    return out


def _deciding_entry(entries: list[ocsp.OCSPSingleResponse],
                    max_age_without_next_update: dt.timedelta) -> ocsp.OCSPSingleResponse:
    """The entry that answers for the certificate when several do (RFC 6960 §3.2, §4.2.2.3): a "revoked" one
    if any (a "good" entry beside it must not hide the revocation), one revoked for good before one on hold (a
    certificateHold may be lifted, a revocation for good not: RFC 5280 §3.3, §5.3.1), else the freshest "good" one
    (an older entry must not make a fresh answer stale), else the freshest of the rest ("unknown").

    Freshest: the latest thisUpdate; on a tie, the one fresh for longest. Its thisUpdate and nextUpdate are then
    judged by the usual rules, so a stale "revoked" entry still refuses the answer (as revocation_stale), never
    lets a "good" one through.
    """
    def freshness(entry: ocsp.OCSPSingleResponse) -> tuple[dt.datetime, dt.datetime]:
        this_update = entry.this_update_utc
        if entry.next_update_utc is not None:
            return this_update, entry.next_update_utc
        # a thisUpdate near year 9999 (refused below as in the future) plus the age limit is past datetime.max
        fresh_until = this_update + min(max_age_without_next_update, _LAST_INSTANT - this_update)
        return this_update, fresh_until

    revoked = [e for e in entries if e.certificate_status == ocsp.OCSPCertStatus.REVOKED]
    for_good = [e for e in revoked if e.revocation_reason != x509.ReasonFlags.certificate_hold]
    good = [e for e in entries if e.certificate_status == ocsp.OCSPCertStatus.GOOD]
    return max(for_good or revoked or good or entries, key=freshness)


def verify_response(der: bytes, cert: x509.Certificate, issuer: x509.Certificate, *, now: dt.datetime,
                    skew: dt.timedelta, max_age_without_next_update: dt.timedelta,
                    nonce: bytes | None = None) -> OcspAnswer:
    """Verify an OCSP response about ``cert`` (issued by ``issuer``); raise :class:`CertificateRejected`.

    Reason codes: ``revocation_response_invalid`` (unparseable, wrong signer, bad
    signature, wrong certificate, future thisUpdate, nonce mismatch),
    ``revocation_unavailable`` (tryLater/internalError), ``revocation_stale``
    (nextUpdate passed; but a stale "revoked" that is no certificateHold is returned as revoked: revocation is
    final). The answer's own status (good/revoked/unknown) is
    returned for the caller to act on; with several SingleResponses about the
    certificate, the one :func:`_deciding_entry` picks (RFC 6960 §4.2.2.3).
    """
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise _invalid(f"not a DER OCSP response ({exc})") from None
    try:
        return _verified(response, cert, issuer, now=now, skew=skew,
                         max_age_without_next_update=max_age_without_next_update, nonce=nonce)
    except CertificateRejected:
        raise
    except Exception as exc:
        # cryptography reads parts of a response (a certificate's names among its certs, which lie outside the signed
        # ResponseData: anyone on the way from a plain-HTTP responder can put one there) only when first asked, and
        # refuses a malformed one with an exception of its own (ValueError ...): the answer is invalid, not an error
        # of the broker's (RFC 6960 §4.2.1)
        raise _invalid(f"the response cannot be read ({type(exc).__name__}: {exc})") from None


def _verified(response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate, *, now: dt.datetime,
              skew: dt.timedelta, max_age_without_next_update: dt.timedelta, nonce: bytes | None) -> OcspAnswer:
    """:func:`verify_response` of a parsed response."""
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        name = response.response_status.name.lower()
        if response.response_status in _UNAVAILABLE_STATUSES:
            raise CertificateRejected("revocation_unavailable", f"the responder answered {name}")
        raise _invalid(f"the responder answered {name}")
    signer, responder = _signer(response, issuer, now, skew)
    _verify_signature(response, signer)

    entries = _entries_for(response, cert, issuer)
    if not entries:
        raise _invalid(f"the response does not cover serial {cert.serial_number:x} of this issuer")
    _check_critical_extensions(response)

    if nonce is not None:
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            raise _invalid("the responder did not return the request's nonce") from None
        if echoed != nonce:
            raise _invalid("the response's nonce does not match the request's")

    single = _deciding_entry(entries, max_age_without_next_update)
    this_update, next_update = single.this_update_utc, single.next_update_utc
    if this_update > now + skew:
        raise _invalid(f"thisUpdate {this_update.isoformat()} is in the future")
    # a revocation is final (RFC 5280 §3.3, RFC 6960 §2.2; only certificateHold may be lifted): a stale answer
    # still proves it, and is returned as "revoked", never as stale, which a soft-fail policy would let through
    revoked_for_good = single.certificate_status == ocsp.OCSPCertStatus.REVOKED \
        and single.revocation_reason != x509.ReasonFlags.certificate_hold
    if not revoked_for_good:
        if next_update is not None and next_update < this_update:
            # a window that holds no instant (RFC 6960 §2.4: newer information is available at or before
            # nextUpdate): a responder whose times cannot be told apart, whatever the skew lets through at each end
            raise _invalid(f"the answer's nextUpdate {next_update.isoformat()} is before its thisUpdate "
                           f"{this_update.isoformat()}")
        if next_update is not None and next_update < now - skew:
            raise CertificateRejected("revocation_stale", f"the OCSP response expired at {next_update.isoformat()}",
                                      params={"next_update": next_update.date().isoformat()})
        if next_update is None and now - this_update > max_age_without_next_update + skew:
            raise CertificateRejected("revocation_stale",
                                      f"the OCSP response has no nextUpdate and is from {this_update.isoformat()}")
    status = single.certificate_status
    revoked_at = single.revocation_time_utc if status == ocsp.OCSPCertStatus.REVOKED else None
    reason = single.revocation_reason.name if status == ocsp.OCSPCertStatus.REVOKED and single.revocation_reason \
        else None
    mapped: Status = {ocsp.OCSPCertStatus.GOOD: "good", ocsp.OCSPCertStatus.REVOKED: "revoked"}.get(
        status, "unknown")  # type: ignore[assignment]
    unchecked = None
    if signer is not issuer:
        try:
            signer.extensions.get_extension_for_class(x509.OCSPNoCheck)
        except x509.ExtensionNotFound:
            unchecked = signer
    return OcspAnswer(mapped, this_update, next_update, response.produced_at_utc, revoked_at, reason, responder,
                      unchecked)
