"""When the broker's own metadata documents (IdP and SP) are built, and what they are called.

Every instance, and an instance after a restart, publishes the same document at the same moment (SAML Metadata
§2.3.1: one EntityDescriptor per entity; a federation, or an SP fetching through a load balancer, expects one).
The validUntil is counted from the start of a short window aligned to the epoch, not from the instant an instance
happened to build its copy, and the document's ID is a digest of its content, not random: two instances whose
clocks agree build the same bytes (an RSA PKCS#1 v1.5 signature is deterministic; an ECDSA one is not, so with an
ECDSA key the documents differ in their SignatureValue alone).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Final

from lxml import etree

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# how long one document stays the one served: short beside any validity, so validUntil stays within a minute
# of "now + validity" (a quarter of the validity, when that is shorter)
STEP: Final = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Window:
    """The window ``now`` falls in: its document's validUntil, until when that document is the one served, and
    how long a cache may keep a copy (never past half its validity: SAML Metadata §2.2.1, a copy past validUntil
    is refused)."""

    valid_until: dt.datetime
    current_until: dt.datetime
    cacheable_until: dt.datetime


def window(now: dt.datetime, validity: dt.timedelta) -> Window:
    """The window of whole seconds, aligned to the epoch, that ``now`` falls in."""
    step = max(1, int(min(STEP, validity / 4).total_seconds()))
    elapsed = int((now - EPOCH).total_seconds())
    start = EPOCH + dt.timedelta(seconds=elapsed - elapsed % step)
    return Window(valid_until=start + validity, current_until=start + dt.timedelta(seconds=step),
                  cacheable_until=start + validity / 2)


def content_id(root: etree._Element) -> str:
    """An xs:ID for ``root`` (which has none yet) from the digest of its exclusive canonical form: the same
    content, the same ID on every instance. Metadata is no protocol message, so SAML Core §1.3.4's unguessable
    IDs are not what is asked of it; a Reference to the ID is all the signature needs."""
    return "_" + hashlib.sha256(etree.tostring(root, method="c14n", exclusive=True)).hexdigest()[:40]
