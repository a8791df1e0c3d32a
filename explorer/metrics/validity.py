"""Exact validity of order records (the ``orders`` task): fraction valid, per-rule violations.

The rules live in :mod:`explorer.tasks.orders` (``RULES``, ``check(text) -> {rule: ok}``); this
module only counts. Standard errors are binomial, sqrt(p(1-p)/n) (p nudged away from 0 and 1,
see ``_stderr``): how far the rate would move with another batch of the same number of samples.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd


def _stderr(p: float, n: int) -> float:
    """Binomial standard error sqrt(p(1-p)/n), with p shrunk to (k + 1/2)/(n + 1) so that 0 of n or
    n of n does not claim zero uncertainty (at 0/256 it gives 0.004, not 0)."""
    if n <= 0:
        return float("nan")
    shrunk = (p * n + 0.5) / (n + 1)
    return math.sqrt(shrunk * (1 - shrunk) / n)


def orders_validity(texts: Sequence[str]) -> pd.DataFrame:
    """Tidy validity of order-record ``texts``: one row per quantity, columns
    ``metric, value, stderr, n``.

    ``metric`` is ``"validity"`` (fraction of records passing every rule) and
    ``"violation:<rule>"`` (fraction of records breaking that rule), for every rule in
    ``explorer.tasks.orders.RULES``.
    """
    from explorer.tasks import orders

    texts = list(texts)
    n = len(texts)
    if n == 0:
        raise ValueError("no texts to check.")
    checks = [orders.check(t) for t in texts]
    valid = sum(bool(orders.is_valid(t)) for t in texts) / n
    rows = [{"metric": "validity", "value": valid, "stderr": _stderr(valid, n), "n": n}]
    for rule in orders.RULES:
        rate = sum(not c.get(rule, False) for c in checks) / n
        rows.append({"metric": f"violation:{rule}", "value": rate, "stderr": _stderr(rate, n), "n": n})
    return pd.DataFrame(rows)


def per_sample_validity(texts: Sequence[str]):
    """``float[N]``: 1.0 where the record is valid, else 0.0 (for :func:`metric_by_step`)."""
    import numpy as np
    from explorer.tasks import orders

    return np.array([1.0 if orders.is_valid(t) else 0.0 for t in texts])
