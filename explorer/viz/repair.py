"""Remasking as repair, in pictures (``explorer.studies.repair``).

* :func:`repair_strip` -- one planted record, step by step (from
  :func:`explorer.studies.repair.strip_table`): the wrong value flagged with the rule it breaks, the
  field put back to [MASK], rewritten right, and every random revisit of another field labelled;
* :func:`repair_rate_figure` -- the share of planted records repaired against the number of refine
  steps, with the share of untouched records still valid, and MDLM at zero;
* :func:`error_causes_figure` -- when remasking does not help: broken rules whose fields were
  written in the same step (schedule clashes) against the rest;
* :func:`revised_text` -- a story revised by its loop phase, word by word: the final text with the
  word each rewrite replaced above it.

All are pure (DataFrame / trace in, figure or HTML out, no analysis: the tables come from
``explorer.studies``); each title says the takeaway in plain words and its subtitle the numbers, both
computed from what is drawn and kept in ``fig.layout.meta`` (``headline``, ``takeaway``).
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..studies.repair import STRIP_KINDS, rule_text
from ..tasks import orders
from .cells import display_token
from .export import HTMLView
from .palette import FIXED, LINE_COLORS, MASKED, STATE_COLORS, UNMASKED
from .scaling import steps_fraction

__all__ = ["repair_strip", "repair_rate_figure", "repair_takeaway", "repair_headline", "error_causes_figure",
           "revised_text"]

# the colour of each kind of cell in the strip (explorer.studies.repair.STRIP_KINDS)
_KIND_COLORS = {"wrong": "#D55E00", "masked": STATE_COLORS[MASKED], "repaired": STATE_COLORS[UNMASKED],
                "revisit": "#E3E3E3", "same": "#DCEFFA", "changed": "#9FD3F2", "given": "#F4F4F4",
                "anchor": STATE_COLORS[FIXED]}


def repair_strip(table: pd.DataFrame) -> go.Figure:
    """One planted record at the steps that matter, drawn from
    :func:`explorer.studies.repair.strip_table`: a row per step, a cell per token, coloured by kind
    (the legend names every kind drawn: the planted wrong value, its remask and rewrite, random
    revisits of other fields and what they became, the fixed anchor). Beside each row, the record's
    state ("breaks: currency ≠ country", "keeps every rule") and what else changed since the row
    above ("ship_day put back to [MASK]: random revisit", "qty: random revisit, unchanged").

    The title says what happened in plain words; the subtitle the steps and values. ``meta``:
    ``takeaway, headline, sample, record, position, steps, status, notes``."""
    story = table.attrs.get("story") or {}
    names = [k for k, _ in STRIP_KINDS]
    legend = dict(STRIP_KINDS)
    rows = table.drop_duplicates("step").sort_values("step")
    labels, steps = rows["label"].tolist(), rows["step"].astype(int).tolist()
    status, notes = rows["status"].tolist(), rows["note"].tolist()
    grid = table.pivot(index="step", columns="column", values="kind").loc[steps]
    words = table.pivot(index="step", columns="column", values="token").loc[steps]
    z = grid.map(names.index).to_numpy()
    scale = []
    for code, name in enumerate(names):   # flat bands, one per kind
        scale += [[code / len(names), _KIND_COLORS[name]], [(code + 1) / len(names), _KIND_COLORS[name]]]
    slots = table.drop_duplicates("column").sort_values("column")["slot"].tolist()
    cols = [f"{c}:{s}" for c, s in enumerate(slots)]
    hover = np.array([[f"{legend[k]}<br>{s}" for k in grid.loc[st]] for st, s in zip(steps, status)])
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=labels, text=[[display_token(w) for w in r] for r in words.to_numpy()],
                               texttemplate="%{text}", zmin=-0.5, zmax=len(names) - 0.5, colorscale=scale,
                               showscale=False, xgap=2, ygap=2, customdata=hover,
                               hovertemplate="%{y}, %{x}: <b>%{text}</b><br>%{customdata}<extra></extra>"))
    for y, s, n in zip(labels, status, notes):
        flagged = s.startswith("breaks")
        lines = "".join(f"<br><span style='font-size:10px;color:#555'>{part}</span>" for part in n.split("; ") if part)
        text = ("⚑ " if flagged else "") + s + lines
        fig.add_annotation(x=1.01, xref="paper", y=y, yref="y", text=text, showarrow=False, xanchor="left",
                           align="left", font=dict(size=12, color="#D55E00" if flagged else "#222"))
    drawn = set(grid.to_numpy().ravel())
    for name in names:   # a legend entry for every kind of cell drawn
        if name in drawn:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=legend[name],
                                     marker=dict(size=12, symbol="square", color=_KIND_COLORS[name],
                                                 line=dict(color="#999", width=1))))
    field, k1, k2 = story.get("field", "field"), story.get("remasked_at", -1), story.get("rewritten_at", -1)
    if k2 >= 0 and story.get("valid_end"):
        headline = f"A wrong {field} is taken back and rewritten right; the record ends valid"
        how = f"put back to [MASK] at step {k1}, rewritten as {story['rewritten_to']} at step {k2}"
    elif k2 >= 0:
        headline = f"A wrong {field} is taken back and rewritten, but the record still breaks a rule"
        how = f"put back to [MASK] at step {k1}, rewritten as {story['rewritten_to']} at step {k2}"
    else:
        headline = f"The wrong {field} was never revisited"
        how = "never remasked"
    end = "keeps every rule at the end" if story.get("valid_end") else "still breaks a rule at the end"
    takeaway = (f"Sample {story.get('sample')}, record {story.get('record')}: planted {field} {story.get('planted')} "
                f"breaks {rule_text(story['rule']) if 'rule' in story else 'a rule'}; {how}; the record {end}.")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(side="top", tickangle=-45, tickfont=dict(size=10))
    fig.update_layout(title=dict(text=headline + ".", font=dict(size=15), x=0.01, xanchor="left", y=0.985,
                                 subtitle=dict(text=takeaway, font=dict(size=11, color="#444"))),
                      template="plotly_white", height=200 + 56 * len(steps), margin=dict(l=70, r=400, t=150, b=20),
                      legend=dict(orientation="h", y=-0.02, yanchor="top"), plot_bgcolor="white",
                      meta={"takeaway": takeaway, "headline": headline, "sample": story.get("sample"),
                            "record": story.get("record"), "position": story.get("position"), "steps": steps,
                            "status": status, "notes": notes})
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
    fig.update_yaxes(tickformat=".0%", range=[-0.05, 1.05], title_text="share of records (higher is better)")
    takeaway = repair_takeaway(df, sampler=sampler, baseline=baseline)
    headline = repair_headline(df, sampler=sampler)
    fig.update_layout(title=dict(text=headline + ".", font=dict(size=15), x=0.01, xanchor="left",
                                 subtitle=dict(text=takeaway, font=dict(size=11, color="#444"))),
                      template="plotly_white", height=460, margin=dict(t=110),
                      legend=dict(orientation="h", y=-0.25), meta={"takeaway": takeaway, "headline": headline})
    return fig


def repair_headline(df: pd.DataFrame, sampler: str = "remdm-refine") -> str:
    """The repair table's takeaway in plain words, from its numbers: whether more refine steps
    repair more planted mistakes (more than 2 SE between the fewest and the most steps) and
    whether untouched records stay valid (at least 95 % at every T)."""
    g = df[df["sampler"] == sampler].sort_values("steps")
    lo, hi = g.iloc[0], g.iloc[-1]
    se = float(np.hypot(lo["repaired_se"], hi["repaired_se"]))
    more = hi["repaired"] - lo["repaired"] > 2 * se
    first = (f"More refine steps repair more planted mistakes: {hi['repaired']:.0%} at T = {int(hi['steps'])}"
             if more else f"More refine steps do not repair clearly more: {hi['repaired']:.0%} at T = {int(hi['steps'])}")
    kept = "untouched records stay valid" if (g["kept"] >= 0.95).all() else "but some untouched records break"
    return f"{first}; {kept}"


def _share_words(frac: float) -> str:
    """A share in plain words, as a reader would say it of the numbers drawn."""
    if not frac > 0:
        return "None of the"
    return "Most" if frac > 0.6 else "About half of the" if frac >= 0.4 else "Some"


def error_causes_figure(causes: dict, sequences: int | dict | None = None,
                        records_per_seq: int = orders.RECORDS_PER_SEQ) -> go.Figure:
    """Why rules broke, per run: ``{label: explorer.studies.orders.error_causes(trace)}``. Each bar
    splits a run's broken rules into those whose fields were written *in the same step* (a clash of
    the schedule: drawn independently, §1.2 -- remasking can only re-roll them) and those written
    apart, these split (where the tables have ``remasked``) into those with a field remasked during the
    run and the rest. The rest is not all model error: a field written after a clash into a record
    the clash already made impossible breaks a rule too (a perfect model, sampled the same way, has
    such breaks).

    The title says in words what share are clashes ("Most" above 60 %, "About half" from 40 to
    60 %, "Some" below). With ``sequences`` (the number of sequences of each run, one int or a
    ``{label: n}``) it also compares every run with the first by the share of records broken, mean
    ± 1 SE over sequences: "more" / "fewer" only beyond 2 SE, "about as many (within noise)"
    otherwise. ``meta``: ``takeaway, headline, together, remasked, total`` and, with ``sequences``,
    ``broken_records`` (mean, SE: share of records per sequence) and ``z`` (each later run
    against the first)."""
    labels = list(causes)
    together = [int(causes[k]["together"].sum()) for k in labels]
    total = [len(causes[k]) for k in labels]
    # rules written apart with a remasked field (a table from before that column counts none)
    remasked = [int((~causes[k]["together"].astype(bool) & causes[k]["remasked"].astype(bool)).sum())
                if "remasked" in causes[k] else 0 for k in labels]
    apart = [n - t - r for n, t, r in zip(total, together, remasked)]
    bars = [go.Bar(x=labels, y=together, name="fields written in the same step (schedule clash)",
                   marker_color=LINE_COLORS[1], text=together, textposition="inside")]
    if any(remasked):
        bars.append(go.Bar(x=labels, y=remasked, name="written apart, a field remasked and rewritten",
                           marker_color=LINE_COLORS[2], text=remasked, textposition="inside"))
    why = ("model error, or knock-on of an earlier clash" if all("remasked" in causes[k] for k in labels)
           else "model error, knock-on of an earlier clash, or a remask")    # tables that cannot tell
    bars.append(go.Bar(x=labels, y=apart, name=f"written apart{', never remasked' if any(remasked) else ''} ({why})",
                       marker_color=LINE_COLORS[0], text=apart, textposition="inside"))
    fig = go.Figure(bars)
    share = "; ".join(f"{k}: {t} of {n}" + (f" ({t / n:.0%})" if n else "") for k, t, n in zip(labels, together, total))
    takeaway = f"Broken rules whose fields were written in the same step -- {share}."
    if any(remasked):
        takeaway += " Written apart with a remasked field -- " + "; ".join(
            f"{k}: {r} of {n}" for k, r, n in zip(labels, remasked, total)) + "."
    frac = sum(together) / sum(total) if sum(total) else float("nan")
    headline = (f"{_share_words(frac)} broken rules are schedule clashes (both fields written in the same step)"
                if sum(total) else "No broken rules in these runs")
    meta = {"takeaway": takeaway, "headline": headline, "together": together, "remasked": remasked,
            "total": total}
    lines, shown = [takeaway], headline        # shown: the title, one line per comparison
    if sequences is not None:
        n_of = {k: int(sequences[k] if isinstance(sequences, dict) else sequences) for k in labels}
        per = {}
        for k in labels:
            c = causes[k]
            broken = c.drop_duplicates(["sample", "record"])["sample"].value_counts() if len(c) else pd.Series(dtype=int)
            if len(broken) and int(broken.index.max()) >= n_of[k]:
                raise ValueError(f"{k}: sample {int(broken.index.max())} is beyond the {n_of[k]} sequences given.")
            share_k = broken.reindex(range(n_of[k]), fill_value=0).to_numpy() / records_per_seq
            se = float(share_k.std(ddof=1) / np.sqrt(len(share_k))) if len(share_k) > 1 else float("nan")
            per[k] = (float(share_k.mean()), se)
        first, (m0, s0) = labels[0], per[labels[0]]
        z, said = {}, []
        for k in labels[1:]:
            m, se = per[k]
            both = float(np.hypot(se, s0))
            z[k] = (m - m0) / both if both > 0 else 0.0
            if abs(z[k]) >= 2:
                said.append(f"{k} leaves {'more' if z[k] > 0 else 'fewer'} records broken than {first} "
                            f"({abs(z[k]):.1f} SE)")
            else:
                said.append(f"{k} and {first} leave about as many records broken (within noise, {abs(z[k]):.1f} SE)")
        if said:
            headline += "; " + "; ".join(said)
            shown = shown + ".<br>" + "; ".join(said)
        lines.append("Records broken (mean ± 1 SE over sequences): " + "; ".join(
            f"{k} {m:.1%} ± {se:.1%} of {n_of[k] * records_per_seq}" for k, (m, se) in per.items()) + ".")
        meta.update(headline=headline, takeaway=" ".join(lines), broken_records=per, z=z)
    fig.update_layout(barmode="stack", title=dict(text=shown + ".", font=dict(size=15), x=0.01, xanchor="left",
                                                  subtitle=dict(text="<br>".join(lines), font=dict(size=11,
                                                                                                  color="#444"))),
                      template="plotly_white", height=460, margin=dict(t=140),
                      yaxis_title="broken rules (fewer is better; a record can break several)",
                      legend=dict(orientation="h", y=-0.15),
                      meta=meta)
    return fig


def _loop_start(trace) -> int:
    loop = trace.steps.loc[trace.steps["phase"] == "loop", "step"]
    if loop.empty:
        raise ValueError("this trace has no loop phase (ReMDM-loop's phase 2, §2.5); pass before=<step>.")
    return int(loop.min()) - 1


_EOT = ("<|endoftext|>", "</s>", "<eos>", "[SEP]")


def _words(texts: list[str]) -> list[list[int]]:
    """Token positions grouped into words: a word starts at a token that begins with a space or
    a line break, after a line break, and at an end-of-text token (which stands alone)."""
    words: list[list[int]] = []
    for i, t in enumerate(texts):
        starts = (not words or t[:1].isspace() or t in _EOT or texts[i - 1] in _EOT
                  or texts[i - 1].endswith("\n"))
        if starts:
            words.append([i])
        else:
            words[-1].append(i)
    return words


def revised_text(trace, sample: int = 0, before: int | None = None) -> HTMLView:
    """One sample revised by its loop phase, word by word: the final text, and above each word the
    loop rewrote, the word it replaced (struck through). Positions never move in masked diffusion,
    so word i of the draft (the state at ``before``, default just before the first loop step) sits
    above word i of the final text. Only real changes are marked: a word whose tokens were remasked
    but came back the same, or whose new tokens spell the same text, is plain; a blank the loop
    filled is underlined, not marked as a change. An end-of-text token is drawn as a visible break
    ("end of story"), a line break as a new line. The first line is a takeaway from the counts."""
    before = _loop_start(trace) if before is None else int(before)
    old = trace.state_at(before)[sample].tolist()
    new = trace.final[sample].tolist()
    mask = trace.mask_id
    new_texts = [trace.token_text(t) for t in new]
    old_texts = [trace.token_text(t) for t in old]
    spaced = any(t[:1].isspace() for t in new_texts)     # BPE-style tokens carry their own spaces
    chip = ("display:inline-block;border:1px solid #999;border-radius:3px;padding:0 4px;margin:0 2px;"
            "font-size:0.75em;color:#555;background:#F4F4F4")

    def show(text: str) -> str:
        if text in _EOT:
            return f"<span style='{chip}'>end of story</span>"
        return html.escape(text.replace("\n", " ").strip() if spaced else text)

    changed = filled = kept = 0
    cells = []
    for group in (_words(new_texts) if spaced else [[i] for i in range(len(new))]):
        was_masked = all(old[i] == mask for i in group)
        old_word = "".join("_" if old[i] == mask else old_texts[i] for i in group)
        new_word = "".join(new_texts[i] for i in group)
        top, bottom_css, tip = "&nbsp;", "", ""
        if was_masked:
            filled += 1
            bottom_css, tip = f"border-bottom:2px dotted {STATE_COLORS[UNMASKED]};", "a blank the loop filled"
        elif any(old[i] == mask for i in group) or old_word != new_word:
            changed += 1
            top = f"<s style='color:#D55E00'>{show(old_word)}</s>"
            bottom_css, tip = "background:#FBE3D6;border-radius:3px;", f"was {old_word.strip()!r}"
        else:
            kept += 1
        cells.append(f"<span style='display:inline-flex;flex-direction:column;margin:0 {3 if spaced else 2}px 6px 0;"
                     f"vertical-align:top' title='{html.escape(tip)}'><span style='font-size:0.75em;line-height:1.1'>"
                     f"{top}</span><span style='{bottom_css}'>{show(new_word)}</span></span>")
        if new_word.endswith("\n") or new_word in _EOT:
            cells.append("<br>")
    written = changed + kept
    share = f" ({changed / written:.0%})" if written else ""
    takeaway = (f"Sample {sample}: the loop phase (steps {before + 1} to {trace.last_step}) rewrote {changed} of "
                f"the {written} words already written{share} and filled {filled} blanks; the other {kept} "
                "words stayed as they were.")
    legend = (f"final text; above a word: the word it replaced, <s style='color:#D55E00'>struck through</s>; "
              f"<span style='border-bottom:2px dotted {STATE_COLORS[UNMASKED]}'>dotted</span>: a blank filled "
              "during the loop; hover a word for what it was")
    return HTMLView(
        f"<div class='remdm-revised'><div class='remdm-takeaway' style='font-weight:600'>{html.escape(takeaway)}</div>"
        f"<div style='font-size:0.85em;color:#555;margin:2px 0 6px 0'>{legend}</div>"
        f"<div style='line-height:1.3'>{''.join(cells)}</div></div>")
