"""Where two runs part: `model_core.analysis.compare` against the two caches read directly."""

from __future__ import annotations

import numpy as np
import pytest

from model_core import load_model
from model_core.analysis import run_example
from model_core.analysis.compare import NOTICEABLE, parting, parting_text


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name) for name in ("digits-0-9", "digits-0-99")}


def stream(model, run) -> list[np.ndarray]:
    """The residual stream after each stage, [T, d_model] each, read from the cache by hook name."""
    cache, cfg = run.cache, model.transformer.cfg
    names = ["blocks.0.hook_resid_pre"]
    for i in range(cfg.n_layers):
        names += ([f"blocks.{i}.hook_resid_mid", f"blocks.{i}.hook_resid_post"] if cfg.norm == "pre"
                  else [f"blocks.{i}.ln1.hook_out", f"blocks.{i}.ln2.hook_out"])  # fmt: skip
    return [cache[n][0].astype(np.float64) for n in names]


def test_same_layout_is_compared_position_by_position(models):
    model = models["digits-0-9"]
    a, b = run_example(model, "Max ( 7 2 9 )"), run_example(model, "Min ( 7 2 9 )")
    p = parting(model, a, b)
    assert p.same_layout and p.pos_a == p.pos_b == list(range(len(a.tokens)))
    for s, (xa, xb) in enumerate(zip(stream(model, a), stream(model, b), strict=True)):
        want = np.linalg.norm(xa - xb, axis=-1) / np.maximum(np.linalg.norm(xa, axis=-1), np.linalg.norm(xb, axis=-1))
        np.testing.assert_allclose(p.relative[s], want, rtol=1e-12)
    # before attention, a position reads only its own token and place: only the operation token differs
    assert p.relative[0, 0] > 0 and not p.relative[0, 1:].any()
    text = parting_text(p)
    assert "differ at 1 position: op (`Max` vs `Min`)" in text
    s, k = p.first_noticeable(among=list(range(1, len(p.roles))))
    assert s >= 1 and f"after **{p.stages[s]}**, at position {p.pos_a[k]}" in text


def test_values_of_other_lengths_are_matched_by_role(models):
    model = models["digits-0-99"]
    a, b = run_example(model, "Max ( 6 54 1 )"), run_example(model, "Max ( 6 54 10 )")
    p = parting(model, a, b)
    assert not p.same_layout and p.only_b == ["v3.tens"] and p.only_a == []
    k = p.roles.index("=")
    assert (p.pos_a[k], p.pos_b[k]) == (a.answer_pos, b.answer_pos) == (9, 10)
    assert a.labels[p.pos_a[p.roles.index("v3.ones")]] == "1" and b.labels[p.pos_b[p.roles.index("v3.ones")]] == "0"
    assert "only the second has v3.tens" in parting_text(p)


def test_one_example_with_itself_never_parts(models):
    model = models["digits-0-99"]
    a = run_example(model, "Min ( 3 21 9 )")
    p = parting(model, a, a)
    assert not p.relative.any() and p.first_noticeable() is None
    assert "same tokens at every position" in parting_text(p) and f"within {NOTICEABLE:.0%}" in parting_text(p)


def test_a_causal_model_cannot_part_before_the_first_token_that_differs(models):
    model = models["digits-0-99"]
    a, b = run_example(model, "Max ( 47 82 19 )"), run_example(model, "Max ( 47 82 18 )")
    p = parting(model, a, b)
    first = min(k for k in range(len(p.roles)) if p.tokens_a[k] != p.tokens_b[k])
    assert not p.relative[:, :first].any()  # a causal position never sees what comes after it
    assert p.relative[:, first:].any()
