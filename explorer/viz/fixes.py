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

    Returns a :class:`~explorer.viz.export.Report`: it displays in a notebook and
    ``.to_html(path)`` saves it as one page.
    """
    rec_len = record_len
    s, rec = int(fix["sample"]), int(fix["record"])
    index = trace.index(s)
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
