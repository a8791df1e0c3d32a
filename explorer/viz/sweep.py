"""Sweep figures: quality vs steps, and quality vs compute with the knee marked.

Both are pure functions of the tidy DataFrames from :func:`explorer.sweep.sweep` and
:func:`explorer.sweep.return_on_compute`; they return plotly figures.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..sweep import knee_phrase
from .palette import LINE_COLORS

__all__ = ["quality_vs_steps", "return_on_compute_figure", "knee_takeaway"]


def _colors(names) -> dict:
    return {n: LINE_COLORS[i % len(LINE_COLORS)] for i, n in enumerate(names)}


def _seed_mean(d: pd.DataFrame) -> pd.DataFrame:
    from ..sweep import seed_mean_stderr

    def agg(g):
        stderr = seed_mean_stderr(g)
        return pd.Series({"value": g["value"].mean(), "stderr": stderr, "model_calls": g["model_calls"].mean(),
                          "nfe": g["nfe"].mean() if "nfe" in g else float("nan"),
                          "seconds": g["seconds"].mean(), "seeds": len(g)})
    return d.groupby(["sampler", "steps"], sort=False).apply(agg, include_groups=False).reset_index()


def _log_ticks(values) -> list[float]:
    """1-2-5 ticks spanning ``values`` (plotly's own minor labels crowd short log ranges)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return []
    lo, hi = v.min(), v.max()
    ticks = [m * 10.0 ** k for k in range(int(math.floor(math.log10(lo))) - 1, int(math.ceil(math.log10(hi))) + 1)
             for m in (1, 2, 5)]
    inside = [t for t in ticks if lo / 1.5 <= t <= hi * 1.5]
    return inside if len(inside) >= 2 else sorted({float(lo), float(hi)})


def quality_vs_steps(df: pd.DataFrame, metric: str | Sequence[str]) -> go.Figure:
    """A metric (or several, one panel each) against the number of steps T, one line per sampler.

    Points are means over seeds; error bars are one standard error. T is on a log2 axis.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    samplers = list(dict.fromkeys(df["sampler"]))
    colors = _colors(samplers)
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=metrics if len(metrics) > 1 else None,
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    for i, m in enumerate(metrics):
        d = df[df["metric"] == m]
        if d.empty:
            continue
        agg = _seed_mean(d)
        r, c = i // cols + 1, i % cols + 1
        for s in samplers:
            g = agg[agg["sampler"] == s].sort_values("steps")
            if g.empty:
                continue
            fig.add_trace(go.Scatter(
                x=g["steps"], y=g["value"], mode="lines+markers", name=s, legendgroup=s,
                showlegend=i == 0, line=dict(color=colors[s]),
                error_y=dict(type="data", array=g["stderr"].fillna(0), visible=True, thickness=1),
                customdata=np.stack([g["stderr"], g["model_calls"], g["seconds"], g["seeds"], g["nfe"]], -1),
                hovertemplate=(f"<b>{s}</b><br>T=%{{x}}<br>{m} = %{{y:.4g}} ± %{{customdata[0]:.2g}}"
                               "<br>model calls %{customdata[1]:.0f} (per sample %{customdata[4]:.1f})"
                               "<br>%{customdata[2]:.2f} s"
                               "<br>seeds %{customdata[3]:.0f}<extra></extra>")), row=r, col=c)
        fig.update_xaxes(type="log", tickvals=sorted(set(d["steps"])), title_text="steps T", row=r, col=c)
        if len(metrics) == 1:
            fig.update_yaxes(title_text=m, row=r, col=c)
    what = metrics[0] if len(metrics) == 1 else "violation rates" \
        if all(m.startswith("violation:") for m in metrics) else "metrics"
    fig.update_layout(title=f"{what} vs steps (mean ± 1 s.e.)",
                      template="plotly_white", height=380 * rows, hovermode="closest",
                      legend=dict(title="sampler"))
    return fig


def knee_takeaway(roc: pd.DataFrame) -> str:
    """Where more steps stop paying, per sampler (:func:`explorer.sweep.knee_phrase`: true at the
    edge of the measured range), as one sentence for a figure's caption."""
    parts = [knee_phrase(roc, s) for s in dict.fromkeys(roc["sampler"]) if roc.loc[roc["sampler"] == s, "is_knee"].any()]
    return "; ".join(parts) + "."


def return_on_compute_figure(roc: pd.DataFrame) -> go.Figure:
    """Quality against cost (model calls, and seconds), one line per sampler, knees starred.

    ``roc`` is :func:`explorer.sweep.return_on_compute` output. Hover shows the gain over the
    baseline at the same T and the gain per extra model call. The knee is where a sampler stops
    buying gains distinguishable from noise (see ``return_on_compute``).
    """
    metric = roc.attrs.get("metric", roc["metric"].iloc[0])
    baseline = roc.attrs.get("baseline", "baseline")
    samplers = list(dict.fromkeys(roc["sampler"]))
    colors = _colors(samplers)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("vs model calls" + (" per sample" if roc.attrs.get("calls") == "nfe" else ""),
                                        "vs seconds"))
    calls_name = "model calls per sample (NFE)" if roc.attrs.get("calls") == "nfe" else "model calls"
    for col, xcol, xname in ((1, "calls", calls_name), (2, "seconds", "seconds")):
        for s in samplers:
            g = roc[roc["sampler"] == s].sort_values([xcol, "steps"])
            custom = np.stack([g["steps"], g["stderr"], g["gain"], g["gain_per_call"],
                               g["marginal_gain_per_call"]], -1)
            fig.add_trace(go.Scatter(
                x=g[xcol], y=g["value"], mode="lines+markers", name=s, legendgroup=s,
                showlegend=col == 1, line=dict(color=colors[s]),
                error_y=dict(type="data", array=g["stderr"].fillna(0), visible=True, thickness=1),
                customdata=custom,
                hovertemplate=(f"<b>{s}</b> T=%{{customdata[0]}}<br>{metric} = %{{y:.4g}} ± %{{customdata[1]:.2g}}"
                               f"<br>{xname} %{{x:.4g}}<br>gain over {baseline} at same T: %{{customdata[2]:.3g}}"
                               "<br>gain per extra call: %{customdata[3]:.3g}"
                               "<br>marginal gain per added call: %{customdata[4]:.3g}<extra></extra>")),
                row=1, col=col)
            k = g[g["is_knee"] & ((g["steps"] < g["steps"].max()) | (len(g) == 1))]   # a knee at the edge is no knee
            if len(k):
                fig.add_trace(go.Scatter(
                    x=k[xcol], y=k["value"], mode="markers", name=f"knee ({s})", legendgroup=s,
                    showlegend=False, marker=dict(symbol="star", size=16, color=colors[s],
                                                  line=dict(color="black", width=1)),
                    hovertemplate=(f"<b>knee of {s}</b>: T=%{{text}}; costlier settings add no gain "
                                   "beyond noise<extra></extra>"), text=[str(t) for t in k["steps"]]),
                    row=1, col=col)
        fig.update_xaxes(type="log", title_text=xname, tickvals=_log_ticks(roc[xcol]), row=1, col=col)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    takeaway = knee_takeaway(roc)
    fig.update_layout(title=dict(text=f"{metric}: return on compute", x=0.01, xanchor="left",
                                 subtitle=dict(text=f"Stars: the knee, where more compute stops paying. {takeaway}",
                                               font=dict(size=11, color="#444"))),
                      template="plotly_white", height=440, margin=dict(t=100), legend=dict(title="sampler"),
                      meta={"takeaway": takeaway})
    return fig
