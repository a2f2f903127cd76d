"""Learning-rate schedule, gradient clipping and the optimisers (SGD, Adam, AdamW).

Optimiser state is keyed by parameter name (`opt.state["m"]["blocks.0.attn.W_Q"]`)
and exported as plain named arrays (`optim.m.<param>`, `optim.v.<param>`,
`optim.momentum.<param>`, `optim.t`) so it fits in a safetensors checkpoint.

Speed: a NumPy call has a fixed cost however small its array, so looping a dozen
ufuncs over every parameter array would cost more than the arithmetic. Instead an optimiser
keeps its state in flat buffers and moves the parameters into one contiguous
buffer of its own: `params[name]` becomes a view into it (same values, same
dtype), and a step is about a dozen whole-buffer ufuncs.
Parameters that need weight decay sit first in that buffer, so decay is one call.
If a caller later swaps an array in `params` for a new one, `step` notices and
updates the arrays it is given, one by one (slower, same result).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..config import TrainConfig

STATE_PREFIX = "optim."
STEP_KEY = "optim.t"  # the number of steps taken: int64, shape (1,)
SLOTS = ("m", "v", "momentum")  # every per-parameter state kind any optimiser here keeps


# ---------------------------------------------------------------- schedule
def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate for `step` (counted from 0).

    Warm-up: lr * (step + 1) / warmup_steps for the first warmup_steps steps, so
    step 0 already moves and step warmup_steps - 1 reaches lr. Then either constant
    or a half cosine from lr (at step warmup_steps) down to min_lr_ratio * lr (at
    step cfg.steps); later steps stay at that floor.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    warmup = cfg.warmup_steps
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    floor = cfg.min_lr_ratio * cfg.lr
    span = cfg.steps - warmup
    if span <= 0:  # warm-up fills the whole run: nothing left to decay over
        return floor
    progress = min((step - warmup) / span, 1.0)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- clipping
def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale every gradient in place so their global L2 norm is at most `max_norm`.

    Returns the norm before clipping. `max_norm <= 0` only measures. A non-finite
    norm is returned as it is, with nothing scaled: the caller decides what a NaN means.
    """
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if not math.isfinite(norm):
        # float32 sums of squares overflow near |g| ~ 1e19; tell that apart from a real inf/NaN
        norm = math.sqrt(sum(float(np.vdot(g64, g64)) for g64 in (g.astype(np.float64) for g in grads.values())))
    if math.isfinite(norm) and max_norm > 0 and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


# ---------------------------------------------------------------- state checks
def check_state_dict(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                     slots: Iterable[str] | None = None) -> None:  # fmt: skip
    """Raise ValueError, with a message that names the array, unless `state` is a valid state dict.

    `shapes` are the parameters' shapes by name. `slots` are the per-parameter kinds the
    optimiser keeps (("m", "v") for Adam); None accepts any known kinds, but each kind
    present must cover every parameter. Checkpoint loading uses this too.
    """
    if STEP_KEY not in state:
        raise ValueError(f"optimiser state has no step counter '{STEP_KEY}'")
    t = np.asarray(state[STEP_KEY])
    if t.shape not in ((), (1,)) or not np.issubdtype(t.dtype, np.integer) or int(t.reshape(-1)[0]) < 0:
        raise ValueError(f"'{STEP_KEY}' must be one whole number >= 0 (int64), got dtype {t.dtype} shape {t.shape}")
    found: dict[str, set[str]] = {}
    for key in state:
        if key == STEP_KEY:
            continue
        slot, _, name = key.removeprefix(STATE_PREFIX).partition(".")
        if not key.startswith(STATE_PREFIX) or slot not in SLOTS or name not in shapes:
            raise ValueError(f"unexpected optimiser state array '{key}'")
        found.setdefault(slot, set()).add(name)
    wanted = set(found) if slots is None else set(slots)
    extra = sorted(set(found) - wanted)
    if extra:
        raise ValueError(
            f"unexpected optimiser state '{STATE_PREFIX}{extra[0]}.*': this optimiser keeps {sorted(wanted)}"
        )
    for slot in sorted(wanted):
        for name, shape in shapes.items():
            key = f"{STATE_PREFIX}{slot}.{name}"
            if key not in state:
                raise ValueError(f"optimiser state array '{key}' is missing")
            a = np.asarray(state[key])
            if a.shape != tuple(shape):
                raise ValueError(f"optimiser state array '{key}' has shape {a.shape}, expected {tuple(shape)}")
            if not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"optimiser state array '{key}' has dtype {a.dtype}, expected float32")
            if not np.isfinite(a).all():
                raise ValueError(f"optimiser state array '{key}' holds NaN or infinite values")


# ---------------------------------------------------------------- optimisers
def decays(name: str) -> bool:
    """Weight decay goes to weight matrices (`W_*`) only, not LayerNorm gains (`.w`) or biases."""
    return name.rsplit(".", 1)[-1].startswith("W_")


class Optimizer:
    """Shared machinery: flat buffers, name-keyed views, the step counter, state export.

    Subclasses set `slots` and implement `_delta(g, lr)`, returning the flat update
    to subtract (it may be a scratch buffer) and `_decay(lr)`, the weight-decay factor.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray]):
        if not params:
            raise ValueError("an optimiser needs at least one parameter")
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
            raise ValueError(f"parameters must share one floating dtype, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        # decayed parameters first, so weight decay is a single call on the buffer's head
        order = [n for n in params if decays(n)] + [n for n in params if not decays(n)]
        self.shapes = {n: params[n].shape for n in params}  # parameter order
        self._layout: list[tuple[str, slice, tuple[int, ...]]] = []
        start = 0
        for n in order:
            size = params[n].size
            self._layout.append((n, slice(start, start + size), params[n].shape))
            start += size
        self.n_decayed = sum(params[n].size for n in order if decays(n))
        self.t = 0
        self._flat = np.empty(start, dtype)  # the parameters' new home
        self._g = np.empty(start, dtype)  # gradients, gathered
        self._tmp = np.empty(start, dtype)  # scratch
        self._buffers = {s: np.zeros(start, dtype) for s in self.slots}
        self.state = {s: self._views(buf) for s, buf in self._buffers.items()}  # slot -> name -> array
        self._home = self._views(self._flat)
        for n, view in self._home.items():
            view[...] = params[n]
            params[n] = view

    def _views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {n: flat[sl].reshape(shape) for n, sl, shape in self._layout}

    # ------------------------------------------------------------ public API
    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """One update of `params` in place from `grads` (same names and shapes) at learning rate `lr`."""
        g = self._gather(grads)
        self.t += 1
        lr = float(lr)  # a Python float keeps float32 arithmetic in float32
        delta = self._delta(g, lr)
        decay = self._decay(lr)
        home = self._home
        if all(params.get(n) is view for n, view in home.items()):
            if decay:
                head = self._flat[: self.n_decayed]
                np.multiply(head, 1.0 - decay, out=head)
            np.subtract(self._flat, delta, out=self._flat)
            return
        for n, sl, shape in self._layout:  # arrays swapped in by the caller: update each
            p = params[n]
            if decay and decays(n):
                p *= 1.0 - decay
            p -= delta[sl].reshape(shape)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state as named arrays: `optim.<slot>.<param>` and `optim.t`."""
        out = {f"{STATE_PREFIX}{slot}.{n}": self.state[slot][n].copy() for slot in self.slots for n in self.shapes}
        out[STEP_KEY] = np.array([self.t], dtype=np.int64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from `state_dict()` output; ValueError (naming the array) if it does not fit."""
        check_state_dict(state, self.shapes, self.slots)
        for slot in self.slots:
            for n, view in self.state[slot].items():
                view[...] = state[f"{STATE_PREFIX}{slot}.{n}"]
        self.t = int(np.asarray(state[STEP_KEY]).reshape(-1)[0])

    # ------------------------------------------------------------ internals
    def _gather(self, grads: dict[str, np.ndarray]) -> np.ndarray:
        parts = []
        for n, _, shape in self._layout:
            g = grads.get(n)
            if g is None:
                raise ValueError(f"no gradient for parameter '{n}'")
            if g.shape != shape:
                raise ValueError(f"gradient for '{n}' has shape {g.shape}, expected {shape}")
            parts.append(g.reshape(-1))
        if len(grads) != len(parts):
            extra = sorted(set(grads) - set(self.shapes))
            raise ValueError(f"gradient for unknown parameter(s) {extra}")
        np.concatenate(parts, out=self._g)
        return self._g

    def _delta(self, g: np.ndarray, lr: float) -> np.ndarray:
        raise NotImplementedError

    def _decay(self, lr: float) -> float:
        return 0.0


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum: buf = momentum * buf + g;  p -= lr * buf."""

    slots = ("momentum",)

    def __init__(self, params: dict[str, np.ndarray], momentum: float = 0.9):
        super().__init__(params)
        self.momentum = float(momentum)

    def _delta(self, g: np.ndarray, lr: float) -> np.ndarray:
        buf = self._buffers["momentum"]
        np.multiply(buf, self.momentum, out=buf)
        np.add(buf, g, out=buf)
        return np.multiply(buf, lr, out=self._tmp)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba):

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t += 1
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    slots = ("m", "v")

    def __init__(self, params: dict[str, np.ndarray], beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):  # fmt: skip
        super().__init__(params)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _delta(self, g: np.ndarray, lr: float) -> np.ndarray:
        b1, b2 = self.beta1, self.beta2
        m, v, tmp = self._buffers["m"], self._buffers["v"], self._tmp
        np.multiply(m, b1, out=m)
        np.multiply(g, 1.0 - b1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, 1.0 - b2, out=tmp)
        np.add(v, tmp, out=v)
        # The formula above with both sides of the fraction multiplied by sqrt(1 - b2^t),
        # which folds the two bias corrections into two scalars.
        root_bc2 = math.sqrt(1.0 - b2**self.t)
        step_size = lr * root_bc2 / (1.0 - b1**self.t)
        np.sqrt(v, out=tmp)
        np.add(tmp, self.eps * root_bc2, out=tmp)
        np.divide(m, tmp, out=tmp)
        return np.multiply(tmp, step_size, out=tmp)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): also p -= lr * wd * p
    (from p before this step's update), for `W_*` parameters only."""

    def __init__(self, params: dict[str, np.ndarray], beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01):  # fmt: skip
        super().__init__(params, beta1, beta2, eps)
        self.weight_decay = float(weight_decay)

    def _decay(self, lr: float) -> float:
        return lr * self.weight_decay


def make_optimizer(cfg: TrainConfig, params: dict[str, np.ndarray]) -> Optimizer:
    """The optimiser `cfg.optimizer` names, over `params` (whose arrays it re-homes, see above)."""
    if cfg.optimizer == "sgd":
        return SGD(params, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return Adam(params, beta1=cfg.beta1, beta2=cfg.beta2)
    if cfg.optimizer == "adamw":
        return AdamW(params, beta1=cfg.beta1, beta2=cfg.beta2, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
