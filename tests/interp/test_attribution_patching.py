"""The backward seeded by a metric (run_with_cache(grad_of=...)) and attribution patching, its first-order
estimate of activation patching, against finite differences and against real patching."""

import numpy as np
import pytest

from model_core import interp, load_model
from model_core.config import ModelConfig
from model_core.model import Transformer


def test_a_seeded_backward_is_the_gradient_of_its_metric_by_finite_differences():
    net = Transformer(ModelConfig(d_model=16, n_heads=4, d_ff=24, seed=4, causal=True, norm="pre"), dtype=np.float64)
    tokens = np.random.default_rng(0).integers(1, 21, (2, 7))
    good, bad, pos = 3, 11, 5

    def metric(logits):
        return float((logits[:, pos, good] - logits[:, pos, bad]).sum())

    def seed(logits):
        d = np.zeros_like(logits)
        d[:, pos, good], d[:, pos, bad] = 1.0, -1.0
        return d

    _, cache = net.run_with_cache(tokens, grad_of=seed)
    rng = np.random.default_rng(1)
    for name in ("blocks.0.hook_resid_pre", "blocks.1.attn.hook_z", "blocks.1.mlp.hook_post", "ln_final.hook_in"):
        for _ in range(3):
            idx = tuple(int(rng.integers(s)) for s in cache[name].shape)

            def bumped(eps, idx=idx, name=name):
                def hook(x, h):
                    x = x.copy()
                    x[idx] += eps
                    return x
                return metric(net.run_with_hooks(tokens, [(name, hook)]))

            numeric = (bumped(1e-6) - bumped(-1e-6)) / 2e-6
            assert cache[name + "_grad"][idx] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, idx)
    with pytest.raises(ValueError, match="grad_of returned shape"):
        net.run_with_cache(tokens, grad_of=lambda z: z[0])


def test_seeding_with_the_losss_own_gradient_gives_the_loss_gradients():
    net = Transformer(ModelConfig(seed=2), dtype=np.float64)
    tokens = np.random.default_rng(3).integers(1, 21, (3, 9))
    targets = np.full((3, 9), -1)
    targets[:, 8] = [12, 14, 16]
    _, by_loss = net.run_with_cache(tokens, targets=targets, grads=True)
    from model_core.layers import cross_entropy

    _, by_seed = net.run_with_cache(tokens, grad_of=lambda z: cross_entropy(z, targets)[1])
    for name, g in by_loss.param_grads.items():
        np.testing.assert_array_equal(by_seed.param_grads[name], g)


CASES = [("digits-0-9", "First ( 3 5 6 )"), ("digits-0-9", "Max ( 5 3 9 )"), ("digits-0-99", "Max ( 47 82 19 )"),
         ("digits-0-99", "Second ( 12 58 3 )")]  # fmt: skip


def test_attribution_patching_tracks_real_patching_on_the_shipped_models():
    """Correlation over the whole sweep (hooks x positions and heads) for every counterfactual; printed."""
    corr = {}
    for name, text in CASES:
        model = load_model(name)
        for kind, c in interp.counterfactuals(model, text).items():
            real, approx = interp.patch_sweep(model, text, c), interp.attribution_patch_sweep(model, text, c)
            assert approx.grid.shape == real.grid.shape and approx.heads.shape == real.heads.shape
            assert (approx.clean_answer, approx.corrupt_answer) == (real.clean_answer, real.corrupt_answer)
            a = np.concatenate([real.grid.ravel(), real.heads.ravel()])
            b = np.concatenate([approx.grid.ravel(), approx.heads.ravel()])
            corr[f"{name} {text} / {kind}"] = float(np.corrcoef(a, b)[0, 1])
    print("\n".join(f"{k}: r = {v:.3f}" for k, v in corr.items()))
    # a first-order estimate: close for small changes (a value changed), rougher for another operation
    assert np.median(list(corr.values())) > 0.75 and min(corr.values()) > 0.2
