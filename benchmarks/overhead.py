"""Overhead of the engine and of recording, measured side by side in one run.

Prints, for a context-free stub and a small DiT transformer:

* generate-with-trace time / time of the same number of bare model calls (same batch, same
  states are not needed: a bare call is ``model.logits`` on a batch of that shape);
* trace-on / trace-off time (``record=True`` vs ``record=False``).

Targets (issue 2, not timed tests): <= 1.15 and <= 1.03 on CPU for the transformer.  The stub's
"model call" costs microseconds, so its first ratio measures the engine's absolute per-step cost.

    python benchmarks/overhead.py [--repeats 5] [--steps 64] [--batch 8] [--length 128]
"""
from __future__ import annotations

import argparse

import torch

import explorer
from explorer.samplers import ReMDMLoop

from _common import alternate, dit_model, stub_model


def measure(name, model, steps, batch, repeats):
    sampler = ReMDMLoop()
    probe = explorer.generate(model, sampler, steps, num_samples=batch, progress=False)
    calls = probe.model_calls
    z = probe.state_at(steps // 2).to(torch.long)

    def bare():
        with torch.no_grad():
            for _ in range(calls):
                model.logits(z)

    def traced():
        explorer.generate(model, sampler, steps, num_samples=batch, progress=False, record=True)

    def untraced():
        explorer.generate(model, sampler, steps, num_samples=batch, progress=False, record=False)

    t = alternate({"bare": bare, "traced": traced, "untraced": untraced}, repeats)
    print(f"{name:12s} steps={steps:4d} batch={batch:3d} L={model.seq_len:4d} model_calls={calls:4d} | "
          f"bare {t['bare']:.3f}s  traced {t['traced']:.3f}s  untraced {t['untraced']:.3f}s | "
          f"generate/bare = {t['traced'] / t['bare']:.3f}  trace-on/off = {t['traced'] / t['untraced']:.3f}  "
          f"(per step: engine {1e3 * (t['traced'] - t['bare']) / steps:.2f} ms)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, ReMDM-loop")
    measure("stub", stub_model(L=a.length), a.steps, a.batch, a.repeats)
    measure("dit-small", dit_model(L=a.length), a.steps, a.batch, a.repeats)
    measure("dit-medium", dit_model(L=a.length, hidden=256, blocks=6, heads=4), a.steps, a.batch, a.repeats)


if __name__ == "__main__":
    main()
