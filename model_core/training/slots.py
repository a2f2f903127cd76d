"""Training slots shared by every server process on one machine: lock files in one directory.

One Streamlit process keeps its own line of training jobs (training/queue.py), but behind the load balancer
(deploy/serve.py) N processes share the machine's cores, so a limit per process would let N jobs train at once.
With EXPLAINER_TRAINING_SLOTS_DIR set to a directory every process can write, a job also needs one of the
`queue.MAX_RUNNING_JOBS` slot files there, held with an exclusive `flock` for as long as it runs. The kernel lets
go of a lock when its holder's file is closed, so a process that dies (even by SIGKILL) frees its slots: nothing is
left to clean up and no slot can leak.

Without the variable every process has its own slots (the queue's count alone), as when the app runs as one
process. A directory that cannot be used is logged and ignored (the limit is then per process), so a typo cannot
stop the app from starting.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

ENV_VAR = "EXPLAINER_TRAINING_SLOTS_DIR"

log = logging.getLogger(__name__)


class Slot:
    """One held slot: its open, locked file. `release()` closes it (the lock goes with it); idempotent."""

    def __init__(self, index: int, fd: int) -> None:
        self.index, self._fd = index, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file drops its flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


class MachineSlots:
    """`n` slots as files `slot-0.lock` ... in `directory`; `try_acquire` never blocks."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def try_acquire(self, n: int) -> Slot | None:
        """A free slot among the first `n`, now held by this process; None if all `n` are held (here or elsewhere)."""
        for i in range(n):
            fd = os.open(self.directory / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except OSError:
                os.close(fd)
                raise
            return Slot(i, fd)
        return None

    def held(self, n: int) -> int:
        """How many of the first `n` slots are held now (by any process, this one included): a probe that takes
        and at once gives back each free one."""
        held = 0
        for i in range(n):
            fd = os.open(self.directory / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held += 1
            finally:
                os.close(fd)
        return held


def slots_from_env(environ=os.environ) -> MachineSlots | None:
    """The shared slots of EXPLAINER_TRAINING_SLOTS_DIR, or None (unset, empty, or a directory that cannot be used:
    logged)."""
    raw = environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        slots = MachineSlots(raw)
        slots.held(1)  # the directory is writable and flock works on it
        return slots
    except OSError as err:
        log.error("%s=%r cannot hold training slots (%s); each server process keeps its own limit.", ENV_VAR, raw, err)
        return None
