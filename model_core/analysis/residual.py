"""The residual stream, its LayerNorms and FFNs: stages, norms, what each sublayer writes, neurons."""

from __future__ import annotations

import numpy as np

from ..config import ModelConfig
from ..hooks import Cache
from ..model import Transformer


def residual_stages(net: Transformer, cache: Cache) -> list[tuple[str, np.ndarray]]:
    """The residual stream at each stage, in order: [(stage name, [T, d_model])]."""
    stages = [("embed + pos", cache["blocks.0.hook_resid_pre"][0])]
    for i in range(net.cfg.n_layers):
        b = f"blocks.{i}."
        if net.cfg.norm == "pre":  # the stream is the sums
            mid, out = b + "hook_resid_mid", b + "hook_resid_post"
        else:  # post-norm: the stream that flows on is each LayerNorm's output (resid_mid|post are the sums)
            mid, out = b + "ln1.hook_out", b + "ln2.hook_out"
        stages.append((f"block {i} mid", cache[mid][0]))
        stages.append((f"block {i} out", cache[out][0]))
    return stages


def stage_norms(stages: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """The L2 norm per position [pos] of each residual-stream stage [(name, [pos, d_model])]."""
    return [(name, np.linalg.norm(x, axis=-1)) for name, x in stages]


def sublayer_writes(net: Transformer, cache: Cache) -> list[tuple[int, str, np.ndarray]]:
    """How much each sublayer writes into the residual stream: [(block, sublayer, norm per position [T])]."""
    out = []
    for i in range(net.cfg.n_layers):
        out.append((i, "attention", np.linalg.norm(cache[f"blocks.{i}.hook_attn_out"][0], axis=-1)))
        out.append((i, "FFN", np.linalg.norm(cache[f"blocks.{i}.hook_mlp_out"][0], axis=-1)))
    return out


def layer_norms(cfg: ModelConfig) -> list[tuple[str, str]]:
    """Every LayerNorm of the model, in computation order: [(hook prefix, what it normalises)]."""
    out = []
    for i in range(cfg.n_layers):
        if cfg.norm == "pre":
            out += [(f"blocks.{i}.ln1", f"block {i}: the stream before attention"),
                    (f"blocks.{i}.ln2", f"block {i}: the stream before the FFN")]  # fmt: skip
        else:
            out += [(f"blocks.{i}.ln1", f"block {i}: stream + attention output (Add & Norm)"),
                    (f"blocks.{i}.ln2", f"block {i}: stream + FFN output (Add & Norm)")]  # fmt: skip
    if cfg.norm == "pre":
        out.append(("ln_final", "the stream after the last block, before the unembedding"))
    return out


def row_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of each row of x [pos, d]: ([pos], [pos])."""
    x = x.astype(np.float64)
    return x.mean(axis=-1), x.std(axis=-1)


def active_fraction(post: np.ndarray) -> np.ndarray:
    """Fraction of FFN neurons with activation > 0 at each position: post [pos, d_ff] -> [pos]."""
    return (post > 0).mean(axis=-1)


def top_neurons(activations: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most active neurons of one position [d_ff]: (indices [k], values [k]), largest first."""
    idx = np.argsort(activations, kind="stable")[::-1][:k]
    return idx, activations[idx]
