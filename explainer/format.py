"""How the pages write probabilities, log-probabilities and logit differences: one precision everywhere.

A confident model gives its answer 0.99993 of the probability; a fixed format (`:.1%`) writes that as
"100.0%", which is false, and a change from 0.99993 to 0.99976 does not show at all. So:

- `percent(p)` keeps one decimal for ordinary values and adds decimals until the distance to 100% (or to 0%)
  shows with two significant digits: 0.5 -> "50.0%", 0.999887 -> "99.989%", 3e-4 -> "0.03%". It writes
  "100%" or "0%" only for exactly 1 or 0; closer than 1e-6 to either it says so: "≈100% (1 − 1.0e-9)".
- `log_prob(x)` writes a log-probability (natural log) with three significant digits, so that confident
  answers still differ: "−6.75e-5", "−0.0238", "−1.60". `logprob(p)` takes the probability instead.
- `logit(x)` writes a logit or a logit difference with two decimals; `signed(x)` a change, with its sign.

And how they put text that someone else wrote (a typed example, a parse error that quotes it, a model's name
from an uploaded checkpoint, a token of its vocabulary) into Markdown, so that it shows as typed:

- `literal(text)` escapes it for st.markdown, st.info / warning / error / success, st.caption, widget labels and
  help, radio / segmented-control / select-slider options, metric labels, progress text. No image, link, emphasis,
  code, math, HTML, emoji, icon or colour directive can come out of it, nor a new block.
- `code(text)` shows it as inline code (a token): a code span whose backtick fence is longer than any in the text.

Pure functions (no Streamlit), so they are unit-tested directly (tests/app/test_format.py,
tests/app/test_markdown_escaping.py).
"""

from __future__ import annotations

import math
import re
import string

MINUS = "\u2212"  # the typographic minus sign, as in "−∞" elsewhere on the pages
TINY = 1e-6  # closer than this to 0 or 1, a probability is written as "≈0% (p)" or "≈100% (1 − q)"

# printf formats for st.column_config.NumberColumn (Streamlit formats table cells in the browser)
LOGIT_COLUMN = "%.2f"
LOG_PROB_COLUMN = "%.3g"


def _minus(text: str) -> str:
    """A leading "-" as the minus sign; an exponent's "e-05" becomes "e-5"."""
    text = re.sub(r"e([+-])0*(\d)", lambda m: "e" + m.group(1).replace("+", "") + m.group(2), text)
    return MINUS + text[1:] if text.startswith("-") else text


def _sci(x: float) -> str:
    """Two significant digits in scientific notation: "1.0e-9"."""
    return _minus(f"{x:.1e}")


def _decimals(distance: float) -> int:
    """Decimals of a percentage that show `distance` (a probability, > 0) with two significant digits (>= 1)."""
    return max(1, math.floor(-math.log10(distance * 100)) + 2)


def _strip(number: str) -> str:
    """Drop trailing zeros after the first decimal: "99.99999990" -> "99.9999999", "50.0" stays."""
    if "." not in number:
        return number
    whole, frac = number.split(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac or '0'}"


def percent(p: float) -> str:
    """A probability as a percentage that never rounds to 100% or 0% unless it is exactly 1 or 0."""
    p = float(p)
    if math.isnan(p):
        return "—"
    if p >= 1.0:
        return "100%"
    if p <= 0.0:
        return "0%"
    q = 1.0 - p
    if q < TINY:
        return f"≈100% (1 {MINUS} {_sci(q)})"
    if p < TINY:
        return f"≈0% ({_sci(p)})"
    d = _decimals(min(p, q))
    return _strip(f"{p * 100:.{d}f}") + "%"


def log_prob(x: float) -> str:
    """A log-probability (natural log, <= 0) with three significant digits: "−6.75e-5", "−0.0238", "−16.9"."""
    x = float(x)
    if math.isnan(x):
        return "—"
    if x == -math.inf:
        return f"{MINUS}∞"
    if x == 0.0:
        return "0"
    text = f"{x:#.3g}"
    if abs(x) >= 99.95 or text.endswith("."):  # "−691.2", not "−691." or "−1.23e+03"
        text = f"{x:.1f}"
    return _minus(text)


def logprob(p: float) -> str:
    """The log-probability of a probability `p`, written as `log_prob` does (0 -> "−∞")."""
    p = float(p)
    if math.isnan(p):
        return "—"
    return log_prob(math.log(p)) if p > 0 else f"{MINUS}∞"


def with_log(p: float, logp: float | None = None) -> str:
    """A probability and its log-probability beside it: "99.993% (log p −6.75e-5)".

    Pass `logp` when it is known more exactly than log(p) (e.g. from a log-softmax)."""
    lp = log_prob(logp) if logp is not None else logprob(p)
    return f"{percent(p)} (log p {lp})"


def logit(x: float, digits: int = 2) -> str:
    """A logit or a logit difference: "11.57", "−0.34"."""
    x = float(x)
    if math.isnan(x):
        return "—"
    text = f"{x:.{digits}f}"
    if float(text) == 0.0:
        text = text.lstrip("-")  # no "−0.00"
    return _minus(text)


def signed(x: float, digits: int = 2) -> str:
    """A change with its sign: "+1.23", "−7.77", "0.00" (for a change that rounds to zero)."""
    text = logit(x, digits)
    if text == "—" or text.startswith(MINUS) or float(text) == 0.0:
        return text
    return "+" + text


def signed_log_prob(x: float) -> str:
    """A change of log-probability with its sign and three significant digits: "+1.20e-5", "−0.0238"."""
    text = log_prob(x)
    return text if text in ("—", "0") or text.startswith(MINUS) else "+" + text


# ---------------------------------------------------------------- text from users, in Markdown
# Streamlit renders Markdown (CommonMark, GFM, math, emoji shortcodes and its own `:color[...]` and
# `:material/icon:`) in the browser. A backslash makes any ASCII punctuation character literal in CommonMark,
# which stops images, links, emphasis, code, math, HTML and directives. Two things a backslash does not stop:
# - GFM autolink literals (`http://...`, `www.x.y`, `a@b.c`) are found in the text after escapes are decoded,
#   so a WORD JOINER (U+2060, invisible, no line break) goes where they would start: after a ":" that a
#   non-space follows, between "www" and ".", after "@". (That also keeps `:name:` emoji shortcodes apart.)
# - Whitespace starts blocks: a line ending in the text becomes a space, and leading or trailing whitespace is
#   written as character references (`&#32;`), so it can neither indent a code block nor end a paragraph.
WORD_JOINER = "\u2060"
_PUNCTUATION = frozenset(string.punctuation)  # all of ASCII's: each can be backslash-escaped
_LINE_ENDING = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and line feed, DEL, C1
_AUTOLINK_START = re.compile(r"(?<=:)(?=\S)|(?<=www)(?=\.)|(?<=@)", re.IGNORECASE)


def _plain(text: object) -> str:
    """The text as one line: line endings become spaces, control characters (but tab) U+FFFD, the replacement
    character (as CommonMark does with NUL and with character references to controls)."""
    return _CONTROL.sub("\ufffd", _LINE_ENDING.sub(" ", str(text)))


def _references(whitespace: str) -> str:
    return "".join(f"&#{ord(c)};" for c in whitespace)


def literal(text: object) -> str:
    """`text` (any string) as Markdown that renders as exactly that text, on one line, in a paragraph or inside
    the page's own Markdown (e.g. `f"Model **{literal(name)}**"`).

    Every ASCII punctuation character is backslash-escaped ("Max ( 7 2 9 )" is written "Max \\( 7 2 9 \\)" and
    shows as typed); line endings become spaces; leading and trailing whitespace becomes character references;
    an invisible WORD_JOINER breaks what GFM would turn into a link (after "http:", between "www" and ".", after
    "@")."""
    text = _AUTOLINK_START.sub(WORD_JOINER, _plain(text))
    body = text.lstrip()
    lead = text[: len(text) - len(body)]
    body = body.rstrip()
    tail = text[len(lead) + len(body) :]
    escaped = "".join("\\" + c if c in _PUNCTUATION else c for c in body)
    return _references(lead) + escaped + _references(tail)


def code(text: object) -> str:
    """`text` as an inline code span (e.g. a token): fenced by more backticks than its longest run of them, with a
    space inside the fence where the text starts or ends with a backtick. Backslash escapes do not work in code,
    so this is the only safe way to put text between backticks. One line, like `literal`."""
    text = _plain(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.strip(" ") and (text.startswith(("`", " ")) or text.endswith(("`", " "))) else ""
    return f"{fence}{pad}{text or ' '}{pad}{fence}"
