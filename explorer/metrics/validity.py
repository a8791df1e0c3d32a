"""Exact validity of order records (the ``orders`` task): fraction of valid records, per-rule
violation rates.

The rules live in :mod:`explorer.tasks.orders` (``RULES``, ``check_records``); this module only
counts. The unit is the **record** (a sequence holds ``RECORDS_PER_SEQ = 16``), as in the model
card. Records of one sequence come from one generation and are not independent, so standard
errors treat each sequence as a cluster (``cluster_stderr``): the ratio-estimator standard error
over sequences. When every record agrees (0 or all valid) that estimate is 0, which would claim
certainty; it is then replaced by the binomial error of (k + 1/2)/(n + 1) over the records, a
floor, not an estimate.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd


def _stderr(p: float, n: int) -> float:
    """Binomial standard error sqrt(p(1-p)/n), with p shrunk to (k + 1/2)/(n + 1) so that 0 of n or
    n of n does not claim zero uncertainty (at 0/256 it gives 0.004, not 0)."""
    if n <= 0:
        return float("nan")
    shrunk = (p * n + 0.5) / (n + 1)
    return math.sqrt(shrunk * (1 - shrunk) / n)


def cluster_stderr(hits: np.ndarray, sizes: np.ndarray) -> float:
    """Standard error of ``sum(hits) / sum(sizes)`` when unit ``i`` of a cluster sample has
    ``hits[i]`` successes out of ``sizes[i]`` (ratio estimator, linearised):
    ``sqrt(sum((hits_i - p * sizes_i)^2) / (S (S - 1))) / mean(sizes)``.

    Falls back to the shrunk binomial :func:`_stderr` over all ``sum(sizes)`` trials when there is
    a single cluster or every trial agrees.
    """
    hits, sizes = np.asarray(hits, float), np.asarray(sizes, float)
    S, n = len(sizes), float(sizes.sum())
    if n <= 0:
        return float("nan")
    p = float(hits.sum()) / n
    if S < 2 or p in (0.0, 1.0):
        return _stderr(p, int(n))
    resid = hits - p * sizes
    return float(math.sqrt((resid ** 2).sum() / (S * (S - 1))) / sizes.mean())


def _texts(texts, caller: str) -> list[str]:
    """``texts`` as a list of str. One string would be read as texts of one character each, and
    token ids fail deep in the record parser: both refused, naming what to pass."""
    if isinstance(texts, str):
        raise TypeError(f"{caller}() takes a list of texts (e.g. trace.texts), got one string; "
                        f"wrap it: {caller}([text]).")
    texts = list(texts)
    odd = next((t for t in texts if not isinstance(t, str)), None)
    if odd is not None:
        raise TypeError(f"{caller}() takes a list of texts (e.g. trace.texts), got items of type "
                        f"{type(odd).__name__}; decode token ids first (trace.texts, or trace.decode(ids)).")
    return texts


def orders_validity(texts: Sequence[str]) -> pd.DataFrame:
    """Tidy validity of order-record ``texts``: one row per quantity, columns
    ``metric, value, stderr, n`` (``n`` = records, or sequences for ``sequence_validity``).

    * ``validity`` -- fraction of records that keep every rule;
    * ``violation:<rule>`` -- fraction of records breaking that rule, for each rule of
      ``explorer.tasks.orders.RULES``;
    * ``sequence_validity`` -- fraction of sequences whose records are all valid.
    """
    from explorer.tasks import orders

    texts = _texts(texts, "orders_validity")
    if not texts:
        raise ValueError("no texts to check.")
    recs = orders.record_table(texts)
    by_seq = recs.groupby("sample")
    sizes = by_seq.size().to_numpy()
    n = len(recs)

    def row(metric, hits):
        hits = np.asarray(hits, float)
        return {"metric": metric, "value": float(hits.sum()) / n,
                "stderr": cluster_stderr(hits, sizes), "n": n}

    rows = [row("validity", by_seq["valid"].sum().to_numpy())]
    for rule in orders.RULES:
        rows.append(row(f"violation:{rule}", (~recs[rule]).groupby(recs["sample"]).sum().to_numpy()))
    all_valid = by_seq["valid"].all()
    s = float(all_valid.mean())
    rows.append({"metric": "sequence_validity", "value": s, "stderr": _stderr(s, len(all_valid)),
                 "n": len(all_valid)})
    return pd.DataFrame(rows)


def per_sample_validity(texts: Sequence[str]) -> np.ndarray:
    """``float[N]``: the fraction of each text's records that are valid (for
    :func:`explorer.metrics.metric_by_step`)."""
    from explorer.tasks import orders

    texts = _texts(texts, "per_sample_validity")
    recs = orders.record_table(texts)
    frac = recs.groupby("sample")["valid"].mean()
    return frac.reindex(range(len(texts)), fill_value=0.0).to_numpy(dtype=float)


def validity_ceiling(sampler, steps: int, num_samples: int, records_per_seq: int | None = None,
                     seed: int = 0) -> dict:
    """Validity a perfect model would reach with ``sampler`` in ``steps`` steps: the fraction of
    valid records among ``num_samples`` sequences of the orders oracle
    (:class:`explorer.tasks.orders_oracle.OrdersOracle`) of ``records_per_seq`` records (the task's
    length when None), with its cluster standard error. Each record is checked on its own
    (``orders.record_valid``), so any length works, e.g. the 4-record sequences of the first
    shipped model:  ``validity_ceiling(MDLM(nucleus_p=0.9), 256, 512, records_per_seq=4)``."""
    from explorer.engine import generate
    from explorer.tasks import orders
    from explorer.tasks.orders_oracle import OrdersOracle

    oracle = OrdersOracle(records_per_seq)
    trace = generate(oracle, sampler, steps, num_samples=num_samples, seed=seed, record=False,
                     progress=False)
    hits = np.array([sum(orders.record_valid(rec) for rec in orders.parse(orders.decode(ids)))
                     for ids in trace.final])
    sizes = np.full(len(hits), oracle.records)
    return {"steps": steps, "records_per_seq": oracle.records, "records": int(sizes.sum()),
            "valid": float(hits.sum() / sizes.sum()), "valid_se": cluster_stderr(hits, sizes)}
