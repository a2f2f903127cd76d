"""model_core: a transformer written from scratch in NumPy that can be opened up.

Everything the explainer shows is computed here; nothing here imports Streamlit.

The public API
--------------
Build a model::

    from model_core import ModelConfig, Transformer, TaskConfig, TaskModel
    net = Transformer(ModelConfig())                 # the original: 2 blocks, 4 heads, d_model 64
    model = TaskModel.new(TaskConfig(max_value=99), causal=True, norm="pre")

Look inside (hook names and meanings as in TransformerLens; every hook is listed in docs/hooks.md)::

    logits, cache = net.run_with_cache(tokens)       # tokens [batch, pos] int
    cache["blocks.0.attn.hook_pattern"]              # [batch, head, q_pos, k_pos]
    logits, cache = net.run_with_cache(tokens, targets=targets, grads=True)
    cache["blocks.1.hook_resid_post_grad"], cache.loss, cache.param_grads
    net.run_with_hooks(tokens, [("blocks.1.attn.hook_z", fn)])  # fn(act, hook) -> None or a replacement
    cache["blocks.0.attn.hook_result"]               # [batch, pos, head, d_model]: each head's write

Why it answers so (direct logit attribution, roles of positions; see model_core.interp)::

    from model_core import interp
    att = interp.attribute(net, tokens, positions)   # att.names, att.logit / att.diff [n, components]

Answer an expression (a causal model writes its answer token by token)::

    model = load_model("digits-0-9")                 # a shipped model, or a checkpoint path
    model.answer("Max ( 5 3 9 )").value              # 9
    parse_expression("max(5, 3, 9)")                 # Expression("Max", (5, 3, 9)); else ParseError

Tasks and training::

    splits = make_splits(TaskConfig(), seed=0)       # train/val/test by distinct expression
    trainer = Trainer(model, TrainConfig(steps=1000))
    for event in trainer.run(stop_event): ...        # StepMetrics / EvalMetrics as it goes
"""

from .checkpoint import CheckpointError
from .config import ConfigError, ModelConfig, TrainConfig
from .model import Transformer
from .store import load_model, shipped_names
from .task import OPERATIONS, Expression, ExpressionSet, TaskConfig, TaskError, enumerate_all, make_splits
from .task.parser import ParseError, parse_expression
from .task.vocab import DEFAULT_VOCAB, Vocabulary
from .task_model import Answer, TaskModel
from .training.trainer import EvalMetrics, StepMetrics, Trainer, TrainResult

__all__ = [
    "Answer", "CheckpointError", "ConfigError", "DEFAULT_VOCAB", "EvalMetrics", "Expression", "ExpressionSet",
    "ModelConfig", "OPERATIONS", "ParseError", "StepMetrics", "TaskConfig", "TaskError", "TaskModel",
    "TrainConfig", "Trainer", "TrainResult", "Transformer", "Vocabulary", "enumerate_all", "load_model",
    "make_splits", "parse_expression", "shipped_names",
]  # fmt: skip
