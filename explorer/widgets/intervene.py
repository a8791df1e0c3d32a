"""Intervention: at any step, pick tokens to remask or pin, continue as a branch, compare."""
from __future__ import annotations

import html

import ipywidgets as W
import torch

from ..samplers.base import as_int
from ..viz import export
from ..viz.animation import grid_animation
from ..viz.grid import position_name
from .compare import CompareViewer, _label
from .scrubber import TraceViewer


def last_resumable_step(trace) -> int:
    """The latest step ``explorer.resume`` branches from: the one before the sampler's last step
    (a branch from the last would have nothing left to run), or a stopped run's last step."""
    if not trace.complete:
        return trace.last_step
    final = trace.final_pass_step
    last = final - 1 if final is not None else trace.last_step
    return max(trace.first_step, last - 1)


class InterventionViewer(W.VBox):
    """Scrub the parent, click tokens to select them, choose remask or pin, press *continue as
    branch*: ``explorer.resume(model, trace, step, remask=..., pin=...)`` runs from that step and
    the branch appears beside its parent on a shared slider.

    Programmatic use (and tests): ``iv.branch(step, remask=[3, 4])`` does the same and returns the
    branch trace. ``branch`` takes absolute positions (canvas indices); what the panel writes
    (selection, branch label, changes) uses the grid's numbering, counted from the first answer
    token of a prompted run. The edit goes to the sample shown in the parent's sample box.
    """

    def __init__(self, model, trace, sample: int = 0, step: int | None = None, length: int = 128,
                 columns: int = 16, seed: int | None = None):
        self.model = model
        self.trace = trace
        self.seed = seed if seed is None else as_int("seed", seed, 0)    # resume's own check, before any use
        self.columns = columns
        self.length = length
        step = last_resumable_step(trace) if step is None else step
        self.parent_view = TraceViewer(trace, sample=sample, step=step, length=length, columns=columns,
                                       label=_label(trace), curves=False, lifeline=False)
        self.selection: set[int] = set()
        self.mode = W.ToggleButtons(options=["remask", "pin"], value="remask", description="edit",
                                    tooltips=["put the selected tokens back to [MASK]",
                                              "freeze the selected tokens for the rest of the run"])
        self.go_button = W.Button(description="continue as branch", button_style="primary",
                                  icon="code-fork", layout=W.Layout(width="200px"))
        self.clear_button = W.Button(description="clear selection")
        self.status = W.HTML("<i>click tokens in the grid to select them</i>")
        self.go_button.on_click(lambda _: self._continue())
        self.clear_button.on_click(lambda _: self.select([]))
        grid = self.parent_view.grid  # a click here toggles the selection instead of a lifeline
        grid.on_click(self.parent_view._on_click, remove=True)
        grid.on_click(self._on_click)
        self.branches: list = []
        self.compare_box = W.VBox([])
        super().__init__([self.parent_view, W.HBox([self.mode, self.go_button, self.clear_button]),
                          self.status, self.compare_box])

    @property
    def sample(self) -> int:
        """The sample shown in the parent view (its sample box): the one edited and compared."""
        return self.parent_view.sample

    def name(self, position: int) -> str:
        """A position as the grid numbers it ("position 0" = first answer token when prompted)."""
        return position_name(position, self.parent_view.origin)

    def names(self, positions) -> str:
        """Positions in the grid's numbering: "[0, 1]", or "[prompt position -2]" before the answer."""
        origin = self.parent_view.origin
        return "[" + ", ".join(str(int(p) - origin) if int(p) >= origin else self.name(p)
                               for p in sorted(positions)) + "]"

    # -- selection ------------------------------------------------------------------------
    def _on_click(self, p: int) -> None:
        sel = set(self.selection)
        sel.symmetric_difference_update({p})
        self.select(sorted(sel))

    def select(self, positions) -> None:
        """Set the selected positions (drawn with a black outline)."""
        self.selection = {int(p) for p in positions}
        self.parent_view.grid.selected = sorted(self.selection)
        self.status.value = (f"selected positions: {self.names(self.selection)}" if self.selection
                             else "<i>click tokens in the grid to select them</i>")

    # -- branching ------------------------------------------------------------------------
    def _continue(self) -> None:
        sel = sorted(self.selection)
        try:
            kw = {self.mode.value: sel}
            self.branch(self.parent_view.step, **kw)
        except Exception as exc:  # shown to the user: a widget callback must not die silently
            self.status.value = f"<span style='color:#D55E00'>could not branch: {html.escape(str(exc))}</span>"

    def branch(self, step: int, remask=None, pin=None, seed: int | None = None):
        """Resume the parent from ``step`` with the edit (absolute positions of the sample shown),
        show the branch beside it, return it."""
        import explorer
        n, L = self.trace.num_samples, self.trace.seq_len
        sample = self.sample

        def rows(positions):
            if not positions:
                return None
            m = torch.zeros(n, L, dtype=torch.bool)
            m[sample, list(positions)] = True
            return m

        self.status.value = f"<i>running the branch from step {step} …</i>"
        branch = explorer.resume(self.model, self.trace, int(step), remask=rows(remask), pin=rows(pin),
                                 seed=self.seed if seed is None else seed, progress=False)
        self.branches.append(branch)
        edit = ", ".join(f"{k} {self.names(v)}" for k, v in (("remask", remask), ("pin", pin)) if v) or "no edit"
        edited = sorted(set(remask or []) | set(pin or []))
        self.compare = CompareViewer([self.trace, branch], labels=["parent", f"branch: {edit} at step {step}"],
                                     sample=sample, step=branch.last_step, length=self.length,
                                     columns=self.columns, start=self.window_for(edited))
        for v in self.compare.viewers:  # the edited cells keep their outline in both grids
            v.grid.selected = edited
        self.compare_box.children = [self.compare]
        a, b = self.trace.final[sample], branch.final[sample]
        diff = (a != b).nonzero().flatten().tolist()
        text = lambda t: html.escape(self.trace.token_text(int(t)))  # noqa: E731
        changes = ", ".join(f"{self.names([p])[1:-1]}: <code>{text(a[p])}</code> &rarr; <code>{text(b[p])}</code>" for p in diff[:20])
        more = f" and {len(diff) - 20} more" if len(diff) > 20 else ""
        self.status.value = (f"branch done (sample {sample}): {edit} at step {step}. The final text differs at "
                             f"{len(diff)} position(s){': ' + changes + more if diff else '.'}")
        return branch

    def window_for(self, positions) -> int:
        """The first position of a grid window that shows ``positions`` (the edited region):
        the parent's current window when it holds them all, else the row of the first one."""
        v = self.parent_view
        positions = sorted(int(p) for p in positions)
        if not positions or all(v.start <= p < v.start + v.length for p in positions):
            return v.start
        last_start = max(0, v.index.seq_len - v.length)
        return min(positions[0] // v.columns * v.columns, last_start)

    def to_html(self, path, title: str = "ReMDM Explorer: intervention", max_frames: int = 60):
        """Self-contained page: parent (and its latest branch, if any) on one slider with play."""
        traces = [self.trace] + self.branches[-1:]
        labels = ["parent"] + (["branch"] if self.branches else [])
        start = self.compare.start if self.branches else self.parent_view.start  # the edited region
        fig = grid_animation(traces, labels, self.sample, start, self.length, self.columns, max_frames=max_frames)
        return export.write_html(path, [fig], title=title)
