"""The parameters: every name and shape (the checkpoint layout), and the seeded initialisation."""

from __future__ import annotations

import numpy as np

from .config import ModelConfig


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
    """Seeded initialisation: N(0, 1/fan_in) weights (W_Q and W_K times `qk_init`), zero biases, unit LayerNorm
    gains."""
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
            if leaf in ("W_Q", "W_K"):
                value *= cfg.qk_init
        params[name] = value.astype(dtype)
    return params
