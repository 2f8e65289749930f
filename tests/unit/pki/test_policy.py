"""Certificate policy processing over a path (broker.pki.policy, RFC 5280 §6.1).

Each case builds a path under a fresh root with the PKI factory: CAs with the certificatePolicies,
policyMappings, policyConstraints and inhibitAnyPolicy of the case, then a leaf with its own policies. The
assertions are on the exact set of policies valid for the leaf (in the trust anchor's domain) or on the
exact refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from cryptography import x509

from broker.demo.certificates import CertificateAuthority, LeafProfile
from broker.errors import CertificateRejected
from broker.pki.policy import ANY_POLICY, valid_policies
from tests.factories.pki import POLICY_LOA2, POLICY_LOA3, Hierarchy
from tests.factories.pki_cases import NOW, policy_mappings, reissue, resigned

LOA3, LOA2, ANY = POLICY_LOA3, POLICY_LOA2, ANY_POLICY
LOCAL = "2.999.7.1"     # a policy of the issuing CA's own domain, mapped from LOA3
LOCAL_2 = "2.999.7.2"
MIDDLE = "2.999.7.9"    # a policy of a middle domain, between two mappings
NONE: tuple[str, ...] = ()  # no certificatePolicies extension at all

Chain = tuple[x509.Certificate, ...]
Build = Callable[[CertificateAuthority], Chain]  # a path (leaf first, root last) under the given root


@dataclass(frozen=True)
class Ca:
    """One CA of a case, below the root or the CA before it."""

    name: str
    policies: tuple[str, ...] = (ANY,)
    extensions: tuple[x509.ExtensionType, ...] = ()
    self_issued: bool = False  # named like its issuer: a key rollover certificate (RFC 5280 §6.1)


def ca(name: str, *policies: str, mappings: Sequence[tuple[str, str]] = (),
       require_explicit: int | None = None, inhibit_mapping: int | None = None,
       inhibit_any: int | None = None, self_issued: bool = False) -> Ca:
    """A CA asserting ``policies`` (none: no certificatePolicies), with policyMappings, policyConstraints
    (requireExplicitPolicy, inhibitPolicyMapping) and inhibitAnyPolicy when given."""
    extensions: list[x509.ExtensionType] = []
    if mappings:
        extensions.append(policy_mappings(*mappings))
    if require_explicit is not None or inhibit_mapping is not None:
        extensions.append(x509.PolicyConstraints(require_explicit, inhibit_mapping))
    if inhibit_any is not None:
        extensions.append(x509.InhibitAnyPolicy(inhibit_any))
    return Ca(name, policies, tuple(extensions), self_issued)


def path(*cas: Ca, leaf: tuple[str, ...], leaf_extensions: Sequence[x509.ExtensionType] = ()) -> Build:
    """The root, then ``cas`` each under the one before, then a leaf asserting ``leaf``."""
    def build(root: CertificateAuthority) -> Chain:
        issuer = root
        for spec in cas:
            sub = issuer.subordinate(f"Kommun A {spec.name}", organization="Kommun A", path_length=None,
                                     policies=spec.policies)
            if spec.extensions or spec.self_issued:
                sub = resigned(sub, *spec.extensions,
                               subject=issuer.certificate.subject if spec.self_issued else None)
            issuer = sub
        cert = issuer.issue(LeafProfile(common_name="Anna Andersson", policies=leaf)).certificate
        if leaf_extensions:
            cert = reissue(cert, issuer, extra=leaf_extensions)
        return (cert, *issuer.chain())
    return build


LEAF = "certificate serial {serial:x} from CN=Kommun A Person CA,O=Kommun A,C=SE"  # never the subject
RFC = "(RFC 5280 §6.1.3 (f), §6.1.5)"
NO_ANY = "a policy mapping must not involve anyPolicy (RFC 5280 §6.1.4 (a))"


def subject(name: str) -> str:
    return f"CN=Kommun A {name},O=Kommun A,C=SE"


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return Hierarchy.build(NOW).root


VALID = [
    # --- one issuing CA ---
    pytest.param(path(ca("Person CA", LOA3), leaf=(LOA3,)), {LOA3}, id="ca-asserts-the-same-policy"),
    pytest.param(path(ca("Person CA", LOA2), leaf=(LOA3,)), set(), id="ca-asserts-only-another-policy"),
    pytest.param(path(ca("Person CA", LOA2), leaf=(LOA3, LOA2)), {LOA2},
                 id="ca-asserts-only-another-of-the-leafs-policies"),
    pytest.param(path(ca("Person CA", ANY), leaf=(LOA3,)), {LOA3}, id="ca-asserts-any-policy"),
    pytest.param(path(ca("Person CA", LOA3, LOA2), leaf=(LOA3, LOA2)), {LOA3, LOA2},
                 id="ca-asserts-both-of-the-leafs-policies"),
    pytest.param(path(ca("Person CA", *NONE), leaf=(LOA3,)), set(), id="ca-without-certificate-policies"),
    pytest.param(path(ca("Person CA", LOA3), leaf=NONE), set(), id="leaf-without-certificate-policies"),
    pytest.param(path(leaf=(LOA3,)), {LOA3}, id="leaf-issued-by-the-anchor"),
    # --- anyPolicy in the leaf: reported, for the caller to judge ---
    pytest.param(path(ca("Person CA", ANY), leaf=(ANY,)), {ANY}, id="leaf-and-ca-assert-any-policy"),
    pytest.param(path(ca("Person CA", ANY), leaf=(LOA3, ANY)), {LOA3, ANY}, id="leaf-asserts-a-policy-and-any"),
    pytest.param(path(ca("Person CA", LOA2), leaf=(ANY,)), {LOA2}, id="leaf-any-policy-under-a-narrow-ca"),
    # --- two intermediates ---
    pytest.param(path(ca("Upper CA", LOA2), ca("Person CA", LOA3, LOA2), leaf=(LOA3, LOA2)), {LOA2},
                 id="upper-intermediate-narrows"),
    pytest.param(path(ca("Upper CA", LOA2), ca("Person CA", LOA3, LOA2), leaf=(LOA3,)), set(),
                 id="upper-intermediate-narrows-away-the-leafs-only-policy"),
    pytest.param(path(ca("Upper CA", ANY), ca("Person CA", LOA2), leaf=(LOA3,)), set(),
                 id="lower-intermediate-narrows"),
    pytest.param(path(ca("Upper CA", LOA3), ca("Person CA", ANY), leaf=(LOA3,)), {LOA3},
                 id="any-policy-below-a-named-policy-passes-it-on"),
    pytest.param(path(ca("Upper CA", *NONE), ca("Person CA", LOA3), leaf=(LOA3,)), set(),
                 id="upper-intermediate-without-certificate-policies"),
    # --- policy mappings (§6.1.4 (b)): the leaf's policy is reported as the anchor's domain names it ---
    pytest.param(path(ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]), leaf=(LOCAL,)), {LOA3},
                 id="mapping-loa3-to-a-local-policy"),
    pytest.param(path(ca("Person CA", ANY, mappings=[(LOA3, LOCAL)]), leaf=(LOCAL,)), {LOA3},
                 id="mapping-under-any-policy"),
    pytest.param(path(ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]), leaf=(LOA3,)), set(),
                 id="mapped-policy-no-longer-valid-under-its-old-name"),
    pytest.param(path(ca("Person CA", LOA3, LOA2, mappings=[(LOA3, LOCAL), (LOA2, LOCAL)]), leaf=(LOCAL,)),
                 {LOA3, LOA2}, id="two-policies-mapped-to-one"),
    pytest.param(path(ca("Person CA", LOA3, mappings=[(LOA3, LOCAL), (LOA3, LOCAL_2)]), leaf=(LOCAL_2,)),
                 {LOA3}, id="one-policy-mapped-to-two"),
    pytest.param(path(ca("Upper CA", LOA3, mappings=[(LOA3, MIDDLE)]),
                      ca("Person CA", MIDDLE, mappings=[(MIDDLE, LOCAL)]), leaf=(LOCAL,)),
                 {LOA3}, id="two-mappings-in-a-row"),
    pytest.param(path(ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]), leaf=(LOA3,),
                      leaf_extensions=[policy_mappings((LOCAL, LOA3))]),
                 set(), id="the-leafs-own-mappings-are-not-processed"),
    # --- inhibitPolicyMapping (policyConstraints, §6.1.4 (b)(2), (i)(2)) ---
    pytest.param(path(ca("Upper CA", ANY, inhibit_mapping=0), ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]),
                      leaf=(LOCAL,)),
                 set(), id="mapping-inhibited"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_mapping=0), ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]),
                      leaf=(LOA3,)),
                 set(), id="mapping-inhibited-drops-the-issuer-domain-policy"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_mapping=1), ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]),
                      leaf=(LOCAL,)),
                 {LOA3}, id="mapping-inhibited-only-after-skip-certs"),
    pytest.param(path(ca("Person CA", LOA3, inhibit_mapping=0, mappings=[(LOA3, LOCAL)]), leaf=(LOCAL,)),
                 {LOA3}, id="inhibit-mapping-applies-below-the-ca-not-to-its-own-mappings"),
    # --- inhibitAnyPolicy (§6.1.3 (d)(2), §6.1.4 (j)) and the self-issued exceptions (§6.1.4 (h)) ---
    pytest.param(path(ca("Upper CA", ANY, inhibit_any=0), ca("Person CA", ANY), leaf=(LOA3,)), set(),
                 id="inhibit-any-policy-sets-aside-any-policy-below"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_any=0), ca("Person CA", LOA3), leaf=(LOA3,)), {LOA3},
                 id="inhibit-any-policy-leaves-named-policies-below"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_any=1), ca("Person CA", ANY), leaf=(LOA3,)), {LOA3},
                 id="inhibit-any-policy-after-skip-certs"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_any=1), ca("Middle CA", ANY), ca("Person CA", ANY),
                      leaf=(LOA3,)),
                 set(), id="inhibit-any-policy-skip-certs-used-up"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_any=1), ca("Rollover CA", ANY, self_issued=True),
                      ca("Person CA", ANY), leaf=(LOA3,)),
                 {LOA3}, id="self-issued-ca-does-not-use-up-skip-certs"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_any=0), ca("Rollover CA", ANY, self_issued=True),
                      ca("Person CA", LOA3), leaf=(LOA3,)),
                 {LOA3}, id="self-issued-ca-keeps-its-any-policy-despite-inhibit"),
    pytest.param(path(ca("Person CA", ANY, inhibit_any=0), leaf=(ANY,)), set(),
                 id="inhibit-any-policy-sets-aside-the-leafs-any-policy"),
    # --- requireExplicitPolicy (§6.1.3 (f), §6.1.4 (i)(1), §6.1.5 (a)-(b)) when a policy is valid ---
    pytest.param(path(ca("Upper CA", ANY, require_explicit=0), ca("Person CA", LOA2), leaf=(LOA3, LOA2)),
                 {LOA2}, id="explicit-policy-required-and-present"),
    pytest.param(path(ca("Upper CA", ANY, require_explicit=1), ca("Person CA", ANY), leaf=(LOA3,)),
                 {LOA3}, id="explicit-policy-required-after-skip-certs-and-present"),
    pytest.param(path(ca("Upper CA", ANY, require_explicit=3), ca("Person CA", LOA2), leaf=(LOA3,)),
                 set(), id="explicit-policy-required-only-beyond-the-path"),
]


@pytest.mark.parametrize(("build", "valid"), VALID)
def test_valid_policies(root: CertificateAuthority, build: Build, valid: set[str]) -> None:
    assert valid_policies(build(root)).valid == frozenset(valid)


def test_the_trust_anchors_own_policies_are_not_processed(root: CertificateAuthority) -> None:
    """RFC 5280 §6.1.1 (d): the anchor is trusted input. A CA used as the anchor asserts only LOA2 and
    inhibits anyPolicy; what it issued is still judged from its own certificate on."""
    anchor = resigned(root.subordinate("Kommun A Anchor CA", policies=(LOA2,), path_length=None),
                      x509.InhibitAnyPolicy(0))
    leaf, person, *above = path(ca("Person CA", ANY), leaf=(LOA3,))(anchor)
    assert above[0] == anchor.certificate
    assert valid_policies((leaf, person, anchor.certificate)).valid == frozenset({LOA3})


REFUSED = [
    pytest.param(path(ca("Upper CA", ANY, require_explicit=0), ca("Person CA", LOA2), leaf=(LOA3,)),
                 "policy_not_accepted",
                 f"no certificate policy is valid for {LEAF}, and {subject('Upper CA')} (requireExplicitPolicy 0) "
                 f"requires an explicit policy {RFC}",
                 id="explicit-policy-required-and-missing"),
    pytest.param(path(ca("Upper CA", ANY, require_explicit=0), ca("Person CA", *NONE), leaf=(LOA3,)),
                 "policy_not_accepted",
                 f"no certificate policy is valid for {subject('Person CA')}, and {subject('Upper CA')} "
                 f"(requireExplicitPolicy 0) requires an explicit policy {RFC}",
                 id="explicit-policy-required-below-a-ca-without-policies"),
    pytest.param(path(ca("Upper CA", ANY, require_explicit=2), ca("Person CA", LOA2), leaf=(LOA3,)),
                 "policy_not_accepted",
                 f"no certificate policy is valid for the path, and {subject('Upper CA')} (requireExplicitPolicy 2) "
                 f"requires an explicit policy {RFC}",
                 id="explicit-policy-required-at-the-end-of-the-path"),
    pytest.param(path(ca("Person CA", LOA2), leaf=(LOA3,), leaf_extensions=[x509.PolicyConstraints(0, None)]),
                 "policy_not_accepted",
                 f"no certificate policy is valid for the path, and {LEAF} (requireExplicitPolicy 0) "
                 f"requires an explicit policy {RFC}",
                 id="the-leaf-requires-an-explicit-policy"),
    pytest.param(path(ca("Person CA", LOA3, mappings=[(LOA3, ANY)]), leaf=(LOA3,)), "chain_invalid",
                 f"{subject('Person CA')} maps {LOA3} to {ANY}: {NO_ANY}", id="mapping-to-any-policy"),
    pytest.param(path(ca("Person CA", ANY, mappings=[(ANY, LOCAL)]), leaf=(LOCAL,)), "chain_invalid",
                 f"{subject('Person CA')} maps {ANY} to {LOCAL}: {NO_ANY}", id="mapping-from-any-policy"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_mapping=0), ca("Person CA", LOA3, mappings=[(LOA3, ANY)]),
                      leaf=(LOCAL,)),
                 "chain_invalid", f"{subject('Person CA')} maps {LOA3} to {ANY}: {NO_ANY}",
                 id="mapping-to-any-policy-even-when-inhibited"),
]


@pytest.mark.parametrize(("build", "reason", "detail"), REFUSED)
def test_refused(root: CertificateAuthority, build: Build, reason: str, detail: str) -> None:
    chain = build(root)
    with pytest.raises(CertificateRejected) as caught:
        valid_policies(chain)
    assert (caught.value.reason, caught.value.detail) == (reason, detail.format(serial=chain[0].serial_number))
    assert "Anna" not in caught.value.detail  # the user's certificate is never named by its subject


@pytest.mark.parametrize("der", [
    pytest.param(b"\x30\x00", id="no-mappings"),
    pytest.param(b"\x30\x05\x30\x03\x06\x01\x2a", id="one-policy-in-a-mapping"),
    pytest.param(b"\x30\x08\x30\x06\x06\x01\x2a\x06\x01\xaa", id="truncated-object-identifier"),
    pytest.param(b"\x30\x08\x30\x06\x06\x01\x2a\x06\x02\x80\x01", id="object-identifier-not-shortest"),
    pytest.param(b"\x30\x81\x05\x30\x03\x06\x01\x2a", id="length-not-shortest"),
    pytest.param(b"\x04\x00", id="not-a-sequence"),
])
def test_a_malformed_policy_mapping_makes_the_path_invalid(root: CertificateAuthority, der: bytes) -> None:
    malformed = x509.UnrecognizedExtension(x509.oid.ExtensionOID.POLICY_MAPPINGS, der)
    chain = path(Ca("Person CA", (LOA3,), (malformed,)), leaf=(LOA3,))(root)
    with pytest.raises(CertificateRejected) as caught:
        valid_policies(chain)
    assert caught.value.reason == "chain_invalid"
    assert caught.value.detail.startswith(f"{subject('Person CA')}: policyMappings is malformed")


EXPLAINED = [
    pytest.param(path(ca("Person CA", LOA2), leaf=(LOA3,)), LOA3,
                 f"{LOA3} is not valid on the path: {subject('Person CA')} does not assert it "
                 f"(its certificatePolicies: {LOA2})", (),
                 id="the-issuing-ca"),
    pytest.param(path(ca("Upper CA", LOA2), ca("Person CA", LOA3, LOA2), leaf=(LOA3,)), LOA3,
                 f"{LOA3} is not valid on the path: {subject('Upper CA')} does not assert it "
                 f"(its certificatePolicies: {LOA2})", (),
                 id="the-upper-ca-that-narrows"),
    pytest.param(path(ca("Upper CA", *NONE), ca("Person CA", LOA3), leaf=(LOA3,)), LOA3,
                 f"{LOA3} is not valid on the path: {subject('Upper CA')} has no certificatePolicies", (),
                 id="a-ca-without-policies"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_any=0), ca("Person CA", ANY), leaf=(LOA3,)), LOA3,
                 f"{LOA3} is not valid on the path: {subject('Person CA')} does not pass it on "
                 f"(its certificatePolicies: {ANY})",
                 (f"{subject('Person CA')} asserts anyPolicy, which inhibitAnyPolicy sets aside there",),
                 id="any-policy-inhibited"),
    pytest.param(path(ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]), leaf=(LOA3,)), LOA3,
                 f"{LOA3} is not valid on the path: {subject('Person CA')} does not pass it on "
                 f"(its certificatePolicies: {LOA3})",
                 (f"{subject('Person CA')} maps {LOA3} to {LOCAL}",),
                 id="renamed-by-a-mapping"),
    pytest.param(path(ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]), leaf=(LOCAL,)), LOCAL,
                 f"{LOCAL} is valid on the path only under another policy of the trust anchor's domain",
                 (f"{subject('Person CA')} maps {LOA3} to {LOCAL}",),
                 id="valid-only-as-the-policy-it-maps-from"),
    pytest.param(path(ca("Upper CA", ANY, inhibit_mapping=0), ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]),
                      leaf=(LOCAL,)), LOCAL,
                 f"{LOCAL} is not valid on the path: {subject('Person CA')} does not assert it "
                 f"(its certificatePolicies: {LOA3})",
                 (f"{subject('Person CA')} maps {LOA3} to {LOCAL}, but policy mapping is inhibited there "
                  "(policyConstraints inhibitPolicyMapping)",),
                 id="mapping-inhibited"),
]


@pytest.mark.parametrize(("build", "policy", "why", "notes"), EXPLAINED)
def test_a_policy_that_is_not_valid_is_explained(root: CertificateAuthority, build: Build, policy: str, why: str,
                                                  notes: tuple[str, ...]) -> None:
    """Operators read which CA did not assert which policy, and what mappings and inhibitions did."""
    result = valid_policies(build(root))
    assert policy not in result.valid
    assert (result.explain(policy), result.notes) == (why, notes)


def test_what_each_ca_allows_is_recorded(root: CertificateAuthority) -> None:
    result = valid_policies(path(ca("Upper CA", LOA3, LOA2), ca("Person CA", LOA3, mappings=[(LOA3, LOCAL)]),
                                 leaf=(LOCAL,))(root))
    assert [(c.subject, c.asserted, c.allowed) for c in result.cas] == [
        (subject("Upper CA"), (LOA3, LOA2), frozenset({LOA3, LOA2})),
        (subject("Person CA"), (LOA3,), frozenset({LOCAL})),
    ]
    assert result.blocking_ca(LOCAL) is None


def test_an_empty_chain_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="empty chain"):
        valid_policies(())
