"""How a metric evolves inside one trace: "what would the model output if stopped at step k?"

At step k some positions are still masked. Two ways to read a finished sequence off that state:

* ``fill=model`` (the honest one): fill every masked position with the argmax of the model's
  p(x0 | z_k) under the SUBS rules (mask logit removed, unmasked tokens kept), exactly the final
  argmax pass of reference §1.8 applied early. One model call per step (batched over samples).
* ``fill="mask"`` (free): leave the masks in; metrics then see the mask token as a token.

The result is tidy -- one row per (sample, step) -- and :func:`attribute_changes` lines the
changes up with the trace's remask/unmask events so you can see which remasks fixed what.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch


@torch.no_grad()
def fill_argmax(model: Any, z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Masked positions of ``z[N, L]`` filled by argmax p(x0 | z) (SUBS: the mask never wins):
    the engine's own final pass (reference §1.8), :func:`explorer.engine.fill_masked`."""
    from explorer.engine import fill_masked
    return fill_masked(model, z, batch_size)


def _resolve_metric(metric_fn: Any, inputs: str | None):
    if isinstance(metric_fn, str):
        from .registry import per_sample_metric
        return per_sample_metric(metric_fn)
    return metric_fn, inputs or "ids"


def metric_by_step(trace: Any, metric_fn: Callable | str, steps: Iterable[int] | None = None,
                   fill: Any = "mask", inputs: str | None = None,
                   batch_size: int | None = None) -> pd.DataFrame:
    """Per-sample metric of the sequence the sampler would output if stopped after each step.

    ``metric_fn`` maps ``ids LongTensor[N, L]`` (``inputs="ids"``, default) or decoded texts
    (``inputs="texts"``) to ``N`` per-sample values; or a name: ``"entropy"``, ``"validity"``,
    ``"gen_ppl"``. ``steps`` defaults to every step 0..``trace.last_step``. ``fill`` is
    ``"mask"`` or the model that produced the trace (see module doc).

    Returns columns ``sample, step, value, n_masked`` (masked positions at that step, before filling).
    """
    fn, inputs = _resolve_metric(metric_fn, inputs)
    if steps is None:
        steps = range(0, int(trace.last_step) + 1)
    rows = []
    for k in steps:
        z = trace.state_at(int(k))
        n_masked = (z == trace.mask_id).sum(1)
        if isinstance(fill, str):
            if fill != "mask":
                raise ValueError(f"fill must be 'mask' or a model, got {fill!r}.")
            x = z
        else:
            x = fill_argmax(fill, z, batch_size)
        arg = trace.decode(x) if inputs == "texts" else x
        values = np.asarray(fn(arg), dtype=np.float64).reshape(-1)
        if values.shape[0] != z.shape[0]:
            raise ValueError(f"metric returned {values.shape[0]} values for {z.shape[0]} samples; "
                             "metric_by_step needs one value per sample.")
        rows.append(pd.DataFrame({"sample": np.arange(z.shape[0]), "step": int(k),
                                  "value": values, "n_masked": n_masked.cpu().numpy()}))
    return pd.concat(rows, ignore_index=True)


def attribute_changes(by_step: pd.DataFrame, trace: Any) -> pd.DataFrame:
    """Steps where a sample's metric changed, next to that step's events for that sample.

    Columns: ``sample, step, before, after, delta, n_unmask, n_remask, remasked`` (positions and
    tokens removed at that step), sorted by ``|delta|`` descending -- the top rows are the steps
    that mattered most, and ``n_remask > 0`` there means a remask was involved.
    """
    df = by_step.sort_values(["sample", "step"]).copy()
    df["before"] = df.groupby("sample")["value"].shift(1)
    changed = df[(df["before"].notna()) & (df["value"] != df["before"])].copy()
    changed = changed.rename(columns={"value": "after"})
    changed["delta"] = changed["after"] - changed["before"]
    ev = trace.events
    stats = []
    for s, k in zip(changed["sample"], changed["step"]):
        e = ev[(ev["sample"] == s) & (ev["step"] == k)]
        rem = e[e["kind"] == "remask"]
        stats.append({"n_unmask": int((e["kind"] == "unmask").sum()), "n_remask": len(rem),
                      "remasked": [f"{p}:{t}" for p, t in zip(rem["position"], rem["token"])]})
    extra = pd.DataFrame(stats, index=changed.index, columns=["n_unmask", "n_remask", "remasked"])
    out = pd.concat([changed[["sample", "step", "before", "after", "delta"]], extra], axis=1)
    return out.reindex(out["delta"].abs().sort_values(ascending=False).index).reset_index(drop=True)
