"""Objects that outlive a fork: gunicorn forks its workers from the master, which has threads of its own (the
audit trail's checkpoints, its forwarders, the metadata refresher). A lock one of them holds at the moment of the
fork is held forever in the child, by a thread the child does not have: the child's first use of it hangs.

:func:`reset_in_child` has an object's locks made anew in every forked child. The object is referred to weakly,
so registering it does not keep it alive (configuration reloads build new ones).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def reset_in_child(instance: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(instance)`` in every child forked after this call, while ``instance`` is alive (POSIX:
    ``os.register_at_fork``, which runs before the child returns from ``fork()``, with no other thread running)."""
    ref = weakref.ref(instance)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=after_in_child)
