"""ReMDM-loop (reference §2.5): unmask to alpha_on, loop with constant sigma = eta, then finish.

Phases on the uniform grid of §1.3, decided by the current t only:

1. t > t_on: MDLM step on the re-mapped schedule alpha(t) = alpha_on (1 - t) / (1 - t_on);
2. t_off < t <= t_on: ReMDM step with alpha_s = alpha_t = alpha_on and sigma = eta;
3. t <= t_off: MDLM step on alpha(t) = 1 - t (1 - alpha_on) / t_off.

At T = 1024 with the defaults the phases take 461 / 512 / 51 steps.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Rates, Sampler, SamplerState, StepTimes, linear_grid, mdlm_rates, remdm_rates


@dataclass
class ReMDMLoop(Sampler):
    eta: float = 0.02          # eta: the constant sigma of the loop
    t_on: float = 0.55         # the loop starts when t falls to t_on ...
    t_off: float = 0.05        # ... and ends at t_off
    alpha_on: float = 0.9      # alpha held during the loop: the share unmasked
    name = "remdm-loop"
    remasks = True

    def validate(self):
        for k in ("eta", "t_on", "t_off", "alpha_on"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{k} must be a number, got {v!r}.")
        if not 0.0 < self.alpha_on < 1.0:
            raise ValueError(f"alpha_on={self.alpha_on} must be in (0, 1): it is the fraction unmasked during the loop.")
        if not 0.0 < self.t_off < self.t_on < 1.0:
            raise ValueError(f"need 0 < t_off < t_on < 1, got t_on={self.t_on}, t_off={self.t_off} "
                             "(the loop runs from t_on down to t_off).")
        bound = min(1.0, (1.0 - self.alpha_on) / self.alpha_on)
        if not 0.0 <= self.eta <= bound * (1 + 1e-12):       # at the bound exactly, despite rounding
            raise ValueError(f"eta={self.eta} is outside [0, {bound:.4g}]: in the loop sigma <= "
                             "(1 - alpha_on) / alpha_on keeps the posterior valid (§2.1).")

    def _alpha(self, t: float) -> float:
        if t > self.t_on:
            return self.alpha_on * (1.0 - t) / (1.0 - self.t_on)
        return 1.0 - t * (1.0 - self.alpha_on) / self.t_off

    def grid(self, steps: int) -> list[StepTimes]:
        out = []
        for i, t, s in linear_grid(steps):
            if t > self.t_on:       # phase 1; alpha_s keeps the phase-1 formula (slight overshoot)
                out.append(StepTimes(i, t, s, self._alpha(t), self.alpha_on * (1.0 - s) / (1.0 - self.t_on), "unmask"))
            elif t > self.t_off:    # phase 2
                out.append(StepTimes(i, t, s, self.alpha_on, self.alpha_on, "loop"))
            else:                   # phase 3
                out.append(StepTimes(i, t, s, self._alpha(t), 1.0 - s * (1.0 - self.alpha_on) / self.t_off, "finish"))
        return out

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        if st.phase == "loop":
            return remdm_rates(st, self.eta)
        return mdlm_rates(st)
