"""model_core against a PyTorch model written from docs/model.md alone (benchmarks/torch_reference.py).

Both shipped checkpoints go into both implementations, and they must agree on logits, loss,
every parameter gradient (PyTorch's autograd against model_core's hand-written backward) and
the answers. Skipped when PyTorch is not installed (tests/run.sh installs it when it can).

Tolerances, and why:
- logits, float32: 1e-4 absolute. The logits reach ~22 in magnitude; the two float32
  implementations differ by ~2e-5 (rounding, summed in other orders).
- gradients of the trained checkpoints: compared in float64 (both models cast), max |diff|
  <= 1e-6 x the gradient's scale. In float32 they cannot be compared to 1e-4: the shipped models
  are so sure of their answers (loss ~2e-4 and ~1e-6) that d loss / d logits = p - onehot is a
  difference of numbers near 1, and float32 keeps only ~1% of it for digits-0-99. That holds for
  either implementation against float64, not only between the two. In float64 they agree to
  ~1e-10, so 1e-6 leaves room and still catches any wrong formula, which would be off by O(1).
- gradients in float32, at a fresh initialisation (loss ~3, where training starts): max |diff| <=
  1e-4 x the gradient's scale. They agree to ~6e-7.
- "the gradient's scale" is the largest |entry| of that parameter's gradient, but never less than
  1e-3 x the largest entry of any gradient. The floor is there for b_K. Its gradient is exactly 0
  in exact arithmetic (adding one number to all of a query's scores changes no softmax), so
  either side holds only rounding noise.
"""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: `pip install torch==2.13.0` (tests/run.sh tries to)"
)

from benchmarks import torch_reference as ref  # noqa: E402
from model_core import Transformer, enumerate_all, load_model, make_splits  # noqa: E402

PRETRAINED_DIR = Path(__file__).resolve().parents[2] / "pretrained"

NAMES = ["digits-0-9", "digits-0-99"]


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    """(model_core TaskModel, torch reference, a real training batch with padding) for one checkpoint."""
    name = request.param
    model = load_model(name)
    net, meta = ref.load(PRETRAINED_DIR / f"{name}.safetensors")
    assert meta["name"] == name and meta["model_config"] == model.transformer.cfg.to_dict()
    # A training batch made the way Trainer makes one.
    splits = make_splits(model.task, seed=0)
    batch = model.encode(splits.sample_train(64, np.random.default_rng(0)))
    tokens, targets = batch.tokens, batch.targets
    if not model.causal:  # every 0-9 input is 9 tokens long: add right padding to test its mask
        tokens = np.pad(tokens, ((0, 0), (0, 3)), constant_values=model.vocab.pad_id)
        targets = np.pad(targets, ((0, 0), (0, 3)), constant_values=-1)
    assert (tokens == model.vocab.pad_id).any() and (targets >= 0).any()
    return model, net, splits, tokens, targets


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def worst_gradient_error(grads: dict[str, np.ndarray], net) -> tuple[float, str]:
    """max |numpy - torch| / scale over the parameters (see the module docstring), and where."""
    assert set(grads) == set(net.p)
    floor = 1e-3 * max(float(np.abs(g).max()) for g in grads.values())
    errors = []
    for name, g in grads.items():
        g_torch = net.p[name].grad.numpy()
        scale = max(float(np.abs(g_torch).max()), floor)
        errors.append((float(np.abs(g - g_torch).max()) / scale, name))
    return max(errors)


def test_logits_and_loss_agree_in_float32(pair):
    model, net, _, tokens, targets = pair
    logits = model.transformer.forward(tokens)  # [batch, pos, vocab]
    with torch.no_grad():
        logits_torch = net(t(tokens)).numpy()
    assert logits.shape == logits_torch.shape == (*tokens.shape, 21)
    np.testing.assert_allclose(logits, logits_torch, rtol=0, atol=1e-4)  # padding positions too

    loss, _, at_rows = model.transformer.loss_and_grads(tokens, targets)
    with torch.no_grad():
        loss_torch = net.loss(t(tokens), t(targets)).item()
    assert abs(loss - loss_torch) <= 1e-6 + 1e-4 * loss_torch
    rows = np.nonzero(targets >= 0)  # loss_and_grads returns the logits at the target rows
    np.testing.assert_allclose(at_rows, logits_torch[rows], rtol=0, atol=1e-4)


def test_loss_and_every_gradient_agree_in_float64(pair):
    model, net, _, tokens, targets = pair
    net64 = net.to_dtype(torch.float64)
    loss, grads, _ = model.transformer.astype(np.float64).loss_and_grads(tokens, targets)
    loss_torch = net64.loss(t(tokens), t(targets))
    loss_torch.backward()
    assert loss == pytest.approx(loss_torch.item(), rel=1e-9)
    err, name = worst_gradient_error(grads, net64)
    assert err <= 1e-6, f"{name}: gradient off by {err:.2e} of its scale"


def test_every_gradient_agrees_in_float32_at_initialisation(pair):
    model, _, _, tokens, targets = pair
    fresh = Transformer(model.transformer.cfg)  # the seeded initialisation, float32
    net = ref.Transformer(model.transformer.cfg.to_dict(), fresh.params)
    loss, grads, _ = fresh.loss_and_grads(tokens, targets)
    loss_torch = net.loss(t(tokens), t(targets))
    loss_torch.backward()
    assert loss > 1.0 and loss == pytest.approx(loss_torch.item(), rel=1e-5)
    err, name = worst_gradient_error(grads, net)
    assert err <= 1e-4, f"{name}: gradient off by {err:.2e} of its scale"


def test_every_0_9_answer_agrees():
    model = load_model("digits-0-9")
    net, _ = ref.load(PRETRAINED_DIR / "digits-0-9.safetensors")
    exprs = enumerate_all(model.task)
    assert len(exprs) == 5000
    batch = model.encode(exprs)
    rows = np.arange(len(exprs)), batch.answer_pos
    with torch.no_grad():
        ids = net(t(batch.tokens))[t(rows[0]), t(rows[1])].argmax(-1).numpy()  # at '='
    np.testing.assert_array_equal(ids, model.transformer.forward(batch.tokens, rows=rows).argmax(-1))
    values = np.array([int(tok) if tok.isdigit() else -1 for tok in model.vocab.decode(ids)])
    np.testing.assert_array_equal(values, model.predict_values(exprs))


def test_0_99_answers_agree_on_a_sample():
    model = load_model("digits-0-99")
    net, _ = ref.load(PRETRAINED_DIR / "digits-0-99.safetensors")
    exprs = make_splits(model.task, seed=0, n_eval=1000).test  # 1,000 held-out expressions
    batch = model.encode(exprs)
    # Teacher-forced: the argmax at every target position.
    rows = np.nonzero(batch.targets >= 0)
    with torch.no_grad():
        forced = net(t(batch.tokens))[t(rows[0]), t(rows[1])].argmax(-1).numpy()
    np.testing.assert_array_equal(forced, model.transformer.forward(batch.tokens, rows=rows).argmax(-1))
    # Greedy generation from the input alone (up to and including '=').
    prompt = np.where(np.arange(batch.tokens.shape[1]) <= batch.answer_pos[:, None], batch.tokens, 0)
    steps = model.task.max_answer_digits + 1
    written = net.generate(t(prompt), steps, eos_id=model.vocab.eos_id).numpy()
    expected = [a.answer_tokens for a in model.answer_many(exprs)]
    eos = model.vocab.eos_id
    got = [model.vocab.decode(row[: list(row).index(eos) + 1] if eos in row else row) for row in written]
    assert got == expected
