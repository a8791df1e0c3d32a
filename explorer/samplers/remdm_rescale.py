"""ReMDM-rescale (reference §2.3): sigma_t = eta * sigma_t^max."""
from __future__ import annotations

from dataclasses import dataclass

from .base import StepTimes, sigma_max
from .remdm_eta import ReMDMEta


@dataclass
class ReMDMRescale(ReMDMEta):
    eta: float = 0.015
    name = "remdm-rescale"

    def sigma_t(self, st: StepTimes) -> float:
        return self.eta * sigma_max(st.alpha_t, st.alpha_s)
