"""The Tokens & embeddings page shows where training started and what it changed (issue 13, items 8 and 9).

On the shipped models: the PCA is offered for W_E minus its initialisation (the default) and for W_E as it is, each
with its own digit-order sentence; the learned position table marks the rows training never reads; the tokenisation
sentence takes its example value from the model's range; chart titles are words with the hook name beneath. The
references are computed here: the initialisation drawn straight from the seed, Spearman's ρ from SciPy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from app_helpers import charts, open_app, set_example, shown_text

from model_core import TaskConfig, TaskModel, Transformer, load_model
from model_core.analysis import embeddings as emb
from model_core.task.vocab import DIGITS

PAGE = "../pages/tokens.py"
CHANGE, AS_IS = "What training changed (W_E − W_E⁰)", "W_E as it is"


# ---------------------------------------------------------------- helpers
def titled(at, prefix: str):
    """(title, subtitle, frames) of the one chart whose title starts with `prefix`."""
    hits = []
    for spec, frames in charts(at):
        title = spec.get("title")
        if isinstance(title, dict) and title.get("text", "").startswith(prefix):
            hits.append((title["text"], title.get("subtitle"), frames))
        elif isinstance(title, str) and title.startswith(prefix):
            hits.append((title, None, frames))
    assert len(hits) == 1, [s.get("title") for s, _ in charts(at)]
    return hits[0]


def frame_with(frames, *cols):
    (hit,) = [f for f in frames if set(cols) <= set(f.columns)]
    return hit


def texts(at, kind: str = "info") -> list[str]:
    return [shown_text(e.value) for e in getattr(at, kind)]


def one(items: list[str], part: str) -> str:
    hits = [t for t in items if part in t]
    assert len(hits) == 1, (part, items)
    return hits[0]


def init_w_e(model) -> np.ndarray:
    """W_E as training drew it: the first N(0, 1) draw of default_rng(seed), in float32 (model_core.params)."""
    cfg = model.transformer.cfg
    return np.random.default_rng(cfg.seed).normal(0.0, 1.0, (cfg.vocab_size, cfg.d_model)).astype(np.float32)


def spearman(x, y) -> float:
    """Spearman's rho of untied data, by its textbook formula 1 - 6 sum(d^2) / (n (n^2 - 1)) (a second
    implementation beside the page's, which correlates ranks)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    n = len(x)
    assert len(set(x)) == n and len(set(np.asarray(y).tolist())) == n, "ties: the formula would not hold"
    return 1 - 6 * float(((rx - ry) ** 2).sum()) / (n * (n * n - 1))


def rho(points: np.ndarray, tokens: list[str]) -> tuple[float, float]:
    rows = [tokens.index(d) for d in DIGITS if d in tokens]
    values = [int(tokens[r]) for r in rows]
    return spearman(values, points[rows, 0]), spearman(values, points[rows, 1])


def add_model(at, model: TaskModel):
    at.session_state["session_models"] = {model.name: (f"session:{model.name}", model)}
    at.run()
    at.selectbox(key="model_name").select(model.name).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="module")
def shipped():
    return {name: load_model(name) for name in ("digits-0-9", "digits-0-99")}


# ---------------------------------------------------------------- digits-0-9
def test_digits_0_9_shows_the_change_since_initialisation_and_the_raw_table(shipped):
    model = shipped["digits-0-9"]
    at = open_app(PAGE)
    tokens = model.vocab.to_list()
    W = model.transformer.params["embed.W_E"].astype(np.float64)
    W0 = init_w_e(model).astype(np.float64)
    # the tokenisation sentence: a 0-9 value is one token (it said "47 → 4 7" before)
    words = one(texts(at, "markdown"), "becomes 9 tokens")
    assert "Each value (0-9 for this model) is a single digit token" in words and "47" not in words
    # where training started, measured on <pad> and <eos> (they never reach the loss)
    start = one(texts(at), "How the start is known")
    untouched = [tokens.index("<pad>"), tokens.index("<eos>")]
    scale = float((W[untouched] * W0[untouched]).sum() / (W0[untouched] ** 2).sum())
    assert "seed 0" in start and f"times {scale:.4f}" in start
    assert f"over its {model.train_config.steps:,} steps" in start
    moved = one(texts(at), "Training moved W_E by")
    assert f"{np.linalg.norm(W - W0) / np.linalg.norm(W0):.1%}" in moved and "mostly shows that random start" in moved
    # the default view: the change, on the rows training reaches
    assert at.radio(key="tokens_pca_view").value == CHANGE
    title, subtitle, frames = titled(at, "What training changed in W_E")
    assert subtitle == "embed.W_E minus its seed-0 initialisation"
    df = frame_with(frames, "x", "y", "label")
    kept = [t for t in tokens if t not in ("<pad>", "<eos>")]
    assert list(df["label"]) == kept
    points = emb.pca_2d((W - W0)[[tokens.index(t) for t in kept]])[0]
    np.testing.assert_allclose(df[["x", "y"]].to_numpy(), points, rtol=1e-9, atol=1e-12)
    r1, r2 = rho(points, kept)
    order = one(texts(at), "of the change is")
    assert f"PC 1 of the change is {r1:+.2f}" in order and f"PC 2 of the change {r2:+.2f}" in order
    best = max(abs(r1), abs(r2))  # the sentence follows the more ordered of the two directions
    assert ("the digits lie roughly in numerical order" in order) == (best >= 0.7)
    assert ("Neither of the top two directions puts the digits in numerical order" in order) == (best < 0.7)
    assert any("Left out: <pad>, <eos>" in c for c in texts(at, "caption"))
    # the raw view, for comparison, says what it shows
    at.radio(key="tokens_pca_view").set_value(AS_IS).run()
    assert not at.exception
    _, subtitle, frames = titled(at, "W_E as it is")
    assert subtitle == "embed.W_E"
    df = frame_with(frames, "x", "y", "label")
    points = emb.pca_2d(model.transformer.params["embed.W_E"])[0]  # the float32 table, as the page has it
    np.testing.assert_allclose(df[["x", "y"]].to_numpy(), points, rtol=1e-9, atol=1e-12)
    r1, r2 = rho(points, tokens)
    s1, s2 = rho(emb.pca_2d(W0)[0], tokens)
    order = one(texts(at), "rank agreement")
    assert f"along PC 1 is {r1:+.2f}, along PC 2 {r2:+.2f}" in order
    assert max(abs(r1), abs(r2)) < 0.7 and "Neither of the top two directions" in order
    assert f"The random initialisation alone, before any training, gives {s1:+.2f} along its PC 1 and {s2:+.2f}" \
        in order  # fmt: skip


def test_chart_titles_are_words_with_the_hook_name_beneath():
    at = open_app(PAGE)
    for words, hook in [("Token embeddings: one row of W_E per token", "hook_embed"),
                        ("Positional encoding added at positions 0-8", "hook_pos_embed"),
                        ("The residual stream entering block 0", "blocks.0.hook_resid_pre")]:  # fmt: skip
        title, subtitle, _ = titled(at, words)
        assert subtitle == hook and "hook" not in title
    for spec, _ in charts(at):
        title = spec.get("title")
        assert "hook_" not in (title.get("text") if isinstance(title, dict) else title or "")


def test_per_token_table_is_the_cosine_and_the_movement(shipped):
    model = shipped["digits-0-9"]
    at = open_app(PAGE)
    (table,) = [d.value for d in at.dataframe if "token" in d.value.columns]
    W, W0 = model.transformer.params["embed.W_E"].astype(np.float64), init_w_e(model).astype(np.float64)
    assert list(table["token"]) == model.vocab.to_list()
    cos = (W * W0).sum(1) / np.linalg.norm(W, axis=1) / np.linalg.norm(W0, axis=1)
    np.testing.assert_allclose(table["cosine with its initial row"], cos, rtol=1e-12)
    np.testing.assert_allclose(table["moved (‖ΔW_E‖ / ‖W_E⁰‖)"],
                               np.linalg.norm(W - W0, axis=1) / np.linalg.norm(W0, axis=1), rtol=1e-9)  # fmt: skip
    assert list(table.loc[~table["gets a gradient in training"], "token"]) == ["<pad>", "<eos>"]


# ---------------------------------------------------------------- digits-0-99
def test_digits_0_99_marks_the_unused_position_rows(shipped):
    model = shipped["digits-0-99"]
    at = open_app(PAGE)
    at.selectbox(key="model_name").select("digits-0-99").run()
    set_example(at, "Max ( 47 82 19 )")
    assert not at.exception
    assert "Each value is written digit by digit (47 → 4 7)" in one(texts(at, "markdown"), "becomes 14 tokens")
    title, subtitle, frames = titled(at, "Learned positions")
    assert title == "Learned positions: 50 rows, 14-49 unused"
    assert subtitle == "pos_embed.W_pos"
    df = frame_with(frames, "row", "col", "value", "row_label")
    labels = df.drop_duplicates("row").sort_values("row")["row_label"].tolist()
    assert labels == [f"pos {p}" for p in range(14)] + [f"pos {p} (unused)" for p in range(14, 50)]
    P = model.transformer.params["pos_embed.W_pos"]
    df = df.sort_values(["row", "col"])
    np.testing.assert_array_equal(df["value"].to_numpy().reshape(P.shape), P)
    # the longest training input: 3 two-digit values and a two-digit answer before <eos>
    longest = model.encode(model.expressions([model.parse("Max ( 47 82 19 )")])).tokens
    assert longest.shape[1] == 14
    positions = one(texts(at), "Training reads positions 0-13 only")
    P0 = np.random.default_rng(0)  # the same draws as init_params: W_E first, then W_pos
    P0.normal(0.0, 1.0, (21, 64))
    P0 = P0.normal(0.0, 0.5, (50, 64)).astype(np.float32).astype(np.float64)
    W, W0 = model.transformer.params["embed.W_E"].astype(np.float64), init_w_e(model).astype(np.float64)
    now, then = np.concatenate([W[:2], P[14:]]), np.concatenate([W0[:2], P0[14:]])  # <pad>, <eos>, unused rows
    scale = float((now * then).sum() / (then * then).sum())
    assert "Rows 14-49 (36 of 50, marked unused) never get a gradient" in positions
    assert f"times {scale:.4f}" in positions and f"over its {model.train_config.steps:,} steps" in positions
    assert "positions 14-49 of W_pos are never read" in one(texts(at), "How the start is known")
    # the change view of this model, and its own digit sentence
    _, _, frames = titled(at, "What training changed in W_E")
    kept = [t for t in model.vocab.to_list() if t not in ("<pad>", "<eos>")]
    points = emb.pca_2d((W - W0)[2:])[0]
    np.testing.assert_allclose(frame_with(frames, "x", "y")[["x", "y"]].to_numpy(), points, rtol=1e-9, atol=1e-12)
    r1, r2 = rho(points, kept)
    order = one(texts(at), "of the change is")
    assert f"PC 1 of the change is {r1:+.2f}" in order
    assert ("Neither of the top two directions" in order) == (max(abs(r1), abs(r2)) < 0.7)


# ---------------------------------------------------------------- models the page cannot trace back
def test_a_model_whose_seed_does_not_give_its_start_shows_w_e_as_it_is(shipped):
    base = shipped["digits-0-9"]
    net = base.transformer
    other = replace(base.with_transformer(Transformer(replace(net.cfg, seed=5), net.params)), name="reseeded")
    at = open_app(PAGE)
    at.radio(key="tokens_pca_view").set_value(AS_IS).run()
    add_model(at, other)
    assert not [r for r in at.radio if not r.key.startswith("quiz_")]  # nothing to compare with (the quiz aside)
    start = one(texts(at), "are not the initialisation that seed 5")
    assert "did not start from that initialisation" in start and "cannot be computed" in start
    assert not [t for t in texts(at) if t.startswith("Training moved")]
    _, subtitle, frames = titled(at, "W_E as it is")
    np.testing.assert_allclose(frame_with(frames, "x", "y")[["x", "y"]].to_numpy(),
                               emb.pca_2d(net.params["embed.W_E"])[0], rtol=1e-9, atol=1e-12)  # fmt: skip
    order = one(texts(at), "rank agreement")
    assert "random initialisation alone" not in order  # its start is unknown


def test_an_untrained_model_says_so():
    model = TaskModel.new(TaskConfig(max_value=99), name="untrained", causal=True, norm="pre", positional="learned",
                          d_model=32, n_heads=2, d_ff=64, seed=3)  # fmt: skip
    at = add_model(open_app(PAGE), model)
    assert not [r for r in at.radio if not r.key.startswith("quiz_")]
    assert "this model has not been trained" in one(texts(at), "is exactly its seed-3 initialisation")
    assert "are their seed-3 initialisation (exactly)" in one(texts(at), "Training reads positions 0-13 only")


def test_switching_positions_off_shows_each_operations_accuracy_and_why():
    from model_core import load_model
    from model_core.interp.positions import accuracy_without_positions

    at = open_app("../pages/tokens.py")
    assert not at.dataframe or all("positions off" not in d.value.columns for d in at.dataframe)
    at.toggle(key="tokens_no_pos").set_value(True).run()
    assert not at.exception
    (table,) = [d.value for d in at.dataframe if "positions off" in d.value.columns]
    expected = accuracy_without_positions(load_model("digits-0-9"))
    assert table["operation"].tolist() == expected.operations
    np.testing.assert_allclose(table["positions off"], expected.without)
    info = " ".join(i.value for i in at.info)
    assert "First, Second and Last collapse" in info and "unordered bag" in info
