"""Inference-time scaling: quality and cost against the number of steps T (reference §4.2).

:func:`scaling_figure` draws a sweep's judge Gen PPL (or any metric) against T for each sampler,
with one-standard-error bars, beside the model calls each sample needed (NFE, §1.7). Its title is
a takeaway computed from the numbers drawn (:func:`scaling_takeaway`), never a fixed claim.
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..metrics.registry import higher_is_better
from .sweep import _colors, _log_ticks, _seed_mean

__all__ = ["scaling_figure", "scaling_takeaway", "steps_label", "steps_fraction"]


def steps_fraction(steps: int, seq_len: int) -> str:
    """T in units of the sequence length: ``"L"``, ``"4L"``, ``"L/4"``."""
    r = steps / seq_len
    return "L" if r == 1 else (f"{r:g}L" if r > 1 else f"L/{1 / r:g}")


def steps_label(steps: int, seq_len: int | None = None) -> str:
    """``"T = 512 (4L)"`` when the sequence length is known, else ``"T = 512"``."""
    return f"T = {steps}" + (f" ({steps_fraction(steps, seq_len)})" if seq_len else "")


def _agg(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    d = df[df["metric"] == metric]
    if d.empty:
        raise ValueError(f"the sweep has no rows for metric {metric!r}; it has {sorted(set(df['metric']))}.")
    return _seed_mean(d)


def scaling_takeaway(df: pd.DataFrame, metric: str = "gen_ppl", baseline: str = "mdlm",
                     seq_len: int | None = None) -> str:
    """One line from the numbers: at the largest T every sampler ran, how far each sampler is from
    ``baseline`` in standard errors, and how much the baseline itself moved across T."""
    agg = _agg(df, metric)
    if baseline not in set(agg["sampler"]):
        raise ValueError(f"baseline {baseline!r} is not in the sweep (samplers: {sorted(set(agg['sampler']))}).")
    common = set.intersection(*(set(g["steps"]) for _, g in agg.groupby("sampler")))
    if not common:
        raise ValueError("no number of steps was run by every sampler; nothing to compare.")
    T = max(common)
    at = agg[agg["steps"] == T].set_index("sampler")
    base = agg[agg["sampler"] == baseline].sort_values("steps")
    better_high = higher_is_better(metric)
    b, sb = float(at.loc[baseline, "value"]), float(at.loc[baseline, "stderr"])
    parts = []
    for s in [s for s in at.index if s != baseline]:
        v, sv = float(at.loc[s, "value"]), float(at.loc[s, "stderr"])
        se = math.sqrt(sb ** 2 + sv ** 2)
        z = (v - b) / se if se > 0 else float("nan")
        if not math.isfinite(z) or abs(z) < 2:
            verdict = f"within noise of {baseline} ({z:+.1f} SE)"
        else:
            better = (z > 0) == bool(better_high) if better_high is not None else None
            word = "above" if z > 0 else "below"
            judged = "" if better is None else (" (better)" if better else " (worse)")
            verdict = f"{abs(z):.1f} SE {word} {baseline}{judged}"
        parts.append(f"{s} {v:.3g} ± {sv:.2g}, {verdict}")
    lo = base.iloc[0]
    moved = (f"; {baseline} goes from {lo['value']:.3g} at T = {int(lo['steps'])} to {b:.3g}"
             if int(lo["steps"]) != T else "")
    return f"At {steps_label(T, seq_len)}: " + "; ".join([f"{baseline} {b:.3g} ± {sb:.2g}", *parts]) + moved + "."


def scaling_figure(df: pd.DataFrame, metric: str = "gen_ppl", baseline: str = "mdlm",
                   seq_len: int | None = None, metric_label: str | None = None) -> go.Figure:
    """Left: ``metric`` against T (log axis), mean ± 1 s.e. per sampler. Right: model calls per
    sample (NFE) against T. The title is :func:`scaling_takeaway`; ``fig.layout.meta`` holds it too.
    ``df`` is the tidy result of :func:`explorer.sweep.sweep` (several seeds are averaged)."""
    agg = _agg(df, metric)
    samplers = list(dict.fromkeys(agg["sampler"]))
    colors = _colors(samplers)
    label = metric_label or {"gen_ppl": "judge Gen PPL", "entropy": "entropy"}.get(metric, metric)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.1,
                        subplot_titles=(f"{label} (mean ± 1 s.e.)", "model calls per sample (NFE)"))
    for s in samplers:
        g = agg[agg["sampler"] == s].sort_values("steps")
        fig.add_trace(go.Scatter(
            x=g["steps"], y=g["value"], mode="lines+markers", name=s, legendgroup=s,
            line=dict(color=colors[s], width=2.5), marker=dict(size=8),
            error_y=dict(type="data", array=g["stderr"].fillna(0), visible=True, thickness=1.5),
            hovertemplate=f"<b>{s}</b><br>T=%{{x}}<br>{label} %{{y:.4g}}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=g["steps"], y=g["nfe"], mode="lines+markers", name=s, legendgroup=s, showlegend=False,
            line=dict(color=colors[s], dash="dot"),
            hovertemplate=f"<b>{s}</b><br>T=%{{x}}<br>NFE %{{y:.1f}}<extra></extra>"), row=1, col=2)
    ticks = sorted(set(agg["steps"]))
    text = [f"{t}<br>{steps_fraction(t, seq_len)}" if seq_len else str(t) for t in ticks]
    for c in (1, 2):
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=text, title_text="steps T", row=1, col=c)
    fig.update_yaxes(title_text=label, row=1, col=1)
    fig.update_yaxes(title_text="NFE", type="log", tickvals=_log_ticks(agg["nfe"]), row=1, col=2)
    takeaway = scaling_takeaway(df, metric, baseline, seq_len)
    fig.update_layout(title=dict(text=takeaway, font=dict(size=13)), template="plotly_white", height=420,
                      legend=dict(title="sampler"), meta={"takeaway": takeaway})
    return fig
