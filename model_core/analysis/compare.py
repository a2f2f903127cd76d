"""Two examples through one model, stage by stage: where their runs part.

Positions are matched by role (`interp.inputs.roles`: "op", "v2.tens", "=", "ans.0", ...), so two examples of
different lengths (values of one and two digits) are still compared where they mean the same thing. Every
number is computed from the two runs' caches; nothing is run again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..interp.inputs import roles
from ..task_model import TaskModel
from .residual import residual_stages
from .run import ExampleRun

NOTICEABLE = 0.1  # a relative difference at least this large is "noticeable": 10% of the larger vector's norm


@dataclass(frozen=True)
class Parting:
    """Where two runs differ: the residual stream at each stage, at each position both runs have."""

    stages: list[str]  # residual stages in order ("embed + pos", "block 0 mid", ...)
    roles: list[str]  # [P] the matched positions' role, in the first run's order
    pos_a: list[int]  # [P] their index in the first run
    pos_b: list[int]  # [P] ... and in the second
    tokens_a: list[str]  # [P] the token each run reads there
    tokens_b: list[str]
    relative: np.ndarray  # [stages, P] |a - b| / max(|a|, |b|): 0 identical, up to 2 (opposite)
    same_layout: bool  # both runs have the same roles at the same indices (a position-wise difference exists)
    only_a: list[str]  # roles only the first run has (e.g. "v3.tens" when its third value has two digits)
    only_b: list[str]

    def first_noticeable(self, threshold: float = NOTICEABLE, among: list[int] | None = None):
        """(stage index, matched index) of the earliest stage, then the first position, where the relative
        difference reaches `threshold` (restricted to the matched indices `among`); None if nowhere."""
        cols = list(range(len(self.roles))) if among is None else among
        for s in range(len(self.stages)):
            for p in cols:
                if self.relative[s, p] >= threshold:
                    return s, p
        return None


def parting(model: TaskModel, a: ExampleRun, b: ExampleRun) -> Parting:
    """Compare two runs of `model` at every residual stage and at every position whose role both have."""
    net = model.transformer
    roles_a, roles_b = _numbered(roles(model, a.tokens)), _numbered(roles(model, b.tokens))
    where_b = {r: i for i, r in enumerate(roles_b)}
    pos_a = [i for i, r in enumerate(roles_a) if r in where_b]
    pos_b = [where_b[roles_a[i]] for i in pos_a]
    unmatched_a = [r for r in roles_a if r not in where_b]
    unmatched_b = [r for r in roles_b if r not in set(roles_a)]
    stages_a, stages_b = residual_stages(net, a.cache), residual_stages(net, b.cache)
    rel = np.zeros((len(stages_a), len(pos_a)))
    for s, ((_, xa), (_, xb)) in enumerate(zip(stages_a, stages_b, strict=True)):
        va, vb = xa[pos_a].astype(np.float64), xb[pos_b].astype(np.float64)  # [P, d_model]
        scale = np.maximum(np.linalg.norm(va, axis=-1), np.linalg.norm(vb, axis=-1))
        rel[s] = np.linalg.norm(va - vb, axis=-1) / np.where(scale > 0, scale, 1.0)
    same = roles_a == roles_b
    return Parting([name for name, _ in stages_a], [roles_a[i] for i in pos_a], pos_a, pos_b,
                   [a.labels[i] for i in pos_a], [b.labels[j] for j in pos_b], rel, same, unmatched_a,
                   unmatched_b)  # fmt: skip


def _numbered(names: list[str]) -> list[str]:
    """Roles made unique in order: the second "," becomes ",#2" (the first keeps its name)."""
    seen: dict[str, int] = {}
    out = []
    for r in names:
        seen[r] = seen.get(r, 0) + 1
        out.append(r if seen[r] == 1 else f"{r}#{seen[r]}")
    return out


def parting_text(p: Parting, answer_role: str = "=") -> str:
    """Plain words for where the two runs part, true of these two runs (Markdown: tokens in backticks)."""
    differ = [k for k in range(len(p.roles)) if p.tokens_a[k] != p.tokens_b[k]]
    parts = []
    if differ:
        listed = ", ".join(f"{p.roles[k]} (`{p.tokens_a[k]}` vs `{p.tokens_b[k]}`)" for k in differ)
        parts.append(f"The two inputs differ at {len(differ)} position{'s' if len(differ) != 1 else ''}: {listed}.")
    else:
        parts.append("The two runs read the same tokens at every position both have.")
    if p.only_a or p.only_b:
        extra = "; ".join(f"only the {which} has {', '.join(only)}" for which, only in
                          (("first", p.only_a), ("second", p.only_b)) if only)  # fmt: skip
        parts.append(f"Their values have different numbers of digits ({extra}), so the same role sits at another "
                     "position in each and its positional encoding differs too.")  # fmt: skip
    same_token = [k for k in range(len(p.roles)) if k not in differ]
    first = p.first_noticeable(among=same_token)
    pct = f"{NOTICEABLE:.0%}"
    if first is None:
        parts.append(f"At every position that reads the same token, the residual stream stays within {pct} at "
                     "every stage: the difference never reaches them noticeably.")  # fmt: skip
    else:
        s, k = first
        parts.append(f"Among positions that read the same token, the runs first part noticeably (at least {pct} of "
                     f"the stream's norm) after **{p.stages[s]}**, at position {p.pos_a[k]} (`{p.tokens_a[k]}`): "
                     f"{p.relative[s, k]:.0%}.")  # fmt: skip
    if answer_role in p.roles:
        k = p.roles.index(answer_role)
        at = p.first_noticeable(among=[k])
        if at is None:
            parts.append(f"At `{answer_role}`, where the answer is read, they stay within {pct} at every stage.")
        elif k in same_token:
            parts.append(f"At `{answer_role}`, where the answer is read, they first part after "
                         f"**{p.stages[at[0]]}** ({p.relative[at[0], k]:.0%}); at the last stage the difference is "
                         f"{p.relative[-1, k]:.0%}.")  # fmt: skip
    return " ".join(parts)
