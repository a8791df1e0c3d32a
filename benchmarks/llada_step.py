"""LLaDA-8B on a GPU: one forward (time, peak memory) and ReMDM-LLaDA tokens/s against an upstream-style loop.

The LLaDA-8B config (llada-dream reference §1.1) with random bf16 weights, built on the meta
device and materialised straight on the GPU (16 GB, no fp32 copy):

* forward: full logits ``[1, L, 126464]`` and the engine's fast path (body, then the head on one
  row) at L = 256 and 1024: median ms and peak allocated memory;
* sampler: ReMDM-LLaDA at the Table-3 setting (32 new tokens, 32 steps, block 32, remdm_number 1,
  64 model calls per sample; §4.3) through ``explorer.generate`` with trace recording, against
  :func:`upstream_remdm_llada`, a straightforward loop written the way ``eval_llada.py`` works:
  at every iteration a float64 softmax over the full vocabulary at *every* position and a float64
  uniform per logit (two ``[1, L, V]`` float64 tensors, ~1 GB each at L = 1024). Tokens/s counts
  generated tokens.

    python benchmarks/llada_step.py --gpu       # CUDA, LLaDA-8B config, bf16; needs ~20 GB of GPU memory
    python benchmarks/llada_step.py --quick     # a tiny LLaDA config on the CPU, well under a minute

Random weights: the text is meaningless and only the cost is measured.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository (explorer)
sys.path.insert(0, str(Path(__file__).resolve().parent))       # benchmarks/ (_common, dit_step), also when imported

from _common import print_ratio  # noqa: E402
from dit_step import peak_memory_mib, sync, time_call  # noqa: E402

import explorer  # noqa: E402
from explorer.models.denoiser import DiffusionLMDenoiser  # noqa: E402
from explorer.models.llada import LLaDAConfig, LLaDAModelLM  # noqa: E402
from explorer.models.random_checkpoint import tiny_config  # noqa: E402

# Table 3 (llada-dream §4.3, §5): 32 new tokens, 32 steps, one block of 32
GEN_LENGTH, STEPS, BLOCK = 32, 32, 32


def random_llada(config: LLaDAConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> DiffusionLMDenoiser:
    """LLaDA with N(0, 0.02) weights (norms at 1), allocated once, directly in ``dtype`` on ``device``."""
    with torch.device("meta"):
        model = LLaDAModelLM(config).to(dtype)
    model = model.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=g)
    return DiffusionLMDenoiser(model.eval(), family="llada", max_length=config.max_length,
                               mask_id=config.mask_token_id, eos_id=config.eos_token_id,
                               pad_id=config.pad_token_id, eot_id=None,
                               identity={"name": "llada-random", "sha256": None, "family": "llada"})


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_forward(den: DiffusionLMDenoiser, L: int, repeats: int) -> list[dict]:
    device = den.device
    z = torch.randint(0, den.vocab_size, (1, L), device=device)
    rows = []
    reset_peak(device)
    ms = 1000 * time_call(lambda: den.logits(z), device, repeats)
    rows.append({"what": "logits [1, L, V]", "L": L, "ms": ms, "peak MiB": peak_memory_mib(device)})
    reset_peak(device)
    ms = 1000 * time_call(lambda: den.head(den.body(z)[:, -1]), device, repeats)
    rows.append({"what": "body + head on 1 row", "L": L, "ms": ms, "peak MiB": peak_memory_mib(device)})
    return rows


@torch.no_grad()
def upstream_remdm_llada(den, prompt: torch.Tensor, gen_length: int, steps: int, block_length: int,
                         remdm_number: int, generator: torch.Generator) -> torch.Tensor:
    """ReMDM-LLaDA written straightforwardly after ``llada_remdm_sample`` (§4.3): batch 1, no pad.

    Per block: conf_cache = +inf; R = int(block_length / 8 * 7); 2 * steps_per_block iterations;
    inside [R, R + steps_per_block) remask the remdm_number lowest cached confidences; draw x0 at
    every position from p = softmax(logits.float64) by the race argmax p / E with E ~ Exp(1);
    confidence p[x0], -inf beyond the block and at unmasked positions; decode the top-k.
    """
    mask_id = den.mask_id
    x = torch.cat([prompt, torch.full((gen_length,), mask_id, device=prompt.device)])[None]
    prompt_len = prompt.numel()
    blocks = gen_length // block_length
    per_block = steps // blocks
    k = gen_length // steps
    for b in range(blocks):
        conf_cache = torch.full(x.shape, torch.inf, dtype=torch.float64, device=x.device)
        r = int(block_length / 8 * 7)
        for i in range(2 * per_block):
            window = r <= i < r + per_block
            if window:
                idx = torch.topk(conf_cache, remdm_number, dim=1, largest=False).indices[0]
                conf_cache[0, idx] = torch.inf
                x[0, idx] = mask_id
            mask_index = x == mask_id
            p = torch.softmax(den.logits(x).double(), dim=-1)                   # [1, L, V] float64
            u = torch.rand(p.shape, dtype=torch.float64, device=x.device, generator=generator)
            x0 = torch.argmax(p / (1e-10 - torch.log(u + 1e-10)), dim=-1)
            x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
            x0_p[:, prompt_len + (b + 1) * block_length:] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            conf = torch.where(mask_index, x0_p, torch.full_like(x0_p, -torch.inf))
            sel = torch.topk(conf[0], remdm_number if window else k).indices
            x[0, sel] = x0[0, sel]
            conf_cache[0, sel] = conf[0, sel]
    return x


def bench_sampler(den: DiffusionLMDenoiser, prompt_len: int, batch: int, repeats: int) -> list[dict]:
    device = den.device
    g = torch.Generator(device=device).manual_seed(0)
    prompt = torch.randint(0, den.mask_id, (prompt_len,), device=device, generator=g)
    sampler = explorer.samplers.ReMDMLLaDA(remdm_number=1, block_length=BLOCK)

    def ours():
        return explorer.generate(den, sampler, steps=STEPS, num_samples=batch, seed=0, prompt=prompt.tolist(),
                                 gen_length=GEN_LENGTH, progress=False, record=True)

    def upstream():
        for _ in range(batch):   # upstream runs one sample at a time
            upstream_remdm_llada(den, prompt, GEN_LENGTH, STEPS, BLOCK, 1, g)

    rows = []
    for name, fn in (("explorer.generate (ReMDMLLaDA)", ours), ("upstream-style loop", upstream)):
        fn()  # warm-up
        reset_peak(device)
        times = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            out = fn()
            sync(device)
            times.append(time.perf_counter() - t)
        sec = sorted(times)[len(times) // 2]
        calls = out.model_calls if out is not None else 2 * STEPS * batch
        rows.append({"what": name, "L": prompt_len + GEN_LENGTH, "batch": batch, "model calls": calls,
                     "s": sec, "tokens/s": GEN_LENGTH * batch / sec, "peak MiB": peak_memory_mib(device)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--gpu", action="store_true", help="LLaDA-8B config, bf16, on CUDA")
    mode.add_argument("--quick", action="store_true", help="a tiny LLaDA config on the CPU (<= 60 s)")
    ap.add_argument("--seq-lens", type=int, nargs="+", default=None, help="forward lengths (default 256 1024)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)

    if args.gpu:
        if not torch.cuda.is_available():
            print("llada_step.py --gpu: no CUDA device here; run --quick on a CPU.", file=sys.stderr)
            return 2
        device, dtype, config = torch.device("cuda"), torch.bfloat16, LLaDAConfig()
        seq_lens, repeats = args.seq_lens or [256, 1024], args.repeats or 5
        # (prompt length, batch): canvases of 256 and 1024; the engine batches, upstream runs rows one by one
        cases, sampler_repeats = [(224, 1), (224, 8), (992, 1)], 1
    else:
        device, dtype = torch.device("cpu"), torch.float32
        config = tiny_config("llada", d_model=64, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=128)
        seq_lens, repeats = args.seq_lens or [64, 256], args.repeats or 2
        cases, sampler_repeats = [(32, 1)], 1

    t0 = time.perf_counter()
    den = random_llada(config, device, dtype)
    sync(device)
    n = den.model.num_parameters()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"# LLaDA config d_model={config.d_model} n_layers={config.n_layers} V={config.embedding_size}: "
          f"{n:,} parameters, {dtype}, {where}; built in {time.perf_counter() - t0:.1f} s; torch {torch.__version__}")
    weights_mib = sum(p.numel() * p.element_size() for p in den.model.parameters()) / 2**20
    print(f"# weights {weights_mib:,.0f} MiB; 'peak MiB' below counts them (CUDA: max allocated; CPU: process RSS)")
    if not args.gpu:
        print("# --quick: a tiny random LLaDA on the CPU; figures show the pipeline works, not GPU speed")

    import pandas as pd
    rows = [r for L in seq_lens for r in bench_forward(den, L, repeats)]
    samp = [r for prompt_len, batch in cases for r in bench_sampler(den, prompt_len, batch, sampler_repeats)]
    with pd.option_context("display.width", 160, "display.float_format", "{:,.2f}".format):
        print("\n## forward (median of", repeats, "calls)")
        print(pd.DataFrame(rows).to_string(index=False))
        print(f"\n## ReMDM-LLaDA at the Table-3 setting ({GEN_LENGTH} new tokens, {STEPS} steps, block {BLOCK}, "
              f"remdm_number 1): generated tokens per second (after a warm-up run; {sampler_repeats} timed)")
        print(pd.DataFrame(samp).to_string(index=False))
    print()
    for L in seq_lens:
        full, fast = (r["ms"] for r in rows if r["L"] == L)
        print_ratio(f"L={L} forward", "full logits ms", "body + 1-row head ms", full / fast)
    for i in range(0, len(samp), 2):
        ours, up = samp[i], samp[i + 1]
        print_ratio(f"ReMDM-LLaDA L={ours['L']} B={ours['batch']} speed-up", "upstream-style s", "ours s",
                    up["s"] / ours["s"])
        if device.type == "cuda":
            print_ratio(f"ReMDM-LLaDA L={ours['L']} B={ours['batch']} peak memory", "upstream-style", "ours",
                        up["peak MiB"] / ours["peak MiB"], "weights included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
