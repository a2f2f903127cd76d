"""The training step as formulas (LaTeX) and sentences, written from the objects that run it.

Every constant in a formula is read from the optimiser `make_optimizer` builds for the configuration (its
momentum, betas, eps, weight decay and which parameters decay) or from the `TrainConfig` itself, so the page
cannot show a recipe other than the one the trainer runs.
"""

from __future__ import annotations

import re

import numpy as np

from ..config import TrainConfig
from .optim import SGD, Adam, AdamW, decays, make_optimizer

OPTIMIZER_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD with momentum"}


def _number(x: float) -> str:
    """A constant as LaTeX: 0.9, 0.98, 10^{-8}."""
    if x != 0 and abs(x) < 1e-3:
        exponent = int(np.floor(np.log10(abs(x))))
        mantissa = x / 10.0**exponent
        return (f"{mantissa:g} \\times " if not np.isclose(mantissa, 1.0) else "") + f"10^{{{exponent}}}"
    return f"{x:g}"


def _optimizer(cfg: TrainConfig) -> SGD | Adam:
    """The optimiser the trainer builds for `cfg`, over one stand-in weight matrix (its constants are all we read)."""
    return make_optimizer(cfg, {"W_stand_in": np.zeros(1, np.float32)})


def loss_latex(causal: bool) -> str:
    """The batch loss as `Transformer.loss_and_grads` computes it: the mean over every answer token in the batch
    (not over the B expressions), each conditioned on what the model reads at that position."""
    given = r"x_b,\, y_{b,<t}" if causal else r"x_b"
    return (
        r"\mathcal{L}(\theta) = -\frac{1}{N} \sum_{b=1}^{B} \sum_{t \in A_b} \log p_\theta\!\left(y_{b,t} \mid "
        + given
        + r"\right)"
    )  # N (defined in the caption) stays out of the formula: it then fits a phone's width


def loss_caption(causal: bool) -> str:
    """What A_b, N and the condition mean for this kind of model."""
    n = r"$N = \sum_b |A_b|$ counts the batch's answer tokens"
    if causal:
        return (
            f"$A_b$: expression b's answer positions (each digit of the answer, then `<eos>`); {n}, so a three-token "
            "answer weighs three times a one-token one. The model reads the expression and the true answer tokens "
            "before t (teacher forcing)."
        )
    return (
        f"$A_b$: expression b's answer position (one token: the answer digit); {n}, so here $N = B$. The model "
        "reads the whole expression at once (bidirectional attention)."
    )


def update_latex(cfg: TrainConfig) -> str:
    """The parameter update of `cfg.optimizer`, with the constants of the optimiser the trainer builds."""
    opt = _optimizer(cfg)
    g = r"g_t = \nabla_\theta \mathcal{L}"
    # one equation a line (KaTeX's gathered): side by side, the AdamW update was twice a phone's width
    if isinstance(opt, SGD):
        v = r"v_t = " + _number(opt.momentum) + r"\, v_{t-1} + g_t"
        return _lines(g, v, r"\theta_t = \theta_{t-1} - \eta_t\, v_t")
    b1, b2, eps = _number(opt.beta1), _number(opt.beta2), _number(opt.eps)
    m = r"m_t = " + b1 + r"\, m_{t-1} + (1 - " + b1 + r")\, g_t"
    v = r"v_t = " + b2 + r"\, v_{t-1} + (1 - " + b2 + r")\, g_t^2"
    m_hat = r"\hat m_t = \frac{m_t}{1 - " + b1 + r"^{\,t}}"
    v_hat = r"\hat v_t = \frac{v_t}{1 - " + b2 + r"^{\,t}}"
    adam = r"\frac{\hat m_t}{\sqrt{\hat v_t} + " + eps + "}"
    if isinstance(opt, AdamW) and opt.weight_decay > 0:  # u_t: the step's direction, on a line of its own
        u = r"u_t = " + adam + " + " + _number(opt.weight_decay) + r"\, \theta_{t-1}\, [\theta \in W]"
        return _lines(g, m, v, m_hat, v_hat, u, r"\theta_t = \theta_{t-1} - \eta_t\, u_t")
    return _lines(g, m, v, m_hat, v_hat, r"\theta_t = \theta_{t-1} - \eta_t " + adam)


def _lines(*equations: str) -> str:
    return r"\begin{gathered} " + r" \\ ".join(equations) + r" \end{gathered}"


def update_caption(cfg: TrainConfig, param_names: list[str]) -> str:
    """One line on what the update formula does, for this optimiser over the model's parameters `param_names`."""
    opt = _optimizer(cfg)
    if isinstance(opt, SGD):
        return (
            f"{OPTIMIZER_NAMES['sgd']} ({_plain(opt.momentum)}): v is a running sum of past gradients that decays by "
            f"{_plain(opt.momentum)} a step, so a steady gradient moves the weights about "
            f"{1 / (1 - opt.momentum):g} times as far as one step of plain SGD would."
        )
    text = (
        f"{OPTIMIZER_NAMES[cfg.optimizer]}: m and v are running means of the gradient and its square "
        f"(β1 = {_plain(opt.beta1)}, β2 = {_plain(opt.beta2)}, ε = {_plain(opt.eps)}), corrected for starting at zero; "
        "each weight moves by about η in the direction of its recent gradients, whatever their size "
        "(the very first step is ±η on every weight with a gradient)."
    )
    if isinstance(opt, AdamW) and opt.weight_decay > 0:
        kinds = dict.fromkeys(n.rsplit(".", 1)[-1] for n in param_names if decays(n))  # in the model's order
        kept = dict.fromkeys(re.sub(r"^blocks\.\d+\.", "", n) for n in param_names if not decays(n))
        text += (
            f" Weight decay λ = {_plain(opt.weight_decay)} ([θ ∈ W]) pulls only the weight matrices "
            f"({', '.join(kinds)}) towards zero; {', '.join(kept)} (LayerNorm gains and biases) are not decayed."
        )
    return text


def _plain(x: float) -> str:
    """A constant as text: 0.9, 0.98, 1e-8."""
    return f"{x:g}".replace("e-0", "e-")


def schedule_latex(cfg: TrainConfig) -> str:
    """The learning rate at step t, as `optim.lr_at` computes it."""
    warm = cfg.warmup_steps
    # one case a line, its condition after it: a `cases` block was wider than a phone
    lines = []
    if warm > 0:
        lines.append(r"\eta_t = \eta\, \frac{t + 1}{" + str(warm) + r"} \quad (t < " + str(warm) + ")")
    after = r"(t \ge " + str(warm) + ")" if warm > 0 else r"(\text{every } t)"
    if cfg.schedule == "constant":
        return _lines(*lines, r"\eta_t = \eta \quad " + after, f"T = {cfg.steps}")
    floor = _number(cfg.min_lr_ratio)
    rest = _number(round(1 - cfg.min_lr_ratio, 12))  # 1 - 0.1 written 0.9
    lines.append(r"\eta_t = " + floor + r"\,\eta + " + rest + r"\,\eta\, \tfrac12 (1 + \cos \pi p_t) \quad " + after)
    p = r"p_t = \frac{\min(t - " + str(warm) + r",\ T - " + str(warm) + r")}{T - " + str(warm) + "}"  # decay done
    return _lines(*lines, p, f"T = {cfg.steps}")


def schedule_caption(cfg: TrainConfig) -> str:
    """The schedule in words, with its numbers."""
    warm = (f"rises linearly over the first {cfg.warmup_steps:,} steps (so early, large gradients cannot throw the "
            "fresh weights far), then " if cfg.warmup_steps > 0 else "starts at η and ")  # fmt: skip
    if cfg.schedule == "constant":
        return f"The learning rate η_t {warm}stays at η = {cfg.lr:g}."
    return (f"The learning rate η_t {warm}falls along half a cosine from η = {cfg.lr:g} to "
            f"{cfg.min_lr_ratio:g} η = {cfg.min_lr_ratio * cfg.lr:g} at the last step (T = {cfg.steps:,}); an early "
            "stop ends the run before the end of the schedule.")  # fmt: skip


def clipping_caption(cfg: TrainConfig) -> str:
    """Clipping in words."""
    if cfg.grad_clip <= 0:
        return "Gradient clipping is off: every step uses the full gradient."
    return (f"Global-norm clipping: when the gradient of all parameters together is longer than {cfg.grad_clip:g}, "
            "it is scaled down to that length (its direction is kept). After the run, the page says on how many "
            "steps it acted.")  # fmt: skip


def clipping_latex(cfg: TrainConfig) -> str | None:
    """Global-norm clipping as `optim.clip_grad_norm` does it (None when it is off)."""
    if cfg.grad_clip <= 0:
        return None
    c = _number(cfg.grad_clip)
    return _lines(r"g_t \leftarrow g_t \cdot \min\!\left(1,\ \frac{" + c + r"}{\lVert g_t \rVert}\right)",
                  r"\lVert g_t \rVert^2 = \sum_{\text{every parameter}} g^2")  # fmt: skip


def clipping_sentence(grad_norms: np.ndarray, clip: float) -> str:
    """How often clipping acted in a run, from its per-step gradient norms (before clipping) [n]."""
    n = len(grad_norms)
    if clip <= 0:
        return "Clipping is off for this run."
    if n == 0:
        return ""
    clipped = int((np.asarray(grad_norms) > clip).sum())
    if clipped == 0:
        return f"Clipping never acted in this run: every gradient norm stayed at or below {clip:g}."
    return (
        f"Clipping acted on {clipped:,} of the {n:,} steps ({clipped / n:.0%}): their gradient norm was above "
        f"{clip:g} (largest {float(np.max(grad_norms)):.3g}), so those steps were scaled down to norm {clip:g}."
    )
