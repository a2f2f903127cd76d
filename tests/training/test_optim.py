"""Optimisers, schedule and clipping against formulas written out here, independently, in float64."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_core.config import ModelConfig, TrainConfig
from model_core.model import Transformer
from model_core.params import init_params
from model_core.training.optim import SGD, Adam, AdamW, clip_grad_norm, lr_at, make_optimizer

NAMES_SHAPES = {"layer.W_in": (2, 3), "layer.b_in": (3,), "ln.w": (3,), "layer.W_out": (3, 2)}
LRS = [0.1, 0.05, 0.02]


def tiny_params(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=s) for n, s in NAMES_SHAPES.items()}  # float64


def tiny_grads(n_steps=3, seed=1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{n: rng.normal(size=s) for n, s in NAMES_SHAPES.items()} for _ in range(n_steps)]


def run(opt_cls, grads, **kwargs) -> dict[str, np.ndarray]:
    params = tiny_params()
    opt = opt_cls(params, **kwargs)
    for g, lr in zip(grads, LRS, strict=False):
        opt.step(params, {n: a.copy() for n, a in g.items()}, lr)
    return params


# ---------------------------------------------------------------- each optimiser by hand
def test_sgd_momentum_matches_hand_computation():
    grads, mu = tiny_grads(), 0.8
    got = run(SGD, grads, momentum=mu)
    for n in NAMES_SHAPES:
        p = tiny_params()[n]
        g1, g2, g3 = (g[n] for g in grads)
        b1 = g1  # buf = mu * 0 + g1
        p = p - LRS[0] * b1
        b2 = mu * g1 + g2
        p = p - LRS[1] * b2
        b3 = mu * mu * g1 + mu * g2 + g3
        p = p - LRS[2] * b3
        np.testing.assert_allclose(got[n], p, rtol=1e-12, atol=1e-14)


def adam_by_hand(p, gs, lrs, b1, b2, eps, wd=0.0):
    """Adam written out step by step, with the bias corrections spelled out."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, (g, lr) in enumerate(zip(gs, lrs, strict=True), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps) - lr * wd * p
    return p


@pytest.mark.parametrize("b1, b2", [(0.9, 0.98), (0.5, 0.9)])
def test_adam_matches_hand_computation(b1, b2):
    grads = tiny_grads()
    got = run(Adam, grads, beta1=b1, beta2=b2, eps=1e-8)
    for n in NAMES_SHAPES:
        want = adam_by_hand(tiny_params()[n], [g[n] for g in grads], LRS, b1, b2, 1e-8)
        np.testing.assert_allclose(got[n], want, rtol=1e-12, atol=1e-14)


def test_adam_first_step_moves_each_element_by_lr():
    # With bias correction, step 1 is lr * g / (|g| + eps): a sign step of size lr.
    params = tiny_params()
    before = {n: p.copy() for n, p in params.items()}
    g = tiny_grads(1)[0]
    Adam(params, eps=0.0).step(params, g, 0.01)
    for n in params:
        np.testing.assert_allclose(before[n] - params[n], 0.01 * np.sign(g[n]), rtol=1e-12)


def test_adamw_matches_hand_computation_and_decays_only_weight_matrices():
    grads, wd = tiny_grads(), 0.1
    got = run(AdamW, grads, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=wd)
    for n in NAMES_SHAPES:
        decayed = n.rsplit(".", 1)[1].startswith("W_")
        want = adam_by_hand(tiny_params()[n], [g[n] for g in grads], LRS, 0.9, 0.98, 1e-8, wd if decayed else 0.0)
        np.testing.assert_allclose(got[n], want, rtol=1e-12, atol=1e-14)


def test_weight_decay_on_the_real_model_touches_only_W_params():
    # Zero gradients: Adam's update is 0 / (0 + eps) = 0, so only the decay moves anything.
    cfg = ModelConfig(norm="pre", positional="learned")
    params = init_params(cfg)
    for p in params.values():  # make LayerNorm gains and biases non-trivial, so decay would show
        p += 0.5
    before = {n: p.copy() for n, p in params.items()}
    opt = make_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.1), params)
    opt.step(params, {n: np.zeros_like(p) for n, p in params.items()}, 0.5)
    for n, p in params.items():
        leaf = n.rsplit(".", 1)[1]
        if leaf.startswith("W_"):
            np.testing.assert_allclose(p, before[n] * (1 - 0.5 * 0.1), rtol=1e-6)
        else:
            assert leaf == "w" or leaf.startswith("b"), n
            np.testing.assert_array_equal(p, before[n])


def test_make_optimizer_picks_the_named_kind_with_the_config_hyperparameters():
    cfg = TrainConfig(optimizer="sgd", momentum=0.7)
    opt = make_optimizer(cfg, tiny_params())
    assert type(opt) is SGD and opt.momentum == 0.7
    opt = make_optimizer(TrainConfig(optimizer="adam", beta1=0.8, beta2=0.95), tiny_params())
    assert type(opt) is Adam and (opt.beta1, opt.beta2) == (0.8, 0.95)
    opt = make_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.2), tiny_params())
    assert type(opt) is AdamW and opt.weight_decay == 0.2


# ---------------------------------------------------------------- in place, dtype, errors
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_step_updates_the_model_params_in_place_and_keeps_float32(kind):
    model = Transformer(ModelConfig(seed=2))
    opt = make_optimizer(TrainConfig(optimizer=kind), model.params)
    arrays = {n: p for n, p in model.params.items()}  # the objects the model will use from now on
    before = {n: p.copy() for n, p in arrays.items()}
    tokens = np.random.default_rng(0).integers(1, 21, (4, 8))
    targets = np.where(np.arange(8) >= 4, tokens, -1)
    loss, grads, _ = model.loss_and_grads(tokens, targets)
    opt.step(model.params, grads, 1e-2)
    for n, p in model.params.items():
        assert p is arrays[n] and p.dtype == np.float32 and p.flags.c_contiguous
    assert any(not np.array_equal(before[n], p) for n, p in model.params.items())
    assert model.loss_and_grads(tokens, targets)[0] < loss  # one small step downhill


def test_arrays_swapped_in_after_construction_are_still_updated_in_place():
    grads = tiny_grads(2)
    fast = tiny_params()
    opt_fast = Adam(fast)
    slow = tiny_params()
    opt_slow = Adam(slow)
    slow = {n: p.copy() for n, p in slow.items()}  # not the optimiser's own arrays any more
    held = dict(slow)
    for g in grads:
        opt_fast.step(fast, g, 0.1)
        opt_slow.step(slow, g, 0.1)
    for n in fast:
        assert slow[n] is held[n]
        np.testing.assert_allclose(slow[n], fast[n], rtol=1e-12)


def test_step_refuses_missing_extra_or_misshapen_gradients():
    params = tiny_params()
    opt = Adam(params)
    g = tiny_grads(1)[0]
    with pytest.raises(ValueError, match="no gradient for parameter 'ln.w'"):
        opt.step(params, {n: a for n, a in g.items() if n != "ln.w"}, 0.1)
    with pytest.raises(ValueError, match="unknown parameter"):
        opt.step(params, {**g, "other.W": np.zeros(2)}, 0.1)
    with pytest.raises(ValueError, match="'layer.W_in' has shape \\(3, 2\\), expected \\(2, 3\\)"):
        opt.step(params, {**g, "layer.W_in": np.zeros((3, 2))}, 0.1)


def test_an_optimiser_needs_one_floating_dtype():
    with pytest.raises(ValueError, match="one floating dtype"):
        Adam({"a.W_x": np.zeros(2, np.float32), "a.b": np.zeros(2, np.float64)})


# ---------------------------------------------------------------- state
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_state_round_trip_gives_identical_subsequent_steps(kind):
    cfg = TrainConfig(optimizer=kind)
    grads = tiny_grads(5, seed=7)
    a = {n: p.astype(np.float32) for n, p in tiny_params().items()}
    opt_a = make_optimizer(cfg, a)
    for g in grads[:2]:
        opt_a.step(a, g, 0.05)
    state = opt_a.state_dict()
    names = {"sgd": ["momentum"], "adam": ["m", "v"], "adamw": ["m", "v"]}[kind]
    assert set(state) == {f"optim.{s}.{n}" for s in names for n in NAMES_SHAPES} | {"optim.t"}
    assert state["optim.t"].dtype == np.int64 and int(state["optim.t"][0]) == 2
    b = {n: p.copy() for n, p in a.items()}
    opt_b = make_optimizer(cfg, b)
    opt_b.load_state_dict(state)
    state["optim.t"][0] = 99  # the optimiser keeps its own copy
    for g in grads[2:]:
        opt_a.step(a, g, 0.05)
        opt_b.step(b, g, 0.05)
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])
    assert opt_b.t == 5


def test_state_is_keyed_by_parameter_name():
    params = tiny_params()
    opt = Adam(params)
    opt.step(params, tiny_grads(1)[0], 0.1)
    assert set(opt.state) == {"m", "v"}
    for n, shape in NAMES_SHAPES.items():
        assert opt.state["m"][n].shape == shape
        np.testing.assert_array_equal(opt.state_dict()[f"optim.v.{n}"], opt.state["v"][n])


def test_load_state_dict_refuses_what_does_not_fit():
    params = tiny_params()
    opt = Adam(params)
    good = opt.state_dict()
    cases = [
        ({k: v for k, v in good.items() if k != "optim.m.ln.w"}, "'optim.m.ln.w' is missing"),
        ({k: v for k, v in good.items() if k != "optim.t"}, "step counter"),
        ({**good, "optim.m.ln.w": np.zeros(4)}, "'optim.m.ln.w' has shape \\(4,\\), expected \\(3,\\)"),
        ({**good, "optim.m.ln.w": np.full(3, np.nan)}, "'optim.m.ln.w' holds NaN"),
        ({**good, "optim.t": np.array([1.5])}, "whole number"),
        ({**good, "optim.m.nope": np.zeros(3)}, "unexpected optimiser state array 'optim.m.nope'"),
        (SGD(tiny_params()).state_dict(), "unexpected optimiser state 'optim.momentum"),
    ]
    for state, phrase in cases:
        with pytest.raises(ValueError, match=phrase):
            opt.load_state_dict(state)


# ---------------------------------------------------------------- schedule
def test_lr_warms_up_linearly_from_step_zero():
    cfg = TrainConfig(lr=1e-2, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-2 / 10)
    assert lr_at(4, cfg) == pytest.approx(1e-2 * 5 / 10)
    assert lr_at(9, cfg) == pytest.approx(1e-2)  # end of warm-up
    assert lr_at(10, cfg) == pytest.approx(1e-2)  # start of the cosine


def test_lr_cosine_closed_form_middle_and_end():
    lr, floor = 1e-2, 1e-3
    cfg = TrainConfig(lr=lr, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(60, cfg) == pytest.approx(floor + (lr - floor) * 0.5)  # half way: cos(pi / 2) = 0
    assert lr_at(35, cfg) == pytest.approx(floor + (lr - floor) * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at(110, cfg) == pytest.approx(floor)
    assert lr_at(500, cfg) == pytest.approx(floor)  # past the end: stays at the floor


def test_lr_constant_and_no_warmup():
    cfg = TrainConfig(lr=3e-3, warmup_steps=0, schedule="constant", steps=100)
    assert [lr_at(s, cfg) for s in (0, 50, 99, 1000)] == [3e-3] * 4
    cfg = TrainConfig(lr=3e-3, warmup_steps=0, steps=100, min_lr_ratio=0.0)
    assert lr_at(0, cfg) == pytest.approx(3e-3) and lr_at(100, cfg) == 0.0


@given(
    lr=st.floats(1e-6, 10.0),
    ratio=st.floats(0.0, 1.0),
    warmup=st.integers(0, 300),
    steps=st.integers(1, 2000),
    step=st.integers(0, 5000),
    schedule=st.sampled_from(["cosine", "constant"]),
)
def test_lr_is_never_negative_nor_above_lr(lr, ratio, warmup, steps, step, schedule):
    cfg = TrainConfig(lr=lr, min_lr_ratio=ratio, warmup_steps=warmup, steps=steps, schedule=schedule)
    value = lr_at(step, cfg)
    assert 0.0 <= value <= lr * (1 + 1e-12)
    if step >= max(warmup, steps) and schedule == "cosine":
        assert value == pytest.approx(ratio * lr)


# ---------------------------------------------------------------- clipping
def test_clip_grad_norm_scales_to_exactly_max_norm():
    grads = tiny_grads(1)[0]
    want = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    before = {n: g.copy() for n, g in grads.items()}
    assert clip_grad_norm(grads, 0.5) == pytest.approx(want, rel=1e-12)
    after = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    assert after == pytest.approx(0.5, rel=1e-12)
    for n in grads:  # same direction
        np.testing.assert_allclose(grads[n], before[n] * (0.5 / want), rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_and_zero_max_norm_alone():
    grads = tiny_grads(1)[0]
    before = {n: g.copy() for n, g in grads.items()}
    norm = clip_grad_norm(grads, 1e6)
    assert clip_grad_norm(grads, 0.0) == norm
    for n in grads:
        np.testing.assert_array_equal(grads[n], before[n])


def test_clip_grad_norm_returns_nan_unscaled_and_survives_float32_overflow():
    grads = {n: g.astype(np.float32) for n, g in tiny_grads(1)[0].items()}
    grads["ln.w"][0] = np.nan
    before = {n: g.copy() for n, g in grads.items()}
    assert math.isnan(clip_grad_norm(grads, 1.0))
    for n in grads:
        np.testing.assert_array_equal(grads[n], before[n])
    big = {"a.W_x": np.full(4, 1e20, np.float32)}  # its float32 sum of squares overflows
    assert clip_grad_norm(big, 1.0) == pytest.approx(2e20, rel=1e-6)
    assert float(np.linalg.norm(big["a.W_x"].astype(np.float64))) == pytest.approx(1.0, rel=1e-6)
