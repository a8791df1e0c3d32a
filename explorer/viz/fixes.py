"""One remask that fixed a broken rule, told and drawn (the ``orders`` task).

Which remasks were fixes is an analysis, not a picture: :func:`explorer.studies.find_fixes` (the
hits of :func:`explorer.studies.remask_ledger` told per rule) finds them; :func:`fix_story` draws
one of its rows -- the moment ReMDM exists for, and one MDLM cannot have (it never revisits a token).
"""
from __future__ import annotations

import html

from ..tasks.orders import RECORD_LEN
from .export import HTMLView, Report
from .grid import token_grid
from .lifeline import lifelines

__all__ = ["fix_story"]


def fix_story(trace, fix, columns: int = 16, record_len: int = RECORD_LEN):
    """A plain-language account of one fix (a row of :func:`explorer.studies.find_fixes`) with the
    grids before the remask, at the remask and after the fix, and the record's lifelines.

    A sampler that remasks and rewrites within one step (rescore, ReMDM-LLaDA) fixes the record in
    the step of the remask: the story then says so and draws that step once, where the field shows
    as remasked and rewritten (orange), instead of a "put back to [MASK]" grid with no mask in it.

    Returns a :class:`~explorer.viz.export.Report`: it displays in a notebook and
    ``.to_html(path)`` saves it as one page.
    """
    rec_len = record_len
    s, rec = int(fix["sample"]), int(fix["record"])
    index = trace.index(s)
    lo = rec * rec_len
    remask_step, fixed_at, position = int(fix["remask_step"]), int(fix["fixed_at"]), int(fix["position"])
    before = max(index.first_step, remask_step - 1)
    # what the field holds at the end of the remask step: still [MASK], or already its rewrite
    rewritten = int(index.frame(remask_step, position, 1).tokens[0]) != index.mask_id

    def record_text(k):
        toks = index.frame(k, lo, rec_len).tokens
        return " ".join(index.text(int(t)) for t in toks)

    field = (f"position {position}, the <i>{html.escape(str(fix['field']))}</i> field "
             f"(<code>{html.escape(str(fix['removed']))}</code>),")
    if rewritten:
        now = html.escape(index.text(int(index.frame(remask_step, position, 1).tokens[0])))
        remask = (f"<li>Step {remask_step}: {field} is put back to [MASK] &mdash; a remask &mdash; and written "
                  f"again (<code>{now}</code>) within the same step, so no grid shows it masked: it is "
                  "drawn in orange, remasked and rewritten.</li>")
    else:
        remask = f"<li>Step {remask_step}: {field} is put back to [MASK] &mdash; a remask.</li>"
    if fixed_at == remask_step:
        fixed = (f"<li>After step {fixed_at}: <code>{html.escape(record_text(fixed_at))}</code> &mdash; the "
                 "rule holds again and still holds at the end.</li>")
    else:
        fixed = (f"<li>Step {fixed_at}: <code>{html.escape(record_text(fixed_at))}</code> "
                 f"&mdash; the rule holds again and still holds at the end.</li>")
    text = HTMLView(
        f"<p><b>Sample {s}, record {rec}: the <i>{html.escape(str(fix['rule']))}</i> rule.</b></p><ul>"
        f"<li>Step {before}: <code>{html.escape(record_text(before))}</code> &mdash; the rule is broken "
        f"(reported: <code>{html.escape(str(fix['value_broken']))}</code>).</li>"
        f"{remask}{fixed}</ul>"
        "<p>MDLM can never do this: once it writes a token, the token stays.</p>")
    panels = [(before, "before the remask")]
    if fixed_at == remask_step:
        panels.append((remask_step, "remasked and rewritten in this one step: the fix"))
    else:
        panels += [(remask_step, "the remask" + (" (rewritten in the same step)" if rewritten else "")),
                   (fixed_at, "fixed")]
    figs = [token_grid(trace, k, s, start=lo, length=rec_len, columns=columns,
                       label=f"record {rec} · {what}") for k, what in panels]
    figs.append(lifelines(trace, list(range(lo, lo + rec_len)), s, step=remask_step))
    return Report([text, *figs], title=f"a remask that fixed the {fix['rule']} rule")
