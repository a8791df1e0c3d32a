"""MDLM's ancestral sampler (reference §1.4): masked tokens unmask, unmasked tokens never change."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Rates, Sampler, SamplerState, StepTimes, mdlm_rates


@dataclass
class MDLM(Sampler):
    name = "mdlm"

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        return mdlm_rates(st)
