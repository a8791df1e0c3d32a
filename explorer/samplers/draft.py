"""Draft-then-correct strategies (Rescore, FiRe): a draft sampler's steps, then correction rounds.

:class:`DraftThenCorrect` holds what they share -- the draft setting, the grid of draft steps and
rounds (:func:`draft_plan`), handing the draft its own steps -- so a strategy's file states only its
rounds (``correct``) and its settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import Sampler, StepTimes, check_steps, sampler_from_config
from .mdlm import MDLM
from .settings import check_positive_int
from .step import Decision


def resolve_draft(owner: Sampler, draft) -> Sampler:
    """The draft sampler of a draft-then-correct strategy (Rescore, FiRe): a sampler, its config, or
    None for MDLM with the owner's nucleus; refused when it is not a sampler or is the same kind."""
    if isinstance(draft, dict):
        draft = sampler_from_config(draft)
    if draft is None:
        draft = MDLM(nucleus_p=owner.nucleus_p)
    if not isinstance(draft, Sampler):
        raise ValueError(f"draft must be a sampler (e.g. MDLM() or ReMDMLoop()), got {type(draft).__name__}; "
                         "build one by name with explorer.samplers.by_name().")
    if type(draft) is type(owner):
        raise ValueError(f"draft must not itself be {type(owner).__name__}: raise rounds= instead.")
    return draft


def draft_plan(draft: Sampler, steps: int, rounds: int, phase: str, every: int | None = None
               ) -> list[tuple[StepTimes, StepTimes | None]]:
    """The grid of a draft-then-correct strategy: (grid step, the draft's own step, or None for a
    correction round).  The draft's steps keep their times and phases, renumbered; ``every=k`` puts
    a round after every k-th draft step (not after the last), and ``rounds`` rounds follow the draft."""
    check_steps(steps)
    own = draft.grid(steps)
    plan: list[tuple[StepTimes, StepTimes | None]] = []
    for k, st in enumerate(own, 1):
        plan.append((StepTimes(len(plan) + 1, st.t, st.s, st.alpha_t, st.alpha_s, st.phase), st))
        if every and k % every == 0 and k < len(own):
            plan.append((StepTimes(len(plan) + 1, st.s, st.s, st.alpha_s, st.alpha_s, phase), None))
    for _ in range(rounds):
        plan.append((StepTimes(len(plan) + 1, 0.0, 0.0, 1.0, 1.0, phase), None))
    return plan


@dataclass
class DraftThenCorrect(Sampler):
    """A draft (MDLM unless ``draft=`` another sampler) then correction rounds.  A subclass declares
    the setting ``rounds`` (the rounds after the draft), names their phase in ``round_phase``, and
    states its rule in :meth:`correct`; one with a setting ``every`` also runs a round after every
    k-th draft step (:func:`draft_plan`)."""
    draft: Sampler | dict | None = None
    _grids: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    round_phase: ClassVar[str] = "correct"
    every = None     # no rounds inside the draft unless a subclass makes this a setting (Rescore)

    def validate(self):
        self.draft = resolve_draft(self, self.draft)
        check_positive_int("rounds", self.rounds, allow_zero=True)

    @property
    def config(self) -> dict:
        cfg = super().config
        cfg.pop("_grids", None)
        cfg["draft"] = self.draft.config
        return cfg

    def check_shape(self, gen_length: int, steps: int) -> None:
        self.draft.check_shape(gen_length, steps)

    def _plan(self, steps: int) -> list[tuple[StepTimes, StepTimes | None]]:
        """(grid step, the draft's own step or None for a correction round), memoised per T."""
        if steps not in self._grids:
            plan = draft_plan(self.draft, steps, self.rounds, self.round_phase, self.every)
            self._grids = {steps: plan}
        return self._grids[steps]

    def grid(self, steps: int) -> list[StepTimes]:
        return [g for g, _ in self._plan(steps)]

    def step(self, ctx) -> Decision:
        plan = self._plan(ctx.num_steps)
        own = plan[ctx.st.step - 1][1]
        if own is not None:
            return self.draft.step(_AsStep(ctx, own))
        return self.correct(ctx, ctx.st.step - (len(plan) - self.rounds) - 1)

    def correct(self, ctx, k: int) -> Decision:
        """Correction round k of the ``rounds`` after the draft (0 first); k < 0 for a round inside the
        draft (``every``)."""
        raise NotImplementedError(f"{type(self).__name__} must define correct(ctx, k).")


class _AsStep:
    """The context as the draft sees it: its own step of its own grid (random streams stay the run's)."""

    def __init__(self, ctx, st: StepTimes):
        self._ctx, self.st = ctx, st

    @property
    def step(self) -> StepTimes:
        return self.st

    def __getattr__(self, name):
        return getattr(self._ctx, name)
