"""Output & softmax: logits -> probabilities -> loss, and what each stage would have predicted (logit lens)."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, compare, links, path, state, vega
from explainer import format as fmt
from model_core.analysis import output as ao

cur = state.current()
model, run = cur.model, cur.run
net, vocab = model.transformer, model.vocab
answer = run.answer
n_steps = len(answer.step_probs)


def _loss(v: float) -> str:
    """A loss with four significant digits. A float32 log-softmax that rounds to exactly 0 gives a loss of -0.0:
    adding 0.0 makes it 0.0, so it is written "0", not "-0"."""
    return f"{float(v) + 0.0:.4g}"


st.title("Output & softmax")
path.quiz_here()  # predict, then reveal
st.markdown(
    "After the last block, each position's vector is multiplied by the unembedding $W_U$: one score, a **logit**, "
    "per vocabulary token. Softmax turns the logits into probabilities, and training lowers the cross-entropy "
    "loss: minus the log of the probability given to the true next token."
    + (" The final LayerNorm comes first (this model is pre-norm)." if net.cfg.norm == "pre" else "")
)
st.latex(r"z = x_{\text{final}}\,W_U + b_U, \qquad p_i = \frac{e^{z_i}}{\sum_j e^{z_j}}, \qquad "
         r"\mathcal{L} = -\log p_{\text{true}}")

# ---------------------------------------------------------------- which answer position
if model.causal:
    # The labels name the step only, never this example's tokens: a label that changed with the example
    # would come back from the browser as a stale string (see state.keep_valid).
    steps = list(range(n_steps))
    state.keep_valid("out_step", steps)
    links.bind_choice("step", "out_step", steps)
    step = st.selectbox("Answer step", steps, format_func=lambda s: f"answer token {s + 1}", key="out_step",
                        help="A causal model writes one answer token per position.")  # fmt: skip
else:
    step = 0
pos = run.answer_pos + step
true_id = int(run.train_targets[pos]) if pos < len(run.train_targets) and run.train_targets[pos] >= 0 else None
true_tok = vocab.decode([true_id])[0] if true_id is not None else None
logits = run.cache["hook_logits"][0, pos]  # [vocab]
tokens = vocab.to_list()
st.caption(
    f"Reading position {pos} ({fmt.code(run.labels[pos])}) of {fmt.code(' '.join(run.labels))}"  # tokens it wrote
    + (f", where the model wrote {fmt.code(answer.answer_tokens[step])}" if model.causal else "")
    + "; the true next token is "
    + (f"{fmt.code(true_tok)}." if true_tok is not None
       else "— (the model wrote more tokens than the true answer has).")  # fmt: skip
)

# ---------------------------------------------------------------- logits
st.subheader("Logits")
vega.draw(
    charts.logit_bars(logits, tokens, highlight=true_tok, title=alt.TitleParams(
        f"Logits at position {pos}", subtitle=["one score per token" + (", the true answer outlined"
                                                                       if true_tok is not None else ""),
                                               "hook_logits"])),
    width="stretch",
)  # fmt: skip

if compare.on(cur):
    compare.header(cur)
    other = cur.compare_run
    pos_b = other.answer_pos + step
    if pos_b < len(other.tokens):
        st.markdown(f"At the answer step shown, position {pos} of the first run and {pos_b} of the second:")
        compare.probabilities(cur, pos, pos_b, vocab)
    else:
        st.info(f"The second example's answer has no step {step + 1}.", icon=":material/info:")

# ---------------------------------------------------------------- probabilities
st.subheader("Probabilities")
links.bind("temp", "out_temperature", 1.0, low=0.1, high=5.0)
temperature = st.slider("Temperature T", 0.1, 5.0, 1.0, 0.1, key="out_temperature",
                        help="Display only: divides the logits before softmax. The model uses T = 1.")  # fmt: skip
st.latex(r"p_i = \frac{e^{z_i / T}}{\sum_j e^{z_j / T}}")
st.markdown(
    "**T = 1 is what the model uses**; other values are only a way to see the logits' gaps: T < 1 sharpens the "
    "distribution towards the top logit, T > 1 flattens it towards uniform. The ranking never changes."
)
probs_t = ao.softmax_with_temperature(logits, temperature)
probs = ao.softmax_with_temperature(logits, 1.0)
vega.draw(
    charts.probability_bars(probs_t, tokens, highlight=true_tok,
                            title=f"Probabilities at position {pos}, softmax(logits / {temperature:g})"),
    width="stretch",
)  # fmt: skip
top = int(probs.argmax())
st.info(
    f"What to notice: at T = 1 the top token {fmt.code(tokens[top])} gets {fmt.with_log(probs[top])}"
    + (f"; the true {fmt.code(true_tok)} gets {fmt.with_log(probs[true_id])}" if true_id is not None and true_id != top
       else "")
    + (f". At T = {temperature:g} the top token gets {fmt.percent(probs_t[top])}." if temperature != 1.0 else ".")
    + f" Its logit is {fmt.logit(logits[top])}; the runner-up's {fmt.logit(logits[probs.argsort()[-2]])}: a gap of g "
    "logits becomes a probability ratio of eᵍ (e^(g/T) at temperature T).",
    icon=":material/lightbulb:",
)  # fmt: skip

# ---------------------------------------------------------------- loss
st.subheader("Loss")
losses = ao.token_losses(run.grad_cache["hook_logits"][0], run.train_targets)  # [T'] NaN off the answer
answer_rows = run.train_targets >= 0
c1, c2, c3 = st.columns(3)
c1.metric(f"p(true token) at position {pos}", fmt.percent(probs[true_id]) if true_id is not None else "—",
          help="From the bars above (T = 1).")  # fmt: skip
c2.metric(f"Loss at position {pos}: −log p(true)", _loss(losses[pos]) if true_id is not None else "—",
          help="On the sequence with the true answer (teacher forcing), in float32, as in training.")  # fmt: skip
c3.metric("Training loss on this example", _loss(run.grad_cache.loss),
          help="run.grad_cache.loss: the mean of −log p(true) over the answer positions.")  # fmt: skip
st.markdown(
    "Training feeds the model the **true** answer (teacher forcing) and averages −log p(true) over the positions "
    "that predict an answer token. "
    + (f"Here: mean of ({', '.join(_loss(v) for v in losses[answer_rows])}) over positions "
       f"{', '.join(str(i) for i in answer_rows.nonzero()[0])} = {_loss(run.grad_cache.loss)}, the loss the "
       "backward pass starts from." if model.causal
       else f"A bidirectional model predicts one token, at `=`, so its loss is that one number: "
       f"{_loss(run.grad_cache.loss)}.")
    + (" A loss of 0 is float32 rounding, not certainty: the other tokens' probabilities add up to less than about "
       "6e-8 of the true token's, and 1 plus that rounds to 1 in float32 (−log 1 = 0)."
       if (losses[answer_rows] == 0).any() else "")
)  # fmt: skip
if true_id is not None and not ao.same_context(run.tokens, run.train_tokens, pos, model.causal):
    st.warning(
        f"The bars come from the run that read {fmt.code(' '.join(run.labels))}; the loss from the training "
        f"sequence {fmt.code(' '.join(vocab.decode(run.train_tokens)))}. Position {pos} read different tokens in "
        "the two, so −log of the highlighted bar is not exactly the loss here.",
        icon=":material/info:",
    )

# ---------------------------------------------------------------- logit lens
st.subheader("Logit lens")
st.markdown(
    "What would the model answer if it stopped early? The logit lens decodes the residual stream after each "
    "stage exactly as the output does (final LayerNorm for a pre-norm model, then $W_U$ and softmax). "
    "The last stage is the model's real output."
)
lens = ao.logit_lens(net, run.cache, pos)
stages = [name for name, _ in lens]
lens_probs = np.stack([p for _, p in lens])  # [stage, vocab]
cands = ao.lens_candidates(lens_probs, k=5, include=true_id)
frame = pd.DataFrame(
    [{"stage": s, "token": tokens[c], "probability": float(lens_probs[i, c])} for i, s in enumerate(stages)
     for c in cands]
)  # fmt: skip
reading = ao.read_lens(lens_probs, true_id)
free = ", ".join(stages[s] for s in reading.input_free)
vega.draw(
    charts.logit_lens_lines(frame, title=alt.TitleParams(
        f"Logit lens at position {pos}", subtitle=["each candidate's probability, stage by stage",
                                                   f"{free} reads only the token at position {pos} (see below)"])),
    width="stretch",
)  # fmt: skip
st.caption(ao.embedding_stage_text(run.labels, pos, run.answer_pos, model.causal, code=fmt.code,
                                   lengths_vary=model.task.variable_length, one_digit=model.task.value_digits == 1))
notice = ao.lens_text(reading, stages, lens_probs, true_id, net.cfg.norm, tok=lambda i: fmt.code(tokens[i]),
                      pct=fmt.percent, with_log=fmt.with_log)  # fmt: skip
st.info(f"What to notice: {notice[0].lower()}{notice[1:]}", icon=":material/lightbulb:")
