"""Checkpoints that cannot carry code: one safetensors file, weights plus a JSON description.

A checkpoint is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: an
8-byte little-endian header length, a JSON header, then raw little-endian tensor
bytes. Nothing in it is ever executed; `load_checkpoint` is the only loader, never
unpickles, and checks everything before it builds a model.

Tensors
-------
Every model parameter, float32, under its `param_shapes(cfg)` name
(D = d_model, H = n_heads, dh = d_head = D / H, F = d_ff, V = vocab_size;
weights multiply from the right, `x @ W`, so 2-D weights are [in, out])::

    embed.W_E                 [V, D]
    pos_embed.W_pos           [max_len, D]     only when positional == "learned"
    blocks.{i}.ln1.w, .ln1.b  [D]              for i in range(n_layers)
    blocks.{i}.attn.W_Q/W_K/W_V [H, D, dh]     blocks.{i}.attn.b_Q/b_K/b_V [H, dh]
    blocks.{i}.attn.W_O       [H, dh, D]       blocks.{i}.attn.b_O [D]
    blocks.{i}.ln2.w, .ln2.b  [D]
    blocks.{i}.mlp.W_in       [D, F]           blocks.{i}.mlp.b_in [F]
    blocks.{i}.mlp.W_out      [F, D]           blocks.{i}.mlp.b_out [D]
    ln_final.w, ln_final.b    [D]              only when norm == "pre"
    unembed.W_U               [D, V]           unembed.b_U [V]

Optionally the optimiser's state (see `model_core.optim`), to resume training:
`optim.m.<param>`, `optim.v.<param>` (Adam/AdamW) or `optim.momentum.<param>` (SGD),
each shaped like its parameter, and `optim.t` (int64 [1], steps taken).

Metadata
--------
The header's `__metadata__` holds one key, "transformer_explainer", whose value is
a JSON string::

    {"format": "transformer-explainer-checkpoint", "format_version": 1,
     "model_config": {...ModelConfig.to_dict()...},
     "vocab": ["<pad>", ...],          # token strings, index = token id, len == vocab_size
     "task": {...},                    # the task's config (a JSON object)
     "train_config": {...} or null,    # TrainConfig.to_dict() of the run that made it
     "metrics": {...},                 # free-form: accuracies, wall time, ...
     "name": "...", "created": "2025-01-31T12:00:00+00:00"}

`task` is only checked to be a JSON object here: `TaskConfig` (in `model_core.tasks`)
owns its meaning, so the caller validates it (`model_core.store` does). Likewise
`train_config` is only checked to be an object or null.

Limits
------
Loading is bounded in time and memory by construction: every size the file states is
checked against `model_core.limits` before anything of that size is parsed, allocated or
built, and every check takes time linear in the file. In order: the file's bytes, the
header's bytes and JSON nesting depth, the metadata's bytes and depth, then the model's
sizes (the limits the Train page trains within: blocks, heads, widths, max_len, vocabulary,
parameters), then the vocabulary's length, then every array's name, shape and dtype in the
header, before any array is read. A JSON object that lists a key twice is refused. Whatever
goes wrong, even an error none of these checks foresaw, is a CheckpointError.

From PyTorch
------------
    import json
    from safetensors import safe_open
    from safetensors.torch import load_file
    weights = load_file("model.safetensors")             # {name: torch.Tensor}
    with safe_open("model.safetensors", "pt") as f:
        meta = json.loads(f.metadata()["transformer_explainer"])

(`W_Q` [H, D, dh] and the [in, out] matrices are the transpose of `nn.Linear.weight`.)
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from . import limits
from .config import ConfigError, ModelConfig
from .limits import MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_METADATA_BYTES, LimitError
from .model import Transformer
from .params import param_shapes
from .training.optim import SLOTS, STATE_PREFIX, STEP_KEY, check_state_dict

FORMAT = "transformer-explainer-checkpoint"
FORMAT_VERSION = 1
META_KEY = "transformer_explainer"
MAX_BYTES = limits.MAX_CHECKPOINT_BYTES  # the default `max_bytes`

# safetensors dtype codes -> the names people know
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (or saved); the message says why and what to do."""


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint."""

    model: Transformer
    vocab_tokens: list[str]
    task: dict  # a JSON object; not validated here (see the module docstring)
    train_config: dict | None
    metrics: dict
    name: str
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)  # `optim.*` arrays, maybe none
    meta: dict = field(default_factory=dict)  # the metadata JSON as stored


# ---------------------------------------------------------------- saving
def save_checkpoint(model: Transformer, *, vocab_tokens: list[str], task: dict, train_config: dict | None = None,
                    metrics: dict | None = None, name: str = "", optimizer_state: dict | None = None,
                    path: str | Path | None = None) -> bytes:  # fmt: skip
    """The checkpoint file's bytes; also written to `path` (atomically) if given.

    Raises CheckpointError for anything `load_checkpoint` would refuse, so a
    checkpoint that saves also loads.
    """
    cfg = model.cfg
    try:
        limits.check_model(cfg)
    except LimitError as err:
        raise CheckpointError(f"cannot save a model that would not load again: {err}") from None
    shapes = param_shapes(cfg)
    missing = [n for n in shapes if n not in model.params]
    extra = [n for n in model.params if n not in shapes]
    if missing or extra:
        raise CheckpointError(f"the model's parameters do not match its config: missing {missing}, extra {extra}")
    tensors: dict[str, np.ndarray] = {}
    for n, shape in shapes.items():
        p = np.ascontiguousarray(model.params[n], dtype=np.float32)
        if p.shape != shape:
            raise CheckpointError(f"parameter '{n}' has shape {p.shape}, expected {shape}")
        if not np.isfinite(p).all():
            raise CheckpointError(f"parameter '{n}' holds NaN or infinite values; refusing to save a broken model")
        tensors[n] = p
    if optimizer_state:
        # Stored as loading accepts it (float32 slots, an int64 step counter), as the parameters are; checked
        # again after the cast, which can overflow a float64 value to infinity.
        stored = {k: np.ascontiguousarray(v, dtype=np.int64 if k == STEP_KEY else np.float32)
                  for k, v in optimizer_state.items()}  # fmt: skip
        try:
            check_state_dict(optimizer_state, shapes)
            check_state_dict(stored, shapes)
        except ValueError as err:
            raise CheckpointError(f"cannot save the optimiser state: {err}") from None
        tensors |= stored
    _check_vocab(vocab_tokens, cfg.vocab_size)
    for what, value, ok in (("task", task, isinstance(task, dict)),
                            ("train_config", train_config, train_config is None or isinstance(train_config, dict)),
                            ("metrics", metrics, metrics is None or isinstance(metrics, dict)),
                            ("name", name, isinstance(name, str))):  # fmt: skip
        if not ok:
            raise CheckpointError(
                f"{what} must be a {'string' if what == 'name' else 'dict'}, got {type(value).__name__}"
            )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": cfg.to_dict(),
        "vocab": list(vocab_tokens),
        "task": task,
        "train_config": train_config,
        "metrics": metrics or {},
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        text = json.dumps(meta, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"task, train_config and metrics must hold plain JSON values (no NaN or infinity): {err}"
        ) from None
    data = safetensors.numpy.save(tensors, metadata={META_KEY: text})
    if path is not None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a reader never sees half a file
    return data


# ---------------------------------------------------------------- loading
def load_checkpoint(source: str | Path | bytes, *, max_bytes: int = MAX_BYTES) -> Checkpoint:
    """Read, validate and rebuild a checkpoint from a path or its bytes.

    Never executes anything from the file. Raises CheckpointError, whose message
    names the problem (and the array, if one is at fault), for anything that is not
    a complete, consistent checkpoint of this format, or that is beyond `model_core.limits`
    (see "Limits" above). It raises nothing else.
    """
    label = _label(source)
    try:
        return _load(_read(source, label, max_bytes), label)
    except CheckpointError:
        raise
    except (RecursionError, MemoryError) as err:
        # The limits should make both impossible; should one get through, it is still a refusal, not a crash.
        raise CheckpointError(f"{label} is too large or too deeply nested to load ({type(err).__name__})") from None
    except Exception as err:  # a check nobody foresaw failed: refuse the file; the message names no internals
        raise CheckpointError(f"{label} could not be loaded ({type(err).__name__} while checking it)") from err


def _load(data: bytes, label: str) -> Checkpoint:
    header = _parse_header(data, label)
    meta = _parse_meta(header, label)
    try:
        cfg = ModelConfig.from_dict(meta["model_config"])
        limits.check_model(cfg)  # before anything is built from it, or even its blocks listed
    except LimitError as err:
        raise CheckpointError(f"{label}: {err}") from None
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{label} has an invalid model config: {err}") from None
    vocab = meta["vocab"]
    try:
        _check_vocab(vocab, cfg.vocab_size)
    except CheckpointError as err:
        raise CheckpointError(f"{label}: {err}") from None
    shapes = param_shapes(cfg)
    _check_table(header, shapes, label)
    try:
        arrays = safetensors.numpy.load(bytes(data))
    except Exception as err:  # safetensors' own checks (overlapping offsets, bad dtypes, ...)
        raise CheckpointError(f"{label} is a corrupt safetensors file: {err}") from None
    params = {}
    for n in shapes:
        p = np.array(arrays[n], dtype=np.float32, order="C", copy=True)  # writable, contiguous, ours
        if not np.isfinite(p).all():
            raise CheckpointError(f"{label}: parameter '{n}' holds NaN or infinite values; the model is broken")
        params[n] = p
    optim = {k: np.array(v, order="C", copy=True) for k, v in arrays.items() if k.startswith(STATE_PREFIX)}
    if optim:
        try:
            check_state_dict(optim, shapes)
        except ValueError as err:
            raise CheckpointError(f"{label} has unusable optimiser state: {err}") from None
    return Checkpoint(
        model=Transformer(cfg, params),
        vocab_tokens=list(vocab),
        task=meta["task"],
        train_config=meta.get("train_config"),
        metrics=meta.get("metrics") or {},
        name=meta.get("name") or "",
        optimizer_state=optim,
        meta=meta,
    )


def _label(source: Any) -> str:
    """How messages name the file: its path as given, or "the checkpoint data"."""
    return f"'{Path(source)}'" if isinstance(source, (str, Path)) else "the checkpoint data"


def _read(source: str | Path | bytes, label: str, max_bytes: int) -> bytes:
    """The file's bytes; never more than max_bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise CheckpointError(f"no checkpoint file at {label}; check the path")
        if not path.is_file():
            raise CheckpointError(f"{label} is not a file; give the path of a .safetensors checkpoint")
        try:
            with open(path, "rb") as f:
                # f.read(n) allocates n bytes before it reads, so read no more than the file holds (read(max_bytes + 1)
                # cost 50 MB for every small file). The extra byte makes a file beyond the limit fail the check below;
                # one that grows meanwhile is read in part, and refused as truncated.
                data = f.read(min(os.fstat(f.fileno()).st_size, max_bytes) + 1)
        except OSError as err:
            raise CheckpointError(f"{label} could not be read: {err.strerror or err}") from None
    else:
        raise CheckpointError(f"a checkpoint is a path or bytes, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise CheckpointError(
            f"{label} is larger than the {max_bytes:,}-byte limit for checkpoints; this app's models are far "
            f"smaller. If you trust the file, load it with a larger max_bytes."
        )
    return data


def _parse_header(data: bytes, label: str) -> dict[str, Any]:
    """The safetensors JSON header, checked against the file's size before safetensors sees it."""
    if not data:
        raise CheckpointError(f"{label} is empty (0 bytes): not a checkpoint")
    if len(data) < 8:
        raise CheckpointError(f"{label} is only {len(data)} bytes long: truncated, or not a safetensors checkpoint")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > len(data) - 8:
        kind = _sniff(data)
        if kind:
            raise CheckpointError(f"{label} is not a safetensors checkpoint: it looks like {kind}")
        if n > MAX_HEADER_BYTES:  # not a length this app ever writes: the file does not start like a checkpoint
            raise CheckpointError(
                f"{label} is not a safetensors checkpoint: such a file starts with the length of its header, and "
                f"this one's first 8 bytes do not give a length that fits in its {len(data):,} bytes"
            )
        raise CheckpointError(
            f"{label} is not a safetensors checkpoint, or is truncated: its first 8 bytes announce a {n:,}-byte "
            f"header but only {len(data) - 8:,} bytes follow"
        )
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{label} has a {n:,}-byte safetensors header; this app reads headers of at most {MAX_HEADER_BYTES:,} "
            "bytes (its own checkpoints' are about 5 KB)"
        )
    header = _parse_json(data[8 : 8 + n], label, "a corrupt safetensors header", "its safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{label} has a corrupt safetensors header (not a JSON object)")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
                and offsets[0] <= offsets[1] and isinstance(shape, list) and all(_is_count(s) for s in shape)
                and isinstance(entry.get("dtype"), str)):  # fmt: skip
            raise CheckpointError(f"{label} has a corrupt safetensors header (bad entry for tensor '{key}')")
        end = max(end, offsets[1])
    body = len(data) - 8 - n
    if end > body:
        raise CheckpointError(
            f"{label} is truncated: its header describes {end:,} bytes of tensor data but only {body:,} are present"
        )
    if end < body:
        raise CheckpointError(f"{label} is corrupt: {body - end:,} unexpected bytes follow the tensor data")
    return header


def _sniff(data: bytes) -> str:
    """A name for common non-safetensors formats, to make the refusal useful ('' if unknown)."""
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle, which can run code when loaded and is never opened here; save it as safetensors"
    if data[:4] == b"PK\x03\x04":
        return ("a zip archive (e.g. NumPy .npz or a PyTorch .pt/.pth, which hold pickles and are never opened "
                "here); save the weights with safetensors instead")  # fmt: skip
    if data[:6] == b"\x93NUMPY":
        return "a NumPy .npy file; save the weights with safetensors instead"
    return ""


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _parse_meta(header: dict[str, Any], label: str) -> dict[str, Any]:
    """The metadata JSON, with its format, version and field types checked."""
    not_ours = f"{label} is a safetensors file but not a transformer-explainer checkpoint"
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or META_KEY not in metadata:
        raise CheckpointError(f"{not_ours}: it has no '{META_KEY}' metadata")
    text = metadata[META_KEY]
    if not isinstance(text, str):
        raise CheckpointError(f"{label} has corrupt metadata (not a JSON string)")
    raw = text.encode("utf-8", "surrogatepass")  # JSON may escape a lone surrogate; still one measure of size
    if len(raw) > MAX_METADATA_BYTES:
        raise CheckpointError(
            f"{label} has {len(raw):,} bytes of metadata; this app reads at most {MAX_METADATA_BYTES:,} "
            "(its own checkpoints have about 1.2 KB)"
        )
    meta = _parse_json(raw, label, "corrupt metadata", "its metadata")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{label} has corrupt metadata (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{not_ours}: its format is {meta.get('format')!r}, expected {FORMAT!r}")
    version = meta.get("format_version")
    if not _is_count(version) or version == 0:
        raise CheckpointError(f"{label} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{label} was made by a newer version of transformer-explainer (checkpoint format_version {version}; "
            f"this version reads {FORMAT_VERSION}). Update the app to open it."
        )
    for key, kind in (("model_config", dict), ("vocab", list), ("task", dict)):
        if not isinstance(meta.get(key), kind):
            what = "a JSON object" if kind is dict else "a list"
            raise CheckpointError(f"{label} metadata: '{key}' must be {what}, got {type(meta.get(key)).__name__}")
    for key, kind in (("train_config", dict), ("metrics", dict), ("name", str)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise CheckpointError(f"{label} metadata: '{key}' must be a {kind.__name__} or null")
    return meta


# A JSON string, from its opening quote to its closing one (or the end of a text cut inside it). Possessive
# (`++`, `*+`): it never backtracks, so removing every string takes one linear pass even over hostile text.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def _json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in this JSON text, found by one linear scan, without parsing it.

    Brackets inside strings do not count, so the strings are cut out first; every bracket left is one
    json.loads would descend into (up to the first error, in invalid JSON).
    """
    structure = np.frombuffer(_JSON_STRING.sub(b"", raw), np.uint8)
    steps = np.isin(structure, _OPEN).astype(np.int32) - np.isin(structure, _CLOSE)
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook: a dict, unless a key appears twice (json.loads would keep the last)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1))
    return obj


@contextmanager
def _no_garbage_collection():
    """The cyclic garbage collector paused: json.loads makes up to a few hundred thousand containers, none in a
    cycle, and each batch of them would start a collection that scans the whole process's heap (in a test
    session or a busy server, seconds). With it paused, parsing takes time linear in the text."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_json(raw: bytes, label: str, corrupt: str, where: str) -> Any:
    """JSON text parsed once its depth is known to be small (json.loads recurses once per level)."""
    depth = _json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointError(
            f"{label} has JSON nested {depth:,} levels deep in {where}; this app reads at most {MAX_JSON_DEPTH} "
            "levels (its own checkpoints nest 3)"
        )
    try:
        with _no_garbage_collection():
            return json.loads(raw.decode("utf-8", "surrogatepass"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        raise CheckpointError(f"{label} has {corrupt}: it lists {err.key!r} twice in one JSON object") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{label} has {corrupt} (not valid JSON: {err})") from None


def _check_vocab(vocab: Any, vocab_size: int) -> None:
    """The vocabulary, in time linear in its length: the length first, then the types, then one counting pass."""
    if not isinstance(vocab, (list, tuple)):
        raise CheckpointError("the vocab must be a list of token strings")
    if len(vocab) > limits.MAX_VOCAB:
        raise CheckpointError(
            f"the vocab has {len(vocab):,} tokens; this app loads models of at most {limits.MAX_VOCAB:,} tokens"
        )
    if len(vocab) != vocab_size:
        raise CheckpointError(f"the vocab has {len(vocab)} tokens but the model config says vocab_size {vocab_size}")
    if not all(isinstance(t, str) for t in vocab):
        raise CheckpointError("the vocab must be a list of token strings")
    dupes = sorted(t for t, n in Counter(vocab).items() if n > 1)
    if dupes:
        listed = f"{dupes[:5]}" + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
        raise CheckpointError(f"the vocab has duplicate tokens {listed}; each token needs one id")


def _check_table(header: dict[str, Any], shapes: dict[str, tuple[int, ...]], label: str) -> None:
    """Parameter names, shapes and dtypes from the header, before any tensor is read."""
    table = {k: v for k, v in header.items() if k != "__metadata__"}
    missing = [n for n in shapes if n not in table]
    if missing:
        listed = ", ".join(f"'{n}' {shapes[n]}" for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise CheckpointError(f"{label} is missing {len(missing)} parameter array(s) the model config needs: {listed}")
    unexpected = [k for k in table if k not in shapes and not k.startswith(STATE_PREFIX)]
    if unexpected:
        raise CheckpointError(
            f"{label} has unexpected array(s) {sorted(unexpected)[:5]} that the model config does not use"
        )
    for n, shape in shapes.items():
        got = tuple(table[n]["shape"])
        if got != shape:
            raise CheckpointError(f"{label}: parameter '{n}' has shape {got}, expected {shape} for this model config")
        dtype = table[n]["dtype"]
        if dtype != "F32":
            raise CheckpointError(
                f"{label}: parameter '{n}' is {_DTYPES.get(dtype, dtype)}; parameters must be float32"
            )
    # The optimiser state too, so that every array in the file is one of known size before any is read.
    # (Which slots are present, and their values, are checked once read, by `check_state_dict`.)
    unusable = f"{label} has unusable optimiser state"
    for key, entry in table.items():
        if not key.startswith(STATE_PREFIX):
            continue
        dtype, got = entry["dtype"], tuple(entry["shape"])
        if key == STEP_KEY:
            if dtype != "I64" or got not in ((), (1,)):
                raise CheckpointError(f"{unusable}: '{key}' must be int64 [1], got {_DTYPES.get(dtype, dtype)} {got}")
            continue
        slot, _, name = key.removeprefix(STATE_PREFIX).partition(".")
        if slot not in SLOTS or name not in shapes:
            raise CheckpointError(f"{unusable}: unexpected optimiser state array '{key}'")
        if got != shapes[name]:
            raise CheckpointError(f"{unusable}: optimiser state array '{key}' has shape {got}, expected {shapes[name]}")
        if dtype != "F32":
            raise CheckpointError(
                f"{unusable}: optimiser state array '{key}' is {_DTYPES.get(dtype, dtype)}; it must be float32"
            )
