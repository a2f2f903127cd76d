"""The transformer, readable top to bottom, with a named hook point at every stage.

There is one forward computation. `forward`, `run_with_hooks`, `run_with_cache` and
`loss_and_grads` all run `_forward`; hooks only observe or replace activations (see
`model_core.hooks` and docs/hooks.md), so a plain and a hooked run of the same tokens give
bit-identical logits. The one piece of work a caller may skip is named: with `rows` (the
(batch, position) pairs whose output is wanted, as the loss wants only its target rows),
everything after the last block's attention pattern and `hook_z` runs at those rows alone,
as nanoGPT's generation runs only its last position.

Shapes: tokens [batch, pos]; residual stream [batch, pos, d_model];
q/k/v/z [batch, pos, head, d_head]; scores/pattern [batch, head, q_pos, k_pos];
result [batch, pos, head, d_model]. At `rows`, the last block's stream is [n, d_model].
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from . import layers as L
from .config import ModelConfig
from .hooks import NO_HOOKS, Cache, HookFn, Pass, hook_names
from .params import init_params


def _scatter(d: np.ndarray, rows, shape) -> np.ndarray:
    """Gradient at `rows` ([n, ...]) placed into zeros of `shape`; itself when rows is None."""
    if rows is None:
        return d.copy()
    out = np.zeros(shape, dtype=d.dtype)
    out[rows] = d  # each (batch, pos) pair appears once, so plain assignment is a scatter-add
    return out


class Transformer:
    """A decoder (causal) or encoder (bidirectional) transformer in NumPy.

    `params` maps names (see `model_core.params.param_shapes`) to arrays; training code
    updates them in place or replaces them. Token id `cfg.pad_id` is padding.
    """

    def __init__(self, cfg: ModelConfig, params: dict[str, np.ndarray] | None = None,
                 dtype=np.float32):  # fmt: skip
        self.cfg = cfg
        self.params = params if params is not None else init_params(cfg, dtype)
        self.dtype = next(iter(self.params.values())).dtype
        # The sinusoid table's first rows, made on first use and grown only as far as a run needs: building all
        # max_len rows here (in float64) would let a config, e.g. a checkpoint's, allocate memory it never uses.
        # A row depends on its position alone, so rows [:T] are the same numbers whatever the table's length.
        self._sinusoid: np.ndarray | None = None

    # ------------------------------------------------------------ public API
    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def hook_names(self) -> list[str]:
        return hook_names(self.cfg)

    def positional_table(self, n: int | None = None) -> np.ndarray:
        """What the model adds to the token embeddings at position p: row p of [max_len, d_model]
        (the learned `pos_embed.W_pos`, or the fixed sinusoid table in the model's dtype).
        With `n`, only its first n rows, [n, d_model]: all a run of n tokens reads."""
        n = self.cfg.max_len if n is None else min(n, self.cfg.max_len)
        if self.cfg.positional == "learned":
            table = self.params["pos_embed.W_pos"]
        else:
            table = self._sinusoid
            if table is None or len(table) < n:
                table = self._sinusoid = L.sinusoidal_positions(n, self.cfg.d_model).astype(self.dtype)
        return table if len(table) == n else table[:n]

    def astype(self, dtype) -> Transformer:
        """A copy of this model whose parameters (and arithmetic) are in `dtype`."""
        return Transformer(self.cfg, {k: v.astype(dtype) for k, v in self.params.items()})

    def copy(self) -> Transformer:
        return Transformer(self.cfg, {k: v.copy() for k, v in self.params.items()})

    def forward(self, tokens: np.ndarray, rows=None) -> np.ndarray:
        """Logits [batch, pos, vocab] for tokens [batch, pos].

        With `rows` (a pair of [n] index arrays: batch, position), only the logits at
        those positions, [n, vocab]: the last block stops computing the others after its
        attention pattern.
        """
        return self._forward(self._check_tokens(tokens), NO_HOOKS, None, rows)

    def run_with_hooks(self, tokens, fwd_hooks: Iterable[tuple[str, HookFn]], *, rows=None,
                       start_at: str | None = None, resid: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Logits with hook functions applied (a function may return a replacement).

        `rows` as in `forward` (hooks after the last block's `attn.hook_z` then see [n, ...] arrays).
        `start_at` with `resid`: begin at a block's `hook_resid_pre` or `hook_resid_mid` from that
        stream (an earlier run's, edited or not), as TransformerLens's `start_at_layer`; the stages
        before it are not run. `resid` is [batch, pos, d_model], or [n, d_model] at the last block's
        `hook_resid_mid` with `rows`. `tokens` still give the attention mask. Hooks before it are refused.
        """
        tokens = self._check_tokens(tokens)
        table = self._hook_table(fwd_hooks)
        if start_at is None:
            return self._forward(tokens, Pass(table), None, rows)
        names = self.hook_names()
        m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|mid)", start_at)
        if not m or start_at not in names:
            raise ValueError(f"start_at must be a block's hook_resid_pre or hook_resid_mid, got {start_at!r}")
        layer, mid = int(m.group(1)), m.group(2) == "mid"
        at_rows = mid and rows is not None and layer == self.cfg.n_layers - 1
        want = (len(rows[0]), self.cfg.d_model) if at_rows else tokens.shape + (self.cfg.d_model,)
        if resid is None or resid.shape != want:
            raise ValueError(f"starting at {start_at} needs resid shaped {want}, got {getattr(resid, 'shape', None)}")
        early = [n for n in table if names.index(n) < names.index(start_at)]
        if early:
            raise KeyError(f"hooks {early} come before {start_at}, where this run starts")
        return self._forward(tokens, Pass(table), None, rows, start=(layer, mid, resid))

    def run_with_cache(self, tokens: np.ndarray, *, names_filter=None,
                       fwd_hooks: Iterable[tuple[str, HookFn]] = (),
                       targets: np.ndarray | None = None, grads: bool = False, grad_of=None):  # fmt: skip
        """Run and return (logits, cache) holding every hooked activation.

        With `targets` ([batch, pos], -1 where no loss) the cache also gets `loss`;
        with `grads=True` also `<name>_grad` for every hooked activation and
        `cache.param_grads`. Gradients treat hooks as identities (they are the
        gradients of the model as it ran).

        `grad_of` (instead of targets): a function of the logits [batch, pos, vocab] that returns
        d metric / d logits of the same shape; the gradients are then those of that metric, e.g. a
        logit difference (attribution patching needs them).
        """
        tokens = self._check_tokens(tokens)
        cache = Cache()
        keep = self._name_filter(names_filter)
        backward = grad_of is not None or (targets is not None and grads)
        run = Pass(self._hook_table(fwd_hooks), cache, keep, cache if backward else None)
        ctx: dict | None = {} if backward else None
        logits = self._forward(tokens, run, ctx)
        if targets is not None:
            cache.loss, dlogits = L.cross_entropy(logits, np.asarray(targets))
        if grad_of is not None:
            dlogits = np.asarray(grad_of(logits), dtype=logits.dtype)
            if dlogits.shape != logits.shape:
                raise ValueError(f"grad_of returned shape {dlogits.shape}; the logits are {logits.shape}")
        if backward:
            cache.param_grads = self._backward(dlogits, ctx, run)
        return logits, cache

    def loss_and_grads(self, tokens: np.ndarray, targets: np.ndarray):
        """Mean cross-entropy at the target positions and the gradient of every parameter.

        Returns (loss, {param name: gradient}, logits at the target rows [n, vocab]).
        """
        targets = np.asarray(targets)
        rows = np.nonzero(targets >= 0)  # ([n], [n]) batch and position indices: the loss needs no others
        ctx: dict = {}
        logits = self._forward(self._check_tokens(tokens), NO_HOOKS, ctx, rows)  # [n, vocab]
        loss, dlogits = L.cross_entropy(logits, targets[rows])
        return loss, self._backward(dlogits, ctx, NO_HOOKS), logits

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
    def _forward(self, tokens: np.ndarray, run: Pass, ctx: dict | None, rows=None, start=None) -> np.ndarray:
        """Logits [batch, pos, vocab]; with `rows` (batch, pos index arrays) only those: [n, vocab].

        `start` (layer, from its resid_mid?, stream): begin there (`run_with_hooks`; no backward)."""
        cfg, p = self.cfg, self.params
        B, T = tokens.shape
        first, from_mid, x = start if start is not None else (0, False, None)
        if start is None:
            embed = run("hook_embed", p["embed.W_E"][tokens])  # [batch, pos, d_model]
            pos = run("hook_pos_embed", np.broadcast_to(self.positional_table(T), (B, T, cfg.d_model)))
            x = embed + pos
        # Added to the scores: 0 where a query may attend to a key, -inf where it may not
        # (padding; the future when causal). The same numbers as np.where(mask, scores, -inf),
        # made once per pass instead of once per block: np.where is slow on float32.
        allowed = L.attention_mask(tokens, cfg.pad_id, cfg.causal)  # [batch, 1, q_pos, k_pos]
        mask = np.where(allowed, 0.0, -np.inf).astype(self.dtype)
        if ctx is not None:
            # The embedding's backward is a product with the one-hot tokens [batch * pos, vocab].
            ctx["tokens"], ctx["blocks"] = tokens, []
            ctx["onehot"] = np.eye(cfg.vocab_size, dtype=x.dtype)[tokens.reshape(-1)]
        for i in range(first, cfg.n_layers):
            bctx = {} if ctx is not None else None
            x = self._block(i, x, mask, run, bctx, rows if i == cfg.n_layers - 1 else None, from_mid and i == first)
            if ctx is not None:
                ctx["blocks"].append(bctx)
        if cfg.norm == "pre":
            x = self._layer_norm("ln_final", x, run, ctx)
        if ctx is not None:
            ctx["final"] = x
        return run("hook_logits", L.linear(x, p["unembed.W_U"], p["unembed.b_U"]))

    def _block(self, i: int, x, mask, run: Pass, ctx: dict | None, rows=None, from_mid: bool = False):
        """One block. With `rows`, its output is [n, d_model]: the stream at those rows only.
        `from_mid`: x is the stream after attention (`hook_resid_mid`); only the MLP half runs."""
        b = f"blocks.{i}."
        pre_norm = self.cfg.norm == "pre"
        if from_mid:
            resid_mid = run(b + "hook_resid_mid", x)
        else:
            resid_pre = run(b + "hook_resid_pre", x)
            skip = resid_pre if rows is None else resid_pre[rows]  # the residual path: [batch, pos, d] or [n, d]
            if ctx is not None:
                ctx["rows"] = rows
            # pre-norm (GPT-2): x + f(LN(x)), LN1 of every position gives the keys and values;
            # post-norm (the original's "Add & Norm"): LN(x + f(x)); resid_mid|post are the sums
            # (TransformerLens's BERT)
            attn_in = self._layer_norm(b + "ln1", resid_pre, run, ctx) if pre_norm else resid_pre
            attn_out = run(b + "hook_attn_out", self._attention(b, attn_in, mask, run, ctx, rows))
            resid_mid = run(b + "hook_resid_mid", skip + attn_out)
        if pre_norm:
            mlp_in = self._layer_norm(b + "ln2", resid_mid, run, ctx)
            mlp_out = run(b + "hook_mlp_out", self._mlp(b, mlp_in, run, ctx))
            return run(b + "hook_resid_post", resid_mid + mlp_out)
        normed_mid = self._layer_norm(b + "ln1", resid_mid, run, ctx)
        mlp_out = run(b + "hook_mlp_out", self._mlp(b, normed_mid, run, ctx))
        resid_post = run(b + "hook_resid_post", normed_mid + mlp_out)
        return self._layer_norm(b + "ln2", resid_post, run, ctx)

    def _layer_norm(self, prefix: str, x, run: Pass, ctx: dict | None):
        """out = (x - mean) / sqrt(var + eps) * w + b, hooked at its input, scale, normalized and output."""
        p = self.params
        x = run(prefix + ".hook_in", x)
        centred, scale = L.layer_norm_scale(x)
        scale = run(prefix + ".hook_scale", scale)  # [batch, pos, 1]
        xhat = run(prefix + ".hook_normalized", np.divide(centred, scale, out=centred))  # before the gain
        out = xhat * p[prefix + ".w"]
        out += p[prefix + ".b"]
        if ctx is not None:
            ctx[prefix] = (xhat, scale)
        return run(prefix + ".hook_out", out)

    def _attention(self, b: str, x, mask, run: Pass, ctx: dict | None, rows=None):
        """Multi-head attention of x [batch, pos, d_model]: [batch, pos, d_model] (at `rows`: [n, d_model])."""
        cfg, p = self.cfg, self.params
        B, T, D = x.shape
        H, dh = cfg.n_heads, cfg.d_head
        W_qkv, b_qkv = self._fused_qkv(b)
        qkv = L.matmul(x, W_qkv)  # one product for Q, K and V
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
        z_used = z if rows is None else z[rows]  # [batch, pos, head, d_head] or [n, head, d_head]
        # Each head's write z_h @ W_O[h], as one batched product over heads: [head, rows, d_model]
        z_heads = z_used.reshape(-1, H, dh).transpose(1, 0, 2)  # [head, rows, d_head]
        per_head = np.matmul(z_heads, p[b + "attn.W_O"])
        result = run(b + "attn.hook_result", per_head.transpose(1, 0, 2).reshape(*z_used.shape[:-1], D))
        out = result.sum(axis=-2)  # [..., d_model]: the sum over heads ...
        out += p[b + "attn.b_O"]  # ... plus the output bias
        if ctx is not None:
            ctx[b + "attn"] = (x, qh, kh, vh, pattern, z_used, W_qkv)
        return out

    def _fused_qkv(self, b: str):
        """W_Q, W_K, W_V [head, d_model, d_head] side by side as one [d_model, 3 * d_model] matrix."""
        p, D = self.params, self.cfg.d_model
        W = np.stack([p[b + "attn.W_Q"], p[b + "attn.W_K"], p[b + "attn.W_V"]])  # [3, head, d_model, d_head]
        bias = np.concatenate([p[b + "attn.b_Q"], p[b + "attn.b_K"], p[b + "attn.b_V"]], axis=None)
        return W.transpose(2, 0, 1, 3).reshape(D, 3 * D), bias

    def _mlp(self, b: str, x, run: Pass, ctx: dict | None):
        p, act = self.params, self.cfg.activation
        pre = run(b + "mlp.hook_pre", L.linear(x, p[b + "mlp.W_in"], p[b + "mlp.b_in"]))  # [batch, pos, d_ff]
        tanh = None  # GELU's tanh, kept for the backward pass when training
        if ctx is not None and act == "gelu":
            out, tanh = L.gelu_parts(pre)
        else:
            out = L.activation_forward(act, pre)
        post = run(b + "mlp.hook_post", out)
        if ctx is not None:
            ctx[b + "mlp"] = (x, pre, post, tanh)
        return L.linear(post, p[b + "mlp.W_out"], p[b + "mlp.b_out"])

    # ------------------------------------------------------------ backward
    # Read upward: each step is the forward step above it, reversed. Where a value
    # fed two branches (the residual stream), the gradients of both are added.
    def _backward(self, dlogits, ctx: dict, run: Pass) -> dict[str, np.ndarray]:
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
        g["embed.W_E"] = ctx["onehot"].T @ dx.reshape(-1, cfg.d_model)
        if cfg.positional == "learned":
            dpos = np.zeros_like(p["pos_embed.W_pos"])
            dpos[:T] = dx.sum(axis=0)
            g["pos_embed.W_pos"] = dpos
        return {name: g[name] for name in p}  # parameter order

    def _block_backward(self, i: int, d_out, ctx: dict, run: Pass, g: dict):
        b = f"blocks.{i}."
        rows = ctx["rows"]
        if self.cfg.norm == "pre":
            run.grad(b + "hook_resid_post", d_out)
            run.grad(b + "hook_mlp_out", d_out)
            d_mlp_in = self._mlp_backward(b, d_out, ctx, run, g)
            d_mid = d_out + self._layer_norm_backward(b + "ln2", d_mlp_in, ctx, run, g)
            run.grad(b + "hook_resid_mid", d_mid)
            run.grad(b + "hook_attn_out", d_mid)
            d_attn_in = self._attention_backward(b, d_mid, ctx, run, g)
            d_pre = _scatter(d_mid, rows, d_attn_in.shape)
            d_pre += self._layer_norm_backward(b + "ln1", d_attn_in, ctx, run, g)
        else:
            d_post = self._layer_norm_backward(b + "ln2", d_out, ctx, run, g)  # normed_mid + mlp_out
            run.grad(b + "hook_resid_post", d_post)
            run.grad(b + "hook_mlp_out", d_post)
            d_normed_mid = d_post + self._mlp_backward(b, d_post, ctx, run, g)
            d_mid = self._layer_norm_backward(b + "ln1", d_normed_mid, ctx, run, g)  # resid_pre + attn_out
            run.grad(b + "hook_resid_mid", d_mid)
            run.grad(b + "hook_attn_out", d_mid)
            d_pre = self._attention_backward(b, d_mid, ctx, run, g)
            d_pre += _scatter(d_mid, rows, d_pre.shape)
        run.grad(b + "hook_resid_pre", d_pre)
        return d_pre

    def _layer_norm_backward(self, prefix: str, dout, ctx: dict, run: Pass, g: dict):
        xhat, scale = ctx[prefix]
        w = self.params[prefix + ".w"]
        run.grad(prefix + ".hook_out", dout)
        run.grad(prefix + ".hook_normalized", lambda: dout * w)
        # d loss / d scale as a node of its own (out = centred / scale * w + b): for display and patching
        run.grad(prefix + ".hook_scale", lambda: -(dout * w * xhat).sum(-1, keepdims=True) / scale)
        dx, g[prefix + ".w"], g[prefix + ".b"] = L.layer_norm_backward(dout, xhat, scale, w)
        run.grad(prefix + ".hook_in", dx)
        return dx

    def _mlp_backward(self, b: str, dout, ctx: dict, run: Pass, g: dict):
        p = self.params
        x, pre, post, tanh = ctx[b + "mlp"]
        dpost, g[b + "mlp.W_out"], g[b + "mlp.b_out"] = L.linear_backward(dout, post, p[b + "mlp.W_out"])
        run.grad(b + "mlp.hook_post", dpost)
        dpre = L.activation_backward(self.cfg.activation, dpost, pre, tanh)
        run.grad(b + "mlp.hook_pre", dpre)
        dx, g[b + "mlp.W_in"], g[b + "mlp.b_in"] = L.linear_backward(dpre, x, p[b + "mlp.W_in"])
        return dx

    def _attention_backward(self, b: str, dout, ctx: dict, run: Pass, g: dict):
        """dout: d loss / d attention output, [batch, pos, d_model] (at rows: [n, d_model]). Returns d x."""
        cfg, p = self.cfg, self.params
        H, dh, D = cfg.n_heads, cfg.d_head, cfg.d_model
        x, qh, kh, vh, pattern, z_used, W_qkv = ctx[b + "attn"]
        B, T, _ = x.shape
        rows = ctx["rows"]
        d2 = dout.reshape(-1, D)  # [rows, d_model]: every head's write gets the same gradient
        g[b + "attn.b_O"] = L.col_sum(d2)
        run.grad(b + "attn.hook_result", lambda: np.broadcast_to(dout[..., None, :], (*dout.shape[:-1], H, D)))
        z_heads = z_used.reshape(-1, H, dh).transpose(1, 0, 2)  # [head, rows, d_head]
        g[b + "attn.W_O"] = z_heads.transpose(0, 2, 1) @ d2  # [head, d_head, d_model]
        dz_heads = d2 @ p[b + "attn.W_O"].transpose(0, 2, 1)  # [head, rows, d_head]
        dz = dz_heads.transpose(1, 0, 2).reshape(z_used.shape)
        dz = _scatter(dz, rows, (B, T, H, dh)) if rows is not None else dz  # [batch, pos, head, d_head]
        run.grad(b + "attn.hook_z", dz)
        dzh = dz.transpose(0, 2, 1, 3)  # [batch, head, pos, d_head]
        dpattern = dzh @ vh.transpose(0, 1, 3, 2)  # [batch, head, q, k]
        run.grad(b + "attn.hook_pattern", dpattern)
        # Write dq, dk, dv straight into their slots of d(qkv) [batch, pos, 3, head, d_head]
        # (matmul into a transposed view: no transposing and concatenating afterwards).
        dqkv = np.empty((B, T, 3, H, dh), dtype=dout.dtype)
        np.matmul(pattern.transpose(0, 1, 3, 2), dzh, out=dqkv[:, :, 2].transpose(0, 2, 1, 3))  # dv
        dscores = L.softmax_backward(dpattern, pattern)  # masked keys have p = 0, so get 0
        run.grad(b + "attn.hook_attn_scores", dscores)
        dscores = dscores * (1.0 / math.sqrt(dh))  # a new array: the one above may be in the cache
        np.matmul(dscores, kh, out=dqkv[:, :, 0].transpose(0, 2, 1, 3))
        np.matmul(dscores.transpose(0, 1, 3, 2), qh, out=dqkv[:, :, 1].transpose(0, 2, 1, 3))
        run.grad(b + "attn.hook_q", dqkv[:, :, 0])
        run.grad(b + "attn.hook_k", dqkv[:, :, 1])
        run.grad(b + "attn.hook_v", dqkv[:, :, 2])
        dx, dW_qkv, db_qkv = L.linear_backward(dqkv.reshape(B, T, 3 * D), x, W_qkv)
        # [d_model, (qkv, head, d_head)] -> W_Q, W_K, W_V [head, d_model, d_head], each contiguous
        dW_qkv = np.ascontiguousarray(dW_qkv.reshape(D, 3, H, dh).transpose(1, 2, 0, 3))
        for j, n in enumerate("QKV"):
            g[b + f"attn.W_{n}"] = dW_qkv[j]
            g[b + f"attn.b_{n}"] = db_qkv[j * D : (j + 1) * D].reshape(H, dh)
        return dx
