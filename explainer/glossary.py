"""The glossary: every term the pages use, defined as this code base does it (model_core), in Markdown.

`TERMS` holds the definitions that hold for every model; `entries(cfg, name)` adds, for a few of them, what the
model on screen does (its sizes, its LayerNorm placement, its activation, its positions). Numbers come from the
code: the training defaults from `TrainConfig()`, the split fractions from `make_splits`, the LayerNorm epsilon
from `layers.LN_EPS`.
"""

from __future__ import annotations

import inspect

from explainer import format as fmt
from model_core import layers
from model_core.config import ModelConfig, TrainConfig
from model_core.task import make_splits
from model_core.training import optim

_T = TrainConfig()
_SPLIT = inspect.signature(make_splits).parameters
_VAL, _TEST, _N_EVAL = (_SPLIT[k].default for k in ("val_fraction", "test_fraction", "n_eval"))
_EPS = inspect.signature(optim.AdamW).parameters["eps"].default

TERMS: dict[str, str] = {
    "d_model": "the length of the vector each position carries through the model: the width of the residual "
               "stream, of every embedding and of every sublayer's output.",
    "d_head": "the length of one head's query, key and value vectors: d_model / n_heads (n_heads must divide "
              "d_model). The scores are divided by √d_head.",
    "residual stream": "the [positions × d_model] array that flows through every block. Each sublayer (attention, "
                       "then the FFN) reads it and adds what it writes back into it (a post-norm model then "
                       "normalises the sum); the logits are read from it after the last block.",
    "LayerNorm (pre/post-norm)": "per position, (x − mean) / √(variance + "
                                 f"{layers.LN_EPS:g}) × w + b over the d_model features, with a learned gain w "
                                 "and bias b. Post-norm (\"Add & Norm\"): x = LN(x + sublayer(x)), so the stream "
                                 "that flows on is each LayerNorm's output. Pre-norm: x = x + sublayer(LN(x)), "
                                 "plus a final LayerNorm (ln_final) before the unembedding.",
    "GELU": "the FFN's activation in models built with activation \"gelu\", in the tanh approximation (as GPT-2): "
            "0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))). Unlike ReLU (the default, max(x, 0)) it is slightly "
            "negative for x < 0.",
    "FFN": "the feed-forward sublayer of each block: W_in [d_model × d_ff] and a bias, the activation, then "
           "W_out [d_ff × d_model] and a bias, at every position separately. Its d_ff activations are its "
           "neurons.",
    "positional encoding": "what tells the model where each token is, added to the token embedding: a fixed table "
                           "of sinusoids (\"sinusoidal\", no parameters) or a learned one (\"learned\", "
                           "pos_embed.W_pos, one row per position).",
    "attention pattern": "one head's weights [query position × key position]: the softmax over the keys of the "
                         "scores q·k / √d_head, after masking. Each row sums to 1; masked keys (padding, and in a "
                         "causal model every later position) get −∞ before the softmax, so weight 0.",
    "query / key / value": "per head, q = x W_Q + b_Q, k = x W_K + b_K, v = x W_V + b_V. A query's dot "
                           "product with each key scores how much it reads from that position; the head's output "
                           "is the pattern-weighted sum of the values, projected back by W_O.",
    "causal / bidirectional": "a causal (GPT-style) model lets each position attend only to itself and earlier "
                              "positions and writes its answer token by token; a bidirectional model attends "
                              "everywhere and reads its one-token answer at `=`.",
    "logit": "one score per vocabulary token at a position: the stream there after the last block (and, in a "
             "pre-norm model, ln_final) times W_U, plus b_U. Only differences between logits matter to the "
             "softmax.",
    "softmax": "turns logits z into probabilities: exp(z_i) / Σ_j exp(z_j), computed after subtracting the "
               "largest z (the same numbers, without overflow).",
    "temperature": "softmax(z / T): T < 1 sharpens the distribution towards the top token, T > 1 flattens it. "
                   "The Output page's slider only redraws the probabilities: the model itself always uses T = 1 "
                   "and answers greedily (the most likely token).",
    "cross-entropy": "the loss: −log p(true next token), averaged over the positions that have a target. A "
                     "bidirectional model has one, `=`; a causal model has `=` and each answer token, the last "
                     "target being `<eos>`.",
    "teacher forcing": "in training and on the Backprop page, a causal model reads the true answer's tokens, not "
                       "its own, when it predicts each next one: every position's loss in one forward pass.",
    "held-out": f"expressions never trained on: the test split, {_TEST:.0%} of the input space by default, "
                "scored once after training (the \"held-out accuracy\"; in a space too large to list, a sample "
                f"of at most {_N_EVAL:,} of them). Splits are by distinct expression.",
    "validation": f"a second split the model never trains on, {_VAL:.0%} by default, measured every eval_every "
                  f"steps during training (default {_T.eval_every}); it decides an early stop at a target "
                  "accuracy, and is the reference set for mean ablation.",
    "AdamW": "Adam (running means of the gradient and of its square, bias-corrected) with decoupled weight decay. "
             f"The default optimiser: lr {_T.lr:g}, β1 {_T.beta1:g}, β2 {_T.beta2:g}, ε {_EPS:g}, weight decay "
             f"{_T.weight_decay:g}.",
    "momentum": "SGD's running sum of gradients, buf = μ buf + g, then p −= lr × buf "
                f"(μ = {_T.momentum:g} by default; used by the \"sgd\" optimiser only). Adam's β1 average plays "
                "the same role. The Backprop page's step is plain SGD, without momentum.",
    "warm-up": f"the first warmup_steps steps (default {_T.warmup_steps}), in which the learning rate rises "
               "linearly, lr × (step + 1) / warmup_steps; then it follows a cosine down to "
               f"{_T.min_lr_ratio:g} × lr (the default) or stays constant.",
    "gradient clipping": "before each step, if the norm of all the gradients together is above grad_clip "
                         f"(default {_T.grad_clip:g}), every gradient is scaled down so it equals grad_clip; "
                         "0 turns it off.",
    "weight decay": "with AdamW only: each step also shrinks every weight matrix W_* (embeddings and unembedding "
                    "included) by lr × weight_decay × its value; biases and LayerNorm gains are left alone.",
    "ablation": "switching a component off to see what the answer needs: zero (its write set to 0) or mean (its "
                "write replaced by its average over the validation split, per position). The Attention page's "
                "toggles zero a head's output z before W_O, so the head writes nothing (the bias b_O, "
                "shared by the heads, is still added).",
    "activation patching": "run a corrupted input, paste one activation from the clean run in its place, and "
                           "measure how much of the clean answer's logit difference comes back: (patched − "
                           "corrupted) / (clean − corrupted), 0 nothing, 1 all.",
    "logit lens": "decode the residual stream after each stage as if it were the last (through ln_final in a "
                  "pre-norm model, then the unembedding), to see when the answer appears.",
    "direct logit attribution": "split a logit (or a logit difference) into what each component wrote: its "
                                "write taken straight to the unembedding along the stream, with every LayerNorm's "
                                "scale frozen at this run's value, so the parts sum to the real logit.",
}


def entries(cfg: ModelConfig, model_name: str) -> dict[str, str]:
    """TERMS, with what the model on screen (`model_name`, shown literally) does added where it differs."""
    name = f"**{fmt.literal(model_name)}**"
    out = dict(TERMS)
    here = {
        "d_model": f"{cfg.d_model} in {name}.",
        "d_head": f"{cfg.d_model} / {cfg.n_heads} = {cfg.d_head} in {name}.",
        "LayerNorm (pre/post-norm)": f"{name} is {cfg.norm}-norm.",
        "GELU": f"{name} uses {'GELU' if cfg.activation == 'gelu' else 'ReLU'}.",
        "FFN": f"d_ff = {cfg.d_ff} in {name}.",
        "positional encoding": f"{name} uses {cfg.positional} positions.",
        "causal / bidirectional": f"{name} is {'causal' if cfg.causal else 'bidirectional'}.",
    }
    for term, text in here.items():
        out[term] += " " + text
    return out
