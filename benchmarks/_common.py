"""Shared helpers for the benchmarks: small models, side-by-side timing and the ratio lines.

Every benchmark takes ``--quick`` (tiny sizes, the same code paths, well under a minute on two
CPU cores) and prints its side-by-side figures with :func:`print_ratio` as lines of the form
``what: A / B = 1.234``; ``tests/test_benchmarks.py`` runs each one with ``--quick`` and looks
for such a line (:data:`RATIO_LINE`).  torch and the explorer are imported inside the model
builders, so a parent process that only prints (``throughput.py``'s) starts fast.
"""
from __future__ import annotations

import re
import statistics
import time


def stub_model(L: int = 128, V: int = 1000, seed: int = 0):
    import torch

    import explorer

    g = torch.Generator().manual_seed(seed)
    p = torch.rand(L, V, generator=g)
    p[:, -1] = 0
    return explorer.StubDenoiser(p)


def dit_model(L=128, V=1000, hidden=128, blocks=4, heads=4, cond=64, seed=0):
    """A small random DiT in the mdlm-owt format (weights perturbed so logits are not all zero)."""
    import torch

    from explorer.models.denoiser import MDLMDenoiser
    from explorer.models.dit import MDLM, MDLMConfig

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


RATIO_LINE = re.compile(r"^(?P<what>[^:\n]+): (?P<a>.+?) / (?P<b>.+?) = (?P<value>[0-9]+(?:\.[0-9]+)?|nan|inf)x?\b",
                        re.MULTILINE)


def print_ratio(what: str, a: str, b: str, value: float, note: str = "") -> None:
    """Print one side-by-side figure as ``what: a / b = value`` (the form the smoke test looks for)."""
    line = f"{what}: {a} / {b} = {value:.3f}" + (f"  ({note})" if note else "")
    assert RATIO_LINE.search(line), line
    print(line, flush=True)
