"""Interpretability on any model the app can open (NumPy only): what each component contributes, and why.

    inputs       batch(model, texts) -> the token batch; roles(model, tokens) -> each position's role
    attribution  attribute(net, tokens, positions) -> direct logit attribution (LayerNorm scales frozen),
                 neuron_attribution(...) -> an MLP's top neurons
    patching     patch_sweep(model, clean, corrupt) -> recovery over hooks x positions and per head, one pass;
                 counterfactuals(model, expr) -> inputs that differ in one controlled way;
                 attribution_patch_sweep(...) -> its first-order estimate from one backward pass;
                 patched_logits(model, clean, corrupt, [Patch(hook, pos)]) -> the patched run's answer
    input_space  head_roles, score_by_digit, ablation_matrix, lens_by_operation, hard_cases: every 0-9 input
                 (or a stated sample of a larger space), for the caller to cache per model
    steering     steer(model, tokens, query, ["L1H2"], key) -> the answer with heads forced onto one key
                 (steered_logits: its logits)
    story        story.explain(model, text, space_run) -> the evidence on one example and claims written from it
    probe        probe_set(task) -> a fixed probe set; mechanism_metrics(model, probe) -> head roles, accuracy per
                 operation and the component whose zeroing costs the most (the Train page, at every snapshot)
    ablation     ablate(model, tokens, positions, [["L0H3"], ["L1.mlp"]], mean=...) -> many ablations, one pass;
                 model.evaluate(exprs, fwd_hooks=ablation_hooks(model, ["L0H3"])) -> accuracy with it off

    from model_core import interp, load_model
    model = load_model("digits-0-9")
    b = interp.batch(model, ["Max ( 5 3 9 )"])
    att = interp.attribute(model.transformer, b.tokens, b.answer_pos)
    dict(zip(att.names, att.diff[0]))          # each component's share of answer - strongest wrong token
"""

from . import input_space, story
from .ablation import (
    AblationResult,
    Component,
    ComponentError,
    ablate,
    ablation_hooks,
    every_component,
    mean_activations,
    parse_component,
)
from .attribution import FROZEN_NOTE, Attribution, attribute, component_writes, neuron_attribution
from .inputs import batch, roles
from .patching import (
    Patch,
    PatchedRun,
    PatchError,
    PatchSweep,
    attribution_patch_sweep,
    counterfactuals,
    patch_sweep,
    patched_logits,
    recovery,
    sweep_hooks,
)
from .steering import steer, steered_logits, steering_hooks

__all__ = [
    "FROZEN_NOTE", "AblationResult", "Attribution", "Component", "ComponentError", "Patch", "PatchError", "PatchSweep",
    "ablate", "ablation_hooks", "attribute", "attribution_patch_sweep", "batch", "component_writes",
    "counterfactuals", "every_component", "mean_activations", "neuron_attribution", "parse_component", "patch_sweep",
    "input_space", "story", "patched_logits", "PatchedRun", "recovery", "roles", "steer", "steered_logits",
    "steering_hooks", "sweep_hooks",
]  # fmt: skip

# (after the list above, which stays as it is)
from . import probe  # noqa: E402
from .probe import MechanismMetrics, mechanism_metrics, probe_set  # noqa: E402

__all__ += ["MechanismMetrics", "mechanism_metrics", "probe", "probe_set"]
