"""Layer keys: the one string form round-trips for every layer of both search spaces."""

from __future__ import annotations

import pytest

from hwnas.latency.keys import LayerKey
from hwnas.latency.space_latency import space_keys
from hwnas.space.searchspace import SPACE_NAMES


@pytest.mark.parametrize("space", SPACE_NAMES)
def test_every_key_of_a_space_round_trips(space: str) -> None:
    keys = space_keys(space, 224)
    assert keys
    for k in keys:
        assert LayerKey.parse(str(k)) == k, str(k)
