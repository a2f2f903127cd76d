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
    "stop_at_accuracy": ("train", float), "min_lr_ratio": ("train", float), "hard_fraction": ("train", float),
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
    ab = sub.add_parser("ablate", help="held-out accuracy per operation with components switched off")
    ab.add_argument("--model", required=True)
    ab.add_argument("--components", required=True, help="comma-separated: L0H3,L1.mlp,L1.mlp.n42")
    ab.add_argument("--mean", action="store_true", help="replace by the validation mean instead of zero")
    ab.add_argument("--positions", help="comma-separated positions to ablate at (default: all)")
    ab.add_argument("--json", action="store_true")
    pa = sub.add_parser("patch", help="activation patching clean -> corrupted: recovery per hook, position, head")
    pa.add_argument("--model", required=True)
    pa.add_argument("--clean", required=True)
    pa.add_argument("--corrupt", required=True)
    pa.add_argument("--json", action="store_true")
    he = sub.add_parser("heads", help="where each head attends from '=', per operation, over the input space")
    he.add_argument("--model", required=True)
    he.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"train": train, "evaluate": evaluate, "predict": predict, "attribute": attribute,
                    "ablate": ablate, "patch": patch, "heads": heads}  # fmt: skip
        return commands[args.command](args)
    except (CheckpointError, ConfigError, TaskError, ParseError, interp.ComponentError, interp.PatchError) as err:
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


def _percent(acc: float) -> str:
    """Two decimals, with more where two would round a miss up to 100.00%."""
    shown = f"{acc:.2%}"
    return f"{acc:.4%}" if acc < 1 and shown == "100.00%" else shown


def _print_accuracy(label: str, ev: dict) -> None:
    wrong = ev["n"] - round(ev["accuracy"] * ev["n"])
    print(f"{label} accuracy {_percent(ev['accuracy'])} on {ev['n']} expressions ({wrong} wrong)")
    for op, acc in ev["per_op"].items():
        print(f"  {op:<8} {_percent(acc):>8}")
    for n, acc in ev.get("per_length", {}).items():
        print(f"  {n:>2} values {_percent(acc):>8}")
    for d, acc in ev.get("per_depth", {}).items():
        print(f"  depth {d}  {_percent(acc):>8}")


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


def _positions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise TaskError(f"--positions takes whole numbers separated by commas, got {text!r}.") from None


def ablate(args) -> int:
    model = load_model(args.model)
    components = [c.strip() for c in args.components.split(",") if c.strip()]
    positions = _positions(args.positions)
    hooks = interp.ablation_hooks(model, components, mean=args.mean, at_positions=positions)
    seed = model.train_config.seed if model.train_config else 0
    test = make_splits(model.task, seed=seed).test
    out = {"model": args.model, "components": components, "mean": args.mean, "positions": positions,
           "clean": model.evaluate(test), "ablated": model.evaluate(test, fwd_hooks=hooks)}  # fmt: skip
    if args.json:
        print(json.dumps(out))
        return 0
    how = "replaced by their validation means" if args.mean else "zeroed"
    print(f"{', '.join(components)} {how}" + (f" at positions {out['positions']}" if out["positions"] else ""))
    print(f"{'operation':<10} {'clean':>8} {'ablated':>8}   ({out['clean']['n']} held-out expressions)")
    for op, acc in out["clean"]["per_op"].items():
        print(f"{op:<10} {acc:>8.2%} {out['ablated']['per_op'][op]:>8.2%}")
    print(f"{'all':<10} {out['clean']['accuracy']:>8.2%} {out['ablated']['accuracy']:>8.2%}")
    return 0


def patch(args) -> int:
    model = load_model(args.model)
    sweep = interp.patch_sweep(model, args.clean, args.corrupt)
    word = model.vocab.decode
    out = {"model": args.model, "clean": model.parse(args.clean).text, "corrupt": model.parse(args.corrupt).text,
           "clean_answer": word([sweep.clean_answer])[0], "corrupt_answer": word([sweep.corrupt_answer])[0],
           "clean_logit_diff": sweep.clean_diff, "corrupt_logit_diff": sweep.corrupt_diff,
           "roles": sweep.roles, "hooks": sweep.hooks, "grid": sweep.grid.round(6).tolist(),
           "heads": {f"L{i}H{h}": round(float(sweep.heads[i, h]), 6) for i in range(sweep.heads.shape[0])
                     for h in range(sweep.heads.shape[1])}}  # fmt: skip
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"recovery of logit({out['clean_answer']!r}) - logit({out['corrupt_answer']!r}) at '=': "
          f"clean {sweep.clean_diff:.3f}, corrupted {sweep.corrupt_diff:.3f} (0 = nothing back, 1 = all)")  # fmt: skip
    print(f"{'hook':<26}" + "".join(f"{r:>9}" for r in sweep.roles))
    for h, row in zip(sweep.hooks, sweep.grid, strict=True):
        print(f"{h:<26}" + "".join(f"{v:>9.3f}" for v in row))
    print("heads (z at every position): " + ", ".join(f"{k} {v:.3f}" for k, v in out["heads"].items()))
    return 0


def heads(args) -> int:
    model = load_model(args.model)
    roles = interp.input_space.head_roles(model)
    ops = roles.operations
    table = [{"head": h, **{part: dict(zip(ops, getattr(roles, part)[i].round(4).tolist(), strict=True))
                            for part in ("to_op", "to_answer_slot", "to_other_slots", "entropy")}}
             for i, h in enumerate(roles.heads)]  # fmt: skip
    if args.json:
        print(json.dumps({"model": args.model, "n": roles.n, "operations": ops, "heads": table}))
        return 0
    print(f"attention from '=' over {roles.n} expressions: to the operation token / to the answer's slot")
    print(f"{'head':<6}" + "".join(f"{op:>14}" for op in ops))
    for row in table:
        cells = (f"{row['to_op'][op]:>7.2f}/{row['to_answer_slot'][op]:<6.2f}" for op in ops)
        print(f"{row['head']:<6}" + "".join(cells).rstrip())
    return 0
