"""The residual stream, its LayerNorms and FFNs: stages, norms, what each sublayer writes, neurons."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from .. import layers as L
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


# ---------------------------------------------------------------- how much direction each sublayer keeps
def stream_cosines(net: Transformer, cache: Cache) -> list[tuple[int, str, np.ndarray]]:
    """Cosine between the stream before and after each sublayer: [(block, sublayer, cosine per position [T])].

    The stream is `residual_stages`: pre-norm, resid_pre -> resid_mid -> resid_post (a sublayer's write is added);
    post-norm, resid_pre -> ln1.hook_out -> ln2.hook_out (the sum is then normalised: LayerNorm re-centres it,
    rescales it and applies its gain and bias, which can turn it as well)."""
    stages = [x.astype(np.float64) for _, x in residual_stages(net, cache)]  # [T, d_model] each
    out = []
    for j, (before, after) in enumerate(zip(stages, stages[1:], strict=False)):
        cos = (before * after).sum(-1) / (np.linalg.norm(before, axis=-1) * np.linalg.norm(after, axis=-1))
        out.append((j // 2, "attention" if j % 2 == 0 else "FFN", cos))
    return out


def direction_text(norm: str, cosines: list[tuple[int, str, np.ndarray]], pos: int, where: str) -> str:
    """What the cosines at position `pos` (named `where`, Markdown) say about the stream being kept or replaced."""
    at = [(b, s, float(c[pos])) for b, s, c in cosines]
    listed = ", ".join(f"{c:.3f} through block {b}'s {s}" for b, s, c in at)
    b, s, c = min(at, key=lambda t: t[2])
    if norm == "pre":
        head = ("In this pre-norm model nothing rescales the stream: each sublayer's output is only added to it, so "
                "what it carried stays unless a later write cancels it. Each addition still turns it")
    else:
        head = ("In this post-norm model each sublayer's output is added and the sum is then normalised: LayerNorm "
                "re-centres and rescales the whole stream, so earlier information is kept only as far as its "
                "direction survives")  # fmt: skip
    angle = np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))
    return (f"{head}. At {where} the cosine between the stream before and after each sublayer (1: the same "
            f"direction, 0: orthogonal) is {listed}. Block {b}'s {s} turns it most (cosine {c:.3f}, an angle of "
            f"{angle:.0f}°).")


# ---------------------------------------------------------------- GELU, measured on the code's own function
@dataclass(frozen=True)
class GeluFacts:
    min_x: float  # where GELU is smallest (float64 evaluation of layers.activation_forward)
    min_value: float  # its value there
    zero_below: float  # the float32 x closest to 0 from which GELU gives exactly 0 for every smaller x


@cache
def gelu_facts() -> GeluFacts:
    """GELU's minimum (a grid of 0.001 on [-4, 0], then one of 1e-6 around its best point) and the float32 input
    below which it gives exactly 0 (tanh rounds to -1 there, so 1 + tanh is 0): a bisection over the float32
    numbers between -1 and -1e4, valid because float32 GELU is monotone there (its inner polynomial and tanh are
    increasing, and x (1 + tanh) is exactly 0 once 1 + tanh is)."""
    def gelu(x):
        return L.activation_forward("gelu", x)

    coarse = np.linspace(-4.0, 0.0, 4001)
    x0 = coarse[np.argmin(gelu(coarse))]
    fine = np.linspace(x0 - 1e-3, x0 + 1e-3, 2001)
    i = int(np.argmin(gelu(fine)))
    # bisection on the bit patterns of -x: for x < 0 they grow as x falls, so the zero region is [lo_bits, ...)
    bits = np.array([1.0, 1e4], np.float32).view(np.int32)  # |x| = 1 gives GELU != 0, |x| = 1e4 gives 0
    nonzero, zero = int(bits[0]), int(bits[1])
    while zero - nonzero > 1:
        mid = (nonzero + zero) // 2
        x = -np.array([mid], np.int32).view(np.float32)
        if gelu(x)[0] == 0:
            zero = mid
        else:
            nonzero = mid
    zero_below = -float(np.array([zero], np.int32).view(np.float32)[0])
    return GeluFacts(float(fine[i]), float(gelu(fine)[i]), zero_below)


def _minus(text: str) -> str:
    return text.replace("-", "\u2212")  # the typographic minus, as the pages write it


def gelu_text(post: np.ndarray, whose: str = "these") -> str:
    """What GELU's zeros are, and how many of the activations post [...] (`whose`: "block 0's") are > 0, < 0 and
    exactly 0."""
    f = gelu_facts()
    n, pos, neg = post.size, int((post > 0).sum()), int((post < 0).sum())
    # rounded away from 0: every x at or below the printed number is in the zero region too
    zero_below = _minus(f"{math.floor(f.zero_below * 1e5) / 1e5:.5f}")
    def are(k: int) -> str:
        return f"{k} {'is' if k == 1 else 'are'}"

    return (f"GELU(0) = 0. For x < 0 GELU is negative, reaching its minimum, ≈ {_minus(f'{f.min_value:.4f}')}, at "
            f"x ≈ {_minus(f'{f.min_x:.4f}')}, then creeping back towards 0; in float32 it is exactly 0 for every "
            f"x ≤ {zero_below} (tanh rounds to −1 there). So 'active' here means > 0: of {whose} {n} activation"
            f"{'' if n == 1 else 's'}, {are(pos)} > 0, {neg} < 0 and {n - pos - neg} exactly 0.")
