"""Forward-backward corrector (reference §2.6, [P] Proposition 1): sigma_t = (alpha_s - alpha_t) / alpha_t.

At the last step of the linear grid this sigma exceeds sigma_t^max (Delta t > s), so FB is not
exactly marginal-preserving there: upstream's mask weight for masked tokens goes negative and its
argmax never picks the mask, i.e. every masked token unmasks, while unmasked tokens are remasked
with probability Delta t / (1 - t) > s / (1 - t).  We reproduce that behaviour exactly (the
probabilities are clamped to [0, 1]); the masked fraction after the last step is then about
Delta t instead of s = 1e-5, and the final argmax pass (§1.8) fills those tokens greedily.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Rates, Sampler, SamplerState, StepTimes, remdm_rates


@dataclass
class ForwardBackward(Sampler):
    name = "forward-backward"
    remasks = True

    def sigma_t(self, st: StepTimes) -> float:
        if st.alpha_t <= 0.0:
            return 1.0
        return min(1.0, (st.alpha_s - st.alpha_t) / st.alpha_t)

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        sigma = self.sigma_t(st)
        return remdm_rates(st, sigma)
