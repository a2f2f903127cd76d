"""Export an experiment: a short script that reproduces a page's run, and the run's arrays as `.npz`.

`experiment_snippet` writes the Python a learner can run outside the app: load the model, answer the
example, run the forward pass on the tokens the pages read (`run_example`'s) and save the chosen cache
arrays; with heads switched off, also the logits of a second run with them off as the Attention page
does (`interp.ablate`: each head's `hook_result` write zeroed), saved as "heads_off.hook_logits".
`run_npz` gives the arrays the app already holds as `.npz` bytes (plain arrays only, so
`np.load(..., allow_pickle=False)` reads them).

Every string the user controls (example, model reference, array names, file name) enters the script
only through `repr()`, as a string constant, and never in a comment: no text can become code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from ..hooks import Cache
from ..store import shipped_names
from ..task_model import TaskModel


def experiment_snippet(model: TaskModel, model_ref: str, example: str, heads_off: Sequence[tuple[int, int]] = (),
                       arrays: Sequence[str] = (), out: str = "experiment.npz") -> str:  # fmt: skip
    """A runnable script reproducing `example` through `model`, saving `arrays` (empty: all) to `out`.

    `model` is the model the app holds (it validates the example, heads and names); `model_ref` is how
    the script loads it: a shipped name ("digits-0-9"), or the checkpoint file name of a model trained
    or uploaded in the app (loaded by path, from the folder the script runs in). `heads_off`: (layer,
    head) pairs zeroed at `blocks.{layer}.attn.hook_result`. ValueError for anything the model does not have.
    """
    cfg = model.transformer.cfg
    if not isinstance(model_ref, str) or not model_ref.strip():
        raise ValueError("model_ref must be a shipped model's name or a checkpoint file name")
    if not isinstance(example, str):
        raise ValueError("the example must be text")
    model.parse(example)  # ParseError (a ValueError) with the user's message: never a script that fails
    if not isinstance(out, str) or not out.endswith(".npz") or out == ".npz":
        raise ValueError(f"out must be a file name ending in .npz, got {out!r}")
    heads = _heads(heads_off, cfg.n_layers, cfg.n_heads)
    known = model.transformer.hook_names()  # exactly the keys of a run_with_cache cache (no gradients)
    if isinstance(arrays, str):  # one name given bare would be read letter by letter
        raise ValueError("arrays is a list of hook names, e.g. ['blocks.0.attn.hook_pattern']")
    names = list(dict.fromkeys(arrays))  # listed order, each once
    unknown = [n for n in names if not isinstance(n, str) or n not in known]
    if unknown:
        raise ValueError(f"not a hook of this model: {', '.join(map(repr, unknown))} (e.g. {known[0]!r})")

    if model_ref in shipped_names():
        load = [f"model = load_model({model_ref!r})  # a model shipped with model_core"]
    else:
        load = ["# The model trained or uploaded in the app: download its checkpoint (Train page) or keep the",
                "# uploaded file next to this script, and run the script from that folder.",
                f"model = load_model({model_ref!r})"]  # fmt: skip
    if model.causal:
        read = ["# The tokens the pages read: the input and the answer it wrote, except the last token",
                "# it wrote (a causal model never reads that one back)",
                "tokens = answer.tokens[:-1]"]  # fmt: skip
    else:
        read = ["# The tokens the pages read: the input up to and including `=`",
                "tokens = answer.tokens[: answer.answer_pos + 1]"]  # fmt: skip
    if heads:
        by_hook: dict[str, list[int]] = {}
        for layer, head in heads:
            by_hook.setdefault(f"blocks.{layer}.attn.hook_result", []).append(head)
        listed = ", ".join(f"L{layer}H{head}" for layer, head in heads)
        ablate = ["",
                  f"# Switch heads off ({listed}) as the Attention page does: zero each one's write z W_O",
                  "# into the residual stream (the output bias b_O, shared by the heads, stays)",
                  f"heads_off = {by_hook!r}  # hook name: heads",
                  "",
                  "",
                  "def switch_off(result, hook):  # [batch, pos, head, d_model], read-only: return a copy",
                  "    result = result.copy()",
                  "    result[:, :, heads_off[hook.name]] = 0.0",
                  "    return result",
                  "",
                  "",
                  "hooks = [(name, switch_off) for name in heads_off]"]  # fmt: skip
    else:
        ablate = []
    run = "logits, cache = model.transformer.run_with_cache(tokens[None])  # tokens[None]: a batch of one"
    pick = f"names = {names!r}" if names else "names = list(cache)  # every cached array, by hook name"
    if heads:  # the page's charts are the clean run; its table of switched-off heads is this second run
        ablate += ["off_logits, _ = model.transformer.run_with_cache(tokens[None], fwd_hooks=hooks)",
                   'arrays["heads_off.hook_logits"] = off_logits  # [1, pos, vocab]']  # fmt: skip

    lines = [
        "import numpy as np",
        "",
        "from model_core import load_model",
        "",
        *load,
        f"answer = model.answer({example!r})  # parse the example; the model writes its answer",
        'print("model answers", answer.value, "- true answer", answer.expression.answer,',
        '      "(right)" if answer.correct else "(wrong)")',
        "",
        *read,
        run,
        "",
        "# The arrays the page draws (each [batch=1, ...]), by hook name: np.load(...)[name] reads one back",
        pick,
        "arrays = {name: cache[name] for name in names}",
        *ablate,
        "",
        f"np.savez({out!r}, **arrays)",
        "for name, array in arrays.items():",
        "    print(name, array.shape)",
    ]
    snippet = "\n".join(lines) + "\n"
    compile(snippet, "<experiment>", "exec")  # a SyntaxError here is a bug in this function, not the user's
    return snippet


def _heads(heads_off: Sequence[tuple[int, int]], n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """(layer, head) pairs as plain ints, sorted, each once; ValueError for a pair the model does not have."""
    heads = set()
    for pair in heads_off:
        try:
            layer, head = pair
        except (TypeError, ValueError):
            raise ValueError(f"a switched-off head is a (layer, head) pair, got {pair!r}") from None
        # bool is an int subclass, but True is no head number; NumPy ints (from a widget) are fine
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in (layer, head)):
            raise ValueError(f"layer and head must be integers, got {pair!r}")
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"no head L{layer}H{head}: this model has layers 0-{n_layers - 1}, heads 0-{n_heads - 1}")
        heads.add((int(layer), int(head)))
    return sorted(heads)


def run_npz(cache: Cache, names: Sequence[str] = ()) -> bytes:
    """The cached arrays (all, or `names`) as `.npz` bytes, keyed by hook name, readable without pickle."""
    names = list(dict.fromkeys(names)) or list(cache)
    missing = [n for n in names if n not in cache]
    if missing:
        raise ValueError(f"not in this run's cache: {', '.join(map(repr, missing))}")
    arrays = {}
    for name in names:
        arr = np.asarray(cache[name])
        if arr.dtype.kind not in "biufc":  # bool, int, uint, float, complex: never objects (they need pickle)
            raise ValueError(f"{name} is not a numeric array (dtype {arr.dtype})")
        arrays[name] = arr
    buf = io.BytesIO()
    # Keys with dots are fine (each becomes "<name>.npy" in the zip). No allow_pickle= here: NumPy 2.0's
    # savez would store it as one more array; the dtype check above already keeps objects out.
    np.savez(buf, **arrays)
    return buf.getvalue()
