"""Models, one file per role:

* each family's math: ``dit.py`` (MDLM DiT), ``llada.py``, ``dream.py``, ``hf_adapter.py`` (any
  Hugging Face masked LM);
* what they share: ``layers.py`` (norms, rotary embedding), ``checkpoint.py`` (config.json,
  safetensors, strict checks, the weights sha256);
* ``denoiser.py``: the native networks behind the denoiser protocol;
* ``loading.py``: ``load_model`` from a name or a path; ``registry.py``: built-in models without
  weights (``orders-oracle``); ``random_checkpoint.py``: tiny LLaDA / Dream checkpoints for tests.
"""
from .checkpoint import model_sha256, weights_sha256
from .denoiser import DiffusionLMDenoiser, MDLMDenoiser
from .dit import MDLM, DITBackbone, MDLMConfig
from .dream import DreamConfig, DreamModel
from .hf_adapter import HFMaskedLMDenoiser
from .llada import LLaDAConfig, LLaDAModelLM
from .loading import known_models, load_model, shipped_models
from .random_checkpoint import write_random_checkpoint
from .registry import BUILTIN_MODELS

__all__ = ["MDLM", "MDLMConfig", "DITBackbone", "MDLMDenoiser", "HFMaskedLMDenoiser", "load_model",
           "shipped_models", "known_models", "BUILTIN_MODELS", "LLaDAConfig", "LLaDAModelLM", "DreamConfig",
           "DreamModel", "DiffusionLMDenoiser", "write_random_checkpoint", "weights_sha256", "model_sha256"]
