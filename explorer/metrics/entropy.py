"""Unigram entropy of generated token ids, exactly as upstream computes it (reference §3).

For each sample, count every distinct token id among its L ids (special tokens included),
p = count / L, entropy = sum(-p ln p) in nats. Upstream reports the mean over samples.
"""
from __future__ import annotations

import numpy as np
import torch


def unigram_entropy(ids) -> torch.Tensor:
    """Per-sample unigram entropy (natural log) of ``ids`` ``LongTensor[N, L]`` -> ``Tensor[N]``.

    Counts run over all ``L`` positions, special tokens (eos, mask) included, so the maximum is
    ``ln L`` (6.93 for L = 1024). Report ``.mean()`` to match upstream's number (reference §3).
    A 1-D input is treated as a single sample. Texts and float values are refused (TypeError).
    """
    if not torch.is_tensor(ids):
        ids = np.asarray(ids)
        if ids.dtype.kind in "USO":
            raise TypeError("unigram_entropy() takes token ids [N, L] (e.g. trace.final), not texts.")
        ids = torch.as_tensor(ids)
    if ids.numel() and (ids.is_floating_point() or ids.is_complex()):
        raise TypeError(f"unigram_entropy() takes integer token ids (e.g. trace.final), got {ids.dtype} values.")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2:
        raise ValueError(f"ids must be [N, L], got shape {tuple(ids.shape)}.")
    n, length = ids.shape
    if length == 0:
        return torch.zeros(n, dtype=torch.float64)
    ordered = ids.sort(dim=1).values
    # a new run starts wherever the sorted id changes; run_id indexes each distinct token
    starts = torch.ones_like(ordered, dtype=torch.long)
    starts[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).long()
    run_id = starts.cumsum(1) - 1
    counts = torch.zeros(n, length, dtype=torch.float64).scatter_add_(
        1, run_id, torch.ones(n, length, dtype=torch.float64))
    return torch.special.entr(counts / length).sum(1)
