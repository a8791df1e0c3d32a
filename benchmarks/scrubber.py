"""How long one scrubber move takes on a long run (L = 1024 positions, T = 4096 steps).

    .venv/bin/python benchmarks/scrubber.py [--seq-len 1024] [--steps 4096] [--moves 200]
    .venv/bin/python benchmarks/scrubber.py --quick     # L = 128, T = 256, 20 moves: a smoke test

Builds a ReMDM-loop trace of that size with the context-free StubDenoiser (fast: no network
model), then moves a TraceViewer's slider to random steps and reports the re-render time
(index lookup over the visible window + hover text + FigureWidget update), cold (first visit of
a step) and warm (cached step). Also times a single-step jump and a full-length heatmap.  The exit status is 1 when the median cold move misses the 100 ms budget
(not with ``--quick``, whose tiny trace says nothing about the budget).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import explorer
from explorer import samplers, viz
from explorer.widgets import TraceViewer

from _common import print_ratio

BUDGET_S = 0.1     # a scrubber move should re-render well under 100 ms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=None, help="positions L (default 1024; quick 128)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps T (default 4096; quick 256)")
    ap.add_argument("--vocab", type=int, default=64, help="vocabulary of the stub model")
    ap.add_argument("--moves", type=int, default=None, help="slider moves timed (default 200; quick 20)")
    ap.add_argument("--window", type=int, default=None, help="positions drawn at once (default 512; quick 128)")
    ap.add_argument("--quick", action="store_true", help="a small trace for a smoke test (~15 s)")
    args = ap.parse_args(argv)
    args.seq_len = args.seq_len or (128 if args.quick else 1024)
    args.steps = args.steps or (256 if args.quick else 4096)
    args.moves = args.moves or (20 if args.quick else 200)
    args.window = args.window or (128 if args.quick else 512)

    import plotly.graph_objects as go
    go.FigureWidget  # noqa: B018 -- pay plotly's one-time widget imports before timing anything
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(args.seq_len, args.vocab, generator=g) ** 3
    probs[:, -1] = 0
    model = explorer.StubDenoiser(probs)
    t0 = time.perf_counter()
    trace = explorer.generate(model, samplers.ReMDMLoop(eta=0.02), steps=args.steps, seed=0, progress=False)
    t_gen = time.perf_counter() - t0
    ev = trace.events
    print(f"trace: L={trace.seq_len}, T={trace.num_steps}, events={len(ev)} "
          f"({(ev['kind'] == 'remask').sum()} remasks), generated in {t_gen:.1f} s")

    t0 = time.perf_counter()
    viewer = TraceViewer(trace, length=args.window, columns=32, curves=True)
    print(f"viewer built (index over all events + first draw) in {time.perf_counter() - t0:.2f} s")

    rng = np.random.default_rng(0)
    cold, seen = [], set()
    for k in rng.integers(1, trace.last_step, size=args.moves):
        viewer.step = int(k)
        cold.append(viewer.last_render_s)
        seen.add(int(k))
    warm = []
    visited = sorted(seen)
    for k in rng.choice(visited, size=args.moves):
        viewer.render(int(k))
        warm.append(viewer.last_render_s)
    single = []
    viewer.step = trace.last_step // 2
    for _ in range(args.moves // 2):
        viewer._nudge(+1)
        single.append(viewer.last_render_s)

    def report(name, xs):
        xs = np.asarray(xs) * 1000
        print(f"{name:<28} median {np.median(xs):6.1f} ms   p95 {np.percentile(xs, 95):6.1f} ms"
              f"   max {xs.max():6.1f} ms   (n={len(xs)})")

    print(f"scrubber re-render, L={trace.seq_len}, T={trace.num_steps}, window={args.window} positions:")
    report("random step (cold)", cold)
    report("random step (cached)", warm)
    report("one step forward", single)
    t0 = time.perf_counter()
    viz.step_heatmap(trace, positions=(0, trace.seq_len))
    print(f"full positions x steps heatmap (strided to fit): {(time.perf_counter() - t0) * 1000:.0f} ms")
    print_ratio("random step (cold)", "median re-render", "100 ms budget", statistics.median(cold) / BUDGET_S)
    print_ratio("one step forward", "median re-render", "100 ms budget", statistics.median(single) / BUDGET_S)
    print_ratio("re-render", "cold median", "cached median", statistics.median(cold) / statistics.median(warm))
    ok = statistics.median(cold) < BUDGET_S
    print("OK: a scrubber move re-renders well under 100 ms" if ok else "SLOW: median move >= 100 ms")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
