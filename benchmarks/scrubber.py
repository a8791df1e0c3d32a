"""How long one scrubber move takes on a long run (L = 1024 positions, T = 4096 steps).

    .venv/bin/python benchmarks/scrubber.py [--seq-len 1024] [--steps 4096] [--moves 200]

Builds a ReMDM-loop trace of that size with the context-free StubDenoiser (fast: no network
model), then moves a TraceViewer's slider to random steps and reports the re-render time
(index lookup over the visible window + hover text + FigureWidget update), cold (first visit of
a step) and warm (cached step). Also times a single-step jump and a full-length heatmap.
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--moves", type=int, default=200)
    ap.add_argument("--window", type=int, default=512, help="positions drawn at once")
    args = ap.parse_args(argv)

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
    cold = []
    for k in rng.integers(1, trace.last_step, size=args.moves):
        viewer.step = int(k)
        cold.append(viewer.last_render_s)
    warm = []
    visited = sorted({key[0] for key in viewer.index._frames if not isinstance(key[0], str)})
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
    ok = statistics.median(cold) < 0.1
    print("OK: a scrubber move re-renders well under 100 ms" if ok else "SLOW: median move >= 100 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
