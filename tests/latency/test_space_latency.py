"""Vectorised prediction over a search space equals the per-network path; fastest() is optimal."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import HashTarget

from hwnas.latency.keys import layer_keys
from hwnas.latency.pixel import load_pixel_target
from hwnas.latency.space_latency import SpaceLatency, space_keys, space_structure
from hwnas.space import searchspace

SPACES = ("mobilenetv3", "mnasnet")
N_RANDOM = 150
TOL_MS = 1e-9


@pytest.fixture(scope="module", params=SPACES)
def space(request):
    return searchspace.get_space(request.param)


@pytest.mark.parametrize("make_target", [load_pixel_target, HashTarget], ids=["pixel", "overhead"])
def test_fast_equals_slow_on_random_nets(space, make_target) -> None:
    target = make_target()
    idx = space.sample_indices(np.random.default_rng(7), N_RANDOM)
    fast = target.predict_many(idx, space=space)
    archs = [space.decode(space.from_indices(row)) for row in idx]
    slow = np.array([target.predict(a) for a in archs])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=TOL_MS)
    np.testing.assert_allclose(target.predict_many(archs), slow, rtol=0, atol=TOL_MS)
    np.testing.assert_array_equal(target.predict_many(idx, space=space.name), fast)  # by name
    assert target.space_latency(space.name) is target.space_latency(space)  # built once


def test_other_resolution_and_classes(space) -> None:
    target = HashTarget()
    idx = space.sample_indices(np.random.default_rng(3), 20)
    fast = SpaceLatency(target, space, resolution=160, num_classes=10).predict_indices(idx)
    slow = [target.predict(space.decode(space.from_indices(r)), 160, 10) for r in idx]
    np.testing.assert_allclose(fast, slow, rtol=0, atol=TOL_MS)


def test_space_keys_cover_every_layer(space) -> None:
    keys = set(space_keys(space))
    rng = np.random.default_rng(11)
    for _ in range(50):
        assert set(layer_keys(space.sample_random(rng))) <= keys
    assert len(keys) == len(space_structure(space).keys)


def test_fastest_is_a_local_and_global_minimum(space) -> None:
    target = HashTarget()
    fast = SpaceLatency(target, space)
    best = fast.fastest()
    assert best.ms == pytest.approx(target.predict(best.arch), abs=TOL_MS)
    assert space.decode(best.params) == best.arch
    # no single decision change makes it faster ...
    for col, d in enumerate(space.decisions):
        alt = np.repeat(best.indices[None, :], len(d.choices), axis=0)
        alt[:, col] = np.arange(len(d.choices))
        assert fast.predict_indices(alt).min() >= best.ms - TOL_MS, d.name
    # ... and no random network either
    sample = space.sample_indices(np.random.default_rng(5), 50_000)
    assert fast.predict_indices(sample).min() >= best.ms - TOL_MS


def test_table_is_looked_up_once(space) -> None:
    target = HashTarget()
    target.predict_many(space.sample_indices(np.random.default_rng(0), 10), space=space)
    n = target.looked_up
    target.predict_many(space.sample_indices(np.random.default_rng(1), 10), space=space)
    assert target.looked_up == n == len(space_structure(space).keys)


def test_bad_index_matrices(space) -> None:
    fast = SpaceLatency(HashTarget(), space)
    d = len(space.decisions)
    with pytest.raises(ValueError, match=rf"\(n, {d}\) integer matrix"):
        fast.predict_indices(np.zeros((3, d - 1), dtype=int))
    with pytest.raises(ValueError, match="integer matrix"):
        fast.predict_indices(np.zeros((3, d)))
    bad = np.zeros((2, d), dtype=int)
    bad[1, 2] = 5
    with pytest.raises(ValueError, match=f"decision '{space.decisions[2].name}' .row 1."):
        fast.predict_indices(bad)
    assert fast.predict_indices(np.zeros((0, d), dtype=int)).shape == (0,)


def test_predict_params(space) -> None:
    target = HashTarget()
    params = space.sample_params(np.random.default_rng(2))
    got = SpaceLatency(target, space).predict_params(params)
    assert got == pytest.approx(target.predict(space.decode(params)), abs=TOL_MS)
