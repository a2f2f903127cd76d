"""The largest model this app trains or loads, and the largest checkpoint file it reads: one place.

The app runs on a 2-core machine shared by every user, so a model trained on the Train page, an
uploaded checkpoint and one opened by the CLI all meet the same limits. A model the app trains
therefore always loads again. `model_core.training.job` adds the limits that only concern
training (steps, batch size, the task); `model_core.checkpoint` applies the file limits below
before it parses anything, and `check_model` before it builds anything.

Every limit is far above what the app's tasks need: the longest sequence of the largest task the
task code accepts is 39 tokens (8 values of 3 digits, answer and `<eos>`), the vocabulary has 21
tokens, and a shipped checkpoint's header is about 4.5 KB, of which its metadata is 1.2 KB.
"""

from __future__ import annotations

import numpy as np

from .config import ConfigError, ModelConfig
from .params import param_shapes

# ----------------------------------------------------------------------------- the model
MAX_D_MODEL = 256
MAX_LAYERS = 4
MAX_HEADS = 8
MAX_D_FF = 1024
MAX_PARAMS = 2_000_000
MAX_LEN = 512  # positions: 13x the longest task sequence (39); the sinusoid table is then <= 512 x 256
MAX_VOCAB = 1024  # tokens: the tasks use 21

# ----------------------------------------------------------------------------- the checkpoint file
MAX_CHECKPOINT_BYTES = 50_000_000  # the whole file; the largest model with Adam state is about 24 MB
# The JSON parts, 200x and 400x the shipped ones. Parsing a megabyte of JSON made of empty objects takes about
# 0.2 s and 45 MB; Python's allocator and garbage collector make larger texts disproportionately slower.
MAX_HEADER_BYTES = 1_000_000  # the safetensors JSON header: the tensor table plus the metadata, JSON-escaped
MAX_METADATA_BYTES = 500_000  # the metadata JSON string (UTF-8): a 1,024-token vocabulary fits many times
MAX_JSON_DEPTH = 32  # nesting of [ and { in the header or the metadata: ours nest 3 deep. Far below
# Python's recursion limit (1,000), so json.loads never recurses deep enough to raise RecursionError.


class LimitError(ConfigError):
    """A configuration beyond what this app trains or loads; the message names the limit."""


def model_checks(cfg: ModelConfig) -> list[tuple[str, int, int]]:
    """(what, value, most) for each of the model's sizes, in the order a refusal names them."""
    return [
        ("Width (d_model)", cfg.d_model, MAX_D_MODEL),
        ("Blocks (layers)", cfg.n_layers, MAX_LAYERS),
        ("Heads", cfg.n_heads, MAX_HEADS),
        ("FFN width (d_ff)", cfg.d_ff, MAX_D_FF),
        ("Positions (max_len)", cfg.max_len, MAX_LEN),
        ("Vocabulary size", cfg.vocab_size, MAX_VOCAB),
    ]


def count_params(cfg: ModelConfig) -> int:
    """Parameters a model of this config has, without building it.

    Call it after `model_checks` pass: `param_shapes` lists every block, so a config with
    millions of layers would make a list of millions here.
    """
    return sum(int(np.prod(shape)) for shape in param_shapes(cfg).values())


def model_limits_text() -> str:
    """The model limits in one line, for messages and the UI."""
    return (
        f"at most {MAX_LAYERS} blocks, {MAX_HEADS} heads, d_model {MAX_D_MODEL}, FFN width {MAX_D_FF:,}, "
        f"max_len {MAX_LEN}, {MAX_VOCAB:,} tokens and {MAX_PARAMS:,} parameters"
    )


def check_param_count(cfg: ModelConfig) -> None:
    """LimitError if a model of this config, to be trained, would have more than MAX_PARAMS parameters."""
    n = count_params(cfg)
    if n > MAX_PARAMS:
        raise LimitError(
            f"This model would have {n:,} parameters; this app trains at most {MAX_PARAMS:,}. "
            "Use fewer blocks, a smaller d_model or a narrower FFN."
        )


def check_model(cfg: ModelConfig) -> None:
    """LimitError naming the first limit a model to be loaded breaks, and listing them all."""
    for what, value, most in model_checks(cfg):
        if value > most:
            raise LimitError(f"{what} is {value:,}; this app loads models of {model_limits_text()}.")
    n = count_params(cfg)
    if n > MAX_PARAMS:
        raise LimitError(f"the model has {n:,} parameters; this app loads models of {model_limits_text()}.")
