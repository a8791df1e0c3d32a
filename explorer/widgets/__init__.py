"""Widgets (ipywidgets 8, an anywidget token grid, plotly) composing the figures of :mod:`explorer.viz`.

Each is an ``ipywidgets.VBox`` (display it by leaving it last in a cell) with a static fallback
``to_html(path)`` that writes a self-contained page working without a kernel or network.

* :class:`TraceViewer` -- step scrubber with play/pause and speed, hover, click for lifelines;
* :class:`CompareViewer` -- several traces (e.g. MDLM vs ReMDM, same seed) on one slider;
* :class:`InterventionViewer` -- remask or pin tokens at a step and continue as a branch;
* :class:`SweepExplorer` -- quality vs steps and return on compute of a sweep;
* :class:`LiveViewer` -- watch a run while it generates (Stop keeps the partial trace), then scrub it;
* :class:`ChatPanel` -- prompt, sampler and settings, the answer written live, two samplers side by side;
* :class:`TokenGridWidget` -- the grid itself, an anywidget drawn from its synced state alone,
  so a page reloaded while the kernel runs shows what the kernel holds.
"""
from __future__ import annotations

from .chat import ChatPanel
from .compare import CompareViewer
from .intervene import InterventionViewer
from .live import LiveViewer
from .notebook import gpu_checkpoint_ready, notebook_model
from .scrubber import TraceViewer
from .sweep_explorer import SweepExplorer
from .token_grid import TokenGridWidget

__all__ = ["TraceViewer", "CompareViewer", "InterventionViewer", "SweepExplorer", "TokenGridWidget",
           "LiveViewer", "ChatPanel", "notebook_model", "gpu_checkpoint_ready"]
