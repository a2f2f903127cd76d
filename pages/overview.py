"""Overview: the answer, its confidence, and the pipeline with a link to each stage."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, compare, state, vega
from explainer import format as fmt
from model_core.analysis import output as ao
from model_core.interp.input_space import SAMPLE
from model_core.task import task_text

cur = state.current()
model, run = cur.model, cur.run
answer, cfg = run.answer, model.transformer.cfg
expr = answer.expression

st.title("Inside a transformer")
st.caption(
    f"Model **{fmt.literal(cur.model_name)}**: "
    f"{'causal (GPT-style) decoder' if cfg.causal else 'bidirectional encoder'}, "
    f"{cfg.n_layers} blocks × {cfg.n_heads} heads, d_model {cfg.d_model}, "
    f"{model.transformer.n_params:,} parameters. Task: {task_text(model.task)}."
)

wrote = answer.value if answer.value is not None else " ".join(answer.answer_tokens)
# A long example (a list of 10 values, a nested expression) takes a row of its own rather than wrap in a third.
if len(expr.text) > 24:
    st.container(key="overview_example").metric("Example", expr.text)
    c2, c3, _ = st.columns(3)
else:
    c1, c2, c3 = st.columns(3)
    c1.container(key="overview_example").metric("Example", expr.text)
# A right/wrong flag is not a change: no arrow, and the colour says which.
c2.metric("Model's answer", fmt.literal(wrote),  # tokens it wrote: a metric's value is Markdown
          delta="correct" if answer.correct else f"wrong: the answer is {expr.answer}",
          delta_color="green" if answer.correct else "red", delta_arrow="off")  # fmt: skip
confidence = fmt.percent(answer.confidence)
if len(confidence) > 8:  # "≈100% (1 − 2.2e-8)": smaller, so it fits a third of the width (long metrics wrap)
    st.html("<style>.st-key-overview_confidence [data-testid='stMetricValue'] *{font-size:1.6rem !important}"
            "</style>")
c3.container(key="overview_confidence").metric(
    "Confidence",
    confidence,
    help="The probability the model gave its whole answer: the product of each written token's probability.",
)
c3.caption(f"log p = {fmt.log_prob(float(np.log(answer.step_probs.max(axis=-1)).sum()))}")

if compare.on(cur):
    st.subheader(f"Where {cur.text} and {cur.compare_text} part")
    compare.parting_view(cur)

st.subheader("The pipeline")
st.markdown(
    f"The model reads **{len(run.tokens)} tokens** and does the same thing to every one of them, "
    "stage by stage. Click a stage to see its numbers for this example. After the stages, two pages ask why it "
    "answers as it does, one steps through training and one lets you train your own model; Next, at the bottom of "
    "each page, follows this order."
)
stages = [
    ("../pages/tokens.py", "1 · Tokens & embeddings", f"{len(run.tokens)} tokens → {cfg.d_model}-d vectors"),
    ("../pages/attention.py", "2 · Attention", f"{cfg.n_layers} × {cfg.n_heads} heads mix the positions"),
    ("../pages/residual.py", "3 · Residual, LayerNorm & FFN", f"{cfg.d_ff} FFN neurons per block, per position"),
    ("../pages/output.py", "4 · Output & softmax",
     f"{cfg.vocab_size} logits → probabilities at `=`" + (" and at each answer token" if cfg.causal else "")),
    ("../pages/backprop.py", "5 · Backprop", "the gradient of the loss at every stage"),
    ("../pages/mechanism.py", "6 · How it answers",
     f"why it answers {fmt.code(str(wrote))}: each component's share, ablation, patching"),
    ("../pages/heads.py", "7 · Heads across all inputs",
     f"what each of the {cfg.n_layers * cfg.n_heads} heads does over "
     + (f"all {model.task.space_size:,} inputs" if model.task.space_size <= SAMPLE else "a sample of held-out inputs")),
    ("../pages/loop.py", "8 · The training loop", "one real training step, and three optimisers side by side"),
    ("../pages/train.py", "9 · Train", "train your own model and watch its heads form"),
]  # fmt: skip
for row in range(0, len(stages), 3):  # three to a row: more side by side cut the labels short at 1280 px
    for col, (page, label, caption) in zip(st.columns(3), stages[row : row + 3], strict=False):
        with col.container(border=True):
            st.page_link(page, label=label)
            st.caption(caption)

st.subheader("How it answered")
if model.causal:
    st.markdown(
        "A causal model writes its answer **one token at a time**: it reads everything up to `=`, "
        "picks the most likely next token, appends it, and reads again, until it writes `<eos>`."
    )
    rows = []
    for step, probs in enumerate(answer.step_probs):
        top = np.argsort(probs)[::-1][:3]
        read_upto = run.answer_pos + step
        rows.append({
            "step": step + 1,
            "reads": " ".join(model.vocab.decode(answer.tokens[: read_upto + 1])),
            "writes": model.vocab.decode([int(top[0])])[0],
            "probability": fmt.percent(probs[top[0]]),
            "log-prob": float(np.log(probs[top[0]])),
            "runner-up": f"{model.vocab.decode([int(top[1])])[0]} ({fmt.percent(probs[top[1]])})",
        })  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True,
                 column_config={"log-prob": st.column_config.NumberColumn(format=fmt.LOG_PROB_COLUMN)})  # fmt: skip
else:
    st.markdown(
        "A bidirectional model reads the whole input at once; the vector at the `=` position, after the "
        "last block, is turned into one probability per token. The largest is the answer."
    )
probs = answer.step_probs[0]
vega.draw(
    charts.probability_bars(probs, model.vocab.to_list(), highlight=str(expr.answer)[0],
                            title=alt.TitleParams("First answer token",
                                                  subtitle=f"probabilities at position {run.answer_pos}, the = token")),
    width="stretch",
)  # fmt: skip
true_ids = run.train_targets[run.train_targets >= 0]  # the true answer's tokens (a causal model's end with <eos>)
notice = ao.answer_text(
    ao.answer_steps(answer.step_probs, true_ids), fmt.code(" ".join(answer.answer_tokens)), answer.correct,
    f"{expr.answer} ({fmt.code(' '.join(model.vocab.decode(true_ids)))})" if model.causal else fmt.code(expr.answer),
    model.causal,
    tok=lambda i: fmt.code(model.vocab.decode([i])[0]), pct=fmt.percent, with_log=fmt.with_log,
)  # fmt: skip
st.info(
    f"What to notice: {notice[0].lower()}{notice[1:]} Edit the example in the sidebar and watch every page follow.",
    icon=":material/lightbulb:",
)
