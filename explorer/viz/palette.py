"""Token states and their colours.

The five states a position can be in at the end of a step, with an Okabe-Ito based palette
(Okabe & Ito, "Color Universal Design", 2008) chosen so the states stay apart for the common
forms of colour blindness and also by lightness (grey / white / sky blue / vermillion / yellow).
"""
from __future__ import annotations

from ..trace import FIXED, MASKED, REMASKED, STABLE, UNMASKED  # noqa: F401 -- the state codes the trace's index gives

STATE_NAMES = {
    MASKED: "masked",
    UNMASKED: "unmasked this step",
    REMASKED: "remasked this step",
    STABLE: "stable",
    FIXED: "prompt / pinned",
}

STATE_COLORS = {
    MASKED: "#BDBDBD",     # neutral grey
    UNMASKED: "#56B4E9",   # Okabe-Ito sky blue
    REMASKED: "#D55E00",   # Okabe-Ito vermillion
    STABLE: "#F4F4F4",     # near white: settled tokens recede
    FIXED: "#F0E442",      # Okabe-Ito yellow
}

# Text drawn on each state's cells: dark on light fills, white on vermillion.
TEXT_COLORS = {MASKED: "#555555", UNMASKED: "#000000", REMASKED: "#FFFFFF",
               STABLE: "#000000", FIXED: "#000000"}

EVENT_COLORS = {"unmask": "#0072B2", "remask": "#D55E00"}  # Okabe-Ito blue / vermillion

# Sequential scale for probabilities: cividis is designed to read the same under colour blindness.
PROB_COLORSCALE = "Cividis"

# Okabe-Ito qualitative cycle for lines (black first is skipped: it reads as an axis).
LINE_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def discrete_colorscale(codes=(MASKED, UNMASKED, REMASKED, STABLE, FIXED)):
    """A plotly colorscale mapping integer state codes 0..4 (with zmin=-0.5, zmax=4.5) to flat colours."""
    n = len(codes)
    scale = []
    for i, code in enumerate(codes):
        scale.append([i / n, STATE_COLORS[code]])
        scale.append([(i + 1) / n, STATE_COLORS[code]])
    return scale
