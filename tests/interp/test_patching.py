"""model_core.interp patching: the identities (nothing -> 0, the whole input -> 1), the batched sweep against
its one-at-a-time loop, and counterfactuals that differ in one controlled way."""

import numpy as np
import pytest

from model_core import interp

PAIRS = {"digits-0-9": ("First ( 3 5 6 )", "Second ( 3 5 6 )"), "digits-0-99": ("Max ( 47 82 19 )", "Max ( 47 10 19 )")}


@pytest.mark.parametrize("name", list(PAIRS))
def test_patching_nothing_recovers_0_and_the_whole_input_stream_recovers_1(shipped, name):
    model = shipped[name]
    clean, corrupt = PAIRS[name]
    rec = interp.recovery(model, clean, corrupt, [[], [interp.Patch("blocks.0.hook_resid_pre")]])
    assert abs(rec[0]) < 1e-6 and abs(rec[1] - 1.0) < 1e-5


@pytest.mark.parametrize("name", list(PAIRS))
def test_at_the_input_only_the_positions_that_differ_carry_anything(shipped, name):
    """Clean and corrupted inputs differ at some positions; patching the block-0 input at all of those
    positions recovers 1, at any other position 0."""
    model = shipped[name]
    clean, corrupt = PAIRS[name]
    sweep = interp.patch_sweep(model, clean, corrupt)
    b = interp.batch(model, [clean, corrupt])
    P = int(b.answer_pos[0]) + 1
    differ = np.flatnonzero(b.tokens[0, :P] != b.tokens[1, :P])
    (together,) = interp.recovery(model, clean, corrupt, [[interp.Patch("blocks.0.hook_resid_pre", int(t))
                                                           for t in differ]])  # fmt: skip
    assert abs(together - 1.0) < 1e-5
    row = sweep.grid[sweep.hooks.index("blocks.0.hook_resid_pre")]
    np.testing.assert_allclose(np.delete(row, differ), 0.0, atol=1e-6)
    if len(differ) == 1:
        assert abs(row[differ[0]] - 1.0) < 1e-5
    assert sweep.roles[-1] == "=" and len(sweep.roles) == P == sweep.grid.shape[1]
    # the stream after the last block at the read-out carries everything, at the other positions nothing
    last = sweep.grid[-1]
    assert abs(last[-1] - 1.0) < 1e-5 and np.abs(last[:-1]).max() < 1e-5


def test_the_batched_sweep_equals_its_one_at_a_time_loop(shipped):
    model = shipped["digits-0-9"]
    clean, corrupt = PAIRS["digits-0-9"]
    sweep = interp.patch_sweep(model, clean, corrupt)
    for i, hook in enumerate(sweep.hooks[:4]):
        for t in range(sweep.grid.shape[1]):
            (one,) = interp.recovery(model, clean, corrupt, [[interp.Patch(hook, t)]])
            assert one == pytest.approx(sweep.grid[i, t], abs=1e-5)
    for layer in range(2):
        for head in range(4):
            (one,) = interp.recovery(model, clean, corrupt, [[interp.Patch(f"blocks.{layer}.attn.hook_z", None, head)]])
            assert one == pytest.approx(sweep.heads[layer, head], abs=1e-5)


@pytest.mark.parametrize("name, text", [("digits-0-9", "First ( 3 5 6 )"), ("digits-0-9", "Max ( 5 3 9 )"),
                                        ("digits-0-99", "Min ( 47 82 19 )"), ("digits-0-99", "Last ( 4 82 7 )")])
def test_counterfactuals_differ_in_one_controlled_way_and_change_the_answer(shipped, name, text):
    model = shipped[name]
    e = model.parse(text)
    cf = interp.counterfactuals(model, text)
    assert {"other operation", "answer value changed"} <= set(cf)
    assert cf["other operation"].values == e.values and cf["other operation"].op != e.op
    changed = cf["answer value changed"]
    assert changed.op == e.op and sum(a != b for a, b in zip(changed.values, e.values, strict=True)) == 1
    if e.op in ("Max", "Min"):
        assert "answer moved" not in cf  # a swap keeps the same answer
    else:
        assert sorted(cf["answer moved"].values) == sorted(e.values)
    for c in cf.values():
        assert c.answer != e.answer
        interp.patch_sweep(model, e, c)  # the same layout: patchable


def test_refusals(shipped):
    model = shipped["digits-0-99"]
    with pytest.raises(interp.PatchError, match="same numbers of digits"):
        interp.patch_sweep(model, "Max ( 47 82 19 )", "Max ( 4 82 19 )")
    with pytest.raises(interp.PatchError, match="same answer"):
        interp.patch_sweep(model, "Max ( 47 82 19 )", "Max ( 82 47 19 )")
