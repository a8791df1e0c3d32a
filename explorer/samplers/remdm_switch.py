"""ReMDM-switch (project page; no public code): cap-style sigma only once t < t_switch, zero before."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Rates, Sampler, SamplerState, StepTimes, _check_unit, remdm_unmask, sigma_max


@dataclass
class ReMDMSwitch(Sampler):
    eta: float = 0.02
    t_switch: float = 0.5
    name = "remdm-switch"
    remasks = True

    def validate(self):
        _check_unit("eta", self.eta)
        _check_unit("t_switch", self.t_switch, low_open=True)

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        sigma = min(self.eta, sigma_max(st.alpha_t, st.alpha_s)) if st.t < self.t_switch else 0.0
        return Rates(unmask=remdm_unmask(st.alpha_t, st.alpha_s, sigma), remask=sigma, sigma=sigma)
