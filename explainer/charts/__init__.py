"""Pure chart builders for the explainer pages: arrays / DataFrames in, Altair charts out.

No Streamlit and no model maths here: every value drawn is passed in by the caller.
The builders live in topic modules (one module per kind of chart); import them from here:

    from explainer import charts
    vega.draw(charts.attention_heatmap(pattern, tokens))  # explainer.vega: st.altair_chart, safely and faster

Conventions shared by all of them (see ``explainer.charts.common``):
- positions are labelled ``"{i}: {token}"`` and sorted by position, so repeated tokens
  stay distinct;
- probabilities/weights: blues on a fixed [0, 1]; signed values: reversed "redblue" on a
  symmetric [-m, m] with domainMid 0; norms/counts: viridis from 0;
- tooltips give exact values (".4f", norms ".3e").
"""

from explainer.charts.attention import (
    attention_bars,
    attention_heatmap,
    attention_scores_heatmap,
    heads_frame,
)
from explainer.charts.common import ordered_unique, position_labels
from explainer.charts.embedding import embedding_scatter, sinusoid_lines
from explainer.charts.heatmap import matrix_heatmap
from explainer.charts.outputs import logit_bars, logit_lens_lines, probability_bars
from explainer.charts.residual import (
    neuron_histogram,
    stage_norms,
    sublayer_contributions,
)
from explainer.charts.training import (
    before_after_bars,
    metric_curve,
    norms_by_layer_bars,
    op_accuracy_bars,
    training_curves,
)

__all__ = [
    "attention_bars",
    "attention_heatmap",
    "attention_scores_heatmap",
    "before_after_bars",
    "embedding_scatter",
    "heads_frame",
    "norms_by_layer_bars",
    "logit_bars",
    "logit_lens_lines",
    "matrix_heatmap",
    "metric_curve",
    "neuron_histogram",
    "op_accuracy_bars",
    "ordered_unique",
    "position_labels",
    "probability_bars",
    "sinusoid_lines",
    "stage_norms",
    "sublayer_contributions",
    "training_curves",
]
