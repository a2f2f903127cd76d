"""The shipped digits-0-9 is remade by its documented command: bit for bit on the machine it was trained on,
to the same accuracy anywhere else (benchmarks/reproduce.py does the same for digits-0-99, which takes minutes)."""

import numpy as np

from model_core import load_model, machine
from model_core.cli import main


def test_retraining_digits_0_9_reproduces_the_shipped_file(tmp_path, capsys):
    out = tmp_path / "digits-0-9.safetensors"
    assert main(["train", "--preset", "digits-0-9", "--out", str(out)]) == 0
    shipped, retrained = load_model("digits-0-9"), load_model(out)
    recorded = shipped.metrics["trained_on"]
    assert retrained.metrics["trained_on"]["blas_threads"] == machine.TRAINING_BLAS_THREADS
    assert retrained.metrics["heldout_accuracy"] == shipped.metrics["heldout_accuracy"] == 1.0
    if retrained.metrics["trained_on"] == recorded:  # same CPU, BLAS kernel, threads and NumPy
        for name, array in shipped.transformer.params.items():
            assert np.array_equal(retrained.transformer.params[name], array), name
        print("bit-identical to the shipped file (same CPU, BLAS kernel and NumPy)")
    else:  # another CPU or BLAS kernel: the weights drift apart, the accuracy must not
        print(f"trained on {recorded}, retrained on {retrained.metrics['trained_on']}: same accuracy checked")
    assert retrained.evaluate(retrained.expressions([retrained.parse("Max ( 5 3 9 )")]))["accuracy"] == 1.0
