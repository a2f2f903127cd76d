"""The model of docs/model.md in plain PyTorch, written from that spec alone (no model_core import).

    from benchmarks.torch_reference import load
    net, meta = load("pretrained/digits-0-9.safetensors")
    logits = net(tokens)                      # tokens [batch, pos] int64 -> [batch, pos, vocab]
    loss = net.loss(tokens, targets)          # mean cross-entropy where targets != -1
    written = net.generate(prompt, steps, eos_id=1)  # greedy answer tokens of a causal model

Used by tests/model/test_torch_reference.py (which holds it against model_core) and by
benchmarks/vs_torch.py. The app never imports PyTorch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

META_KEY = "transformer_explainer"
LN_EPS = 1e-5
IGNORE = -1


def sinusoid_table(max_len: int, d_model: int) -> torch.Tensor:
    """[max_len, d_model]: column 2k = sin(pos / 10000^(2k / d_model)), column 2k + 1 = its cos."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_k = torch.arange(0, d_model, 2, dtype=torch.float64)[None, :]
    angle = pos / 10000.0 ** (two_k / d_model)  # [max_len, ceil(d_model / 2)]
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe


def param_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every parameter's checkpoint name and shape."""
    D, H, F_, V = cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["vocab_size"]
    dh = D // H
    shapes = {"embed.W_E": (V, D)}
    if cfg["positional"] == "learned":
        shapes["pos_embed.W_pos"] = (cfg["max_len"], D)
    for i in range(cfg["n_layers"]):
        b = f"blocks.{i}."
        shapes |= {b + "ln1.w": (D,), b + "ln1.b": (D,), b + "ln2.w": (D,), b + "ln2.b": (D,)}
        shapes |= {b + f"attn.W_{n}": (H, D, dh) for n in "QKV"} | {b + f"attn.b_{n}": (H, dh) for n in "QKV"}
        shapes |= {b + "attn.W_O": (H, dh, D), b + "attn.b_O": (D,)}
        shapes |= {b + "mlp.W_in": (D, F_), b + "mlp.b_in": (F_,), b + "mlp.W_out": (F_, D), b + "mlp.b_out": (D,)}
    if cfg["norm"] == "pre":
        shapes |= {"ln_final.w": (D,), "ln_final.b": (D,)}
    return shapes | {"unembed.W_U": (D, V), "unembed.b_U": (V,)}


class Transformer(torch.nn.Module):
    """Bidirectional or causal, post- or pre-norm; parameters under their checkpoint names (`net.p[name]`)."""

    def __init__(self, cfg: dict, weights: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = cfg
        shapes = param_shapes(cfg)
        if set(shapes) != {k for k in weights if not k.startswith("optim.")}:
            raise ValueError("the weights do not match the config's parameter names")
        self.p: dict[str, torch.nn.Parameter] = {}
        for name, shape in shapes.items():
            if tuple(weights[name].shape) != shape:
                raise ValueError(f"{name}: shape {tuple(weights[name].shape)}, expected {shape}")
            param = torch.nn.Parameter(torch.as_tensor(weights[name]).detach().to(dtype, copy=True))
            self.register_parameter(name.replace(".", "__"), param)  # (a module's names cannot hold '.')
            self.p[name] = param
        self.sinusoid = sinusoid_table(cfg["max_len"], cfg["d_model"]).to(dtype)  # made in float64, then cast

    def to_dtype(self, dtype: torch.dtype) -> Transformer:
        """A copy whose parameters (and arithmetic) are in `dtype`, e.g. torch.float64."""
        return Transformer(self.cfg, self.p, dtype)

    # ------------------------------------------------------------ forward
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] int64 -> logits [batch, pos, vocab]."""
        cfg, p = self.cfg, self.p
        B, T = tokens.shape
        table = p["pos_embed.W_pos"] if cfg["positional"] == "learned" else self.sinusoid
        x = p["embed.W_E"][tokens] + table[:T]  # [batch, pos, d_model]; no sqrt(d_model) scale
        allowed = (tokens != cfg["pad_id"])[:, None, None, :]  # [batch, 1, 1, k_pos]: no padding key
        if cfg["causal"]:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()  # key <= query
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, -math.inf)
        for i in range(cfg["n_layers"]):
            b = f"blocks.{i}."
            if cfg["norm"] == "pre":
                x = x + self.attention(b, self.layer_norm(b + "ln1", x), mask)
                x = x + self.mlp(b, self.layer_norm(b + "ln2", x))
            else:  # post-norm: LayerNorm after each residual sum
                x = self.layer_norm(b + "ln1", x + self.attention(b, x, mask))
                x = self.layer_norm(b + "ln2", x + self.mlp(b, x))
        if cfg["norm"] == "pre":
            x = self.layer_norm("ln_final", x)
        return x @ p["unembed.W_U"] + p["unembed.b_U"]

    def layer_norm(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        # (x - mean) / sqrt(biased var + 1e-5) * w + b over d_model
        return F.layer_norm(x, x.shape[-1:], self.p[prefix + ".w"], self.p[prefix + ".b"], eps=LN_EPS)

    def attention(self, b: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [batch, pos, d_model], mask [batch, 1, q_pos, k_pos] (0 or -inf) -> [batch, pos, d_model]."""
        p = self.p

        def project(n: str) -> torch.Tensor:  # [batch, head, pos, d_head]
            return torch.einsum("bpd,hde->bhpe", x, p[b + f"attn.W_{n}"]) + p[b + f"attn.b_{n}"][:, None, :]

        q, k, v = project("Q"), project("K"), project("V")
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask  # [batch, head, q_pos, k_pos]
        z = torch.softmax(scores, dim=-1) @ v  # [batch, head, pos, d_head]
        return torch.einsum("bhpe,hed->bpd", z, p[b + "attn.W_O"]) + p[b + "attn.b_O"]

    def mlp(self, b: str, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        pre = x @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"]
        post = F.relu(pre) if self.cfg["activation"] == "relu" else F.gelu(pre, approximate="tanh")
        return post @ p[b + "mlp.W_out"] + p[b + "mlp.b_out"]

    # ------------------------------------------------------------ loss and answers
    def loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every (example, position) whose target is not -1."""
        return cross_entropy(self(tokens), targets)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, steps: int, eos_id: int) -> torch.Tensor:
        """Greedy writing after `prompt` [batch, T] (each row ends with `=`, right-padded: `lengths`
        are taken from the padding). Returns the written ids [batch, steps], pad_id after <eos>."""
        pad = self.cfg["pad_id"]
        lengths = (prompt != pad).sum(dim=1)  # the prompt's tokens are never padding
        n = prompt.shape[0]
        seqs = torch.full((n, int(lengths.max()) + steps), pad, dtype=torch.int64)
        seqs[:, : prompt.shape[1]] = prompt
        written = torch.full((n, steps), pad, dtype=torch.int64)
        done = torch.zeros(n, dtype=torch.bool)
        rows = torch.arange(n)
        for s in range(steps):
            cur = lengths - 1 + s  # read the next token from here
            nxt = self(seqs[:, : int(cur.max()) + 1])[rows, cur].argmax(-1)
            nxt = torch.where(done, pad, nxt)
            seqs[rows, cur + 1] = nxt
            written[:, s] = nxt
            done |= nxt == eos_id
            if bool(done.all()):
                break
        return written


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


def read_meta(path: str | Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()[META_KEY])


def load(path: str | Path) -> tuple[Transformer, dict]:
    """A checkpoint file -> (model, its metadata JSON)."""
    meta = read_meta(path)
    return Transformer(meta["model_config"], load_file(str(path))), meta
