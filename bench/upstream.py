"""The broker's own cost of a federated login (the municipal IdP's time excluded).

    .venv/bin/python bench/upstream.py [--rounds 2000]

1. The signed AuthnRequest to the IdP: build and sign the HTTP-Redirect query (RSA-2048, SHA-256).
2. The IdP's Response at the ACS: decode, hardened parse, signature check of the Assertion
   (libxmlsec1 in process), every Profiles §4.1.4.3 check, attribute reading. Plain, and with an
   AES-256-GCM / RSA-OAEP EncryptedAssertion (one RSA decryption more).

The Responses are the committed corpus (tests/corpus/upstream), judged at its fixed instant.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: E402

from broker.clock import FixedClock  # noqa: E402
from broker.saml.bindings import HTTP_POST, InboundMessage, decode  # noqa: E402
from broker.saml.metadata import parse_idp_metadata  # noqa: E402
from broker.saml.outbound import MessageSender  # noqa: E402
from broker.saml.upstream_request import build_authn_request  # noqa: E402
from broker.saml.upstream_response import ResponseValidator, parse_response  # noqa: E402
from broker.saml.xmldsig import XmlSigner, XmlVerifier  # noqa: E402
from broker.saml.xmlenc import Decrypter  # noqa: E402
from tests.corpus.upstream import generate as corpus  # noqa: E402
from tests.unit.saml.test_upstream_corpus import expectations  # noqa: E402


def per_call(fn: object, rounds: int) -> float:
    assert callable(fn)
    fn()  # warm
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    keys = corpus.load_keys()
    folder = corpus.CASES.parent
    idp = parse_idp_metadata((folder / "keys" / "idp-metadata.xml").read_bytes(), corpus.IDP_ENTITY_ID)
    key = load_pem_private_key(keys.sp.key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signer = XmlSigner(keys.sp.certificate, key)
    sender = MessageSender(signer, key)
    clock = FixedClock(corpus.NOW)

    def request() -> None:
        build_authn_request(sender=sender, clock=clock, sp_entity_id=corpus.SP_ENTITY_ID, acs_url=corpus.ACS_URL,
                            idp=idp, force_authn=False, is_passive=False, nameid_format="persistent",
                            class_refs=("urn:oasis:names:tc:SAML:2.0:ac:classes:X509",))

    validator = ResponseValidator(XmlVerifier(idp.signing_certificates), Decrypter([keys.sp.key_pem]))

    def acs(name: str) -> object:
        encoded = base64.b64encode((folder / name).read_bytes()).decode()

        def run() -> None:
            message = InboundMessage(HTTP_POST, "SAMLResponse", encoded, None)
            validator.validate(parse_response(decode(message, 262144), 262144), expectations())
        return run

    rows = [
        ("AuthnRequest to the IdP (build + sign)", per_call(request, rounds)),
        ("Response at the ACS, signed Assertion", per_call(acs("valid.xml"), rounds)),
        ("Response at the ACS, encrypted Assertion", per_call(acs("valid_encrypted_aes256gcm.xml"), rounds)),
    ]
    for label, seconds in rows:
        print(f"{label:<44} {seconds * 1e6:9.1f} µs   ({1 / seconds:8.0f}/s per core)")


if __name__ == "__main__":
    main()
