"""Hook points: every named intermediate of a forward pass, and the contract a hook function keeps.

The names and meanings follow TransformerLens; docs/hooks.md lists every hook with its shape and
where it sits in a pre-norm and a post-norm block. A hook is `fn(activation, hook) -> None or a
replacement`:

- it gets a read-only view of the activation (an in-place edit raises `HookError`: return a
  replacement instead);
- a replacement must have the activation's exact shape and dtype (else `HookError`, naming the hook
  and both shapes or dtypes); nothing is reshaped or cast behind the caller's back;
- hooks at one name run in the order given, each seeing the previous one's replacement;
- the cache keeps the activation after every hook at that name has run.

Hooks and the cache live in one `Pass` per call, so they never outlive the call that set them and
concurrent calls on a shared model do not see each other's hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .config import ModelConfig


class HookPoint(NamedTuple):
    name: str


HookFn = Callable[[np.ndarray, HookPoint], "np.ndarray | None"]


class HookError(ValueError):
    """A hook function broke the contract: wrong shape or dtype, or an in-place edit."""


class Cache(dict):
    """Activations by hook name (and `<name>_grad` when gradients were asked for).

    `loss` and `param_grads` are set when the call was given targets and `grads=True`.
    """

    loss: float | None = None
    param_grads: dict[str, np.ndarray] | None = None


LN_HOOKS = ("hook_in", "hook_scale", "hook_normalized", "hook_out")
ATTN_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z", "hook_result")


def hook_names(cfg: ModelConfig) -> list[str]:
    """Every hook point, in the order the forward pass reaches it."""

    def ln(prefix: str) -> list[str]:
        return [f"{prefix}.{h}" for h in LN_HOOKS]

    names = ["hook_embed", "hook_pos_embed"]
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        attn = [b + "attn." + h for h in ATTN_HOOKS] + [b + "hook_attn_out"]
        mlp = [b + "mlp.hook_pre", b + "mlp.hook_post", b + "hook_mlp_out"]
        if cfg.norm == "pre":  # x + f(LN(x))
            names += [b + "hook_resid_pre", *ln(b + "ln1"), *attn, b + "hook_resid_mid", *ln(b + "ln2"), *mlp,
                      b + "hook_resid_post"]  # fmt: skip
        else:  # LN(x + f(x)): resid_mid and resid_post are the sums, before their LayerNorm
            names += [b + "hook_resid_pre", *attn, b + "hook_resid_mid", *ln(b + "ln1"), *mlp, b + "hook_resid_post",
                      *ln(b + "ln2")]  # fmt: skip
    if cfg.norm == "pre":
        names += ln("ln_final")
    return names + ["hook_logits"]


class Pass:
    """One call's hooks, cache and gradient sink."""

    __slots__ = ("hooks", "cache", "keep", "grads")

    def __init__(self, hooks=None, cache=None, keep=None, grads=None):
        self.hooks: dict[str, list[HookFn]] = hooks or {}
        self.cache: Cache | None = cache
        self.keep: Callable[[str], bool] | None = keep  # which names go into the cache
        self.grads: Cache | None = grads  # where `<name>_grad` goes, if anywhere

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        for fn in self.hooks.get(name, ()):
            x = _apply(fn, name, x)
        if self.cache is not None and (self.keep is None or self.keep(name)):
            self.cache[name] = x
        return x

    def wants_grad(self, name: str) -> bool:
        return self.grads is not None and (self.keep is None or self.keep(name))

    def grad(self, name: str, g) -> None:
        """Record d loss / d activation; `g` may be a function, called only if the gradient is kept."""
        if self.wants_grad(name):
            self.grads[name + "_grad"] = g() if callable(g) else g


NO_HOOKS = Pass()


def _apply(fn: HookFn, name: str, x: np.ndarray) -> np.ndarray:
    view = x.view()
    view.flags.writeable = False
    try:
        out = fn(view, HookPoint(name))
    except ValueError as err:
        if "read-only" in str(err):
            raise HookError(f"hook {name}: the activation is read-only; return a replacement instead of "
                            "editing it in place") from err  # fmt: skip
        raise
    if out is None:
        return x
    if not isinstance(out, np.ndarray):
        raise HookError(f"hook {name}: a replacement must be a NumPy array, got {type(out).__name__}")
    if out.shape != x.shape:
        raise HookError(f"hook {name}: the replacement has shape {out.shape}, the activation {x.shape}")
    if out.dtype != x.dtype:
        raise HookError(f"hook {name}: the replacement has dtype {out.dtype}, the activation {x.dtype}")
    return out
