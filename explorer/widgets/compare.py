"""Two (or more) traces side by side on one scrubber: samplers from the same seed, or a branch
beside its parent."""
from __future__ import annotations

import html
import time

import ipywidgets as W

from ..viz import export
from ..viz.animation import align_steps, default_alignment, grid_animation
from ..viz.checks import check_labels
from ..viz.curves import step_curves
from .player import Player
from .scrubber import SPEEDS, TraceViewer, default_speed, set_speed


def _label(trace) -> str:
    name = trace.meta.get("sampler", {}).get("name", "run")
    parent = trace.meta.get("parent")
    return f"{name} (branch from step {parent['step']})" if parent else name


class CompareViewer(W.VBox):
    """One step slider (with play and speed) and one position window driving a grid per trace,
    side by side when the width allows (they wrap under each other otherwise).

    Traces may differ in length or start (a branch starts at its parent's step). ``align`` says
    how one slider drives them:

    * ``"step"``: every grid at the same step number (its nearest state where a trace has not
      started yet or has ended) -- right for a branch beside its parent, which share one clock;
    * ``"progress"``: every grid at the same share of its own run. The slider counts the steps of
      the longest run and a run of ``first..last`` stands at ``first + round(share * (last -
      first))``: a 128-step baseline and a 256-step ReMDM-LLaDA run are compared half-way at
      steps 64 and 128, not both at 64, where the cells would differ mostly by how far each run
      has got. The step label still gives each grid's own step.

    The default (``None``) is ``"progress"`` when the traces start together and their step grids
    differ in length, else ``"step"`` (:func:`explorer.viz.animation.default_alignment`); ``to_html``
    aligns its frames the same way. Hover and click work in each grid as in :class:`TraceViewer`;
    paging (``show_window`` or the "from pos." slider) moves every grid together, and so does the
    sample box when the traces have several samples.
    """

    def __init__(self, traces, labels=None, sample: int = 0, step: int | None = None, start: int | None = None,
                 length: int = 128, columns: int = 16, curves: bool = False, align: str | None = None):
        self.traces = list(traces)
        if len(self.traces) < 2:
            raise ValueError("CompareViewer needs at least two traces; use TraceViewer for one.")
        self.labels = check_labels(labels, self.traces) if labels is not None else [_label(t) for t in self.traces]
        self.sample = sample
        self.viewers = [TraceViewer(t, sample=sample, start=start, length=length, columns=columns,
                                    label=lab, curves=curves, lifeline=True)
                        for t, lab in zip(self.traces, self.labels)]
        self.share_cells()  # one cell width for every grid, so rows line up
        indexes = [v.index for v in self.viewers]
        self.align = default_alignment(indexes) if align is None else align
        align_steps(indexes, 0, self.align)       # an unknown alignment is refused here
        counted = [self.longest] if self.align == "progress" else indexes   # what the slider's steps count
        lo = min(ix.first_step for ix in counted)
        hi = max(ix.last_step for ix in counted)
        step = hi if step is None else int(step)
        self.slider = W.IntSlider(value=step, min=lo, max=hi, description="step", continuous_update=True,
                                  readout=False, layout=W.Layout(width="50%"))
        self.slider.add_class("remdm-step-slider")
        self.step_label = W.HTML(layout=W.Layout(min_width="220px"))
        self.step_label.add_class("remdm-step-label")
        self.play = Player(value=step, min=lo, max=hi, interval=200)
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.speed = W.Dropdown(options=list(SPEEDS), value=default_speed(hi - lo), description="speed",
                                layout=W.Layout(width="180px"))
        self.speed.observe(lambda ch: set_speed(self.play, ch["new"]), "value")
        set_speed(self.play, self.speed.value)
        self.slider.observe(lambda ch: self.render(int(ch["new"])), "value")
        controls = [self.play, self.slider, self.step_label, self.speed]
        n_samples = min(t.num_samples for t in self.traces)
        self.sample_box = None
        if n_samples > 1:
            self.sample_box = W.Dropdown(options=list(range(n_samples)), value=sample, description="sample",
                                         layout=W.Layout(width="150px"))
            self.sample_box.observe(lambda ch: self.show_sample(int(ch["new"])), "value")
            self.sample_box.add_class("remdm-sample-box")
            controls.append(self.sample_box)
        v0 = self.viewers[0]
        seq_len = max(v.index.seq_len for v in self.viewers)
        self.window = None
        if seq_len > v0.length:
            self.window = W.IntSlider(value=v0.start, min=0, max=max(0, seq_len - v0.length), step=v0.columns,
                                      description="from pos.", continuous_update=False,
                                      layout=W.Layout(width="40%"))
            self.window.observe(lambda ch: self.show_window(int(ch["new"])), "value")
            self.window.add_class("remdm-window-slider")
        self.last_render_s = 0.0
        for v in self.viewers:  # their own step, sample and window controls give way to the shared ones
            v.children = tuple(c for c in v.children if c is not v.controls and c is not v.window)
            v.layout.flex = "1 1 0%"
            v.layout.margin = "0 12px 0 0"
        self.render(step)
        top = [W.HBox(controls)] + ([self.window] if self.window is not None else [])
        self.grids = W.HBox(self.viewers, layout=W.Layout(width="100%", flex_flow="row wrap",
                                                          align_items="flex-start"))
        self.grids.add_class("remdm-compare-grids")
        super().__init__(top + [self.grids])
        self.add_class("remdm-compare-viewer")

    def share_cells(self) -> int:
        """One cell width for every grid (the longest token any of them shows now), so rows line up."""
        for v in self.viewers:
            v.fit_cells()
        chars = max(v.grid.cell_chars for v in self.viewers)
        for v in self.viewers:
            v.grid.cell_chars = chars
            # a column per trace: they share the row when each gets its grid's narrowest width
            # (30 px a cell, the grid widget's CSS minimum, plus row labels) and wrap otherwise
            v.layout.min_width = f"{max(32, 7 * chars + 10) * v.columns + 60}px"
        return chars

    @property
    def start(self) -> int:
        return self.viewers[0].start

    @property
    def longest(self):
        """The index of the run with the most steps: the one the slider counts under "progress"."""
        return max((v.index for v in self.viewers), key=lambda ix: ix.last_step - ix.first_step)

    def show_window(self, start: int) -> None:
        """Page every grid to positions ``[start, start + length)`` together."""
        start = int(start)
        if self.window is not None and self.window.value != start:
            self.window.value = start  # observed: comes back here once
            return
        for v in self.viewers:
            v.show_window(min(start, max(0, v.index.seq_len - 1)))
        self.share_cells()
        self.mark_differences()

    def show_sample(self, sample: int) -> None:
        """Switch every grid to another sample."""
        self.sample = int(sample)
        if self.sample_box is not None and self.sample_box.value != self.sample:
            self.sample_box.value = self.sample  # observed: comes back here once
            return
        for v in self.viewers:
            v.show_sample(self.sample)
        self.share_cells()
        self.mark_differences()

    @property
    def step(self) -> int:
        return int(self.slider.value)

    @step.setter
    def step(self, k: int) -> None:
        self.slider.value = int(k)

    def render(self, step: int) -> float:
        t0 = time.perf_counter()
        for v, k in zip(self.viewers, align_steps([v.index for v in self.viewers], step, self.align)):
            v.slider.value = k  # renders that grid (no-op when unchanged)
        self.step_label.value = self.shared_label(step)
        self.mark_differences()
        self.last_render_s = time.perf_counter() - t0
        return self.last_render_s

    def shared_label(self, step: int | None = None) -> str:
        """What the shared slider shows: the step label when every grid reads the same, else each
        grid's own ("remdm-loop: final argmax pass (after step 8) · mdlm: step 8 of 8"); aligned by
        progress, the share of each run first ("50% of each run · llada: step 64 of 128 · ...")."""
        shown = [v.step_label.value for v in self.viewers]
        each = " · ".join(f"{html.escape(lab)}: {s}" for lab, s in zip(self.labels, shown))
        if self.align == "progress":
            ref = self.longest
            share = ((self.step if step is None else int(step)) - ref.first_step) / max(1, ref.last_step - ref.first_step)
            return f"{100 * min(1.0, max(0.0, share)):.0f}% of each run · {each}"
        return shown[0] if len(set(shown)) == 1 else each

    def differences(self) -> list[int]:
        """Positions of the shown window where the grids hold different tokens at the shown step
        (each grid at its own nearest state), masked vs written included."""
        shown = []
        for v in self.viewers:
            fr = v.index.frame(v.step, v.start, v.length)
            shown.append(dict(zip(fr.positions.tolist(), fr.tokens.tolist())))
        common = set(shown[0]).intersection(*shown[1:])
        return sorted(p for p in common if len({d[p] for d in shown}) > 1)

    def mark_differences(self) -> list[int]:
        """Underline, in every grid, the cells where the runs differ (see :meth:`differences`)."""
        diff = self.differences()
        for v in self.viewers:
            v.grid.differs = diff
        return diff

    def figure(self, max_frames: int = 60):
        v = self.viewers[0]
        return grid_animation(self.traces, self.labels, self.sample, v.start, v.length, v.columns,
                              max_frames=max_frames, align=self.align)

    def page_parts(self, max_frames: int = 60) -> list:
        """What :meth:`to_html` draws (for pages that hold this view among other things)."""
        return [self.figure(max_frames),
                [step_curves(t, sample=self.sample).update_layout(title=lab)
                 for t, lab in zip(self.traces, self.labels)]]

    def to_html(self, path, title: str = "ReMDM Explorer: side by side", max_frames: int = 60):
        """Self-contained page: the grids on one slider with play, and each trace's step curves."""
        return export.write_html(path, self.page_parts(max_frames), title=title)
