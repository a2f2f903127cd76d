"""Export an experiment: the generated script reproduces the app's arrays exactly; the .npz needs no pickle;
no user string can become code."""

import ast
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_core import load_model
from model_core.analysis import ablate_heads, run_example
from model_core.analysis.export import experiment_snippet, run_npz
from model_core.analysis.output import answer_positions
from model_core.hooks import Cache
from model_core.interp import ablate
from model_core.store import to_bytes

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = [
    "\"); __import__('os').system('echo pwned') #",
    "'); __import__('os') #",
    "x'''\nimport os\nos.system('echo pwned')\n'''",
    'x"""\n__import__("os")\n"""',
    "back\\slash\\' + __import__('os') + '\\",
    "\\\n__import__('os')",
    "tab\there\r\x00nul",
]


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name) for name in ("digits-0-9", "digits-0-99")}


def run_script(snippet: str, folder: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Run the snippet as a learner would (a file, its own process, from `folder`); its stdout and saved arrays."""
    path = folder / "experiment.py"
    path.write_text(snippet)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(path)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with np.load(folder / "experiment.npz", allow_pickle=False) as f:
        return done.stdout, {name: f[name] for name in f.files}


@pytest.mark.parametrize(
    "name, text, heads, arrays",
    [
        ("digits-0-9", "Max ( 7 2 9 )", [], []),
        ("digits-0-9", "Min ( 3 8 1 )", [(0, 0), (1, 2)], ["blocks.0.attn.hook_z", "blocks.1.attn.hook_pattern",
                                                           "blocks.1.hook_resid_post", "hook_logits"]),
        ("digits-0-99", "Max ( 70 2 99 )", [], []),
        ("digits-0-99", "Last ( 12 40 7 )", [(1, 2), (0, 0)], []),
    ],
)  # fmt: skip
def test_the_script_saves_exactly_the_arrays_the_app_computes(models, tmp_path, name, text, heads, arrays):
    model = models[name]
    snippet = experiment_snippet(model, name, text, heads, arrays)
    assert len(snippet.splitlines()) <= 36  # a learner reads it
    stdout, saved = run_script(snippet, tmp_path)
    run = run_example(model, text)  # the run every page reads
    off = ["heads_off.hook_logits"] if heads else []
    assert list(saved) == (arrays or list(run.cache)) + off  # the listed arrays, or every cached one, in order
    for key in arrays or run.cache:
        arr = saved[key]
        assert arr.dtype == run.cache[key].dtype and np.array_equal(arr, run.cache[key]), key
        assert f"{key} {run.cache[key].shape}" in stdout
    assert f"model answers {run.answer.value} - true answer {run.answer.expression.answer}" in stdout
    assert ("(right)" if run.answer.correct else "(wrong)") in stdout
    if heads:  # the second run is the Attention page's table: its log-probabilities at every answer position
        logits = saved["heads_off.hook_logits"]
        # zeroing the heads' z (ablate_heads) is the same run from z on: the same logits
        np.testing.assert_array_equal(logits, ablate_heads(model, run.tokens, heads)[0])
        assert not np.array_equal(logits, run.cache["hook_logits"])
        positions = answer_positions(len(run.tokens), run.answer_pos, model.causal)
        page = ablate(model, np.tile(run.tokens, (len(positions), 1)), positions,
                      [[f"L{layer}H{head}" for layer, head in heads]])  # what state.answer_ablation draws
        z = logits[0, positions].astype(np.float64)  # [answer positions, vocab]
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        np.testing.assert_allclose(logp[np.arange(len(positions)), page.top[0]], page.logprob[0], atol=1e-5)


def test_a_model_from_the_app_is_loaded_from_its_checkpoint_next_to_the_script(models, tmp_path):
    model = models["digits-0-99"]
    to_bytes(model, path=tmp_path / "trained_0-99_seed_0.safetensors")  # as downloaded from the Train page
    snippet = experiment_snippet(model, "trained_0-99_seed_0.safetensors", "Min ( 5 31 9 )", [(1, 1)])
    assert "load_model('trained_0-99_seed_0.safetensors')" in snippet and "Train page" in snippet
    _, saved = run_script(snippet, tmp_path)
    run = run_example(model, "Min ( 5 31 9 )")
    assert list(saved) == [*run.cache, "heads_off.hook_logits"]
    assert all(np.array_equal(saved[k], run.cache[k]) for k in run.cache)
    np.testing.assert_array_equal(saved["heads_off.hook_logits"], ablate_heads(model, run.tokens, [(1, 1)])[0])


def test_run_npz_round_trips_the_cache_exactly_without_pickle(models):
    run = run_example(models["digits-0-9"], "Max ( 7 2 9 )")
    for cache, names in ((run.cache, []), (run.cache, ["hook_logits", "blocks.0.attn.hook_pattern"]),
                         (run.grad_cache, ["blocks.1.hook_resid_post_grad"])):  # fmt: skip
        with np.load(io.BytesIO(run_npz(cache, names)), allow_pickle=False) as f:
            assert f.files == (names or list(cache))
            for key in f.files:
                assert f[key].dtype == cache[key].dtype and np.array_equal(f[key], cache[key]), key
    with pytest.raises(ValueError, match="not in this run's cache"):
        run_npz(run.cache, ["hook_nope"])
    with pytest.raises(ValueError, match="not a numeric array"):
        run_npz(Cache(bad=np.array([{"a": 1}], dtype=object)))


def test_no_hostile_string_becomes_code(models):
    model = models["digits-0-9"]
    benign = experiment_snippet(model, "my-model.safetensors", "Max ( 7 2 9 )", [(0, 3)], out="x.npz")

    def same_code(snippet: str, hostile: str, benign_value: str) -> bool:
        """The snippet is the benign one with `hostile` only where the benign string constant was."""
        tree = ast.parse(snippet)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == hostile:
                node.value = benign_value
        return ast.dump(tree) == ast.dump(ast.parse(benign))

    for bad in HOSTILE:
        assert same_code(experiment_snippet(model, bad, "Max ( 7 2 9 )", [(0, 3)], out="x.npz"), bad,
                         "my-model.safetensors")  # fmt: skip
        assert same_code(experiment_snippet(model, "my-model.safetensors", "Max ( 7 2 9 )", [(0, 3)],
                                            out=bad + ".npz"), bad + ".npz", "x.npz")  # fmt: skip
        with pytest.raises(ValueError):  # not an expression: refused before any script is written
            experiment_snippet(model, "digits-0-9", bad)
        with pytest.raises(ValueError):
            experiment_snippet(model, "digits-0-9", "Max ( 7 2 9 )" + bad)
        with pytest.raises(ValueError, match="not a hook"):
            experiment_snippet(model, "digits-0-9", "Max ( 7 2 9 )", arrays=[bad])
    # what the parser does accept (whitespace of every kind around the numbers) is still one string constant
    for odd in ("Max ( 7 2 9 )\n", "\tmax(7,2,9)\r\n", "max(7\u2028,2,9)", "max(7,\xa02,9)\x0c"):
        snippet = experiment_snippet(model, "my-model.safetensors", odd, [(0, 3)], out="x.npz")
        assert same_code(snippet, odd, "Max ( 7 2 9 )")


@pytest.mark.parametrize(
    "heads, arrays, out, message",
    [
        ([], ["hook_nope"], "e.npz", "not a hook"),
        ([], ["blocks.2.attn.hook_z"], "e.npz", "not a hook"),  # a layer it does not have
        ([], ["blocks.0.attn.hook_z_grad"], "e.npz", "not a hook"),  # the script caches no gradients
        ([(2, 0)], [], "e.npz", "no head L2H0"),
        ([(0, 4)], [], "e.npz", "no head L0H4"),
        ([(-1, 0)], [], "e.npz", "no head"),
        ([(True, 0)], [], "e.npz", "integers"),
        ([(0.0, 1)], [], "e.npz", "integers"),
        ([(0,)], [], "e.npz", "pair"),
        ([], [], "e.txt", "ending in .npz"),
    ],
)  # fmt: skip
def test_what_the_model_does_not_have_is_refused(models, heads, arrays, out, message):
    with pytest.raises(ValueError, match=message):
        experiment_snippet(models["digits-0-9"], "digits-0-9", "Max ( 7 2 9 )", heads, arrays, out)


def test_numpy_ints_and_repeated_heads_are_one_switched_off_head(models):
    model = models["digits-0-9"]
    snippet = experiment_snippet(model, "digits-0-9", "Max ( 7 2 9 )", [(np.int64(1), np.int64(2)), (1, 2), (0, 3)])
    assert "heads_off = {'blocks.0.attn.hook_result': [3], 'blocks.1.attn.hook_result': [2]}" in snippet
    assert "fwd_hooks" not in experiment_snippet(model, "digits-0-9", "Max ( 7 2 9 )")
