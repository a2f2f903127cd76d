"""`python -m model_core train | evaluate | predict`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from threadpoolctl import threadpool_limits

from . import interp, machine
from .checkpoint import CheckpointError
from .config import ConfigError
from .presets import PRESETS
from .store import load_model, to_bytes
from .task import MAX_ENUMERABLE, TaskError, enumerate_all, make_splits
from .task.parser import ParseError
from .task_model import TaskModel
from .training.trainer import EvalMetrics, Trainer, TrainResult

# Command-line flags that override the preset: flag -> (config, field, type)
OVERRIDES = {
    "steps": ("train", int), "lr": ("train", float), "batch_size": ("train", int), "seed": ("train", int),
    "optimizer": ("train", str), "warmup_steps": ("train", int), "eval_every": ("train", int),
    "stop_at_accuracy": ("train", float),
    "layers": ("model", int), "heads": ("model", int), "d_model": ("model", int), "d_ff": ("model", int),
    "model_seed": ("model", int),
}  # fmt: skip
DEFAULT_OUT_DIR = Path("runs")  # git-ignored
MODEL_FIELD = {"layers": "n_layers", "heads": "n_heads", "model_seed": "seed"}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m model_core", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model from a preset and save it as a checkpoint")
    tr.add_argument("--preset", required=True, choices=sorted(PRESETS))
    tr.add_argument("--out", help="checkpoint path to write (default: runs/PRESET.safetensors; the shipped "
                                  "files in pretrained/ are only overwritten when named here)")  # fmt: skip
    tr.add_argument("--json", action="store_true", help="end with one JSON line of results")
    for flag, (_, kind) in OVERRIDES.items():
        tr.add_argument("--" + flag.replace("_", "-"), type=kind, dest=flag)
    ev = sub.add_parser("evaluate", help="accuracy on the model's held-out expressions, per operation")
    ev.add_argument("--model", required=True, help="a shipped model's name or a checkpoint path")
    ev.add_argument("--json", action="store_true")
    pr = sub.add_parser("predict", help="answer expressions (arguments, or one per line on stdin)")
    pr.add_argument("--model", required=True)
    pr.add_argument("expressions", nargs="*")
    at = sub.add_parser("attribute", help="direct logit attribution: each component's share of the answer's logit")
    at.add_argument("--model", required=True)
    at.add_argument("expression")
    at.add_argument("--step", type=int, default=0, help="a causal model's answer token to explain (0: the first)")
    at.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"train": train, "evaluate": evaluate, "predict": predict, "attribute": attribute}
        return commands[args.command](args)
    except (CheckpointError, ConfigError, TaskError, ParseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _progress(step: int, total: int, loss: float, acc: float, elapsed: float) -> str:
    width = 24
    done = int(width * step / total)
    eta = elapsed / step * (total - step) if step else 0.0
    bar = "#" * done + "-" * (width - done)
    return f"\rstep {step:>6}/{total} [{bar}] loss {loss:.4f} acc {acc:6.1%} ETA {eta:5.1f}s"


def train(args) -> int:
    preset = PRESETS[args.preset]
    model_opts, train_opts = dict(preset.model), {}
    for flag, (where, _) in OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            (model_opts if where == "model" else train_opts)[MODEL_FIELD.get(flag, flag)] = value
    cfg = replace(preset.train, **train_opts)
    out = Path(args.out) if args.out else DEFAULT_OUT_DIR / f"{args.preset}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    model = TaskModel.new(preset.task, name=args.preset, **model_opts)
    # One BLAS thread: the run is then the same products in the same order every time (see model_core.machine).
    with threadpool_limits(limits=machine.TRAINING_BLAS_THREADS, user_api="blas"):
        result = _run_training(model, cfg)
    to_bytes(model, out)
    print(result.message)
    _print_accuracy("held-out", result.test)
    print(f"wall time {result.wall_s:.1f} s; saved to {out}")
    if args.json:
        print(json.dumps({
            "preset": args.preset, "status": result.status, "steps": result.steps, "wall_s": round(result.wall_s, 3),
            "heldout_accuracy": result.test["accuracy"], "heldout_per_op": result.test["per_op"], "out": str(out),
        }))  # fmt: skip
    return 0 if result.status != "diverged" else 1


def _run_training(model: TaskModel, cfg) -> TrainResult:
    """Train with a progress line on a terminal (one line per evaluation otherwise)."""
    trainer = Trainer(model, cfg)
    tty = sys.stderr.isatty()
    last_print = 0.0
    for event in trainer.run():
        if isinstance(event, EvalMetrics):
            if not tty:
                print(f"step {event.step}: validation accuracy {event.accuracy:.2%}", file=sys.stderr)
            continue
        now = time.perf_counter()
        if tty and (now - last_print > 0.1 or event.step == cfg.steps):
            last_print = now
            print(
                _progress(event.step, cfg.steps, event.loss, event.accuracy, event.elapsed_s), end="", file=sys.stderr
            )
    if tty:
        print(file=sys.stderr)
    return trainer.result


def _print_accuracy(label: str, ev: dict) -> None:
    print(f"{label} accuracy {ev['accuracy']:.2%} on {ev['n']} expressions")
    for op, acc in ev["per_op"].items():
        print(f"  {op:<8} {acc:7.2%}")


def evaluate(args) -> int:
    model = load_model(args.model)
    seed = model.train_config.seed if model.train_config else 0
    splits = make_splits(model.task, seed=seed)
    out = {"model": args.model, "task": model.task.to_dict(), "heldout": model.evaluate(splits.test)}
    if model.task.space_size <= MAX_ENUMERABLE:
        out["all_expressions"] = model.evaluate(enumerate_all(model.task))
    if args.json:
        print(json.dumps(out))
        return 0
    _print_accuracy("held-out", out["heldout"])
    if "all_expressions" in out:
        _print_accuracy("every expression:", out["all_expressions"])
    return 0


def predict(args) -> int:
    model = load_model(args.model)
    lines = args.expressions if args.expressions else (line.rstrip("\n") for line in sys.stdin)
    ok = True
    for line in lines:
        try:
            answer = model.answer(line)
            text = str(answer.value) if answer.value is not None else " ".join(answer.answer_tokens)
            print(text if answer.value is not None else f"error: the model wrote {text!r}, not a number")
            ok &= answer.value is not None
        except ParseError as err:
            print(f"error: {err}")
            ok = False
        sys.stdout.flush()
    return 0 if ok else 1


def attribute(args) -> int:
    model = load_model(args.model)
    b = interp.batch(model, [args.expression])
    n_steps = int((b.targets[0] >= 0).sum())
    if not 0 <= args.step < n_steps:
        raise TaskError(f"--step must be in 0-{n_steps - 1}: this answer has {n_steps} token(s) to explain.")
    pos = int(b.answer_pos[0]) + args.step
    att = interp.attribute(model.transformer, b.tokens, [pos])
    word = model.vocab.decode
    out = {
        "model": args.model, "expression": model.parse(args.expression).text, "position": pos,
        "role": interp.roles(model, b.tokens[0])[pos], "answer": word([int(att.answer[0])])[0],
        "true": word([int(b.targets[0, pos])])[0], "wrong": word([int(att.wrong[0])])[0],
        "logit": float(att.logit_total[0]), "logit_diff": float(att.diff_total[0]),
        "components": [{"name": n, "logit": float(v), "logit_diff": float(d)}
                       for n, v, d in zip(att.names, att.logit[0], att.diff[0], strict=True)],
        "residual_error": att.residual_error(), "note": att.note,
    }  # fmt: skip
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['expression']}: position {pos} ({out['role']}); the model's top token {out['answer']!r} "
          f"(true {out['true']!r}), logit {out['logit']:.4f}; minus the strongest other, {out['wrong']!r}: "
          f"{out['logit_diff']:.4f}")  # fmt: skip
    print(f"{'component':<16} {'logit':>10} {'logit diff':>11}")
    for c in out["components"]:
        print(f"{c['name']:<16} {c['logit']:>10.4f} {c['logit_diff']:>11.4f}")
    print(f"sum of the parts - real logit: {out['residual_error']:.2e}. {att.note}")
    return 0
