"""The token vocabulary: specials, operation names, digits. A checkpoint stores `to_list()`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .operations import OPERATIONS

PAD, EOS, EQUALS = "<pad>", "<eos>", "="
SPECIALS = (PAD, EOS, "(", ")", ",", EQUALS)
DIGITS = tuple(str(d) for d in range(10))
KNOWN_TOKENS = frozenset(SPECIALS + tuple(OPERATIONS) + DIGITS)


@dataclass(frozen=True)
class Vocabulary:
    """An ordered tuple of distinct tokens; a token's id is its index."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        tokens = self.tokens
        if isinstance(tokens, str) or not isinstance(tokens, (tuple, list)):
            raise ValueError(f"A vocabulary is a list of token strings, got {tokens!r}.")
        bad = [t for t in tokens if not isinstance(t, str) or not t]
        if bad:
            raise ValueError(f"Every token must be a non-empty string; bad: {bad[:5]!r}.")
        # One counting pass: tokens.count per token would take quadratic time on a long (uploaded) list.
        dupes = sorted(t for t, n in Counter(tokens).items() if n > 1)
        if dupes:
            raise ValueError(f"Tokens must be unique; repeated: {dupes}.")
        missing = [t for t in SPECIALS + DIGITS if t not in tokens]
        if missing:
            raise ValueError(f"The vocabulary is missing required tokens: {missing}.")
        # Only tokens a task can write: an uploaded checkpoint's extra token could never be an input or a right
        # answer, and it would reach every page's text (the pages show predicted tokens).
        unknown = [t for t in tokens if t not in KNOWN_TOKENS]
        if unknown:
            raise ValueError(f"The vocabulary has {len(unknown):,} token(s) no task uses, e.g. {unknown[0][:40]!r}; "
                             f"tokens are the specials, operation names and digits.")  # fmt: skip
        object.__setattr__(self, "tokens", tuple(tokens))
        # token -> id, built once; not a dataclass field, so not part of eq/repr
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(tokens)})

    @classmethod
    def for_operations(cls, op_names: Iterable[str]) -> Vocabulary:
        """Specials, then the given ops in registry order, then digits 0-9."""
        names = set(op_names)
        unknown = sorted(names - set(OPERATIONS))
        if unknown:
            raise ValueError(f"Unknown operations {unknown}. Known: {', '.join(OPERATIONS)}.")
        return cls(SPECIALS + tuple(n for n in OPERATIONS if n in names) + DIGITS)

    @classmethod
    def from_list(cls, tokens: list[str]) -> Vocabulary:
        """Rebuild from `to_list()` (e.g. a checkpoint's JSON); validates the list."""
        return cls(tokens)

    def to_list(self) -> list[str]:
        return list(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        try:
            return self._index[token]
        except (KeyError, TypeError):
            raise ValueError(f"{token!r} is not in the vocabulary.") from None

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.id(t) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"Token id {i} is outside the vocabulary (0-{len(self) - 1}).")
            out.append(self.tokens[i])
        return out

    @property
    def pad_id(self) -> int:
        return self._index[PAD]

    @property
    def eos_id(self) -> int:
        return self._index[EOS]

    @property
    def equals_id(self) -> int:
        return self._index[EQUALS]


ORIGINAL_OPERATIONS = ("First", "Second", "Last", "Max", "Min")
# The vocabulary of every task of the original operations (21 tokens, as every shipped model has); a task with a
# later operation, such as Sum, adds its name (`vocab_for`), so adding an operation leaves the old models as they are.
DEFAULT_VOCAB = Vocabulary.for_operations(ORIGINAL_OPERATIONS)


def vocab_for(operations: Iterable[str]) -> Vocabulary:
    """The vocabulary of a task with these operations: DEFAULT_VOCAB, plus any later operation's name."""
    extra = set(operations) - set(ORIGINAL_OPERATIONS)
    return Vocabulary.for_operations(set(ORIGINAL_OPERATIONS) | extra) if extra else DEFAULT_VOCAB
