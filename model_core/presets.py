"""Named recipes: a task, a model and a training configuration.

The shipped models in `pretrained/` are each made by one command:
`python -m model_core train --preset NAME --out pretrained/NAME.safetensors`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import TrainConfig
from .task import TaskConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    task: TaskConfig
    model: dict  # ModelConfig fields (vocab_size and pad_id come from the vocabulary)
    train: TrainConfig


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "digits-0-9",
            "The original model and task: a bidirectional 2-block, 4-head, d_model 64 encoder "
            "(post-norm, ReLU, sinusoidal positions) answering First/Second/Last/Max/Min of three values in 0-9. "
            "Trained on 9,600 examples (400 small batches of 24), a quarter of each batch ties and near ties, "
            "with W_Q and W_K started at half the usual scale (benchmarks/recipe_search.py).",
            TaskConfig(),
            {"qk_init": 0.5},
            TrainConfig(steps=400, batch_size=24, lr=3e-3, warmup_steps=50, eval_every=50, min_lr_ratio=0.02,
                        hard_fraction=0.25),  # fmt: skip
        ),
        Preset(
            "digits-0-99",
            "Values 0-99 with multi-digit answers: a causal (GPT-style) pre-norm decoder that writes "
            "its answer digit by digit, then <eos>. Half of each batch is hard cases (one-digit values as "
            "common as two-digit ones, ties and near ties), so that it answers every one of the 5,000,000 "
            "expressions right (benchmarks/exhaustive.py).",
            TaskConfig(max_value=99),
            {"causal": True, "norm": "pre", "positional": "learned", "activation": "gelu"},
            TrainConfig(steps=18000, batch_size=128, lr=2e-3, warmup_steps=300, eval_every=500, min_lr_ratio=0.02,
                        hard_fraction=0.5),  # fmt: skip
        ),
        Preset(
            "lists-0-9",
            "Lists of any length from 2 to 10 values in 0-9, where Second and Last depend on the length: a causal "
            "pre-norm decoder (learned positions, GELU) that answers after `=`. Every length is as common in "
            "training as any other, so the few short lists are seen as often as the many long ones; half of each "
            "batch is hard cases (ties of two to all of a list's values, such as `Max ( 0 0 0 )`).",
            TaskConfig(min_args=2, n_args=10),
            {"causal": True, "norm": "pre", "positional": "learned", "activation": "gelu"},
            TrainConfig(steps=6000, batch_size=128, lr=2e-3, warmup_steps=200, eval_every=500, min_lr_ratio=0.02,
                        hard_fraction=0.5),  # fmt: skip
        ),
        Preset(
            "nested-0-9",
            "Nested expressions: an argument of First/Second/Last/Max/Min/Sum (2 or 3 of them) may itself be an "
            "expression of 2 or 3 values 0-9, e.g. `Max ( First ( 2 8 ) Second ( 5 1 ) 7 )` -> 7, with answers up "
            "to 81 written digit by digit. A causal pre-norm decoder of 2 blocks, 4 heads and d_model 64 (the "
            "`digits-0-99` architecture, W_Q and W_K at half scale): in a 15-minute budget, more steps of this small "
            "model beat 3 or 4 blocks or a wider model (benchmarks/nested_search.py). Batches are balanced over "
            "operations, lengths and depths; half of each is hard cases, all with an expression inside: most "
            "arguments expressions, half the inner expressions a Sum, a third of the cases an outer Sum, and ties "
            "and near ties (between an inner answer and a number too). Sums of inner results are the hardest part.",
            TaskConfig(operations=("First", "Second", "Last", "Max", "Min", "Sum"), min_args=2, n_args=3,
                       max_depth=2),  # fmt: skip
            {"causal": True, "norm": "pre", "positional": "learned", "activation": "gelu", "qk_init": 0.5},
            TrainConfig(steps=30000, batch_size=64, lr=2e-3, warmup_steps=200, eval_every=3000, min_lr_ratio=0.02,
                        hard_fraction=0.5),  # fmt: skip
        ),
        Preset(
            "tiny",
            "A very small model for quick experiments and tests: 1 block, 2 heads, d_model 32.",
            TaskConfig(),
            {"n_layers": 1, "n_heads": 2, "d_model": 32, "d_ff": 64},
            TrainConfig(steps=300, batch_size=64, lr=5e-3, warmup_steps=20, eval_every=50),
        ),
    ]
}


# The learning rate each optimiser starts from on the Train page: each trains the page's default model
# (benchmarks/optimizer_defaults.py).
DEFAULT_LR = {"adamw": 3e-3, "adam": 3e-3, "sgd": 0.03}


def train_page_defaults() -> Preset:
    """What the Train page starts from: the digits-0-9 recipe (its 400 steps), evaluated every 25 steps (so the
    curves show the transition) and stopped at 100% validation accuracy."""
    base = PRESETS["digits-0-9"]
    return replace(base, name="train-page", train=replace(base.train, eval_every=25, stop_at_accuracy=1.0))
