"""Parse what a user types, e.g. `max(5, 3, 9)` or, for a nested task, `max(first(2, 8), 7)`, into an
`Expression`.

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


# A token: a bracket, a comma, or a run of anything else (a number, a word, or junk such as '5.5' or '=').
_TOKEN = re.compile(r"[(),]|[^\s(),]+")


def _example(lo_n: int, hi_n: int) -> str:
    """Example values for a list of lo_n to hi_n values: 3 of them, or as near 3 as allowed."""
    return " ".join(str(v) for v in (5, 3, 9, 1, 7, 2, 8, 4, 6, 0)[: max(lo_n, min(hi_n, DEFAULT_N_ARGS))])


def _op_name(word: str) -> str:
    """How a message names the word before a '(': the operation's own spelling if it is one."""
    by_lower = {name.lower(): name for name in OPERATIONS}
    return by_lower.get(word.lower(), _show(word))


def _structure(tokens: list[str], op: str, max_depth: int) -> tuple[dict[int, int], int]:
    """Match the brackets of `tokens` (what follows the operation's '('; the outer list is open). Returns
    {index of each inner '(': index of its ')'} and the index of the outer ')'. ParseError, in this order:
    a '(' never closed (the innermost one), a '(' without an operation name before it or nested deeper than
    `max_depth`, a ')' with no '(' to close, anything but '=' after the outer ')'."""
    stack: list[tuple[int, str | None]] = [(-1, op)]  # each open '(': its index and the word before it
    pairs: dict[int, int] = {}
    misplaced: list[str | None] = []  # the word before each misplaced '(' (None: no word), in order
    close = None
    for i, tok in enumerate(tokens):
        if tok == "(":
            prev = tokens[i - 1] if i else None
            word = prev if prev is not None and _WORD.fullmatch(prev) else None
            if word is None or len(stack) >= max_depth:  # the outer list is depth 1
                misplaced.append(word)
            stack.append((i, word))
        elif tok == ")":
            start, _ = stack.pop()
            if not stack:
                close = i
                break
            pairs[start] = i
    if close is None:
        _, word = stack[-1]
        if len(stack) == 1:
            raise ParseError(f"Missing ')' at the end: the '(' after {op} is never closed: add ')'. "
                             f"Write it like {EXAMPLE}")  # fmt: skip
        if word is None:
            raise ParseError("A '(' is never closed: add ')' after its values.")
        raise ParseError(f"The '(' after {_op_name(word)} is never closed: add ')' after its values.")
    if misplaced:
        word = misplaced[0]
        if word is None:
            if max_depth == 1:
                raise ParseError("Only one '(' is allowed, right after the operation name.")
            raise ParseError("A '(' must come right after an operation name, like First ( 2 8 ).")
        if max_depth == 1:
            raise ParseError("This model takes numbers only, not expressions inside expressions: "
                             f"replace {_op_name(word)} ( ... ) by a number.")  # fmt: skip
        raise ParseError(f"This model takes expressions nested at most {max_depth} deep: "
                         f"{_op_name(word)} ( ... ) is inside an expression inside an expression.")  # fmt: skip
    depth = 0
    for i in range(close + 1, len(tokens)):
        if tokens[i] == "(":
            depth += 1
        elif tokens[i] == ")":
            if depth == 0:
                prev = tokens[i - 1]  # a number as typed (short), anything else quoted
                shown = prev if _NUMBER.fullmatch(prev) and len(prev) <= 20 else _show(prev)
                raise ParseError(f"')' after {shown} has no '(' to close: remove it.")
            depth -= 1
    return pairs, close


def _check_no_empty_value(pieces: list[str]) -> None:
    """Commas separate values, so a comma with nothing before or after it leaves a value out.

    `Max ( 1 , , 2 3 )` must not be read as `Max ( 1 2 3 )`: say where the empty value is. `pieces` are one
    list's tokens at its own level: values (an inner expression as its last token, ')'), and commas."""
    for i, piece in enumerate(pieces):
        if piece != ",":
            continue
        if i == 0:
            raise ParseError("Empty value: a ',' right after '(' has no value before it. Remove that comma.")
        if i == len(pieces) - 1:
            raise ParseError("Empty value: a ',' right before ')' has no value after it. Remove that comma.")
        if pieces[i + 1] == ",":
            raise ParseError(f"Empty value after {_show(pieces[i - 1])}: two commas with nothing between them. "
                             "Remove one, or put a value.")  # fmt: skip


def _parse_list(op: str, tokens: list[str], start: int, end: int, pairs: dict[int, int],
                task: TaskConfig | None) -> Expression:  # fmt: skip
    """The expression `op ( tokens[start:end] )`: its values (inner expressions parsed first, left to right),
    checked for empty values, whole numbers, how many there are and their range."""
    lo_n, hi_n = (task.min_args, task.n_args) if task else (DEFAULT_N_ARGS, DEFAULT_N_ARGS)
    n_args = hi_n
    items: list[str | tuple[str, int]] = []  # a number's text, or an inner expression's (word, index of its '(')
    pieces: list[str] = []  # this level's tokens, an inner expression as its ')', for the empty-value check
    i = start
    while i < end:
        tok = tokens[i]
        if i + 1 < end and tokens[i + 1] == "(":  # `_structure` checked it is a word, nested no deeper than allowed
            items.append((tok, i + 1))
            i = pairs[i + 1]
        elif tok != ",":
            items.append(tok)
        pieces.append(tokens[i])
        i += 1
    if not items:
        count = f"{lo_n} to {hi_n}" if lo_n < hi_n else f"{n_args}"
        raise ParseError(
            f"Nothing between the parentheses: put {count} values, like {op} ( {_example(lo_n, hi_n)} )"
        )
    _check_no_empty_value(pieces)
    lo, hi = (task.min_value, task.max_value) if task else (0, MAX_VALUE)
    parsed: list[Expression | None] = []
    for item in items:
        if isinstance(item, tuple):
            word, open_at = item
            parsed.append(_parse_list(_resolve_op(word, task), tokens, open_at + 1, pairs[open_at], pairs, task))
        elif not _NUMBER.fullmatch(item):
            if task is not None and task.nested and item.lower() in {name.lower() for name in OPERATIONS}:
                name = _op_name(item)
                raise ParseError(f"Missing '(' after {name}: an expression inside is written like "
                                 f"{name} ( {_example(lo_n, hi_n)} ).")  # fmt: skip
            raise ParseError(f"{_show(item)} is not a whole number; values are whole numbers from {lo} to {hi}.")
        else:
            parsed.append(None)
    if lo_n < hi_n and not lo_n <= len(items) <= hi_n:
        raise ParseError(f"{op} takes {lo_n} to {hi_n} values here; got {len(items)}.")
    if lo_n == hi_n and len(items) != n_args:
        raise ParseError(f"{op} takes {n_args} values here; got {len(items)}.")

    values: list[int | Expression] = []
    for item, inner in zip(items, parsed, strict=True):
        if inner is not None:
            values.append(inner)
            continue
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


def parse_expression(text: str, task: TaskConfig | None = None) -> Expression:
    """`Op ( a b c )` in any letter case, commas and/or spaces between values, optional `=`; for a nested task
    (max_depth 2) a value may be an expression of numbers, e.g. `max(first(2, 8), 7)`.

    With a task, the ops, the number of values, their range and the nesting are checked against it;
    without one, 3 values in 0-999 (numbers only) are expected.
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

    tokens = _TOKEN.findall(rest)
    pairs, close = _structure(tokens, op, task.max_depth if task else 1)
    after = " ".join(tokens[close + 1 :])
    if after not in ("", "="):
        raise ParseError(
            f"Nothing may follow ')' (found {_show(after)}); the model gives the answer."
        )
    return _parse_list(op, tokens, 0, close, pairs, task)
