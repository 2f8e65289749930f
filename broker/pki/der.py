"""The outline of DER data (X.690 §8.1, §10.1): each element's tag and where its contents lie, nothing decoded.

For the few places where cryptography gives no access to a structure the broker must see (a client's
concatenated certificates, each SingleResponse's extensions in an OCSP response); the elements found are then
handed to cryptography, or read only as far as their tags and raw contents. Single-byte tags and definite
lengths only: anything else is refused with ``ValueError``.
"""

from __future__ import annotations

SEQUENCE = 0x30


def der_items(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """The (tag, contents start, contents end) of each element between ``start`` and ``end``, in order; they must
    fill the span exactly."""
    stop = len(data) if end is None else end
    items = []
    pos = start
    while pos < stop:
        if pos + 2 > stop or data[pos] & 0x1F == 0x1F:
            raise ValueError("malformed DER")
        tag, length, pos = data[pos], data[pos + 1], pos + 2
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4 or pos + count > stop:
                raise ValueError("a DER length that is not a definite length")
            length, pos = int.from_bytes(data[pos:pos + count], "big"), pos + count
        if pos + length > stop:
            raise ValueError("a DER element runs past its end")
        items.append((tag, pos, pos + length))
        pos += length
    return items
