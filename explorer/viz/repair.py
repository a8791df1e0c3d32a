"""Remasking as repair, in pictures (``explorer.studies.repair``).

* :func:`repair_strip` -- one planted record, step by step: the wrong value flagged with the rule it
  breaks, the field put back to [MASK], rewritten right;
* :func:`repair_rate_figure` -- the share of planted records repaired against the number of refine
  steps, with the share of untouched records still valid, and MDLM at zero;
* :func:`error_causes_figure` -- when remasking does not help: broken rules whose fields were
  written in the same step (schedule clashes) against the rest;
* :func:`revised_text` -- a story before and after its loop phase, the rewritten words marked.

Both are pure (trace / DataFrame in, plotly figure out); each title is a takeaway computed from the
numbers drawn, also kept in ``fig.layout.meta["takeaway"]``.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..studies.repair import record_status, repair_story, rule_text
from ..tasks import orders
from .cells import display_token
from .export import HTMLView
from .palette import FIXED, LINE_COLORS, MASKED, STATE_COLORS, UNMASKED
from .scaling import steps_fraction

__all__ = ["repair_strip", "repair_rate_figure", "repair_takeaway", "error_causes_figure", "revised_text"]

# cell kinds of the strip: kept as given, the planted wrong value, masked, rewritten, fixed anchor
_KEPT, _WRONG, _MASKED, _NEW, _FIXED = 0, 1, 2, 3, 4
_KIND_COLORS = {_KEPT: "#F4F4F4", _WRONG: "#D55E00", _MASKED: STATE_COLORS[MASKED], _NEW: STATE_COLORS[UNMASKED],
                _FIXED: STATE_COLORS[FIXED]}
_KIND_NAMES = {_KEPT: "as given", _WRONG: "planted wrong value", _MASKED: "[MASK]",
               _NEW: "rewritten", _FIXED: "fixed anchor"}


def _strip_steps(trace, story: dict, max_rows: int) -> list[int]:
    """Step 0, the steps that changed the record up to its repair, and the final state."""
    lo = story["record"] * orders.RECORD_LEN
    ev = trace.events
    ev = ev[(ev["sample"] == story["sample"]) & (ev["position"] >= lo) & (ev["position"] < lo + orders.RECORD_LEN)]
    k1, k2 = story["remasked_at"], story["rewritten_at"]
    upto = k2 if k2 >= 0 else trace.last_step
    changed = sorted(set(int(s) for s in ev["step"] if s <= upto))
    must = {0, trace.last_step} | ({k1 - 1, k1, k2} if k1 >= 0 else set())
    must = {k for k in must if 0 <= k <= trace.last_step}
    room = max(0, max_rows - len(must))
    others = [k for k in changed if k not in must]
    near = sorted(others, key=lambda k: abs(k - k1))[:room]   # the changes closest to the repair
    return sorted(must | set(near))


def repair_strip(trace, plants: pd.DataFrame, sample: int | None = None, record: int | None = None,
                 field: str | None = None, max_rows: int = 10) -> go.Figure:
    """One planted record's 16 tokens at the steps that matter (rows), coloured by what happened:
    the planted wrong value (vermillion), [MASK] (grey), rewritten (sky blue), as given (white).
    Each row says the record's state: ``breaks: currency ≠ country``, ``currency put back to
    [MASK]``, ``keeps every rule``. Without ``sample``/``record`` the earliest repair (of ``field``,
    if given) is shown (:func:`explorer.studies.repair.repair_story`)."""
    story = repair_story(trace, plants, sample, record, field)
    i, r, field = story["sample"], story["record"], story["field"]
    lo = r * orders.RECORD_LEN
    steps = _strip_steps(trace, story, max_rows)
    given = trace.state_at(0)[i, lo:lo + orders.RECORD_LEN]
    fixed = trace.fixed[i, lo:lo + orders.RECORD_LEN]
    z, text, labels, status = [], [], [], []
    for k in steps:
        row = trace.state_at(k)[i, lo:lo + orders.RECORD_LEN]
        words = [trace.token_text(int(t)) for t in row]
        kinds = []
        for c, (t, g) in enumerate(zip(row.tolist(), given.tolist())):
            if fixed[c]:
                kinds.append(_FIXED)
            elif t == trace.mask_id:
                kinds.append(_MASKED)
            elif lo + c == story["position"] and words[c] == story["planted"]:
                kinds.append(_WRONG)
            elif t != g:
                kinds.append(_NEW)
            else:
                kinds.append(_KEPT)
        z.append(kinds)
        text.append([display_token(w) for w in words])
        labels.append("given" if k == 0 else ("final" if k == trace.last_step else f"step {k}"))
        status.append(record_status(words, field))
    z = np.array(z)
    scale = []
    for code in range(5):   # flat bands for the 5 integer codes
        scale += [[code / 5, _KIND_COLORS[code]], [(code + 1) / 5, _KIND_COLORS[code]]]
    cols = [f"{c}:{orders.TEMPLATE[c].strip('<>')}" for c in range(orders.RECORD_LEN)]
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=labels, text=text, texttemplate="%{text}", zmin=-0.5, zmax=4.5,
                               colorscale=scale, showscale=False, xgap=2, ygap=2,
                               customdata=np.array([[s] * orders.RECORD_LEN for s in status]),
                               hovertemplate="%{y}, %{x}: <b>%{text}</b><br>%{customdata}<extra></extra>"))
    for y, s in zip(labels, status):
        flagged = s.startswith("breaks")
        fig.add_annotation(x=1.01, xref="paper", y=y, yref="y", text=("⚑ " if flagged else "") + s,
                           showarrow=False, xanchor="left", align="left",
                           font=dict(size=12, color="#D55E00" if flagged else "#222"))
    for code in (_WRONG, _MASKED, _NEW, _KEPT):   # a legend for the cell colours
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=_KIND_NAMES[code],
                                 marker=dict(size=12, symbol="square", color=_KIND_COLORS[code],
                                             line=dict(color="#999", width=1))))
    if story["rewritten_at"] >= 0:
        how = (f"put back to [MASK] at step {story['remasked_at']}, rewritten as {story['rewritten_to']} "
               f"at step {story['rewritten_at']}")
    else:
        how = "never remasked"
    end = "keeps every rule at the end" if story["valid_end"] else "still breaks a rule at the end"
    takeaway = (f"Sample {i}, record {r}: planted {field} {story['planted']} breaks {rule_text(story['rule'])}; "
                f"{how}; the record {end}.")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(side="top", tickangle=-45, tickfont=dict(size=10))
    fig.update_layout(title=dict(text=takeaway, font=dict(size=13), y=0.98), template="plotly_white",
                      height=140 + 36 * len(steps), margin=dict(l=70, r=260, t=130, b=20),
                      legend=dict(orientation="h", y=-0.02, yanchor="top"), plot_bgcolor="white",
                      meta={"takeaway": takeaway, "sample": i, "record": r, "position": story["position"],
                            "steps": steps, "status": status})
    return fig


def repair_takeaway(df: pd.DataFrame, steps: int | None = None, sampler: str = "remdm-refine",
                    baseline: str = "mdlm") -> str:
    """One line from a :func:`explorer.studies.repair.measure` table at ``steps`` (default: L if
    measured, else the largest T): share repaired and kept for ``sampler``, share repaired by MDLM."""
    have = set(df.loc[df["sampler"] == sampler, "steps"])
    if not have:
        raise ValueError(f"no rows for sampler {sampler!r}; the table has {sorted(set(df['sampler']))}.")
    T = steps if steps is not None else (orders.SEQ_LEN if orders.SEQ_LEN in have else max(have))
    row = df[(df["sampler"] == sampler) & (df["steps"] == T)].iloc[0]
    text = (f"At T = {T} refine steps, {sampler} repairs {row['repaired']:.1%} ± {row['repaired_se']:.1%} of "
            f"{int(row['planted_records'])} planted errors and keeps {row['kept']:.1%} ± {row['kept_se']:.1%} "
            f"of untouched records valid")
    b = df[(df["sampler"] == baseline) & (df["steps"] == T)]
    if len(b):
        text += f"; {baseline} repairs {b['repaired'].iloc[0]:.1%}"
    return text + "."


def repair_rate_figure(df: pd.DataFrame, sampler: str = "remdm-refine", baseline: str = "mdlm",
                       seq_len: int = orders.SEQ_LEN) -> go.Figure:
    """Share of planted records repaired against refine steps T (mean ± 1 cluster s.e.), for
    ``sampler`` and ``baseline`` (MDLM: zero, by construction), and the share of untouched records
    still valid (dashed). ``df`` is :func:`explorer.studies.repair.measure` output."""
    fig = go.Figure()
    for name, color in ((sampler, LINE_COLORS[1]), (baseline, LINE_COLORS[0])):
        g = df[df["sampler"] == name].sort_values("steps")
        if g.empty:
            continue
        fig.add_trace(go.Scatter(
            x=g["steps"], y=g["repaired"], mode="lines+markers", name=f"{name}: planted errors repaired",
            line=dict(color=color, width=2.5), marker=dict(size=8),
            error_y=dict(type="data", array=g["repaired_se"], visible=True, thickness=1.5),
            hovertemplate=f"<b>{name}</b> T=%{{x}}<br>repaired %{{y:.1%}}<extra></extra>"))
        if name == sampler:
            fig.add_trace(go.Scatter(
                x=g["steps"], y=g["kept"], mode="lines+markers", name=f"{name}: untouched records still valid",
                line=dict(color=color, dash="dash"), marker=dict(symbol="square"),
                error_y=dict(type="data", array=g["kept_se"], visible=True, thickness=1),
                hovertemplate=f"<b>{name}</b> T=%{{x}}<br>untouched still valid %{{y:.1%}}<extra></extra>"))
        else:
            top = g.iloc[-1]
            fig.add_annotation(x=np.log10(top["steps"]), y=top["repaired"], yshift=14, xanchor="right",
                               text=f"{name.upper()} repairs nothing, by construction "
                                    f"(measured: {top['repaired']:.0%} of {int(top['planted_records'])})",
                               showarrow=False, font=dict(color=color))
    ticks = sorted(set(df["steps"]))
    fig.update_xaxes(type="log", tickvals=ticks,
                     ticktext=[f"{t}<br>{steps_fraction(t, seq_len)}" for t in ticks], title_text="refine steps T")
    fig.update_yaxes(tickformat=".0%", range=[-0.05, 1.05], title_text="share of records")
    takeaway = repair_takeaway(df, sampler=sampler, baseline=baseline)
    fig.update_layout(title=dict(text=takeaway, font=dict(size=13)), template="plotly_white", height=420,
                      legend=dict(orientation="h", y=-0.25), meta={"takeaway": takeaway})
    return fig


def error_causes_figure(causes: dict) -> go.Figure:
    """Why rules broke, per run: ``{label: explorer.studies.orders.error_causes(trace)}``. Each bar
    splits a run's broken rules into those whose fields were written *in the same step* (a clash of
    the schedule: drawn independently, §1.2 -- remasking can only re-roll them) and those written
    apart (the model erred while seeing the other field, or a remask changed one side)."""
    labels = list(causes)
    together = [int(causes[k]["together"].sum()) for k in labels]
    total = [len(causes[k]) for k in labels]
    apart = [n - t for n, t in zip(total, together)]
    fig = go.Figure([
        go.Bar(x=labels, y=together, name="fields written in the same step (schedule clash)",
               marker_color=LINE_COLORS[1], text=together, textposition="inside"),
        go.Bar(x=labels, y=apart, name="fields written apart (model error)", marker_color=LINE_COLORS[0],
               text=apart, textposition="inside"),
    ])
    share = "; ".join(f"{k}: {t} of {n}" + (f" ({t / n:.0%})" if n else "") for k, t, n in zip(labels, together, total))
    takeaway = f"Broken rules whose fields were written in the same step -- {share}."
    fig.update_layout(barmode="stack", title=dict(text=takeaway, font=dict(size=13)), template="plotly_white",
                      height=380, yaxis_title="broken rules", legend=dict(orientation="h", y=-0.15),
                      meta={"takeaway": takeaway, "together": together, "total": total})
    return fig


def _loop_start(trace) -> int:
    loop = trace.steps.loc[trace.steps["phase"] == "loop", "step"]
    if loop.empty:
        raise ValueError("this trace has no loop phase (ReMDM-loop's phase 2, §2.5); pass before=<step>.")
    return int(loop.min()) - 1


def revised_text(trace, sample: int = 0, before: int | None = None) -> HTMLView:
    """The same sample before and after its loop phase: the text at step ``before`` (default: just
    before the first loop step, ``trace.state_at``) and the final text, with each token the loop
    changed marked (vermillion, the old word in its tooltip) and each blank it filled in sky blue.
    The first line is a takeaway computed from the counts."""
    before = _loop_start(trace) if before is None else int(before)
    old = trace.state_at(before)[sample].tolist()
    new = trace.final[sample].tolist()
    texts_new = [trace.token_text(t) for t in new]
    sep = "" if any(t[:1].isspace() or t[-1:].isspace() for t in texts_new[:64]) else " "
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != trace.mask_id and a != b]
    filled = [i for i, a in enumerate(old) if a == trace.mask_id]
    style = "border-radius:3px;padding:0 1px;"

    def span(txt, css="", tip=""):
        t = html.escape(txt).replace("\n", "⏎<br>")
        return f'<span style="{style}{css}" title="{html.escape(tip)}">{t}</span>' if css else t

    before_spans, after_spans = [], []
    for i, (a, b) in enumerate(zip(old, new)):
        if a == trace.mask_id:
            before_spans.append(span("░░", f"background:{STATE_COLORS[MASKED]};color:#555;", "masked"))
            after_spans.append(span(texts_new[i], f"background:{STATE_COLORS[UNMASKED]};", "filled during the loop"))
        elif i in changed:
            before_spans.append(span(trace.token_text(a), "text-decoration:line-through;color:#D55E00;",
                                     f"rewritten as {texts_new[i]!r}"))
            after_spans.append(span(texts_new[i], "background:#D55E00;color:white;", f"was {trace.token_text(a)!r}"))
        else:
            before_spans.append(span(trace.token_text(a)))
            after_spans.append(span(texts_new[i]))
    n = len(new)
    takeaway = (f"Sample {sample}: during the loop phase (steps {before + 1} to {trace.last_step}) {len(changed)} of "
                f"{n - len(filled)} written tokens were rewritten and {len(filled)} blanks filled.")
    box = "font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.7;margin:4px 0 10px 0"
    return HTMLView(
        f"<div class='remdm-revised'><div class='remdm-takeaway' style='font-weight:600'>{html.escape(takeaway)}</div>"
        f"<div style='font-size:0.85em;color:#555'>before the loop (step {before}); "
        "struck through: rewritten later</div>"
        f"<div style='{box}'>{sep.join(before_spans)}</div>"
        f"<div style='font-size:0.85em;color:#555'>after (final): "
        f"<span style='background:#D55E00;color:white;{style}'>rewritten</span> "
        f"<span style='background:{STATE_COLORS[UNMASKED]};{style}'>filled</span></div>"
        f"<div style='{box}'>{sep.join(after_spans)}</div></div>")
