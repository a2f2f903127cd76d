"""A transformer together with the vocabulary and the task it answers.

This is what the CLI, the trainer and the app hold: it parses an expression,
writes the answer (token by token for a causal model), and measures accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .config import ConfigError, ModelConfig, TrainConfig
from .layers import softmax
from .model import Transformer
from .task import Expression, ExpressionSet, TaskConfig, check_compatible, encode, exact_match, exact_match_at_rows
from .task.parser import parse_expression
from .task.vocab import Vocabulary, vocab_for


@dataclass(frozen=True)
class Answer:
    """What the model wrote for one expression, with the numbers behind it."""

    expression: Expression
    tokens: np.ndarray  # [T] ids: the input and the answer tokens the model wrote
    answer_pos: int  # index of `=`: the model reads its answer from here on
    answer_tokens: list[str]  # what it wrote (a causal model's ends with <eos>)
    value: int | None  # the answer as a number; None when the tokens do not form one
    step_probs: np.ndarray  # [steps, vocab] softmax at each position it answered from

    @property
    def correct(self) -> bool:
        return self.value == self.expression.answer

    @property
    def confidence(self) -> float:
        """Probability of the whole answer: the product of each chosen token's probability."""
        return float(np.prod(self.step_probs.max(axis=-1)))


@dataclass
class TaskModel:
    transformer: Transformer
    vocab: Vocabulary
    task: TaskConfig
    name: str = ""
    train_config: TrainConfig | None = None
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.transformer.cfg
        if cfg.vocab_size != len(self.vocab):
            raise ConfigError(f"the model has {cfg.vocab_size} token ids but the vocabulary {len(self.vocab)}")
        if cfg.pad_id != self.vocab.pad_id:
            raise ConfigError("the model's padding id differs from the vocabulary's")
        if self.task.seq_len > cfg.max_len:
            raise ConfigError(f"this task's sequences are {self.task.seq_len} tokens long but max_len is {cfg.max_len}")
        check_compatible(self.task, cfg.causal)

    @classmethod
    def new(cls, task: TaskConfig, name: str = "", **model_options) -> TaskModel:
        """A freshly initialised model for `task` (options are ModelConfig fields)."""
        vocab = vocab_for(task.operations)
        cfg = ModelConfig(vocab_size=len(vocab), pad_id=vocab.pad_id, **model_options)
        return cls(Transformer(cfg), vocab, task, name)

    @property
    def causal(self) -> bool:
        return self.transformer.cfg.causal

    def with_transformer(self, transformer: Transformer) -> TaskModel:
        return replace(self, transformer=transformer)

    # ------------------------------------------------------------ inputs
    def parse(self, text: str) -> Expression:
        """An Expression, or ParseError with a message for the user."""
        return parse_expression(text, self.task)

    def expressions(self, items: list[Expression]) -> ExpressionSet:
        """The arrays of these expressions (nested ones too, for a nested task)."""
        return ExpressionSet.from_expressions(self.task, items)

    def encode(self, exprs: ExpressionSet):
        return encode(exprs, self.vocab, self.causal)

    # ------------------------------------------------------------ answering
    def answer(self, expr: str | Expression) -> Answer:
        """Parse (if text) and answer one expression."""
        expression = self.parse(expr) if isinstance(expr, str) else expr
        return self.answer_many(self.expressions([expression]))[0]

    def answer_many(self, exprs: ExpressionSet) -> list[Answer]:
        """Greedy answers for a batch: one forward pass per answer token for a causal model."""
        seqs, answer_pos, probs, n_written = self._generate(exprs)
        answers = []
        for i in range(len(exprs)):
            written = self.vocab.decode(seqs[i, answer_pos[i] + 1 : answer_pos[i] + 1 + n_written[i]])
            end = answer_pos[i] + 1 + n_written[i]
            answers.append(
                Answer(
                    exprs.expression(i),
                    seqs[i, :end].copy(),
                    int(answer_pos[i]),
                    written,
                    self._value(written),
                    probs[i, : n_written[i]],
                )  # fmt: skip
            )
        return answers

    def predict_values(self, exprs: ExpressionSet) -> np.ndarray:
        """[n] the answers as numbers (-1 where the written tokens do not form one)."""
        seqs, answer_pos, _, n_written = self._generate(exprs)
        out = np.full(len(exprs), -1, dtype=np.int64)
        for i in range(len(exprs)):
            value = self._value(self.vocab.decode(seqs[i, answer_pos[i] + 1 : answer_pos[i] + 1 + n_written[i]]))
            out[i] = -1 if value is None else value
        return out

    def _generate(self, exprs: ExpressionSet):
        """Write answers greedily. Returns sequences [n, W], answer_pos [n], probs [n, steps, vocab], written [n]."""
        batch = self.encode(exprs)
        n, answer_pos = len(exprs), batch.answer_pos
        steps = self.task.max_answer_digits + 1 if self.causal else 1
        T = batch.tokens.shape[1]  # a bidirectional model's T is the task's longest input, so it may pass `=`
        width = max(T, int(answer_pos.max()) + 1 + steps)  # an encoded answer is never longer than `steps`
        seqs = np.full((n, width), self.vocab.pad_id, dtype=np.int64)
        is_input = np.arange(T) <= answer_pos[:, None]  # up to and including `=`
        seqs[:, :T] = np.where(is_input, batch.tokens, self.vocab.pad_id)
        probs = np.zeros((n, steps, len(self.vocab)), dtype=np.float64)
        written = np.zeros(n, dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        idx = np.arange(n)
        for step in range(steps):
            cur = answer_pos + step  # each example reads its next token from here
            # a bidirectional model reads its whole input width (as trained); a causal one, as far as it has written
            seen = int(cur.max()) + 1 if self.causal else T
            logits = self.transformer.forward(seqs[:, :seen], rows=(idx, cur))  # [n, vocab]
            p = softmax(logits.astype(np.float64))
            nxt = p.argmax(axis=-1)
            live = ~done
            probs[live, step] = p[live]
            seqs[idx[live], cur[live] + 1] = nxt[live]
            written[live] += 1
            done |= nxt == self.vocab.eos_id
            if done.all():
                break
        return seqs, answer_pos, probs, written

    def _value(self, written: list[str]) -> int | None:
        digits = written[:-1] if self.causal and written and written[-1] == "<eos>" else written
        if self.causal and (not written or written[-1] != "<eos>"):
            return None  # never finished its answer
        if not digits or not all(t.isdigit() for t in digits) or (len(digits) > 1 and digits[0] == "0"):
            return None
        return int("".join(digits))

    # ------------------------------------------------------------ accuracy
    def evaluate(self, exprs: ExpressionSet, batch_size: int = 4096, fwd_hooks=()) -> dict:
        """Exact-match accuracy overall, per operation (and, where lists vary, per length), optionally under
        hooks (`run_with_hooks`'s): see `accuracy_breakdown`.

        Teacher-forced: an example counts as right when every answer token (and the
        causal model's <eos>) is the top prediction given the right tokens before it,
        which is exactly when greedy generation writes the right answer.
        """
        right = np.zeros(len(exprs), dtype=bool)
        for start in range(0, len(exprs), batch_size):
            part = exprs.subset(np.arange(start, min(start + batch_size, len(exprs))))
            right[start : start + len(part)] = self.exact_match(self.encode(part), fwd_hooks)
        return accuracy_breakdown(exprs, right)

    def exact_match(self, batch, fwd_hooks=()) -> np.ndarray:
        """[n] bool for an encoded batch (one forward pass; without hooks, only at the answer positions)."""
        if fwd_hooks:
            return exact_match(self.transformer.run_with_hooks(batch.tokens, list(fwd_hooks)), batch.targets)
        rows = np.nonzero(batch.targets >= 0)
        return exact_match_at_rows(self.transformer.forward(batch.tokens, rows=rows), batch.targets)


def accuracy_breakdown(exprs: ExpressionSet, right: np.ndarray) -> dict:
    """{"accuracy", "per_op": {op: accuracy}, "n"} from [n] bool, "per_length": {number of values: accuracy}
    where the task's lists vary in length, and "per_depth": {1: accuracy, 2: accuracy} for a nested task (1:
    numbers only, 2: an argument is an expression). Only what `exprs` holds is listed."""
    task = exprs.task
    out = {"accuracy": float(right.mean()) if len(right) else 0.0,
           "per_op": {op: float(right[exprs.ops == k].mean()) for k, op in enumerate(task.operations)
                      if (exprs.ops == k).any()},
           "n": int(len(right))}  # fmt: skip
    if task.variable_length:
        out["per_length"] = {n: float(right[exprs.lengths == n].mean()) for n in task.lengths
                             if (exprs.lengths == n).any()}  # fmt: skip
    if task.nested:
        out["per_depth"] = {d: float(right[exprs.depths == d].mean()) for d in (1, 2) if (exprs.depths == d).any()}
    return out
