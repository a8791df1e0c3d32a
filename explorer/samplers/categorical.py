"""p(x0) from logits (SUBS, §1.2), nucleus filtering (§1.5) and exact float64 categorical draws (§1.6)."""
from __future__ import annotations

import torch


def subs_probs(logits: torch.Tensor, mask_id: int, temperature: float = 1.0) -> torch.Tensor:
    """p(x0) at masked positions: softmax of the logits with the mask class forced to zero (SUBS).

    Carry-over (the one-hot at unmasked positions) is applied by the engine, which only ever
    draws tokens at masked positions.  Computed in float32; ``temperature=0`` gives a one-hot argmax.
    """
    logits = logits.float().clone()
    logits[..., mask_id] = -torch.inf
    if temperature == 0:
        out = torch.zeros_like(logits)
        return out.scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    if temperature != 1.0:
        logits = logits / temperature
    return torch.softmax(logits, dim=-1)


def nucleus(p: torch.Tensor, top_p: float) -> torch.Tensor:
    """Upstream top-p (§1.5): keep entries whose descending cumulative sum is <= top_p, always the
    top-1; zero the rest and renormalise.  Unlike HF, the token that crosses top_p is dropped.

    Returns float64.  ``top_p = 1`` returns ``p`` renormalised in float64.
    """
    p = p.double()
    if top_p >= 1.0:
        return p / p.sum(-1, keepdim=True)
    sorted_p, order = torch.sort(p, dim=-1, descending=True)
    keep_sorted = sorted_p.cumsum(-1) <= top_p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    q = torch.where(keep, p, torch.zeros_like(p))
    return q / q.sum(-1, keepdim=True)


def sample_rows(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Draw one category per row of the (unnormalised, float64) weights ``p`` by inverse CDF.

    ``u`` are float64 uniforms in (0, 1), one per row.  Exact in distribution up to float64
    rounding; a zero-weight category is never returned.
    """
    cdf = p.double().cumsum(-1)
    target = (u.double() * cdf[..., -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return idx.clamp_(max=p.shape[-1] - 1)


def draw_tokens(logits: torch.Tensor, mask_id: int, nucleus_p: float, u: torch.Tensor, topk: int,
                temperature: float = 1.0):
    """Draw a token per row: SUBS, nucleus, float64 inverse CDF.  Returns (token, its prob, top-k ids,
    top-k probs).

    The prob returned (recorded, and ReMDM-conf's psi) is the post-nucleus p(x0), as upstream; with a
    temperature the draw uses p^(1/T) but the prob is still read from the untempered p(x0).
    """
    p = subs_probs(logits, mask_id)
    q = nucleus(p if temperature == 1.0 else subs_probs(logits, mask_id, temperature), nucleus_p)
    token = sample_rows(q, u)
    pq = nucleus(p, nucleus_p) if temperature != 1.0 else q
    prob = pq.gather(-1, token[:, None]).squeeze(-1)
    cp, ci = top_candidates(p, topk)
    return token, prob, ci, cp


def top_candidates(p: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs, ids) of the ``topk`` most probable entries of each row (empty when ``topk`` is 0)."""
    if topk:
        return torch.topk(p, min(topk, p.shape[-1]), dim=-1)
    return p.new_zeros((p.shape[0], 0)), torch.zeros((p.shape[0], 0), dtype=torch.long, device=p.device)
