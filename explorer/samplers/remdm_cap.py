"""ReMDM-cap (reference §2.2): sigma_t = min(eta, (1 - alpha_s) / alpha_t), and eta at the first step."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Rates, Sampler, SamplerState, StepTimes, _check_unit, remdm_unmask, sigma_max


@dataclass
class ReMDMCap(Sampler):
    eta: float = 0.008
    name = "remdm-cap"
    remasks = True

    def validate(self):
        _check_unit("eta", self.eta)

    def sigma_t(self, st: StepTimes) -> float:
        return min(self.eta, sigma_max(st.alpha_t, st.alpha_s))

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        sigma = self.sigma_t(st)
        return Rates(unmask=remdm_unmask(st.alpha_t, st.alpha_s, sigma), remask=sigma, sigma=sigma)
