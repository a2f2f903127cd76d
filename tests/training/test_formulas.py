"""The Train page's formulas and sentences (model_core.training.formulas) against the code that trains."""

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from model_core import TaskModel
from model_core.config import ModelConfig, TrainConfig
from model_core.params import param_shapes
from model_core.task import TaskConfig
from model_core.training import formulas
from model_core.training.optim import SGD, Adam, lr_at, make_optimizer

NAMES = list(param_shapes(ModelConfig(vocab_size=21, pad_id=0)))


def numbers(latex: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", latex))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_the_update_formula_carries_the_optimisers_own_constants(optimizer):
    """Unusual constants: each must appear, and the defaults it replaced must not."""
    cfg = TrainConfig(optimizer=optimizer, momentum=0.8, beta1=0.85, beta2=0.95, weight_decay=0.05)
    latex, caption = formulas.update_latex(cfg), formulas.update_caption(cfg, NAMES)
    found = numbers(latex)
    if optimizer == "sgd":
        assert "0.8" in found and "0.9" not in found and "0.95" not in found
        assert "with momentum" in caption and "5 times as far" in caption  # 1 / (1 - 0.8)
    else:
        assert {"0.85", "0.95"} <= found and "0.98" not in found and "0.9" not in found
        assert "10^{-8}" in latex  # Adam's eps, as the optimiser holds it
        assert ("0.05" in found) == (optimizer == "adamw")
        assert ("Weight decay" in caption) == (optimizer == "adamw")


def test_the_default_recipe_is_the_one_the_issue_names():
    cfg = TrainConfig()
    assert "0.98" in numbers(formulas.update_latex(cfg))
    assert "0.9" in numbers(formulas.update_latex(replace(cfg, optimizer="sgd")))
    caption = formulas.update_caption(cfg, NAMES)
    # decayed: every weight matrix; not: LayerNorm gains and biases
    decayed, kept = caption.split("towards zero;")
    assert all(k in decayed for k in ("W_E", "W_Q", "W_in", "W_U")) and "b_" not in decayed
    assert all(k in kept for k in ("ln1.w", "ln1.b", "attn.b_Q", "unembed.b_U"))


def test_sgd_momentum_moves_a_steady_gradient_one_over_one_minus_mu_as_far():
    """The caption's claim, on the optimiser itself: a constant gradient's step tends to lr * g / (1 - mu)."""
    params = {"W_x": np.zeros(3, np.float64)}
    opt = SGD(params, momentum=0.9)
    g = {"W_x": np.array([1.0, -2.0, 0.5])}
    for _ in range(300):
        before = params["W_x"].copy()
        opt.step(params, g, lr=0.01)
    np.testing.assert_allclose(before - params["W_x"], 0.01 * g["W_x"] / (1 - 0.9), rtol=1e-9)


def test_adams_first_step_is_plus_or_minus_eta_on_every_weight():
    params = {"W_x": np.zeros(4, np.float64)}
    opt = Adam(params, beta1=0.9, beta2=0.98)
    opt.step(params, {"W_x": np.array([3e-4, -7.0, 0.02, -1e-3])}, lr=0.01)
    np.testing.assert_allclose(params["W_x"], -0.01 * np.array([1, -1, 1, -1]), rtol=1e-4)


@pytest.mark.parametrize("warmup, schedule", [(50, "cosine"), (0, "cosine"), (20, "constant")])
def test_the_schedule_formula_read_literally_is_lr_at(warmup, schedule):
    """The cases of `schedule_latex`, evaluated as written, equal `lr_at` at every step (and past the end)."""
    cfg = TrainConfig(lr=0.01, steps=300, warmup_steps=warmup, schedule=schedule, min_lr_ratio=0.1)
    latex = formulas.schedule_latex(cfg)
    assert ("cos" in latex) == (schedule == "cosine") and f"T = {cfg.steps}" in latex
    for t in range(0, 320):
        if t < warmup:
            written = cfg.lr * (t + 1) / warmup
        elif schedule == "constant":
            written = cfg.lr
        else:
            progress = min(t - warmup, cfg.steps - warmup) / (cfg.steps - warmup)
            written = 0.1 * cfg.lr + 0.9 * cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
        assert lr_at(t, cfg) == pytest.approx(written, rel=1e-12), t


def test_the_loss_is_the_mean_over_answer_tokens_not_over_expressions():
    """On a causal model, answers of 2 and 3 tokens: loss_and_grads equals -mean log p over all answer tokens."""
    model = TaskModel.new(TaskConfig(max_value=99), causal=True, norm="pre", n_layers=1, d_model=16, n_heads=2,
                          d_ff=32)  # fmt: skip
    exprs = model.expressions([model.parse("Max ( 1 2 3 )"), model.parse("Max ( 10 20 30 )")])
    batch = model.encode(exprs)
    loss, _, logits = model.transformer.loss_and_grads(batch.tokens, batch.targets)
    targets = batch.targets[batch.targets >= 0]
    per_token = -(logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True)))[
        np.arange(len(targets)), targets
    ]
    counts = (batch.targets >= 0).sum(1)
    assert sorted(counts.tolist()) == [2, 3]  # "3" <eos>; "30" digits and <eos>
    assert loss == pytest.approx(per_token.mean(), rel=1e-5)
    per_expression = np.mean([per_token[:counts[0]].mean(), per_token[counts[0]:].mean()])
    assert abs(per_expression - per_token.mean()) > 1e-4  # the two means differ here: the formula matters
    assert r"\frac{1}{N}" in formulas.loss_latex(True) and "y_{b,<t}" in formulas.loss_latex(True)
    assert "y_{b,<t}" not in formulas.loss_latex(False) and "N = B" in formulas.loss_caption(False)


def test_clipping_sentence_counts_the_clipped_steps():
    norms = np.array([0.2, 1.5, 0.9, 3.0, 1.0])
    assert formulas.clipping_sentence(norms, 1.0).startswith("Clipping acted on 2 of the 5 steps (40%)")
    assert "largest 3" in formulas.clipping_sentence(norms, 1.0)
    assert formulas.clipping_sentence(norms, 5.0).startswith("Clipping never acted")
    assert formulas.clipping_sentence(norms, 0.0) == "Clipping is off for this run."
    assert formulas.clipping_latex(TrainConfig(grad_clip=0.0)) is None
    assert "2.5" in formulas.clipping_latex(TrainConfig(grad_clip=2.5))


def test_an_optimiser_built_for_the_formulas_is_the_trainers():
    for optimizer in ("sgd", "adam", "adamw"):
        cfg = TrainConfig(optimizer=optimizer)
        built = make_optimizer(cfg, {"W_x": np.zeros(2, np.float32)})
        assert formulas.OPTIMIZER_NAMES[optimizer].split()[0].lower() == type(built).__name__.lower()


def test_a_models_download_name_is_a_portable_file_name():
    from model_core.training.job import default_name, file_name

    name = default_name(TaskConfig(operations=("Max", "Min")), ModelConfig(vocab_size=21, pad_id=0), seed=3)
    assert "×" in name and "," in name and "(" in name  # what the sidebar shows
    assert file_name(name) == "trained_0-9_Max_Min_2x4_d64_seed_3.safetensors"
    assert file_name("::") == "model.safetensors"
