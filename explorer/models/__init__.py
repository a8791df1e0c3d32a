"""Models: the native MDLM DiT, the Hugging Face masked-LM adapter, and ``load_model``."""
from .denoiser import MDLMDenoiser
from .dit import MDLM, DITBackbone, MDLMConfig
from .hf_adapter import HFMaskedLMDenoiser
from .loading import load_model, shipped_models

__all__ = ["MDLM", "MDLMConfig", "DITBackbone", "MDLMDenoiser", "HFMaskedLMDenoiser", "load_model",
           "shipped_models"]
