"""The ``Target`` contract: shared prediction paths and the defaults of a fitted target."""

from __future__ import annotations

import pytest
from fakes import HashTarget

from hwnas.latency.keys import layer_keys
from hwnas.latency.target import OVERHEAD_PART, Target
from hwnas.space.references import reference

ARCH = reference("mobilenetv3_small")


def test_predict_is_the_layer_sum_plus_one_overhead() -> None:
    t = HashTarget(overhead=0.5)
    keys = layer_keys(ARCH)
    layers = sum(ms for ms, _ in t.lookup(keys))
    assert t.predict(ARCH) == pytest.approx(layers + 0.5)
    frame = t.breakdown(ARCH)
    assert frame.iloc[-1].part == OVERHEAD_PART and frame.ms.sum() == pytest.approx(t.predict(ARCH))
    assert HashTarget(overhead=0.0).breakdown(ARCH).part.tolist() == [k.part for k in keys]


def test_layer_ms_looks_each_key_up_once() -> None:
    t = HashTarget()
    keys = layer_keys(ARCH)
    t.layer_ms(keys + keys)
    assert t.looked_up == len(set(keys))
    t.predict(ARCH)
    assert t.looked_up == len(set(keys))


def test_a_target_that_cannot_measure_says_so() -> None:
    t = HashTarget()
    assert not t.can_measure and t.missing(layer_keys(ARCH)) == []
    for call in (lambda: t.fill(layer_keys(ARCH)), lambda: t.measure(ARCH)):
        with pytest.raises(ValueError, match="target 'hash' is a fitted model, not measured here"):
            call()


def test_describe_is_part_of_the_contract() -> None:
    assert "describe" in Target.__abstractmethods__ and "lookup" in Target.__abstractmethods__
