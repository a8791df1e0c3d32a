"""DFM corrector (reference §2.6; Gat et al. 2024, App. D): adaptive steps, sigma = b_t (alpha_s - alpha_t) / alpha_t.

a_t = 10 t^0.25 (1 - t)^0.25 + 1, b_t = a_t - 1.  The first step (t = 1) is a plain MDLM step of
size 1/T; later steps have size min(1/T, 1 / (a_t / t + b_t / (1 - t))), so the grid is longer
than T near t = 1 and t = 0.  It runs while t > (1 - 1e-5) / T.  Unlike upstream it also works
with nucleus_p = 1 (upstream crashes there).
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import EPS_S, Rates, Sampler, SamplerState, StepTimes, check_steps, mdlm_rates, remdm_rates


def _a(t: float) -> float:
    return 10.0 * t ** 0.25 * (1.0 - t) ** 0.25 + 1.0


@dataclass
class DFMCorrector(Sampler):
    name = "dfm"
    remasks = True

    def grid(self, steps: int) -> list[StepTimes]:
        check_steps(steps)
        out, t, i = [], 1.0, 1
        while t > (1.0 - EPS_S) / steps:
            if t >= 1.0:
                dt, phase = 1.0 / steps, "mdlm"
            else:
                a = _a(t)
                dt, phase = min(1.0 / steps, 1.0 / (a / t + (a - 1.0) / (1.0 - t))), "corrector"
            s = t - dt
            out.append(StepTimes(i, t, s, 1.0 - t, 1.0 - s, phase))
            t, i = s, i + 1
        return out

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        if st.phase == "mdlm":
            return mdlm_rates(st)
        b = _a(st.t) - 1.0
        sigma = min(1.0, max(0.0, b * (st.alpha_s / st.alpha_t - 1.0)))
        return remdm_rates(st, sigma)
