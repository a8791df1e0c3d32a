"""How long one DiT forward takes, how much memory it needs, and what the sampler adds on top.

An mdlm-owt-sized DiT (random weights, reference §5.2) at L=1024:

* forward time and peak memory at batch 1 and 16, fp32 and bf16 autocast (bf16 on CUDA only);
* the engine's overhead: ``explorer.generate`` with ``ReMDMLoop`` for a few steps, trace
  recording on, against the same number of bare ``logits`` calls.

    python benchmarks/dit_step.py                 # CUDA if available, else CPU
    python benchmarks/dit_step.py --quick         # smoke test: a small DiT (2 blocks, V=1000), L=64, ~10 s
    python benchmarks/dit_step.py --device cpu --seq-len 256 --batch 1 2
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.models import MDLM, MDLMConfig, MDLMDenoiser  # noqa: E402

from _common import print_ratio  # noqa: E402

# --quick: the same code paths on a DiT small enough for a smoke test
SMALL = {"vocab_size": 1000, "hidden_dim": 128, "cond_dim": 64, "n_blocks": 2, "n_heads": 4}


def build_model(device: torch.device, seq_len: int, seed: int = 0, **config) -> MDLM:
    """A random DiT; mdlm-owt-sized unless ``config`` overrides MDLMConfig fields."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = MDLM(MDLMConfig(model_length=seq_len, **config))
    with torch.no_grad():
        for p in model.parameters():  # the DiT init zeroes adaLN and the head: make every path real
            p.normal_(0.0, 0.02)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water RSS (KiB on Linux)


def time_call(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds per call (the median resists other jobs sharing the machine)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_forward(model: MDLM, device, batch: int, seq_len: int, precision: str, repeats: int) -> dict:
    model.amp_dtype = torch.bfloat16 if precision == "bf16" else None
    z = torch.randint(0, model.config.vocab_size - 1, (batch, seq_len), device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        seconds = time_call(lambda: model(z), device, repeats)
    return {"what": "forward", "precision": precision, "batch": batch, "L": seq_len,
            "ms": 1000 * seconds, "tokens/s": batch * seq_len / seconds, "peak MiB": peak_memory_mib(device)}


def bench_overhead(model: MDLM, device, batch: int, seq_len: int, precision: str, steps: int) -> dict:
    import explorer
    from explorer import samplers

    model.amp_dtype = torch.bfloat16 if precision == "bf16" else None
    den = MDLMDenoiser(model, name="random-dit")
    z = torch.full((batch, seq_len), den.mask_id, device=device)
    bare = time_call(lambda: den.logits(z), device, repeats=min(steps, 5))
    sampler = samplers.ReMDMLoop()
    explorer.generate(den, sampler, steps=2, num_samples=batch, seed=0, progress=False)  # warm-up
    sync(device)
    start = time.perf_counter()
    trace = explorer.generate(den, sampler, steps=steps, num_samples=batch, seed=0, progress=False, record=True)
    sync(device)
    gen = time.perf_counter() - start
    return {"what": f"remdm-loop T={steps}", "precision": precision, "batch": batch, "L": seq_len,
            "generate s": gen, "model calls": trace.model_calls, "events": len(trace.events),
            "vs T bare calls": gen / (bare * steps),
            "per model call": gen / (bare * max(trace.model_calls, 1))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seq-len", type=int, default=None, help="default 1024 (64 with --quick)")
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="default 1 16 on CUDA, 1 on CPU")
    ap.add_argument("--repeats", type=int, default=None, help="timed forwards per setting")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps for the overhead check")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: a small DiT (2 blocks, hidden 128, V=1000), L=64, batch 1, 2 repeats, 4 steps")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    seq_len = args.seq_len or (64 if args.quick else 1024)
    batches = args.batch or ([1] if args.quick or not cuda else [1, 16])
    repeats = args.repeats or (2 if args.quick else (10 if cuda else 3))
    steps = args.steps or (4 if args.quick else 16)
    precisions = ["fp32", "bf16"] if cuda else ["fp32"]
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32

    model = build_model(device, seq_len, **(SMALL if args.quick else {}))
    print(f"# DiT {model.num_parameters():,} parameters, device={device} "
          f"({torch.cuda.get_device_name(device) if cuda else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}")

    rows = []
    for precision in precisions:
        for batch in batches:
            rows.append(bench_forward(model, device, batch, seq_len, precision, repeats))
            print(_fmt(rows[-1]), flush=True)
    overhead = []
    for precision in precisions:
        for batch in batches:
            overhead.append(bench_overhead(model, device, batch, seq_len, precision, steps))
            print(_fmt(overhead[-1]), flush=True)

    import pandas as pd
    with pd.option_context("display.width", 160, "display.float_format", "{:,.2f}".format):
        print("\n## forward")
        print(pd.DataFrame(rows).to_string(index=False))
        print(f"\n## sampler + trace overhead: generate time over {steps} bare logits calls, and over as many "
              "bare calls as the engine made (it skips the network when the state did not change, §1.7)")
        print(pd.DataFrame(overhead).to_string(index=False))
    for row in overhead:
        what = f"{row['what']} {row['precision']} batch {row['batch']}"
        print_ratio(what, "generate", f"{steps} bare calls", row["vs T bare calls"])
        print_ratio(what, "generate", f"{row['model calls']} bare calls (as many as the engine made)",
                    row["per model call"])
    ms = {(r["precision"], r["batch"]): r["ms"] for r in rows}
    for batch in batches:
        if ("bf16", batch) in ms:
            print_ratio(f"forward batch {batch}", "fp32 ms", "bf16 ms", ms["fp32", batch] / ms["bf16", batch])
    if not cuda:
        print("\n(peak MiB on CPU is the process's high-water RSS, including the model's weights)")


def _fmt(row: dict) -> str:
    return "  ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


if __name__ == "__main__":
    main()
