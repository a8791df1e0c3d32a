"""The strategy lab: which tokens to remask, compared on one model, one seed, one budget.

Every strategy runs on the same model, the same prompts (or none) and the same seed, and gets the
same *budget in model calls per sequence*: its step count starts as the largest T whose cost bound
(``sampler.expected_calls(T, L)``) fits the budget (:func:`steps_for_budget`).  A bound can be loose
(a step that accepts one token skips its verify; an unchanged row is not re-scored), so with
``calibrate=True`` (the default) a probe of a few sequences measures the calls T really costs and T
grows while the probe stays within the budget (:func:`calibrate_steps`).  The calls each cell
really spent (``trace.nfe``, scoring passes included) are reported beside the budget.

    lab = compare(model, ["mdlm", "remdm-loop", "rescore"], budgets=[80, 128], num_samples=32,
                  nucleus_p=0.9, cache="runs/lab")
    lab.table      # one row per (strategy, budget): quality, model calls, wall seconds, ledger summary
    lab.ledger     # orders: one row per remask -- hit or miss; its rewrite a fix, a harm or neutral
    lab.texts      # one row per sample: the text (prompted LLaDA / Dream models: read them)

Quality, by task: ``orders`` -- the share of valid records with a cluster standard error, and the
remask ledger (:func:`explorer.studies.ledger.remask_ledger`): precision (hits / remasks), recall
(broken records that got a hit), fixes and harms per 100 model calls; ``stories`` -- judge Gen PPL
with its standard error and the unigram entropy beside it (a lower Gen PPL bought with a lower
entropy is less diverse text, not better text); any other model -- the texts.

Cells are cached (``cache=DIR``: one folder per cell, keyed by the sampler's config, steps, seed,
sample count, prompts and the model's weights hash) and a rerun only computes what is missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from explorer.engine import generate
from explorer.io import atomic_write
from explorer.metrics.registry import get_metric
from explorer.metrics.validity import cluster_stderr
from explorer.models.checkpoint import model_sha256
from explorer.samplers import MAX_STEPS, Sampler
from explorer.samplers.spec import parse_samplers
from explorer.studies.ledger import ledger_summary, remask_ledger
from explorer.tasks import orders, stories

__all__ = ["compare", "calibrate_steps", "plan_cells", "steps_for_budget", "BudgetTooSmall", "LabResult",
           "TABLE_COLUMNS", "task_of"]

TABLE_COLUMNS = ["strategy", "nucleus_p", "budget", "steps", "model_calls", "model_calls_max", "seconds", "num_samples",
                 "quality", "value", "stderr", "entropy", "remasks", "precision", "recall", "fixes", "harms",
                 "fixes_per_100_calls", "harms_per_100_calls", "sampler"]


@dataclass
class LabResult:
    """The lab's three tidy tables (see the module docstring)."""
    table: pd.DataFrame
    ledger: pd.DataFrame
    texts: pd.DataFrame


def task_of(model) -> str:
    """``"orders"``, ``"stories"`` or ``"text"`` (a model whose quality the lab reads as texts), from
    what the model writes (the tasks' own tests), not its name: an exported model may sit in any folder."""
    if orders.writes_records(model):
        return "orders"
    if stories.writes_stories(model):
        return "stories"
    return "text"


class BudgetTooSmall(ValueError):
    """A strategy costs more than the budget even at one step; ``strategy``, ``need`` (its calls at
    T = 1) and ``budget`` let a caller name its own options in the fix."""

    def __init__(self, strategy: str, need: float, budget: int):
        super().__init__(f"{strategy} needs {need:g} model calls per sequence even at 1 step (its draft plus its "
                         f"correction rounds), more than the budget of {budget}; raise the budget or lower its "
                         "rounds / groups.")
        self.strategy, self.need, self.budget = strategy, need, budget


def steps_for_budget(sampler: Sampler, budget: int, gen_length: int) -> int:
    """The largest T with ``sampler.expected_calls(T, gen_length) <= budget``; a clear error when
    even one step (or a draft's first step plus its corrections) costs more than the budget."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive number of model calls per sequence, got {budget!r}.")
    cost = lambda t: sampler.expected_calls(t, gen_length)   # noqa: E731
    if cost(1) > budget:
        raise BudgetTooSmall(sampler.name, cost(1), budget)
    lo, hi = 1, 2
    while cost(hi) <= budget and hi < 1 << 16:
        lo, hi = hi, hi * 2
    while hi - lo > 1:                      # cost is non-decreasing in T
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return lo


def plan_cells(strategies: dict[str, Sampler], budgets: Sequence[int], length: int) -> list[tuple]:
    """(label, sampler, budget, steps) of every cell, all checked before any work: a budget that a
    strategy cannot meet fails here with the fix. T is the largest the budget allows that the
    strategy's blocks accept (ReMDM-LLaDA at gen_length 32 takes T = 32 or 64, not the 40 a budget
    of 80 would allow); a strategy whose blocks accept no T up to it fails with their own reason."""
    plan = []
    for name, s in strategies.items():
        for b in budgets:
            plan.append((name, s, b, _largest_accepted(s, steps_for_budget(s, b, length), length)))
    return plan


def _largest_accepted(sampler: Sampler, steps: int, length: int) -> int:
    refused = None
    for t in range(steps, 0, -1):
        try:
            sampler.check_shape(length, t)
            return t
        except ValueError as e:
            refused = refused or e
    raise refused


def calibrate_steps(model, sampler: Sampler, budget: int, steps: int, *, seed: int = 0, probe: int = 4,
                    prompt=None, gen_length=None, device=None, tries: int = 4) -> int:
    """The largest T found (from ``steps`` up) whose measured mean model calls on ``probe`` sequences
    stay within ``budget``: T grows by the ratio budget / measured calls, at most ``tries`` probes."""
    kw = {} if gen_length is None else {"gen_length": gen_length}
    length = int(gen_length if gen_length is not None else model.seq_len)

    def calls(t: int) -> float:
        tr = generate(model, sampler, t, num_samples=probe, seed=seed, prompt=prompt, device=device,
                      record=False, progress=False, **kw)
        if not tr.complete:  # Ctrl-C during a probe: stop, as a cell does
            raise KeyboardInterrupt("the lab was interrupted; finished cells are cached and will not be recomputed.")
        return float(tr.nfe.double().mean())

    best, used = steps, calls(steps)
    for _ in range(tries):
        if used >= 0.9 * budget or used <= 0:
            break
        nxt = min(max(best + 1, int(best * budget / used)), MAX_STEPS)
        if nxt <= best:      # at the step limit already
            break
        try:
            sampler.check_shape(length, nxt)
        except ValueError:
            break
        got = calls(nxt)
        if got > budget:
            break
        best, used = nxt, got
    return best


def _as_strategies(strategies, nucleus_p: float | None) -> dict[str, Sampler]:
    """``{label: sampler}``, read as a sweep reads its samplers (:func:`~explorer.samplers.spec.parse_samplers`):
    a spec's label is its text, a sampler's its name, and one label or one sampler given twice is refused
    (two ``ReMDMLoop`` objects with other settings need a dict of labels)."""
    if isinstance(strategies, Mapping):
        items = list(strategies.items())
    else:
        strategies = [strategies] if isinstance(strategies, (str, Sampler)) else list(strategies)
        items = [(s if isinstance(s, str) else getattr(s, "name", s), s) for s in strategies]
    if not items:
        raise ValueError("give at least one strategy, e.g. ['mdlm', 'remdm-loop', 'rescore'].")
    for name, s in items:
        if not isinstance(s, (str, Sampler)):
            raise TypeError(f"strategy {name!r} is a {type(s).__name__}; give a sampler or a spec like 'rescore'.")
    return parse_samplers(strategies, **({} if nucleus_p is None else {"nucleus_p": nucleus_p}))


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _quality(task: str, trace, metrics: dict) -> dict:
    ids, texts = trace.final, trace.texts
    if task == "orders":
        recs = orders.record_table([orders.decode(x) for x in ids])
        by_seq = recs.groupby("sample")["valid"]
        return {"quality": "valid_records", "value": float(recs["valid"].mean()),
                "stderr": cluster_stderr(by_seq.sum().to_numpy(), by_seq.size().to_numpy())}
    if task == "stories":
        ppl = metrics["gen_ppl"](ids, texts).iloc[0]
        ent = metrics["entropy"](ids, texts).iloc[0]
        return {"quality": "gen_ppl", "value": float(ppl.value), "stderr": float(ppl.stderr),
                "entropy": float(ent.value)}
    return {"quality": "texts", "value": float("nan"), "stderr": float("nan")}


def _cell(model, task, name, sampler, budget, steps, num_samples, seed, prompt, gen_length, batch_size, device,
          metrics) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    t0 = time.perf_counter()
    kw = {} if gen_length is None else {"gen_length": gen_length}
    trace = generate(model, sampler, steps, num_samples=num_samples, seed=seed, prompt=prompt, device=device,
                     batch_size=batch_size, record=task == "orders", progress=False, **kw)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if not trace.complete:
        raise KeyboardInterrupt("the lab was interrupted; finished cells are cached and will not be recomputed.")
    nfe = trace.nfe.double()
    row = {"strategy": name, "nucleus_p": float(sampler.nucleus_p), "budget": int(budget), "steps": int(steps), "model_calls": float(nfe.mean()),
           "model_calls_max": int(nfe.max()), "seconds": seconds, "num_samples": int(trace.num_samples),
           "sampler": json.dumps(sampler.config, sort_keys=True, default=str)}
    row.update(_quality(task, trace, metrics))
    ledger = pd.DataFrame()
    if task == "orders":
        ledger = remask_ledger(trace)
        summ = ledger_summary(ledger)
        row.update({k: summ[k] for k in ("remasks", "precision", "recall", "fixes", "harms",
                                         "fixes_per_100_calls", "harms_per_100_calls")})
        ledger = ledger.assign(strategy=name, budget=int(budget))
    texts = pd.DataFrame({"strategy": name, "budget": int(budget), "sample": np.arange(trace.num_samples),
                          "text": trace.texts, "model_calls": trace.nfe.numpy()})
    return row, ledger, texts


def compare(model, strategies, budgets: Sequence[int], num_samples: int = 32, seed: int = 0, *,
            nucleus_p: float | None = None, prompt=None, gen_length: int | None = None,
            cache: str | os.PathLike | None = None, batch_size: int | None = None, device=None,
            judge=None, progress: bool = True, calibrate: bool = True) -> LabResult:
    """Run every strategy at every budget on the same model, prompts and seed (module docstring).

    ``strategies``: sampler specs (``"rescore:rounds=8"``), samplers, or ``{label: sampler}``;
    ``nucleus_p`` is given to specs that do not set it.  ``budgets``: model calls per sequence.
    ``prompt`` / ``gen_length``: for prompted models (LLaDA, Dream), as :func:`explorer.generate`.
    ``calibrate``: measure each strategy's calls on a probe and raise its T while it fits the budget.
    """
    strategies = _as_strategies(strategies, nucleus_p)
    budgets = [int(b) for b in budgets]
    if not budgets:
        raise ValueError("give at least one budget (model calls per sequence), e.g. budgets=[64, 128].")
    if len(set(budgets)) < len(budgets):
        raise ValueError(f"budgets {budgets} repeat a value: a repeated budget counts its cells twice; give each once.")
    if getattr(model, "seq_len", None) is None:
        if prompt is None or gen_length is None:
            raise ValueError("this model has no fixed length (LLaDA, Dream): give prompt= and gen_length= so every "
                             "strategy answers the same prompts.")
        length = int(gen_length)
    else:
        length = int(model.seq_len)
    task = task_of(model)
    plan = plan_cells(strategies, budgets, length)
    metrics = {}
    if task == "stories":
        metrics = {"gen_ppl": get_metric("gen_ppl", device=device, judge=judge), "entropy": get_metric("entropy")}
    cache = Path(cache) if cache is not None else None
    sha = model_sha256(model) if cache is not None else ""
    if calibrate:
        tuned = []
        for name, s, b, steps in plan:
            key = cache / f"steps-{_key(s.config, b, steps, seed, sha, prompt, gen_length)}.json" if cache else None
            if key is not None and key.exists():
                t = json.loads(key.read_text())["steps"]
            else:
                t = calibrate_steps(model, s, b, steps, seed=seed, prompt=prompt, gen_length=gen_length, device=device)
                if key is not None:
                    atomic_write(key, lambda tmp, t=t: Path(tmp).write_text(json.dumps({"steps": t})))
            tuned.append((name, s, b, t))
        plan = tuned
    rows, ledgers, texts = [], [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(plan), desc="strategies", unit="cell")
    try:
        for name, s, b, steps in plan:
            if bar is not None:
                bar.set_postfix_str(f"{name} budget={b} T={steps}")
            folder = None
            if cache is not None:
                folder = cache / _key(s.config, steps, seed, num_samples, sha, prompt, gen_length, b, name,
                                      metrics and {k: m.key for k, m in metrics.items()})
            if folder is not None and (folder / "row.parquet").exists():
                row = pd.read_parquet(folder / "row.parquet").iloc[0].to_dict()
                row.setdefault("nucleus_p", float(s.nucleus_p))
                led = pd.read_parquet(folder / "ledger.parquet")
                txt = pd.read_parquet(folder / "texts.parquet")
            else:
                row, led, txt = _cell(model, task, name, s, b, steps, num_samples, seed, prompt, gen_length,
                                      batch_size, device, metrics)
                if folder is not None:       # row last: a cell is cached only when all three are written
                    write_parquet_atomic(led, folder / "ledger.parquet")
                    write_parquet_atomic(txt, folder / "texts.parquet")
                    write_parquet_atomic(pd.DataFrame([row]), folder / "row.parquet")
            rows.append(row)
            ledgers.append(led)
            texts.append(txt)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    ledger = pd.concat([x for x in ledgers if len(x)], ignore_index=True) if any(len(x) for x in ledgers) \
        else pd.DataFrame()
    table.attrs.update(task=task, seed=seed, model=(getattr(model, "identity", None) or {}))
    return LabResult(table=table, ledger=ledger, texts=pd.concat(texts, ignore_index=True))
