"""Read-outs of a run that the explainer draws, one module per stage of the model.

Each function takes arrays the model really computed (a cache from `run_with_cache`, its
parameters) and derives the quantity a page shows; none re-runs a stage with other maths.

    run         ExampleRun, run_example (one example, cached with gradients), ablate_heads
    embeddings  positional table, embedding summary, PCA, digit order
    attention   masks, strongest keys
    residual    residual-stream stages and norms, sublayer writes, LayerNorms, FFN neurons
    output      predictions, softmax with temperature, token losses, the logit lens
    gradients   gradient norms, 2-D views of gradients, one SGD step on a copy
"""

from .run import ExampleRun, ablate_heads, run_example

__all__ = ["ExampleRun", "ablate_heads", "run_example"]
