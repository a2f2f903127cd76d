"""The output: predictions at the answer positions, softmax with temperature, token losses, the logit lens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..hooks import Cache
from ..model import Transformer
from .residual import residual_stages


def answer_positions(n_tokens: int, answer_pos: int, causal: bool) -> list[int]:
    """The positions whose next-token prediction is the answer.

    A bidirectional model answers at `=` only; a causal model reads its own answer
    and predicts the next token at `=` and at every answer token it has written.
    """
    return list(range(answer_pos, n_tokens)) if causal else [answer_pos]


@dataclass(frozen=True)
class Prediction:
    """The model's next-token prediction at one position."""

    position: int
    token: int  # the most likely next token
    prob: float  # its probability
    probs: np.ndarray  # [vocab] the whole distribution (float64)


def predictions_at(logits: np.ndarray, positions: list[int]) -> list[Prediction]:
    """Softmax of `logits` [pos, vocab] at each position, and its most likely token."""
    out = []
    for pos in positions:
        probs = L.softmax(logits[pos].astype(np.float64))  # [vocab]
        top = int(np.argmax(probs))
        out.append(Prediction(pos, top, float(probs[top]), probs))
    return out


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) over the last axis, in float64.

    Display maths only: the model itself always uses T = 1. T < 1 sharpens the
    distribution towards the top logit, T > 1 flattens it towards uniform.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return L.softmax(np.asarray(logits, dtype=np.float64) / temperature)


def token_losses(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cross-entropy at each position: -log softmax(logits)[target]; NaN where target is -1.

    logits [pos, vocab]; targets [pos]. Computed in the logits' dtype with the same
    shifted log-sum-exp as the model's loss (`layers.cross_entropy`), so the mean over
    the positions with a target is the loss `run_with_cache(..., targets=...)` reports.
    """
    logp = L.log_softmax(np.asarray(logits))  # [pos, vocab]
    targets = np.asarray(targets)
    keep = targets >= 0
    picked = np.take_along_axis(logp, np.where(keep, targets, 0)[:, None], axis=-1)[:, 0]
    return np.where(keep, -picked.astype(np.float64), np.nan)


def logit_lens(net: Transformer, cache: Cache, pos: int) -> list[tuple[str, np.ndarray]]:
    """What each stage of the residual stream would predict at `pos` if decoded there.

    The stream is put through what the model does after its last block (the final
    LayerNorm of a pre-norm model; a post-norm stream is already normalised) and
    the unembedding. Returns [(stage, probabilities [vocab])]; the last stage's
    probabilities are the model's real output.
    """
    p = net.params
    out = []
    for stage, resid in residual_stages(net, cache):
        x = resid[pos]
        if net.cfg.norm == "pre":
            centred, scale = L.layer_norm_scale(x)
            x = centred / scale * p["ln_final.w"] + p["ln_final.b"]
        out.append((stage, L.softmax((x @ p["unembed.W_U"] + p["unembed.b_U"]).astype(np.float64))))
    return out


def lens_candidates(probs: np.ndarray, k: int, include: int | None = None) -> np.ndarray:
    """Token ids worth a column in the logit-lens heatmap, most probable at the output first.

    probs [stage, vocab]. Every stage's top token, the output's top `k`, and `include`
    (the true answer) when given; ordered by the last stage's probability.
    """
    wanted = set(probs.argmax(axis=-1).tolist()) | set(np.argsort(-probs[-1], kind="stable")[:k].tolist())
    if include is not None:
        wanted.add(int(include))
    ids = np.array(sorted(wanted))
    return ids[np.argsort(-probs[-1, ids], kind="stable")]


def first_top_stage(probs: np.ndarray, token: int) -> int | None:
    """Index of the first stage whose most probable token is `token` (probs [stage, vocab]); None if none."""
    hits = np.flatnonzero(probs.argmax(axis=-1) == token)
    return int(hits[0]) if hits.size else None


def same_context(tokens: np.ndarray, other: np.ndarray, pos: int, causal: bool) -> bool:
    """Did position `pos` read the same tokens in both sequences?

    A causal position reads tokens 0..pos; a bidirectional one reads the whole sequence.
    """
    if causal:
        return len(tokens) > pos and len(other) > pos and np.array_equal(tokens[: pos + 1], other[: pos + 1])
    return np.array_equal(tokens, other)


# ---------------------------------------------------------------- what the logit lens says, in words
# The text functions take the page's formatters: `tok(id)` writes a token (Markdown), `pct(p)` a probability,
# `with_log(p)` a probability with its log. model_core does not know how the pages write numbers.

EMBEDDING_STAGE = 0  # logit_lens's first stage: the stream before block 0, W_E[token] + positional vector


@dataclass(frozen=True)
class LensReading:
    """What the logit lens at one position shows, from its probabilities [stage, vocab]."""

    tops: tuple[int, ...]  # [stage] each stage's most probable token
    winner: int  # the last stage's (the model's real output's) most probable token
    takeover: int  # the first stage from which `winner` is the most probable token at every later stage
    tracked: int  # the token whose probability `jump` follows: the true token, or `winner` when there is none
    jump: int  # the stage (>= 1) where p(tracked) changes most (in absolute value) from the stage before
    losses: tuple[tuple[int, int], ...]  # (stage, its top token) where the true token stops being the top token
    input_free: tuple[int, ...]  # the stages that cannot depend on the input (see `embedding_stage_text`)

    @property
    def lost_top(self) -> bool:
        """Was the true token the top token at some stage and then not at a later one?"""
        return bool(self.losses)


def read_lens(probs: np.ndarray, true_id: int | None) -> LensReading:
    """Read the logit lens probs [stage, vocab] (stages as `logit_lens` orders them) for the true token `true_id`
    (None when the position has no true next token).

    Only the embedding stage is input-free: every later stage has been through at least one attention sublayer,
    and the answer position's attention reads every input position (a causal model's answer positions come after
    the whole input)."""
    tops = probs.argmax(axis=-1)  # [stage]
    winner = int(tops[-1])
    takeover = len(tops) - 1
    while takeover > 0 and tops[takeover - 1] == winner:
        takeover -= 1
    tracked = winner if true_id is None else int(true_id)
    change = np.diff(probs[:, tracked].astype(np.float64))  # [stage - 1]: stage s minus stage s - 1
    jump = int(np.argmax(np.abs(change))) + 1
    losses = () if true_id is None else tuple(
        (s, int(tops[s])) for s in range(1, len(tops)) if tops[s - 1] == true_id and tops[s] != true_id
    )  # fmt: skip
    return LensReading(tuple(int(t) for t in tops), winner, takeover, tracked, jump, losses, (EMBEDDING_STAGE,))


def sublayer_before(stage: int, norm: str) -> str:
    """What turns stage `stage - 1` into stage `stage` (residual_stages' order: embed + pos, then each block's mid
    and out): block i's attention, then block i's FFN (each with its LayerNorm in a post-norm model)."""
    block, kind = (stage - 1) // 2, ("attention" if stage % 2 == 1 else "FFN")
    return f"block {block}'s {kind}" + (" and the LayerNorm after it" if norm == "post" else "")


def lens_text(reading: LensReading, stages: list[str], probs: np.ndarray, true_id: int | None, norm: str, *,
              tok, pct, with_log) -> str:
    """The logit lens at one position in words: from which stage the model's answer stays on top, how the true
    token fares (where it first is the top token, each time it loses the top and gets it back, where it ends), and
    the largest change of its probability (of the answer's, without a true token) from one stage to the next."""
    r, last = reading, len(stages) - 1

    def at(s: int, token: int) -> str:
        """Stage s in bold, with p(token) there, and a mark when the stage cannot depend on the input."""
        free = "; that stage reads only the token at this position" if s in r.input_free else ""
        return f"**{stages[s]}** ({pct(probs[s, token])}{free})"

    def span(token: int) -> str:
        """Where `token`, the output's top token, is on top for good (from r.takeover on)."""
        if r.takeover == 0:
            return f"at every stage, from {at(0, token)} on"
        if r.takeover == last:
            return f"only at the last stage, {at(last, token)}"
        return f"from {at(r.takeover, token)} on"

    def story(token: int, on: list[int]) -> str:
        """Where `token` first is the top token, each time it loses the top and gets it back, and where it ends."""
        text = f"first becomes the top token at stage {at(on[0], token)}"
        for s, new_top in r.losses:
            text += (f", loses the top to {tok(new_top)} through {sublayer_before(s, norm)} "
                     f"({pct(probs[s, token])} against {pct(probs[s, new_top])} at **{stages[s]}**)")  # fmt: skip
            back = next((b for b in on if b > s), None)
            if back is not None:
                text += f", takes it back at {at(back, token)}"
        return text + f" and ends at {with_log(probs[-1, token])}."

    w = tok(r.winner)
    if true_id is None:
        parts = [f"The model's answer {w} is the top token {span(r.winner)}."]
    elif r.winner == true_id:
        if not r.losses:
            parts = [f"The model's answer is the true {w}: it is the top token {span(r.winner)}, and ends at "
                     f"{with_log(probs[-1, true_id])}."]  # fmt: skip
        else:
            on = [s for s, t in enumerate(r.tops) if t == true_id]
            parts = [f"The model's answer is the true {w}. It {story(true_id, on)}"]
    else:
        on = [s for s, t in enumerate(r.tops) if t == true_id]
        parts = [f"The model answers {w} here: it is the top token {span(r.winner)}."]
        parts.append(f"The true {tok(true_id)} {story(true_id, on)}" if on else
                     f"The true {tok(true_id)} is the top token at no stage; it ends at "
                     f"{with_log(probs[-1, true_id])}.")  # fmt: skip
    whose = f"p({tok(r.tracked)})" + (", the answer's (there is no true token here)," if true_id is None else "")
    s = r.jump
    verb = "rises" if probs[s, r.tracked] > probs[s - 1, r.tracked] else "falls"
    parts.append(f"The largest change in {whose} from one stage to the next comes through {sublayer_before(s, norm)}: "
                 f"it {verb} from {pct(probs[s - 1, r.tracked])} at **{stages[s - 1]}** to "
                 f"{pct(probs[s, r.tracked])} at **{stages[s]}**.")  # fmt: skip
    return " ".join(parts)


def embedding_stage_text(labels: list[str], pos: int, answer_pos: int, causal: bool, *, code,
                         lengths_vary: bool = False, one_digit: bool = True) -> str:  # fmt: skip
    """Why the embedding stage's lens row at `pos` cannot depend on the input, and what it does depend on.

    labels [T] are the token strings the model read; `code(label)` writes one. The stream there is
    W_E[labels[pos]] + (position pos's vector): one token and one position. A bidirectional model's values are
    single digits, so `=` is at the same position in every input of one length; a causal model's `=` moves with
    the number of digits, and at a later answer step the token there is the one the model wrote at the step before.
    `lengths_vary`: the task takes lists of several lengths, so `=` moves with the number of values too (and
    with their digits unless `one_digit`)."""
    written = f" (the model's answer token {pos - answer_pos})" if causal and pos > answer_pos else ""
    what = f"the embedding of {code(labels[pos])}{written} plus position {pos}'s positional vector"
    tail = " Its row shows what the unembedding makes of that alone, nothing the model worked out from the values."
    digits = sum(label.isdigit() for label in labels[:answer_pos])
    if lengths_vary and (not causal or pos == answer_pos):
        # `=` follows the op, "(", every digit, a "," between values and ")": its position counts digits and values
        n = labels[:answer_pos].count(",") + 1
        whose = f"of {n} values" + ("" if one_digit else f" with {digits} digits in all")
        return (f"**embed + pos** is the same for every input {whose}: at position {pos} the stream is still only "
                f"{what}, and all those inputs have {code('=')} at position {pos}." + tail)  # fmt: skip
    if not causal:
        return (f"**embed + pos** is the same for every input: at position {pos} the stream is still only {what}, "
                f"and every input of this task has {code('=')} at position {pos}." + tail)
    if pos == answer_pos:
        return (f"**embed + pos** is the same for every input whose values have {digits} digits in all: at position "
                f"{pos} the stream is still only {what}, and all those inputs have {code('=')} at position {pos}."
                + tail)  # fmt: skip
    return (f"**embed + pos** reads nothing of the input but that one token: at position {pos} the stream is still "
            f"only {what}, the same for every sequence with {code(labels[pos])} at position {pos}." + tail)


# ---------------------------------------------------------------- the whole answer, step by step, in words
@dataclass(frozen=True)
class AnswerStep:
    """One answer step of the model's own run: what it wrote, and the true token while it was still right."""

    step: int  # 0-based
    chosen: int  # the token it wrote (the most probable one)
    p_chosen: float
    true: int | None  # the true token here, if every token it wrote before was right (else the contexts differ)
    p_true: float | None


def answer_steps(step_probs: np.ndarray, true_ids) -> list[AnswerStep]:
    """step_probs [steps, vocab]: the softmax at each step of the model's own run (Answer.step_probs); true_ids:
    the true answer's tokens (a causal model's end with <eos>). The true token's probability is only read where the
    model has read exactly the true answer so far, i.e. up to and including its first wrong token."""
    out, right_so_far = [], True
    for k, probs in enumerate(step_probs):
        chosen = int(np.argmax(probs))
        true = int(true_ids[k]) if right_so_far and k < len(true_ids) else None
        out.append(AnswerStep(k, chosen, float(probs[chosen]), true, None if true is None else float(probs[true])))
        right_so_far = right_so_far and true == chosen
    return out


def weakest_step(steps: list[AnswerStep]) -> AnswerStep:
    """The step whose written token got the lowest probability: the smallest factor of the answer's confidence
    (the product of the written tokens' probabilities). The first one on a tie."""
    return min(steps, key=lambda s: s.p_chosen)


def first_wrong_step(steps: list[AnswerStep]) -> AnswerStep | None:
    """The first step where the model wrote another token than the true one; None when it wrote the true answer."""
    return next((s for s in steps if s.true is not None and s.chosen != s.true), None)


def answer_text(steps: list[AnswerStep], written: str, correct: bool, true_answer: str, causal: bool, *,
                tok, pct, with_log) -> str:
    """What the model answered, whether it is right, and (causal) its weakest step and where it went wrong.

    `written` is the model's answer as the page writes it (Markdown); `true_answer` the true one (Markdown).
    Steps are named from 1, as the pages' tables and step pickers name them."""
    wrong = first_wrong_step(steps)
    verdict = "which is right" if correct else f"which is wrong: the answer is {true_answer}"
    if not causal:
        s = steps[0]
        text = (f"The model answers {written}, {verdict}. At `=` it gives {tok(s.chosen)} a probability of "
                f"{with_log(s.p_chosen)}")  # fmt: skip
        if wrong is not None:
            return text + f", and the true {tok(wrong.true)} {with_log(wrong.p_true)}."
        return text + f"; every other token shares the rest, {pct(1.0 - s.p_chosen)}."
    n = len(steps)
    text = f"The model writes {written} in {n} step{'s' if n != 1 else ''} (one token each), {verdict}."
    if wrong is not None:
        text += (f" It goes wrong at step {wrong.step + 1}: it writes {tok(wrong.chosen)} ({pct(wrong.p_chosen)}) "
                 f"where the true token {tok(wrong.true)} gets {pct(wrong.p_true)}.")  # fmt: skip
    weak = weakest_step(steps)
    if n == 1:
        return text + f" That one token got {with_log(weak.p_chosen)}."
    same = " (the step where it goes wrong)" if wrong is not None and weak.step == wrong.step else ""
    return (text + f" Its weakest step, the one whose written token got the lowest probability, is step "
            f"{weak.step + 1}{same}: {tok(weak.chosen)} at {with_log(weak.p_chosen)}. The confidence is the product "
            f"of the {n} written tokens' probabilities.")
