"""Retrain a shipped model by its documented command and compare it with the shipped file.

    python benchmarks/reproduce.py --preset digits-0-99      # about 8 minutes on a 2-core machine
    python benchmarks/reproduce.py --preset digits-0-9

On the machine the file records (`metrics["trained_on"]`: CPU, BLAS kernel, BLAS threads, NumPy) the
retrained weights must be bit-identical; elsewhere training takes other rounding paths and only the
held-out accuracy is compared. Prints what it found and exits 1 if the expectation fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_core import load_model  # noqa: E402
from model_core.cli import main as cli  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="digits-0-99")
    args = ap.parse_args()
    shipped = load_model(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{args.preset}.safetensors"
        t0 = time.perf_counter()
        if cli(["train", "--preset", args.preset, "--out", str(out)]) != 0:
            print("training failed")
            return 1
        print(f"retrained in {time.perf_counter() - t0:.1f} s")
        retrained = load_model(out)
    recorded, now = shipped.metrics.get("trained_on"), retrained.metrics["trained_on"]
    print(f"shipped file trained on: {recorded}\nretrained on:            {now}")
    acc_shipped, acc_new = shipped.metrics["heldout_accuracy"], retrained.metrics["heldout_accuracy"]
    print(f"held-out accuracy: shipped {acc_shipped:.4%}, retrained {acc_new:.4%}")
    if recorded == now:
        diff = {k: float(np.abs(v.astype(np.float64) - shipped.transformer.params[k]).max())
                for k, v in retrained.transformer.params.items()}  # fmt: skip
        same = all(d == 0.0 for d in diff.values())
        print("same machine: weights " + ("bit-identical" if same else f"DIFFER (max {max(diff.values()):.3g})"))
        return 0 if same else 1
    ok = acc_new >= acc_shipped
    print("another machine: " + ("same accuracy" if ok else "LOWER accuracy"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
