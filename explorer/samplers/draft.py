"""The draft of a draft-then-correct strategy (Rescore, FiRe)."""
from __future__ import annotations

from .base import Sampler, StepTimes, check_steps, sampler_from_config
from .mdlm import MDLM


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
