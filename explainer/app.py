"""The explainer's entry script: `python -m streamlit run explainer/app.py` from the repo root.

It declares the pages and draws the shared sidebar (model, example, layer, head);
each page in `pages/` reads the current selection from `explainer.state.current()`.
"""

from pathlib import Path

import streamlit as st

from explainer import state

PAGES = Path(__file__).resolve().parent.parent / "pages"

st.set_page_config(page_title="Inside a transformer", page_icon=":material/neurology:", layout="wide")

navigation = st.navigation(
    {
        "Step through the model": [
            st.Page(PAGES / "overview.py", title="Overview", icon=":material/home:", default=True),
            st.Page(PAGES / "tokens.py", title="Tokens & embeddings", icon=":material/text_fields:"),
            st.Page(PAGES / "attention.py", title="Attention", icon=":material/visibility:"),
            st.Page(PAGES / "residual.py", title="Residual, LayerNorm & FFN", icon=":material/stacks:"),
            st.Page(PAGES / "output.py", title="Output & softmax", icon=":material/bar_chart:"),
            st.Page(PAGES / "backprop.py", title="Backprop", icon=":material/undo:"),
        ],
        "Why it answers": [
            st.Page(PAGES / "mechanism.py", title="How it answers", icon=":material/psychology:"),
            st.Page(PAGES / "heads.py", title="Heads across all inputs", icon=":material/grid_view:"),
        ],
        "Your own model": [
            st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
        ],
    }
)
state.sidebar()
navigation.run()
