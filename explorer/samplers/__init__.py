"""The samplers: each a small unit that never calls the model.

=================== ========================== ==========================================
name                class                      reference
=================== ========================== ==========================================
``mdlm``            :class:`MDLM`              §1.4
``remdm-cap``       :class:`ReMDMCap`          §2.2
``remdm-rescale``   :class:`ReMDMRescale`      §2.3
``remdm-conf``      :class:`ReMDMConf`         §2.4
``remdm-loop``      :class:`ReMDMLoop`         §2.5
``remdm-refine``    :class:`ReMDMRefine`       §2.5's loop phase alone (:func:`explorer.refine`)
``remdm-switch``    :class:`ReMDMSwitch`       project page (switch schedule)
``forward-backward````ForwardBackward``        §2.6
``dfm``             :class:`DFMCorrector`      §2.6
``confidence``      :class:`ConfidenceOrdered` MaskGIT / LLaDA ordering baseline
``llada``           :class:`LLaDALowConfidence` LLaDA's semi-AR low-confidence sampler, llada-dream §4.1
``remdm-llada``     :class:`ReMDMLLaDA`        the Table-3 sampler, llada-dream §4.3
``dream``           :class:`DreamSampler`      Dream's diffusion_generate, llada-dream §4.2
=================== ========================== ==========================================
"""
from __future__ import annotations

from .base import Rates, Sampler, SamplerState, StepTimes, linear_grid, sigma_max
from .confidence import ConfidenceOrdered
from .dream import DreamSampler
from .llada import LLaDALowConfidence, ReMDMLLaDA
from .dfm import DFMCorrector
from .forward_backward import ForwardBackward
from .mdlm import MDLM
from .remdm_cap import ReMDMCap
from .remdm_conf import ReMDMConf
from .remdm_loop import ReMDMLoop
from .remdm_rescale import ReMDMRescale
from .remdm_switch import ReMDMSwitch
from .refine import ReMDMRefine
from .rescore import Rescore
from .p2 import P2
from .rcr import RCR
from .wino import WINO
from .fire import FiRe
from .saber import Saber
from .swap import TokenSwap

REGISTRY: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (MDLM, ReMDMCap, ReMDMRescale, ReMDMConf, ReMDMLoop, ReMDMSwitch, ReMDMRefine,
                              ForwardBackward, DFMCorrector, ConfidenceOrdered)
}
# the ranked samplers of LLaDA / Dream (explorer.samplers.ranked), for prompted variable-length models
REGISTRY.update({cls.name: cls for cls in (LLaDALowConfidence, ReMDMLLaDA, DreamSampler)})
# strategies that choose which decoded tokens to remask (``explorer.studies.strategies`` compares them)
REGISTRY.update({cls.name: cls for cls in (Rescore,)})
REGISTRY.update({cls.name: cls for cls in (P2, RCR, WINO, FiRe, Saber, TokenSwap)})


def by_name(name: str, **settings) -> Sampler:
    """Build a sampler from its CLI name, e.g. ``by_name("remdm-loop", eta=0.02)``."""
    key = name.strip().lower().replace("_", "-")
    if key not in REGISTRY:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(REGISTRY)}.")
    try:
        return REGISTRY[key](**settings)
    except TypeError as e:
        raise ValueError(f"bad settings for {key}: {e}") from None


def from_config(config: dict) -> Sampler:
    """Rebuild a sampler from its ``.config`` dict (e.g. read back from a trace's metadata)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("a sampler config is a dict with a 'name' key, as written by sampler.config.")
    cfg = dict(config)
    name = cfg.pop("name")
    if isinstance(cfg.get("remaskable"), dict):
        raise ValueError("this sampler used a remaskable *function*, which cannot be rebuilt from JSON; "
                         "pass remaskable=... again when you rebuild it.")
    return by_name(name, **cfg)


__all__ = ["Sampler", "SamplerState", "StepTimes", "Rates", "linear_grid", "sigma_max", "by_name",
           "from_config", "REGISTRY", "MDLM", "ReMDMCap", "ReMDMRescale", "ReMDMConf", "ReMDMLoop",
           "ReMDMSwitch", "ReMDMRefine", "ForwardBackward", "DFMCorrector", "ConfidenceOrdered"]
__all__ += ["LLaDALowConfidence", "ReMDMLLaDA", "DreamSampler", "Rescore"]
__all__ += ["P2", "RCR", "WINO", "FiRe", "Saber", "TokenSwap"]
