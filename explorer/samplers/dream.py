"""Dream's ``diffusion_generate`` (reference §4.2): four algorithms as one sampler, ``alg=...``.

Time grid t_i = linspace(1, eps, steps + 1) (float32, as upstream); step i goes from t = t_i to
s = t_{i+1}.  Tokens come from ``sample_tokens``: logits / temperature (if T > 0), Dream's top-p
(it keeps the token that crosses p, unlike the MDLM nucleus of §1.5), top-k, softmax in the logits
dtype; T > 0 draws x0 from it, T = 0 takes the argmax.

* ``origin``: every masked position unmasks with probability 1 - s/t (1 at the last step) and
  draws its token; no ranking.
* ``maskgit_plus`` / ``topk_margin`` / ``entropy``: confidence = p[x0] / top1 - top2 /
  sum p log(p + 1e-10) (higher = more confident); a row with M masked tokens decodes
  n = int(M (1 - s/t)) of them (all at the last step): the n most confident, or with
  ``alg_temp > 0`` n positions drawn without replacement with weights softmax(confidence / alg_temp)
  (as ``torch.multinomial``; here by Gumbel-top-n, the same law).

The trace's ``prob`` is the confidence the algorithm ranked by: p[x0] for ``origin`` and
``maskgit_plus``, the margin for ``topk_margin``, and for ``entropy`` exp(sum p log p) = exp(-H),
a number in (0, 1] that orders positions exactly as the negative entropy does (a trace keeps
probabilities; 1 / exp(-H) is the perplexity of the position's p(x0)).

Deliberate choices (§4.2 quirks):

* **n is per row.**  Upstream averages the masked count over the batch (L437), so a row's
  schedule depends on the other rows; here each row uses its own count, the engine's promise
  that sample i depends only on (seed, i).  With one prompt and no padding every row has the
  same count, so nothing changes.
* **the mask token is never drawn** (weight zero before the softmax), as everywhere in the engine.
* **model calls**: upstream calls the model at every step; a step here that unmasks nothing
  (no coin landed for ``origin``, or n = 0 when there are more steps than tokens) leaves the
  canvas unchanged and the next is answered from the engine's cache, so such runs cost fewer
  calls than ``expected_calls`` (upstream's count, an upper bound) with the same tokens.
* Fast-dLLM's threshold decoding and the logits hook are not offered.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import rng
from .base import StepTimes, _check_unit
from .categorical import sample_rows
from .ranked import RankedSampler, StepPlan, top_n
from .settings import check_positive_int, check_temperature, choice

ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")


def top_p_logits(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Dream's top-p: drop tokens after the one whose cumulative probability crosses ``top_p``."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
    drop = cum > top_p
    drop[..., 1:] = drop[..., :-1].clone()
    drop[..., 0] = False
    drop = torch.zeros_like(drop).scatter_(-1, order, drop)
    return logits.masked_fill(drop, torch.finfo(logits.dtype).min)


def top_k_logits(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of each row."""
    kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


@dataclass
class DreamSampler(RankedSampler):
    alg: str = choice("origin", ALGS)
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    alg_temp: float | None = None
    eps: float = 1e-3
    name = "dream"

    def validate(self):
        if self.alg not in ALGS:
            raise ValueError(f"unknown Dream alg {self.alg!r}; choose one of {', '.join(ALGS)} "
                             "(Dream's README uses 'entropy').")
        check_temperature(self.temperature)
        if self.top_p is not None:
            _check_unit("top_p", self.top_p, low_open=True)
        check_positive_int("top_k", self.top_k, allow_none=True)
        if self.alg_temp is not None:
            if isinstance(self.alg_temp, bool) or not isinstance(self.alg_temp, (int, float)) \
                    or math.isnan(self.alg_temp) or self.alg_temp < 0:
                raise ValueError(f"alg_temp must be a number >= 0 (0 or None: the most confident positions; "
                                 f"> 0: positions drawn with weights softmax(confidence / alg_temp)), "
                                 f"got {self.alg_temp!r}.")
            if self.alg == "origin" and self.alg_temp:
                raise ValueError("alg_temp has no effect with alg='origin' (it ranks nothing); use "
                                 "alg='maskgit_plus', 'topk_margin' or 'entropy', or drop alg_temp.")
        _check_unit("eps", self.eps, low_open=True)
        if self.eps >= 1:
            raise ValueError(f"eps={self.eps} must be in (0, 1): the grid runs from t = 1 down to eps.")
        if self.nucleus_p != 1.0:
            raise ValueError("DreamSampler filters with top_p (Dream's rule); leave nucleus_p at 1.0.")

    @property
    def needs_confidence(self) -> bool:
        return self.alg != "origin"

    def grid(self, steps: int) -> list[StepTimes]:
        ts = torch.linspace(1.0, self.eps, steps + 1, dtype=torch.float32).double().tolist()
        return [StepTimes(i + 1, ts[i], ts[i + 1], 1.0 - ts[i], 1.0 - ts[i + 1], "dream") for i in range(steps)]

    @staticmethod
    def _transfer(st: StepTimes) -> torch.Tensor:
        """1 - s/t in float32, as upstream's 0-d tensors."""
        t = torch.tensor(st.t, dtype=torch.float32)
        return 1 - torch.tensor(st.s, dtype=torch.float32) / t

    def plan(self, st, masked, gen_start, gen_length, steps) -> StepPlan:
        n_masked = masked[:, gen_start:gen_start + gen_length].sum(-1)
        if st.step == steps:         # the last step decodes everything left
            return StepPlan(gen_start, gen_start + gen_length, n_masked, p_unmask=1.0)
        p = self._transfer(st)
        n = (n_masked.float() * p.to(n_masked.device)).floor().long()
        return StepPlan(gen_start, gen_start + gen_length, n, p_unmask=float(p))

    def draw(self, logits, mask_id, uniforms):
        logits = logits.clone()
        logits[:, mask_id] = -torch.inf
        if self.temperature > 0:
            logits = logits / self.temperature
        if self.top_p is not None and self.top_p < 1:
            logits = top_p_logits(logits, self.top_p)
        if self.top_k is not None:
            logits = top_k_logits(logits, self.top_k)
        p = torch.softmax(logits, dim=-1)                 # the logits dtype, as upstream
        if self.temperature > 0:
            token = sample_rows(p.double(), uniforms.one(rng.TOKEN))
            conf = p.gather(-1, token[:, None]).squeeze(-1)
        else:
            conf, token = p.max(-1)
        if self.alg == "topk_margin":
            top2 = torch.topk(p, 2, dim=-1).values
            conf = top2[:, 0] - top2[:, 1]
        elif self.alg == "entropy":
            conf = (p * torch.log(p + 1e-10)).sum(-1)
        return token, conf.double()

    def recorded_prob(self, confidence):
        return confidence.exp() if self.alg == "entropy" else confidence

    def select(self, score, eligible, plan, st, uniforms):
        if self.alg == "origin":     # an independent coin per masked position (score is not needed)
            return eligible & (uniforms(rng.UNMASK) < plan.p_unmask)
        if self.alg_temp:            # Gumbel-top-n = n draws without replacement from softmax(score / alg_temp)
            gumbel = -torch.log(-torch.log(uniforms(rng.RANK)))
            score = score / self.alg_temp + gumbel
        return top_n(score, eligible, plan.n_decode)
