"""Training: optimisers and the schedule, the trainer loop, and background jobs for the app.

    optim    SGD with momentum, Adam, AdamW; warm-up + cosine schedule; global-norm clipping
    trainer  the loop (`Trainer.run` yields StepMetrics and EvalMetrics), a callback-free generator
    job      TrainingJob: a background run for the Train page, its limits and snapshots
    worker   where a job's run happens: a worker process (the default) or the calling thread
    queue    the server's one trainer: at most MAX_RUNNING_JOBS jobs run at once, the rest wait in line
    memory   a job's estimated peak memory, and the budget that refuses the heaviest
"""
