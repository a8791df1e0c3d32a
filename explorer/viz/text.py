"""The sample as flowing text with coloured tokens: plain HTML, no JavaScript, renders anywhere."""
from __future__ import annotations

import html

from .checks import check_window
from .export import HTMLView
from .grid import END_TOKENS
from .palette import MASKED, REMASKED, REWRITTEN, STATE_COLORS, STATE_NAMES, STATE_ORDER, TEXT_COLORS


def token_text(trace, step: int | None = None, sample: int = 0, start: int = 0,
               length: int | None = None) -> HTMLView:
    """Positions of one sample at the end of ``step`` as text, each token on its state colour.

    Hovering a token shows its position, state and p (a plain ``title`` tooltip). Masked tokens
    show as ``[M]``, a token remasked at this step is struck through, and one remasked and rewritten
    within this step shows the new token, its tooltip the one it replaced.
    """
    index = trace.index(sample)
    step = index.last_step if step is None else index.check_step(step)
    check_window(index.seq_len, start, length)
    fr = index.frame(step, start, length)
    # word-level vocabularies carry no spaces in their token texts: put one between tokens then
    sample_texts = [index.text(int(t)) for t in fr.shown[:64] if int(t) != index.mask_id]
    sep = "" if any(t[:1].isspace() or t[-1:].isspace() for t in sample_texts) else " "
    spans = []
    for p, tid, code, prob, ev in zip(fr.positions, fr.shown, fr.codes, fr.prob, fr.event):
        code = int(code)
        txt = "[M]" if int(tid) == index.mask_id else index.text(int(tid))
        tip = f"position {int(p)} · {STATE_NAMES[code]}" + ("" if prob != prob else f" · p={prob:.3f}")
        if code == REWRITTEN:   # the tie rule puts its remask just before this unmask
            tip += f" · it held {index.text(int(index.tok[int(ev) - 1]))}"
        style = f"background:{STATE_COLORS[code]};color:{TEXT_COLORS[code]};border-radius:3px;padding:0 1px;"
        if code == REMASKED:
            style += "text-decoration:line-through;"
        if code == MASKED:
            style += "font-size:0.8em;"
        if txt.strip() in END_TOKENS:  # the end of one text: a visible break, not markup
            spans.append(f'<span title="{html.escape(tip)} · end of text" style="{style}">¶</span><br>')
            continue
        spans.append(f'<span title="{html.escape(tip)}" style="{style}">'
                     f'{html.escape(txt).replace(chr(10), "⏎<br>")}</span>')
    legend = " ".join(f'<span style="background:{STATE_COLORS[c]};color:{TEXT_COLORS[c]};'
                      f'padding:0 4px;border-radius:3px">{STATE_NAMES[c]}</span>' for c in STATE_ORDER)
    body = ("<div style='font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.7'>"
            + sep.join(spans) + "</div>")
    return HTMLView(f"<div class='remdm-text'><div style='font-size:0.85em;margin-bottom:4px'>"
                    f"step {step} · {legend}</div>{body}</div>")
