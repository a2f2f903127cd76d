"""A path through the course, drawn by the entry script around each page: a question to answer before the
page's numbers give it away (Predict, then reveal), Previous / Next links in course order, and the glossary.

The questions and their answers are pure functions of the run (`model_core.analysis.questions`); this module
only draws them. Its session keys start with "quiz_".
"""

from __future__ import annotations

import hashlib

import streamlit as st

from explainer import format as fmt
from explainer import glossary
from explainer.state import Current
from model_core.analysis import questions

REVEALED = "quiz_revealed"  # {stage: (question key, the option chosen)}: what was revealed, one per page


def question_key(stage: str, cur: Current) -> str:
    """The key of a page's question: it changes (and the question starts over) with the model, the example,
    the layer or the head."""
    ident = "\x1f".join([stage, cur.model_key, cur.text, str(cur.layer), str(cur.head)])
    return "quiz_" + stage + "_" + hashlib.sha1(ident.encode()).hexdigest()[:12]


def _reveal(stage: str, key: str) -> None:
    choice = st.session_state.get(key + "_choice")
    if choice is not None:
        st.session_state.setdefault(REVEALED, {})[stage] = (key, choice)


STAGE = "_quiz_stage"  # the stage page of this run (the entry script sets it), whose question the page draws


def quiz_here() -> None:
    """The stage page's question, drawn where the page calls this (under its title, before its numbers)."""
    stage = st.session_state.get(STAGE)
    if stage is not None:
        from explainer.state import current

        quiz(stage, current())


def quiz(stage: str, cur: Current) -> None:
    """The page's question on the current example (nothing for a page without one): choose, then Reveal."""
    q = questions.question_for(stage, cur.run, cur.model, cur.layer, cur.head, code=fmt.code, pct=fmt.percent)
    if q is None:
        return
    key = question_key(stage, cur)
    revealed = st.session_state.setdefault(REVEALED, {})
    if stage in revealed and revealed[stage][0] != key:  # another example, model, layer or head: start over
        del revealed[stage]
    done = revealed.get(stage)
    with st.container(border=True, key=f"quiz_box_{stage}"):
        st.markdown(f"**Predict, then reveal.** {q.prompt}")
        choice = st.radio("Your prediction", range(len(q.options)), format_func=lambda i: q.options[i],
                          index=done[1] if done else None, key=key + "_choice", horizontal=True,
                          disabled=done is not None, label_visibility="collapsed")  # fmt: skip
        if done is None:
            st.button("Reveal", key=key + "_reveal", on_click=_reveal, args=(stage, key), disabled=choice is None,
                      help="Choose an answer first." if choice is None else None)  # fmt: skip
            return
        right, said = questions.verdict(q, done[1])
        (st.success if right else st.error)(said, icon=":material/check:" if right else ":material/close:")
        st.markdown(q.explanation)


def prev_next(course: list, page) -> None:
    """Links to the previous and next pages of `course` (st.Page objects in order) around `page`."""
    i = next(j for j, p in enumerate(course) if p.url_path == page.url_path)
    before, after = course[i - 1] if i > 0 else None, course[i + 1] if i + 1 < len(course) else None
    st.divider()
    with st.container(horizontal=True, horizontal_alignment="distribute", key="path_prev_next"):
        if before is not None:
            st.page_link(before, label=f"← Previous: {before.title}")
        if after is not None:
            st.page_link(after, label=f"Next: {after.title} →")


def glossary_popover(cur: Current) -> None:
    """The glossary, in a popover at the bottom of the sidebar: every term the pages use, true of this code."""
    cfg = cur.model.transformer.cfg
    with st.sidebar, st.popover("Glossary", icon=":material/menu_book:", width="stretch", key="path_glossary"):
        for term, text in glossary.entries(cfg, cur.model_name).items():
            st.markdown(f"**{term}**: {text}")
