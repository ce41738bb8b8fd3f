"""The plan of one training group: which member index is which (trial, seed, role).

A *group* trains, at once, every (trial, seed) distilled student of one architecture plus the
scratch baseline of each seed not trained before for that architecture. :class:`GroupPlan`
is the only place that maps a member index of the group to (trial, seed, role); nothing else
does index arithmetic on the member dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bench.tasks import TaskData
from bench.teachers import PreparedTeacher
from kdcore import Member

__all__ = ["GroupPlan", "GroupSpec", "Role", "Slot", "TrialConfig"]


@dataclass(frozen=True)
class GroupSpec:
    """What a training group is, whatever it trains: the run and task it belongs to, its
    teacher, the architecture (of ``family``) and searched recipe values its members share,
    their seeds and the phase (``search`` or ``certify``)."""

    run_id: str
    task: TaskData
    teacher: PreparedTeacher
    family: str
    arch: dict[str, int | float]
    seeds: tuple[int, ...]
    phase: str
    recipe: dict[str, float] = field(default_factory=dict)  # [search] lr, … (empty: none)
    level: float = 0.05  # certification: the one-sided level of the round's bounds
    forms: tuple[str, ...] = ("fp32",)  # certification: [ship] forms, each evaluated
    calibration_rows: int = 256  # int8_static: training rows its activation ranges come from
    checkpoints: str = ""  # streamed path: the folder its members checkpoint in ("": none)


class Role(StrEnum):
    DISTILLED = "distilled"
    SCRATCH = "scratch"
    GENERALIST = "generalist"  # same trial and seed, taught by a specialist system's generalist
    FULL = "full_scratch"  # a scratch baseline on the whole training split ([transfer] subset)


@dataclass(frozen=True)
class TrialConfig:
    """What a trial adds to its group's architecture: its number, T and alpha."""

    trial: int
    temperature: float
    alpha: float

    @classmethod
    def of(cls, number: int, params: Mapping[str, Any]) -> TrialConfig:
        """The config of an Optuna trial's ``params``, recorded as trial ``number`` (a
        certification trial records the search trial it certifies)."""
        return cls(number, float(params["temperature"]), float(params["alpha"]))


@dataclass(frozen=True)
class Slot:
    """Member ``index`` of a group: a distilled student of ``trial``, a scratch baseline, or
    the trial's student taught by the generalist alone (teacher 1)."""

    index: int
    role: Role
    seed: int
    trial: int | None = None
    temperature: float = 1.0
    alpha: float = 0.0

    def member(self) -> Member:
        teacher = 1 if self.role is Role.GENERALIST else 0
        return Member(self.seed, self.temperature, self.alpha, teacher)


@dataclass(frozen=True)
class GroupPlan:
    """Member index ↔ (trial, seed, role) of one training group."""

    slots: tuple[Slot, ...]

    @classmethod
    def build(
        cls,
        configs: Sequence[TrialConfig],
        seeds: Sequence[int],
        scratch_seeds: Sequence[int],
        generalist: bool = False,
        full_scratch: bool = False,
    ) -> GroupPlan:
        slots: list[Slot] = []
        roles = (Role.DISTILLED, Role.GENERALIST) if generalist else (Role.DISTILLED,)
        for role in roles:
            for c in configs:
                for s in seeds:
                    slots.append(Slot(len(slots), role, s, c.trial, c.temperature, c.alpha))
        for role in (Role.SCRATCH, Role.FULL) if full_scratch else (Role.SCRATCH,):
            for s in scratch_seeds:
                slots.append(Slot(len(slots), role, s))
        return cls(tuple(slots))

    def members(self) -> list[Member]:
        return [s.member() for s in self.slots]

    def distilled(self, trial: int, role: Role = Role.DISTILLED) -> list[Slot]:
        return [s for s in self.slots if s.role is role and s.trial == trial]

    def scratch(self, role: Role = Role.SCRATCH) -> list[Slot]:
        return [s for s in self.slots if s.role is role]

    def __len__(self) -> int:
        return len(self.slots)
