"""Fast exact sampling vs a straightforward upstream-style loop, side by side (issue 7).

"ours": :func:`explorer.generate` -- decisions first, the model body once per distinct state,
the output head / SUBS / nucleus / float64 draw only at the rows that unmask.
"upstream-style": ``upstream_generate`` of ``tests/reference_loop.py`` -- full head at every position,
``[B, L, V+1]`` float64 weights and noise at every step (what ``_ddpm_caching_update`` does).

Same model, sampler (ReMDM-loop), T and B; runs alternate A/B, each in a fresh subprocess so its
peak memory is its own.  Prints tokens/s, model-body calls, head rows evaluated and peak memory.

    python benchmarks/throughput.py                 # CPU: shipped stories model + mdlm-owt-sized DiT (L=1024, B=1, T=4);
                                                    # ~3.5 minutes of CPU at one thread
    python benchmarks/throughput.py --gpu           # CUDA: mdlm-owt-sized DiT, bf16, L=1024, T=1024, B=16
    python benchmarks/throughput.py --quick         # stories model only, T=8, B=2: ~15 s on CPU
    python benchmarks/throughput.py --against HEAD~1   # this checkout's engine vs another commit's, same runs
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import print_ratio
from _trees import run_with_tree, tree_at

HERE = Path(__file__).resolve().parent


class Counting:
    """Wraps a denoiser and counts body calls and head rows (the protocol's fast-path split)."""

    def __init__(self, inner):
        self.inner = inner
        self.body_calls = self.head_rows = 0
        for k in ("mask_id", "vocab_size", "seq_len", "tokenizer", "identity", "device"):
            setattr(self, k, getattr(inner, k, None))

    def body(self, z):
        self.body_calls += 1
        return self.inner.body(z)

    def head(self, h):
        self.head_rows += h.shape[0]
        return self.inner.head(h)

    def logits(self, z):
        self.body_calls += 1
        self.head_rows += z.numel()
        return self.inner.logits(z)


def _build(spec: dict):
    import torch

    sys.path.insert(0, str(HERE))
    from _common import dit_model

    import explorer

    if spec["model"] == "stories":
        try:
            model = explorer.load_model("stories", device=spec["device"])
        except Exception as e:  # not trained yet in this checkout
            print(f"# stories model unavailable ({e}); using a random DiT of similar size", file=sys.stderr)
            model = dit_model(L=128, V=4096, hidden=256, blocks=4, heads=4, cond=64)
            model.identity["name"] = "random DiT (stories model not shipped)"
    else:  # mdlm-owt-sized DiT with random weights
        model = dit_model(L=spec["length"], V=50258, hidden=768, blocks=12, heads=12, cond=128)
    if hasattr(model, "to"):
        model = model.to(spec["device"]) or model
    if spec.get("bf16") and hasattr(model, "model"):
        model.model.amp_dtype = torch.bfloat16
    return model


def worker(spec: dict) -> dict:
    import psutil
    import torch

    import explorer
    sys.path.insert(0, str(HERE.parent / "tests"))  # the yardstick loop lives with the tests
    from reference_loop import upstream_generate
    from explorer.samplers import ReMDMLoop

    torch.manual_seed(0)
    model = Counting(_build(spec))
    sampler = ReMDMLoop()
    cuda = spec["device"].startswith("cuda")
    rss0 = psutil.Process().memory_info().rss
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t = time.perf_counter()
    with torch.no_grad():
        if spec["variant"] == "ours":
            tr = explorer.generate(model, sampler, spec["steps"], num_samples=spec["batch"], seed=0,
                                   progress=False, record=spec.get("record", True), device=spec["device"])
            out = tr.final
        else:
            out, _ = upstream_generate(model, sampler, spec["steps"], num_samples=spec["batch"], seed=0,
                                       device=spec["device"])
    if cuda:
        torch.cuda.synchronize()
    secs = time.perf_counter() - t
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0) / 2 ** 20
    return {"model": str(model.identity.get("name") if model.identity else "?"),
            "seconds": secs, "tokens": int(out.numel()), "body_calls": model.body_calls,
            "head_rows": model.head_rows, "peak_mb": peak}


def run(spec: dict) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    res = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                         text=True, env=env, cwd=HERE)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare(name: str, spec: dict, repeats: int):
    rows = {"ours": [], "upstream-style": []}
    for _ in range(repeats):                       # alternate A / B
        for variant in rows:
            rows[variant].append(run({**spec, "variant": "ours" if variant == "ours" else "upstream"}))
    used = rows["ours"][0].pop("model")
    for rs in rows.values():
        for r in rs:
            r.pop("model", None)
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in rows.items()}
    print(f"\n{name} [model used: {used}]: ReMDM-loop, T={spec['steps']}, B={spec['batch']}, device={spec['device']}"
          f"{', bf16' if spec.get('bf16') else ''} (median of {repeats}, alternated)")
    print(f"  {'variant':15s} {'tokens/s':>10s} {'seconds':>9s} {'body calls':>11s} {'head rows':>11s} {'peak MB':>9s}")
    for v, m in med.items():
        print(f"  {v:15s} {m['tokens'] / m['seconds']:10.1f} {m['seconds']:9.2f} {m['body_calls']:11.0f} "
              f"{m['head_rows']:11.0f} {m['peak_mb']:9.0f}")
    a, b = med["ours"], med["upstream-style"]
    print_ratio(f"  {name} speed-up", "upstream-style seconds", "ours seconds", b["seconds"] / a["seconds"])
    print_ratio(f"  {name} head rows", "ours", "upstream-style", a["head_rows"] / max(1, b["head_rows"]))
    print_ratio(f"  {name} peak memory", "ours", "upstream-style", a["peak_mb"] / max(1e-9, b["peak_mb"]),
                "CPU: growth of the process's high-water RSS" if spec["device"] == "cpu" else "")


def against(rev: str, spec: dict, repeats: int) -> None:
    """Tokens per second of ``explorer.generate`` in this checkout and in commit ``rev``, alternated."""
    tree = tree_at(rev)
    runs = {"this": [], rev: []}
    for _ in range(repeats):
        runs["this"].append(run_with_tree(Path(__file__).resolve(), {**spec, "variant": "ours"}, None))
        runs[rev].append(run_with_tree(Path(__file__).resolve(), {**spec, "variant": "ours"}, tree))
    med = {k: statistics.median(r["seconds"] for r in rs) for k, rs in runs.items()}
    tokens = runs["this"][0]["tokens"]
    for k, sec in med.items():
        print(f"  {k:>10s}: {tokens / sec:9.1f} tokens/s ({sec:.2f} s, {runs[k][0]['body_calls']} body calls)")
    print_ratio(f"  {spec['model']} speed, this checkout vs {rev}", f"{rev} seconds", "this checkout seconds",
                med[rev] / med["this"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--gpu", action="store_true", help="the mdlm-owt-sized case on CUDA (L=1024, T=1024, B=16, bf16)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes for a smoke test: the stories model only, T=8, B=2, 1 repeat")
    ap.add_argument("--repeats", type=int, default=None, help="alternated runs of each variant (default 2; quick 1)")
    ap.add_argument("--against", metavar="REV", default=None,
                    help="time this checkout's generate against commit REV's on the shipped stories model")
    a = ap.parse_args()
    repeats = a.repeats or (1 if a.quick else 2)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return
    if a.against:
        spec = {"model": "stories", "steps": 8 if a.quick else 128, "batch": 2 if a.quick else 4, "device": "cpu"}
        print(f"shipped stories model, ReMDM-loop, T={spec['steps']}, B={spec['batch']}, median of {repeats} "
              f"alternated runs in fresh processes")
        against(a.against, spec, max(repeats, 2))
        return
    if a.gpu:
        compare("mdlm-owt-sized DiT", {"model": "owt", "length": 1024, "steps": 1024, "batch": 16,
                                       "device": "cuda", "bf16": True}, repeats)
        return
    if a.quick:   # each run is a fresh process (its own peak memory): keep to two of them
        compare("shipped stories model", {"model": "stories", "steps": 8, "batch": 2, "device": "cpu"}, repeats)
        return
    compare("shipped stories model", {"model": "stories", "steps": 128, "batch": 4, "device": "cpu"}, repeats)
    compare("mdlm-owt-sized DiT (random weights)", {"model": "owt", "length": 1024, "steps": 4, "batch": 1,
                                                    "device": "cpu"}, repeats)


if __name__ == "__main__":
    main()
