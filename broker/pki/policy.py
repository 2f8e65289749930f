"""Certificate policy processing over a verified path (RFC 5280 §6.1).

cryptography's verifier does no policy processing (REFERENCE: "What cryptography's verifier leaves to us"),
so which of the leaf's certificate policies a path really supports is worked out here: the valid_policy_tree
of RFC 5280 §6.1.2 (a), grown and pruned per certificate (§6.1.3 (d)-(f)), with policy mappings and the
policyConstraints / inhibitAnyPolicy counters between certificates (§6.1.4 (a)-(b), (h)-(j)) and the
wrap-up (§6.1.5 (a)-(b), (g)).

The inputs the broker uses (§6.1.1): user-initial-policy-set = {anyPolicy}; initial-policy-mapping-inhibit,
initial-explicit-policy and initial-any-policy-inhibit all false. Which policy gives which assurance level is
the municipality's allow-list, applied by the caller (:func:`broker.pki.validator.assurance_level`).

What is left out, each on purpose:

* the trust anchor's own extensions: it is trusted input (§6.1.1 (d)), so its certificatePolicies,
  policyMappings and constraints are not processed;
* policy qualifiers (§4.2.1.4): the broker shows none, and they never decide validity; the tree keeps no
  qualifier_set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from broker.errors import CertificateRejected
from broker.pki.naming import describe, subject_text

ANY_POLICY: Final = "2.5.29.32.0"  # anyPolicy (RFC 5280 §4.2.1.4)

_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


@dataclass(frozen=True)
class CaPolicies:
    """One CA below the trust anchor, as policy processing saw it (for explanations).

    ``asserted``: its certificatePolicies, None when it has none. ``allowed``: what the path lets the next
    certificate assert after this CA (the expected_policy_set values at its depth, after its policy mappings;
    ANY_POLICY means anything); empty when no policy is valid any more.
    """

    subject: str
    asserted: tuple[str, ...] | None
    allowed: frozenset[str]


@dataclass(frozen=True)
class PathPolicies:
    """What RFC 5280 §6.1 policy processing leaves for one path.

    ``valid``: the policies valid for the leaf, each as the trust anchor's domain names it: for each node at
    the leaf's depth of the valid_policy_tree, the root-most valid_policy of its branch that is not anyPolicy
    (the issuerDomainPolicy where a mapping renamed it). It holds ANY_POLICY when a branch of anyPolicy nodes
    reaches the leaf (the leaf asserts anyPolicy and every CA above allows it); the caller decides what that
    is worth. Empty when the tree is NULL.
    ``cas``: the CAs between the trust anchor and the leaf, the anchor's side first.
    ``notes``: policy mappings applied and assertions set aside on the way, in path order.
    """

    valid: frozenset[str]
    cas: tuple[CaPolicies, ...] = ()
    notes: tuple[str, ...] = ()

    def blocking_ca(self, policy: str) -> CaPolicies | None:
        """The CA that stops ``policy`` (as the leaf asserts it): the first one below the last place on the path
        (the trust anchor at the latest) that still allowed it. None when the leaf's issuer allows it."""
        allowing = [i for i, ca in enumerate(self.cas) if policy in ca.allowed or ANY_POLICY in ca.allowed]
        first = allowing[-1] + 1 if allowing else 0
        return self.cas[first] if first < len(self.cas) else None

    def explain(self, policy: str) -> str:
        """Why ``policy``, asserted by the leaf, is not in :attr:`valid`, for operators (:attr:`notes` tell
        the rest)."""
        ca = self.blocking_ca(policy)
        if ca is None:
            return f"{policy} is valid on the path only under another policy of the trust anchor's domain"
        if ca.asserted is None:
            return f"{policy} is not valid on the path: {ca.subject} has no certificatePolicies"
        # asserting it (or anyPolicy) and still stopping it: a mapping renamed it, or anyPolicy was set aside
        verb = "does not pass it on" if {policy, ANY_POLICY} & set(ca.asserted) else "does not assert it"
        return (f"{policy} is not valid on the path: {ca.subject} {verb} "
                f"(its certificatePolicies: {', '.join(ca.asserted)})")


@dataclass(eq=False)
class _Node:
    """A valid_policy_tree node (§6.1.2 (a)); qualifier_set is not kept."""

    policy: str
    expected: frozenset[str]
    parent: _Node | None
    children: list[_Node] = field(default_factory=list)

    def child(self, policy: str, expected: frozenset[str]) -> _Node:
        node = _Node(policy, expected, self)
        self.children.append(node)
        return node

    def authority_policy(self) -> str:
        """The root-most valid_policy of this node's branch that is not anyPolicy (anyPolicy nodes only ever
        have anyPolicy parents, so the branch is anyPolicy down to one node, then named policies)."""
        node = self
        while node.parent is not None and node.parent.policy != ANY_POLICY:
            node = node.parent
        return node.policy


class _Tree:
    """The valid_policy_tree as one list of nodes per depth; NULL when depth 0 is empty."""

    def __init__(self) -> None:
        self.levels: list[list[_Node]] = [[_Node(ANY_POLICY, frozenset({ANY_POLICY}), None)]]

    @property
    def null(self) -> bool:
        return not self.levels[0]

    def clear(self) -> None:
        self.levels = [[] for _ in self.levels]

    def delete(self, depth: int, policy: str) -> None:
        for node in [n for n in self.levels[depth] if n.policy == policy]:
            self.levels[depth].remove(node)
            if node.parent is not None:
                node.parent.children.remove(node)

    def prune(self, depth: int) -> None:
        """Delete nodes of ``depth`` or less without children, bottom up (§6.1.3 (d)(3), §6.1.4 (b)(2)(ii))."""
        for d in range(depth, -1, -1):
            for node in [n for n in self.levels[d] if not n.children]:
                self.levels[d].remove(node)
                if node.parent is not None:
                    node.parent.children.remove(node)


def valid_policies(chain: Sequence[x509.Certificate]) -> PathPolicies:
    """RFC 5280 §6.1 policy processing of a verified ``chain`` (leaf first, trust anchor last).

    Certificate 1 of the RFC is the one the anchor issued, certificate n the leaf. Raises
    :class:`CertificateRejected` with ``policy_not_accepted`` when an explicit policy is required
    (policyConstraints requireExplicitPolicy) and no policy is valid (§6.1.3 (f), §6.1.5), and with
    ``chain_invalid`` when a CA maps to or from anyPolicy (§6.1.4 (a)) or a policy extension cannot be read.
    """
    if not chain:
        raise ValueError("an empty chain has no policies")
    path = list(reversed(chain[:-1]))
    n = len(path)
    tree = _Tree()
    # §6.1.2 (d)-(f): none of the initial inhibit/explicit inputs is set
    explicit = inhibit_any = mapping = n + 1
    explicit_by = ""  # the certificate whose requireExplicitPolicy set the lowest explicit_policy
    cas: list[CaPolicies] = []
    notes: list[str] = []
    for i, cert in enumerate(path, start=1):
        # the leaf is named by serial and issuer: its subject can hold a personnummer (broker.pki.naming)
        subject = describe(cert) if i == n else subject_text(cert)
        self_issued = cert.issuer == cert.subject
        tree.levels.append([])
        asserted = _certificate_policies(cert)
        # §6.1.3 (d)-(e)
        if asserted is None:
            tree.clear()
        elif not tree.null:
            honour_any = inhibit_any > 0 or (i < n and self_issued)
            if ANY_POLICY in asserted and not honour_any:
                notes.append(f"{subject} asserts anyPolicy, which inhibitAnyPolicy sets aside there")
            _grow(tree, i, asserted, honour_any)
        # §6.1.3 (f)
        if explicit == 0 and tree.null:
            raise CertificateRejected("policy_not_accepted", _explicit_detail(subject, explicit_by))
        if i == n:
            break
        # §6.1.4 (a)-(b)
        mappings = _policy_mappings(cert)
        for issuer_policy, subject_policies in mappings.items():
            shown = f"{issuer_policy} to {', '.join(sorted(subject_policies))}"
            if mapping > 0:
                _map(tree, i, issuer_policy, subject_policies)
                notes.append(f"{subject} maps {shown}")
            else:
                tree.delete(i, issuer_policy)
                tree.prune(i - 1)
                notes.append(f"{subject} maps {shown}, but policy mapping is inhibited there "
                             "(policyConstraints inhibitPolicyMapping)")
        cas.append(CaPolicies(subject, asserted,
                              frozenset(p for node in tree.levels[i] for p in node.expected)))
        # §6.1.4 (h)-(j)
        if not self_issued:
            explicit, mapping, inhibit_any = max(explicit - 1, 0), max(mapping - 1, 0), max(inhibit_any - 1, 0)
        constraints = _extension(cert, x509.PolicyConstraints)
        if constraints is not None:
            required = constraints.require_explicit_policy
            if required is not None and required < explicit:
                explicit, explicit_by = required, f"{subject} (requireExplicitPolicy {required})"
            if constraints.inhibit_policy_mapping is not None:
                mapping = min(mapping, constraints.inhibit_policy_mapping)
        inhibit = _extension(cert, x509.InhibitAnyPolicy)
        if inhibit is not None:
            inhibit_any = min(inhibit_any, inhibit.skip_certs)
    # §6.1.5 (a)-(b); (g) with user-initial-policy-set {anyPolicy}: the intersection is the whole tree
    explicit = max(explicit - 1, 0)
    if n:
        leaf_constraints = _extension(path[-1], x509.PolicyConstraints)
        if leaf_constraints is not None and leaf_constraints.require_explicit_policy == 0:
            explicit, explicit_by = 0, f"{describe(path[-1])} (requireExplicitPolicy 0)"
    if explicit == 0 and tree.null:
        raise CertificateRejected("policy_not_accepted", _explicit_detail("the path", explicit_by))
    valid = frozenset(node.authority_policy() for node in tree.levels[-1])
    return PathPolicies(valid, tuple(cas), tuple(notes))


def _grow(tree: _Tree, i: int, asserted: Sequence[str], honour_any: bool) -> None:
    """§6.1.3 (d) (1)-(3): the nodes of depth ``i`` for certificate i's policies, then pruning."""
    parents = tree.levels[i - 1]
    below = tree.levels[i]
    for policy in asserted:
        if policy == ANY_POLICY:
            continue
        matching = [p for p in parents if policy in p.expected]
        if not matching:  # (1)(ii): otherwise under the anyPolicy node, if there is one
            matching = [p for p in parents if p.policy == ANY_POLICY]
        below.extend(p.child(policy, frozenset({policy})) for p in matching)
    if ANY_POLICY in asserted and honour_any:  # (2)
        for parent in parents:
            present = {c.policy for c in parent.children}
            below.extend(parent.child(e, frozenset({e})) for e in sorted(parent.expected - present))
    tree.prune(i - 1)


def _map(tree: _Tree, i: int, issuer_policy: str, subject_policies: frozenset[str]) -> None:
    """§6.1.4 (b)(1): nodes of depth ``i`` for ``issuer_policy`` now expect ``subject_policies``."""
    nodes = [n for n in tree.levels[i] if n.policy == issuer_policy]
    for node in nodes:
        node.expected = subject_policies
    if not nodes:
        any_node = next((n for n in tree.levels[i] if n.policy == ANY_POLICY), None)
        if any_node is not None and any_node.parent is not None:
            tree.levels[i].append(any_node.parent.child(issuer_policy, subject_policies))


def _explicit_detail(where: str, required_by: str) -> str:
    return (f"no certificate policy is valid for {where}, and {required_by or 'the path'} requires an explicit "
            "policy (RFC 5280 §6.1.3 (f), §6.1.5)")


def _extension(cert: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:  # malformed extensions (cryptography parses lazily)
        raise CertificateRejected("chain_invalid",
                                  f"{describe(cert)}: extensions cannot be read ({exc})") from exc


def _certificate_policies(cert: x509.Certificate) -> tuple[str, ...] | None:
    """The certificate's policy OIDs (§4.2.1.4), None when it has no certificatePolicies extension. "A
    certificate policy OID MUST NOT appear more than once": a certificate repeating one is refused."""
    ext = _extension(cert, x509.CertificatePolicies)
    if ext is None:
        return None
    oids = tuple(p.policy_identifier.dotted_string for p in ext)
    if len(set(oids)) != len(oids):
        repeated = sorted({oid for oid in oids if oids.count(oid) > 1})
        raise CertificateRejected("chain_invalid", f"{describe(cert)}: certificatePolicies names "
                                                   f"{', '.join(repeated)} more than once (RFC 5280 §4.2.1.4)")
    return oids


def _policy_mappings(cert: x509.Certificate) -> dict[str, frozenset[str]]:
    """issuerDomainPolicy → its subjectDomainPolicy values (§4.2.1.5); refuses anyPolicy (§6.1.4 (a)).

    cryptography has no type for this extension, so its DER is read here (``_mapping_pairs``).
    """
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.POLICY_MAPPINGS).value
    except x509.ExtensionNotFound:
        return {}
    subject = subject_text(cert)  # a CA's (§6.1.4 reads mappings of CAs only)
    try:
        pairs = _mapping_pairs(ext.public_bytes())
    except ValueError as exc:
        raise CertificateRejected("chain_invalid", f"{subject}: policyMappings is malformed ({exc})") from exc
    out: dict[str, frozenset[str]] = {}
    for issuer_policy, subject_policy in pairs:
        if ANY_POLICY in (issuer_policy, subject_policy):
            raise CertificateRejected(
                "chain_invalid",
                f"{subject} maps {issuer_policy} to {subject_policy}: a policy mapping must not involve "
                "anyPolicy (RFC 5280 §6.1.4 (a))")
        out[issuer_policy] = out.get(issuer_policy, frozenset()) | {subject_policy}
    return out


def _mapping_pairs(der: bytes) -> list[tuple[str, str]]:
    """PolicyMappings ::= SEQUENCE SIZE (1..MAX) OF SEQUENCE { issuerDomainPolicy, subjectDomainPolicy }."""
    outer, rest = _element(der, 0x30)
    if rest:
        raise ValueError("trailing bytes")
    pairs: list[tuple[str, str]] = []
    while outer:
        pair, outer = _element(outer, 0x30)
        issuer_oid, pair = _element(pair, 0x06)
        subject_oid, pair = _element(pair, 0x06)
        if pair:
            raise ValueError("a mapping has more than two policies")
        pairs.append((_oid(issuer_oid), _oid(subject_oid)))
    if not pairs:
        raise ValueError("no mappings")
    return pairs


def _element(der: bytes, tag: int) -> tuple[bytes, bytes]:
    """The contents of the DER element of ``tag`` that ``der`` starts with, and what follows it
    (X.690 §8.1.2-8.1.3, §10.1: definite, shortest-form lengths)."""
    if len(der) < 2 or der[0] != tag:
        raise ValueError(f"expected tag {tag:#04x}")
    length, start = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(der) < 2 + count or der[2] == 0:
            raise ValueError("bad length")
        length, start = int.from_bytes(der[2:2 + count], "big"), 2 + count
        if length < 0x80:
            raise ValueError("bad length")
    if len(der) < start + length:
        raise ValueError("truncated")
    return der[start:start + length], der[start + length:]


def _oid(contents: bytes) -> str:
    """An OBJECT IDENTIFIER's dotted form (X.690 §8.19: base-128 subidentifiers, the first joining two arcs)."""
    if not contents or contents[-1] & 0x80:
        raise ValueError("truncated object identifier")
    arcs: list[int] = []
    value, fresh = 0, True
    for byte in contents:
        if fresh and byte == 0x80:
            raise ValueError("object identifier not in shortest form")
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))
