"""Inference-time scaling: quality and cost against the number of steps T (reference §4.2).

:func:`scaling_figure` draws a sweep's judge Gen PPL (or any metric) against T for each sampler,
with one-standard-error bars, beside the model calls each sample needed (NFE, §1.7). Its title says
the takeaway in plain words and its subtitle the numbers, both computed from the numbers drawn
(:func:`scaling_headline`, :func:`scaling_takeaway`), never a fixed claim.
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..metrics.registry import higher_is_better
from .sweep import _colors, _log_ticks, _seed_mean

__all__ = ["scaling_figure", "scaling_takeaway", "scaling_headline", "steps_label", "steps_fraction"]


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


def _z(a: pd.Series, b: pd.Series) -> float:
    se = math.sqrt(float(a["stderr"]) ** 2 + float(b["stderr"]) ** 2)
    return (float(a["value"]) - float(b["value"])) / se if se > 0 else float("nan")


def _levels_off(g: pd.DataFrame, sign: float) -> int:
    """The smallest T after which no larger T of the same sampler is better by more than 2 SE."""
    g = g.sort_values("steps").reset_index(drop=True)
    for k in range(len(g)):
        if not any(sign * _z(g.loc[j], g.loc[k]) > 2 for j in range(k + 1, len(g))):
            return int(g.loc[k, "steps"])
    return int(g["steps"].iloc[-1])


def scaling_headline(df: pd.DataFrame, metric: str = "gen_ppl", baseline: str = "mdlm") -> dict:
    """The takeaway in plain words, computed from the numbers: ``{"headline", "crossover"}``.

    ``headline``: whether more steps keep paying for the best other sampler and where ``baseline``
    levels off (the smallest T that no larger T beats by more than 2 SE); "still improving at the
    largest T measured" is said as that, never as a plateau. ``crossover``: at which steps the
    other sampler is behind ``baseline`` and from which T it is ahead ("" if never behind), each
    called "worse" / "better" only beyond 2 SE and "within noise" otherwise; ``marker``: the
    figure's note at the first T where it is behind, qualified the same way.
    """
    agg = _agg(df, metric)
    sign = -1.0 if higher_is_better(metric) is False else 1.0
    common = set.intersection(*(set(g["steps"]) for _, g in agg.groupby("sampler")))
    T = max(common)
    base = agg[agg["sampler"] == baseline].set_index("steps")
    others = [s for s in dict.fromkeys(agg["sampler"]) if s != baseline]
    if not others:
        return {"headline": f"{baseline} levels off after T = {_levels_off(base.reset_index(), sign)}",
                "crossover": "", "marker": ""}
    at = agg[agg["steps"] == T].set_index("sampler")
    other = max(others, key=lambda s: sign * float(at.loc[s, "value"]))
    z = sign * _z(at.loc[other], at.loc[baseline])
    g = agg[agg["sampler"] == other].set_index("steps")
    knee_o, knee_b = _levels_off(g.reset_index(), sign), _levels_off(base.reset_index(), sign)
    b_text = (f"{baseline} levels off after T = {knee_b}" if knee_b < T
              else f"{baseline} is still improving at T = {T}, the most measured")
    if z > 2 and knee_o == T:
        headline = (f"More steps keep paying only with {other} (still improving at T = {T}, the most measured); "
                    f"{b_text}")
    elif z > 2:
        headline = f"{other} beats {baseline} at T = {T}; {other} levels off after T = {knee_o}"
    elif z < -2:
        headline = f"{other} is worse than {baseline} at T = {T}"
    else:
        headline = f"{other} and {baseline} are within noise of each other at T = {T}"
    shared = sorted(set(g.index) & set(base.index))
    worse = [t for t in shared if sign * _z(g.loc[t], base.loc[t]) < 0]
    crossover, marker = "", ""
    if worse:
        t0 = worse[0]
        zt = abs(_z(g.loc[t0], base.loc[t0]))
        clear = zt >= 2        # the page's rule: a gap under about 2 SE may be luck
        numbers = f"at T = {t0} {float(g.loc[t0, 'value']):.1f} vs {baseline}'s {float(base.loc[t0, 'value']):.1f}"
        crossover = (f"at few steps {other} is worse: {numbers} ({zt:.1f} SE)" if clear else
                     f"at few steps {other} is no better: {numbers} ({zt:.1f} SE worse, within noise)")
        marker = (f"{other} worse at T = {t0} ({zt:.1f} SE)" if clear else
                  f"{other} no better at T = {t0} (within noise, {zt:.1f} SE)")
        ahead = [t for t in shared if t > max(worse) and sign * _z(g.loc[t], base.loc[t]) > 0]
        beyond = [t for t in ahead if sign * _z(g.loc[t], base.loc[t]) > 2]
        if ahead and beyond and beyond[0] == ahead[0]:
            crossover += f"; it is better from T = {ahead[0]}"
        elif ahead:
            crossover += f"; it is ahead from T = {ahead[0]}" + (
                f", by more than 2 SE from T = {beyond[0]}" if beyond else ", but within noise")
    return {"headline": headline, "crossover": crossover, "worse_at": worse, "other": other, "marker": marker}


def scaling_figure(df: pd.DataFrame, metric: str = "gen_ppl", baseline: str = "mdlm",
                   seq_len: int | None = None, metric_label: str | None = None) -> go.Figure:
    """Left: ``metric`` against T (log axis), mean ± 1 s.e. per sampler, the axis saying which way
    is better. Right: model calls per sample against T. The title states the takeaway in plain
    words (:func:`scaling_headline`), the subtitle the numbers (:func:`scaling_takeaway`) and the
    crossover, with a note at the first T where another sampler is behind (``worse`` only beyond
    2 SE, else ``within noise``); ``fig.layout.meta`` holds ``takeaway``, ``headline``, ``crossover``
    and ``marker``.
    ``df`` is the tidy result of :func:`explorer.sweep.sweep` (several seeds are averaged)."""
    agg = _agg(df, metric)
    samplers = list(dict.fromkeys(agg["sampler"]))
    colors = _colors(samplers)
    label = metric_label or {"gen_ppl": "judge Gen PPL", "entropy": "entropy"}.get(metric, metric)
    better = {True: "higher is better", False: "lower is better"}.get(higher_is_better(metric))
    axis = f"{label} ({better})" if better else label
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.1,
                        subplot_titles=(f"{label} (mean ± 1 s.e.)", "model calls per sample"))
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
            hovertemplate=f"<b>{s}</b><br>T=%{{x}}<br>model calls per sample %{{y:.1f}}<extra></extra>"),
            row=1, col=2)
    ticks = sorted(set(agg["steps"]))
    text = [f"{t}<br>{steps_fraction(t, seq_len)}" if seq_len else str(t) for t in ticks]
    for c in (1, 2):
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=text, title_text="steps T", row=1, col=c)
    fig.update_yaxes(title_text=axis, row=1, col=1)
    fig.update_yaxes(title_text="model calls (fewer is cheaper)", type="log", tickvals=_log_ticks(agg["nfe"]),
                     row=1, col=2)
    takeaway = scaling_takeaway(df, metric, baseline, seq_len)
    words = scaling_headline(df, metric, baseline)
    subtitle = takeaway + (f"<br>{words['crossover'][0].upper()}{words['crossover'][1:]}." if words["crossover"] else "")
    if words.get("worse_at"):
        t0, other = words["worse_at"][0], words["other"]
        y0 = float(agg[(agg["sampler"] == other) & (agg["steps"] == t0)]["value"].iloc[0])
        fig.add_annotation(x=math.log10(t0), y=y0, xref="x", yref="y", text=words["marker"],
                           showarrow=True, arrowhead=2, ax=60, ay=-10, xanchor="left",
                           font=dict(size=11, color=colors[other]))
    fig.update_layout(title=dict(text=words["headline"] + ".", font=dict(size=15), x=0.01, xanchor="left",
                                 subtitle=dict(text=subtitle, font=dict(size=11, color="#444"))),
                      template="plotly_white", height=480, margin=dict(t=135),
                      legend=dict(title="sampler"),
                      meta={"takeaway": takeaway, "headline": words["headline"], "crossover": words["crossover"],
                            "marker": words["marker"]})
    return fig
