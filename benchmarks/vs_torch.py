"""One training step in NumPy (model_core) and in PyTorch CPU eager, timed interleaved in one run.

    python benchmarks/vs_torch.py [--steps 800] [--warmup 50] [--torch-optim default|foreach|fused]

The step is the one `Trainer.run` takes, on the default `ModelConfig()` and the default task
(three values 0-9) with the default `TrainConfig()`: sample a batch of 64 training
expressions, encode it, forward and backward, clip the global gradient norm to 1.0, and take
an AdamW step (betas 0.9/0.98, weight decay 0.01 on the `W_*` matrices only, the warm-up and
cosine schedule). The PyTorch side is `benchmarks/torch_reference.py` (written from
docs/model.md), autograd, `torch.nn.utils.clip_grad_norm_` and `torch.optim.AdamW`. Both start
from the same initial weights and see the same batches.

Both compute the same model. The one piece of work model_core's training pass skips is named
(see model_core/model.py): after the last block's attention pattern, only the rows that have a
target go on. The PyTorch reference computes every position.

For a fair comparison each side gets one thread: `torch.set_num_threads(1)` and, for NumPy,
one OpenBLAS thread through threadpoolctl. Steps alternate (NumPy, PyTorch, PyTorch, NumPy, ...),
so both sides see the same machine load. Each step is timed on its own after a warm-up. The
median is the figure, and p10/p90 show the spread. Needs PyTorch (`pip install torch==2.13.0`).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import torch_reference as ref  # noqa: E402
from model_core import TaskConfig, TaskModel, TrainConfig, _alloc, make_splits  # noqa: E402
from model_core.training.optim import clip_grad_norm, decays, lr_at, make_optimizer  # noqa: E402


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    p10, p50, p90 = np.percentile(np.array(seconds) * 1e3, [10, 50, 90])
    return p10, p50, p90


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=800, help="timed steps on each side")
    ap.add_argument("--warmup", type=int, default=50, help="untimed steps on each side first")
    ap.add_argument("--torch-optim", choices=("default", "foreach", "fused"), default="default",
                    help="torch.optim.AdamW's implementation (default: what PyTorch picks on CPU, the for-loop)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    limits = threadpool_limits(limits=1, user_api="blas")  # NumPy's OpenBLAS: one thread
    _alloc.keep_freed_memory()  # what Trainer does before it trains
    _alloc.warm_up_blas()

    cfg = TrainConfig()
    model = TaskModel.new(TaskConfig())
    splits = make_splits(model.task, seed=cfg.seed)
    net = model.transformer
    start_weights = {k: v.copy() for k, v in net.params.items()}
    np_opt = make_optimizer(cfg, net.params)
    tnet = ref.Transformer(net.cfg.to_dict(), start_weights)
    groups = [
        {"params": [p for n, p in tnet.p.items() if decays(n)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in tnet.p.items() if not decays(n)], "weight_decay": 0.0},
    ]
    impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[args.torch_optim]
    t_opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **impl)
    t_params = list(tnet.p.values())
    rng_np, rng_t = np.random.default_rng(cfg.seed), np.random.default_rng(cfg.seed)  # the same batches
    state = {"np": 0, "torch": 0, "np_loss": 0.0, "torch_loss": 0.0}

    def numpy_step():  # Trainer.run's step, less its metrics and events (as benchmarks/step_time.py)
        batch = model.encode(splits.sample_train(cfg.batch_size, rng_np))
        loss, grads, _ = net.loss_and_grads(batch.tokens, batch.targets)
        clip_grad_norm(grads, cfg.grad_clip)
        np_opt.step(net.params, grads, lr_at(state["np"], cfg))
        state["np"] += 1
        state["np_loss"] = loss

    def torch_step():
        batch = model.encode(splits.sample_train(cfg.batch_size, rng_t))
        loss = tnet.loss(torch.from_numpy(batch.tokens), torch.from_numpy(batch.targets))
        t_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(t_params, cfg.grad_clip)
        for group in t_opt.param_groups:
            group["lr"] = lr_at(state["torch"], cfg)
        t_opt.step()
        state["torch"] += 1
        state["torch_loss"] = loss.item()

    blas = [f"{i['internal_api']} {i.get('architecture', '')} {i['num_threads']} thread(s)"
            for i in threadpool_info() if i["user_api"] == "blas"]  # fmt: skip
    print(f"numpy {np.__version__} ({'; '.join(blas)}), torch {torch.__version__} "
          f"({torch.get_num_threads()} thread), Python {platform.python_version()}, {platform.machine()}")  # fmt: skip
    print(f"model: {net.n_params} parameters, {net.cfg.n_layers} blocks, d_model {net.cfg.d_model}, "
          f"{net.cfg.norm}-norm; batch {cfg.batch_size}; AdamW ({args.torch_optim} torch implementation); "
          f"{args.warmup} warm-up + {args.steps} timed steps each, interleaved")  # fmt: skip

    times: dict[str, list[float]] = {"numpy": [], "torch": []}
    steps = {"numpy": numpy_step, "torch": torch_step}
    for i in range(args.warmup + args.steps):
        order = ("numpy", "torch") if i % 2 == 0 else ("torch", "numpy")
        for side in order:
            t0 = time.perf_counter()
            steps[side]()
            elapsed = time.perf_counter() - t0
            if i >= args.warmup:
                times[side].append(elapsed)
    limits.restore_original_limits()

    for side, label in (("numpy", "NumPy (model_core)"), ("torch", "PyTorch eager")):
        p10, p50, p90 = percentiles(times[side])
        print(f"{label:<20} median {p50:7.3f} ms   p10 {p10:7.3f}   p90 {p90:7.3f}   (n={len(times[side])})")
    ratio = percentiles(times["numpy"])[1] / percentiles(times["torch"])[1]
    print(f"ratio numpy/torch (medians): {ratio:.2f}  ({'NumPy' if ratio < 1 else 'PyTorch'} faster)")
    drift = max(float((tnet.p[n].detach().numpy() - p).__abs__().max()) for n, p in net.params.items())
    print(f"same training, check: loss at step {state['np']}: numpy {state['np_loss']:.4f}, "
          f"torch {state['torch_loss']:.4f}; largest weight difference {drift:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
