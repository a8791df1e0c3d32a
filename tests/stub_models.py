"""Small denoisers for the engine and strategy tests, whose right answers are known.

* :class:`ContextModel` -- a random context-dependent table with the body/head split;
* :class:`PairModel` -- wants the two tokens of each pair (2k, 2k + 1) equal, so a token's
  leave-group-out probability and a "broken" pair are exactly computable.
"""
from __future__ import annotations

import torch


class ContextModel:
    """A small context-dependent denoiser (a random bigram-ish table) with the body/head split."""

    def __init__(self, L=10, V=7, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.mask_id, self.vocab_size, self.seq_len, self.tokenizer = V - 1, V, L, None
        self.emb = torch.randn(V, 16, generator=g)
        self.pos = torch.randn(L, 16, generator=g)
        self.mix = torch.randn(16, 16, generator=g) / 4
        self.out = torch.randn(16, V, generator=g)
        self.calls = 0

    def body(self, z):
        self.calls += 1
        h = self.emb[z] + self.pos
        return torch.tanh(h + h.mean(1, keepdim=True) @ self.mix)

    def head(self, h):
        return h @ self.out

    def logits(self, z):
        return self.head(self.body(z))


class PairModel:
    """p(x_l = v | rest) = AGREE if v equals the decoded partner of l, shared evenly otherwise;
    uniform over the V - 1 tokens when the partner is masked.  Fixed length, no body/head split."""
    AGREE = 0.97

    def __init__(self, L=16, V=6):
        self.mask_id, self.vocab_size, self.seq_len, self.tokenizer = V - 1, V, L, None
        self.calls = 0

    def logits(self, z):
        self.calls += 1
        B, L = z.shape
        V = self.vocab_size
        partner = z[:, torch.arange(L) ^ 1]
        p = torch.full((B, L, V), 1.0 / (V - 1))
        known = partner != self.mask_id
        other = (1 - self.AGREE) / (V - 2)
        q = torch.full((B, L, V), other)
        q.scatter_(-1, partner.clamp(max=V - 2)[..., None], self.AGREE)
        p = torch.where(known[..., None], q, p)
        p[..., self.mask_id] = 1e-30
        return p.log()
