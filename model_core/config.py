"""The model's configuration: one frozen dataclass, validated on creation.

A checkpoint stores `ModelConfig.to_dict()`; loading rebuilds the model from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ACTIVATIONS = ("relu", "gelu")
POSITIONAL = ("sinusoidal", "learned")
NORMS = ("post", "pre")


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

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}.")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}): "
                f"each head gets d_model / n_heads dimensions. Try n_heads in "
                f"{[h for h in range(1, min(self.d_model, 16) + 1) if self.d_model % h == 0]}."
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if self.positional not in POSITIONAL:
            raise ConfigError(f"positional must be one of {POSITIONAL}, got {self.positional!r}.")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        if not isinstance(self.causal, bool):
            raise ConfigError(f"causal must be true or false, got {self.causal!r}.")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"pad_id must be a token id below vocab_size, got {self.pad_id!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}.")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict (e.g. a checkpoint's JSON); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys: {unknown}")
        return cls(**data)
