"""`python -m model_core train | evaluate | predict`, as a user runs them."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_core import TaskConfig, enumerate_all
from model_core.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, stdin="", cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "model_core", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, timeout=300, env=os.environ | {"PYTHONPATH": str(ROOT)})  # fmt: skip


def test_predict_answers_each_line_and_survives_a_bad_one():
    lines = ["Max ( 5 3 9 )", "Mx ( 1 2 3 )", "min(4, 8, 1)", "", "Last ( 1 2 )", "First ( 7 0 3 )"]
    out = run_cli("predict", "--model", "digits-0-9", stdin="\n".join(lines) + "\n")
    got = out.stdout.splitlines()
    assert len(got) == len(lines)  # one line per input
    assert got[0] == "9" and got[2] == "1" and got[5] == "7"
    assert got[1].startswith("error: ") and "Did you mean 'Max'" in got[1]
    assert got[3].startswith("error: ") and got[4].startswith("error: ")
    assert out.returncode == 1


@pytest.mark.parametrize("model", ["digits-0-9", "digits-0-99"])
def test_predict_refuses_an_empty_value_instead_of_dropping_it(model):
    out = run_cli("predict", "--model", model, "Max ( 1 , , 2 3 )", "Max ( 1 , 2 3 , )", "Max ( 1 , 2 , 3 )")
    got = out.stdout.splitlines()
    assert got[0] == "error: Empty value after '1': two commas with nothing between them. Remove one, or put a value."
    assert got[1].startswith("error: Empty value") and got[2] == "3" and out.returncode == 1


def test_predict_exits_zero_when_every_input_is_answered():
    out = run_cli("predict", "--model", "digits-0-9", "Second ( 4 6 2 )", "Min ( 9 9 8 )")
    assert out.stdout.splitlines() == ["6", "8"] and out.returncode == 0


def test_every_0_9_expression_through_predict_is_right(monkeypatch, capsys):
    exprs = enumerate_all(TaskConfig())
    texts = [exprs.expression(i).text for i in range(len(exprs))]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(texts) + "\n"))
    assert main(["predict", "--model", "digits-0-9"]) == 0
    answers = capsys.readouterr().out.splitlines()
    assert len(answers) == 5000
    assert answers == [str(a) for a in exprs.answers]


def test_evaluate_json_has_heldout_and_exhaustive_accuracy():
    out = run_cli("evaluate", "--model", "digits-0-9", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert set(report) >= {"model", "task", "heldout", "all_expressions"}
    for part in ("heldout", "all_expressions"):
        assert set(report[part]) == {"accuracy", "per_op", "n"}
        assert set(report[part]["per_op"]) == {"First", "Second", "Last", "Max", "Min"}
    assert report["heldout"]["n"] == 1000 and report["all_expressions"]["n"] == 5000


def test_train_writes_a_checkpoint_and_a_json_last_line(tmp_path):
    out_path = tmp_path / "tiny.safetensors"
    out = run_cli("train", "--preset", "tiny", "--steps", "20", "--out", str(out_path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["steps"] == 20 and 0 <= result["heldout_accuracy"] <= 1 and result["wall_s"] > 0
    answer = run_cli("predict", "--model", str(out_path), "Max ( 1 2 3 )")
    assert len(answer.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["evaluate", "--model", "no-such-model"], "No shipped model or file"),
        (["train", "--preset", "tiny", "--heads", "3", "--out", "x.safetensors"], "divisible by n_heads"),
    ],
)
def test_bad_requests_get_a_clear_message(args, phrase):
    out = run_cli(*args)
    assert out.returncode == 2 and phrase in out.stderr and "Traceback" not in out.stderr


def test_a_corrupt_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    out = run_cli("predict", "--model", str(bad), "Max ( 1 2 3 )")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_train_without_out_writes_under_runs_never_over_a_shipped_model(tmp_path):
    shipped = (ROOT / "pretrained" / "digits-0-9.safetensors").read_bytes()
    out = run_cli("train", "--preset", "tiny", "--steps", "5", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["out"] == "runs/tiny.safetensors"
    assert (tmp_path / "runs" / "tiny.safetensors").stat().st_size > 0
    assert (ROOT / "pretrained" / "digits-0-9.safetensors").read_bytes() == shipped


def test_attribute_json_sums_to_the_logit_and_names_every_component():
    out = run_cli("attribute", "--model", "digits-0-99", "Max ( 47 82 19 )", "--step", "1", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"model", "expression", "position", "role", "answer", "true", "wrong", "logit", "logit_diff",
                           "components", "residual_error", "note"}  # fmt: skip
    assert report["role"] == "ans.0" and report["answer"] == report["true"] == "2"  # reading 8, it writes 2
    parts = report["components"]
    assert [c["name"] for c in parts][:3] == ["embed", "pos_embed", "L0H0"] and parts[-1]["name"] == "b_U"
    assert abs(sum(c["logit"] for c in parts) - report["logit"]) < 1e-4
    assert abs(sum(c["logit_diff"] for c in parts) - report["logit_diff"]) < 1e-4
    assert report["residual_error"] < 1e-4 and "frozen" in report["note"]


@pytest.mark.parametrize("args, phrase", [
    (["--model", "digits-0-9", "Mx ( 1 2 3 )"], "Unknown operation 'Mx'"),
    (["--model", "digits-0-9", "Max ( 1 2 3 )", "--step", "1"], "--step must be in 0-0"),
    (["--model", "no-such-model", "Max ( 1 2 3 )"], "No shipped model"),
])  # fmt: skip
def test_attribute_refuses_with_a_message(args, phrase):
    out = run_cli("attribute", *args)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and phrase in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_ablate_json_gives_accuracy_per_operation_clean_and_ablated():
    out = run_cli("ablate", "--model", "digits-0-9", "--components", "L0H3,L1.mlp", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"model", "components", "mean", "positions", "clean", "ablated"}
    assert report["components"] == ["L0H3", "L1.mlp"] and report["clean"]["accuracy"] == 1.0
    assert set(report["ablated"]["per_op"]) == {"First", "Second", "Last", "Max", "Min"}
    assert report["ablated"]["accuracy"] < report["clean"]["accuracy"]  # the MLP that writes the answer is off


def test_patch_json_has_the_grid_with_roles_and_heads():
    out = run_cli("patch", "--model", "digits-0-99", "--clean", "Max ( 47 82 19 )", "--corrupt", "Max ( 47 10 19 )",
                  "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["clean_answer"] == "8" and report["corrupt_answer"] == "4"
    assert len(report["grid"]) == len(report["hooks"]) and all(len(r) == len(report["roles"]) for r in report["grid"])
    assert report["roles"][-1] == "=" and report["hooks"][0] == "blocks.0.hook_resid_pre"
    assert abs(report["grid"][-1][-1] - 1.0) < 1e-4  # the last stream at '=' carries all of it
    assert set(report["heads"]) == {f"L{i}H{h}" for i in range(2) for h in range(4)}


@pytest.mark.parametrize("args, phrase", [
    (["ablate", "--model", "digits-0-9", "--components", "L5H0"], "this model has 2 layer(s)"),
    (["ablate", "--model", "digits-0-9", "--components", "L0H1", "--positions", "a,b"], "--positions takes"),
    (["patch", "--model", "digits-0-99", "--clean", "Max ( 47 82 19 )", "--corrupt", "Max ( 4 82 19 )"],
     "same numbers of digits"),
    (["patch", "--model", "digits-0-9", "--clean", "Max ( 1 2 3 )", "--corrupt", "Mx ( 1 2 3 )"], "Unknown operation"),
])  # fmt: skip
def test_ablate_and_patch_refuse_with_a_message(args, phrase):
    out = run_cli(*args)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and phrase in out.stderr, out.stderr


def test_heads_json_is_the_head_role_table():
    out = run_cli("heads", "--model", "digits-0-9", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 5000 and report["operations"] == ["First", "Second", "Last", "Max", "Min"]
    assert [h["head"] for h in report["heads"]] == [f"L{i}H{h}" for i in range(2) for h in range(4)]
    for h in report["heads"]:
        assert set(h) == {"head", "to_op", "to_answer_slot", "to_other_slots", "entropy"}
        for op in report["operations"]:
            assert 0 <= h["to_op"][op] + h["to_answer_slot"][op] + h["to_other_slots"][op] <= 1 + 1e-4
    out = run_cli("heads", "--model", "no-such-model")
    assert out.returncode == 2 and "No shipped model" in out.stderr


def _hostile(kind: str) -> bytes:
    """A hostile checkpoint made from the shipped digits-0-9 (see tests/model/test_checkpoint_hostile.py)."""
    data = (ROOT / "pretrained" / "digits-0-9.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    meta = json.loads(header["__metadata__"]["transformer_explainer"])
    if kind == "deep-header":
        return (200_000).to_bytes(8, "little") + b"[" * 100_000 + b"]" * 100_000
    if kind == "deep-metadata":
        meta["metrics"] = "[" * 100_000 + "]" * 100_000
        text = json.dumps(meta).replace('"' + meta["metrics"] + '"', meta["metrics"])
    else:
        meta["model_config"] |= {"huge-max-len": {"max_len": 10**12}, "2800-layers": {"n_layers": 2800}}[kind]
        text = json.dumps(meta)
    header["__metadata__"]["transformer_explainer"] = text
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


@pytest.mark.parametrize("kind, phrase", [
    ("huge-max-len", "Positions (max_len) is 1,000,000,000,000; this app loads models of at most 4 blocks"),
    ("2800-layers", "Blocks (layers) is 2,800"),
    ("deep-header", "levels deep in its safetensors header"),
    ("deep-metadata", "levels deep in its metadata"),
])  # fmt: skip
def test_a_hostile_checkpoint_gets_one_error_line(tmp_path, kind, phrase):
    path = tmp_path / f"{kind}.safetensors"
    path.write_bytes(_hostile(kind))
    out = run_cli("predict", "--model", str(path), "Max ( 1 2 3 )")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and phrase in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1 and out.stdout == ""
