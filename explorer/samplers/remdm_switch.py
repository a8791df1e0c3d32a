"""ReMDM-switch (project page; no public code): cap-style sigma only once t < t_switch, zero before."""
from __future__ import annotations

from dataclasses import dataclass

from .base import StepTimes, _check_unit, sigma_max
from .remdm_eta import ReMDMEta


@dataclass
class ReMDMSwitch(ReMDMEta):
    eta: float = 0.02
    t_switch: float = 0.5
    name = "remdm-switch"

    def validate(self):
        super().validate()
        _check_unit("t_switch", self.t_switch, low_open=True)

    def sigma_t(self, st: StepTimes) -> float:
        return min(self.eta, sigma_max(st.alpha_t, st.alpha_s)) if st.t < self.t_switch else 0.0
