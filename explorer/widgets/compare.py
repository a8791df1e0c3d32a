"""Two (or more) traces side by side on one scrubber: samplers from the same seed, or a branch
beside its parent."""
from __future__ import annotations

import time

import ipywidgets as W
import numpy as np

from ..viz import export
from ..viz.animation import grid_animation
from ..viz.curves import step_curves
from .scrubber import SPEEDS, TraceViewer, default_speed, set_speed


def _label(trace) -> str:
    name = trace.meta.get("sampler", {}).get("name", "run")
    parent = trace.meta.get("parent")
    return f"{name} (branch from step {parent['step']})" if parent else name


class CompareViewer(W.VBox):
    """One step slider (with play and speed) driving a grid per trace, side by side.

    Traces may differ in length or start (a branch starts at its parent's step): each grid shows
    its nearest state. Hover and click work in each grid as in :class:`TraceViewer`.
    """

    def __init__(self, traces, labels=None, sample: int = 0, step: int | None = None, start: int = 0,
                 length: int = 128, columns: int = 16, curves: bool = False):
        self.traces = list(traces)
        if len(self.traces) < 2:
            raise ValueError("CompareViewer needs at least two traces; use TraceViewer for one.")
        self.labels = list(labels) if labels is not None else [_label(t) for t in self.traces]
        self.sample = sample
        self.viewers = [TraceViewer(t, sample=sample, start=start, length=length, columns=columns,
                                    label=lab, curves=curves, lifeline=True)
                        for t, lab in zip(self.traces, self.labels)]
        lo = min(v.index.first_step for v in self.viewers)
        hi = max(v.index.last_step for v in self.viewers)
        step = hi if step is None else int(step)
        self.slider = W.IntSlider(value=step, min=lo, max=hi, description="step", continuous_update=True,
                                  layout=W.Layout(width="60%"))
        self.play = W.Play(value=step, min=lo, max=hi, interval=200, show_repeat=False)
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.speed = W.Dropdown(options=list(SPEEDS), value=default_speed(hi - lo), description="speed",
                                layout=W.Layout(width="180px"))
        self.speed.observe(lambda ch: set_speed(self.play, ch["new"]), "value")
        set_speed(self.play, self.speed.value)
        self.slider.observe(lambda ch: self.render(int(ch["new"])), "value")
        self.last_render_s = 0.0
        for v in self.viewers:  # their own controls are replaced by the shared slider
            v.children = tuple(c for c in v.children if not isinstance(c, W.HBox))
            v.layout.width = f"{v.width + 10}px"
            v.layout.margin = "0 10px 0 0"
        self.render(step)
        super().__init__([W.HBox([self.play, self.slider, self.speed]),
                          W.HBox(self.viewers, layout=W.Layout(width="100%", flex_flow="row wrap"))])

    @property
    def step(self) -> int:
        return int(self.slider.value)

    @step.setter
    def step(self, k: int) -> None:
        self.slider.value = int(k)

    def render(self, step: int) -> float:
        t0 = time.perf_counter()
        for v in self.viewers:
            k = int(np.clip(step, v.index.first_step, v.index.last_step))
            v.slider.value = k  # renders that grid (no-op when unchanged)
        self.last_render_s = time.perf_counter() - t0
        return self.last_render_s

    def figure(self, max_frames: int = 60):
        v = self.viewers[0]
        return grid_animation(self.traces, self.labels, self.sample, v.start, v.length, v.columns,
                              max_frames=max_frames)

    def to_html(self, path, title: str = "ReMDM Explorer: side by side", max_frames: int = 60):
        """Self-contained page: the grids on one slider with play, and each trace's step curves."""
        parts = [self.figure(max_frames),
                 [step_curves(t, sample=self.sample).update_layout(title=lab)
                  for t, lab in zip(self.traces, self.labels)]]
        return export.write_html(path, parts, title=title)
