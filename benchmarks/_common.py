"""Shared helpers for the benchmarks: small models and side-by-side timing."""
from __future__ import annotations

import statistics
import time

import torch

import explorer
from explorer.models.denoiser import MDLMDenoiser
from explorer.models.dit import MDLM, MDLMConfig


def stub_model(L: int = 128, V: int = 1000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(L, V, generator=g)
    p[:, -1] = 0
    return explorer.StubDenoiser(p)


def dit_model(L=128, V=1000, hidden=128, blocks=4, heads=4, cond=64, seed=0):
    """A small random DiT in the mdlm-owt format (weights perturbed so logits are not all zero)."""
    torch.manual_seed(seed)
    cfg = MDLMConfig(vocab_size=V, hidden_dim=hidden, cond_dim=cond, n_blocks=blocks, n_heads=heads,
                     model_length=L, dropout=0.0)
    net = MDLM(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return MDLMDenoiser(net.eval(), tokenizer=None)


def alternate(fns: dict, repeats: int):
    """Run the callables in turn (A B A B ...) and return the median seconds of each."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
