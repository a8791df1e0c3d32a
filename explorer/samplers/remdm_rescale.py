"""ReMDM-rescale (reference §2.3): sigma_t = eta * sigma_t^max."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Rates, Sampler, SamplerState, StepTimes, _check_unit, remdm_unmask, sigma_max


@dataclass
class ReMDMRescale(Sampler):
    eta: float = 0.015
    name = "remdm-rescale"
    remasks = True

    def validate(self):
        _check_unit("eta", self.eta)

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        sigma = self.eta * sigma_max(st.alpha_t, st.alpha_s)
        return Rates(unmask=remdm_unmask(st.alpha_t, st.alpha_s, sigma), remask=sigma, sigma=sigma)
