"""ReMDM-cap (reference §2.2): sigma_t = min(eta, (1 - alpha_s) / alpha_t), and eta at the first step."""
from __future__ import annotations

from dataclasses import dataclass

from .base import StepTimes, sigma_max
from .remdm_eta import ReMDMEta


@dataclass
class ReMDMCap(ReMDMEta):
    eta: float = 0.008
    name = "remdm-cap"

    def sigma_t(self, st: StepTimes) -> float:
        return min(self.eta, sigma_max(st.alpha_t, st.alpha_s))
