"""Inputs without running the model: expressions -> the token batch, and the role of every position.

A role names what a position holds, in words that hold for any example of the task:
`op`, `(`, a value's slot and digit place (`v2` on a 0-9 task, `v2.tens` / `v2.ones` on 0-99, where a
one-digit value has only `v2.ones`, so positions shift with the number of digits), `,`, `)`, `=`,
then, for a causal model, the answer digits it reads back (`ans.0` is the first) and `pad`.

A nested task (max_depth 2) names its arguments `arg1`, `arg2`, ... instead (flat tasks keep `v1`, ...):
a number argument is `arg2` (`arg2.tens` / `arg2.ones` on 0-99); an inner expression in slot 2 is
`arg2.op`, `arg2.(`, its values `arg2.inner.v1` (`arg2.inner.v1.tens` ...), its commas `arg2.inner.,` and
its `arg2.)`; the outer list's `,`, `)`, `=`, `ans.0`, `eos` and `pad` are as in a flat task. E.g.
`Max ( First ( 2 , 8 ) , 7 ) = 7` is `op ( arg1.op arg1.( arg1.inner.v1 arg1.inner., arg1.inner.v2 arg1.) ,
arg2 ) = ans.0`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..task import Batch, Expression
from ..task_model import TaskModel

PLACES = ("ones", "tens", "hundreds")  # a digit's place, counted from the right


def role_slot(role: str) -> int:
    """The argument slot (1-based) a role belongs to, 0 for none: `v2`, `v2.tens` (flat) and `arg2`, `arg2.op` to
    `arg2.)` (nested: all of an inner expression) are slot 2."""
    name = role.split(".")[0]
    number = name[3:] if name.startswith("arg") else name[1:] if name.startswith("v") else ""
    return int(number) if number.isdigit() else 0


def slot_key(roles_: Sequence[str], slot: int) -> int:
    """The position that stands for an argument slot: a number's first digit, an inner expression's closing `)`
    (where its whole list has been read); -1 if the slot is not in these roles."""
    at = [t for t, r in enumerate(roles_) if role_slot(r) == slot]
    if not at:
        return -1
    return at[-1] if roles_[at[-1]].endswith(".)") else at[0]


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
    if model.task.nested:
        return _nested_roles(model, words, one_digit)
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


def _name_value(out: list[str], digits: list[int], slot: int, one_digit: bool, prefix: str = "v") -> None:
    for k, i in enumerate(digits):
        place = PLACES[len(digits) - 1 - k] if len(digits) <= len(PLACES) else f"digit{k}"
        out[i] = f"{prefix}{slot}" if one_digit else f"{prefix}{slot}.{place}"


def _nested_roles(model: TaskModel, words: list[str], one_digit: bool) -> list[str]:
    """`roles` for a nested task: the same walk, one level deeper (see the module's docstring)."""
    out: list[str] = []
    depth, slot, inner_slot = 0, 0, 0  # how many '(' are open; the outer argument; the inner value
    digits: list[int] = []  # the digit positions of the number being read
    answer = None  # answer digits so far, once past `=`
    for i, word in enumerate(words):
        if word == "<pad>":
            out.append("pad")
        elif answer is not None:
            out.append(f"ans.{answer}" if word.isdigit() else "eos" if word == "<eos>" else word)
            answer += word.isdigit()
        elif word in model.task.operations:
            out.append("op" if depth == 0 else f"arg{slot}.op")
        elif word == "(":
            out.append("(" if depth == 0 else f"arg{slot}.(")
            depth += 1
            slot, inner_slot = (1, 0) if depth == 1 else (slot, 1)
        elif word.isdigit():
            digits.append(i)
            out.append("")  # named when the number ends, once its number of digits is known
        elif word in (",", ")") and depth == 2:  # inside an inner expression
            _name_value(out, digits, inner_slot, one_digit, f"arg{slot}.inner.v")
            digits, inner_slot = [], inner_slot + 1
            out.append(f"arg{slot}.inner.," if word == "," else f"arg{slot}.)")
            depth -= word == ")"
        elif word in (",", ")"):
            _name_value(out, digits, slot, one_digit, "arg")
            digits, slot = [], slot + 1
            out.append(word)
            depth -= word == ")"
        elif word == "=":
            out.append("=")
            answer = 0
        elif word == "<eos>":
            out.append("eos")
        else:
            out.append(word)
    return out
