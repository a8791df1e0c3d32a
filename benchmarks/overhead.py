"""Overhead of the engine and of recording, measured side by side in one run.

Prints, for a context-free stub and two small DiT transformers:

* generate-with-trace time / time of the same number of bare model calls (same batch, same
  states are not needed: a bare call is ``model.logits`` on a batch of that shape);
* trace-on / trace-off time (``record=True`` vs ``record=False``).

Targets (issue 2, not timed tests): <= 1.15 and <= 1.03 on CPU for the transformer.  The stub's
"model call" costs microseconds, so its first ratio measures the engine's absolute per-step cost.
Each variant runs ``--repeats`` times, alternated (A B C A B C ...), after one warm-up run; the
medians are compared.  The default run costs about 90 s of CPU at one thread (about two minutes
on a quiet two-core machine).  On a busy machine set OMP_NUM_THREADS=1: torch's worker threads
spin while they wait for a core, which inflates every time and ratio here.

    python benchmarks/overhead.py [--repeats 3] [--steps 32] [--batch 8] [--length 128]
    python benchmarks/overhead.py --quick        # tiny sizes, the same measurements, ~15 s
    python benchmarks/overhead.py --against HEAD~1   # this checkout's engine vs another commit's

``--against REV`` times ``generate`` (trace on and off) on the stub and the small DiT with this
checkout's engine and with REV's (``git archive``), alternately in fresh subprocesses, and prints
the time per step of each and their ratio (issue 18: at most 0.5 on the stub, batch 8, L = 128,
trace on).  The model is wrapped by the same code in both trees (:func:`timed_model`), which adds
up the seconds spent inside its own methods; the "engine's own time" lines are the run's time
minus those (on the stub: its row gather in ``head``), so the model's cost is held out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import explorer
from explorer.samplers import ReMDMLoop

from _common import alternate, dit_model, print_ratio, stub_model
from _trees import run_with_tree, tree_at

HERE = Path(__file__).resolve()


def measure(name, model, steps, batch, repeats):
    sampler = ReMDMLoop()
    probe = explorer.generate(model, sampler, steps, num_samples=batch, progress=False)   # also the warm-up
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
          f"bare {t['bare']:.3f}s  traced {t['traced']:.3f}s  untraced {t['untraced']:.3f}s", flush=True)
    print_ratio(name, "generate", "bare calls", t["traced"] / t["bare"],
                f"engine {1e3 * (t['traced'] - t['bare']) / steps:.2f} ms per step")
    print_ratio(name, "trace-on", "trace-off", t["traced"] / t["untraced"])


def timed_model(model):
    """Wrap the model's own methods (``logits``, ``body``, ``head``) on this instance so the seconds
    spent inside them add up in ``model.seconds``.  The same code wraps the model in both trees of
    ``--against``, so a run's time minus ``model.seconds`` is the engine's own time, with the model's
    cost (the stub's row gather in ``head``) held out of the comparison."""
    model.seconds = 0.0
    for name in ("logits", "body", "head"):
        fn = getattr(model, name, None)
        if callable(fn):
            def timed(*args, _fn=fn, **kwargs):
                t = time.perf_counter()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    model.seconds += time.perf_counter() - t
            setattr(model, name, timed)
    return model


def worker(spec: dict) -> dict:
    """Seconds of each ``generate`` run (ReMDM-loop, trace on and off), the seconds spent inside
    the model in each, and those of the same number of bare model calls."""
    torch.set_num_threads(1)
    model = stub_model(L=spec["length"]) if spec["model"] == "stub" else dit_model(L=spec["length"])
    model = timed_model(model)
    sampler = ReMDMLoop()
    run = lambda record: explorer.generate(model, sampler, spec["steps"], num_samples=spec["batch"],  # noqa: E731
                                           progress=False, record=record)
    probe = run(True)
    z = probe.state_at(spec["steps"] // 2)
    out = {"model_calls": probe.model_calls}
    for name, fn in (("traced", lambda: run(True)), ("untraced", lambda: run(False)),
                     ("bare", lambda: [model.logits(z) for _ in range(probe.model_calls)])):
        fn()                                     # warm-up (allocator, caches)
        times, inside = [], []
        for _ in range(spec["repeats"]):
            model.seconds = 0.0
            t = time.perf_counter()
            with torch.no_grad():
                fn()
            times.append(time.perf_counter() - t)
            inside.append(model.seconds)
        out[name] = times
        out[name + "_engine"] = [t - m for t, m in zip(times, inside)]
    out["ops_per_step"] = tensor_ops(lambda: run(True)) / (spec["steps"] + 1)
    return out


def tensor_ops(fn) -> int:
    """How many tensor operations (top-level aten calls, torch.profiler) one call of ``fn`` makes."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::"))


def against(rev: str, steps: int, batch: int, length: int, repeats: int, rounds: int = 4,
            models=("stub", "dit-small")) -> None:
    """Alternate ``rounds`` workers per tree (this, REV, this, REV, ...), each timing ``repeats``
    runs; print the median and the minimum over all of a tree's runs.  On a shared machine noise
    only adds time, so the minimum is the steadier estimate of a cost (as ``timeit`` advises)."""
    tree = tree_at(rev)
    for model in models:
        spec = {"model": model, "steps": steps, "batch": batch, "length": length, "repeats": repeats}
        res = {"this": [], rev: []}
        for _ in range(rounds):
            res["this"].append(run_with_tree(HERE, spec, None))
            res[rev].append(run_with_tree(HERE, spec, tree))
        stat = {k: {(m, how): f([t for r in rs for t in r[m]])
                    for m in ("traced", "untraced", "bare", "traced_engine", "untraced_engine")
                    for how, f in (("median", statistics.median), ("min", min))} for k, rs in res.items()}
        for k, m in stat.items():
            print(f"{model:10s} {k:>10s}: generate {1e3 * m['traced', 'median'] / steps:.3f} ms/step traced "
                  f"(min {1e3 * m['traced', 'min'] / steps:.3f}), {1e3 * m['untraced', 'median'] / steps:.3f} "
                  f"untraced (min {1e3 * m['untraced', 'min'] / steps:.3f}); of which outside the model "
                  f"{1e3 * m['traced_engine', 'median'] / steps:.3f} traced, "
                  f"{1e3 * m['untraced_engine', 'median'] / steps:.3f} untraced; bare model calls "
                  f"{1e3 * m['bare', 'median'] / steps:.3f} (T={steps}, B={batch}, L={length}, model calls "
                  f"{res[k][0]['model_calls']}, {rounds} x {repeats} runs per tree); "
                  f"{res[k][0]['ops_per_step']:.0f} tensor ops per step (recorded run, final pass included)", flush=True)
        # whole generate time: on the stub a model call costs microseconds, so this is close to the
        # engine's own time; on the DiT the fast path beats a bare full-logits call, so "generate -
        # bare" would be < 0.  "engine's own": generate minus the seconds spent inside the model's
        # methods (timed_model), which on the stub is its row gather in head.
        for m in ("traced", "untraced"):
            for how in ("median", "min"):
                print_ratio(f"{model} generate time per step, trace {'on' if m == 'traced' else 'off'} ({how})",
                            "this checkout", rev, stat["this"][m, how] / max(1e-12, stat[rev][m, how]))
        for m in ("traced", "untraced"):
            for how in ("median", "min"):
                print_ratio(f"{model} engine's own time per step (generate minus time inside the model), trace "
                            f"{'on' if m == 'traced' else 'off'} ({how})", "this checkout", rev,
                            stat["this"][m + "_engine", how] / max(1e-12, stat[rev][m + "_engine", how]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="--quick: steps 8, batch 2, length 32, 2 repeats (explicit options win)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs of each variant (default 3; quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps T (default 32; quick 8)")
    ap.add_argument("--batch", type=int, default=None, help="samples per run (default 8; quick 2)")
    ap.add_argument("--length", type=int, default=None, help="sequence length L (default 128; quick 32)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (~15 s)")
    ap.add_argument("--against", metavar="REV", default=None,
                    help="compare this checkout's engine with commit REV's, side by side (e.g. HEAD~1)")
    ap.add_argument("--rounds", type=int, default=4, help="--against: alternated workers per tree (default 4)")
    ap.add_argument("--models", default="stub,dit-small", help="--against: which of stub, dit-small (comma-separated)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return
    repeats = a.repeats or (2 if a.quick else 3)
    steps = a.steps or (8 if a.quick else 32)
    batch = a.batch or (2 if a.quick else 8)
    length = a.length or (32 if a.quick else 128)
    if a.against:
        print(f"torch {torch.__version__}, one thread per worker, ReMDM-loop, {repeats} runs per worker after a "
              f"warm-up, {a.rounds} alternated workers per tree")
        models = [m for m in a.models.split(",") if m]
        if not models or set(models) - {"stub", "dit-small"}:
            sys.exit(f"--models {a.models!r}: choose from stub, dit-small (comma-separated).")
        against(a.against, steps, batch, length, repeats, a.rounds, models)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, ReMDM-loop, "
          f"median of {repeats} alternated runs{' (quick)' if a.quick else ''}")
    measure("stub", stub_model(L=length), steps, batch, repeats)
    measure("dit-small", dit_model(L=length), steps, batch, repeats)
    measure("dit-medium", dit_model(L=length, hidden=256, blocks=6, heads=4), steps, batch, repeats)


if __name__ == "__main__":
    main()
