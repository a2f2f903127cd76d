"""Training speed in steps (machine-independent): examples until digits-0-9 first answers all 1,000 held-out
expressions, for several training recipes, over model seeds.

    python benchmarks/recipe_search.py --list                        # the recipes in RECIPES
    python benchmarks/recipe_search.py --recipe preset --recipe lr5e-3-w20 --seeds 0 1 2
    python benchmarks/recipe_search.py --lr 5e-3 --warmup 20 --steps 150 --init W_E=0.5 --seeds 0 1 2 3 4

Each recipe trains the preset's model (its architecture is unchanged) with the Trainer, as
`benchmarks/train_time.py` does: the model seed varies (`ModelConfig.seed`), the batches' and splits' seed
(`TrainConfig.seed`) stays 0. Every `--check-every` steps, and at the recipe's last step, it measures held-out
accuracy (`model.evaluate(trainer.splits.test)`, all 1,000). Unlike train_time.py it does not stop at 100%: it
trains to the end of the recipe's step budget, so it can say whether a seed stays at 100% (a recipe whose
accuracy falls back after touching 100% is not a win). The cosine schedule decays over the recipe's `steps`.

A recipe may change the TrainConfig fields (lr, warmup, schedule, steps, min_lr_ratio, betas, weight decay,
batch size, grad clip, hard_fraction), Adam's eps (the Trainer's optimiser is built with eps 1e-8; a recipe's
`eps` overwrites `trainer.optimizer.eps` before the first step) and the initialisation: `init` maps a
parameter kind to a factor that multiplies the freshly initialised arrays of that kind in place before
training (so N(0, s) becomes N(0, factor * s)). Kinds: W_E, W_U, W_Q, W_K, W_V, W_O, W_in, W_out, and "qk"
for both W_Q and W_K. Biases are zero and LayerNorm gains one, so scaling them is not offered.

Prints, per recipe: each seed's first step (and examples = step x batch) at 100% held-out, or "not reached
within N steps", its final held-out accuracy and the lowest held-out accuracy measured after its first 100%;
then the median examples (a seed that never reaches counts as infinitely many), the worst seed and whether
every seed ends at 100%. A summary table closes the output.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_core import TaskModel, Trainer  # noqa: E402
from model_core.config import TrainConfig  # noqa: E402
from model_core.presets import PRESETS  # noqa: E402
from model_core.training.trainer import StepMetrics  # noqa: E402

PRESET = "digits-0-9"
# The recipes below change the original recipe (the preset's before this search: 600 steps of 64, lr 3e-3 with 50
# warm-up steps, the usual initialisation), so their names keep their meaning whatever the preset becomes.
ORIGINAL_TRAIN = TrainConfig(steps=600, batch_size=64, lr=3e-3, warmup_steps=50, eval_every=100)
ORIGINAL_MODEL = {"qk_init": 1.0}
BUDGET_EXAMPLES = 9600  # the target: 150 steps of 64
INIT_KINDS = {"W_E", "W_U", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "qk"}


@dataclass(frozen=True)
class Recipe:
    name: str
    train: dict = field(default_factory=dict)  # TrainConfig fields over the preset's
    init: dict = field(default_factory=dict)  # parameter kind -> factor on its fresh initialisation
    eps: float | None = None  # Adam's eps (None: the optimiser's own, 1e-8)
    model: dict = field(default_factory=dict)  # ModelConfig fields over the original's (e.g. qk_init)

    def config(self):
        return replace(ORIGINAL_TRAIN, **self.train)

    def describe(self) -> str:
        base = ORIGINAL_TRAIN
        cfg = self.config()
        diffs = [f"{k}={getattr(cfg, k)}" for k in ("steps", "batch_size", "lr", "warmup_steps", "schedule",
                                                    "min_lr_ratio", "beta1", "beta2", "weight_decay", "grad_clip",
                                                    "hard_fraction", "optimizer")
                 if getattr(cfg, k) != getattr(base, k) or k in ("steps", "batch_size", "lr")]  # fmt: skip
        diffs += [f"init {k}x{v}" for k, v in self.init.items()]
        diffs += [f"{k}={v}" for k, v in self.model.items() if ORIGINAL_MODEL.get(k) != v]
        if self.eps is not None:
            diffs.append(f"eps={self.eps:g}")
        return ", ".join(diffs)


def _r(name: str, init: dict | None = None, eps: float | None = None, **train) -> Recipe:
    return Recipe(name, train, init or {}, eps)


# The candidates. `steps` is the schedule's length and the budget the final check is made at.
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        # the preset as it is now (model_core/presets.py): the best recipe below, with its W_Q and W_K scale as the
        # ModelConfig field qk_init
        Recipe("preset", {f.name: getattr(PRESETS[PRESET].train, f.name) for f in fields(TrainConfig)},
               model={"qk_init": PRESETS[PRESET].model.get("qk_init", 1.0)}),
        # the original recipe, cut at 300 steps (cosine over 300) and at the 9,600-example budget (cosine over 150)
        _r("original-300", steps=300),
        _r("original-150", steps=150),
        # learning rate and warm-up, on the 150-step budget
        _r("lr5e-3-w20", steps=150, lr=5e-3, warmup_steps=20),
        _r("lr3e-3-w20", steps=150, lr=3e-3, warmup_steps=20),
        _r("lr8e-3-w20", steps=150, lr=8e-3, warmup_steps=20),
        _r("lr5e-3-w10", steps=150, lr=5e-3, warmup_steps=10),
        _r("lr5e-3-w20-const", steps=150, lr=5e-3, warmup_steps=20, schedule="constant"),
        _r("lr5e-3-w20-min0", steps=150, lr=5e-3, warmup_steps=20, min_lr_ratio=0.0),
        # betas and clipping
        _r("lr5e-3-w20-b95", steps=150, lr=5e-3, warmup_steps=20, beta2=0.95),
        _r("lr5e-3-w20-b1.8", steps=150, lr=5e-3, warmup_steps=20, beta1=0.8),
        _r("lr5e-3-w20-noclip", steps=150, lr=5e-3, warmup_steps=20, grad_clip=0.0),
        _r("lr5e-3-w20-wd0", steps=150, lr=5e-3, warmup_steps=20, weight_decay=0.0),
        _r("lr5e-3-w20-wd0.1", steps=150, lr=5e-3, warmup_steps=20, weight_decay=0.1),
        # batch size at the same 9,600 examples
        _r("b32-lr3e-3-w40", steps=300, batch_size=32, lr=3e-3, warmup_steps=40),
        _r("b128-lr8e-3-w10", steps=75, batch_size=128, lr=8e-3, warmup_steps=10),
        # hard cases (ties, near ties)
        _r("lr5e-3-w20-hard0.25", steps=150, lr=5e-3, warmup_steps=20, hard_fraction=0.25),
        # initialisation and eps
        _r("lr5e-3-w20-WE0.5", {"W_E": 0.5}, steps=150, lr=5e-3, warmup_steps=20),
        _r("lr5e-3-w20-WU0.5", {"W_U": 0.5}, steps=150, lr=5e-3, warmup_steps=20),
        _r("lr5e-3-w20-WU0", {"W_U": 0.0}, steps=150, lr=5e-3, warmup_steps=20),
        _r("lr5e-3-w20-qk0.5", {"qk": 0.5}, steps=150, lr=5e-3, warmup_steps=20),
        _r("lr5e-3-w20-qk2", {"qk": 2.0}, steps=150, lr=5e-3, warmup_steps=20),
        _r("lr5e-3-w20-eps1e-6", None, 1e-6, steps=150, lr=5e-3, warmup_steps=20),
        # smaller batches (more steps in the same 9,600 examples) with qk x0.5 and hard cases: the best found
        _r("b32-qk0.5-hard0.25", {"qk": 0.5}, steps=300, batch_size=32, lr=3e-3, warmup_steps=40, hard_fraction=0.25),
        _r("b24-qk0.5-hard0.25", {"qk": 0.5}, steps=400, batch_size=24, lr=3e-3, warmup_steps=50, hard_fraction=0.25),
        _r("b24-qk0.5-hard0.5", {"qk": 0.5}, steps=400, batch_size=24, lr=3e-3, warmup_steps=50, hard_fraction=0.5),
        _r("b24-qk0.5-hard0.25-min0.02", {"qk": 0.5}, steps=400, batch_size=24, lr=3e-3, warmup_steps=50,
           hard_fraction=0.25, min_lr_ratio=0.02),  # fmt: skip
    ]
}


def apply_init(model: TaskModel, init: dict) -> list[str]:
    """Multiply the fresh arrays of each named kind by its factor, in place; returns the names changed."""
    changed = []
    for kind, factor in init.items():
        if kind not in INIT_KINDS:
            raise SystemExit(f"unknown init kind {kind!r}; one of {sorted(INIT_KINDS)}")
        leaves = {"W_Q", "W_K"} if kind == "qk" else {kind}
        for name, arr in model.transformer.params.items():
            if name.rsplit(".", 1)[-1] in leaves:
                arr *= arr.dtype.type(factor)
                changed.append(name)
    return changed


def run_seed(recipe: Recipe, seed: int, check_every: int) -> dict:
    preset = PRESETS[PRESET]
    cfg = recipe.config()
    cfg = replace(cfg, eval_every=cfg.steps)  # the trainer's own validation only at the first and last step
    model = TaskModel.new(preset.task, **(preset.model | ORIGINAL_MODEL | recipe.model | {"seed": seed}))
    apply_init(model, recipe.init)
    trainer = Trainer(model, cfg)
    if recipe.eps is not None:
        trainer.optimizer.eps = float(recipe.eps)
    first, after, final, status = None, [], None, None
    start = time.perf_counter()
    for event in trainer.run():
        if isinstance(event, StepMetrics) and (event.step % check_every == 0 or event.step == cfg.steps):
            acc = model.evaluate(trainer.splits.test)["accuracy"]
            if first is None and acc >= 1.0:
                first = event.step
            if first is not None:
                after.append(acc)
            if event.step == cfg.steps:
                final = acc
    status = trainer.result.status if trainer.result is not None else "?"
    if final is None:  # the run stopped before its last step (diverged)
        final = model.evaluate(trainer.splits.test)["accuracy"]
    return {
        "seed": seed, "first_step": first, "examples": None if first is None else first * cfg.batch_size,
        "final": final, "min_after": min(after) if after else None, "steps": cfg.steps,
        "batch": cfg.batch_size, "status": status, "wall_s": round(time.perf_counter() - start, 2),
    }


def summarise(recipe: Recipe, runs: list[dict]) -> dict:
    ex = sorted(r["examples"] if r["examples"] is not None else math.inf for r in runs)
    med = statistics.median(ex) if ex else math.inf
    return {
        "recipe": recipe.name, "what": recipe.describe(), "seeds": [r["seed"] for r in runs],
        "examples": [r["examples"] for r in runs], "median": med, "worst": max(ex) if ex else math.inf,
        "all_final_100": all(r["final"] >= 1.0 for r in runs), "finals": [r["final"] for r in runs],
        "min_after": [r["min_after"] for r in runs], "budget_examples": runs[0]["steps"] * runs[0]["batch"],
    }


def fmt_examples(x) -> str:
    return "not reached" if x is None or x == math.inf else f"{int(x):,}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the recipes and exit")
    ap.add_argument("--recipe", action="append", default=[], help="a recipe of RECIPES (repeatable); 'all' for all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="model seeds")
    ap.add_argument("--check-every", type=int, default=10, help="held-out check every this many steps")
    ap.add_argument("--json", type=Path, help="append each recipe's summary as a JSON line to this file")
    one = ap.add_argument_group("one recipe from flags (used when any of them is given)")
    one.add_argument("--name", default="cli")
    one.add_argument("--steps", type=int)
    one.add_argument("--batch", type=int, dest="batch_size")
    one.add_argument("--lr", type=float)
    one.add_argument("--warmup", type=int, dest="warmup_steps")
    one.add_argument("--schedule", choices=["cosine", "constant"])
    one.add_argument("--min-lr-ratio", type=float)
    one.add_argument("--beta1", type=float)
    one.add_argument("--beta2", type=float)
    one.add_argument("--wd", type=float, dest="weight_decay")
    one.add_argument("--clip", type=float, dest="grad_clip")
    one.add_argument("--hard-fraction", type=float)
    one.add_argument("--eps", type=float)
    kinds = ", ".join(sorted(INIT_KINDS))
    one.add_argument("--init", default="", help=f"kind=factor,... e.g. W_E=0.5,qk=2 (kinds: {kinds})")
    args = ap.parse_args()

    if args.list:
        for r in RECIPES.values():
            print(f"{r.name:24s} {r.describe()}")
        return
    recipes = []
    for name in args.recipe:
        if name == "all":
            recipes += list(RECIPES.values())
        elif name in RECIPES:
            recipes.append(RECIPES[name])
        else:
            raise SystemExit(f"unknown recipe {name!r}; --list shows them")
    fields_ = ("steps", "batch_size", "lr", "warmup_steps", "schedule", "min_lr_ratio", "beta1", "beta2",
               "weight_decay", "grad_clip", "hard_fraction")
    train = {k: getattr(args, k) for k in fields_ if getattr(args, k) is not None}
    init = {k: float(v) for k, v in (p.split("=") for p in args.init.split(",") if p)}
    if train or init or args.eps is not None:
        recipes.append(Recipe(args.name, train, init, args.eps))
    if not recipes:
        raise SystemExit("nothing to run: give --recipe NAME, --recipe all or recipe flags (--list shows them)")

    summaries = []
    for recipe in recipes:
        cfg = recipe.config()
        print(f"== {recipe.name}: {recipe.describe()} (budget {cfg.steps * cfg.batch_size:,} examples)", flush=True)
        runs = []
        for seed in args.seeds:
            r = run_seed(recipe, seed, args.check_every)
            runs.append(r)
            reached = (f"100% at step {r['first_step']} ({r['examples']:,} examples)" if r["first_step"]
                       else f"not reached within {r['steps']} steps")  # fmt: skip
            low = "" if r["min_after"] is None else f", lowest after first 100%: {r['min_after']:.1%}"
            print(f"  seed {seed}: {reached}; final {r['final']:.1%}{low} [{r['status']}, {r['wall_s']} s]",
                  flush=True)
        s = summarise(recipe, runs)
        summaries.append(s)
        print(f"  median {fmt_examples(s['median'])} examples, worst {fmt_examples(s['worst'])}, "
              f"every seed 100% at the end: {'yes' if s['all_final_100'] else 'no'}", flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps({k: (None if v == math.inf else v) for k, v in s.items()}) + "\n")

    print(f"\n{'recipe':24s} {'median':>11s} {'worst':>11s} {'final 100%':>10s}  {'<= 9,600':>8s}  finals")
    for s in summaries:
        ok = s["median"] <= BUDGET_EXAMPLES and s["all_final_100"]
        finals = " ".join(f"{f:.1%}" for f in s["finals"])
        print(f"{s['recipe']:24s} {fmt_examples(s['median']):>11s} {fmt_examples(s['worst']):>11s} "
              f"{'yes' if s['all_final_100'] else 'no':>10s}  {'yes' if ok else 'no':>8s}  {finals}")


if __name__ == "__main__":
    main()
