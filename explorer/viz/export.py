"""Self-contained HTML pages: plotly.js embedded, no CDN, readable without a kernel or network."""
from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go

from ..io import write_text_atomic  # noqa: F401  (re-exported: viz.export.write_text_atomic)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.3em; }} .note {{ color: #555; font-size: 0.9em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} th, td {{ padding: 2px 10px; border: none;
  border-bottom: 1px solid #ddd; text-align: right; }} th {{ background: #f4f4f4; }}
.row {{ display: flex; flex-wrap: wrap; gap: 1em; }} .row > div {{ flex: 1 1 480px; min-width: 0; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
<script>
// figures drawn before their side-by-side neighbours existed were sized too wide: refit them all
window.addEventListener("load", function () {{
  if (window.Plotly) document.querySelectorAll(".js-plotly-plot").forEach(function (p) {{ Plotly.Plots.resize(p); }});
}});
</script>
</body>
</html>
"""


class HTMLView(str):
    """An HTML string that renders itself in notebooks (``_repr_html_``) and can be saved."""

    def _repr_html_(self):
        return str(self)

    def to_html(self, path, title: str = "ReMDM Explorer") -> Path:
        return write_html(path, [self], title=title)


def figure_div(fig: go.Figure, include_plotlyjs: bool, div_id: str | None = None) -> str:
    # auto_play=False: a saved page opens on its first frame and waits for the reader
    return fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs, div_id=div_id, auto_play=False,
                       config={"displaylogo": False, "responsive": True})


def page_html(parts, title: str = "ReMDM Explorer") -> str:
    """A full page from figures and HTML snippets. plotly.js (~4.5 MB) is embedded once, inline.

    ``parts`` items: a plotly figure, an HTML string, or a list/tuple of those to lay side by side.
    """
    if isinstance(parts, (go.Figure, str)):
        parts = [parts]
    state = {"js": True}

    def render(item) -> str:
        if isinstance(item, (list, tuple)):
            return '<div class="row">' + "".join(f"<div>{render(x)}</div>" for x in item) + "</div>"
        if isinstance(item, go.Figure):
            out = figure_div(item, include_plotlyjs=state["js"])
            state["js"] = False
            return out
        if hasattr(item, "_repr_html_") and not isinstance(item, str):
            return item._repr_html_()
        return str(item)

    body = "\n".join(render(p) for p in parts)
    return _PAGE.format(title=html.escape(title), body=body)




def write_html(path, parts, title: str = "ReMDM Explorer") -> Path:
    """Write a self-contained page (see :func:`page_html`) atomically, creating missing parent folders;
    returns the path."""
    return write_text_atomic(path, page_html(parts, title=title))


def to_html(obj, path, title: str = "ReMDM Explorer") -> Path:
    """Save a figure, an HTML view, a widget (anything with ``to_html``) or a list of them; missing
    parent folders of ``path`` are created."""
    if hasattr(obj, "to_html") and not isinstance(obj, (go.Figure, str)):
        return obj.to_html(path)
    return write_html(path, obj, title=title)


class Report(list):
    """A list of HTML snippets and figures that displays as one block in a notebook and saves as
    one self-contained page (``report.to_html(path)``)."""

    def __init__(self, parts, title: str = "ReMDM Explorer"):
        super().__init__(parts)
        self.title = title

    def _ipython_display_(self):
        from IPython.display import HTML, display
        for part in self:
            if isinstance(part, (list, tuple)):
                for p in part:
                    display(p)
            elif isinstance(part, str) and not hasattr(part, "_repr_html_"):
                display(HTML(part))
            else:
                display(part)

    def to_html(self, path, title: str | None = None) -> Path:
        return write_html(path, list(self), title=title or self.title)
