"""Checkpoints: exact round trips, and a clear refusal for every kind of bad file.

Bad files are made by real surgery on real checkpoints (truncation, flipped bytes,
arrays removed or swapped with `safetensors.numpy.save`), plus pickles, zips and noise.
"""

import io
import json
import pickle

import numpy as np
import pytest
import safetensors
import safetensors.numpy

from model_core.checkpoint import META_KEY, CheckpointError, load_checkpoint, save_checkpoint
from model_core.config import ModelConfig, TrainConfig
from model_core.model import Transformer
from model_core.params import param_shapes
from model_core.training.optim import make_optimizer

SMALL = ModelConfig(vocab_size=9, d_model=16, n_heads=2, n_layers=1, d_ff=24, max_len=12, causal=True,
                    norm="pre", positional="learned", seed=3)  # fmt: skip
TASK = {"kind": "digits", "max_value": 9, "ops": ["Max", "Min"]}


def make_model(cfg: ModelConfig) -> Transformer:
    """A model whose every parameter (LayerNorm gains and biases too) holds distinct values."""
    model = Transformer(cfg)
    rng = np.random.default_rng(cfg.seed + 100)
    for p in model.params.values():
        p += rng.normal(0, 0.1, p.shape).astype(np.float32)
    return model


def vocab(cfg: ModelConfig) -> list[str]:
    return ["<pad>"] + [f"tok{i}" for i in range(1, cfg.vocab_size)]


def save(model: Transformer, **kwargs) -> bytes:
    kwargs.setdefault("vocab_tokens", vocab(model.cfg))
    kwargs.setdefault("task", TASK)
    return save_checkpoint(model, **kwargs)


@pytest.fixture(scope="module")
def good() -> bytes:
    return save(make_model(ModelConfig()), name="default")


def split(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, metadata JSON as a dict) of a checkpoint, read independently of the loader."""
    n = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + n])["__metadata__"]
    return safetensors.numpy.load(data), json.loads(metadata[META_KEY])


def rebuild(tensors: dict[str, np.ndarray], meta: dict | None) -> bytes:
    metadata = None if meta is None else {META_KEY: json.dumps(meta)}
    return safetensors.numpy.save(tensors, metadata=metadata)


def refused(source, phrase: str, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(source, **kwargs)
    message = str(info.value)
    assert phrase.lower() in message.lower(), message
    return message


@pytest.fixture(autouse=True)
def nothing_is_unpickled(monkeypatch):
    """Every test here fails if the loader reaches for pickle or np.load."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the checkpoint loader must never unpickle or np.load")

    for module, name in ((pickle, "load"), (pickle, "loads"), (np, "load")):
        monkeypatch.setattr(module, name, forbidden)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("cfg", [ModelConfig(), SMALL], ids=["default-bidirectional", "small-causal-prenorm-learned"])
@pytest.mark.parametrize("via", ["bytes", "path"])
def test_round_trip_gives_identical_parameters_and_outputs(cfg, via, tmp_path):
    model = make_model(cfg)
    train = TrainConfig(steps=10).to_dict()
    metrics = {"val_accuracy": 0.97, "wall_s": 12.5, "per_op": {"Max": 1.0}}
    path = tmp_path / "model.safetensors"
    data = save(model, train_config=train, metrics=metrics, name="mine", path=path)
    assert path.read_bytes() == data and not list(tmp_path.glob("*.tmp"))
    ckpt = load_checkpoint(data if via == "bytes" else path)
    assert ckpt.model.cfg == cfg
    assert list(ckpt.model.params) == list(param_shapes(cfg))
    for n, p in model.params.items():
        q = ckpt.model.params[n]
        assert q.dtype == np.float32 and q.flags.writeable and q.flags.c_contiguous
        np.testing.assert_array_equal(q, p)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (3, cfg.max_len))
    np.testing.assert_array_equal(ckpt.model.forward(tokens), model.forward(tokens))
    assert ckpt.vocab_tokens == vocab(cfg) and ckpt.task == TASK and ckpt.train_config == train
    assert ckpt.metrics == metrics and ckpt.name == "mine" and ckpt.optimizer_state == {}
    assert ckpt.meta["format"] == "transformer-explainer-checkpoint" and ckpt.meta["format_version"] == 1
    assert ckpt.meta["model_config"] == cfg.to_dict() and "T" in ckpt.meta["created"]


def test_the_file_is_plain_safetensors_with_one_metadata_key(good, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(good)
    with safetensors.safe_open(str(path), "np") as f:  # what a PyTorch user does, with framework="pt"
        assert set(f.metadata()) == {META_KEY}
        assert set(f.keys()) == set(param_shapes(ModelConfig()))
        assert f.get_tensor("embed.W_E").shape == (21, 64)
        assert json.loads(f.metadata()[META_KEY])["vocab"] == vocab(ModelConfig())


def test_optimizer_state_round_trip_resumes_identically():
    model = make_model(SMALL)
    cfg = TrainConfig(optimizer="adamw")
    opt = make_optimizer(cfg, model.params)
    rng = np.random.default_rng(1)
    batches = [rng.integers(1, SMALL.vocab_size, (4, 8)) for _ in range(4)]
    for tokens in batches[:2]:
        _, grads, _ = model.loss_and_grads(tokens, tokens)
        opt.step(model.params, grads, 1e-2)
    ckpt = load_checkpoint(save(model, optimizer_state=opt.state_dict()))
    assert set(ckpt.optimizer_state) == set(opt.state_dict())
    resumed = ckpt.model
    opt2 = make_optimizer(cfg, resumed.params)
    opt2.load_state_dict(ckpt.optimizer_state)
    for tokens in batches[2:]:
        for m, o in ((model, opt), (resumed, opt2)):
            _, grads, _ = m.loss_and_grads(tokens, tokens)
            o.step(m.params, grads, 1e-2)
    for n in model.params:
        np.testing.assert_array_equal(resumed.params[n], model.params[n])


def test_bytes_like_sources_are_accepted(good):
    assert load_checkpoint(bytearray(good)).name == "default"
    assert load_checkpoint(memoryview(good)).name == "default"


# ---------------------------------------------------------------- not a checkpoint at all
def test_missing_file_and_directory(tmp_path):
    refused(tmp_path / "nope.safetensors", "no checkpoint file at")
    refused(str(tmp_path), "is not a file")


def test_too_big(good, tmp_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes(good)
    refused(path, "larger than", max_bytes=len(good) - 1)
    refused(good, "larger than", max_bytes=1000)
    assert load_checkpoint(path, max_bytes=len(good)).name == "default"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    refused(path, "empty")
    refused(b"", "empty")


@pytest.mark.parametrize(
    "cut, phrase",
    [(5, "only 5 bytes"), (200, "announce"), (-1, "truncated"), (-4000, "truncated")],
    ids=["inside-length", "inside-header", "last-byte", "inside-data"],
)
def test_truncated(good, cut, phrase):
    refused(good[:cut], phrase)


def test_a_file_that_is_not_a_checkpoint_gets_no_absurd_header_length():
    """Text read as a little-endian header length is a 19-digit number: the message must not quote it."""
    data = b"Max ( 7 2 9 ) is not a model file\n"
    n = int.from_bytes(data[:8], "little")
    assert n > 10**18
    message = refused(data, "do not give a length that fits")
    assert f"{n:,}" not in message and str(n) not in message


def test_trailing_garbage(good):
    refused(good + b"\0\0\0\0", "unexpected bytes")


def test_flipped_header_bytes(good):
    data = bytearray(good)
    data[7] ^= 0xFF  # the top byte of the header length
    refused(bytes(data), "not a safetensors checkpoint")
    n = int.from_bytes(good[:8], "little")
    for pos in (8, 8 + n // 2, 8 + n // 3):  # the opening '{', and two places inside the JSON
        data = bytearray(good)
        data[pos] ^= 0xFF
        refused(bytes(data), "corrupt")


def with_header(data: bytes, edit) -> bytes:
    """The file with its JSON header passed through `edit` (and re-framed with its new length)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def test_header_edits_that_keep_the_file_framed(good):
    def reshape(h):
        h["embed.W_E"]["shape"] = [21, 32]

    def retype(h):
        h["embed.W_E"]["dtype"] = "I32"

    def overlap(h):  # two tensors on the same bytes: only safetensors' own checks see this
        h["blocks.0.ln1.b"]["data_offsets"] = h["blocks.0.ln1.w"]["data_offsets"]

    def garble(h):
        h["embed.W_E"]["data_offsets"] = "everywhere"

    refused(with_header(good, reshape), "'embed.W_E' has shape (21, 32), expected (21, 64)")
    refused(with_header(good, retype), "'embed.W_E' is int32")
    refused(with_header(good, overlap), "corrupt safetensors file")
    refused(with_header(good, garble), "bad entry for tensor 'embed.W_E'")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    refused(path, "not a safetensors checkpoint")


class _Payload:
    """Unpickling this creates a file: a stand-in for code in a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickle_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.undo()  # this test needs the real pickle, to prove the payload is live
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()  # unpickling it really does run code

    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"weights": np.zeros(3), "evil": _Payload(marker)}))
    message = refused(path, "pickle")
    assert "never opened" in message
    assert not marker.exists()


def test_an_npz_is_refused():
    buffer = io.BytesIO()
    np.savez(buffer, **make_model(SMALL).params)
    refused(buffer.getvalue(), "zip")


# ---------------------------------------------------------------- metadata surgery
def test_safetensors_without_our_metadata(good):
    tensors, _ = split(good)
    refused(rebuild(tensors, None), "not a transformer-explainer checkpoint")


def test_metadata_that_is_not_json(good):
    tensors, _ = split(good)
    data = safetensors.numpy.save(tensors, metadata={META_KEY: "{not json"})
    refused(data, "not valid JSON")


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"format": "something-else"}, "not a transformer-explainer checkpoint"),
        ({"format_version": 99}, "made by a newer version"),
        ({"format_version": "1"}, "invalid format_version"),
        ({"model_config": {"d_model": 64, "n_heads": 5}}, "divisible by n_heads"),
        ({"model_config": {"colour": "blue"}}, "unknown model config keys"),
        ({"model_config": None}, "'model_config' must be a JSON object"),
        ({"vocab": "abc"}, "must be a list"),
        ({"vocab": ["a"] * 21}, "duplicate tokens ['a']"),
        ({"vocab": [1] * 21}, "list of token strings"),
        ({"vocab": ["a", "b"]}, "2 tokens but the model config says vocab_size 21"),
        ({"task": ["not", "an", "object"]}, "'task' must be a JSON object"),
        ({"train_config": 5}, "'train_config' must be a dict or null"),
    ],
)
def test_bad_metadata(good, change, phrase):
    tensors, meta = split(good)
    refused(rebuild(tensors, meta | change), phrase)


# ---------------------------------------------------------------- tensor surgery
def test_a_missing_parameter_is_named(good):
    tensors, meta = split(good)
    del tensors["blocks.1.attn.W_Q"]
    refused(rebuild(tensors, meta), "missing 1 parameter array(s) the model config needs: 'blocks.1.attn.W_Q'")


def test_an_unexpected_array_is_named(good):
    tensors, meta = split(good)
    tensors["blocks.2.attn.W_Q"] = np.zeros((4, 64, 16), np.float32)
    refused(rebuild(tensors, meta), "unexpected array(s) ['blocks.2.attn.W_Q']")


def test_a_wrong_shape_names_array_expected_and_got(good):
    tensors, meta = split(good)
    tensors["blocks.0.mlp.W_in"] = np.zeros((64, 128), np.float32)
    refused(rebuild(tensors, meta), "'blocks.0.mlp.W_in' has shape (64, 128), expected (64, 256)")


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_only_float32_parameters(good, dtype):
    tensors, meta = split(good)
    tensors["unembed.W_U"] = tensors["unembed.W_U"].astype(dtype)
    refused(rebuild(tensors, meta), f"'unembed.W_U' is {np.dtype(dtype).name}; parameters must be float32")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_named(good, bad):
    tensors, meta = split(good)
    tensors["blocks.0.ln2.w"][7] = bad
    refused(rebuild(tensors, meta), "'blocks.0.ln2.w' holds NaN or infinite")


def test_bad_optimizer_state_in_the_file(good):
    tensors, meta = split(good)
    tensors["optim.m.embed.W_E"] = np.zeros((3, 3), np.float32)
    refused(rebuild(tensors, meta), "unusable optimiser state")


# ---------------------------------------------------------------- saving refuses what loading would
def test_save_refuses_what_load_would_refuse():
    model = make_model(SMALL)
    with pytest.raises(CheckpointError, match="vocab has 3 tokens"):
        save(model, vocab_tokens=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="task must be a dict"):
        save(model, task="digits")
    with pytest.raises(CheckpointError, match="no NaN"):
        save(model, metrics={"loss": float("nan")})
    with pytest.raises(CheckpointError, match="optimiser state"):
        save(model, optimizer_state={"optim.t": np.array([1]), "optim.m.embed.W_E": np.zeros(2, np.float32)})
    model.params["unembed.b_U"][0] = np.nan
    with pytest.raises(CheckpointError, match="'unembed.b_U' holds NaN"):
        save(model)
