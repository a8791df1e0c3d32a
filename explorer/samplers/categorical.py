"""p(x0) from logits (SUBS, §1.2), nucleus filtering (§1.5) and exact float64 categorical draws (§1.6)."""
from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=None)
def _index(i: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([i], device=device)


def subs_probs(logits: torch.Tensor, mask_id: int, temperature: float = 1.0, scratch: bool = False) -> torch.Tensor:
    """p(x0) at masked positions: softmax of the logits with the mask class forced to zero (SUBS).

    Carry-over (the one-hot at unmasked positions) is applied by the engine, which only ever
    draws tokens at masked positions.  Computed in float32; ``temperature=0`` gives a one-hot argmax.
    ``scratch=True``: the caller no longer needs ``logits``, so the mask class is cleared in place.
    """
    index = _index(mask_id, logits.device)
    if logits.dtype != torch.float32:
        logits = logits.float().index_fill_(-1, index, -torch.inf)      # a float32 copy, ours
    elif scratch:
        logits = logits.index_fill_(-1, index, -torch.inf)
    else:
        logits = logits.index_fill(-1, index, -torch.inf)               # a copy
    if temperature == 0:
        out = torch.zeros_like(logits)
        return out.scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    if temperature != 1.0:
        logits = logits / temperature
    return torch.softmax(logits, dim=-1)


def nucleus_weights(p: torch.Tensor, top_p: float) -> torch.Tensor:
    """The unnormalised weights of upstream top-p (§1.5): ``p`` where kept, 0 elsewhere (float64;
    ``p`` itself when ``top_p = 1``).

    Kept: the entries whose descending cumulative sum is <= top_p, and always the top-1 (unlike HF,
    the token that crosses top_p is dropped); equal probabilities are ordered by position, as a
    stable sort would (the first ones are kept at the cut).  ``top_p = 1`` keeps everything.
    The sum is of the model's float32 probabilities, compared with top_p as they are: where exact
    arithmetic puts a partial sum exactly *at* top_p, float32 rounding usually puts it a few 1e-8
    above, and that boundary token is dropped (p = [0.8, 0.1, 0.1] at top_p = 0.9 keeps only the
    first: float32 0.8 + 0.1 = 0.90000001).  A float32 cumsum, as upstream has (bf16 on its GPU
    runs, coarser still), does the same; a tolerance would change real draws too, so none is applied.
    On the CPU the descending order is found with ``topk`` of a growing width instead of a full
    sort: the kept prefix of a peaked distribution is short, and the cumulative sum of the first k
    sorted entries is the first k entries of the full one.
    """
    if top_p >= 1.0:
        return p            # nothing filtered: the weights as given (float64 is for the CDF, sample_rows)
    p = p.double()
    V = p.shape[-1]
    k = V if p.is_cuda else min(V, 64)       # a GPU sorts a row at once; a sync per draw would cost more
    while True:
        sorted_p = torch.topk(p, k, dim=-1).values
        kept = (sorted_p.cumsum(-1) <= top_p).sum(-1, keepdim=True).clamp_(min=1)    # a prefix: p >= 0
        if k == V or not bool((kept == k).any()):
            break                            # every row's kept prefix ends inside the first k
        k = min(V, 4 * k)
    cut = sorted_p.gather(-1, kept - 1)      # the smallest kept probability of each row
    above, tie = p > cut, p == cut           # all above the cut, then the first ties up to the count
    keep = above | (tie & (tie.cumsum(-1) <= kept - above.sum(-1, keepdim=True)))
    return torch.where(keep, p, torch.zeros_like(p))


def nucleus(p: torch.Tensor, top_p: float) -> torch.Tensor:
    """Upstream top-p (§1.5) normalised: :func:`nucleus_weights` over their sum, float64.
    ``top_p = 1`` returns ``p`` renormalised in float64."""
    q = nucleus_weights(p, top_p).double()
    return q / q.sum(-1, keepdim=True)


def sample_rows(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Draw one category per row of the unnormalised weights ``p`` by inverse CDF in float64.

    ``u`` are float64 uniforms in (0, 1), one per row.  Exact in distribution up to float64
    rounding; a zero-weight category is never returned.
    """
    return _inverse_cdf(p, u)[0]


def _inverse_cdf(p: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_rows` and each row's total weight (float64, the CDF's last entry)."""
    cdf = (p if p.dtype == torch.float64 else p.double()).cumsum(-1)
    total = cdf[..., -1]
    target = (u if u.dtype == torch.float64 else u.double()).mul(total).unsqueeze(-1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return idx.clamp_(max=p.shape[-1] - 1), total


def draw_tokens(logits: torch.Tensor, mask_id: int, nucleus_p: float, u: torch.Tensor, topk: int,
                temperature: float = 1.0, scratch: bool = False):
    """Draw a token per row: SUBS, nucleus, float64 inverse CDF.  Returns (token, its prob, top-k ids,
    top-k probs).

    The prob returned (recorded, and ReMDM-conf's psi) is the post-nucleus p(x0), as upstream; with a
    temperature the draw uses p^(1/T) but the prob is still read from the untempered p(x0),
    renormalised over the union of its nucleus and the tempered one the token was drawn from. At
    T < 1 that is the untempered nucleus (the tempered one lies inside it); at T > 1 the tempered
    nucleus is the larger, and a token it holds but the untempered one cuts gets its p(x0), not 0.
    ``scratch=True``: the logits are the caller's to lose (as those ``ctx.draw`` hands out).
    """
    p = subs_probs(logits, mask_id, scratch=scratch and temperature == 1.0)
    w = nucleus_weights(p if temperature == 1.0 else subs_probs(logits, mask_id, temperature), nucleus_p)
    token, total = _inverse_cdf(w, u)      # the inverse CDF needs no normalisation
    if temperature != 1.0:
        w = p if nucleus_p >= 1.0 else torch.where((w > 0) | (nucleus_weights(p, nucleus_p) > 0), p.double(), 0.0)
        total = w.sum(-1, dtype=torch.float64)
    prob = w.gather(-1, token[:, None]).squeeze(-1) / total      # float64, as total is
    cp, ci = top_candidates(p, topk, scratch=True)     # p is ours and used up: no copy for the search
    return token, prob, ci, cp


def top_candidates(p: torch.Tensor, topk: int, scratch: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs, ids) of the ``topk`` most probable entries of each row ``p[N, V]``, largest first
    (empty when ``topk`` is 0).

    On the CPU, for the few candidates a trace records, ``k`` passes of numpy's argmax (each
    masking the entry it found) replace ``torch.topk``, which is about three times slower there
    (measured at V = 1000 to 50257); the same values, ties taken lowest index first.
    ``scratch=True``: ``p`` may be overwritten (the caller no longer needs it).
    """
    if not topk:
        return p.new_zeros((p.shape[0], 0)), torch.zeros((p.shape[0], 0), dtype=torch.long, device=p.device)
    k = min(topk, p.shape[-1])
    if p.device.type != "cpu" or k > 4 or p.dim() != 2 or p.dtype not in (torch.float32, torch.float64):
        return torch.topk(p, k, dim=-1)
    a = p.detach().numpy()
    a = np.ascontiguousarray(a) if scratch else a.copy()
    n, V = a.shape
    flat = a.reshape(-1)                 # a view (a is C-contiguous): entry (r, i) is flat[r * V + i]
    start = np.arange(0, n * V, V)
    ids, vals = np.empty((k, n), np.int64), np.empty((k, n), a.dtype)
    for j in range(k):
        ids[j] = a.argmax(-1)
        at = start + ids[j]
        vals[j] = flat[at]
        flat[at] = -np.inf
    return torch.from_numpy(vals.T), torch.from_numpy(ids.T)
