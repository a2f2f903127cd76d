"""Export this run: the script the sidebar shows runs outside the app and reproduces the page's numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from test_links import open_link
from test_page_attention_residual import chart, grid, predictions_table

ROOT = Path(__file__).resolve().parents[2]


def the_script(at) -> str:
    [script] = [c.value for c in at.code if "load_model" in c.value]
    return script


def run_it(script: str, folder: Path) -> dict[str, np.ndarray]:
    (folder / "experiment.py").write_text(script)
    done = subprocess.run([sys.executable, "experiment.py"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with np.load(folder / "experiment.npz", allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def test_the_attention_pages_script_reproduces_its_pattern_and_its_heads_off_table(tmp_path):
    at = open_link("../pages/attention.py", {"model": "digits-0-99", "example": "Max ( 47 82 19 )", "layer": "1",
                                             "head": "2", "off": "L0H1,L1H0"})  # fmt: skip
    saved = run_it(the_script(at), tmp_path)
    pattern = saved["blocks.1.attn.hook_pattern"][0, 2]  # [q, k]
    _, df = chart(at, "Attention pattern, L1 H2")
    np.testing.assert_array_equal(grid(df, "query_pos", "key_pos", "weight", pattern.shape), pattern)
    table = predictions_table(at)
    positions = [int(p.split(":")[0]) for p in table["position"]]  # "11: =" -> 11
    z = saved["heads_off.hook_logits"][0, positions].astype(np.float64)  # [answer positions, vocab]
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    clean_top = saved["hook_logits"][0, positions].argmax(-1)  # the table follows the prediction with every head on
    np.testing.assert_allclose(logp[np.arange(len(positions)), clean_top], table["log-prob, heads off"], atol=1e-5)
    assert (logp.argmax(-1) != clean_top).any()  # and L0H1 + L1H0 off change an answer token here


def test_the_output_pages_script_reproduces_its_logits_and_a_new_example_changes_it(tmp_path):
    at = open_link("../pages/output.py", {"model": "digits-0-9", "example": "Min ( 5 5 4 )"})
    script = the_script(at)
    assert "'Min ( 5 5 4 )'" in script and "heads_off" not in script
    saved = run_it(script, tmp_path)
    from model_core import load_model
    from model_core.analysis import run_example

    np.testing.assert_array_equal(saved["hook_logits"], run_example(load_model("digits-0-9"), "Min ( 5 5 4 )").cache[
        "hook_logits"])  # fmt: skip
    at.text_input(key="example_text").input("Max ( 1 2 3 )").run()
    assert "'Max ( 1 2 3 )'" in the_script(at)
