"""What watching a run costs: a LiveViewer's run next to a plain ``generate`` of the same run.

For each shipped model (``orders``, ``stories``) the same sampler, steps, samples and seed run
as a plain ``explorer.generate(..., progress=False)`` and inside a :class:`LiveViewer` (the
engine's ``on_step`` hook copying each step to the CPU, the view's bookkeeping every step and a
grid + curves + status frame drawn at most ``--fps`` times a second), alternated A B A B after one
warm-up, medians compared. The live figure is the wall time of the ``generate`` call inside the
viewer's worker thread; opening the scrubber on the finished trace afterwards is printed apart
(it is what showing any finished trace costs). Outside a kernel the widgets' messages are built
and serialised but not sent over a socket.

Also timed: the same plain ``generate`` in a worker thread with no view at all, which is how the
view runs it; on a 2-core CPU PyTorch alone makes that much slower (README, "What watching costs").

Target (issue 19): live / plain <= 1.10 on the shipped models. The time the run spends inside the
view's hook (bookkeeping every step, drawing a frame now and then) is printed as a share of the
plain run too: it is the view's own cost, measured without the noise of two separate runs.

    python benchmarks/live.py [--repeats 3] [--steps 256] [--samples 4] [--fps 6]
    python benchmarks/live.py --quick        # fewer steps and repeats, the same measurements (~30 s)
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

from _common import print_ratio


def measure(name: str, steps: int, samples: int, repeats: int, fps: float) -> None:
    import explorer
    from explorer import samplers, widgets

    model = explorer.load_model(name)
    sampler = samplers.ReMDMLoop()
    run = dict(num_samples=samples, seed=0)
    explorer.generate(model, sampler, steps, progress=False, **run)  # warm-up
    plain, threaded, live, hook, draw, frames, opening = [], [], [], [], [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        explorer.generate(model, sampler, steps, progress=False, **run)
        plain.append(time.perf_counter() - t)
        threaded.append(_in_a_thread(lambda: explorer.generate(model, sampler, steps, progress=False, **run)))
        lv = widgets.LiveViewer(model, sampler, steps, fps=fps, columns=16, **run)
        t = time.perf_counter()
        lv.wait()
        assert lv.trace is not None and lv.error is None, lv.status.value
        live.append(lv.run_seconds)
        hook.append(lv.hook_seconds)
        draw.append(lv.draw_seconds)
        frames.append(lv.frames)
        opening.append(time.perf_counter() - t - lv.run_seconds)
    p, q = statistics.median(plain), statistics.median(live)
    print(f"{name:8s} ReMDM-loop T={steps} samples={samples} L={model.seq_len} | plain {p:.3f}s  live {q:.3f}s  "
          f"({statistics.median(frames):.0f} frames, drawing {statistics.median(draw):.3f}s; "
          f"scrubber opened after {statistics.median(opening):.2f}s)", flush=True)
    print_ratio(f"{name} live view", "live generate", "plain generate", q / p,
                f"{100 * (q - p) / p:+.1f} %, target <= +10 %")
    # the same plain generate in a worker thread, as the view runs it, without any view: what a
    # second thread costs PyTorch on this machine (its own OpenMP pool beside the main thread's)
    w = statistics.median(threaded)
    print(f"{name:8s} plain generate in a worker thread {w:.3f}s", flush=True)
    print_ratio(f"{name} worker thread", "plain generate in a thread", "plain generate", w / p)
    # the part of the difference the view itself spends, measured inside the run (the side-by-side
    # ratio above also carries the engine's per-step CPU copies for the hook, and the machine's noise)
    print_ratio(f"{name} live view's own time", "time in the hook", "plain generate",
                statistics.median(hook) / p)


def _in_a_thread(fn) -> float:
    """Seconds ``fn`` takes in a fresh ``threading.Thread`` (timed inside it)."""
    took = {}

    def run():
        t = time.perf_counter()
        fn()
        took["s"] = time.perf_counter() - t
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return took["s"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="--quick: steps 64, samples 2, 2 repeats (explicit options win)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs of each variant (default 3; quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps T (default 256; quick 64)")
    ap.add_argument("--samples", type=int, default=None, help="samples per run (default 4; quick 2)")
    ap.add_argument("--fps", type=float, default=6.0, help="the live view's most frames per second (default 6)")
    ap.add_argument("--quick", action="store_true", help="smaller runs for a smoke test")
    a = ap.parse_args(argv)
    repeats = a.repeats or (2 if a.quick else 3)
    steps = a.steps or (64 if a.quick else 256)
    samples = a.samples or (2 if a.quick else 4)
    import torch
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {repeats} alternated runs"
          f"{' (quick)' if a.quick else ''}, live view at <= {a.fps:g} frames/s")
    for name in ("orders", "stories"):
        measure(name, steps, samples, repeats, a.fps)


if __name__ == "__main__":
    main()
