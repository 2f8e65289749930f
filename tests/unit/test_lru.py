"""broker/lru.py ``by_identity``: results remembered per argument object, least recently used forgotten first."""

from __future__ import annotations

import threading
import weakref

import pytest

from broker.lru import by_identity


class Thing:
    """Equal to every other Thing (as certificates with the same DER are), so only identity tells them apart."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing)

    def __hash__(self) -> int:
        return 0


def counting(max_entries: int) -> tuple[list[object], object]:
    calls: list[object] = []

    @by_identity(max_entries)
    def work(argument: object) -> tuple[int, int]:
        calls.append(argument)
        return (len(calls), id(argument))

    return calls, work


def test_the_same_object_is_worked_out_once() -> None:
    calls, work = counting(4)
    thing = Thing()
    assert work(thing) == work(thing) == (1, id(thing))  # type: ignore[operator]
    assert calls == [thing]


def test_an_equal_but_distinct_object_gets_its_own_entry() -> None:
    calls, work = counting(4)
    first, second = Thing(), Thing()
    assert first == second
    assert work(first) != work(second)  # type: ignore[operator]
    assert [id(c) for c in calls] == [id(first), id(second)]


def test_the_least_recently_used_entry_goes_first() -> None:
    calls, work = counting(2)
    a, b, c = Thing(), Thing(), Thing()
    work(a), work(b), work(a), work(c)  # type: ignore[operator]  # b is the least recently used when c comes
    work(a), work(c)  # type: ignore[operator]  # still remembered
    work(b)  # type: ignore[operator]  # forgotten: worked out again
    assert [id(x) for x in calls] == [id(a), id(b), id(c), id(b)]


def test_an_entry_keeps_its_argument_alive_so_its_id_stays_its_own() -> None:
    _, work = counting(4)
    thing = Thing()
    alive = weakref.ref(thing)
    work(thing)  # type: ignore[operator]
    del thing
    assert alive() is not None


def test_exceptions_are_not_remembered() -> None:
    attempts: list[int] = []

    @by_identity(4)
    def fails_once(argument: object) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first time")
        return len(attempts)

    thing = Thing()
    with pytest.raises(ValueError, match="first time"):
        fails_once(thing)
    assert fails_once(thing) == 2
    assert fails_once(thing) == 2


def test_threads_never_get_another_objects_answer() -> None:
    """Eight threads over the same objects (entries evicted meanwhile, as max_entries is small): every answer is
    the one worked out for that very object. Two threads may both work out an object missing at the same time,
    as with functools.lru_cache."""
    _, work = counting(16)
    things = [Thing() for _ in range(50)]
    seen: list[list[tuple[int, int]]] = []

    def run() -> None:
        seen.append([work(t) for t in things * 4])  # type: ignore[operator]

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8
    for answers in seen:
        assert [answer[1] for answer in answers] == [id(t) for t in things * 4]


def test_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        by_identity(0)
