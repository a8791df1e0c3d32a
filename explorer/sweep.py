"""Sweeps over samplers x steps x seeds, cached and resumable, and the return-on-compute view.

    df = explorer.sweep(model, {"mdlm": MDLM(), "remdm-loop": ReMDMLoop()}, steps=[16, 32, 64],
                        num_samples=256, metrics=["validity", "entropy"], cache_dir="runs/sweep/cache")
    roc = return_on_compute(df, baseline="mdlm", metric="validity")
    print(summary(roc))

**Result** (tidy, one row per cell and metric): ``sampler, steps, seed, metric, value, stderr,
model_calls, nfe, seconds, tokens_per_second, num_samples, device, cached``. ``model_calls`` counts
the engine's batched forward passes; ``nfe`` the mean per-sample calls a batch-1 run needs (the
paper's NFE, less the calls it makes at steps that draw nothing; see :func:`per_sample_nfe`). ``stderr`` is the standard
error over the cell's samples where that means something (for validity, records clustered by sequence, delta method for
Gen PPL, mean entropy); MAUVE gives the spread over k-means seeds when asked, else NaN.

**Cache.** Each cell -- (sampler config, steps, seed, num_samples, model sha256) -- keeps its
samples (token ids and texts) and, separately, each metric's rows, as Parquet files written
atomically (temporary file, then rename). A sweep that is interrupted and started again
recomputes nothing already written; adding a metric later scores the stored samples without
generating them again. ``batch_size`` and the device are not in the key: the engine's samples
do not depend on the batch size, and only float rounding differs between devices.

**Several GPUs.** Launch the same script (or ``python -m explorer.cli sweep ...``) with
``torchrun --nproc_per_node=K``: the sweep initialises ``torch.distributed`` from torchrun's
environment if you have not (NCCL with GPUs, gloo on CPU); rank r runs cells r, r+K, ... on
``cuda:LOCAL_RANK`` and rank 0 gathers every row (``dist.gather_object``); other ranks return only
their own rows. Otherwise everything runs in this process.

**Return on compute** -- see :func:`return_on_compute` for the definitions, including the knee.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from . import engine
from .io import atomic_write, write_text_atomic
from .metrics.registry import Metric, get_metric, higher_is_better
from .protocol import model_identity
from .rng import MAX_SEED
from .samplers.base import MAX_STEPS, as_int, check_steps
from .samplers.spec import parse_samplers

RESULT_COLUMNS = ["sampler", "steps", "seed", "metric", "value", "stderr", "model_calls", "nfe", "seconds",
                  "tokens_per_second", "num_samples", "device", "cached"]
CACHE_VERSION = 1


# ----------------------------------------------------------------------------- helpers

def model_sha256(model: Any) -> str:
    """The model's weights digest: ``model.identity["sha256"]`` or, failing that, a hash of its
    parameters (so two different models never share cache cells); the one digest of
    :func:`explorer.models.checkpoint.model_sha256`."""
    from .models.checkpoint import model_sha256 as weights_digest
    return weights_digest(model)


def _cell_key(sampler_config: dict, steps: int, seed: int, num_samples: int, sha: str) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "sampler": sampler_config, "steps": int(steps), "seed": int(seed),
                       "num_samples": int(num_samples), "model": sha}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """``df`` as Parquet at ``path``, written to a temporary file first and renamed, so a reader
    (or a resumed sweep) never sees half a file."""
    atomic_write(Path(path), lambda tmp: df.to_parquet(tmp, index=False))


def process_group():
    """``(torch.distributed, owned)`` when this process is one rank of several, else ``(None, False)``.

    Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` > 1 in the environment) the process group is
    initialised here if the caller has not done it (NCCL with GPUs, gloo on CPU); ``owned`` is then
    True and the caller destroys the group when it is done (``dist.destroy_process_group()``), so
    the process exits cleanly. The sweep and ``benchmarks/reproduce_llada.py`` share it."""
    d = torch.distributed
    if not d.is_available():
        return None, False
    if d.is_initialized():
        return d, False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        d.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return d, True
    return None, False


def rank() -> int:
    """This process's rank: from torch.distributed when initialised, else torchrun's ``RANK``
    (0 in a single process). Only rank 0 holds a distributed sweep's gathered rows."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank()
    return int(os.environ.get("RANK", "0"))


def repeated(values: Iterable) -> list:
    """The values that occur more than once, in order of their first repeat."""
    seen, twice = set(), []
    for v in values:
        if v in seen and v not in twice:
            twice.append(v)
        seen.add(v)
    return twice


def refuse_repeats(what: str, values: Sequence) -> None:
    """A grid axis (steps, seeds, budgets) given the same value twice would run its cells twice and
    count them twice in the means, shrinking the standard errors: refused, naming the repeats."""
    twice = repeated(values)
    if twice:
        raise ValueError(f"{what} {list(values)} repeat {', '.join(map(str, twice))}: a repeated cell counts "
                         f"twice in the means and shrinks their standard errors; give each of the {what} once.")


def grid_axis(what: str, values: Any, example: str, low: int) -> list[int]:
    """A grid axis (steps, seeds) as a list of Python ints >= ``low``; a bare int is a one-value axis.
    A float, a word or a value below ``low`` is refused here, before the cache is touched (it was cut
    to an int, or refused by the first cell's generate); so are an empty axis, which would return an
    empty table as if the sweep had run, and a repeat (:func:`refuse_repeats`)."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        values = [values]
    axis = [as_int(f"each of {what}", v, low, must=f"a whole number >= {low} (e.g. {what}={example})")
            for v in values]
    if not axis:
        raise ValueError(f"{what} is empty, so the sweep has no cell to run; give at least one, e.g. {what}={example}.")
    refuse_repeats(what, axis)
    return axis


class _Cell:
    def __init__(self, name, sampler, steps, seed, key):
        self.name, self.sampler, self.steps, self.seed, self.key = name, sampler, int(steps), int(seed), key


# ----------------------------------------------------------------------------- the sweep

def per_sample_nfe(trace: Any) -> np.ndarray:
    """Model calls each sample would need on its own (batch size 1, as upstream runs): the
    engine's per-sample count, ``trace.nfe``.

    The engine batches samples, so ``trace.model_calls`` counts a forward pass whenever *any*
    sample in the batch decodes a token; that hides MDLM's exact cache (reference §1.7), which
    skips the call when a sample's state is unchanged.  The engine goes further than §1.7: it calls
    for a sample only at a step where the sample draws, and runs the final pass (§1.8) only when
    masks are left, so this is at most the paper's NFE (equal to it but for those calls).
    """
    return trace.nfe.numpy().astype(np.int64)


def _generate_cell(model, cell: _Cell, num_samples, device, batch_size) -> tuple[pd.DataFrame, dict]:
    t0 = time.perf_counter()
    trace = engine.generate(model, cell.sampler, cell.steps, num_samples=num_samples, seed=cell.seed,
                            device=device, batch_size=batch_size, record=False, progress=False)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if not trace.complete:
        raise KeyboardInterrupt("sweep interrupted; finished cells are cached and will not be recomputed.")
    final = trace.final
    samples = pd.DataFrame({"sample": np.arange(final.shape[0]), "ids": list(final.numpy()),
                            "text": trace.texts, "nfe": per_sample_nfe(trace)})
    info = {"model_calls": trace.model_calls, "seconds": seconds,
            "device": str(trace.meta.get("device", device)), "seq_len": int(final.shape[1])}
    for k, v in info.items():
        samples[k] = v
    return samples, info


def _warm_up(model, cell: _Cell, device) -> None:
    """One untimed single-sample run of a cell's sampler before its first timed cell.

    A process's first generation pays one-off costs (lazy initialisation, thread pools, CUDA
    context and kernel selection) that are not the sampler's; without this the first cell of a
    sweep looked slower than longer runs after it (MDLM at T = 8 above T = 16 in "vs seconds").
    """
    trace = engine.generate(model, cell.sampler, cell.steps, num_samples=1, seed=cell.seed, device=device,
                            record=False, progress=False)
    if not trace.complete:
        raise KeyboardInterrupt("sweep interrupted; finished cells are cached and will not be recomputed.")
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _run_cells(model, cells: list[_Cell], metrics: list[Metric], num_samples, device, batch_size,
               cache: Path | None, progress: bool) -> list[dict]:
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(cells), desc="sweep", unit="cell")
    rows: list[dict] = []
    warmed: set[str] = set()
    try:
        for cell in cells:
            if bar is not None:
                bar.set_postfix_str(f"{cell.name} T={cell.steps} seed={cell.seed}")
            spath = cache / cell.key / "samples.parquet" if cache else None
            cached = bool(spath and spath.exists())
            if cached:
                samples = pd.read_parquet(spath)
            else:
                if cell.name not in warmed:  # seconds exclude each sampler's first-call costs
                    _warm_up(model, cell, device)
                    warmed.add(cell.name)
                samples, _ = _generate_cell(model, cell, num_samples, device, batch_size)
                if spath:
                    write_parquet_atomic(samples, spath)
            first = samples.iloc[0]
            ids = torch.tensor(np.stack(samples["ids"].to_numpy()), dtype=torch.long)
            texts = samples["text"].tolist()
            seconds = float(first["seconds"])
            base = {"sampler": cell.name, "steps": cell.steps, "seed": cell.seed,
                    "model_calls": int(first["model_calls"]),
                    "nfe": float(samples["nfe"].mean()) if "nfe" in samples else float("nan"),
                    "seconds": seconds,
                    "tokens_per_second": ids.numel() / seconds if seconds > 0 else float("nan"),
                    "num_samples": len(texts), "device": str(first["device"])}
            for m in metrics:
                mpath = cache / cell.key / f"metric-{hashlib.sha256(m.key.encode()).hexdigest()[:16]}.parquet" \
                    if cache else None
                hit = bool(mpath and mpath.exists())
                mdf = pd.read_parquet(mpath) if hit else m(ids, texts)
                if mpath and not hit:
                    write_parquet_atomic(mdf.assign(metric_key=m.key), mpath)
                for r in mdf.itertuples(index=False):
                    rows.append({**base, "metric": r.metric, "value": float(r.value),
                                 "stderr": float(r.stderr), "cached": cached and hit})
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return rows


def sweep(model: Any, samplers: Any, steps: Sequence[int] | int | str, num_samples: int = 64,
          seeds: Sequence[int] | int = (0,), metrics: Sequence[Any] = ("entropy",),
          cache_dir: str | os.PathLike | None = None, device: Any = None, batch_size: int | None = None,
          progress: bool = True, metric_options: dict | None = None) -> pd.DataFrame:
    """Generate ``num_samples`` per (sampler, steps, seed) and score them; tidy results.

    ``samplers``: ``{label: sampler or spec}``, a list of specs/samplers, or ``"mdlm,remdm-loop"``
    (settings inline: ``"remdm-cap:eta=0.008"``; the one spec syntax, :mod:`explorer.samplers.spec`). ``steps``: a list, one int, or ``"L/4,L,4L"`` in units of
    the model's sequence length; each T >= 1. ``seeds``: a list or one int. An empty axis is refused.
    ``metrics``: names (``"entropy"``, ``"gen_ppl"``, ``"mauve"``, ``"validity"``), :class:`Metric`
    objects or callables ``fn(ids, texts)`` returning a number, one number per sample (reported as
    their mean and its standard error), a dict or a DataFrame (see :func:`explorer.metrics.get_metric`);
    ``metric_options`` (e.g. ``{"judge": "gpt2-large"}``) go to the named ones.
    ``cache_dir``: where finished cells live; a restarted sweep skips them (module doc).
    """
    if getattr(model, "seq_len", None) is None:
        raise ValueError("a sweep needs a fixed-length model (an MDLM DiT: orders, stories, mdlm-owt); to compare "
                         "samplers on a prompted model (LLaDA, Dream) use `explorer strategies --prompt TEXT "
                         "--gen-length N` (explorer.studies.strategies).")
    sampler_map = parse_samplers(samplers)
    asked = steps
    steps = grid_axis("steps", parse_steps(asked, model.seq_len) if isinstance(asked, str) else asked, "[16, 32]",
                      low=0)      # T < 1 is refused just below, with the step expression at the model's L
    seeds = grid_axis("seeds", seeds, "[0, 1]", low=0)
    if max(seeds) > MAX_SEED:
        raise ValueError(f"seed {max(seeds)} is above 2**63 - 1; choose seeds in 0 .. 2**63 - 1.")
    if min(steps) < 1:   # refused here, before the cache is touched, not by the first cell's generate
        at_L = f" (T = {', '.join(map(str, steps))} at L = {model.seq_len})" if isinstance(asked, str) else ""
        raise ValueError(f"steps {asked!r}{at_L} asks for fewer than 1 step; give step counts >= 1, e.g. "
                         "steps=[16, 32], or larger fractions of L: steps='L/4,L'.")
    for T in steps:      # a string was checked by parse_steps; a list is checked here, before the cache too
        check_steps(T)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    d, owned = process_group()
    if d is not None and torch.cuda.is_available():
        if device is None:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', d.get_rank() % torch.cuda.device_count()))}"
        if torch.device(device).type == "cuda" and torch.device(device).index is not None:
            torch.cuda.set_device(torch.device(device))     # NCCL's collectives run on the rank's GPU
    mets = [get_metric(m, device=device, **(metric_options or {})) if isinstance(m, str) else get_metric(m)
            for m in metrics]
    for m in mets:
        why = m.unfit(model)
        if why is not None:
            raise ValueError(f"metric {m.name!r} does not fit this model: {why}. Drop it (e.g. metrics=['entropy']), "
                             "sweep a model it reads, or, for gen_ppl / mauve, pass metric_options={'judge': ...} "
                             "with a judge that reads this model's text.")
    cache = Path(cache_dir) if cache_dir is not None else None
    sha = model_sha256(model) if cache is not None else ""
    cells = [_Cell(name, smp, T, seed, _cell_key(smp.config, T, seed, num_samples, sha))
             for name, smp in sampler_map.items() for T in steps for seed in seeds]
    if cache is not None and (d is None or d.get_rank() == 0):
        cache.mkdir(parents=True, exist_ok=True)
        # What each cell folder holds, for people browsing the cache: <key>/cell.json (authoritative,
        # one file per cell, so sweeps sharing a cache never lose each other's entries) and an
        # index sweep.json (a convenience; re-read just before writing, last writer wins).
        described = {c.key: {"sampler": c.name, "config": c.sampler.config, "steps": c.steps, "seed": c.seed,
                             "num_samples": num_samples, "model": model_identity(model) | {"sha256": sha}}
                     for c in cells}
        for key, info in described.items():
            if not (cache / key / "cell.json").exists():
                (cache / key).mkdir(exist_ok=True)
                write_text_atomic(cache / key / "cell.json", json.dumps(info, indent=1, default=str))
        index = cache / "sweep.json"
        known = json.loads(index.read_text()).get("cells", {}) if index.exists() else {}
        write_text_atomic(index, json.dumps({"cells": known | described}, indent=1, default=str))
    if d is not None:
        rank, world = d.get_rank(), d.get_world_size()
        try:
            rows = _run_cells(model, cells[rank::world], mets, num_samples, device, batch_size, cache,
                              progress and rank == 0)
            gathered = [None] * world if rank == 0 else None
            d.gather_object(rows, gathered, dst=0)
        finally:
            if owned:
                d.destroy_process_group()
        if rank == 0:
            rows = [r for part in gathered for r in part]
    else:
        rows = _run_cells(model, cells, mets, num_samples, device, batch_size, cache, progress)
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    order = {n: i for i, n in enumerate(sampler_map)}
    df = df.sort_values(["sampler", "steps", "seed"], key=lambda c: c.map(order) if c.name == "sampler" else c,
                        kind="stable").reset_index(drop=True)
    return df


# ----------------------------------------------------------------------------- return on compute

def _default_metric(df: pd.DataFrame) -> str:
    names = list(dict.fromkeys(df["metric"]))
    for pref in ("validity", "mauve", "gen_ppl"):
        if pref in names:
            return pref
    return names[0]


def seed_mean_stderr(g: pd.DataFrame) -> float:
    """Standard error of the mean over seeds of one setting: from the per-seed standard errors
    when every seed has one, else from the spread of the seed values (nan for a single seed)."""
    n = len(g)
    se = g["stderr"].to_numpy(dtype=float)
    if np.isfinite(se).all():
        return math.sqrt(float((se ** 2).sum())) / n
    if n > 1:
        return float(g["value"].std(ddof=1) / math.sqrt(n))
    return float("nan")


def _per_setting(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean over seeds per (sampler, steps), with the standard error of that mean."""
    d = df[df["metric"] == metric]
    if d.empty:
        raise ValueError(f"metric {metric!r} is not in this sweep; it has {sorted(set(df['metric']))}.")

    def agg(g: pd.DataFrame) -> pd.Series:
        n = len(g)
        stderr = seed_mean_stderr(g)
        nfe = g["nfe"].mean() if "nfe" in g else float("nan")
        return pd.Series({"value": g["value"].mean(), "stderr": stderr, "seeds": n,
                          "model_calls": g["model_calls"].mean(), "nfe": nfe, "seconds": g["seconds"].mean()})

    out = d.groupby(["sampler", "steps"], sort=False).apply(agg, include_groups=False).reset_index()
    return out


def return_on_compute(df: pd.DataFrame, baseline: str = "mdlm", metric: str | None = None,
                      higher_is_better_: bool | None = None, z: float = 2.0,
                      tolerance: float = 0.0, calls: str | None = None) -> pd.DataFrame:
    """What each sampler buys over the baseline, per unit of compute, and where more stops paying.

    One row per (sampler, steps), seeds averaged. With ``q`` the metric oriented so that higher is
    better (``gen_ppl`` and violation rates are negated; pass ``higher_is_better_`` for a custom
    metric) and costs in model calls and seconds. "Model calls" is ``calls``: ``"nfe"`` (default
    when the sweep has it) is the per-sample count a batch-1 run needs (:func:`per_sample_nfe`), independent
    of batch size; ``"model_calls"`` is the batched forward passes the engine actually ran.

    * ``gain`` = q(sampler, T) - q(baseline, T): improvement over the baseline at the same T;
      ``gain_stderr`` its standard error;
    * ``extra_calls`` / ``extra_seconds``: cost over the baseline at the same T;
      ``gain_per_call`` = gain / extra_calls and ``gain_per_second`` likewise (NaN when the sampler
      costs no more than the baseline: the gain is then free);
    * ``marginal_gain`` = q(T) - q(previous T) along the sampler's own steps, and
      ``marginal_gain_per_call`` / ``_per_second`` that divided by the added calls / seconds: the
      return of the last increase in steps;
    * ``is_knee``: **the knee** is the cheapest setting (fewest model calls, then fewest steps) of a
      sampler that no costlier setting of the same sampler beats by more than noise -- by more
      than ``max(z * sqrt(se_a^2 + se_b^2), tolerance)``. Spending beyond the knee buys no gain you
      could tell from sampling noise at this sample size (so the knee moves right with more
      samples, as it should). Where stderr is unknown, only ``tolerance`` counts.
    """
    metric = metric or _default_metric(df)
    hib = higher_is_better_ if higher_is_better_ is not None else higher_is_better(metric)
    if hib is None:
        warnings.warn(f"{metric!r} has no better direction; treating higher as better. "
                      "Pass higher_is_better_= to choose.", stacklevel=2)
        hib = True
    sign = 1.0 if hib else -1.0
    s = _per_setting(df, metric)
    if calls is None:
        calls = "nfe" if s["nfe"].notna().all() else "model_calls"
    s["calls"] = s[calls]
    s["metric"] = metric
    s["quality"] = sign * s["value"]
    if baseline not in set(s["sampler"]):
        raise ValueError(f"baseline {baseline!r} is not in this sweep (samplers: {sorted(set(s['sampler']))}).")
    base = s[s["sampler"] == baseline].set_index("steps")
    b = base.reindex(s["steps"])
    s["gain"] = s["quality"].to_numpy() - b["quality"].to_numpy()
    s["gain_stderr"] = np.sqrt(s["stderr"].to_numpy() ** 2 + b["stderr"].to_numpy() ** 2)
    s["extra_calls"] = s["calls"].to_numpy() - b["calls"].to_numpy()
    s["extra_seconds"] = s["seconds"].to_numpy() - b["seconds"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        s["gain_per_call"] = np.where(s["extra_calls"] > 0, s["gain"] / s["extra_calls"], np.nan)
        s["gain_per_second"] = np.where(s["extra_seconds"] > 0, s["gain"] / s["extra_seconds"], np.nan)
    parts = []
    for _, g in s.groupby("sampler", sort=False):
        g = g.sort_values(["calls", "steps"]).copy()
        g["marginal_gain"] = g["quality"].diff()
        g["marginal_calls"] = g["calls"].diff()
        g["marginal_seconds"] = g["seconds"].diff()
        with np.errstate(divide="ignore", invalid="ignore"):
            g["marginal_gain_per_call"] = np.where(g["marginal_calls"] > 0, g["marginal_gain"] / g["marginal_calls"], np.nan)
            g["marginal_gain_per_second"] = np.where(g["marginal_seconds"] > 0,
                                                     g["marginal_gain"] / g["marginal_seconds"], np.nan)
        q = g["quality"].to_numpy()
        se = np.nan_to_num(g["stderr"].to_numpy(dtype=float), nan=0.0)
        knee = len(g) - 1
        for k in range(len(g)):
            margin = np.maximum(z * np.sqrt(se[k + 1:] ** 2 + se[k] ** 2), tolerance)
            if not np.any(q[k + 1:] - q[k] > margin):
                knee = k
                break
        g["is_knee"] = np.arange(len(g)) == knee
        parts.append(g)
    out = pd.concat(parts, ignore_index=True)
    cols = ["sampler", "steps", "metric", "value", "stderr", "seeds", "calls", "model_calls", "nfe", "seconds", "quality",
            "gain", "gain_stderr", "extra_calls", "extra_seconds", "gain_per_call", "gain_per_second",
            "marginal_gain", "marginal_calls", "marginal_seconds", "marginal_gain_per_call",
            "marginal_gain_per_second", "is_knee"]
    out = out[cols]
    out.attrs.update(baseline=baseline, metric=metric, higher_is_better=hib, z=z, tolerance=tolerance, calls=calls)
    return out


def fmt_value(v: float, se: float) -> str:
    """``0.910 ± 0.010`` (three decimals below 10, one above; no ± without a standard error)."""
    digits = 3 if abs(v) < 10 else 1
    return f"{v:.{digits}f}" + (f" ± {se:.{digits}f}" if np.isfinite(se) else "")


def knee_phrase(roc: pd.DataFrame, sampler: str) -> str:
    """Where more steps stop paying for one sampler of a :func:`return_on_compute` table, true at
    the edge of the measured range: a knee at the largest T measured is not a plateau (that T
    still beat the one before it by more than noise), so it is said as "still improving"."""
    g = roc[roc["sampler"] == sampler]
    k = g[g["is_knee"]]
    if k.empty:
        return f"{sampler} shows no knee"
    T = int(k["steps"].iloc[0])
    if len(g) == 1:
        return f"{sampler} was measured at one T only ({T})"
    if T == int(g["steps"].max()):
        return (f"{sampler} is still improving at T = {T}, the most steps measured (run more steps to find "
                "where it stops paying)")
    value = f" ({fmt_value(k['value'].iloc[0], k['stderr'].iloc[0])})" if "value" in k.columns else ""
    return f"{sampler} stops paying beyond T = {T}{value} (no larger T measured is better by more than noise)"


def summary(df: pd.DataFrame, baseline: str = "mdlm", metric: str | None = None) -> str:
    """One line a non-specialist can read, from a sweep DataFrame or a :func:`return_on_compute` one."""
    roc = df if "is_knee" in df.columns else return_on_compute(df, baseline=baseline, metric=metric)
    baseline = roc.attrs.get("baseline", baseline)
    metric = roc.attrs.get("metric", metric or roc["metric"].iloc[0])
    hib = roc.attrs.get("higher_is_better", True)
    others = roc[(roc["sampler"] != baseline) & roc["gain"].notna()]
    word = "higher" if hib else "lower"
    if others.empty:
        return f"{metric} ({word} is better): only {baseline} was run; {knee_phrase(roc, baseline)}."
    best = others.loc[others["gain"].idxmax()]
    base_row = roc[(roc["sampler"] == baseline) & (roc["steps"] == best["steps"])].iloc[0]
    calls_ratio = best["calls"] / base_row["calls"] if base_row["calls"] else float("nan")
    se = best["gain_stderr"]
    if best["gain"] > 0 and not np.isfinite(se):
        verdict = "a gain of unknown noise (no standard error: run several seeds)"
    elif best["gain"] > 0 and best["gain"] > 2 * se:
        verdict = "a clear gain"
    elif best["gain"] > 0:
        verdict = "a gain within noise"
    else:
        verdict = "no gain"
    return (f"{metric} ({word} is better): at T={int(best['steps'])} {best['sampler']} scores "
            f"{fmt_value(best['value'], best['stderr'])} vs {baseline}'s "
            f"{fmt_value(base_row['value'], base_row['stderr'])}, {verdict}, for {calls_ratio:.1f}x the model calls"
            f"{' (per sample)' if roc.attrs.get('calls') == 'nfe' else ''}; {knee_phrase(roc, best['sampler'])}; "
            f"{knee_phrase(roc, baseline)}.")


# ----------------------------------------------------------------------------- steps

# a step count in units of L: [k][*]L[*k][/m] (k, m plain decimals), e.g. L, 2L, L*2, L/4, 0.5L, 3L/4
_L_STEPS = re.compile(r"(?:(?P<pre>\d+(?:\.\d*)?)\*?)?L(?:\*(?P<post>\d+(?:\.\d*)?))?(?:/(?P<den>\d+(?:\.\d*)?))?")


def parse_steps(spec: str, seq_len: int) -> list[int]:
    """Steps from ``"16,32,64"`` or in units of the sequence length: ``"L/4,L/2,L,2L,4L,8L"``.

    A part in units of L is ``L``, ``kL`` (or ``k*L``, ``L*k``), ``L/m`` or ``kL/m``, with k and m
    plain numbers; T = round(k * seq_len / m). A part that is none of these (``2L2``, ``LL``,
    ``L/0``), or a T above :data:`MAX_STEPS`, raises ValueError naming it (the CLI words its own
    message on that)."""
    out = []
    for tok in spec.split(","):
        tok = tok.strip().replace(" ", "")
        if not tok:
            continue
        try:
            if "L" in tok:
                m = _L_STEPS.fullmatch(tok)
                if m is None or (m["pre"] and m["post"]) or (m["den"] is not None and float(m["den"]) == 0):
                    raise ValueError
                mult = float(m["pre"] or m["post"] or 1)
                out.append(int(round(mult * seq_len / float(m["den"] or 1))))
            else:
                out.append(int(tok))
        except ValueError:   # "abc", "L/0", "2L2"
            raise ValueError(f"steps {spec!r}: {tok!r} is not a step count; write e.g. '16,32,64' or "
                             "'L/4,L,2L' (L = the sequence length; kL/m with plain numbers k, m).") from None
        if out[-1] > MAX_STEPS:
            raise ValueError(f"steps {spec!r}: {tok!r} is T = {out[-1]}, above the limit of {MAX_STEPS:,} steps "
                             "(the paper's largest T is 4096); give fewer steps.")
    return out
