"""Models: the native MDLM DiT, the Hugging Face masked-LM adapter, and ``load_model``."""
from .dit import MDLM, MDLMConfig, DITBackbone
from .denoiser import MDLMDenoiser

__all__ = ["MDLM", "MDLMConfig", "DITBackbone", "MDLMDenoiser"]
