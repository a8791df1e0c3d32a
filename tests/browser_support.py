"""What the real-browser tests (and ``scripts/screenshots.py``) share: Debian's chromium (never a
downloaded browser), its flags, where screenshots go, the marks that skip the tests where chromium
is not installed, a JupyterLab server on a copy of the notebooks, and "open a notebook and run it"."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

try:
    import pytest
except ImportError:  # scripts/screenshots.py runs without pytest
    pytest = None

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "build" / "browser"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium: apt-get install -y chromium"),
] if pytest is not None else []

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def offline_context(browser, width: int, height: int):
    """A browser context with the network off and every requested URL recorded:
    ``(context, requests)``; :func:`remote` of ``requests`` must stay empty."""
    context = browser.new_context(offline=True, viewport={"width": width, "height": height})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    return context, requests


def remote(requests: list[str]) -> list[str]:
    """The URLs a self-contained page should never have asked for (anything not local)."""
    return [u for u in requests if not u.startswith(LOCAL_SCHEMES)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(work: Path):
    """JupyterLab on a copy of notebooks/ in ``work`` (so autosave never rewrites the committed
    notebooks), no news toast, every cell rendered; yields ``(url, token)``, stops it after."""
    work = Path(work)
    shutil.copytree(ROOT / "notebooks", work / "notebooks",
                    ignore=shutil.ignore_patterns("build", ".ipynb_checkpoints"))
    # no "get notified about Jupyter news?" toast over the page (and no news fetch)
    settings = work / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    # render every cell (no virtual scrolling), so outputs far up the page stay in the DOM
    tracker = settings.parent / "notebook-extension"
    tracker.mkdir()
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=str(ROOT), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               JUPYTER_CONFIG_DIR=str(work / "config"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work / 'notebooks'}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--ServerApp.port_retries=0"],
        cwd=work / "notebooks", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("JupyterLab did not start:\n" + (work / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def write_notebook(work: Path, name: str, cells: list[str]) -> Path:
    """A notebook of code cells (with a kernelspec) in the lab's notebooks folder."""
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(work) / "notebooks" / name
    nbformat.write(nb, path)
    return path


KERNEL_IDLE = ("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
               " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
               " return k && k.status === 'idle'; }")


def open_and_run_all(page, url, token, name, before_run=None, wait: bool = True):
    """Open a notebook in Lab, wait for its kernel, run every cell, fail on a traceback.
    ``before_run(page)`` runs once the kernel is up, before the cells (e.g. to start watching);
    ``wait=False`` returns as soon as the cells were sent."""
    # a workspace of its own, reset: only this notebook open, whatever an earlier test left open
    page.goto(f"{url}/lab/workspaces/{Path(name).stem}/tree/{name}?token={token}&reset", timeout=90_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=90_000)
    # the kernel must be up before "run all", or the first cells race the kernel start
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    if before_run is not None:
        before_run(page)
    # not awaited: execute()'s promise settles only when the last cell has finished
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    if not wait:
        return
    # every code cell has run: no prompt left empty or busy
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];"
        " return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }", timeout=300_000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_text_contents() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks[:1]
