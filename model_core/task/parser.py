"""Parse what a user types, e.g. `max(5, 3, 9)`, into an `Expression`.

Every problem is a `ParseError` whose message says what to type instead; no other exception
escapes, whatever the string.
"""

from __future__ import annotations

import difflib
import re

from .operations import MAX_VALUE, OPERATIONS, Expression, TaskConfig, TaskError

MAX_CHARS = 200
DEFAULT_N_ARGS = 3
EXAMPLE = "Max ( 5 3 9 )"
# ASCII digits only: int() would also accept other scripts' digits, like '٣'.
_NUMBER = re.compile(r"-?[0-9]+", re.ASCII)
_WORD = re.compile(r"[A-Za-z]+", re.ASCII)
_SEPARATORS = re.compile(r"[\s,]+")


class ParseError(ValueError):
    """Text that is not an expression this model can answer; the message says why."""


def _show(s: str, limit: int = 20) -> str:
    """Quote a piece of user input for a message, shortened if long."""
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _resolve_op(word: str, task: TaskConfig | None) -> str:
    """Canonical op name for a word in any letter case, or a ParseError with a suggestion."""
    allowed = task.operations if task else tuple(OPERATIONS)
    by_lower = {name.lower(): name for name in OPERATIONS}
    name = by_lower.get(word.lower()) if _WORD.fullmatch(word) else None
    if name in allowed:
        return name
    if name is not None:  # a real operation, just not one this model was trained on
        raise ParseError(f"This model does not know {name}. It knows: {', '.join(allowed)}.")
    close = difflib.get_close_matches(word[:40].lower(), [a.lower() for a in allowed], n=1)
    hint = f" Did you mean '{by_lower[close[0]]}'?" if close else ""
    raise ParseError(f"Unknown operation {_show(word)}.{hint} Known: {', '.join(allowed)}")


def _check_no_empty_value(body: str) -> None:
    """Commas separate values, so a comma with nothing but spaces before or after it leaves a value out.

    `Max ( 1 , , 2 3 )` must not be read as `Max ( 1 2 3 )`: say where the empty value is.
    """
    pieces = body.split(",")
    if len(pieces) < 2:
        return
    for i, piece in enumerate(pieces):
        if piece.strip():
            continue
        if i == 0:
            raise ParseError("Empty value: a ',' right after '(' has no value before it. Remove that comma.")
        if i == len(pieces) - 1:
            raise ParseError("Empty value: a ',' right before ')' has no value after it. Remove that comma.")
        before = pieces[i - 1].split()
        where = f"after {_show(before[-1])}" if before else "here"
        raise ParseError(f"Empty value {where}: two commas with nothing between them. Remove one, or put a value.")


def parse_expression(text: str, task: TaskConfig | None = None) -> Expression:
    """`Op ( a b c )` in any letter case, commas and/or spaces between values, optional `=`.

    With a task, the op, the number of values and their range are checked against it;
    without one, 3 values in 0-999 are expected.
    """
    if not isinstance(text, str):
        raise ParseError(f"Expected text, got {type(text).__name__}.")
    if len(text) > MAX_CHARS:
        raise ParseError(f"That is {len(text)} characters; keep it under {MAX_CHARS}.")
    s = text.strip()
    if not s:
        raise ParseError(f"Type an expression like {EXAMPLE}")

    head, open_paren, rest = s.partition("(")
    word = head.strip()
    if not word:
        raise ParseError(f"Start with an operation name, like {EXAMPLE}")
    if not open_paren:
        word = re.split(r"[\s),=]+", word)[0]  # e.g. 'Max' from 'Max 5 3 9)'
        if not _WORD.fullmatch(word):
            raise ParseError(f"Start with an operation name, like {EXAMPLE}")
        _resolve_op(word, task)  # an unknown name is the more useful message
        raise ParseError(f"Missing '(' after the operation name: write it like {EXAMPLE}")
    op = _resolve_op(word, task)

    body, close_paren, after = rest.partition(")")
    if not close_paren:
        raise ParseError(f"Missing ')' at the end: write it like {EXAMPLE}")
    if "(" in body:
        raise ParseError("Only one '(' is allowed, right after the operation name.")
    after = after.strip()
    if after not in ("", "="):
        raise ParseError(
            f"Nothing may follow ')' (found {_show(after)}); the model gives the answer."
        )

    lo_n, hi_n = (task.min_args, task.n_args) if task else (DEFAULT_N_ARGS, DEFAULT_N_ARGS)
    n_args = hi_n
    items = [t for t in _SEPARATORS.split(body) if t]
    if not items:
        n_show = max(lo_n, min(hi_n, DEFAULT_N_ARGS))
        example = " ".join(str(v) for v in (5, 3, 9, 1, 7, 2, 8, 4, 6, 0)[:n_show])
        count = f"{lo_n} to {hi_n}" if lo_n < hi_n else f"{n_args}"
        raise ParseError(
            f"Nothing between the parentheses: put {count} values, like {op} ( {example} )"
        )
    _check_no_empty_value(body)
    lo, hi = (task.min_value, task.max_value) if task else (0, MAX_VALUE)
    for item in items:
        if not _NUMBER.fullmatch(item):
            raise ParseError(f"{_show(item)} is not a whole number; values are whole numbers from {lo} to {hi}.")
    if lo_n < hi_n and not lo_n <= len(items) <= hi_n:
        raise ParseError(f"{op} takes {lo_n} to {hi_n} values here; got {len(items)}.")
    if lo_n == hi_n and len(items) != n_args:
        raise ParseError(f"{op} takes {n_args} values here; got {len(items)}.")

    values = []
    for item in items:
        # Check the length before int(): int() on thousands of digits is slow (and capped).
        digits = item.lstrip("-").lstrip("0")
        if len(digits) > len(str(hi)):
            shown = item if len(item) <= 20 else item[:20] + "..."
            raise ParseError(f"{shown} is outside this model's range {lo}-{hi}.")
        value = int(item)
        if not lo <= value <= hi:
            raise ParseError(f"{value} is outside this model's range {lo}-{hi}.")
        values.append(value)
    try:
        return Expression(op, tuple(values))
    except TaskError as e:  # e.g. too few values for the op; the checks above should catch it
        raise ParseError(str(e)) from None
