"""Token and positional embeddings: the tables, their geometry, what an example's stream starts from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import TrainConfig
from ..hooks import Cache
from ..params import init_params
from ..task import TaskConfig
from ..task.vocab import DIGITS, EQUALS, SPECIALS, Vocabulary
from ..task_model import TaskModel
from ..training.optim import lr_at


def embedding_summary(cache: Cache) -> dict[str, float]:
    """How big the two inputs of the residual stream are, and how exactly they add up.

    Returns the mean L2 norm of the token-embedding rows and of the positional rows
    (over the positions of this example), and max |resid_pre - (embed + pos)|.
    """
    embed = cache["hook_embed"][0]  # [pos, d_model]
    pos = cache["hook_pos_embed"][0]  # [pos, d_model]
    resid = cache["blocks.0.hook_resid_pre"][0]  # [pos, d_model]
    return {
        "embed_norm": float(np.linalg.norm(embed, axis=-1).mean()),
        "pos_norm": float(np.linalg.norm(pos, axis=-1).mean()),
        "sum_error": float(np.abs(resid - (embed + pos)).max()),
    }


def token_groups(vocab: Vocabulary) -> list[str]:
    """Each vocabulary token's kind: "digit", "symbol" (brackets, `,`, `=`, <pad>, <eos>) or "operation"."""
    return ["digit" if t in DIGITS else "symbol" if t in SPECIALS else "operation" for t in vocab.tokens]


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows [n, d] onto their top two principal components.

    Returns (points [n, 2], explained variance ratio [2]). Signs are fixed so the
    largest-magnitude loading of each component is positive (stable pictures).
    """
    centred = vectors - vectors.mean(axis=0)
    _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    signs = np.sign(vt[np.arange(2), np.abs(vt[:2]).argmax(axis=1)])
    comps = vt[:2] * signs[:, None]
    var = s**2
    return centred @ comps.T, var[:2] / max(var.sum(), 1e-30)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of x [n] and y [n]: Pearson's correlation of their ranks.

    Ties get their average rank. 1: y rises with x in the same order; -1: reversed order;
    near 0: no monotone relation. NaN when either has no spread.
    """
    rx, ry = _ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of a [n]; tied values share the mean of their ranks."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def digit_order(points: np.ndarray, vocab: Vocabulary, rows: list[int] | None = None) -> tuple[float, float]:
    """Do the digits order themselves in the embedding plane?

    `points` [n, 2] are PCA coordinates of rows of `embed.W_E` (or of its change): of every token, or of the
    token ids `rows` [n]. Returns the rank correlation of digit value with the position along PC 1 and along
    PC 2, over the digits among those rows (NaN with fewer than two).
    """
    ids = list(range(len(vocab))) if rows is None else list(rows)
    at = [(int(d), ids.index(vocab.id(d))) for d in DIGITS if vocab.id(d) in ids]
    values = np.array([v for v, _ in at], dtype=np.float64)
    where = [i for _, i in at]
    if len(at) < 2:
        return float("nan"), float("nan")
    return rank_correlation(values, points[where, 0]), rank_correlation(values, points[where, 1])


def digit_order_text(rho: tuple[float, float], of: str = "", start: tuple[float, float] | None = None) -> str:
    """The digit-order read-out of one PCA view (Markdown). `of` names the view in the sentence (e.g. " of the
    change"); `start`, the same read-out of the random initialisation, for comparison."""
    rho1, rho2 = rho
    if np.isnan(rho1) and np.isnan(rho2):
        return "What to notice: this view has fewer than two digits that differ, so it shows no order of the digits."
    best, r = (1, rho1) if np.isnan(rho2) or abs(rho1) >= abs(rho2) else (2, rho2)
    text = (f"What to notice: the rank agreement (Spearman's ρ) between a digit's value and its place along PC 1{of} "
            f"is **{rho1:+.2f}**, along PC 2{of} **{rho2:+.2f}**. "
            + (f"|ρ| = {abs(r):.2f} along PC {best}: the digits lie roughly in numerical order."
               if abs(r) >= 0.7 else "Neither of the top two directions puts the digits in numerical order.")
            + " (The sign of a principal component is arbitrary, so ρ = −1 is as ordered as +1.)")  # fmt: skip
    if start is not None:
        text += (f" The random initialisation alone, before any training, gives **{start[0]:+.2f}** along its "
                 f"PC 1 and **{start[1]:+.2f}** along its PC 2.")  # fmt: skip
    return text


# ---------------------------------------------------------------- how the tokens write a value
def value_writing(task: TaskConfig, values: tuple[int, ...] = ()) -> str:
    """How this task writes a value as tokens, with an example from its own range (Markdown).

    One digit token per value when the range stays below 10; otherwise digit by digit, shown on
    a multi-digit value of `values` (the example's) or else on the task's largest value.
    """
    if task.value_digits == 1:
        return f"Each value ({task.min_value}-{task.max_value} for this model) is a single digit token"
    shown = next((v for v in values if v >= 10), task.max_value)
    return f"Each value is written digit by digit ({shown} → {' '.join(f'`{d}`' for d in str(shown))})"


# ---------------------------------------------------------------- where training started
# Untouched rows are compared with their initial rows up to one common factor (weight decay shrinks
# them, see StartCheck). The factor is fitted, so what remains is the float32 rounding of the shrink,
# step after step (a few 1e-5 of the largest value after thousands of steps); another start leaves
# differences of order 1.
START_TOLERANCE = 1e-3


def trained_tokens(task: TaskConfig, vocab: Vocabulary) -> np.ndarray:
    """[vocab] bool: the tokens a training input holds where the loss can see them.

    Those are the task's operations, `(`, `)`, `,` (with two values or more), `=` and the digits of its values
    (a causal model also reads its answer digits, which are digits of a value too). No other token's row of
    `embed.W_E` ever gets a gradient: `<eos>` is only a target, `<pad>` only fills the end of a shorter causal
    sequence, after every position with a loss (and a causal position reads only earlier ones), and the
    vocabulary's other operations are not in this task.
    """
    digits = {d for v in range(task.min_value, task.max_value + 1) for d in str(v)}
    seen = set(task.operations) | {"(", ")", EQUALS} | ({","} if task.n_args > 1 else set()) | digits
    return np.array([t in seen for t in vocab.tokens])


def trained_positions(task: TaskConfig, causal: bool) -> int:
    """How many rows of a positional table training reads: the longest input, `Op ( v , v , v ) =` with every
    value at full width, and for a causal model also the answer's digits (its `<eos>` is only a target).
    Rows from this one on never get a gradient."""
    return task.seq_len - 1 if causal else task.input_len


def decay_factor(train: TrainConfig, steps: int) -> float:
    """What AdamW's decoupled weight decay multiplies a weight matrix's row by over `steps` steps when its
    gradient is always zero (then Adam's own update is exactly 0): the product of (1 - lr_t * weight_decay).
    1 for Adam and SGD, which leave such a row as it is."""
    if train.optimizer != "adamw" or train.weight_decay == 0:
        return 1.0
    return float(np.prod([1.0 - lr_at(s, train) * train.weight_decay for s in range(steps)]))


@dataclass(frozen=True)
class StartCheck:
    """Does the seed the model's config records reproduce the weights its training started from?

    Read on the rows no gradient reaches (untrained tokens of `embed.W_E`, positions of `pos_embed.W_pos`
    beyond `trained_positions`): training can only have scaled them, by weight decay. `scale` is the
    least-squares factor s of `rows ≈ s × initial rows`, `error` the largest |row - s × initial row| over
    the largest |initial row| entry.
    """

    seed: int
    rows: int  # how many untouched rows were compared
    scale: float
    error: float
    expected_scale: float | None  # `decay_factor` of the recorded recipe; None without a recipe or step count

    @property
    def reproduced(self) -> bool:
        return self.rows > 0 and self.error <= START_TOLERANCE


@dataclass(frozen=True)
class EmbeddingChange:
    """`embed.W_E` against its initialisation from the recorded seed (and the positional table, if learned)."""

    tokens: tuple[str, ...]  # [vocab]
    init: np.ndarray  # [vocab, d_model] W_E as `init_params(cfg)` draws it
    delta: np.ndarray  # [vocab, d_model] W_E - init: what training changed
    relative: float  # ||delta|| / ||init|| (Frobenius norms)
    cosine: np.ndarray  # [vocab] each row's cosine with its initial row
    trained: np.ndarray  # [vocab] bool, `trained_tokens`
    causal: bool
    n_positions: int  # `trained_positions`: rows 0 .. n_positions - 1 of a positional table are read
    pos_init: np.ndarray | None  # [max_len, d_model] pos_embed.W_pos at initialisation (learned positions only)
    check: StartCheck
    steps: int | None  # training steps the model records (None: not recorded)

    @property
    def untouched(self) -> list[str]:
        return [t for t, k in zip(self.tokens, self.trained, strict=True) if not k]

    @property
    def row_change(self) -> np.ndarray:
        """[vocab] ||W_E[t] - W_E0[t]|| / ||W_E0[t]||: how far each token's row moved, relative to its start."""
        start = np.linalg.norm(self.init.astype(np.float64), axis=1)
        return np.divide(np.linalg.norm(self.delta, axis=1), start, out=np.zeros(len(start)), where=start > 0)


def embedding_change(model: TaskModel) -> EmbeddingChange:
    """Reproduce the model's initial embeddings from its config (seed included) and measure what training did.

    Training starts from `init_params(cfg)` (`TaskModel.new`, used by the CLI and the Train page), so the
    recorded config is all it takes; `check` says whether this checkpoint's untouched rows agree.
    """
    net, cfg = model.transformer, model.transformer.cfg
    start = init_params(cfg)
    W, W0 = net.params["embed.W_E"].astype(np.float64), start["embed.W_E"].astype(np.float64)  # [V, D]
    trained = trained_tokens(model.task, model.vocab)
    n_pos = trained_positions(model.task, cfg.causal)
    now, then = [W[~trained]], [W0[~trained]]  # the rows no gradient reaches
    pos_init = None
    if cfg.positional == "learned":
        pos_init = start["pos_embed.W_pos"]
        now.append(net.params["pos_embed.W_pos"][n_pos:].astype(np.float64))
        then.append(pos_init[n_pos:].astype(np.float64))
    now_rows, then_rows = np.concatenate(now), np.concatenate(then)  # [rows, D]
    denom = float((then_rows * then_rows).sum())
    scale = float((now_rows * then_rows).sum()) / denom if denom > 0 else 1.0
    peak = float(np.abs(then_rows).max(initial=0.0))
    error = float(np.abs(now_rows - scale * then_rows).max(initial=0.0)) / peak if peak > 0 else 0.0
    steps = model.metrics.get("steps") if isinstance(model.metrics, dict) else None
    steps = steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else None
    expected = decay_factor(model.train_config, steps) if model.train_config is not None and steps is not None \
        else None  # fmt: skip
    norms = np.linalg.norm(W, axis=1) * np.linalg.norm(W0, axis=1)  # [V]
    delta = W - W0
    return EmbeddingChange(
        tokens=tuple(model.vocab.tokens), init=start["embed.W_E"], delta=delta,
        relative=float(np.linalg.norm(delta) / np.linalg.norm(W0)),
        cosine=np.divide((W * W0).sum(axis=1), norms, out=np.zeros(len(W)), where=norms > 0),
        trained=trained, causal=cfg.causal, n_positions=n_pos, pos_init=pos_init,
        check=StartCheck(cfg.seed, len(now_rows), scale, error, expected), steps=steps,
    )  # fmt: skip


# ---------------------------------------------------------------- what the page says about it
def _share(x: float) -> str:
    """A fraction as a percentage that never reads 0.0% for a small non-zero change."""
    if x == 0:
        return "0%"
    return f"{x:.1%}" if x >= 0.001 else f"{x * 100:.2g}%"


def _small(x: float) -> str:
    """A small positive number with one significant digit: "2e-5", "0.3"."""
    return f"{x:.1g}".replace("e-0", "e-")


def _tokens(tokens: list[str]) -> str:
    code = [f"`{t}`" for t in tokens]
    return code[0] if len(code) == 1 else ", ".join(code[:-1]) + " and " + code[-1]


def _shrink(check: StartCheck, steps: int | None) -> str:
    """What training did to the untouched rows, measured: "are exactly ..." or "are ... times 0.9902 (...)"."""
    how = "exactly" if check.error == 0 else f"to within {_small(check.error)} of the largest value"
    if check.scale == 1.0:
        return f"are their seed-{check.seed} initialisation ({how})"
    digits = 4 if abs(1.0 - check.scale) >= 5e-4 else 7  # never "times 1.0000"

    def factor(x: float) -> str:
        return f"{x:.{digits}f}"

    text = f"are their seed-{check.seed} initialisation times {factor(check.scale)} ({how})"
    if check.expected_scale is not None and abs(check.expected_scale - check.scale) <= START_TOLERANCE:
        text += (f", the shrink that the recipe's weight decay predicts over its {steps:,} steps "
                 f"({factor(check.expected_scale)})")  # fmt: skip
    return text


def start_text(change: EmbeddingChange) -> str:
    """Where training started, and how the page knows (or why it cannot): Markdown, computed from `change`."""
    check = change.check
    untouched = change.untouched
    if check.rows == 0:
        return (f"Every row of `W_E` can get a gradient in training, so nothing shows whether seed {check.seed} "
                "(the seed this model's config records) reproduces where its training started. The chart shows "
                "`W_E` as it is.")  # fmt: skip
    where = f"{_tokens(untouched)} never reach the loss in training" if untouched else ""
    if change.pos_init is not None and change.n_positions < len(change.pos_init):
        rows = f"positions {change.n_positions}-{len(change.pos_init) - 1} of `W_pos` are never read"
        where = f"{where}, and {rows}" if where else rows
    if not check.reproduced:
        return (
            f"The rows no gradient reaches ({where}) are not the initialisation that seed {check.seed}, "
            f"the seed this model's config records, gives (they differ by up to {check.error:.2g} times the "
            "largest initial value). So this model did not start from that initialisation (other code may "
            "have made it): what training changed cannot be computed, and the chart shows `W_E` as it is."
        )
    return (f"How the start is known: training began from the random initialisation drawn from seed {check.seed} "
            f"(the seed this model's config records). {where[0].upper() + where[1:]}, so no gradient changes "
            f"those rows, and they {_shrink(check, change.steps)}.")  # fmt: skip


def movement_text(change: EmbeddingChange) -> str:
    """How far training moved the token embeddings from their start (Markdown), and what that means for the
    picture of `W_E` as it is. Only meaningful when `change.check.reproduced`."""
    k = np.flatnonzero(change.trained)
    if not np.any(change.delta):
        return (f"`W_E` is exactly its seed-{change.check.seed} initialisation: this model has not been trained, "
                "so its token embeddings are random vectors.")  # fmt: skip
    low = k[np.argmin(change.cosine[k])]
    text = (f"Training moved `W_E` by **{_share(change.relative)}** of its initial size (‖W_E − W_E⁰‖ / ‖W_E⁰‖). "
            f"The cosine between a token's trained row and its initial row is at least **{change.cosine[low]:.4f}** "
            f"(`{change.tokens[low]}`)")  # fmt: skip
    if change.cosine[low] >= 0.9 and change.relative < 0.5:
        return text + (
            ": every row still points close to where the random start put it, so a picture of `W_E` as "
            "it is mostly shows that random start. What training learned is the change, W_E − W_E⁰."
        )
    return text + (
        ": training has turned some rows well away from their random start, so `W_E` as it is shows "
        "what was learned as well as where it started."
    )


def positions_text(change: EmbeddingChange) -> str | None:
    """Which rows of a learned positional table training reads, and what the others are (Markdown); None for a
    model without one."""
    if change.pos_init is None:
        return None
    n, total = change.n_positions, len(change.pos_init)
    text = (
        f"Training reads positions 0-{n - 1} only: its longest input is {n} tokens, every value at full width"
        + (" and the answer's digits before `<eos>`" if change.causal else ", up to `=`")
        + "."
    )
    if n >= total:
        return text + f" That is every row of the table ({total})."
    text += f" Rows {n}-{total - 1} ({total - n} of {total}, marked *unused*) never get a gradient"
    if change.check.reproduced:
        return text + f", so they {_shrink(change.check, change.steps)}."
    return text + f", but they do not match the seed-{change.check.seed} initialisation (see section 5)."
