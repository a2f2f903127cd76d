"""Hostile checkpoints: small files that state huge sizes, deep JSON, duplicate names, wrong dtypes.

Each file is made here, from a real checkpoint. Each must be refused with a CheckpointError that
says why, in bounded time and bounded memory: loading checks every size the file states against
`model_core.limits` before it parses, allocates or builds anything of that size. `-rP` prints each
case's time and peak memory.
"""

import json
import time
import tracemalloc

import numpy as np
import pytest
import safetensors.numpy

from model_core import limits, store
from model_core.checkpoint import META_KEY, CheckpointError, _json_depth, load_checkpoint, save_checkpoint
from model_core.config import ModelConfig
from model_core.layers import sinusoidal_positions
from model_core.model import Transformer
from model_core.params import init_params
from model_core.task import TaskConfig, TaskError
from model_core.task.vocab import DEFAULT_VOCAB, Vocabulary

SECONDS = 2.0  # generous: every refusal here takes well under 0.5 s
PEAK_BYTES = 100 * 2**20  # before these checks, max_len 10**7 alone peaked at 717 MB
DEEP = 100_000

SMALL = ModelConfig(vocab_size=9, d_model=8, n_heads=2, n_layers=1, d_ff=8, max_len=12)  # sinusoidal positions
TASK = {"max_value": 9}
VOCAB = ["<pad>"] + [f"tok{i}" for i in range(1, SMALL.vocab_size)]


def bounded(fn):
    """fn()'s result (or the CheckpointError it raised), its wall time and its peak traced memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = fn()
    except CheckpointError as err:
        result = err
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, elapsed, peak


def refused(data: bytes, phrase: str) -> str:
    """The refusal's message; it must contain `phrase` and come within the time and memory bounds."""
    err, elapsed, peak = bounded(lambda: load_checkpoint(data))
    assert isinstance(err, CheckpointError), f"loaded: {err!r}"
    message = str(err)
    print(f"{len(data):>10,} bytes  {elapsed * 1000:7.1f} ms  peak {peak / 2**20:6.2f} MB  {message[:110]}")
    assert phrase in message, message
    assert elapsed < SECONDS and peak < PEAK_BYTES, (elapsed, peak)
    return message


# ---------------------------------------------------------------- making hostile files
@pytest.fixture(scope="module")
def good() -> bytes:
    return save_checkpoint(Transformer(SMALL), vocab_tokens=VOCAB, task=TASK, name="small")


def split(data: bytes) -> tuple[dict, bytes]:
    """(the header as a dict, the tensor bytes)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def frame(header_text: bytes, body: bytes = b"") -> bytes:
    """A safetensors file: the 8-byte length, the header's text, the tensor bytes."""
    return len(header_text).to_bytes(8, "little") + header_text + body


def with_meta_text(data: bytes, text: str) -> bytes:
    """The file with its metadata JSON string replaced by `text` (the tensors untouched)."""
    header, body = split(data)
    header["__metadata__"][META_KEY] = text
    return frame(json.dumps(header).encode(), body)


def with_meta(data: bytes, **changes) -> bytes:
    header, _ = split(data)
    meta = json.loads(header["__metadata__"][META_KEY]) | changes
    return with_meta_text(data, json.dumps(meta))


def with_config(data: bytes, **changes) -> bytes:
    header, _ = split(data)
    meta = json.loads(header["__metadata__"][META_KEY])
    return with_meta(data, model_config=meta["model_config"] | changes)


def meta_of(data: bytes) -> dict:
    return json.loads(split(data)[0]["__metadata__"][META_KEY])


def valid_file(cfg: ModelConfig, vocab: list[str]) -> bytes:
    """A complete, consistent checkpoint of `cfg` written without `save_checkpoint` (which refuses big models)."""
    meta = {"format": "transformer-explainer-checkpoint", "format_version": 1, "model_config": cfg.to_dict(),
            "vocab": vocab, "task": TASK, "train_config": None, "metrics": {}, "name": "big"}  # fmt: skip
    return safetensors.numpy.save(init_params(cfg), metadata={META_KEY: json.dumps(meta)})


# ---------------------------------------------------------------- sizes the model config states
@pytest.mark.parametrize("max_len", [10**7, 10**12])
def test_a_huge_max_len_is_refused_before_any_table_is_built(good, max_len):
    message = refused(with_config(good, max_len=max_len), f"Positions (max_len) is {max_len:,}; this app loads")
    assert f"this app loads models of {limits.model_limits_text()}." in message  # every limit, stated


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"n_layers": 2800}, "Blocks (layers) is 2,800; this app loads models of at most 4 blocks"),
        ({"d_model": 4096, "n_heads": 8}, "Width (d_model) is 4,096"),
        ({"n_heads": 64, "d_model": 64}, "Heads is 64"),
        ({"d_ff": 10**9}, "FFN width (d_ff) is 1,000,000,000"),
        ({"vocab_size": 40_000}, "Vocabulary size is 40,000"),
        ({"n_layers": 4, "d_model": 256, "d_ff": 1024}, "the model has 3,"),  # each size allowed, not their product
    ],
)
def test_every_model_size_is_capped(good, change, phrase):
    refused(with_config(good, **change), phrase)


def test_a_valid_2800_layer_model_is_refused(good):
    cfg = ModelConfig(vocab_size=9, d_model=2, n_heads=1, n_layers=2800, d_ff=2, max_len=12)
    data = valid_file(cfg, VOCAB)
    # 44,800 arrays: its tensor table alone is beyond the header limit, the first thing checked
    refused(data, f"-byte safetensors header; this app reads headers of at most {limits.MAX_HEADER_BYTES:,} bytes")


# ---------------------------------------------------------------- the vocabulary
@pytest.mark.parametrize("n", [40_000, 600_000])
@pytest.mark.parametrize("duplicates", [False, True], ids=["distinct", "duplicates"])
def test_a_huge_vocabulary_is_refused_by_its_length_in_linear_time(good, n, duplicates):
    vocab = ["a"] * n if duplicates else [str(i) for i in range(n)]
    data = with_meta(good, vocab=vocab)
    if len(data) > limits.MAX_HEADER_BYTES:  # 600,000 tokens: several MB of header, refused before it is parsed
        refused(data, "-byte safetensors header; this app reads headers of at most")
    else:
        refused(data, f"the vocab has {n:,} tokens; this app loads models of at most {limits.MAX_VOCAB:,} tokens")


def test_the_vocabulary_checks_are_linear_wherever_they_run():
    """Saving, the Vocabulary and the TaskConfig count duplicates in one pass (they used list.count per item)."""
    many = ["a"] * 600_000
    model = Transformer(SMALL)
    err, elapsed, _ = bounded(lambda: save_checkpoint(model, vocab_tokens=many, task=TASK))
    assert isinstance(err, CheckpointError) and "the vocab has 600,000 tokens" in str(err) and elapsed < SECONDS
    start = time.perf_counter()
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        Vocabulary([*DEFAULT_VOCAB.tokens, *many])
    with pytest.raises(TaskError, match="repeated: Max"):
        TaskConfig(operations=["Max"] * 600_000)
    assert time.perf_counter() - start < SECONDS


def test_a_small_vocabulary_with_duplicates_names_them(good):
    refused(with_meta(good, vocab=["a", "b", "a", *VOCAB[3:]]), "duplicate tokens ['a']")


# ---------------------------------------------------------------- deep JSON
@pytest.mark.parametrize(
    "header_text",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"a": ' + b"[" * DEEP,  # not even valid JSON: refused by its depth all the same
        b'{"embed.W_E": {"dtype": "F32", "shape": ' + b"[" * DEEP + b"]" * DEEP + b', "data_offsets": [0, 0]}}',
    ],
    ids=["bare", "unclosed", "inside-an-entry"],
)
def test_deeply_nested_json_in_the_header(header_text):
    refused(frame(header_text), "levels deep in its safetensors header; this app reads at most 32 levels")


def test_deeply_nested_json_in_the_metadata(good):
    meta = json.dumps(meta_of(good))
    deep = meta[:-1] + ', "deep": ' + "[" * DEEP + "]" * DEEP + "}"
    refused(with_meta_text(good, deep), f"JSON nested {DEEP + 1:,} levels deep in its metadata")


def test_brackets_inside_strings_are_not_nesting(good):
    name = '[{\\"' * 20_000 + '"\\'  # brackets, escaped quotes and backslashes, all inside one string
    ckpt = load_checkpoint(with_meta(good, name=name))
    assert ckpt.name == name


@pytest.mark.parametrize(
    "text, depth",
    [(b"", 0), (b"[]", 1), (b'{"a": [1, {"b": []}]}', 4), (b'"[[{"', 0), (b'["\\"[", [1]]', 2),
     (b'["\\\\", [[]]]', 3), (b'"unterminated [[[', 0)],
)  # fmt: skip
def test_json_depth(text, depth):
    assert _json_depth(text) == depth


def test_json_depth_takes_linear_time_on_text_made_to_backtrack():
    # Many quote-escape pairs after one quote: a backtracking string pattern would rescan from every quote.
    start = time.perf_counter()
    assert _json_depth(b'"' + b'\\"' * 1_000_000 + b"[") == 0
    assert _json_depth(b'["' + b'\\"' * 1_000_000) == 1
    assert time.perf_counter() - start < SECONDS


# ---------------------------------------------------------------- names, dtypes, sizes of the file's parts
def test_a_tensor_listed_twice_is_refused(good):
    header, body = split(good)
    text = json.dumps(header)
    entry = json.dumps({"embed.W_E": header["embed.W_E"]})[1:-1]
    twice = "{" + entry + ", " + text[1:]  # the first of two entries named embed.W_E
    refused(frame(twice.encode(), body), "corrupt safetensors header: it lists 'embed.W_E' twice")


def test_a_metadata_key_listed_twice_is_refused(good):
    meta = json.dumps(meta_of(good))
    refused(with_meta_text(good, meta[:-1] + ', "vocab": []}'), "corrupt metadata: it lists 'vocab' twice")


def test_float16_optimiser_state_is_refused(good):
    tensors = safetensors.numpy.load(good)
    state = {f"optim.{slot}.{n}": np.zeros(p.shape, np.float16) for slot in ("m", "v") for n, p in tensors.items()}
    data = safetensors.numpy.save(tensors | state | {"optim.t": np.array([3], np.int64)},
                                  metadata={META_KEY: json.dumps(meta_of(good))})  # fmt: skip
    refused(data, "is float16; it must be float32")


def test_unknown_optimiser_arrays_are_refused_before_they_are_read(good):
    tensors = safetensors.numpy.load(good)
    junk = {"optim.m.not-a-parameter": np.zeros(2_000_000, np.float32)}  # 8 MB that is never read
    data = safetensors.numpy.save(tensors | junk, metadata={META_KEY: json.dumps(meta_of(good))})
    refused(data, "unexpected optimiser state array 'optim.m.not-a-parameter'")


def test_metadata_beyond_its_limit(good):
    refused(with_meta(good, metrics={"notes": "x" * 700_000}), "bytes of metadata; this app reads at most 500,000")


def test_a_header_beyond_its_limit(good):
    refused(with_meta(good, metrics={"notes": "x" * 1_500_000}), "this app reads headers of at most 1,000,000 bytes")


@pytest.mark.parametrize("item", [b"{}", b"[]", b'"ab"', b"1.5"])
def test_the_largest_json_the_limits_allow_is_parsed_in_bounded_time_and_memory(item):
    """A header just under its limit, made of the JSON values that cost the most to build, one by one."""
    n = (limits.MAX_HEADER_BYTES - 2) // (len(item) + 1)
    data = frame(b"[" + b",".join([item] * n) + b"]")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load_checkpoint(data)
    assert time.perf_counter() - start < SECONDS  # untraced: tracing a million allocations takes seconds itself
    err, _, peak = bounded(lambda: load_checkpoint(data))
    assert isinstance(err, CheckpointError) and peak < PEAK_BYTES


# ---------------------------------------------------------------- whatever else goes wrong
@pytest.mark.parametrize(
    "error, phrase",
    [(RecursionError, "too large or too deeply nested to load (RecursionError)"),
     (MemoryError, "too large or too deeply nested to load (MemoryError)"),
     (KeyError, "could not be loaded (KeyError while checking it)")],
)  # fmt: skip
def test_an_unforeseen_error_while_checking_is_still_a_checkpoint_error(good, monkeypatch, error, phrase):
    def broken(*args, **kwargs):
        raise error("/srv/secret/path")

    monkeypatch.setattr("model_core.checkpoint._check_table", broken)
    message = refused(good, phrase)
    assert "/srv/secret" not in message


# ---------------------------------------------------------------- what must still load
@pytest.mark.parametrize("name", store.shipped_names())
def test_every_shipped_model_still_loads(name):
    """Within the limits, with room: d_model 64, 2 blocks, max_len 50, 21 tokens, about 105,000 parameters."""
    path = store.PRETRAINED_DIR / f"{name}.safetensors"
    ckpt, elapsed, peak = bounded(lambda: load_checkpoint(path))
    assert not isinstance(ckpt, CheckpointError), ckpt
    assert elapsed < SECONDS and peak < 10 * 2**20  # a 0.4 MB file (reading it once took a 50 MB buffer)
    model = store.load_model(name)
    assert model.answer("Max ( 5 3 9 )").value == 9


def test_a_model_at_the_limits_saves_and_loads():
    cfg = ModelConfig(vocab_size=limits.MAX_VOCAB, d_model=limits.MAX_D_MODEL, n_heads=limits.MAX_HEADS, n_layers=1,
                      d_ff=limits.MAX_D_FF, max_len=limits.MAX_LEN, positional="learned")  # fmt: skip
    vocab = [f"t{i}" for i in range(cfg.vocab_size)]
    ckpt = load_checkpoint(save_checkpoint(Transformer(cfg), vocab_tokens=vocab, task=TASK))
    assert ckpt.model.cfg == cfg and ckpt.model.n_params <= limits.MAX_PARAMS


def test_saving_refuses_a_model_that_would_not_load():
    cfg = ModelConfig(vocab_size=9, d_model=8, n_heads=2, n_layers=5, d_ff=8, max_len=12)
    with pytest.raises(CheckpointError, match="would not load again: Blocks \\(layers\\) is 5"):
        save_checkpoint(Transformer(cfg), vocab_tokens=VOCAB, task=TASK)


def test_the_sinusoid_table_is_made_only_as_far_as_it_is_used():
    cfg = ModelConfig(vocab_size=9, d_model=8, n_heads=2, n_layers=1, d_ff=8, max_len=10**7)  # built directly

    def build_and_run():
        model = Transformer(cfg)
        return model, model.forward(np.ones((2, 5), np.int64))

    (model, logits), _, peak = bounded(build_and_run)
    assert logits.shape == (2, 5, 9) and peak < 2**20  # [10**7, 8] in float64 would be 640 MB
    np.testing.assert_array_equal(model.positional_table(5), sinusoidal_positions(5, 8).astype(np.float32))


def test_the_sinusoid_rows_are_the_full_tables_rows():
    """The forward reads rows [:T] of a table made to T rows; they are the same numbers as the full table's."""
    model = Transformer(ModelConfig())
    tokens = np.random.default_rng(0).integers(1, 21, (3, 11))
    short = model.forward(tokens)  # makes 11 rows
    full = model.positional_table()  # grows the table to max_len
    assert full.shape == (50, 64) and full.dtype == np.float32
    np.testing.assert_array_equal(full, sinusoidal_positions(50, 64).astype(np.float32))
    np.testing.assert_array_equal(model.forward(tokens), short)
