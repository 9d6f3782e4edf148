"""Samplers that pickle without their locks.

Ray Tune pickles the searcher that holds the run's sampler; pickle refuses
``threading`` locks. A sampler class lists its locks in ``LOCKS`` (attribute ->
factory): they are left out of the pickled state and a copy gets fresh ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar


class FreshLocksOnCopy:
    """Mixin: the attributes named in ``LOCKS`` are not pickled; unpickling makes new ones."""

    LOCKS: ClassVar[dict[str, Callable[[], Any]]] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in self.LOCKS:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for name, make in self.LOCKS.items():
            setattr(self, name, make())
