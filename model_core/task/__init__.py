"""The toy task: operations on a few numbers, as arrays of expressions, splits and token sequences.

    operations  the operation registry (one entry per operation), TaskConfig, Expression(Set)
    nested      expressions inside expressions (max_depth 2): their arrays, ids and random draws
    splits      train / validation / test by distinct expression, balanced sampling
    encode      token sequences, targets, exact match
    vocab       the token vocabulary
    parser      text a user types -> an Expression, or a ParseError that says what to type
"""

from .encode import IGNORE, Batch, encode, exact_match, exact_match_at_rows
from .operations import (
    ABSENT,
    MAX_ARGS,
    MAX_ENUMERABLE,
    MAX_VALUE,
    OPERATIONS,
    Expression,
    ExpressionSet,
    Operation,
    TaskConfig,
    TaskError,
    check_compatible,
    count_text,
    enumerate_all,
    task_text,
)
from .splits import SPLIT_IDS, TEST, TRAIN, VAL, Splits, make_splits

__all__ = [
    "ABSENT", "IGNORE", "MAX_ARGS", "MAX_ENUMERABLE", "MAX_VALUE", "OPERATIONS", "SPLIT_IDS", "TEST", "TRAIN", "VAL",
    "Batch", "Expression", "ExpressionSet", "Operation", "Splits", "TaskConfig", "TaskError", "check_compatible",
    "count_text", "task_text", "encode", "enumerate_all", "exact_match", "exact_match_at_rows", "make_splits",
]  # fmt: skip
