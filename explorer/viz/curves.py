"""Metric-vs-step curves within one trace."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .checks import check_sample
from .palette import LINE_COLORS, STATE_COLORS, UNMASKED, REMASKED


def step_counts(trace, sample: int | None = None) -> pd.DataFrame:
    """Tidy per-step counts: step, n_masked (after the step), n_unmasked, n_remasked,
    mean_p_decoded (mean p(x0) of the tokens decoded at that step).

    ``sample=None`` sums over samples (as ``trace.steps`` does); an int gives one sample.
    """
    if sample is not None:
        sample = check_sample(trace, sample)
    first = int(getattr(trace, "first_step", 0))
    steps = np.arange(first, int(trace.last_step) + 1)
    ev = trace.events
    if sample is not None and len(ev):
        ev = ev[ev["sample"] == sample]
    unm = ev[ev["kind"] == "unmask"] if len(ev) else ev
    rem = ev[ev["kind"] == "remask"] if len(ev) else ev
    def per_step(df, weights=None):
        if not len(df):
            return np.zeros(len(steps))
        w = None if weights is None else df[weights].to_numpy(float)
        return np.bincount(df["step"].to_numpy(np.int64) - first, weights=w, minlength=len(steps))[: len(steps)]

    n_unm = per_step(unm).astype(np.int64)
    n_rem = per_step(rem).astype(np.int64)
    initial = trace.initial if sample is None else trace.initial[sample: sample + 1]
    masked0 = int((initial == trace.mask_id).sum())
    n_masked = masked0 - np.cumsum(n_unm) + np.cumsum(n_rem)
    p_sum = per_step(unm, "prob")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(n_unm > 0, p_sum / np.maximum(n_unm, 1), np.nan)
    return pd.DataFrame({"step": steps, "n_masked": n_masked, "n_unmasked": n_unm,
                         "n_remasked": n_rem, "mean_p_decoded": mean_p})


def _phase_spans(steps: pd.DataFrame):
    if "phase" not in steps or steps.empty:
        return []
    spans, start, cur = [], None, None
    for s, ph in zip(steps["step"], steps["phase"]):
        if ph != cur:
            if cur is not None:
                spans.append((start, prev, cur))
            start, cur = s, ph
        prev = s
    spans.append((start, prev, cur))
    return spans


def step_curves(trace, sample: int | None = None, step: int | None = None, extra=None,
                schedule=("alpha_t", "sigma")) -> go.Figure:
    """Counts per step (masked left, decoded and remasked at each step), the mean p of decoded
    tokens, and the schedule columns of ``trace.steps``; phases (e.g. ReMDM-loop's loop phase)
    are shaded. ``extra``: a DataFrame with columns step, metric, value (or step + one column per
    metric) of further per-step metrics to plot in the lower panel. ``step`` marks a step.
    """
    counts = step_counts(trace, sample)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("tokens per step", "probabilities and schedule"))
    fig.add_trace(go.Scatter(x=counts["step"], y=counts["n_masked"], name="masked (after step)",
                             line=dict(color="#777777")), row=1, col=1)
    fig.add_trace(go.Bar(x=counts["step"], y=counts["n_unmasked"], name="unmasked at step",
                         marker_color=STATE_COLORS[UNMASKED]), row=1, col=1)
    fig.add_trace(go.Bar(x=counts["step"], y=counts["n_remasked"], name="remasked at step",
                         marker_color=STATE_COLORS[REMASKED]), row=1, col=1)
    fig.add_trace(go.Scatter(x=counts["step"], y=counts["mean_p_decoded"], mode="markers",
                             marker=dict(size=4, color=LINE_COLORS[0]), name="mean p of decoded"),
                  row=2, col=1)
    st = getattr(trace, "steps", None)
    ci = 1
    if isinstance(st, pd.DataFrame) and not st.empty:
        for col in schedule:
            if col in st and pd.api.types.is_numeric_dtype(st[col]):
                fig.add_trace(go.Scatter(x=st["step"], y=st[col], name=col, mode="lines",
                                         line=dict(color=LINE_COLORS[ci % len(LINE_COLORS)])), row=2, col=1)
                ci += 1
        spans = _phase_spans(st)
        if len(spans) > 1:
            shades = ["rgba(0,0,0,0)", "rgba(230,159,0,0.12)", "rgba(0,158,115,0.12)", "rgba(204,121,167,0.12)"]
            names = list(dict.fromkeys(ph for _, _, ph in spans))
            for a, b, ph in spans:
                color = shades[names.index(ph) % len(shades)]
                if color.endswith(",0)"):
                    continue
                fig.add_vrect(x0=a - 0.5, x1=b + 0.5, fillcolor=color, line_width=0,
                              annotation_text=str(ph), annotation_position="top left")
    if extra is not None:
        ex = pd.DataFrame(extra)
        if {"metric", "value"} <= set(ex.columns):
            ex = ex.pivot_table(index="step", columns="metric", values="value").reset_index()
        for col in ex.columns:
            if col == "step":
                continue
            fig.add_trace(go.Scatter(x=ex["step"], y=ex[col], name=str(col), mode="lines",
                                     line=dict(color=LINE_COLORS[ci % len(LINE_COLORS)])), row=2, col=1)
            ci += 1
    if step is not None:
        fig.add_vline(x=step, line=dict(color="#000000", width=1, dash="dot"), name="step-marker")
    fig.update_layout(height=460, barmode="overlay", margin=dict(l=60, r=20, t=60, b=45),
                      plot_bgcolor="#FFFFFF", legend=dict(orientation="h", y=-0.15),
                      title="what happened at each step" + (f" (sample {sample})" if sample is not None else ""))
    fig.update_xaxes(title_text="step", row=2, col=1, gridcolor="#EEEEEE")
    fig.update_yaxes(gridcolor="#EEEEEE")
    return fig


def by_step_figure(runs: dict, title: str = "if stopped after step k", y_title: str = "value",
                   transform=None) -> go.Figure:
    """Mean over samples per step of ``explorer.metrics.evolution.metric_by_step`` results, one
    line per run (``{label: DataFrame(sample, step, value)}``), with a band of +-1 standard error.
    ``transform`` maps the values first (e.g. ``lambda v: 1 - v`` turns validity into an error rate).
    """
    fig = go.Figure()
    for i, (label, df) in enumerate(runs.items()):
        v = df["value"] if transform is None else transform(df["value"])
        g = df.assign(v=v).groupby("step")["v"]
        mean, se = g.mean(), g.std(ddof=1).fillna(0) / np.sqrt(g.count())
        color = LINE_COLORS[i % len(LINE_COLORS)]
        fig.add_trace(go.Scatter(x=list(mean.index) + list(mean.index[::-1]),
                                 y=list(mean + se) + list((mean - se)[::-1]), fill="toself", line=dict(width=0),
                                 fillcolor=color, opacity=0.15, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=mean.index, y=mean, name=str(label), mode="lines+markers",
                                 line=dict(color=color), marker=dict(size=4)))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=y_title, height=360,
                      plot_bgcolor="#FFFFFF", margin=dict(l=60, r=20, t=60, b=45))
    fig.update_xaxes(gridcolor="#EEEEEE")
    fig.update_yaxes(gridcolor="#EEEEEE")
    return fig
