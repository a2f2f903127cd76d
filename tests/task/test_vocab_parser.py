"""Vocabulary and the expression parser: tables of good and bad inputs, plus fuzzing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.task import Expression, TaskConfig
from model_core.task.parser import ParseError, parse_expression
from model_core.task.vocab import DEFAULT_VOCAB, Vocabulary

# ----------------------------------------------------------------------------- vocabulary


def test_default_vocab_layout():
    v = DEFAULT_VOCAB
    assert len(v) == 21
    assert v.to_list() == (
        ["<pad>", "<eos>", "(", ")", ",", "="]
        + ["First", "Second", "Last", "Max", "Min"]
        + [str(d) for d in range(10)]
    )
    assert (v.pad_id, v.eos_id, v.equals_id) == (0, 1, 5)
    assert v.id("Max") == 9 and v.id("0") == 11


def test_round_trips():
    v = DEFAULT_VOCAB
    assert Vocabulary.from_list(v.to_list()) == v
    words = "Max ( 5 , 3 , 9 ) = 9 <eos>".split()
    assert v.decode(v.encode(words)) == words


def test_for_operations_uses_registry_order():
    v = Vocabulary.for_operations(["Min", "First"])
    assert v.to_list()[6:8] == ["First", "Min"]
    assert len(v) == 18


@pytest.mark.parametrize(
    "tokens, phrase",
    [
        (DEFAULT_VOCAB.to_list() + ["Max"], "repeated"),
        ([t for t in DEFAULT_VOCAB.to_list() if t != "7"], "missing"),
        ([t for t in DEFAULT_VOCAB.to_list() if t != "<eos>"], "missing"),
        (DEFAULT_VOCAB.to_list() + [3], "non-empty string"),
        (DEFAULT_VOCAB.to_list() + [""], "non-empty string"),
        ("<pad><eos>", "list of token strings"),
    ],
)
def test_from_list_rejects_bad_lists(tokens, phrase):
    with pytest.raises(ValueError, match=phrase):
        Vocabulary.from_list(tokens)


def test_unknown_tokens_and_ids():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        DEFAULT_VOCAB.id("Sum")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        DEFAULT_VOCAB.decode([21])
    with pytest.raises(ValueError, match="Unknown operations"):
        Vocabulary.for_operations(["Mul"])


# ----------------------------------------------------------------------------- parser: tables

SMALL = TaskConfig(max_value=5)
TWO_OPS = TaskConfig(operations=("Max", "First"))


@pytest.mark.parametrize(
    "text, task, op, values",
    [
        ("Max ( 5 3 9 )", None, "Max", (5, 3, 9)),
        ("max(5, 3, 9)", None, "Max", (5, 3, 9)),
        ("MAX(5,3,9)", None, "Max", (5, 3, 9)),
        ("  Min (5 ,3, 9 )  ", None, "Min", (5, 3, 9)),
        ("\tfirst\t(\t1\t2\t3\t)\t", None, "First", (1, 2, 3)),
        ("Second ( 1 2 3 ) =", None, "Second", (1, 2, 3)),
        ("last(1,2,3)=", None, "Last", (1, 2, 3)),
        ("Max ( 05 3 9 )", None, "Max", (5, 3, 9)),
        ("Max ( 0 0 0 )", None, "Max", (0, 0, 0)),
        ("Max ( 12 999 0 )", None, "Max", (12, 999, 0)),
        ("Max ( 5 3 )", TaskConfig(n_args=2), "Max", (5, 3)),
        ("Max ( 5 3 2 )", SMALL, "Max", (5, 3, 2)),
        ("Max ( 56 3 99 )", TaskConfig(max_value=99), "Max", (56, 3, 99)),
    ],
)
def test_parses_good_inputs(text, task, op, values):
    assert parse_expression(text, task) == Expression(op, values)


@pytest.mark.parametrize(
    "text, task, phrase",
    [
        ("", None, "Type an expression like Max ( 5 3 9 )"),
        ("   \t\n", None, "Type an expression like"),
        ("Max ( " + "1 " * 100 + ")", None, "characters"),
        ("Mx ( 5 3 9 )", None, "Unknown operation 'Mx'. Did you mean 'Max'? Known: First"),
        ("Frist(1 2 3)", None, "Did you mean 'First'?"),
        ("Mul(1 2 3)", None, "Unknown operation 'Mul'"),
        ("Sum ( 1 2 3 )", TaskConfig(), "This model does not know Sum. It knows: First, Second, Last, Max, Min."),
        ("Min ( 1 2 3 )", TWO_OPS, "It knows: Max, First"),
        ("Mn ( 1 2 3 )", TWO_OPS, "Known: Max, First"),
        ("( 1 2 3 )", None, "Start with an operation name"),
        ("5 3 9", None, "Start with an operation name"),
        ("Max 5 3 9", None, "Missing '('"),
        ("Max 5 3 9 )", None, "Missing '('"),
        ("Max ( 5 3 9", None, "Missing ')'"),
        ("Max ( 5 3 9 ) 4", None, "Nothing may follow ')'"),
        ("Max ( 5 3 9 ) = 9", None, "Nothing may follow ')'"),
        ("Max ( (5 3 9) )", None, "Only one '('"),
        ("Max ( 5.5 3 9 )", None, "'5.5' is not a whole number"),
        ("Max ( x 3 9 )", None, "'x' is not a whole number"),
        ("Max ( ٣ 3 9 )", None, "is not a whole number"),
        ("Max ( 5 3 )", None, "takes 3 values here; got 2"),
        ("Max ( 5 3 9 1 )", None, "takes 3 values here; got 4"),
        ("Max ( 5 3 9 )", TaskConfig(n_args=2), "takes 2 values here; got 3"),
        ("Max ( 9 3 1 )", SMALL, "9 is outside this model's range 0-5"),
        ("Max ( -1 3 1 )", SMALL, "-1 is outside this model's range 0-5"),
        ("Max ( 1 3 1000 )", None, "1000 is outside this model's range 0-999"),
        ("Max ( 1 3 " + "9" * 150 + " )", None, "outside this model's range"),
        (
            "Max ( 1 3 2 )",
            TaskConfig(min_value=2, max_value=4),
            "1 is outside this model's range 2-4",
        ),
        ("Max ( 1 , , 2 3 )", None, "Empty value after '1': two commas"),
        ("Max ( 1 , , 2 )", None, "Empty value after '1'"),
        ("max(4,8,,1)", None, "Empty value after '8'"),
        ("Max ( 1 ,\t, 2 3 )", TaskConfig(max_value=99), "Empty value after '1'"),
        ("Max ( , 1 2 3 )", None, "Empty value: a ',' right after '('"),
        ("Max(,1,2,3)", None, "right after '('"),
        ("Max ( 1 2 3 , )", None, "Empty value: a ',' right before ')'"),
        ("Max(1,2,3,) =", None, "right before ')'"),
        ("Max ( )", None, "Nothing between the parentheses"),
        ("Max ( , , )", None, "Nothing between the parentheses"),
    ],
)
def test_rejects_bad_inputs(text, task, phrase):
    with pytest.raises(ParseError) as err:
        parse_expression(text, task)
    assert phrase in str(err.value)


def test_non_string_input():
    with pytest.raises(ParseError, match="Expected text"):
        parse_expression(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- parser: fuzzing


def _parses_or_parse_error(text, task=None):
    try:
        expr = parse_expression(text, task)
    except ParseError as e:
        assert str(e)  # a message the user can read
        return
    assert isinstance(expr, Expression)
    lo, hi = (task.min_value, task.max_value) if task else (0, 999)
    assert all(lo <= v <= hi for v in expr.values)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_parses_or_raises_parse_error(text):
    _parses_or_parse_error(text)


PIECES = [
    "Max", "max", "MIN", "First", "second", "Last", "Mx", "Sum", "(", ")", "((", ",", ",,",
    "=", " ", "\t", "\n", "5", "9", "0", "42", "999", "1000", "-3", "5.5", "x", "1e3", "٣", "²",
    "\x00", "é", "9" * 400,
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.sampled_from([None, SMALL, TWO_OPS, TaskConfig(n_args=1, operations=("Max",))]),
)
def test_near_misses_parse_or_raise_parse_error(text, task):
    _parses_or_parse_error(text, task)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["First", "Second", "Last", "Max", "Min"]),
    st.lists(st.integers(0, 999), min_size=3, max_size=3),
)
def test_canonical_text_round_trips(op, values):
    expr = Expression(op, tuple(values))
    assert parse_expression(expr.text) == expr


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 9), min_size=3, max_size=3),
    st.integers(0, 3),  # where the stray comma goes: 0 = after '(', 3 = before ')', else after value i
    st.sampled_from([",", " , ", ",\t", " ,  "]),
)
def test_an_empty_value_between_commas_is_an_error_never_dropped(values, where, sep):
    """Values separated by commas, with one comma doubled (or leading, or trailing): never parsed."""
    parts = [str(v) for v in values]
    body = sep.join(parts[:where] + [""] + parts[where:]) if 0 < where < 3 else (
        sep + sep.join(parts) if where == 0 else sep.join(parts) + sep)
    text = f"Max ( {body} )"
    assert parse_expression(f"Max ( {sep.join(parts)} )") == Expression("Max", tuple(values))
    with pytest.raises(ParseError, match="Empty value"):
        parse_expression(text)
