"""Ablation: switch components off (zero) or replace them by their mean, many ablations in one forward pass.

A component is named as on the mechanism pages: `L0H3` (a head: its `hook_result` write), `L1.mlp` (an
MLP: its `hook_mlp_out`), `L1.mlp.n42` (one neuron: its activation in `mlp.hook_post`). An ablation is a
set of components, optionally at chosen positions only. `ablate` replicates the batch once per ablation
and applies each to its own copy in a single forward pass, so K ablations of n examples cost one pass of
K * n rows.

Mean ablation replaces an activation with its mean over a reference set (the model's validation
expressions unless given), per position: it disturbs the stream less than zeroing does.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..model import Transformer
from ..task import make_splits
from ..task_model import TaskModel

_COMPONENT = re.compile(r"^L(\d+)(?:H(\d+)|\.mlp(?:\.n(\d+))?)$")


class ComponentError(ValueError):
    """A component name this model does not have; the message says which ones it has."""


@dataclass(frozen=True)
class Component:
    kind: str  # "head", "mlp" or "neuron"
    layer: int
    index: int | None = None  # the head or the neuron

    @property
    def name(self) -> str:
        return {"head": f"L{self.layer}H{self.index}", "mlp": f"L{self.layer}.mlp",
                "neuron": f"L{self.layer}.mlp.n{self.index}"}[self.kind]  # fmt: skip

    @property
    def hook(self) -> str:
        b = f"blocks.{self.layer}."
        return {"head": b + "attn.hook_result", "mlp": b + "hook_mlp_out", "neuron": b + "mlp.hook_post"}[self.kind]


def parse_component(net: Transformer, name: str) -> Component:
    """`L0H3`, `L1.mlp` or `L1.mlp.n42` for this model, or ComponentError."""
    cfg = net.cfg
    m = _COMPONENT.match(name.strip())
    if not m:
        raise ComponentError(f"Unknown component {name!r}: write a head as L0H3, an MLP as L1.mlp, a neuron as "
                             "L1.mlp.n42.")  # fmt: skip
    layer = int(m.group(1))
    if layer >= cfg.n_layers:
        raise ComponentError(f"{name}: this model has {cfg.n_layers} layer(s), L0-L{cfg.n_layers - 1}.")
    if m.group(2) is not None:
        head = int(m.group(2))
        if head >= cfg.n_heads:
            raise ComponentError(f"{name}: this model has {cfg.n_heads} heads per layer, H0-H{cfg.n_heads - 1}.")
        return Component("head", layer, head)
    if m.group(3) is not None:
        neuron = int(m.group(3))
        if neuron >= cfg.d_ff:
            raise ComponentError(f"{name}: this model's MLPs have {cfg.d_ff} neurons, n0-n{cfg.d_ff - 1}.")
        return Component("neuron", layer, neuron)
    return Component("mlp", layer)


# ---------------------------------------------------------------- means over a reference set
_MEANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Transformer -> {hook: [T, ...] means}


MEAN_CHUNK = 512  # expressions per forward pass of the reference set
MEAN_REFERENCE = 5_000  # the default reference set: the validation split, or this many of it (seeded)


def mean_activations(model: TaskModel, exprs=None) -> dict[str, np.ndarray]:
    """Per-position means [T_max, ...] of every head write, MLP output and neuron over a reference set.

    The reference set is `exprs` (an ExpressionSet) or the model's validation split (a seeded sample of
    MEAN_REFERENCE where it is larger); with the default it is cached per model. A position that only some
    examples reach is averaged over those that have it (padding rows never count).
    """
    net = model.transformer
    default = exprs is None
    if default and net in _MEANS:
        return _MEANS[net]
    if default:
        seed = model.train_config.seed if model.train_config else 0
        exprs = make_splits(model.task, seed=seed).val.sample(MEAN_REFERENCE, seed)  # lists of 2-10 values: 45,000
    tokens = model.encode(exprs).tokens  # [n, T]
    hooks = [f"blocks.{i}.{h}" for i in range(net.cfg.n_layers)
             for h in ("attn.hook_result", "hook_mlp_out", "mlp.hook_post")]  # fmt: skip
    # In chunks: one cache of a 45,000-expression validation split (lists of 2 to 10 values) would be gigabytes.
    sums: dict[str, np.ndarray] = {}
    for start in range(0, len(tokens), MEAN_CHUNK):
        part = tokens[start : start + MEAN_CHUNK]
        _, cache = net.run_with_cache(part, names_filter=hooks)
        real = part != model.vocab.pad_id  # [chunk, T]
        for h in hooks:
            x = cache[h]  # [chunk, T, ...]
            total = (x * real.reshape(real.shape + (1,) * (x.ndim - 2))).sum(0, dtype=np.float64)
            sums[h] = total if h not in sums else sums[h] + total
    count = np.maximum((tokens != model.vocab.pad_id).sum(0), 1)  # [T]
    means = {}
    for h in hooks:
        extra = (1,) * (sums[h].ndim - 1)
        means[h] = (sums[h] / count.reshape((-1,) + extra)).astype(net.dtype)
    if default:
        _MEANS[net] = means
    return means


# ---------------------------------------------------------------- ablating
@dataclass(frozen=True)
class AblationResult:
    """K ablations of n examples, read at each example's position. `labels` [K] name the ablations.

    `answer` [n] is the clean run's top token at each example's position; every measure is of that token.
    `logit_diff` [K, n]: its logit minus the strongest other token's, in the ablated run; `logprob` [K, n]:
    its log-probability. `delta_*` subtract the clean run's; `flipped` [K, n]: the ablated run's top
    token is another one.
    """

    labels: list[str]
    answer: np.ndarray
    clean_logit_diff: np.ndarray  # [n]
    clean_logprob: np.ndarray  # [n]
    logit_diff: np.ndarray  # [K, n]
    logprob: np.ndarray  # [K, n]
    top: np.ndarray  # [K, n] the ablated run's top token

    @property
    def delta_logit_diff(self) -> np.ndarray:
        return self.logit_diff - self.clean_logit_diff

    @property
    def delta_logprob(self) -> np.ndarray:
        return self.logprob - self.clean_logprob

    @property
    def flipped(self) -> np.ndarray:
        return self.top != self.answer


def _measures(logits: np.ndarray, answer: np.ndarray):
    """(logit diff, log-prob, top) of `answer` [m] in logits [m, vocab]."""
    rows = np.arange(len(answer))
    others = logits.copy()
    others[rows, answer] = -np.inf
    logp = L.log_softmax(logits.astype(np.float64))
    return logits[rows, answer] - others.max(-1), logp[rows, answer], logits.argmax(-1)


def ablate(model: TaskModel, tokens: np.ndarray, positions, ablations: Sequence[Sequence[str]], *,
           mean: bool = False, at_positions: Sequence[int] | None = None, means=None) -> AblationResult:  # fmt: skip
    """Run every ablation in `ablations` (each a list of component names) on `tokens` [n, T], in one pass.

    `positions` [n]: where each example is read. `mean`: replace by the reference mean instead of zero
    (`means` from `mean_activations`, computed if not given). `at_positions`: ablate at these positions
    only (default: all).
    """
    net = model.transformer
    tokens = np.asarray(tokens)
    n = len(tokens)
    positions = np.broadcast_to(np.asarray(positions), (n,))
    parsed = [[parse_component(net, c) for c in ab] for ab in ablations]
    K = len(parsed)
    # ablation k edits its own rows k*n .. (k+1)*n of the tiled batch
    groups = [(slice(k * n, (k + 1) * n), comps) for k, comps in enumerate(parsed)]
    hooks = _hooks(model, groups, mean=mean, at_positions=at_positions, means=means)

    clean = net.forward(tokens)[np.arange(n), positions]  # [n, vocab]
    answer = clean.argmax(-1)
    c_diff, c_logp, _ = _measures(clean, answer)
    if K == 0:
        empty = np.zeros((0, n))
        return AblationResult([], answer, c_diff, c_logp, empty, empty, empty.astype(np.int64))
    tiled = np.tile(tokens, (K, 1))  # [K * n, T]
    logits = net.run_with_hooks(tiled, hooks)
    read = logits[np.arange(K * n), np.tile(positions, K)]  # [K * n, vocab]
    diff, logp, top = _measures(read, np.tile(answer, K))
    labels = [",".join(c.name for c in comps) or "(nothing)" for comps in parsed]
    return AblationResult(labels, answer, c_diff, c_logp, diff.reshape(K, n), logp.reshape(K, n), top.reshape(K, n))


def _editing_hook(hook_name: str, edits: list[tuple[slice, Component]], where: np.ndarray, means,
                  row_pos: np.ndarray | None = None):  # fmt: skip
    """A hook that zeroes (means None) or mean-replaces each component at its rows and the `where` positions.

    The activation is [rows, T, ...], or [n, ...] with `row_pos` [n] (the position of each row: the last
    block run at some rows only)."""

    def hook(x, _hook):
        x = x.copy()
        for rows, c in edits:
            if row_pos is None:  # [rows, T, ...]
                T = x.shape[1]
                sel = where[:T]
                idx = (rows, sel) + ((c.index,) if c.kind != "mlp" else ())
                ref = None if means is None else _rows(means[hook_name], T)[sel]  # [T_sel, ...]
            else:  # [n, ...]
                picked = np.flatnonzero(where[row_pos])[rows]
                idx = (picked,) + ((c.index,) if c.kind != "mlp" else ())
                ref = None if means is None else _rows(means[hook_name], int(row_pos.max()) + 1)[row_pos[picked]]
            if means is None:
                x[idx] = 0.0
            else:
                x[idx] = ref[:, c.index] if c.kind != "mlp" else ref
        return x

    return hook


def ablation_hooks(model: TaskModel, components: Sequence[str], *, mean: bool = False,
                   at_positions: Sequence[int] | None = None, means=None, row_pos=None) -> list:  # fmt: skip
    """Hooks that apply one ablation to every row of any batch: for `run_with_hooks` or `TaskModel.evaluate`.

    `row_pos` [n]: when the components are in the last block and the run asks for `rows` only, the
    position of each of those rows (the hooks there see [n, ...] arrays)."""
    parsed = [parse_component(model.transformer, c) for c in components]
    return _hooks(model, [(slice(None), parsed)], mean=mean, at_positions=at_positions, means=means, row_pos=row_pos)


def _hooks(model: TaskModel, groups: list[tuple[slice, list[Component]]], *, mean: bool,
           at_positions: Sequence[int] | None, means, row_pos=None) -> list:  # fmt: skip
    """One editing hook per hook point: each (rows, components) group ablated at `at_positions` (all: None)."""
    if mean and means is None:
        means = mean_activations(model)
    T = model.transformer.cfg.max_len
    where = np.ones(T, dtype=bool)
    if at_positions is not None:
        where[:] = False
        where[[p for p in at_positions if 0 <= p < T]] = True
    edits: dict[str, list[tuple[slice, Component]]] = {}
    for rows, comps in groups:
        for c in comps:
            edits.setdefault(c.hook, []).append((rows, c))
    row_pos = None if row_pos is None else np.asarray(row_pos)
    return [(h, _editing_hook(h, edits[h], where, means if mean else None, row_pos)) for h in edits]


def _rows(mean: np.ndarray, T: int) -> np.ndarray:
    """The first T rows of per-position means; positions the reference set never reached count as 0."""
    if len(mean) >= T:
        return mean[:T]
    return np.concatenate([mean, np.zeros((T - len(mean),) + mean.shape[1:], dtype=mean.dtype)])


def every_component(net: Transformer) -> list[list[str]]:
    """One ablation per head and per MLP: [["L0H0"], ..., ["L0.mlp"], ...]."""
    cfg = net.cfg
    return [[f"L{i}H{h}"] for i in range(cfg.n_layers) for h in range(cfg.n_heads)] + \
        [[f"L{i}.mlp"] for i in range(cfg.n_layers)]  # fmt: skip
