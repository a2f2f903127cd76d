"""Task models to and from checkpoint files, and the shipped models by name."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .task import TaskConfig, TaskError
from .task.vocab import Vocabulary
from .task_model import TaskModel

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
SUFFIX = ".safetensors"


def shipped_names() -> list[str]:
    """Names of the models in `pretrained/`, e.g. ["digits-0-9", "digits-0-99"]."""
    return sorted(p.name[: -len(SUFFIX)] for p in PRETRAINED_DIR.glob("*" + SUFFIX))


def to_bytes(model: TaskModel, path: str | Path | None = None, optimizer_state: dict | None = None) -> bytes:
    """The model as checkpoint bytes (also written to `path` if given)."""
    return save_checkpoint(
        model.transformer,
        vocab_tokens=model.vocab.to_list(),
        task=model.task.to_dict(),
        train_config=model.train_config.to_dict() if model.train_config else None,
        metrics=model.metrics,
        name=model.name,
        optimizer_state=optimizer_state,
        path=path,
    )


def from_checkpoint(source: str | Path | bytes, name: str | None = None) -> TaskModel:
    """Load and validate a checkpoint file (path or bytes); CheckpointError says what is wrong."""
    ckpt = load_checkpoint(source)
    try:
        vocab = Vocabulary.from_list(ckpt.vocab_tokens)
        task = TaskConfig.from_dict(ckpt.task)
        train = TrainConfig.from_dict(ckpt.train_config) if ckpt.train_config else None
        return TaskModel(ckpt.model, vocab, task, name or ckpt.name, train, dict(ckpt.metrics))
    except (ConfigError, TaskError, ValueError, TypeError) as err:
        raise CheckpointError(f"The checkpoint's metadata is not usable: {err}") from None


def load_model(name_or_path: str | Path) -> TaskModel:
    """A shipped model by name (see `shipped_names`) or any checkpoint file by path."""
    text = str(name_or_path)
    if text in shipped_names():
        return from_checkpoint(PRETRAINED_DIR / (text + SUFFIX), name=text)
    path = Path(text)
    if not path.exists():
        known = ", ".join(shipped_names()) or "none yet"
        raise CheckpointError(f"No shipped model or file named {text!r}. Shipped models: {known}.")
    return from_checkpoint(path, name=path.stem)
