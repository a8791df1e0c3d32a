"""ReMDM-conf (reference §2.4): per-position sigma from the confidence of each decoded token.

sigma_t^(l) = eta_conf^(l) * sigma_t^max with eta_conf = softmax over the unmasked positions of
-psi^(l), psi^(l) being p(x0) of the token at the step it was last decoded.  Masked positions get
sigma = 0, i.e. the plain MDLM unmask probability.  Low-confidence tokens are remasked more often.

A token this sampler did not write has no psi (nan: planted by ``resume(replace=...)``): it gets
weight 0 and is never remasked, as a position upstream never wrote keeps ``conf = -inf``; the
softmax runs over the other decoded tokens, whose remasking goes on as without it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Rates, Sampler, SamplerState, StepTimes, mdlm_unmask, sigma_max


@dataclass
class ReMDMConf(Sampler):
    name = "remdm-conf"
    remasks = True
    ranks_written_confidence = True

    def eta_conf(self, state: SamplerState) -> torch.Tensor:
        """Softmax over unmasked positions of -psi; zero at masked, fixed and unknown-psi positions."""
        eligible = ~state.masked & ~state.fixed & ~state.token_prob.isnan()
        score = torch.where(eligible, -state.token_prob.double(), torch.full_like(state.token_prob, -torch.inf, dtype=torch.float64))
        eta = torch.softmax(score, dim=-1)
        return torch.where(eligible, eta, torch.zeros_like(eta)).nan_to_num(0.0)

    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        smax = sigma_max(st.alpha_t, st.alpha_s)
        return Rates(unmask=mdlm_unmask(st.alpha_t, st.alpha_s), remask=self.eta_conf(state) * smax,
                     sigma=smax)
