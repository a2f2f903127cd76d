"""How the pages write probabilities, log-probabilities and logit differences: one precision everywhere.

A confident model gives its answer 0.99993 of the probability; a fixed format (`:.1%`) writes that as
"100.0%", which is false, and a change from 0.99993 to 0.99976 does not show at all. So:

- `percent(p)` keeps one decimal for ordinary values and adds decimals until the distance to 100% (or to 0%)
  shows with two significant digits: 0.5 -> "50.0%", 0.999887 -> "99.989%", 3e-4 -> "0.03%". It writes
  "100%" or "0%" only for exactly 1 or 0; closer than 1e-6 to either it says so: "≈100% (1 − 1.0e-9)".
- `log_prob(x)` writes a log-probability (natural log) with three significant digits, so that confident
  answers still differ: "−6.75e-5", "−0.0238", "−1.60". `logprob(p)` takes the probability instead.
- `logit(x)` writes a logit or a logit difference with two decimals; `signed(x)` a change, with its sign.

Pure functions of floats (no Streamlit), so they are unit-tested directly (tests/app/test_format.py).
"""

from __future__ import annotations

import math
import re

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
