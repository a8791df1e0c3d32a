"""Models: the native MDLM DiT, native LLaDA and Dream, the Hugging Face masked-LM adapter, and ``load_model``."""
from .denoiser import DiffusionLMDenoiser, MDLMDenoiser
from .dit import MDLM, DITBackbone, MDLMConfig
from .dream import DreamConfig, DreamModel
from .hf_adapter import HFMaskedLMDenoiser
from .llada import LLaDAConfig, LLaDAModelLM
from .loading import load_model, shipped_models
from .random_checkpoint import write_random_checkpoint

__all__ = ["MDLM", "MDLMConfig", "DITBackbone", "MDLMDenoiser", "HFMaskedLMDenoiser", "load_model",
           "shipped_models", "LLaDAConfig", "LLaDAModelLM", "DreamConfig", "DreamModel", "DiffusionLMDenoiser",
           "write_random_checkpoint"]
