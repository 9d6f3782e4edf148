"""The factorized search spaces: decisions, decode/encode, sampling, references as points."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import optuna
import pytest

from hwnas.space import Arch, BlockSpec, reference
from hwnas.space.searchspace import (
    BLOCK_FIELDS,
    SPACE_NAMES,
    Decision,
    SearchSpace,
    block_uniform,
    get_space,
    nearest_expansion,
)

FIELDS = tuple(f for f, _ in BLOCK_FIELDS)
ROUND_TRIPS = 300
SMALLEST_SAMPLES = 500


@pytest.fixture(params=SPACE_NAMES)
def space(request) -> SearchSpace:
    return get_space(request.param)


def random_params(space: SearchSpace, seed: int, n: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [space.sample_params(rng) for _ in range(n)]


# --- the decision table --------------------------------------------------------
def test_decisions_are_named_by_block_in_a_fixed_order(space: SearchSpace) -> None:
    names = [d.name for d in space.decisions]
    expected = [f"b{b}_{f}" for b in range(space.num_blocks) for f in FIELDS]
    assert names == expected + (["head"] if space.name == "mobilenetv3" else [])
    assert len(set(names)) == len(names)
    for b in range(space.num_blocks):
        assert [d.name for d in space.block_decisions(b)] == [f"b{b}_{f}" for f in FIELDS]
    assert space.decisions == (*(d for b in range(space.num_blocks) for d in space.block_decisions(b)),
                               *space.head_decisions())


def test_choices_are_optuna_primitives_and_as_specified(space: SearchSpace) -> None:
    by_name = {d.name: d.choices for d in space.decisions}
    assert by_name["b1_op"] == ("conv", "ds", "ir1", "ir3", "ir4", "ir6")
    assert by_name["b1_kernel"] == (3, 5, 7)
    assert by_name["b1_se"] == (0.0, 0.25)
    assert by_name["b1_act"] == ("relu", "hswish")
    assert by_name["b1_skip"] == (True, False)
    assert by_name["b1_filters"] == (0.75, 1.0, 1.25)
    assert by_name["b1_layers"] == (-1, 0, 1)
    assert by_name["b0_layers"] == (0, 1)  # a one-layer block cannot lose a layer
    for d in space.decisions:
        assert all(type(c) in (bool, int, float, str) for c in d.choices), d


def test_heads() -> None:
    assert [d.choices for d in get_space("mobilenetv3").head_decisions()] == [("v3", "v2")]
    assert get_space("mnasnet").head_decisions() == ()


def test_size_is_the_product_of_choice_counts(space: SearchSpace) -> None:
    # closed form from MnasNet's factorisation (op 6, kernel 3, SE 2, act 2, skip 2, filters 3;
    # layers 3 where a block may shrink, else 2; head 2 for mobilenetv3), not from space.decisions
    per_block = 6 * 3 * 2 * 2 * 2 * 3
    one_layer = sum(sk.layers == 1 for sk in space.skeleton.blocks)
    heads = 2 if space.name == "mobilenetv3" else 1
    assert space.size() == per_block ** space.num_blocks * 3 ** (space.num_blocks - one_layer) \
        * 2 ** one_layer * heads


def test_decision_rejects_bad_choices() -> None:
    with pytest.raises(ValueError, match="distinct"):
        Decision("x", (1, 1.0))
    with pytest.raises(ValueError, match="not a bool"):
        Decision("x", ((1, 2),))


# --- decode / encode -------------------------------------------------------------
def test_random_params_round_trip(space: SearchSpace) -> None:
    for params in random_params(space, 0, ROUND_TRIPS):
        arch = space.decode(params)
        back = space.encode(arch)
        assert space.decode(back) == arch
        assert Arch.from_str(arch.to_str()) == arch
        idx = space.to_indices(params)
        assert idx.dtype == np.int64 and idx.shape == (len(space.decisions),)
        assert space.from_indices(idx) == params
        assert space.encode(space.decode(space.from_indices(space.to_indices(back)))) == back


def test_decode_follows_the_structure(space: SearchSpace) -> None:
    for params in random_params(space, 1, 50):
        arch = space.decode(params)
        assert len(arch.stages) == len(space.skeleton.blocks)
        for b, (stage, sk) in enumerate(zip(arch.stages, space.skeleton.blocks, strict=True)):
            assert len(stage) == max(1, sk.layers + params[f"b{b}_layers"])
            assert [s.stride for s in stage] == [sk.stride] + [1] * (len(stage) - 1)
            assert {s.out_chs for s in stage} == {space.block_out_chs(b, params)}
            assert len({replace(s, stride=1) for s in stage}) == 1  # one layer, repeated
            if params[f"b{b}_op"] == "conv":
                assert stage[0].se_ratio == 0  # SE ignored for conv


def test_block_inputs_chain(space: SearchSpace) -> None:
    params = random_params(space, 2, 1)[0]
    arch = space.decode(params)
    layers = list(arch.layers(224))
    firsts = [la for la in layers if la.index == 0]
    res = 224 // 2
    for b, la in enumerate(firsts):
        want = space.stem.out_chs if b == 0 else space.block_out_chs(b - 1, params)
        assert (la.in_chs, la.in_res) == (want, res)
        res = la.out_res


def test_filters_round_with_make_divisible() -> None:
    sp = get_space("mnasnet")
    params = sp.sample_params(np.random.default_rng(0))
    got = {f: sp.block_out_chs(3, {**params, "b3_filters": f}) for f in (0.75, 1.0, 1.25)}
    assert got == {0.75: 64, 1.0: 80, 1.25: 104}  # 80 * 1.25 = 100 -> 104


def test_json_style_values_decode() -> None:
    sp = get_space("mnasnet")
    params = sp.sample_params(np.random.default_rng(5))
    loose = {k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in params.items()}
    assert sp.decode(loose) == sp.decode(params)


@pytest.mark.parametrize(("change", "message"), [
    ({"b9_op": "ds"}, "unknown decision 'b9_op' for search space 'mnasnet': known are b0..b6_{op,"),
    ({"b2_kernel": 4}, "decision 'b2_kernel' must be one of 3, 5, 7, got 4"),
    ({"b2_skip": 1}, "decision 'b2_skip' must be one of True, False, got 1"),
    ({"b2_layers": True}, "decision 'b2_layers' must be one of -1, 0, 1, got True"),
    ({"b0_layers": -1}, "decision 'b0_layers' must be one of 0, 1, got -1"),
    ({"b1_op": "ir5"}, "decision 'b1_op' must be one of 'conv', 'ds', 'ir1', 'ir3', 'ir4', 'ir6'"),
    ({"b3_se": None}, "decision 'b3_se' must be one of 0.0, 0.25, got None"),
])
def test_decode_errors_name_the_value(change: dict, message: str) -> None:
    sp = get_space("mnasnet")
    params = {**sp.sample_params(np.random.default_rng(0)), **change}
    with pytest.raises(ValueError, match="^" + _escape(message)) as info:
        sp.decode(params)
    assert "\n" not in str(info.value)


def test_decode_missing_decision() -> None:
    sp = get_space("mobilenetv3")
    params = sp.sample_params(np.random.default_rng(0))
    del params["head"]
    with pytest.raises(ValueError, match=r"^missing decision 'head' \(choices: 'v3', 'v2'\)$"):
        sp.decode(params)
    with pytest.raises(ValueError, match="must be a mapping"):
        sp.decode([1, 2])


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_encode_rejects_non_points() -> None:
    v3, mnas = get_space("mobilenetv3"), get_space("mnasnet")
    with pytest.raises(ValueError, match="^stem stem_k3_s2_c32_nre is not a point"):
        v3.encode(reference("mnasnet_a1"))
    with pytest.raises(ValueError, match="^7 stages are not a point of search space 'mobilenetv3'"):
        v3.encode(replace(reference("mnasnet_a1"), stem=v3.stem))
    with pytest.raises(ValueError, match="^block 1 .* nearest point is 'ir_r2_k3_s2_e4_c24_nre'$"):
        v3.encode(reference("mobilenetv3_large"))
    wide = replace(reference("mnasnet_a1", width=1.4), stem=mnas.stem)
    with pytest.raises(ValueError, match="^block 2 .* its channels are one of 32, 40, 48$"):
        mnas.encode(wide)  # blocks 0 and 1 fit (24 = 16 x 1.25, 32 = 24 x 1.25), 56 does not
    a1 = reference("mnasnet_a1")
    odd = replace(a1, stages=(a1.stages[0], tuple(replace(b, exp_ratio=2) for b in a1.stages[1]),
                              *a1.stages[2:]))
    with pytest.raises(ValueError, match=r"^block 1 .* ir expansions are \(1, 3, 4, 6\)$"):
        mnas.encode(odd)
    mixed = replace(a1, stages=(a1.stages[0], (a1.stages[1][0], replace(a1.stages[1][1], kernel=5)),
                                *a1.stages[2:]))
    with pytest.raises(ValueError, match="nearest point is 'ir_r2_k3_s2_e6_c24_nre'"):
        mnas.encode(mixed)
    with pytest.raises(ValueError, match="head head_v2_c1280_nre is not a point"):
        v3.encode(replace(block_uniform(reference("mobilenetv3_large")), head=mnas.head({})))
    with pytest.raises(ValueError, match="expected an Arch"):
        mnas.encode("stem_k3_s2_c32")


def test_index_errors(space: SearchSpace) -> None:
    n = len(space.decisions)
    with pytest.raises(ValueError, match=f"indices must be {n} ints"):
        space.from_indices([0] * (n - 1))
    with pytest.raises(ValueError, match="index 6 of decision 'b0_op' must be in 0..5"):
        space.from_indices([6] + [0] * (n - 1))
    with pytest.raises(ValueError, match="number of samples must be an int >= 0, got -1"):
        space.sample_indices(np.random.default_rng(0), -1)
    with pytest.raises(ValueError, match="block must be in"):
        space.stage(space.num_blocks, {})


# --- sampling --------------------------------------------------------------------
def test_sampling_is_seeded(space: SearchSpace) -> None:
    a = [space.sample_random(np.random.default_rng(11)) for _ in range(3)]
    assert len({x.to_str() for x in a}) == 1
    rng1, rng2 = np.random.default_rng(4), np.random.default_rng(4)
    assert [space.sample_params(rng1) for _ in range(5)] == [space.sample_params(rng2) for _ in range(5)]
    idx = space.sample_indices(np.random.default_rng(4), 1000)
    assert idx.shape == (1000, len(space.decisions))
    high = np.array([len(d.choices) for d in space.decisions])
    assert (idx >= 0).all() and (idx < high).all()
    assert (idx.max(axis=0) == high - 1).all() and (idx.min(axis=0) == 0).all()


def test_sample_with_an_optuna_study(space: SearchSpace) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    archs = []

    def objective(trial: optuna.Trial) -> float:
        arch = space.sample(trial)
        archs.append(arch)
        return arch.madds(64) / 1e6

    study.optimize(objective, n_trials=4)
    assert len(study.trials) == 4
    for trial, arch in zip(study.trials, archs, strict=True):
        assert list(trial.params) == [d.name for d in space.decisions]
        assert space.decode(trial.params) == arch
    assert len({a.to_str() for a in archs}) > 1


def test_smallest_has_the_fewest_madds(space: SearchSpace) -> None:
    small = space.smallest()
    space.encode(small)  # a point of the space
    best = min(space.sample_random(np.random.default_rng(9)).madds()
               for _ in range(SMALLEST_SAMPLES))
    assert small.madds() <= best
    rng = np.random.default_rng(10)
    for _ in range(20):  # no single-decision change makes it cheaper
        params = space.encode(small)
        d = space.decisions[rng.integers(len(space.decisions))]
        params[d.name] = d.choices[rng.integers(len(d.choices))]
        assert space.decode(params).madds() >= small.madds()


def test_get_space_errors() -> None:
    with pytest.raises(ValueError, match="^unknown search space 'resnet': known are mobilenetv3, mnasnet$"):
        get_space("resnet")
    assert get_space("mnasnet") is get_space("mnasnet")


# --- reference networks as points ------------------------------------------------
def test_mnasnet_a1_is_a_point_of_the_mnasnet_space() -> None:
    sp = get_space("mnasnet")
    a1 = reference("mnasnet_a1")
    params = sp.encode(a1)
    assert sp.decode(params) == a1
    assert sp.decode(params).to_str() == a1.to_str()
    assert all(params[f"b{b}_filters"] == 1.0 and params[f"b{b}_layers"] == 0 for b in range(7))
    assert params["b0_skip"] is False and params["b2_se"] == 0.25


def test_block_uniform_mobilenetv3_large_is_a_point() -> None:
    sp = get_space("mobilenetv3")
    v3 = reference("mobilenetv3_large")
    uni = block_uniform(v3)
    assert uni.stem == v3.stem and uni.head == v3.head
    differ = 0
    for s_uni, s_v3 in zip(uni.stages, v3.stages, strict=True):
        assert len(s_uni) == len(s_v3)
        assert len({b.exp_ratio for b in s_uni}) == 1  # one expansion per stage
        for a, b in zip(s_uni, s_v3, strict=True):
            assert replace(a, exp_ratio=1.0) == replace(b, exp_ratio=1.0)
            differ += a.exp_ratio != b.exp_ratio
    assert differ == 4  # 3 (block 1), 2.5, 2.3, 2.3 (block 3)
    params = sp.encode(uni)
    assert sp.decode(params) == uni and sp.decode(params).to_str() == uni.to_str()
    assert params["head"] == "v3" and params["b1_op"] == "ir4" and params["b3_op"] == "ir6"
    assert uni.madds() > v3.madds()


def test_block_uniform_snaps_and_keeps_other_layers() -> None:
    assert [nearest_expansion(e) for e in (0.5, 2, 2.3, 3.5, 5, 5.5, 9)] == [1, 1, 3, 3, 4, 6, 6]
    fb = reference("fbnet_c")
    uni = block_uniform(fb)
    assert all(len({b.exp_ratio for b in s}) == 1 for s in uni.stages)
    assert uni.stages[2][1].exp_ratio == 6  # fbnet_c stage 2 starts with e6
    ds = BlockSpec("ds", 3, 1, 16)
    arch = Arch(stem=fb.stem, stages=((ds,),), head=fb.head)
    assert block_uniform(arch).stages == arch.stages and block_uniform(arch).name is None
