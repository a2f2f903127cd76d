"""The transformer, readable top to bottom, with a named hook point at every stage.

Hook names follow TransformerLens (`hook_embed`, `blocks.0.attn.hook_pattern`,
`blocks.1.hook_resid_post`, ...). A hook is a function `fn(activation, hook)`
that may return a replacement; hooks and caches live in a per-call `_Pass`
object, so they never outlive the call that set them and concurrent calls on a
shared model do not see each other's hooks.

Shapes: tokens [batch, pos]; residual stream [batch, pos, d_model];
q/k/v/z [batch, pos, head, d_head]; scores/pattern [batch, head, q_pos, k_pos].

Speed: the plain passes (`forward`, `loss_and_grads`), which have no hooks, take two
exact shortcuts: the last block works only at the rows a caller asks for (queries,
attention, MLP), and a post-norm block 0 reads its Q/K/V from table lookups
(`_Lookup`). The hooked passes never take them, so every cached array is the
straightforward computation; tests/test_speed_paths.py holds one against the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from . import layers as L
from .config import ModelConfig


class HookPoint(NamedTuple):
    name: str


HookFn = Callable[[np.ndarray, HookPoint], "np.ndarray | None"]


class Cache(dict):
    """Activations by hook name (and `<name>_grad` when gradients were asked for).

    `loss` and `param_grads` are set when the call was given targets and `grads=True`.
    """

    loss: float | None = None
    param_grads: dict[str, np.ndarray] | None = None


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in a fixed order (the checkpoint layout)."""
    D, H, dh, F, V = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (V, D)}
    if cfg.positional == "learned":
        shapes["pos_embed.W_pos"] = (cfg.max_len, D)
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        shapes |= {
            b + "ln1.w": (D,), b + "ln1.b": (D,),
            b + "attn.W_Q": (H, D, dh), b + "attn.b_Q": (H, dh),
            b + "attn.W_K": (H, D, dh), b + "attn.b_K": (H, dh),
            b + "attn.W_V": (H, D, dh), b + "attn.b_V": (H, dh),
            b + "attn.W_O": (H, dh, D), b + "attn.b_O": (D,),
            b + "ln2.w": (D,), b + "ln2.b": (D,),
            b + "mlp.W_in": (D, F), b + "mlp.b_in": (F,),
            b + "mlp.W_out": (F, D), b + "mlp.b_out": (D,),
        }  # fmt: skip
    if cfg.norm == "pre":
        shapes |= {"ln_final.w": (D,), "ln_final.b": (D,)}
    shapes |= {"unembed.W_U": (D, V), "unembed.b_U": (V,)}
    return shapes


def init_params(cfg: ModelConfig, dtype=np.float32) -> dict[str, np.ndarray]:
    """Seeded initialisation: N(0, 1/fan_in) weights, zero biases, unit LayerNorm gains."""
    rng = np.random.default_rng(cfg.seed)
    params = {}
    # Pre-norm residual writes are scaled down (GPT-2) so the stream does not grow with depth.
    out_scale = 1.0 / np.sqrt(2 * cfg.n_layers) if cfg.norm == "pre" else 1.0
    for name, shape in param_shapes(cfg).items():
        leaf = name.rsplit(".", 1)[1]
        if leaf == "w":
            value = np.ones(shape)
        elif leaf.startswith("b"):
            value = np.zeros(shape)
        elif leaf == "W_E":
            value = rng.normal(0.0, 1.0, shape)
        elif leaf == "W_pos":
            value = rng.normal(0.0, 0.5, shape)
        else:
            # W_Q/K/V [head, d_model, d_head]: fan-in d_model; W_O [head, d_head, d_model]:
            # fan-in head * d_head; the 2-D matrices [in, out]: fan-in `in`.
            fan_in = {"W_Q": shape[1], "W_K": shape[1], "W_V": shape[1]}.get(leaf, shape[0])
            if leaf == "W_O":
                fan_in = shape[0] * shape[1]
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            if leaf in ("W_O", "W_out"):
                value *= out_scale
        params[name] = value.astype(dtype)
    return params


def hook_names(cfg: ModelConfig) -> list[str]:
    """Every hook point, in the order the forward pass reaches it."""
    names = ["hook_embed", "hook_pos_embed"]
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        attn = [b + f"attn.hook_{n}" for n in ("q", "k", "v", "attn_scores", "pattern", "z")]
        mlp = [b + "mlp.hook_pre", b + "mlp.hook_post", b + "hook_mlp_out"]
        ln1 = [b + "ln1.hook_scale", b + "ln1.hook_normalized"]
        ln2 = [b + "ln2.hook_scale", b + "ln2.hook_normalized"]
        if cfg.norm == "pre":
            names += [b + "hook_resid_pre", *ln1, *attn, b + "hook_attn_out", b + "hook_resid_mid",
                      *ln2, *mlp, b + "hook_resid_post"]  # fmt: skip
        else:
            names += [b + "hook_resid_pre", *attn, b + "hook_attn_out", *ln1, b + "hook_resid_mid",
                      *mlp, *ln2, b + "hook_resid_post"]  # fmt: skip
    if cfg.norm == "pre":
        names += ["ln_final.hook_scale", "ln_final.hook_normalized"]
    return names + ["hook_logits"]


class _Pass:
    """One call's hooks, cache and the arrays backward will need."""

    __slots__ = ("hooks", "cache", "keep", "grads")

    def __init__(self, hooks=None, cache=None, keep=None, grads=None):
        self.hooks: dict[str, list[HookFn]] = hooks or {}
        self.cache: Cache | None = cache
        self.keep: Callable[[str], bool] | None = keep  # which names go into the cache
        self.grads: Cache | None = grads  # where `<name>_grad` goes, if anywhere

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        for fn in self.hooks.get(name, ()):
            out = fn(x, HookPoint(name))
            if out is not None:
                x = np.asarray(out, dtype=x.dtype).reshape(x.shape)
        if self.cache is not None and (self.keep is None or self.keep(name)):
            self.cache[name] = x
        return x

    def grad(self, name: str, g: np.ndarray) -> None:
        if self.grads is not None and (self.keep is None or self.keep(name)):
            self.grads[name + "_grad"] = g


_NO_HOOKS = _Pass()


def _scatter(d: np.ndarray, rows, shape) -> np.ndarray:
    """Gradient at `rows` ([n, ...]) placed into zeros of `shape`; itself when rows is None."""
    if rows is None:
        return d.copy()
    out = np.zeros(shape, dtype=d.dtype)
    out[rows] = d  # each (batch, pos) pair appears once, so plain assignment is a scatter-add
    return out


def _sum_rows_into(shape, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Zeros of `shape` with out[idx[i]] += values[i] for every i, repeats in idx included.

    `out[idx] += values` would keep only one of each repeat, and np.add.at (and add.reduceat)
    took ~1 ms here; so add in rounds, each over indices that are distinct within the round
    (one round when nothing repeats; a causal model's answer rows repeat a few times).
    """
    out = np.zeros(shape, dtype=values.dtype)
    while len(idx):
        _, first = np.unique(idx, return_index=True)
        if len(first) == len(idx):  # no repeats (left)
            out[idx] += values
            break
        out[idx[first]] += values[first]
        rest = np.ones(len(idx), dtype=bool)
        rest[first] = False
        idx, values = idx[rest], values[rest]
    return out


class _Lookup(NamedTuple):
    """Block 0's input as table lookups: x = W_E[tokens] + pos[:T].

    In a post-norm model block 0 multiplies x itself (no LayerNorm first), so x @ W is
    (W_E @ W)[tokens] + pos @ W: products with tables of vocab + T rows instead of batch * T
    rows; and its gradient x^T @ d is W_E^T @ (onehot^T @ d) + pos^T @ d.sum(batch). For the
    default model that takes block 0's Q/K/V projection and its gradients from ~43 to ~6 MFLOP
    (of the ~235 a training step took). Exact, but only when nothing can change x: the plain passes.
    """

    tokens: np.ndarray  # [batch, pos]
    W_E: np.ndarray  # [vocab, d_model]
    pos: np.ndarray  # [pos, d_model]
    onehot: np.ndarray | None  # [batch * pos, vocab] the tokens one-hot (for backward)

    def matmul(self, W: np.ndarray) -> np.ndarray:
        """x @ W: [batch, pos, out]."""
        out = (self.W_E @ W)[self.tokens]
        out += self.pos @ W  # broadcast over the batch
        return out

    def backward(self, d: np.ndarray, W: np.ndarray):
        """For y = x @ W and d = dL/dy [batch, pos, out]: dL/dW, and the shares of dL/dW_E and
        dL/dpos that y passes back (what x^T @ d and d @ W^T would give, by token and by position)."""
        d_token = self.onehot.T @ d.reshape(-1, d.shape[-1])  # [vocab, out]: d summed by token
        d_pos = d.sum(axis=0)  # [pos, out]
        dW = self.W_E.T @ d_token
        dW += self.pos.T @ d_pos
        return dW, d_token @ W.T, d_pos @ W.T


class Transformer:
    """A decoder (causal) or encoder (bidirectional) transformer in NumPy.

    `params` maps names (see `param_shapes`) to arrays; training code updates them
    in place or replaces them. Token id `cfg.pad_id` is padding.
    """

    def __init__(self, cfg: ModelConfig, params: dict[str, np.ndarray] | None = None,
                 dtype=np.float32):  # fmt: skip
        self.cfg = cfg
        self.params = params if params is not None else init_params(cfg, dtype)
        self.dtype = next(iter(self.params.values())).dtype
        self._sinusoid = L.sinusoidal_positions(cfg.max_len, cfg.d_model).astype(self.dtype)

    # ------------------------------------------------------------ public API
    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def hook_names(self) -> list[str]:
        return hook_names(self.cfg)

    def astype(self, dtype) -> Transformer:
        """A copy of this model whose parameters (and arithmetic) are in `dtype`."""
        return Transformer(self.cfg, {k: v.astype(dtype) for k, v in self.params.items()})

    def copy(self) -> Transformer:
        return Transformer(self.cfg, {k: v.copy() for k, v in self.params.items()})

    def forward(self, tokens: np.ndarray, rows=None) -> np.ndarray:
        """Logits [batch, pos, vocab] for tokens [batch, pos].

        With `rows` (a pair of [n] index arrays: batch, position), only the logits at
        those positions, [n, vocab], computed without the work for the others.
        """
        return self._forward(self._check_tokens(tokens), _NO_HOOKS, None, rows)

    def run_with_hooks(self, tokens, fwd_hooks: Iterable[tuple[str, HookFn]]) -> np.ndarray:
        """Logits with hook functions applied (a function may return a replacement)."""
        return self._forward(self._check_tokens(tokens), _Pass(self._hook_table(fwd_hooks)), None)

    def run_with_cache(self, tokens: np.ndarray, *, names_filter=None,
                       fwd_hooks: Iterable[tuple[str, HookFn]] = (),
                       targets: np.ndarray | None = None, grads: bool = False):  # fmt: skip
        """Run and return (logits, cache) holding every hooked activation.

        With `targets` ([batch, pos], -1 where no loss) the cache also gets `loss`;
        with `grads=True` also `<name>_grad` for every hooked activation and
        `cache.param_grads`. Gradients treat hooks as identities (they are the
        gradients of the model as it ran).
        """
        tokens = self._check_tokens(tokens)
        cache = Cache()
        keep = self._name_filter(names_filter)
        run = _Pass(self._hook_table(fwd_hooks), cache, keep, cache if grads else None)
        ctx: dict | None = {} if (targets is not None and grads) else None
        logits = self._forward(tokens, run, ctx)
        if targets is not None:
            cache.loss, dlogits = L.cross_entropy(logits, np.asarray(targets))
            if grads:
                cache.param_grads = self._backward(dlogits, ctx, run)
        return logits, cache

    def loss_and_grads(self, tokens: np.ndarray, targets: np.ndarray):
        """Mean cross-entropy at the target positions and the gradient of every parameter."""
        targets = np.asarray(targets)
        # Only the positions that have a target reach the loss, so the last block makes its
        # queries, attention output and MLP at those rows alone (keys and values still at every
        # position). Exact (the gradient tests check it) and 3-8x less work up there.
        rows = np.nonzero(targets >= 0)  # ([n], [n]) batch and position indices
        ctx: dict = {}
        logits = self._forward(self._check_tokens(tokens), _NO_HOOKS, ctx, rows)  # [n, vocab]
        loss, dlogits = L.cross_entropy(logits, targets[rows])
        return loss, self._backward(dlogits, ctx, _NO_HOOKS), logits

    # ------------------------------------------------------------ plumbing
    def _check_tokens(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be integers shaped [batch, pos], got {tokens.shape}")
        if tokens.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens exceeds max_len {self.cfg.max_len}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.cfg.vocab_size})")
        return tokens

    def _hook_table(self, fwd_hooks) -> dict[str, list[HookFn]]:
        table: dict[str, list[HookFn]] = {}
        known = set(self.hook_names())
        for name, fn in fwd_hooks:
            if name not in known:
                raise KeyError(f"no hook point named {name!r}")
            table.setdefault(name, []).append(fn)
        return table

    @staticmethod
    def _name_filter(names_filter):
        if names_filter is None or callable(names_filter):
            return names_filter
        wanted = {names_filter} if isinstance(names_filter, str) else set(names_filter)
        return wanted.__contains__

    # ------------------------------------------------------------ forward
    def _forward(self, tokens: np.ndarray, run: _Pass, ctx: dict | None, rows=None) -> np.ndarray:
        """Logits [batch, pos, vocab]; with `rows` (batch, pos index arrays) only those: [n, vocab]."""
        cfg, p = self.cfg, self.params
        B, T = tokens.shape
        embed = run("hook_embed", p["embed.W_E"][tokens])  # [batch, pos, d_model]
        table = p["pos_embed.W_pos"] if cfg.positional == "learned" else self._sinusoid
        pos = run("hook_pos_embed", np.broadcast_to(table[:T], (B, T, cfg.d_model)))
        x = embed + pos
        # The embedding's backward is a product with the one-hot tokens [batch * pos, vocab].
        onehot = np.eye(cfg.vocab_size, dtype=x.dtype)[tokens.reshape(-1)] if ctx is not None else None
        # Block 0 reads x through table lookups (see _Lookup) in the plain passes (no hooks),
        # when there are more rows than table rows and block 0 is not also the last, rows-only one.
        lookup = None
        if cfg.norm == "post" and run is _NO_HOOKS and B * T > cfg.vocab_size + T:
            if rows is None or cfg.n_layers > 1:
                lookup = _Lookup(tokens, p["embed.W_E"], table[:T], onehot)
        # Added to the scores: 0 where a query may attend to a key, -inf where it may not
        # (padding; the future when causal). The same numbers as np.where(mask, scores, -inf),
        # made once per pass instead of once per block: np.where is slow on float32.
        allowed = L.attention_mask(tokens, cfg.pad_id, cfg.causal)  # [batch, 1, q_pos, k_pos]
        mask = np.where(allowed, 0.0, -np.inf).astype(self.dtype)
        if ctx is not None:
            ctx["tokens"], ctx["onehot"], ctx["blocks"] = tokens, onehot, []
        for i in range(cfg.n_layers):
            bctx = {} if ctx is not None else None
            last = i == cfg.n_layers - 1
            x = self._block(i, x, mask, run, bctx, rows if last else None, lookup if i == 0 else None)
            if ctx is not None:
                ctx["blocks"].append(bctx)
        if cfg.norm == "pre":
            x = self._layer_norm("ln_final", x, run, ctx)
        if ctx is not None:
            ctx["final"] = x
        return run("hook_logits", L.linear(x, p["unembed.W_U"], p["unembed.b_U"]))

    def _block(self, i: int, x, mask, run: _Pass, ctx: dict | None, rows=None, lookup=None):
        b = f"blocks.{i}."
        resid_pre = run(b + "hook_resid_pre", x)
        skip = resid_pre if rows is None else resid_pre[rows]  # the residual path: [batch, pos, d] or [n, d]
        if ctx is not None:
            ctx["rows"], ctx["lookup"] = rows, lookup
        if self.cfg.norm == "pre":
            attn_in = self._layer_norm(b + "ln1", resid_pre, run, ctx)  # every position: keys and values
            attn_out = run(b + "hook_attn_out", self._attention(b, attn_in, mask, run, ctx, rows))
            resid_mid = run(b + "hook_resid_mid", skip + attn_out)
            mlp_in = self._layer_norm(b + "ln2", resid_mid, run, ctx)
            mlp_out = run(b + "hook_mlp_out", self._mlp(b, mlp_in, run, ctx))
            return run(b + "hook_resid_post", resid_mid + mlp_out)
        # post-norm, the original's "Add & Norm"
        attn_out = run(b + "hook_attn_out", self._attention(b, resid_pre, mask, run, ctx, rows, lookup))
        resid_mid = run(b + "hook_resid_mid", self._layer_norm(b + "ln1", skip + attn_out, run, ctx))
        mlp_out = run(b + "hook_mlp_out", self._mlp(b, resid_mid, run, ctx))
        return run(b + "hook_resid_post", self._layer_norm(b + "ln2", resid_mid + mlp_out, run, ctx))

    def _layer_norm(self, prefix: str, x, run: _Pass, ctx: dict | None):
        p = self.params
        centred, scale = L.layer_norm_scale(x)
        scale = run(prefix + ".hook_scale", scale)  # [batch, pos, 1]
        xhat = np.divide(centred, scale, out=centred)  # (centred is ours: no new array)
        out = xhat * p[prefix + ".w"]
        out += p[prefix + ".b"]
        out = run(prefix + ".hook_normalized", out)
        if ctx is not None:
            ctx[prefix] = (xhat, scale)
        return out

    def _attention(self, b: str, x, mask, run: _Pass, ctx: dict | None, rows=None, lookup: _Lookup | None = None):
        """Multi-head attention of x [batch, pos, d_model]: [batch, pos, d_model] (at `rows`: [n, d_model])."""
        if rows is not None:
            return self._attention_at_rows(b, x, mask, ctx, rows)
        cfg, p = self.cfg, self.params
        B, T, D = x.shape
        H, dh = cfg.n_heads, cfg.d_head
        W_qkv, b_qkv = self._fused_qkv(b)
        qkv = lookup.matmul(W_qkv) if lookup is not None else L.matmul(x, W_qkv)
        qkv += b_qkv  # [batch, pos, 3 * d_model]
        q = run(b + "attn.hook_q", qkv[..., :D].reshape(B, T, H, dh))
        k = run(b + "attn.hook_k", qkv[..., D : 2 * D].reshape(B, T, H, dh))
        v = run(b + "attn.hook_v", qkv[..., 2 * D :].reshape(B, T, H, dh))
        qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))  # [batch, head, pos, d_head]
        scores = qh @ kh.transpose(0, 1, 3, 2)  # [batch, head, q, k]
        scores *= 1.0 / math.sqrt(dh)
        scores += mask  # -inf where a key may not be seen
        scores = run(b + "attn.hook_attn_scores", scores)
        pattern = run(b + "attn.hook_pattern", L.softmax(scores))
        z = np.empty((B, T, H, dh), dtype=x.dtype)  # [batch, pos, head, d_head], filled in place:
        np.matmul(pattern, vh, out=z.transpose(0, 2, 1, 3))  # no copy to undo the head transpose
        z = run(b + "attn.hook_z", z)
        out = L.linear(z.reshape(B, T, D), p[b + "attn.W_O"].reshape(D, D), p[b + "attn.b_O"])
        if ctx is not None:
            ctx[b + "attn"] = (x, qh, kh, vh, pattern, z, W_qkv)
        return out

    def _attention_at_rows(self, b: str, x, mask, ctx: dict | None, rows):
        """Attention output only at `rows` ([n] batch and [n] position indices): [n, d_model].

        Each row is one query attending over its own example. With one query, the key and
        value projections move onto the query side (TransformerLens's QK and OV circuits):
        q . (x_j W_K + b_K) = (q W_K^T) . x_j + q . b_K, whose last term is the same for every
        key and so changes no softmax; and sum_j p_j (x_j W_V + b_V) = (sum_j p_j x_j) W_V + b_V.
        Nothing is then projected at all batch * pos positions, only at the n rows (for the
        default model ~6 instead of ~30 MFLOP, gradients included). Exact up to rounding. The
        callers that pass rows have no hooks, so there are no hook points here.
        """
        cfg, p = self.cfg, self.params
        D, H, dh = cfg.d_model, cfg.n_heads, cfg.d_head
        W_Q = p[b + "attn.W_Q"].transpose(1, 0, 2).reshape(D, D)  # [d_model, (head, d_head)]
        xs = x[rows[0]]  # [n, pos, d_model]: each row's example
        q = L.linear(x[rows], W_Q, p[b + "attn.b_Q"].reshape(D)).reshape(-1, H, dh)  # [n, head, d_head]
        q_x = np.matmul(q.transpose(1, 0, 2), p[b + "attn.W_K"].transpose(0, 2, 1)).transpose(1, 0, 2)  # q W_K^T
        scores = q_x @ xs.transpose(0, 2, 1)  # [n, head, pos]
        scores *= 1.0 / math.sqrt(dh)
        scores += mask[rows[0], :, rows[1]]  # [n, 1, pos]: each row's own line of the mask
        pattern = L.softmax(scores)  # [n, head, pos]
        mixed = pattern @ xs  # [n, head, d_model]: sum_j p_j x_j
        z = np.matmul(mixed.transpose(1, 0, 2), p[b + "attn.W_V"]).transpose(1, 0, 2)  # [n, head, d_head]
        z += p[b + "attn.b_V"]
        out = L.linear(z.reshape(-1, D), p[b + "attn.W_O"].reshape(D, D), p[b + "attn.b_O"])
        if ctx is not None:
            ctx[b + "attn"] = (x, xs, q, q_x, pattern, mixed, z, W_Q)
        return out

    def _fused_qkv(self, b: str):
        """W_Q, W_K, W_V [head, d_model, d_head] side by side as one [d_model, 3 * d_model] matrix."""
        p, D = self.params, self.cfg.d_model
        W = np.stack([p[b + "attn.W_Q"], p[b + "attn.W_K"], p[b + "attn.W_V"]])  # [3, head, d_model, d_head]
        bias = np.concatenate([p[b + "attn.b_Q"], p[b + "attn.b_K"], p[b + "attn.b_V"]], axis=None)
        return W.transpose(2, 0, 1, 3).reshape(D, 3 * D), bias

    def _mlp(self, b: str, x, run: _Pass, ctx: dict | None):
        p, act = self.params, self.cfg.activation
        pre = run(b + "mlp.hook_pre", L.linear(x, p[b + "mlp.W_in"], p[b + "mlp.b_in"]))  # [batch, pos, d_ff]
        post = run(b + "mlp.hook_post", L.activation_forward(act, pre))
        if ctx is not None:
            ctx[b + "mlp"] = (x, pre, post)
        return L.linear(post, p[b + "mlp.W_out"], p[b + "mlp.b_out"])

    # ------------------------------------------------------------ backward
    # Read upward: each step is the forward step above it, reversed. Where a value
    # fed two branches (the residual stream), the gradients of both are added.
    def _backward(self, dlogits, ctx: dict, run: _Pass) -> dict[str, np.ndarray]:
        cfg, p = self.cfg, self.params
        g: dict[str, np.ndarray] = {}
        run.grad("hook_logits", dlogits)
        dx, g["unembed.W_U"], g["unembed.b_U"] = L.linear_backward(dlogits, ctx["final"], p["unembed.W_U"])
        if cfg.norm == "pre":
            dx = self._layer_norm_backward("ln_final", dx, ctx, run, g)
        for i in reversed(range(cfg.n_layers)):
            dx = self._block_backward(i, dx, ctx["blocks"][i], run, g)
        run.grad("hook_embed", dx)
        run.grad("hook_pos_embed", dx)
        T = ctx["tokens"].shape[1]
        # Embedding lookup backward: scatter-add rows; a one-hot matmul is fast for a small vocab.
        # Block 0's attention adds its own share when it ran on table lookups (see _Lookup).
        share_E, share_pos = ctx["blocks"][0].get("embed_share", (0.0, 0.0))
        g["embed.W_E"] = ctx["onehot"].T @ dx.reshape(-1, cfg.d_model) + share_E
        if cfg.positional == "learned":
            dpos = np.zeros_like(p["pos_embed.W_pos"])
            dpos[:T] = dx.sum(axis=0) + share_pos
            g["pos_embed.W_pos"] = dpos
        return {name: g[name] for name in p}  # parameter order

    def _block_backward(self, i: int, d_post, ctx: dict, run: _Pass, g: dict):
        b = f"blocks.{i}."
        run.grad(b + "hook_resid_post", d_post)
        if self.cfg.norm == "pre":
            d_mlp_out = d_post
            run.grad(b + "hook_mlp_out", d_mlp_out)
            d_mlp_in = self._mlp_backward(b, d_mlp_out, ctx, run, g)
            d_mid = d_post + self._layer_norm_backward(b + "ln2", d_mlp_in, ctx, run, g)
            run.grad(b + "hook_resid_mid", d_mid)
            run.grad(b + "hook_attn_out", d_mid)
            d_attn_in = self._attention_backward(b, d_mid, ctx, run, g)
            d_pre = _scatter(d_mid, ctx["rows"], d_attn_in.shape)
            d_pre += self._layer_norm_backward(b + "ln1", d_attn_in, ctx, run, g)
        else:
            d_sum2 = self._layer_norm_backward(b + "ln2", d_post, ctx, run, g)  # resid_mid + mlp_out
            run.grad(b + "hook_mlp_out", d_sum2)
            d_mid = d_sum2 + self._mlp_backward(b, d_sum2, ctx, run, g)
            run.grad(b + "hook_resid_mid", d_mid)
            d_sum1 = self._layer_norm_backward(b + "ln1", d_mid, ctx, run, g)  # resid_pre + attn_out
            run.grad(b + "hook_attn_out", d_sum1)
            d_pre = _scatter(d_sum1, ctx["rows"], ctx[b + "attn"][0].shape)
            d_attn_in = self._attention_backward(b, d_sum1, ctx, run, g)
            if d_attn_in is not None:  # None: it went to the embeddings directly (see _Lookup)
                d_pre += d_attn_in
        run.grad(b + "hook_resid_pre", d_pre)
        return d_pre

    def _layer_norm_backward(self, prefix: str, dout, ctx: dict, run: _Pass, g: dict):
        xhat, scale = ctx[prefix]
        run.grad(prefix + ".hook_normalized", dout)
        if run.grads is not None:  # d loss / d scale, only for display: out = centred / scale * w + b
            run.grad(prefix + ".hook_scale", -(dout * self.params[prefix + ".w"] * xhat).sum(-1, keepdims=True) / scale)
        dx, g[prefix + ".w"], g[prefix + ".b"] = L.layer_norm_backward(dout, xhat, scale, self.params[prefix + ".w"])
        return dx

    def _mlp_backward(self, b: str, dout, ctx: dict, run: _Pass, g: dict):
        p = self.params
        x, pre, post = ctx[b + "mlp"]
        dpost, g[b + "mlp.W_out"], g[b + "mlp.b_out"] = L.linear_backward(dout, post, p[b + "mlp.W_out"])
        run.grad(b + "mlp.hook_post", dpost)
        dpre = L.activation_backward(self.cfg.activation, dpost, pre)
        run.grad(b + "mlp.hook_pre", dpre)
        dx, g[b + "mlp.W_in"], g[b + "mlp.b_in"] = L.linear_backward(dpre, x, p[b + "mlp.W_in"])
        return dx

    def _attention_backward(self, b: str, dout, ctx: dict, run: _Pass, g: dict):
        if ctx["rows"] is not None:
            return self._attention_at_rows_backward(b, dout, ctx, g)
        cfg, p = self.cfg, self.params
        H, dh, D = cfg.n_heads, cfg.d_head, cfg.d_model
        x, qh, kh, vh, pattern, z, W_qkv = ctx[b + "attn"]
        B, T, _ = x.shape
        dz, dW_O, g[b + "attn.b_O"] = L.linear_backward(dout, z.reshape(B, T, D), p[b + "attn.W_O"].reshape(D, D))
        g[b + "attn.W_O"] = dW_O.reshape(H, dh, D)
        dz = dz.reshape(B, T, H, dh)
        run.grad(b + "attn.hook_z", dz)
        dzh = dz.transpose(0, 2, 1, 3)  # [batch, head, pos, d_head]
        dpattern = dzh @ vh.transpose(0, 1, 3, 2)  # [batch, head, q, k]
        run.grad(b + "attn.hook_pattern", dpattern)
        # Write dq, dk, dv straight into their slots of d(qkv) [batch, pos, 3, head, d_head]
        # (matmul into a transposed view: three times faster than transposing and concatenating).
        dqkv = np.empty((B, T, 3, H, dh), dtype=dout.dtype)
        np.matmul(pattern.transpose(0, 1, 3, 2), dzh, out=dqkv[:, :, 2].transpose(0, 2, 1, 3))  # dv
        dscores = L.softmax_backward(dpattern, pattern)  # masked keys have p = 0, so get 0
        run.grad(b + "attn.hook_attn_scores", dscores)
        dscores = dscores * (1.0 / math.sqrt(dh))
        np.matmul(dscores, kh, out=dqkv[:, :, 0].transpose(0, 2, 1, 3))
        np.matmul(dscores.transpose(0, 1, 3, 2), qh, out=dqkv[:, :, 1].transpose(0, 2, 1, 3))
        run.grad(b + "attn.hook_q", dqkv[:, :, 0])
        run.grad(b + "attn.hook_k", dqkv[:, :, 1])
        run.grad(b + "attn.hook_v", dqkv[:, :, 2])
        dqkv = dqkv.reshape(B, T, 3 * D)
        if ctx["lookup"] is None:
            dx, dW_qkv, db_qkv = L.linear_backward(dqkv, x, W_qkv)
        else:  # x was never used: the gradient goes to the embedding tables (see _Lookup)
            dW_qkv, share_E, share_pos = ctx["lookup"].backward(dqkv, W_qkv)
            ctx["embed_share"] = (share_E, share_pos)  # added in _backward
            dx, db_qkv = None, L.col_sum(dqkv.reshape(-1, 3 * D))
        # [d_model, (qkv, head, d_head)] -> W_Q, W_K, W_V [head, d_model, d_head], each contiguous
        dW_qkv = np.ascontiguousarray(dW_qkv.reshape(D, 3, H, dh).transpose(1, 2, 0, 3))
        for j, n in enumerate("QKV"):
            g[b + f"attn.W_{n}"] = dW_qkv[j]
            g[b + f"attn.b_{n}"] = db_qkv[j * D : (j + 1) * D].reshape(H, dh)
        return dx

    def _attention_at_rows_backward(self, b: str, dout, ctx: dict, g: dict):
        """`_attention_at_rows` read upward; dout [n, d_model]. Returns d x [batch, pos, d_model]."""
        cfg, p = self.cfg, self.params
        D, H, dh = cfg.d_model, cfg.n_heads, cfg.d_head
        x, xs, q, q_x, pattern, mixed, z, W_Q = ctx[b + "attn"]
        rows = ctx["rows"]
        W_K, W_V = p[b + "attn.W_K"], p[b + "attn.W_V"]  # [head, d_model, d_head]
        dz, dW_O, g[b + "attn.b_O"] = L.linear_backward(dout, z.reshape(-1, D), p[b + "attn.W_O"].reshape(D, D))
        g[b + "attn.W_O"] = dW_O.reshape(H, dh, D)
        dz_h = dz.reshape(-1, H, dh).transpose(1, 0, 2)  # [head, n, d_head]
        g[b + "attn.W_V"] = mixed.transpose(1, 2, 0) @ dz_h  # [head, d_model, d_head]
        g[b + "attn.b_V"] = L.col_sum(dz).reshape(H, dh)
        d_mixed = np.matmul(dz_h, W_V.transpose(0, 2, 1)).transpose(1, 0, 2)  # [n, head, d_model]
        dpattern = d_mixed @ xs.transpose(0, 2, 1)  # [n, head, pos]
        dxs = pattern.transpose(0, 2, 1) @ d_mixed  # [n, pos, d_model]
        dscores = L.softmax_backward(dpattern, pattern)  # masked keys have p = 0, so get 0
        dscores *= 1.0 / math.sqrt(dh)
        dq_x = dscores @ xs  # [n, head, d_model]
        dxs += dscores.transpose(0, 2, 1) @ q_x
        dq_x_h = dq_x.transpose(1, 0, 2)  # [head, n, d_model]
        g[b + "attn.W_K"] = dq_x_h.transpose(0, 2, 1) @ q.transpose(1, 0, 2)  # [head, d_model, d_head]
        g[b + "attn.b_K"] = np.zeros((H, dh), dtype=dout.dtype)  # it shifts a row's scores equally
        dq = np.matmul(dq_x_h, W_K).transpose(1, 0, 2)  # [n, head, d_head]
        dx_rows, dW_Q, db_Q = L.linear_backward(dq.reshape(-1, D), x[rows], W_Q)
        g[b + "attn.W_Q"] = np.ascontiguousarray(dW_Q.reshape(D, H, dh).transpose(1, 0, 2))
        g[b + "attn.b_Q"] = db_Q.reshape(H, dh)
        dx = _sum_rows_into(x.shape, rows[0], dxs)  # keys and values: each row's example
        dx[rows] += dx_rows  # the query
        return dx
