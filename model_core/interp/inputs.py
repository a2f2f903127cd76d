"""Inputs without running the model: expressions -> the token batch, and the role of every position.

A role names what a position holds, in words that hold for any example of the task:
`op`, `(`, a value's slot and digit place (`v2` on a 0-9 task, `v2.tens` / `v2.ones` on 0-99, where a
one-digit value has only `v2.ones`, so positions shift with the number of digits), `,`, `)`, `=`,
then, for a causal model, the answer digits it reads back (`ans.0` is the first) and `pad`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..task import Batch, Expression
from ..task_model import TaskModel

PLACES = ("ones", "tens", "hundreds")  # a digit's place, counted from the right


def batch(model: TaskModel, items: Iterable[str | Expression]) -> Batch:
    """The token batch for expressions (text is parsed; a bad one raises ParseError), as training makes it:
    a bidirectional model's input up to `=`, a causal model's input and the true answer (teacher forcing).
    `answer_pos` [n] is the index of `=`, where the answer is read (a causal model's first answer digit)."""
    exprs = [model.parse(e) if isinstance(e, str) else e for e in items]
    return model.encode(model.expressions(exprs))


def roles(model: TaskModel, tokens: Sequence[int] | np.ndarray) -> list[str]:
    """The role of each position of one token sequence [T] (see the module's docstring)."""
    words = model.vocab.decode([int(t) for t in tokens])
    one_digit = model.task.max_value <= 9
    out: list[str] = []
    slot, digits, answer = 0, [], None  # the value being read, its digit positions, answer digits so far
    for i, word in enumerate(words):
        if word == "<pad>":
            out.append("pad")
        elif word in model.task.operations and i == 0:
            out.append("op")
        elif word == "(":
            out.append("(")
            slot = 1
        elif word.isdigit() and answer is None:
            digits.append(i)
            out.append("")  # named when the value ends, once its number of digits is known
        elif word in (",", ")"):
            _name_value(out, digits, slot, one_digit)
            digits, slot = [], slot + 1
            out.append(word)
        elif word == "=":
            out.append("=")
            answer = 0
        elif word.isdigit():
            out.append(f"ans.{answer}")
            answer += 1
        elif word == "<eos>":
            out.append("eos")
        else:
            out.append(word)
    return out


def _name_value(out: list[str], digits: list[int], slot: int, one_digit: bool) -> None:
    for k, i in enumerate(digits):
        place = PLACES[len(digits) - 1 - k] if len(digits) <= len(PLACES) else f"digit{k}"
        out[i] = f"v{slot}" if one_digit else f"v{slot}.{place}"
