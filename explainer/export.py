"""Export this run: a short Python script that reproduces what the page shows with `model_core`, and the run's
cached arrays as a `.npz` (no pickle). The script and the arrays come from `model_core.analysis.export`."""

from __future__ import annotations

import streamlit as st

from explainer import format as fmt
from explainer.state import Current
from model_core.analysis.export import experiment_snippet, run_npz
from model_core.store import to_bytes
from model_core.training.job import file_name


def page_arrays(page: str, cur: Current) -> list[str]:
    """The hook names the page draws (its script saves those; empty: every array of the run)."""
    a, b = f"blocks.{cur.layer}.attn.", f"blocks.{cur.layer}."
    return {
        "tokens": ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"],
        "attention": [a + h for h in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z",
                                      "hook_result")] + ["hook_logits"],  # fmt: skip
        "residual": [b + h for h in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre",
                                     "mlp.hook_post", "hook_mlp_out", "hook_resid_post")],  # fmt: skip
        "output": ["hook_logits"],
    }.get(page, [])


def heads_off(page: str, cur: Current) -> list[tuple[int, int]]:
    """The heads the Attention page has switched off (other pages draw every head on)."""
    if page != "attention":
        return []
    cfg = cur.model.transformer.cfg
    ss = st.session_state
    return [(lay, h) for lay in range(cfg.n_layers) for h in range(cfg.n_heads)
            if not ss.get(f"attn_on_{lay}_{h}", True)]  # fmt: skip


def export_popover(page: str, cur: Current) -> None:
    """The sidebar's "Export this run": the script (with a copy button), and downloads of it and of the arrays."""
    session = cur.model_key.startswith("session:")
    ref = file_name(cur.model_name) if session else cur.model_name
    off = heads_off(page, cur)
    script = experiment_snippet(cur.model, ref, cur.text, off, page_arrays(page, cur))
    stem = file_name(f"{cur.model_name} {cur.text}", suffix="")
    with st.popover("Export this run", icon=":material/code:", width="stretch", key="export_run"):
        st.markdown("This script reproduces the page's numbers outside the app"
                    + (f", with {', '.join(f'L{a}H{b}' for a, b in off)} switched off" if off else "")
                    + ": it loads the model, runs the example and saves the arrays the page draws.")  # fmt: skip
        st.code(script, language="python")
        st.download_button("Script (.py)", script, file_name=f"{stem}.py", mime="text/x-python",
                           on_click="ignore", icon=":material/download:", key="export_script")  # fmt: skip
        st.download_button("Every array of this run (.npz)", lambda: run_npz(cur.run.cache),
                           file_name=f"{stem}.npz", mime="application/octet-stream", on_click="ignore",
                           icon=":material/download:", key="export_npz",
                           help="The clean run's cached activations by hook name; np.load(path) reads them "
                                "without pickle.")  # fmt: skip
        if session:
            st.download_button(f"The model ({ref})", lambda: to_bytes(cur.model), file_name=ref,
                               mime="application/octet-stream", on_click="ignore", icon=":material/download:",
                               key="export_model")  # fmt: skip
            st.caption(f"**{fmt.literal(cur.model_name)}** exists only in this session: keep its checkpoint next "
                       "to the script.")  # fmt: skip
