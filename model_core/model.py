"""The transformer, readable top to bottom, with a named hook point at every stage.

Hook names follow TransformerLens (`hook_embed`, `blocks.0.attn.hook_pattern`,
`blocks.1.hook_resid_post`, ...). A hook is a function `fn(activation, hook)`
that may return a replacement; hooks and caches live in a per-call `_Pass`
object, so they never outlive the call that set them and concurrent calls on a
shared model do not see each other's hooks.

Shapes: tokens [batch, pos]; residual stream [batch, pos, d_model];
q/k/v/z [batch, pos, head, d_head]; scores/pattern [batch, head, q_pos, k_pos].
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
        # Only the positions that have a target reach the loss; after the last block's
        # attention has mixed positions, every op is per position, so it runs on those
        # rows alone. Exact (the gradient tests check it) and 3-8x less work up there.
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
        mask = L.attention_mask(tokens, cfg.pad_id, cfg.causal)  # [batch, 1, q_pos, k_pos]
        if ctx is not None:
            ctx["tokens"], ctx["blocks"] = tokens, []
        for i in range(cfg.n_layers):
            bctx = {} if ctx is not None else None
            last = i == cfg.n_layers - 1
            x = self._block(i, x, mask, run, bctx, rows if last else None)
            if ctx is not None:
                ctx["blocks"].append(bctx)
        if cfg.norm == "pre":
            x = self._layer_norm("ln_final", x, run, ctx)
        if ctx is not None:
            ctx["final"] = x
        return run("hook_logits", L.matmul(x, p["unembed.W_U"]) + p["unembed.b_U"])

    def _block(self, i: int, x, mask, run: _Pass, ctx: dict | None, rows=None):
        b = f"blocks.{i}."
        resid_pre = run(b + "hook_resid_pre", x)
        skip = resid_pre if rows is None else resid_pre[rows]  # the residual path: [batch, pos, d] or [n, d]
        if ctx is not None:
            ctx["rows"] = rows
        if self.cfg.norm == "pre":
            attn_in = self._layer_norm(b + "ln1", resid_pre, run, ctx)  # every position: keys and values
            attn_out = run(b + "hook_attn_out", self._attention(b, attn_in, mask, run, ctx, rows))
            resid_mid = run(b + "hook_resid_mid", skip + attn_out)
            mlp_in = self._layer_norm(b + "ln2", resid_mid, run, ctx)
            mlp_out = run(b + "hook_mlp_out", self._mlp(b, mlp_in, run, ctx))
            return run(b + "hook_resid_post", resid_mid + mlp_out)
        # post-norm, the original's "Add & Norm"
        attn_out = run(b + "hook_attn_out", self._attention(b, resid_pre, mask, run, ctx, rows))
        resid_mid = run(b + "hook_resid_mid", self._layer_norm(b + "ln1", skip + attn_out, run, ctx))
        mlp_out = run(b + "hook_mlp_out", self._mlp(b, resid_mid, run, ctx))
        return run(b + "hook_resid_post", self._layer_norm(b + "ln2", resid_mid + mlp_out, run, ctx))

    def _layer_norm(self, prefix: str, x, run: _Pass, ctx: dict | None):
        p = self.params
        centred, scale = L.layer_norm_scale(x)
        scale = run(prefix + ".hook_scale", scale)  # [batch, pos, 1]
        xhat = centred / scale
        out = run(prefix + ".hook_normalized", xhat * p[prefix + ".w"] + p[prefix + ".b"])
        if ctx is not None:
            ctx[prefix] = (xhat, scale)
        return out

    def _attention(self, b: str, x, mask, run: _Pass, ctx: dict | None, rows=None):
        cfg, p = self.cfg, self.params
        B, T, D = x.shape
        H, dh = cfg.n_heads, cfg.d_head
        W_qkv, b_qkv = self._fused_qkv(b)
        qkv = L.matmul(x, W_qkv) + b_qkv  # [batch, pos, 3 * d_model]
        q = run(b + "attn.hook_q", qkv[..., :D].reshape(B, T, H, dh))
        k = run(b + "attn.hook_k", qkv[..., D : 2 * D].reshape(B, T, H, dh))
        v = run(b + "attn.hook_v", qkv[..., 2 * D :].reshape(B, T, H, dh))
        qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))  # [batch, head, pos, d_head]
        scores = (qh @ kh.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(dh))  # [batch, head, q, k]
        scores = run(b + "attn.hook_attn_scores", np.where(mask, scores, -np.inf).astype(x.dtype))
        pattern = run(b + "attn.hook_pattern", L.softmax(scores))
        z = np.empty((B, T, H, dh), dtype=x.dtype)  # [batch, pos, head, d_head], filled in place:
        np.matmul(pattern, vh, out=z.transpose(0, 2, 1, 3))  # no copy to undo the head transpose
        z = run(b + "attn.hook_z", z)
        if rows is not None:
            z = z[rows]  # [n, head, d_head]: the rows the loss needs
        out = L.matmul(z.reshape(*z.shape[:-2], D), p[b + "attn.W_O"].reshape(D, D)) + p[b + "attn.b_O"]
        if ctx is not None:
            ctx[b + "attn"] = (x, qh, kh, vh, pattern, z)
        return out

    def _fused_qkv(self, b: str):
        """W_Q, W_K, W_V [head, d_model, d_head] side by side as one [d_model, 3 * d_model] matrix."""
        p, D = self.params, self.cfg.d_model
        Ws = [p[b + f"attn.W_{n}"].transpose(1, 0, 2).reshape(D, D) for n in "QKV"]
        bs = [p[b + f"attn.b_{n}"].reshape(D) for n in "QKV"]
        return np.concatenate(Ws, axis=1), np.concatenate(bs)

    def _mlp(self, b: str, x, run: _Pass, ctx: dict | None):
        p, act = self.params, self.cfg.activation
        pre = run(b + "mlp.hook_pre", L.matmul(x, p[b + "mlp.W_in"]) + p[b + "mlp.b_in"])  # [batch, pos, d_ff]
        post = run(b + "mlp.hook_post", L.activation_forward(act, pre))
        if ctx is not None:
            ctx[b + "mlp"] = (x, pre, post)
        return L.matmul(post, p[b + "mlp.W_out"]) + p[b + "mlp.b_out"]

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
        tokens = ctx["tokens"]
        D = cfg.d_model
        # Embedding lookup backward: scatter-add rows; a one-hot matmul is fast for a small vocab.
        onehot = np.eye(cfg.vocab_size, dtype=dx.dtype)[tokens.reshape(-1)]  # [batch*pos, vocab]
        g["embed.W_E"] = onehot.T @ dx.reshape(-1, D)
        if cfg.positional == "learned":
            dpos = np.zeros_like(p["pos_embed.W_pos"])
            dpos[: tokens.shape[1]] = dx.sum(axis=0)
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
            d_pre += self._attention_backward(b, d_sum1, ctx, run, g)
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
        cfg, p = self.cfg, self.params
        H, dh, D = cfg.n_heads, cfg.d_head, cfg.d_model
        x, qh, kh, vh, pattern, z = ctx[b + "attn"]
        B, T, _ = x.shape
        z_flat = z.reshape(*z.shape[:-2], D)  # [batch, pos, d_model] or [n, d_model]
        dz2, dW_O, g[b + "attn.b_O"] = L.linear_backward(dout, z_flat, p[b + "attn.W_O"].reshape(D, D))
        g[b + "attn.W_O"] = dW_O.reshape(H, dh, D)
        dz = _scatter(dz2, ctx["rows"], (B, T, D)).reshape(B, T, H, dh)
        run.grad(b + "attn.hook_z", dz)
        dzh = dz.transpose(0, 2, 1, 3)  # [batch, head, pos, d_head]
        dpattern = dzh @ vh.transpose(0, 1, 3, 2)  # [batch, head, q, k]
        run.grad(b + "attn.hook_pattern", dpattern)
        dvh = pattern.transpose(0, 1, 3, 2) @ dzh  # [batch, head, pos, d_head]
        dscores = L.softmax_backward(dpattern, pattern)  # masked keys have p = 0, so get 0
        run.grad(b + "attn.hook_attn_scores", dscores)
        dscores = dscores * (1.0 / math.sqrt(dh))
        # Write dq, dk, dv straight into their slots of d(qkv) [batch, pos, 3, head, d_head]
        # (matmul into a transposed view: three times faster than transposing and concatenating).
        dqkv = np.empty((B, T, 3, H, dh), dtype=dout.dtype)
        dvh_slot = dqkv[:, :, 2].transpose(0, 2, 1, 3)
        dvh_slot[...] = dvh
        np.matmul(dscores, kh, out=dqkv[:, :, 0].transpose(0, 2, 1, 3))
        np.matmul(dscores.transpose(0, 1, 3, 2), qh, out=dqkv[:, :, 1].transpose(0, 2, 1, 3))
        run.grad(b + "attn.hook_q", dqkv[:, :, 0])
        run.grad(b + "attn.hook_k", dqkv[:, :, 1])
        run.grad(b + "attn.hook_v", dqkv[:, :, 2])
        dqkv = dqkv.reshape(B, T, 3 * D)
        W_qkv, _ = self._fused_qkv(b)
        dx, dW_qkv, db_qkv = L.linear_backward(dqkv, x, W_qkv)
        for j, n in enumerate("QKV"):
            g[b + f"attn.W_{n}"] = dW_qkv[:, j * D : (j + 1) * D].reshape(D, H, dh).transpose(1, 0, 2)
            g[b + f"attn.b_{n}"] = db_qkv[j * D : (j + 1) * D].reshape(H, dh)
        return dx
