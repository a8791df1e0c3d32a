"""Metrics by name, in the one shape the sweep needs: (ids, texts) -> tidy rows.

A :class:`Metric` turns the final samples of one run (``ids LongTensor[N, L]`` and their decoded
``texts``) into rows ``metric, value, stderr``. Built-ins: ``"entropy"``, ``"gen_ppl"``,
``"mauve"``, ``"validity"``. Any callable ``fn(ids, texts)`` also works (wrap it with
:func:`get_metric`) when it returns a number, one number per sample (reported as their mean with
its standard error, as entropy is), a dict ``{metric: value}`` or such a DataFrame.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

#: which way is better, for return-on-compute (None: neither, e.g. entropy is a diversity check)
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "validity": True, "sequence_validity": True, "mauve": True, "gen_ppl": False, "entropy": None,
}


def higher_is_better(metric: str) -> bool | None:
    if metric.startswith("violation:"):
        return False
    return HIGHER_IS_BETTER.get(metric)


@dataclass
class Metric:
    name: str
    fn: Callable[[torch.Tensor, list], Any] = field(repr=False)
    options: dict = field(default_factory=dict)
    #: ``model -> str | None``: why this metric cannot read the model's samples (None: it can)
    reads: Callable[[Any], str | None] | None = field(default=None, repr=False)

    def unfit(self, model) -> str | None:
        """Why this metric cannot read ``model``'s samples, or None when it can (or cannot tell)."""
        return None if self.reads is None else self.reads(model)

    def __call__(self, ids: torch.Tensor, texts: list) -> pd.DataFrame:
        out = self.fn(ids, texts)
        if isinstance(out, pd.DataFrame):
            df = out.copy()
        elif isinstance(out, dict):
            df = pd.DataFrame({"metric": list(out), "value": [float(v) for v in out.values()]})
        else:
            df = self._mean(out, len(texts))
        if "stderr" not in df:
            df["stderr"] = float("nan")
        return df[["metric", "value", "stderr"]].astype({"value": float, "stderr": float})

    def _mean(self, out, n: int) -> pd.DataFrame:
        """One number as it is; one number per sample as their mean with its standard error
        (NaN for a single sample)."""
        values = np.asarray(out.detach().cpu() if torch.is_tensor(out) else out)
        numbers = values.dtype.kind in "biuf"
        if numbers and values.ndim == 0:
            return pd.DataFrame({"metric": [self.name], "value": [float(values)]})
        if numbers and values.ndim == 1 and len(values) == n:
            se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
            return pd.DataFrame({"metric": [self.name], "value": [float(values.mean())], "stderr": [se]})
        got = f"{len(values)} values for {n} samples" if numbers and values.ndim == 1 else f"a {type(out).__name__}"
        raise TypeError(f"metric {self.name!r} returned {got}; a metric returns a number, one number per "
                        "sample, a dict {metric: number} or a DataFrame with columns metric, value[, stderr].")

    @property
    def key(self) -> str:
        """Stable name for caching: the metric name plus its options."""
        if not self.options:
            return self.name
        opts = ",".join(f"{k}={self.options[k]}" for k in sorted(self.options))
        return f"{self.name}[{opts}]"


def _entropy(ids, texts):
    from .entropy import unigram_entropy
    return unigram_entropy(ids)   # per sample: the Metric reports the mean and its standard error


_TAGS: dict[str, str] = {}


def _judge_tag(judge) -> str:
    """Name of the judge plus a digest of its weights when they are local files, so cached scores
    are redone when a shipped judge is retrained."""
    from .mauve import judge_dir

    if judge is not None and not isinstance(judge, (str, os.PathLike)):
        return type(judge).__name__ if not hasattr(judge, "path") else str(judge.path)
    base = judge_dir(judge)
    name = "stories-judge" if judge is None else str(judge)
    if base is None:
        return name
    files = sorted(base.glob("*.safetensors")) or sorted(base.glob("*.bin"))
    if not files:
        return name
    key = str(base.resolve())
    if key not in _TAGS:
        import hashlib
        h = hashlib.sha256()
        for f in files:
            h.update(f.read_bytes())
        _TAGS[key] = h.hexdigest()[:12]
    return f"{name}@{_TAGS[key]}"


def _digest(obj) -> str:
    """Short content hash of reference texts or features, so cached MAUVE follows the references."""
    import hashlib
    h = hashlib.sha256()
    if isinstance(obj, np.ndarray) or torch.is_tensor(obj):
        h.update(np.ascontiguousarray(np.asarray(obj.cpu() if torch.is_tensor(obj) else obj)).tobytes())
    else:
        for t in obj:
            h.update(str(t).encode())
            h.update(b"\0")
    return h.hexdigest()[:16]


def _reads_orders(model) -> str | None:
    from explorer.tasks import orders
    if orders.writes_records(model):
        return None
    return "validity checks orders records, and this model does not write them"


def _stories_judge_reads(model) -> str | None:
    from explorer.tasks import orders
    if orders.writes_records(model):
        return "the shipped judge (stories-judge) reads stories text, and this model writes orders records"
    return None


def get_metric(spec: Any, device: Any = None, **options) -> Metric:
    """A :class:`Metric` from a name (``"entropy"``, ``"gen_ppl"``, ``"mauve"``, ``"validity"``),
    a ``Metric``, a ``(name, fn)`` pair or a plain callable ``fn(ids, texts)``. The callable returns
    a number, one number per sample (the row is their mean, ``stderr`` its standard error), a dict
    ``{metric: number}`` or a DataFrame with columns ``metric, value`` and optionally ``stderr``.

    ``options`` go to the metric function: ``judge=``/``batch_size=`` for gen_ppl and mauve,
    ``references=`` (texts or features) for mauve.
    """
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2:
        return Metric(str(spec[0]), spec[1])
    if callable(spec):
        return Metric(getattr(spec, "__name__", "metric"), spec)
    name = str(spec)
    if name == "entropy":
        return Metric("entropy", _entropy)
    if name == "gen_ppl":
        def _gen_ppl(ids, texts, **_):
            from .perplexity import generative_perplexity
            r = generative_perplexity(texts, judge=options.get("judge"), device=device,
                                      batch_size=options.get("batch_size", 8))
            return pd.DataFrame({"metric": ["gen_ppl"], "value": [r.value], "stderr": [r.stderr]})
        return Metric("gen_ppl", _gen_ppl, {"judge": _judge_tag(options.get("judge"))},
                      reads=_stories_judge_reads if options.get("judge") is None else None)
    if name == "mauve":
        def _mauve(ids, texts, **_):
            from .mauve import mauve_score
            r = mauve_score(options.get("references"), texts, judge=options.get("judge"), device=device,
                            batch_size=options.get("batch_size", 8))
            return pd.DataFrame({"metric": ["mauve"], "value": [r.value], "stderr": [r.spread]})
        key = {"judge": _judge_tag(options.get("judge"))}
        if options.get("references") is not None:
            key["references"] = _digest(options["references"])
        return Metric("mauve", _mauve, key, reads=_stories_judge_reads if options.get("judge") is None else None)
    if name == "validity":
        def _validity(ids, texts, **_):
            from .validity import orders_validity
            return orders_validity(texts)
        # the unit is part of the cache key: sweeps cached when validity was per sequence are redone
        return Metric("validity", _validity, {"unit": "record"}, reads=_reads_orders)
    raise ValueError(f"unknown metric {name!r}; choose entropy, gen_ppl, mauve, validity or pass a callable.")


def per_sample_metric(name: str):
    """``(fn, inputs)`` giving one value per sample, for :func:`metric_by_step`."""
    if name == "entropy":
        from .entropy import unigram_entropy
        return unigram_entropy, "ids"
    if name == "validity":
        from .validity import per_sample_validity
        return per_sample_validity, "texts"
    if name == "gen_ppl":
        from .perplexity import generative_perplexity
        return (lambda texts: generative_perplexity(texts).per_sample), "texts"
    raise ValueError(f"no per-sample form of {name!r}; pass a function instead.")
