"""Direct logit attribution: how much each component's write adds to a logit, on its direct path.

At the read-out position the residual stream is a sum of writes: the token and positional embeddings,
each head's `hook_result`, each attention's `b_O`, each MLP's output. Their direct path to the logits
runs along the residual stream at that position, through every LayerNorm on it (in a post-norm model,
each block's ln1 and ln2; in a pre-norm model the final one), then the unembedding.

A LayerNorm is not linear, so its scale is **frozen at the value the real run had** (`hook_scale`):
LN(x) = (x - mean(x)) / scale * w + b is then linear in x plus its bias b, and each LayerNorm's bias
becomes a component of its own, as does the unembedding's bias b_U. With the scales frozen, the parts
sum to the real logit (to float precision): that is what makes the decomposition exact, and also what it
leaves out (a component's effect through the scale it changed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hooks import Cache
from ..model import Transformer

FROZEN_NOTE = "LayerNorm scales frozen at this run's values (hook_scale): the parts sum to the real logit."


@dataclass(frozen=True)
class Attribution:
    """Per example and component: the direct contribution to the answer's logit and to the logit difference.

    n examples, C components (`names`, in forward order). `answer` and `wrong` [n] are token ids: the token
    attributed and the strongest other token at that position. `logit`, `diff` [n, C]; their sums over
    components equal `logit_total` and `diff_total` [n], the real values from the run.
    """

    names: list[str]
    positions: np.ndarray  # [n] the read-out position of each example
    answer: np.ndarray  # [n]
    wrong: np.ndarray  # [n]
    logit: np.ndarray  # [n, C]
    diff: np.ndarray  # [n, C]
    logit_total: np.ndarray  # [n]
    diff_total: np.ndarray  # [n]
    note: str = FROZEN_NOTE

    def residual_error(self) -> float:
        """Largest |sum of parts - real logit| over the examples: float rounding only."""
        return float(np.abs(self.logit.sum(1) - self.logit_total).max(initial=0.0))


def component_writes(net: Transformer, cache: Cache, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each component's write as it reaches the unembedding on its direct path: (names, [C, n, d_model]).

    `cache` is a full `run_with_cache` of n examples; example i is read at `positions[i]`.
    """
    cfg, p = net.cfg, net.params
    n = len(positions)
    at = (np.arange(n), np.asarray(positions))  # (example, position) pairs

    names: list[str] = ["embed", "pos_embed"]
    parts: list[np.ndarray] = [cache["hook_embed"][at], cache["hook_pos_embed"][at]]  # each [n, d_model]

    def through(prefix: str) -> None:  # the LayerNorm `prefix` at frozen scale: parts -> A(parts), + its bias
        scale = cache[prefix + ".hook_scale"][at]  # [n, 1]
        w = p[prefix + ".w"]
        for k, x in enumerate(parts):
            parts[k] = (x - x.mean(-1, keepdims=True)) / scale * w
        names.append(prefix + ".b")
        parts.append(np.broadcast_to(p[prefix + ".b"], (n, cfg.d_model)))

    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        result = cache[b + "attn.hook_result"][at]  # [n, head, d_model]
        names += [f"L{i}H{h}" for h in range(cfg.n_heads)] + [f"L{i}.attn.b_O"]
        parts += [result[:, h] for h in range(cfg.n_heads)] + [np.broadcast_to(p[b + "attn.b_O"], (n, cfg.d_model))]
        if cfg.norm == "post":
            through(b + "ln1")
        names.append(f"L{i}.mlp")
        parts.append(cache[b + "hook_mlp_out"][at])
        if cfg.norm == "post":
            through(b + "ln2")
    if cfg.norm == "pre":
        through("ln_final")
    return names, np.stack(parts)


def attribute(net: Transformer, tokens: np.ndarray, positions, answer=None) -> Attribution:
    """Direct logit attribution of `tokens` [n, T] at `positions` [n] (one read-out position per example).

    `answer` [n]: the token whose logit is attributed; by default the model's own top token there.
    The logit difference is answer minus the strongest other token.
    """
    tokens = np.asarray(tokens)
    _, cache = net.run_with_cache(tokens)
    return _attribute(net, cache, np.broadcast_to(np.asarray(positions), (len(tokens),)), answer)


def _attribute(net: Transformer, cache: Cache, positions: np.ndarray, answer) -> Attribution:
    n = len(positions)
    logits = cache["hook_logits"][np.arange(n), positions]  # [n, vocab]
    answer = logits.argmax(-1) if answer is None else np.broadcast_to(np.asarray(answer), (n,))
    others = logits.copy()
    others[np.arange(n), answer] = -np.inf
    wrong = others.argmax(-1)
    names, writes = component_writes(net, cache, positions)  # [C, n, d_model]
    W_U = net.params["unembed.W_U"]  # [d_model, vocab]
    direction = W_U[:, answer].T  # [n, d_model]
    diff_dir = direction - W_U[:, wrong].T
    b_U = net.params["unembed.b_U"]
    logit = np.concatenate([(writes * direction).sum(-1).T, b_U[answer][:, None]], axis=1)  # [n, C + 1]
    diff = np.concatenate([(writes * diff_dir).sum(-1).T, (b_U[answer] - b_U[wrong])[:, None]], axis=1)
    rows = np.arange(n)
    return Attribution(names + ["b_U"], positions, answer, wrong, logit, diff, logits[rows, answer],
                       logits[rows, answer] - logits[rows, wrong])  # fmt: skip


def neuron_attribution(net: Transformer, tokens: np.ndarray, positions, layer: int, answer=None, k: int = 10):
    """The k MLP neurons of `layer` whose direct contributions to the logit difference are largest in size.

    Returns (neurons [n, k], contributions [n, k]) for each example, largest |contribution| first. A neuron's
    write is its activation times its row of W_out; it follows the MLP output's direct path (frozen scales).
    The neurons' contributions plus b_out's sum to the MLP's own (`Attribution.diff` at `L{layer}.mlp`).
    """
    tokens = np.asarray(tokens)
    _, cache = net.run_with_cache(tokens)
    att = _attribute(net, cache, np.broadcast_to(np.asarray(positions), (len(tokens),)), answer)
    cfg, p = net.cfg, net.params
    n = len(att.positions)
    at = (np.arange(n), att.positions)
    post = cache[f"blocks.{layer}.mlp.hook_post"][at]  # [n, d_ff]
    direction = (p["unembed.W_U"][:, att.answer] - p["unembed.W_U"][:, att.wrong]).T  # [n, d_model]
    # the LayerNorms after this MLP on its direct path, at frozen scale: centre, divide by scale, times w
    later = [f"blocks.{layer}.ln2"] if cfg.norm == "post" else []
    later += [f"blocks.{i}.{ln}" for i in range(layer + 1, cfg.n_layers) for ln in ("ln1", "ln2")] \
        if cfg.norm == "post" else ["ln_final"]  # fmt: skip
    rows = p[f"blocks.{layer}.mlp.W_out"]  # [d_ff, d_model]
    per_neuron = post[:, :, None] * rows[None]  # [n, d_ff, d_model]
    for prefix in later:
        scale = cache[prefix + ".hook_scale"][at][:, None]  # [n, 1, 1]
        per_neuron = (per_neuron - per_neuron.mean(-1, keepdims=True)) / scale * p[prefix + ".w"]
    contrib = (per_neuron * direction[:, None, :]).sum(-1)  # [n, d_ff]
    top = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(contrib, top, axis=1)
