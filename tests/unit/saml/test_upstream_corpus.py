"""The negative corpus of upstream Responses (tests/corpus/upstream): each file gets the broker's verdict.

Every file is parsed with ``parse_response`` and validated by ``ResponseValidator`` with the corpus IdP's
certificate (as its metadata would give it) and the broker SP's decryption key, at the corpus's fixed ``NOW``
(inside the baseline's validity window). A refused file must raise ``UpstreamRejected`` with exactly the
reason in cases.json; an accepted one must yield what the Assertion says. Cases that only the flow can judge
(``"decided_by": "flow"``: unsolicited, replay) are checked here for the validator's own verdict
(``validator_reason``) and at flow level in tests/flows/test_upstream_attacks.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import xmlsec
import yaml

from broker.config.loader import load_settings
from broker.errors import UpstreamRejected
from broker.reasons import REASONS
from broker.saml.upstream_mapping import canonical_attributes, identity_of
from broker.saml.upstream_response import (
    Expectations,
    ResponseValidator,
    UpstreamAssertion,
    parse_response,
    status_of,
)
from broker.saml.xmldsig import XmlVerifier
from broker.saml.xmlenc import Decrypter
from tests.conftest import EXAMPLE, REPO
from tests.corpus.upstream import generate as corpus

CASES: dict[str, dict[str, Any]] = json.loads(corpus.CASES.read_text(encoding="utf-8"))
FILES = sorted(CASES)
ACCEPTED = [f for f in FILES if CASES[f]["reason"] is None]
REFUSED = [f for f in FILES if CASES[f]["reason"] is not None and CASES[f].get("decided_by") != "flow"]
BY_FLOW = [f for f in FILES if CASES[f].get("decided_by") == "flow"]
# encryption uses a fresh session key and IV (and other recipients' keys) on each run: not reproducible byte for byte
ENCRYPTED = {f for f in FILES if b"EncryptedData" in (corpus.HERE / f).read_bytes()}


@pytest.fixture(scope="module")
def keys() -> corpus.Keys:
    return corpus.load_keys()


@pytest.fixture(scope="module")
def validator(keys: corpus.Keys) -> ResponseValidator:
    return ResponseValidator(XmlVerifier([keys.idp.certificate]), Decrypter([keys.sp.key_pem]))


def expectations(request_id: str | None = corpus.REQUEST_ID) -> Expectations:
    """What the broker expects of the corpus IdP's answer to ``REQUEST_ID`` (kommun-c's settings)."""
    return Expectations(idp_entity_id=corpus.IDP_ENTITY_ID, sp_entity_id=corpus.SP_ENTITY_ID,
                        acs_url=corpus.ACS_URL, request_id=request_id, signed_element="assertion",
                        skew=corpus.SKEW, now=corpus.NOW)


def judge(validator: ResponseValidator, name: str, request_id: str | None = corpus.REQUEST_ID
          ) -> UpstreamAssertion | UpstreamRejected:
    """The broker's verdict on one corpus file: the Assertion read out, or the refusal."""
    try:
        root = parse_response((corpus.HERE / name).read_bytes(), corpus.MAX_BYTES)
        assert status_of(root) is None
        return validator.validate(root, expectations(request_id))
    except UpstreamRejected as exc:
        return exc


# --- the corpus itself --------------------------------------------------------------------------


def test_every_file_has_a_case_and_every_case_a_file() -> None:
    on_disk = {p.name for p in corpus.HERE.glob("*.xml")}
    assert on_disk == set(CASES)
    assert set(CASES) == {c.file for c in corpus.CASE_LIST}


def test_every_expected_reason_is_an_upstream_reason_code() -> None:
    for name, case in CASES.items():
        for code in (case["reason"], case.get("validator_reason")):
            if code is not None:
                assert code in REASONS, (name, code)
                assert REASONS[code].family == "upstream", (name, code)
        assert case["about"].strip(), name


def test_flow_tests_named_by_cases_exist() -> None:
    named = [t for case in CASES.values() for t in case.get("flow_tests", [])]
    assert named
    for test in named:
        path, _, function = test.partition("::")
        assert f"def {function}(" in (REPO / path).read_text(encoding="utf-8"), test
    assert all(case.get("flow_tests") for case in CASES.values() if case.get("decided_by") == "flow")


def test_committed_files_are_what_the_generator_makes(keys: corpus.Keys) -> None:
    """Regenerating (same keys, fixed IDs and instants) reproduces each file byte for byte; encryption uses a
    fresh session key and IV each time, so the encrypted ones are compared by their algorithms only."""
    for case in corpus.CASE_LIST:
        committed = (corpus.HERE / case.file).read_bytes()
        if case.file in ENCRYPTED:
            continue
        assert case.build(keys) == committed, f"{case.file} is stale: run python -m tests.corpus.upstream.generate"
    assert (corpus.KEYS / "idp-metadata.xml").read_bytes() == corpus.idp_metadata(keys)


def test_size_limit_is_the_configured_one() -> None:
    broker_yaml = yaml.safe_load((EXAMPLE / "broker.yaml").read_text(encoding="utf-8"))
    assert broker_yaml["sp"]["max_message_bytes"] == corpus.MAX_BYTES
    assert len((corpus.HERE / "oversized.xml").read_bytes()) > corpus.MAX_BYTES
    assert all(len((corpus.HERE / f).read_bytes()) < 16384 for f in FILES if f != "oversized.xml")


def test_fixed_now_is_inside_the_baseline_validity_window() -> None:
    assert corpus.ISSUE_INSTANT <= corpus.NOW < corpus.ISSUE_INSTANT + corpus.LIFETIME - corpus.SKEW


# --- the verdicts -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REFUSED)
def test_refused_with_its_reason(validator: ResponseValidator, name: str) -> None:
    """The exact reason (and, where cases.json names one, what the detail for the operator must say). The
    signature-wrapping variants expect upstream_assertion_invalid: the reason the table (broker/reasons.py) gives
    for "an Assertion outside its place (signature wrapping)", and what the validator's docstring promises for an
    Assertion "moved, duplicated or wrapped elsewhere"."""
    verdict = judge(validator, name)
    assert isinstance(verdict, UpstreamRejected), f"{name} was accepted: {verdict}"
    assert verdict.reason == CASES[name]["reason"], f"{name}: {verdict.reason} ({verdict.detail})"
    assert CASES[name].get("detail", "") in verdict.detail, f"{name}: the detail {verdict.detail!r} does not say " \
                                                            f"{CASES[name]['detail']!r}"


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_and_read_from_the_signed_assertion(validator: ResponseValidator, name: str) -> None:
    verdict = judge(validator, name)
    assert not isinstance(verdict, UpstreamRejected), f"{name}: {verdict.reason} ({verdict.detail})"
    assert verdict.issuer == corpus.IDP_ENTITY_ID
    assert verdict.assertion_id == corpus.ASSERTION_ID
    assert verdict.in_response_to == corpus.REQUEST_ID
    assert verdict.name_id == CASES[name].get("name_id", corpus.NAME_ID)
    assert verdict.name_id_format == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    assert verdict.session_index == corpus.SESSION_INDEX
    assert verdict.authn_instant == corpus.ISSUE_INSTANT
    assert verdict.authn_context == corpus.CLASS_REF
    assert dict(verdict.attributes) == corpus.ATTRIBUTES
    assert verdict.expires == corpus.ISSUE_INSTANT + corpus.LIFETIME


def test_comment_inside_the_name_id_is_read_as_the_whole_signed_text(validator: ResponseValidator) -> None:
    """xmlparse drops comments at parse time (remove_comments=True) and libxml2 joins the text around it, so
    the broker reads 'admin@evil', exactly what the signature covers (canonical XML without comments), never
    the 'admin' before the comment. The raw file really does carry the comment."""
    raw = (corpus.HERE / "comment_in_name_id.xml").read_bytes()
    assert b">admin<!---->@evil</saml:NameID>" in raw
    verdict = judge(validator, "comment_in_name_id.xml")
    assert isinstance(verdict, UpstreamAssertion)
    assert verdict.name_id == "admin@evil"


@pytest.mark.parametrize("name", BY_FLOW)
def test_flow_cases_get_the_validators_own_verdict(validator: ResponseValidator, name: str) -> None:
    """The validator alone, expecting the answer to REQUEST_ID; the flow gives the reason in cases.json."""
    verdict = judge(validator, name)
    want = CASES[name]["validator_reason"]
    got = verdict.reason if isinstance(verdict, UpstreamRejected) else None
    assert got == want, verdict


def test_unsolicited_is_valid_for_the_validator_when_no_request_is_expected(validator: ResponseValidator) -> None:
    """With request_id None (how the flow validates an IdP-initiated Response it allows) the same file passes:
    whether an IdP may send those is the flow's decision (allow_unsolicited)."""
    verdict = judge(validator, "unsolicited.xml", request_id=None)
    assert isinstance(verdict, UpstreamAssertion), verdict
    assert verdict.in_response_to is None


def test_replay_carries_the_assertion_of_valid(validator: ResponseValidator) -> None:
    """replay.xml is another Response around valid.xml's Assertion: the flow's one-use cache is keyed by the
    IdP and the Assertion ID, which both files share."""
    first, again = judge(validator, "valid.xml"), judge(validator, "replay.xml")
    assert isinstance(first, UpstreamAssertion)
    assert isinstance(again, UpstreamAssertion)
    assert (again.issuer, again.assertion_id) == (first.issuer, first.assertion_id)
    assert parse_response((corpus.HERE / "replay.xml").read_bytes(), corpus.MAX_BYTES).get("ID") != \
        parse_response((corpus.HERE / "valid.xml").read_bytes(), corpus.MAX_BYTES).get("ID")


def test_baseline_is_refused_outside_its_window(validator: ResponseValidator) -> None:
    """The fixed NOW matters: the same valid.xml is expired an hour later, not yet valid an hour earlier."""
    root = parse_response((corpus.HERE / "valid.xml").read_bytes(), corpus.MAX_BYTES)
    hour = dt.timedelta(hours=1)
    for shift, code in ((hour, "upstream_expired"), (-hour, "upstream_not_yet_valid")):
        expect = dataclasses.replace(expectations(), now=corpus.NOW + shift)
        with pytest.raises(UpstreamRejected) as refused:
            validator.validate(root, expect)
        assert refused.value.reason == code


def test_foreign_key_file_really_embeds_the_foreign_certificate(keys: corpus.Keys) -> None:
    """The impostor's certificate is in KeyInfo (same subject name as the IdP's): the broker must ignore it."""
    body = "".join(keys.foreign.cert_pem.decode().strip().splitlines()[1:-1])
    raw = (corpus.HERE / "foreign_key_embedded_cert.xml").read_text(encoding="utf-8")
    assert body in raw.replace("\n", "")
    assert keys.foreign.certificate.subject == keys.idp.certificate.subject


def test_corpus_keys_are_committed_rsa_2048(keys: corpus.Keys) -> None:
    for pair in (keys.idp, keys.sp, keys.foreign):
        assert pair.certificate.public_key().key_size == 2048  # type: ignore[union-attr]
    assert Path(corpus.KEYS / "idp-signing.key").is_file()


# --- the attacks are what they claim to be --------------------------------------------------------------


@pytest.mark.parametrize("name", ["wrap_duplicated.xml", "wrap_extensions.xml", "wrap_moved_into_evil.xml"])
def test_wrapping_variants_keep_the_original_signature_valid(keys: corpus.Keys, name: str) -> None:
    """The IdP's signed Assertion is still in the document, its signature still verifies where it now is; the
    evil Assertion (another ID, the 'admin' user) sits where the broker reads."""
    root = parse_response((corpus.HERE / name).read_bytes(), corpus.MAX_BYTES)
    found = root.xpath("//*[@ID=$id]", id=corpus.ASSERTION_ID)
    assert isinstance(found, list)
    assert len(found) == 1
    assert XmlVerifier([keys.idp.certificate]).verify(found[0]) == keys.idp.certificate
    evil = root.xpath("//*[@ID=$id]", id=corpus.EVIL_ASSERTION_ID)
    assert isinstance(evil, list)
    assert len(evil) == 1
    assert len(root.findall(f".//{{{corpus.SAML}}}Assertion")) == 2


def test_wrapping_in_the_signature_object_reuses_the_idps_signature_value() -> None:
    def signature_value(name: str, assertion_id: str) -> str:
        root = parse_response((corpus.HERE / name).read_bytes(), corpus.MAX_BYTES)
        values = root.xpath("//*[@ID=$id]/ds:Signature/ds:SignatureValue/text()", id=assertion_id,
                            namespaces=corpus.NS)
        assert isinstance(values, list)
        assert len(values) == 1
        return str(values[0])

    assert signature_value("wrap_signature_object.xml", corpus.EVIL_ASSERTION_ID) == \
        signature_value("valid.xml", corpus.ASSERTION_ID)
    root = parse_response((corpus.HERE / "wrap_signature_object.xml").read_bytes(), corpus.MAX_BYTES)
    inside = root.findall(f".//{{{corpus.DS}}}Object/{{{corpus.SAML}}}Assertion")
    assert [a.get("ID") for a in inside] == [corpus.ASSERTION_ID]


@pytest.mark.parametrize(("name", "data", "transport"), [
    ("valid_encrypted_aes256gcm.xml", "http://www.w3.org/2009/xmlenc11#aes256-gcm", corpus.XENC + "rsa-oaep-mgf1p"),
    ("encrypted_3des.xml", corpus.XENC + "tripledes-cbc", corpus.XENC + "rsa-oaep-mgf1p"),
    ("encrypted_rsa15.xml", "http://www.w3.org/2009/xmlenc11#aes256-gcm", corpus.XENC + "rsa-1_5"),
])
def test_encrypted_cases_use_the_named_algorithms_and_really_decrypt(keys: corpus.Keys, name: str, data: str,
                                                                     transport: str) -> None:
    """Refused for the algorithm alone: libxmlsec1 itself, without the broker's allow-list, decrypts each one to
    the IdP's signed Assertion."""
    root = parse_response((corpus.HERE / name).read_bytes(), corpus.MAX_BYTES)
    encrypted = root.find(f"{{{corpus.SAML}}}EncryptedAssertion/{{{corpus.XENC}}}EncryptedData")
    assert encrypted is not None
    assert encrypted.find(f"{{{corpus.XENC}}}EncryptionMethod").get("Algorithm") == data  # type: ignore[union-attr]
    methods = encrypted.findall(f".//{{{corpus.XENC}}}EncryptedKey/{{{corpus.XENC}}}EncryptionMethod")
    assert [m.get("Algorithm") for m in methods] == [transport]
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(keys.sp.key_pem, xmlsec.constants.KeyDataFormatPem))
    decrypted = xmlsec.EncryptionContext(manager).decrypt(encrypted)
    assert decrypted.tag == f"{{{corpus.SAML}}}Assertion"
    assert decrypted.get("ID") == corpus.ASSERTION_ID


@pytest.mark.parametrize("suffix", ["\u3000", "\u2028", "\u00a0"], ids=["ideographic-space", "line-separator",
                                                                        "no-break-space"])
def test_unicode_space_after_an_idps_hsa_id_is_no_padding(config_dir: Path, suffix: str) -> None:
    """As in a certificate (broker.pki.identity.IDENTITY_SPACE): only XML white space surrounds a value; with
    another space the IdP's HSA-id is another value, refused, not mapped to the plain one."""
    keys = corpus.load_keys()
    root = parse_response(corpus.serialize(corpus.signed(corpus.Fields(hsa_id=corpus.HSA_ID + suffix), keys)),
                          corpus.MAX_BYTES)
    assertion = ResponseValidator(XmlVerifier([keys.idp.certificate]),
                                  Decrypter([keys.sp.key_pem])).validate(root, expectations())
    saml = load_settings(config_dir).municipalities["kommun-c"].config.saml
    assert saml is not None
    with pytest.raises(UpstreamRejected) as refused:
        identity_of(saml, canonical_attributes(saml, assertion.attributes), "kommun-c", "2120003005",
                    corpus.NOW.date())
    assert refused.value.reason == "upstream_identity_invalid"


@pytest.mark.parametrize(("local", "accepted"), [("a" * 18, True), ("a" * 19, False)],
                         ids=["31-characters", "32-characters"])
def test_an_idps_hsa_id_is_at_most_31_characters(config_dir: Path, local: str, accepted: bool) -> None:
    """As in a certificate (broker.pki.identity.DEFAULT_HSA_ID_PATTERN): an HSA-id is SE, the organisation number,
    a hyphen and 1 to 18 letters or digits (Inera's HSA-id format); a longer value is none, refused."""
    keys = corpus.load_keys()
    hsa_id = f"SE2120003005-{local}"
    root = parse_response(corpus.serialize(corpus.signed(corpus.Fields(hsa_id=hsa_id), keys)), corpus.MAX_BYTES)
    assertion = ResponseValidator(XmlVerifier([keys.idp.certificate]),
                                  Decrypter([keys.sp.key_pem])).validate(root, expectations())
    saml = load_settings(config_dir).municipalities["kommun-c"].config.saml
    assert saml is not None
    mapped = canonical_attributes(saml, assertion.attributes)
    if accepted:
        assert identity_of(saml, mapped, "kommun-c", "2120003005", corpus.NOW.date()).key == hsa_id
    else:
        with pytest.raises(UpstreamRejected) as refused:
            identity_of(saml, mapped, "kommun-c", "2120003005", corpus.NOW.date())
        assert refused.value.reason == "upstream_identity_invalid"


def test_xml_white_space_around_an_idps_value_is_padding(config_dir: Path) -> None:
    keys = corpus.load_keys()
    root = parse_response(corpus.serialize(corpus.signed(corpus.Fields(hsa_id=f"\n  {corpus.HSA_ID}\t\n"), keys)),
                          corpus.MAX_BYTES)
    assertion = ResponseValidator(XmlVerifier([keys.idp.certificate]),
                                  Decrypter([keys.sp.key_pem])).validate(root, expectations())
    saml = load_settings(config_dir).municipalities["kommun-c"].config.saml
    assert saml is not None
    identity = identity_of(saml, canonical_attributes(saml, assertion.attributes), "kommun-c", "2120003005",
                           corpus.NOW.date())
    assert identity.key == corpus.HSA_ID
