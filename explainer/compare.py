"""Two examples side by side: what each stage page shows when the sidebar compares a second example.

Each view draws the same array of both runs, on one colour scale, or their difference where the two inputs have
the same layout (the same roles at the same positions, `interp.inputs.roles`). The arrays are the runs' caches
(`state.Current.run`, `.compare_run`); `model_core.analysis.compare` says where the runs part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, links, vega
from explainer import format as fmt
from explainer.charts import mechanism as mc
from explainer.state import Current
from model_core.analysis import compare as ac
from model_core.analysis import output as ao
from model_core.interp.inputs import roles

VIEWS = ["side by side", "difference"]


def on(cur: Current) -> bool:
    return cur.compare_run is not None


def header(cur: Current) -> None:
    """One line naming the two runs, above a page's comparison."""
    st.subheader("Two examples")
    st.caption(f"**{fmt.literal(cur.text)}** (the sidebar's example) and **{fmt.literal(cur.compare_text)}** (the "
               "second example), through the same model. Switch comparing off in the sidebar.")  # fmt: skip


def heatmaps(cur: Current, title: str, a: np.ndarray, b: np.ndarray, rows_a: Sequence[str], rows_b: Sequence[str],
             cols_a: Sequence[str] | None = None, cols_b: Sequence[str] | None = None, *, x_title: str,
             y_title: str = "position", value_title: str = "value", kind: str = "signed",
             key: str) -> None:  # fmt: skip
    """`a` and `b` ([rows, cols] of each run) side by side on one colour scale, or `a - b` when they line up."""
    same = a.shape == b.shape and roles(cur.model, cur.run.tokens) == roles(cur.model, cur.compare_run.tokens)
    links.bind_choice("cmp", key, VIEWS)
    view = st.segmented_control("Show", VIEWS, default=VIEWS[0], required=True, key=key) or VIEWS[0]
    if view == "difference" and not same:
        st.info("The two inputs do not line up position by position (their values have different numbers of "
                "digits), so only side by side is shown.", icon=":material/info:")  # fmt: skip
    if view == "difference" and same:
        diff = a.astype(np.float64) - b.astype(np.float64)
        rows, cols = _merged(rows_a, rows_b), None if cols_a is None else _merged(cols_a, cols_b)
        vega.draw(charts.matrix_heatmap(diff, rows, cols, title=f"{title}: first minus second",
                                        x_title=x_title, y_title=y_title, value_title=f"{value_title} difference",
                                        kind="signed"), width="stretch")  # fmt: skip
        st.caption(f"Largest difference {np.abs(diff).max():.4g}; zero where the runs agree.")
        return
    both = np.concatenate([a.ravel(), b.ravel()])  # one colour scale for the two
    left, right = st.columns(2)
    for col, values, rows, cols, text in ((left, a, rows_a, cols_a, cur.text), (right, b, rows_b, cols_b,
                                                                                   cur.compare_text)):  # fmt: skip
        with col:
            vega.draw(charts.matrix_heatmap(values, rows, cols, title=f"{title}: {text}", x_title=x_title,
                                            y_title=y_title, value_title=value_title, kind=kind,
                                            scale_values=both), width="stretch")  # fmt: skip


def _merged(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """One label per row for a difference: "6: 9/8" where the runs read another token, else the label."""
    return [a if a == b else f"{a}/{b.split(': ', 1)[-1]}" for a, b in zip(first, second, strict=True)]


def probabilities(cur: Current, position_a: int, position_b: int, vocab, k: int = 5) -> None:
    """The two runs' next-token probabilities at a position (grouped bars of the tokens either ranks top-`k`)."""
    pa = ao.softmax_with_temperature(cur.run.cache["hook_logits"][0, position_a], 1.0)
    pb = ao.softmax_with_temperature(cur.compare_run.cache["hook_logits"][0, position_b], 1.0)
    ids = list(dict.fromkeys([*np.argsort(-pa)[:k], *np.argsort(-pb)[:k]]))
    rows = [{"token": vocab.decode([int(i)])[0], "run": text, "probability": float(p[i]),
             "logprob": float(np.log(max(p[i], 1e-300)))}
            for text, p in ((cur.text, pa), (cur.compare_text, pb)) for i in ids]  # fmt: skip
    at = "=" if position_a == cur.run.answer_pos and position_b == cur.compare_run.answer_pos else "the step"
    vega.draw(mc.probability_compare(pd.DataFrame(rows), title="Next-token probabilities of the two runs", at=at),
              width="stretch")  # fmt: skip


def parting_view(cur: Current) -> None:
    """Where the two runs part (the Overview): the sentence and the relative difference at every stage."""
    p = ac.parting(cur.model, cur.run, cur.compare_run)
    st.markdown(ac.parting_text(p))
    cols = [f"{i}: {a}" if a == b else f"{i}: {a}/{b}" for i, a, b in zip(p.pos_a, p.tokens_a, p.tokens_b,
                                                                          strict=True)]  # fmt: skip
    vega.draw(charts.matrix_heatmap(p.relative, p.stages, cols, title="How far apart the two residual streams are",
                                    x_title="position (first run; tokens first/second where they differ)",
                                    y_title="after", value_title="|a − b| / max(|a|, |b|)", kind="magnitude"),
              width="stretch")  # fmt: skip
    st.caption("Each cell compares the two runs' residual stream at one stage and one position (matched by role, "
               f"so values with different numbers of digits still line up); {ac.NOTICEABLE:.0%} and above is called "
               "noticeable. 0 is identical.")  # fmt: skip
