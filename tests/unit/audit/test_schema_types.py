"""The event types the code can record are exactly the ones the schema documents."""

from __future__ import annotations

from typing import get_args

from broker.audit.events import EventType
from broker.audit.schema import EVENTS


def test_every_event_type_has_a_schema_and_every_schema_an_event_type() -> None:
    assert set(get_args(EventType)) == set(EVENTS)
