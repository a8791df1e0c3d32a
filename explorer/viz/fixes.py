"""Remasks that fixed something: for records with checkable rules (the ``orders`` task).

At every step, the decoded part of each record is checked against the task's rules (a rule is
checked once all its fields are decoded). A *fix* is a rule that was broken at some step, one of
its record's tokens was then remasked, and the rule holds at the end -- the moment ReMDM exists
for, and one MDLM cannot have (it never revisits a token).
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ._index import index_for
from .export import HTMLView, Report
from .grid import token_grid
from .lifeline import lifelines


def _checker(task):
    """(check_records, record length, {rule: fields it couples}, field name of each record slot)."""
    if task is None or task == "orders":
        from explorer.tasks import orders as task
    slots = [t[1:-1] if t.startswith("<") else None for t in task.TEMPLATE]
    return task.check_records, task.RECORD_LEN, task.RULE_FIELDS, slots


def broken_rules(trace, sample: int = 0, steps=None, task=None) -> pd.DataFrame:
    """Tidy: step, record, rule, ok -- for each rule checkable at that step (format excluded while
    fields are still masked)."""
    check_records = _checker(task)[0]
    index = index_for(trace, sample)
    if steps is None:
        steps = sorted(set(index.step.tolist()) | {index.first_step, index.last_step})
    rows = []
    for k in steps:
        text = " ".join(index.text(int(t)) for t in index.frame(int(k)).tokens)
        df = check_records(text)
        if df.empty:
            continue
        masked = "[MASK]" in text
        if masked:
            df = df[df["rule"] != "format"]
        df = df.assign(step=int(k))
        rows.append(df[["step", "record", "rule", "ok", "field", "value", "expected"]])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["step", "record", "rule", "ok", "field", "value", "expected"])


def find_fixes(trace, samples=None, task=None) -> pd.DataFrame:
    """Remasks that repaired a broken rule: just before the remask the rule was broken, the
    remasked token is one of the fields that rule couples, and the rule holds at the end.

    Columns: sample, record, rule, broken_at (first step seen broken), remask_step, position,
    field, removed (the token remasked), fixed_at (first step from which the rule holds for good),
    value_broken, value_final (of the field the checker reports). One row per (sample, record,
    rule), the first such remask.
    """
    _, rec_len, rule_fields, slots = _checker(task)
    samples = range(trace.num_samples) if samples is None else samples
    out = []
    for s in samples:
        index = index_for(trace, s)
        br = broken_rules(trace, s, task=task)
        if br.empty:
            continue
        checked = np.array(sorted(br["step"].unique()))
        table = {key: g.set_index("step") for key, g in br.groupby(["record", "rule"])}

        def status(key, k):
            """(ok, row) of the rule at the end of step k, or (None, None) if not checkable then."""
            i = np.searchsorted(checked, k, side="right") - 1
            g = table.get(key)
            if i < 0 or g is None or checked[i] not in g.index:
                return None, None
            row = g.loc[checked[i]]
            return bool(row["ok"]), row

        seen = set()
        for e in np.flatnonzero(~index.is_unmask):
            p, r = int(index.pos[e]), int(index.step[e])
            rec, field = p // rec_len, slots[p % rec_len]
            for rule, fields in rule_fields.items():
                key = (rec, rule)
                if field not in fields or (s,) + key in seen:
                    continue
                ok_before, row_before = status(key, r - 1)
                ok_end, row_end = status(key, index.last_step)
                if ok_before is not False or not ok_end:
                    continue
                g = table[key]
                bad_steps = g.index[~g["ok"].astype(bool)]
                fixed_at = int(g.index[(g.index > bad_steps.max())].min())
                seen.add((s,) + key)
                out.append({"sample": s, "record": rec, "rule": rule, "broken_at": int(bad_steps.min()),
                            "remask_step": r, "position": p, "field": field,
                            "removed": index.text(int(index.tok[e])), "fixed_at": fixed_at,
                            "value_broken": row_before["value"], "value_final": row_end["value"]})
    return pd.DataFrame(out, columns=["sample", "record", "rule", "broken_at", "remask_step", "position",
                                      "field", "removed", "fixed_at", "value_broken", "value_final"])


def fix_story(trace, fix, columns: int = 16, task=None):
    """A plain-language account of one fix (a row of :func:`find_fixes`) with the grids before
    the remask, at the remask and after the fix, and the record's lifelines.

    Returns a :class:`~explorer.viz.export.Report`: it displays in a notebook and
    ``.to_html(path)`` saves it as one page.
    """
    rec_len = _checker(task)[1]
    s, rec = int(fix["sample"]), int(fix["record"])
    index = index_for(trace, s)
    lo = rec * rec_len
    before = max(index.first_step, int(fix["remask_step"]) - 1)

    def record_text(k):
        toks = index.frame(k, lo, rec_len).tokens
        return " ".join(index.text(int(t)) for t in toks)

    text = HTMLView(
        f"<p><b>Sample {s}, record {rec}: the <i>{html.escape(str(fix['rule']))}</i> rule.</b></p><ul>"
        f"<li>Step {before}: <code>{html.escape(record_text(before))}</code> &mdash; the rule is broken "
        f"(reported: <code>{html.escape(str(fix['value_broken']))}</code>).</li>"
        f"<li>Step {int(fix['remask_step'])}: position {int(fix['position'])}, the "
        f"<i>{html.escape(str(fix['field']))}</i> field (<code>{html.escape(str(fix['removed']))}</code>), "
        "is put back to [MASK] &mdash; a remask.</li>"
        f"<li>Step {int(fix['fixed_at'])}: <code>{html.escape(record_text(int(fix['fixed_at'])))}</code> "
        f"&mdash; the rule holds again and still holds at the end.</li></ul>"
        "<p>MDLM can never do this: once it writes a token, the token stays.</p>")
    figs = [token_grid(trace, k, s, start=lo, length=rec_len, columns=columns,
                       label=f"record {rec}") for k in (before, int(fix["remask_step"]), int(fix["fixed_at"]))]
    figs.append(lifelines(trace, list(range(lo, lo + rec_len)), s, step=int(fix["remask_step"])))
    return Report([text, *figs], title=f"a remask that fixed the {fix['rule']} rule")


def suggest_revisit(trace, sample: int | None = None, task=None) -> dict | None:
    """A "what if this field had been revisited?" edit for a finished run: the first rule broken
    at the end, the field of it that depends on the others (currency on country, total on price
    and quantity, ...), and the step at which that field was written.

    Returns ``{"sample", "record", "rule", "field", "position", "token", "step", "remask"}`` --
    ``explorer.resume(model, trace, d["step"], remask=d["remask"])`` (or an
    :class:`~explorer.widgets.InterventionViewer`'s ``branch``) replays the run from there with
    that field put back to [MASK]. ``sample=None`` looks through the samples in order. ``None``
    when nothing is broken.
    """
    if sample is None:
        for s in range(trace.num_samples):
            found = suggest_revisit(trace, s, task)
            if found is not None:
                return found
        return None
    _, rec_len, rule_fields, slots = _checker(task)
    index = index_for(trace, sample)
    br = broken_rules(trace, sample, steps=[index.last_step], task=task)
    bad = br[~br["ok"].astype(bool) & br["rule"].isin(list(rule_fields))]
    if bad.empty:
        return None
    row = bad.iloc[0]
    rec, rule = int(row["record"]), str(row["rule"])
    field = rule_fields[rule][-1]
    position = rec * rec_len + slots.index(field)
    a, b = index.pos_start[position], index.pos_end[position]
    written = [int(index.step[i]) for i in range(a, b) if index.is_unmask[i]]
    step = written[-1] if written else index.first_step
    step = max(index.first_step, min(step, index.num_steps - 1))
    return {"sample": sample, "record": rec, "rule": rule, "field": field, "position": position,
            "token": index.text(int(index.frame(index.last_step, position, 1).tokens[0])),
            "step": step, "remask": [position]}
