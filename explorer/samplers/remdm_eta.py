"""The ReMDM variants stated by one schedule sigma_t from one setting eta (cap §2.2, rescale §2.3,
switch): each of their files gives its ``sigma_t``; the step's rates follow from it by §2.1."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Rates, Sampler, SamplerState, StepTimes, _check_unit, remdm_rates


@dataclass
class ReMDMEta(Sampler):
    """Base of the eta-only ReMDM variants: a decoded token is remasked with probability
    ``sigma_t(st)`` and a masked one unmasks with [alpha_s - (1 - sigma_t) alpha_t] / (1 - alpha_t).
    A subclass gives ``eta`` its default and defines ``sigma_t``."""
    eta: float
    remasks = True

    def validate(self):
        _check_unit("eta", self.eta)

    def sigma_t(self, st: StepTimes) -> float:
        raise NotImplementedError(f"{type(self).__name__} must define sigma_t(st).")

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        sigma = self.sigma_t(st)
        return remdm_rates(st, sigma)
