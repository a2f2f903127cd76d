"""The model's configuration: one frozen dataclass, validated on creation.

A checkpoint stores `ModelConfig.to_dict()`; loading rebuilds the model from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ACTIVATIONS = ("relu", "gelu")
POSITIONAL = ("sinusoidal", "learned")
NORMS = ("post", "pre")
MAX_QK_INIT = 4.0


class ConfigError(ValueError):
    """A configuration a model cannot be built from; the message says what to change."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape and kind of a transformer.

    The defaults are the original project's model: 2 bidirectional blocks, 4 heads,
    d_model 64, FFN 256, sinusoidal positions, post-norm ("Add & Norm"), ReLU.
    """

    vocab_size: int = 21
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    max_len: int = 50
    causal: bool = False  # False: bidirectional encoder; True: GPT-style decoder
    activation: str = "relu"
    positional: str = "sinusoidal"
    norm: str = "post"  # "post": x = LN(x + f(x)); "pre": x = x + f(LN(x)) and a final LN
    seed: int = 0
    pad_id: int = 0  # token id that marks padding: never attended to
    # W_Q and W_K start at this multiple of the usual N(0, 1/fan_in): smaller query-key products at the start
    # keep attention near uniform while the embeddings organise, which the digits-0-9 recipe trains faster with
    qk_init: float = 1.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}.")
        if self.d_model % self.n_heads:
            from .limits import MAX_HEADS  # limits imports this module

            fits = [h for h in range(1, min(self.d_model, MAX_HEADS) + 1) if self.d_model % h == 0]
            raise ConfigError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}): each head gets "
                f"d_model / n_heads dimensions. With d_model {self.d_model}, n_heads can be "
                f"{', '.join(map(str, fits[:-1]))}{' or ' if len(fits) > 1 else ''}{fits[-1]}."
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if self.positional not in POSITIONAL:
            raise ConfigError(f"positional must be one of {POSITIONAL}, got {self.positional!r}.")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        if not isinstance(self.causal, bool):
            raise ConfigError(f"causal must be true or false, got {self.causal!r}.")
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"pad_id must be a token id below vocab_size, got {self.pad_id!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}.")
        q = self.qk_init
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= MAX_QK_INIT:
            raise ConfigError(f"qk_init must be a number above 0 and at most {MAX_QK_INIT}, got {q!r}.")
        object.__setattr__(self, "qk_init", float(q))

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """As JSON; `qk_init` only where it is not 1 (so a model initialised as usual has the dict it always had)."""
        out = asdict(self)
        if self.qk_init == 1.0:
            del out["qk_init"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict (e.g. a checkpoint's JSON); unknown keys are an error."""
        return _from_dict(cls, data, "model")


OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: the recipe a checkpoint records and the CLI and app share."""

    steps: int = 1500
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.01  # AdamW only (decoupled); LayerNorm gains and biases are exempt
    momentum: float = 0.9  # SGD only
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 100
    schedule: str = "cosine"  # after warm-up: cosine decay to min_lr_ratio * lr, or constant
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 turns clipping off
    eval_every: int = 100  # validation accuracy and an attention snapshot every this many steps
    stop_at_accuracy: float | None = None  # stop early once validation accuracy reaches this
    seed: int = 0  # batches and splits; the model's own seed is in ModelConfig
    # share of each batch drawn from the hard cases (`Splits.sample_train`): every value's digit count equally
    # likely (one-digit values as common as two-digit ones), a third of them with a tie or near tie; 0: uniform
    hard_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}.")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        checks = {
            "lr": (self.lr, 0.0, 10.0, False),
            "weight_decay": (self.weight_decay, 0.0, 1.0, True),
            "momentum": (self.momentum, 0.0, 1.0, True),
            "beta1": (self.beta1, 0.0, 1.0, True),
            "beta2": (self.beta2, 0.0, 1.0, True),
            "min_lr_ratio": (self.min_lr_ratio, 0.0, 1.0, True),
            "grad_clip": (self.grad_clip, 0.0, 1e6, True),
            "hard_fraction": (self.hard_fraction, 0.0, 1.0, True),
        }
        for name, (value, low, high, low_ok) in checks.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
            if not ok or value > high or value < low or (value == low and not low_ok):
                side = ">=" if low_ok else ">"
                raise ConfigError(f"{name} must be a number {side} {low} and <= {high}, got {value!r}.")
        if self.beta1 >= 1 or self.beta2 >= 1 or self.momentum >= 1:
            raise ConfigError("beta1, beta2 and momentum must be below 1.")
        if self.stop_at_accuracy is not None and not 0 < self.stop_at_accuracy <= 1:
            raise ConfigError(f"stop_at_accuracy must lie in (0, 1], got {self.stop_at_accuracy!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data, "training")


def _from_dict(cls, data: dict[str, Any], what: str):
    if not isinstance(data, dict):
        raise ConfigError(f"the {what} config must be a mapping of names to values")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {unknown}")
    return cls(**data)
