"""The explainer's entry script: `python -m streamlit run explainer/app.py` from the repo root.

It declares the pages and draws the shared sidebar (model, example, layer, head) and, around each page, the
path through the course (`explainer.path`): the glossary, a stage page's question, Previous / Next. Each page
in `pages/` reads the current selection from `explainer.state.current()`. After the page, the address becomes
the view's link (`explainer.links`).
"""

from pathlib import Path

import streamlit as st

from explainer import export, links, path, state

PAGES = Path(__file__).resolve().parent.parent / "pages"

st.set_page_config(page_title="Inside a transformer", page_icon=":material/neurology:", layout="wide")

overview = st.Page(PAGES / "overview.py", title="Overview", icon=":material/home:", default=True)
STAGES = {  # the stage pages and the question each asks (model_core.analysis.questions.STAGES)
    "tokens": st.Page(PAGES / "tokens.py", title="Tokens & embeddings", icon=":material/text_fields:"),
    "attention": st.Page(PAGES / "attention.py", title="Attention", icon=":material/visibility:"),
    "residual": st.Page(PAGES / "residual.py", title="Residual, LayerNorm & FFN", icon=":material/stacks:"),
    "output": st.Page(PAGES / "output.py", title="Output & softmax", icon=":material/bar_chart:"),
    "backprop": st.Page(PAGES / "backprop.py", title="Backprop", icon=":material/undo:"),
}
why = [
    st.Page(PAGES / "mechanism.py", title="How it answers", icon=":material/psychology:"),
    st.Page(PAGES / "heads.py", title="Heads across all inputs", icon=":material/grid_view:"),
]
loop = st.Page(PAGES / "loop.py", title="The training loop", icon=":material/replay:")
train = st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:")
COURSE = [overview, *STAGES.values(), *why, loop, train]  # the order Previous / Next follow

navigation = st.navigation(
    {"Step through the model": [overview, *STAGES.values()], "Why it answers": why, "Your own model": [loop, train]}
)
# The sidebar's layer and head, on the pages that use them (elsewhere they are kept, not drawn).
SELECTORS = {"attention": ("layer", "head"), "residual": ("layer",), "backprop": ("head",), "heads": ("layer", "head")}
cur = state.sidebar(SELECTORS.get(navigation.url_path, ()))
path.glossary_popover(cur)
share = st.sidebar.empty()  # this view's link and export, filled in once the page has bound its own choices
state.phone_example()  # above the page, on a phone only (the sidebar is folded away there)
# a stage page draws its question under its title (path.quiz_here): predict before its numbers give it away
st.session_state[path.STAGE] = next((name for name, page in STAGES.items() if page.url_path == navigation.url_path),
                                    None)  # fmt: skip
navigation.run()  # the page draws itself
path.prev_next(COURSE, navigation)
links.write()  # the address shows what is on screen
with share.container():
    links.share_popover(cur.model_name if cur.model_key.startswith("session:") else None)
    export.export_popover(navigation.url_path, cur)
