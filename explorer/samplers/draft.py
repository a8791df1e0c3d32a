"""The draft of a draft-then-correct strategy (Rescore, FiRe)."""
from __future__ import annotations

from .base import Sampler, sampler_from_config
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
