"""ReMDM Explorer: see and measure remasking in masked discrete diffusion language models."""
from __future__ import annotations

from . import samplers
from .engine import StepUpdate, StopGeneration, generate, resume
from .refine import refine
from .protocol import Denoiser, StubDenoiser
from .trace import Trace
from .trace_files import TraceFileError, TraceFileWarning, TraceSidecarMissing, Verification
from .trace_schema import RunRecord

__version__ = "0.1.0"


def load_model(*args, **kwargs):
    """Load a shipped name, a local directory or (with allow_download=True) a hub id; see explorer.models."""
    from .models.loading import load_model as _load
    return _load(*args, **kwargs)


# ``explorer.sweep`` is the function; importing the submodule of the same name first and then
# binding the function keeps a later ``import explorer.sweep`` from replacing it with the module.
from .sweep import sweep  # noqa: E402


__all__ = ["generate", "resume", "StepUpdate", "StopGeneration", "refine", "Trace", "RunRecord", "TraceFileError", "TraceFileWarning",
           "TraceSidecarMissing", "Verification", "samplers",
           "load_model", "sweep", "Denoiser", "StubDenoiser"]
