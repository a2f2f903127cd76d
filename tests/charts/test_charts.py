"""Chart builders: each spec is checked against the arrays it was built from.

Every test builds a chart from small synthetic inputs, serialises it with ``to_dict()``
and reads back the mark, encodings, colour scale and inline data (``spec["datasets"]``),
comparing the data cell by cell with the input arrays.
"""

from __future__ import annotations

import ast
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pytest

from explainer import charts
from explainer.charts.common import position_labels

TOKENS = ["Max", "(", "5", ",", "3", ",", "9", ")", "="]  # "," repeats on purpose
T = len(TOKENS)
LABELS = [f"{i}: {t}" for i, t in enumerate(TOKENS)]  # independent of position_labels
VOCAB = [str(d) for d in range(10)] + ["Max", "Min", "(", ")", ",", "="]
CAUSAL = np.triu(np.ones((T, T), dtype=bool), k=1)  # True where a key is in the future


# --- helpers ------------------------------------------------------------------------


def spec_of(chart) -> dict:
    # Streamlit ships data as Arrow and never hits Altair's 5,000-row guard; tests do.
    with alt.data_transformers.disable_max_rows():
        return chart.to_dict()


def data_of(spec: dict, *fields: str) -> pd.DataFrame:
    """The inline dataset that has all ``fields`` (charts may carry a helper dataset too)."""
    matches = [pd.DataFrame(rows) for rows in spec["datasets"].values() if rows and set(fields) <= set(rows[0])]
    assert len(matches) == 1, f"expected one dataset with {fields}, got {len(matches)}"
    return matches[0]


def units(spec: dict) -> list[dict]:
    """Every single-view spec inside layers / concats, in order."""
    for key in ("layer", "concat", "hconcat", "vconcat"):
        if key in spec:
            return [u for sub in spec[key] for u in units(sub)]
    return [spec]


def mark(unit: dict) -> str:
    return unit["mark"]["type"] if isinstance(unit["mark"], dict) else unit["mark"]


def unit_with_mark(spec: dict, mark_type: str) -> dict:
    found = [u for u in units(spec) if mark(u) == mark_type]
    assert found, f"no {mark_type} mark in {[mark(u) for u in units(spec)]}"
    return found[0]


def tooltip_fields(enc: dict) -> dict[str, dict]:
    return {t["field"]: t for t in enc["tooltip"]}


def condition_tests(channel: dict) -> list:
    """The test (expression or param) of each condition on an encoding channel."""
    conds = channel["condition"]
    conds = conds if isinstance(conds, list) else [conds]
    return [c.get("test", c.get("param")) for c in conds]


def assert_signed_scale(scale: dict, values) -> None:
    m = float(np.max(np.abs(values)))
    assert scale["domainMid"] == 0
    assert scale["domain"] == pytest.approx([-m, m])
    assert scale["scheme"] == "redblue" and scale["reverse"] is True


def assert_probability_scale(scale: dict) -> None:
    assert scale["domain"] == [0.0, 1.0]
    assert scale["scheme"] == "blues"


def row_stochastic(rng, shape, masked=None) -> np.ndarray:
    """Random attention-like weights: non-negative, each row sums to 1, 0 where masked."""
    w = rng.uniform(0.1, 1.0, size=shape)
    if masked is not None:
        w = np.where(masked, 0.0, w)
    return w / w.sum(axis=-1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --- conventions ---------------------------------------------------------------------


def test_position_labels_keep_repeated_tokens_distinct():
    labels = position_labels(TOKENS)
    assert labels == LABELS
    assert len(set(labels)) == T  # the two "," stay two rows


def test_chart_modules_import_no_streamlit():
    paths = sorted(Path(charts.__file__).parent.glob("*.py"))
    assert len(paths) >= 8, paths  # the package's __init__ and one module per kind of chart
    for path in paths:
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert "streamlit" not in imported, path.name


# --- 1. matrix_heatmap ---------------------------------------------------------------


def test_matrix_heatmap_signed_cells_match_input(rng):
    values = rng.normal(size=(T, 6))
    spec = spec_of(charts.matrix_heatmap(values, LABELS, title="emb", x_title="dim", y_title="pos"))
    assert mark(spec) == "rect"
    enc = spec["encoding"]
    assert (enc["y"]["field"], enc["y"]["type"], enc["y"]["sort"]) == ("row_label", "nominal", LABELS)
    assert (enc["x"]["field"], enc["x"]["type"]) == ("col_label", "nominal")
    assert enc["x"]["sort"] == [str(c) for c in range(6)]
    assert enc["x"]["title"] == "dim" and enc["y"]["title"] == "pos"
    assert enc["color"]["field"] == "value" and enc["color"]["type"] == "quantitative"
    assert_signed_scale(enc["color"]["scale"], values)
    assert tooltip_fields(enc)["value"]["format"] == ".4f"
    assert spec["width"] == "container" and spec["title"] == "emb"

    df = data_of(spec, "row", "col", "value")
    assert len(df) == values.size
    np.testing.assert_array_equal(df["value"], values[df["row"], df["col"]])
    assert (df["row_label"] == np.array(LABELS)[df["row"]]).all()
    cell = df[(df["row"] == 2) & (df["col"] == 1)]
    assert cell["value"].item() == values[2, 1]


def test_matrix_heatmap_wide_uses_numeric_axis(rng):
    values = rng.normal(size=(4, 256))
    spec = spec_of(charts.matrix_heatmap(values, ["a", "b", "c", "d"]))
    enc = spec["encoding"]
    # No 256 nominal labels: a quantitative axis with each cell spanning [c-0.5, c+0.5].
    assert enc["x"]["type"] == "quantitative" and "sort" not in enc["x"]
    assert enc["x"]["scale"]["domain"] == [-0.5, 255.5]
    assert enc["x2"]["field"] == "col_end"
    calcs = {t["as"]: t["calculate"] for t in spec["transform"]}
    assert calcs == {"col_start": "datum.col - 0.5", "col_end": "datum.col + 0.5"}
    df = data_of(spec, "row", "col", "value")
    np.testing.assert_array_equal(df["value"], values[df["row"], df["col"]])
    assert "col" in tooltip_fields(enc)


def test_matrix_heatmap_index_columns_lie_flat_and_thin_out_where_named_ones_keep_every_label(rng):
    """A d_head axis (columns 0..15, no names) draws its labels flat and every other one where the chart is too
    narrow (16 slanted two-digit labels ran into each other at 390 px); named columns keep every label."""
    values = rng.normal(size=(3, 16))
    axis = spec_of(charts.matrix_heatmap(values, ["a", "b", "c"]))["encoding"]["x"]["axis"]
    assert axis["labelAngle"] == 0 and axis["labelOverlap"] == "parity"
    named = spec_of(charts.matrix_heatmap(values, ["a", "b", "c"], [f"n{i}" for i in range(16)]))
    assert named["encoding"]["x"]["axis"] == {"labelAngle": -45, "labelOverlap": False}


@pytest.mark.parametrize("kind", ["probability", "magnitude"])
def test_matrix_heatmap_kinds(rng, kind):
    values = rng.uniform(0, 0.8, size=(3, 5))
    spec = spec_of(charts.matrix_heatmap(values, ["x", "y", "z"], kind=kind))
    scale = spec["encoding"]["color"]["scale"]
    if kind == "probability":
        assert_probability_scale(scale)
    else:
        assert scale["domain"] == pytest.approx([0.0, values.max()])
        assert "domainMid" not in scale


def test_matrix_heatmap_rejects_repeated_row_labels(rng):
    with pytest.raises(ValueError, match="unique"):
        charts.matrix_heatmap(rng.normal(size=(T, 3)), TOKENS)


# --- 2. attention_heatmap -------------------------------------------------------------


def test_attention_heatmap_data_scale_and_labels(rng):
    pattern = row_stochastic(rng, (T, T), CAUSAL)
    spec = spec_of(charts.attention_heatmap(pattern, TOKENS, title="L0 H0", masked=CAUSAL))
    assert mark(spec) == "rect"
    enc = spec["encoding"]
    assert enc["y"]["field"] == "query_label" and enc["y"]["sort"] == LABELS
    assert enc["x"]["field"] == "key_label" and enc["x"]["sort"] == LABELS
    assert enc["color"]["field"] == "weight"
    assert_probability_scale(enc["color"]["scale"])
    # Masked cells are painted grey by a condition ahead of the weight scale.
    assert condition_tests(enc["color"]) == ["datum.masked"]
    assert enc["color"]["condition"]["value"].startswith("#")
    tips = tooltip_fields(enc)
    assert {"query_token", "key_token", "weight", "masked"} <= set(tips)
    assert tips["weight"]["format"] == ".4f"

    df = data_of(spec, "query_pos", "key_pos", "weight")
    assert len(df) == T * T
    np.testing.assert_array_equal(df["weight"], pattern[df["query_pos"], df["key_pos"]])
    assert df.loc[(df.query_pos == 2) & (df.key_pos == 1), "weight"].item() == pattern[2, 1]
    np.testing.assert_array_equal(df["masked"], CAUSAL[df["query_pos"], df["key_pos"]])
    assert df["query_label"].nunique() == T  # both "," rows survive
    assert (df["key_token"] == np.array(TOKENS)[df["key_pos"]]).all()


def test_attention_heatmap_click_selection_and_selected_row(rng):
    pattern = row_stochastic(rng, (T, T))
    spec = spec_of(charts.attention_heatmap(pattern, TOKENS, selected_query=3))
    (param,) = spec["params"]
    assert param["name"] == "query"
    assert param["select"] == {"type": "point", "fields": ["query_pos"], "on": "click"}
    stroke = spec["encoding"]["stroke"]
    assert condition_tests(stroke) == ["datum.query_pos == 3"]
    assert stroke["value"] is None
    assert "masked" not in data_of(spec, "weight").columns

    spec = spec_of(charts.attention_heatmap(pattern, TOKENS, selection_name="q_sel"))
    assert spec["params"][0]["name"] == "q_sel"
    # Without a page-held selection the outline follows the click itself.
    assert spec["encoding"]["stroke"]["condition"][0] == {
        "param": "q_sel",
        "value": "black",
        "empty": False,
    }


# --- 3. attention_scores_heatmap --------------------------------------------------------


@pytest.mark.parametrize("fill", [-1e9, -np.inf])
def test_attention_scores_masked_cells_are_not_numbers(rng, fill):
    raw = rng.normal(scale=2.0, size=(T, T))
    scores = np.where(CAUSAL, fill, raw)
    spec = spec_of(charts.attention_scores_heatmap(scores, TOKENS, title="scores"))
    enc = spec["encoding"]
    assert enc["color"]["field"] == "score"
    # The domain comes from the visible scores only, not from the -1e9 fill.
    assert_signed_scale(enc["color"]["scale"], raw[~CAUSAL])
    tips = tooltip_fields(enc)
    assert "score" not in tips and tips["score_text"]["title"] == "score"

    df = data_of(spec, "query_pos", "key_pos", "score", "score_text")
    hidden = df["masked"].to_numpy(dtype=bool)
    np.testing.assert_array_equal(hidden, CAUSAL[df["query_pos"], df["key_pos"]])
    assert df.loc[hidden, "score"].isna().all()
    assert (df.loc[hidden, "score_text"] == "masked").all()
    shown = df[~hidden]
    np.testing.assert_array_equal(shown["score"], raw[shown["query_pos"], shown["key_pos"]])
    expected_text = [f"{raw[q, k]:.4f}" for q, k in zip(shown["query_pos"], shown["key_pos"], strict=True)]
    assert shown["score_text"].tolist() == expected_text


def test_attention_scores_explicit_mask(rng):
    scores = rng.normal(size=(T, T))  # finite everywhere: only the mask hides cells
    spec = spec_of(charts.attention_scores_heatmap(scores, TOKENS, masked=CAUSAL))
    df = data_of(spec, "score")
    np.testing.assert_array_equal(df["masked"], CAUSAL[df["query_pos"], df["key_pos"]])
    assert df.loc[df["masked"], "score"].isna().all()
    assert_signed_scale(spec["encoding"]["color"]["scale"], scores[~CAUSAL])


# --- 4. attention_bars ------------------------------------------------------------------


def test_attention_bars(rng):
    weights = row_stochastic(rng, (T,))
    spec = spec_of(charts.attention_bars(weights, TOKENS, query_label=LABELS[6]))
    bar, text = unit_with_mark(spec, "bar"), unit_with_mark(spec, "text")
    assert bar["encoding"]["x"]["field"] == "weight"
    assert bar["encoding"]["x"]["scale"]["domain"] == [0.0, 1.0]
    assert bar["encoding"]["y"]["sort"] == LABELS
    assert_probability_scale(bar["encoding"]["color"]["scale"])
    assert text["encoding"]["text"]["field"] == "weight"
    assert tooltip_fields(bar["encoding"])["weight"]["format"] == ".4f"
    assert LABELS[6] in spec["title"]
    df = data_of(spec, "key_pos", "weight")
    np.testing.assert_array_equal(df["weight"], weights[df["key_pos"]])
    assert df["key_label"].tolist() == LABELS


# --- 6. sinusoid_lines -----------------------------------------------------------------------


def test_sinusoid_lines(rng):
    pos_enc = rng.uniform(-1, 1, size=(12, 16))
    dims = [4, 0, 9]
    spec = spec_of(charts.sinusoid_lines(pos_enc, dims))
    assert mark(spec) == "line"
    enc = spec["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("position", "quantitative")
    assert (enc["y"]["field"], enc["y"]["type"]) == ("value", "quantitative")
    assert enc["color"]["sort"] == ["dim 4", "dim 0", "dim 9"]
    assert tooltip_fields(enc)["value"]["format"] == ".4f"
    df = data_of(spec, "position", "dim", "value")
    assert len(df) == 12 * len(dims)
    np.testing.assert_array_equal(df["value"], pos_enc[df["position"], df["dim"]])


# --- 7. embedding_scatter -----------------------------------------------------------------------


def test_embedding_scatter(rng):
    points = rng.normal(size=(len(VOCAB), 2))
    groups = ["digit"] * 10 + ["operation"] * 2 + ["symbol"] * 4
    spec = spec_of(charts.embedding_scatter(points, VOCAB, groups=groups, highlight=["9", "Max"]))
    dots = unit_with_mark(spec, "circle")
    assert dots["encoding"]["color"]["field"] == "group"
    assert dots["encoding"]["color"]["sort"] == ["digit", "operation", "symbol"]
    assert condition_tests(dots["encoding"]["size"]) == ["datum.highlighted"]
    texts = [u for u in units(spec) if mark(u) == "text"]
    bold = [u for u in texts if u["mark"].get("fontWeight") == "bold"]
    assert len(bold) == 1 and bold[0]["transform"] == [{"filter": "datum.highlighted"}]
    assert all(u["encoding"]["text"]["field"] == "label" for u in texts)
    assert tooltip_fields(dots["encoding"])["x"]["format"] == ".4f"
    df = data_of(spec, "x", "y", "label")
    np.testing.assert_array_equal(df[["x", "y"]].to_numpy(), points)
    assert df["label"].tolist() == VOCAB and df["group"].tolist() == groups
    assert df.loc[df["highlighted"], "label"].tolist() == ["9", "Max"]


# --- 8. probability_bars -----------------------------------------------------------------------


def assert_answer_label(label: dict, field: str) -> None:
    """The answer's token printed at its bar's end: above when the value is >= 0, below when it is < 0."""
    up, down = label["layer"]
    for part, sign, dy in ((up, ">= 0", -9), (down, "< 0", 9)):
        assert mark(part) == "text" and part["mark"]["dy"] == dy
        assert part["encoding"]["text"]["field"] == "token" and part["encoding"]["y"]["field"] == field
        [flt] = part["transform"]
        assert flt["filter"] == f"datum.highlighted && datum.{field} {sign}"


def test_probability_bars_vocab_order_and_highlight(rng):
    probs = rng.dirichlet(np.ones(len(VOCAB)))
    spec = spec_of(charts.probability_bars(probs, VOCAB, highlight="9", title="p"))
    bars, label = spec["layer"]
    assert mark(bars) == "bar"
    assert_answer_label(label, "probability")
    enc = bars["encoding"]
    assert enc["x"]["sort"] == VOCAB
    assert enc["y"]["field"] == "probability" and enc["y"]["scale"]["domain"] == [0.0, 1.0]
    colour = enc["color"]["scale"]
    assert colour["domain"][0] == "true answer" and colour["range"][0] != colour["range"][1]
    assert tooltip_fields(enc)["probability"]["format"] == ".4f"
    df = data_of(spec, "token", "probability")
    np.testing.assert_array_equal(df["probability"], probs)
    assert df.loc[df["role"] == "true answer", "token"].tolist() == ["9"]


def test_probability_bars_top_k_keeps_largest(rng):
    probs = rng.dirichlet(np.ones(len(VOCAB)))
    k = 4
    spec = spec_of(charts.probability_bars(probs, VOCAB, highlight="9", top_k=k))
    df = data_of(spec, "token", "probability")
    expected = np.argsort(-probs)[:k]
    assert df["token"].tolist() == [VOCAB[i] for i in expected]
    np.testing.assert_array_equal(df["probability"], probs[expected])
    assert spec["layer"][0]["encoding"]["x"]["sort"] == [VOCAB[i] for i in expected]


# --- 9. logit_bars -------------------------------------------------------------------------------


def test_logit_bars(rng):
    logits = rng.normal(scale=3.0, size=len(VOCAB))
    spec = spec_of(charts.logit_bars(logits, VOCAB, highlight="9"))
    bars, label = spec["layer"]
    assert mark(bars) == "bar"
    assert_answer_label(label, "logit")
    enc = bars["encoding"]
    assert enc["y"]["field"] == "logit" and enc["x"]["sort"] == VOCAB
    assert_signed_scale(enc["color"]["scale"], logits)
    assert condition_tests(enc["stroke"]) == ["datum.highlighted"]
    assert tooltip_fields(enc)["logit"]["format"] == ".4f"
    df = data_of(spec, "token", "logit")
    np.testing.assert_array_equal(df["logit"], logits)
    assert df.loc[df["highlighted"], "token"].tolist() == ["9"]


# --- 10. stage_norms -----------------------------------------------------------------------------


STAGES = ["embed", "B0 attn", "B0 FFN", "B1 attn", "final"]  # not alphabetical


def test_stage_norms(rng):
    norms = rng.uniform(0.5, 4.0, size=(len(STAGES), T))
    df_in = pd.DataFrame(
        [(s, LABELS[p], norms[i, p]) for i, s in enumerate(STAGES) for p in range(T)],
        columns=["stage", "position_label", "norm"],
    )
    spec = spec_of(charts.stage_norms(df_in))
    assert mark(spec) == "rect"
    enc = spec["encoding"]
    assert enc["x"]["field"] == "stage" and enc["x"]["sort"] == STAGES
    assert enc["y"]["field"] == "position_label" and enc["y"]["sort"] == LABELS
    assert enc["color"]["scale"]["domain"] == pytest.approx([0.0, norms.max()])
    assert tooltip_fields(enc)["norm"]["format"] == ".4f"
    df = data_of(spec, "stage", "position_label", "norm")
    rows = df["stage"].map(STAGES.index).to_numpy()
    cols = df["position_label"].map(LABELS.index).to_numpy()
    np.testing.assert_array_equal(df["norm"], norms[rows, cols])


# --- 11. sublayer_contributions ---------------------------------------------------------------------


def test_sublayer_contributions(rng):
    sublayers = ["attention", "FFN"]
    norms = rng.uniform(0, 3, size=(2, 2, T))  # [block, sublayer, pos]
    df_in = pd.DataFrame(
        [(b, s, LABELS[p], norms[b, j, p]) for b in range(2) for j, s in enumerate(sublayers) for p in range(T)],
        columns=["block", "sublayer", "position_label", "norm"],
    )
    spec = spec_of(charts.sublayer_contributions(df_in))
    assert mark(spec) == "bar"
    enc = spec["encoding"]
    assert enc["x"]["sort"] == LABELS
    assert enc["xOffset"]["sort"] == ["B0 attention", "B0 FFN", "B1 attention", "B1 FFN"]
    assert enc["y"]["field"] == "norm" and enc["y"]["scale"]["zero"] is True
    assert tooltip_fields(enc)["norm"]["format"] == ".4f"
    df = data_of(spec, "block", "sublayer", "norm")
    j = df["sublayer"].map(sublayers.index).to_numpy()
    p = df["position_label"].map(LABELS.index).to_numpy()
    np.testing.assert_array_equal(df["norm"], norms[df["block"], j, p])


# --- 12. neuron_histogram -----------------------------------------------------------------------------


def test_neuron_histogram(rng):
    values = rng.normal(size=(T, 256))  # 2,304 activations, flattened by the builder
    spec = spec_of(charts.neuron_histogram(values, bins=30))
    bar = unit_with_mark(spec, "bar")
    assert bar["encoding"]["x"]["field"] == "activation"
    assert bar["encoding"]["x"]["bin"] == {"maxbins": 30}
    assert bar["encoding"]["y"]["aggregate"] == "count"
    assert "tooltip" in bar["encoding"]
    rule = unit_with_mark(spec, "rule")
    assert rule["encoding"]["x"]["field"] == "zero"
    assert data_of(spec, "zero")["zero"].tolist() == [0.0]
    np.testing.assert_array_equal(data_of(spec, "activation")["activation"], values.ravel())


# --- 13. logit_lens ------------------------------------------------------------------------------------


def test_logit_lens(rng):
    cands = ["9", "5", "3"]
    probs = rng.uniform(size=(len(STAGES), len(cands)))
    df_in = pd.DataFrame(
        [(s, c, probs[i, j]) for i, s in enumerate(STAGES) for j, c in enumerate(cands)],
        columns=["stage", "token", "probability"],
    )
    spec = spec_of(charts.logit_lens_lines(df_in, title="lens"))
    rect = unit_with_mark(spec, "rect")
    assert rect["encoding"]["y"]["sort"] == STAGES
    assert rect["encoding"]["x"]["sort"] == cands
    assert_probability_scale(rect["encoding"]["color"]["scale"])
    assert tooltip_fields(rect["encoding"])["probability"]["format"] == ".4f"
    assert unit_with_mark(spec, "text")["encoding"]["text"]["field"] == "probability"
    df = data_of(spec, "stage", "token", "probability")
    i = df["stage"].map(STAGES.index).to_numpy()
    j = df["token"].map(cands.index).to_numpy()
    np.testing.assert_array_equal(df["probability"], probs[i, j])


# --- 14. norms_by_layer_bars -------------------------------------------------------------------------------


def test_layer_norm_bars(rng):
    names = ["unembed", "B1.ffn.W1", "B0.attn.W_Q", "embed"]  # display order, not sorted
    df_in = pd.DataFrame(
        [(n, v, k) for n in names for k, v in zip(["gradient", "parameter"], rng.uniform(1e-5, 2, 2), strict=True)],
        columns=["name", "norm", "kind"],
    )
    spec = spec_of(charts.norms_by_layer_bars(df_in))
    assert mark(spec) == "bar"
    enc = spec["encoding"]
    assert enc["y"]["field"] == "name" and enc["y"]["sort"] == names
    assert enc["x"]["field"] == "norm" and enc["x"]["scale"]["zero"] is True
    assert tooltip_fields(enc)["norm"]["format"] == ".3e"
    df = data_of(spec, "name", "norm", "kind")
    pd.testing.assert_frame_equal(df, df_in)
    log_spec = spec_of(charts.norms_by_layer_bars(df_in, log_scale=True))
    assert log_spec["encoding"]["x"]["scale"]["type"] == "log"


# --- 15. training_curves ---------------------------------------------------------------------------------


def _training_frame() -> pd.DataFrame:
    steps = np.arange(0, 100, 10)
    parts = []
    for metric, fn in [("loss", lambda s: np.exp(-s / 50)), ("accuracy", lambda s: s / 100)]:
        for k, split in enumerate(["train", "validation"]):
            parts.append(pd.DataFrame({"step": steps, "value": fn(steps) + 0.01 * k, "metric": metric, "split": split}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("log_loss", [True, False])
def test_training_curves(log_loss):
    df_in = _training_frame()
    spec = spec_of(charts.training_curves(df_in, log_loss=log_loss))
    loss, acc = spec["vconcat"]
    # Streamlit would give a vconcat of layers "pad" (each panel as wide as the container, plus its axes)
    assert spec["autosize"] == {"type": "fit-x", "contains": "padding"}
    for panel, metric in ((loss, "loss"), (acc, "accuracy")):
        line, points = panel["layer"]
        assert mark(line) == "line" and mark(points) == "point"
        # Every split is a line; only the sparse ones (not the per-step training split) get points and tooltips.
        assert line["transform"] == [{"filter": f"(datum.metric === '{metric}')"}]
        assert points["transform"] == line["transform"] + [{"filter": "(datum.split !== 'train')"}]
        assert "tooltip" not in line["encoding"]
        assert line["encoding"]["color"]["field"] == points["encoding"]["color"]["field"] == "split"
        assert line["encoding"]["color"]["scale"]["domain"] == ["train", "validation"]
    assert acc["layer"][0]["encoding"]["y"]["scale"]["domain"] == [0.0, 1.0]
    assert (loss["layer"][0]["encoding"]["y"]["scale"].get("type") == "log") is log_loss
    assert tooltip_fields(loss["layer"][1]["encoding"])["value"]["format"] == ".4f"
    df = data_of(spec, "step", "value", "metric", "split")
    pd.testing.assert_frame_equal(df, df_in)


def test_training_curves_legends_name_only_each_metrics_splits():
    """A panel's legend lists only the splits its metric has (a metric scored on training batches only must not
    list validation)."""
    df = _training_frame()
    df = df[(df.metric == "accuracy") | (df.split == "train")]
    spec = spec_of(charts.training_curves(df, splits={"loss": ["train"], "accuracy": ["train", "validation"]}))
    loss, acc = spec["vconcat"]
    assert loss["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["train"]
    assert acc["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["train", "validation"]
    assert spec["resolve"]["scale"]["color"] == "independent"  # one legend per panel


def _without_data(spec):
    """The spec with every dataset and reference to one taken out, at any depth."""
    if isinstance(spec, dict):
        return {k: _without_data(v) for k, v in spec.items() if k not in ("data", "datasets")}
    return [_without_data(v) for v in spec] if isinstance(spec, list) else spec


def test_categorical_columns_fix_the_spec_before_any_data():
    """The Train page draws its live charts before training (empty) and swaps the data in as it comes."""
    full = _training_frame()
    cats = {"metric": pd.CategoricalDtype(["loss", "accuracy"]), "split": pd.CategoricalDtype(["train", "validation"])}
    specs = [spec_of(charts.training_curves(df)) for df in (full, full.astype(cats), full.iloc[:0].astype(cats))]
    assert _without_data(specs[0]) == _without_data(specs[1]) == _without_data(specs[2])
    # Categories keep their declared order, seen or not; plain columns keep their order of appearance.
    ops = pd.CategoricalDtype(["Min", "Max", "Sum"])
    empty = pd.DataFrame({"operation": pd.Series([], dtype=ops), "accuracy": pd.Series([], dtype=float)})
    some = pd.DataFrame({"operation": pd.Series(["Sum", "Min"], dtype=ops), "accuracy": [0.5, 1.0]})
    for df in (empty, some):
        bars = unit_with_mark(spec_of(charts.op_accuracy_bars(df)), "bar")
        assert bars["encoding"]["x"]["sort"] == bars["encoding"]["x"]["scale"]["domain"] == ["Min", "Max", "Sum"]


# --- 16-18. per-operation accuracy, before/after ------------------------------------------------------------


def test_op_accuracy_bars():
    df_in = pd.DataFrame({"operation": ["Max", "Min", "Sum"], "accuracy": [0.95, 0.8, 0.4]})
    spec = spec_of(charts.op_accuracy_bars(df_in))
    bar = unit_with_mark(spec, "bar")
    assert bar["encoding"]["x"]["sort"] == ["Max", "Min", "Sum"]
    assert bar["encoding"]["y"]["scale"]["domain"] == [0.0, 1.0]
    assert tooltip_fields(bar["encoding"])["accuracy"]["format"] == ".4f"
    assert unit_with_mark(spec, "text")["encoding"]["text"]["field"] == "accuracy"
    pd.testing.assert_frame_equal(data_of(spec, "operation", "accuracy"), df_in)


def test_before_after_bars():
    df_in = pd.DataFrame({"label": ["before", "after"], "value": [1.2345, 1.1]})
    spec = spec_of(charts.before_after_bars(df_in, title="one SGD step"))
    bar = unit_with_mark(spec, "bar")
    assert bar["encoding"]["x"]["sort"] == ["before", "after"]  # given order, not a-z
    assert "color" not in bar["encoding"]  # one colour: a third bar in red would read as "worse"
    assert bar["encoding"]["y"]["field"] == "value"
    assert unit_with_mark(spec, "text")["encoding"]["text"]["format"] == ".4g"
    assert tooltip_fields(bar["encoding"])["value"]["format"] == ".4f"
    pd.testing.assert_frame_equal(data_of(spec, "label", "value"), df_in)
