"""The samplers: each a small pure step unit that never calls the model.

Every sampler answers one question per step through the one step protocol
(:mod:`explorer.samplers.step`): given a read-only context, which decoded positions go back to
[MASK], which masked positions are written with which tokens, and why.  The engine
(:mod:`explorer.engine`) runs the loop, the model calls and the recording for all of them.

===================== ============================ =============================================
name                  class                        rule (reference)
===================== ============================ =============================================
``mdlm``              :class:`MDLM`                ancestral, never revisits (§1.4)
``remdm-cap``         :class:`ReMDMCap`            random remask, sigma = min(eta, bound) (§2.2)
``remdm-rescale``     :class:`ReMDMRescale`        random remask, sigma = eta * bound (§2.3)
``remdm-conf``        :class:`ReMDMConf`           random, weighted by decode-time confidence (§2.4)
``remdm-loop``        :class:`ReMDMLoop`           unmask, loop at constant alpha, finish (§2.5)
``remdm-refine``      :class:`ReMDMRefine`         §2.5's loop alone (:func:`explorer.refine`)
``remdm-switch``      :class:`ReMDMSwitch`         project page (switch schedule)
``forward-backward``  :class:`ForwardBackward`     §2.6
``dfm``               :class:`DFMCorrector`        §2.6
``confidence``        :class:`ConfidenceOrdered`   MaskGIT / LLaDA ordering baseline
``llada``             :class:`LLaDALowConfidence`  LLaDA's semi-AR low-confidence sampler (llada-dream §4.1)
``remdm-llada``       :class:`ReMDMLLaDA`          the Table-3 sampler (llada-dream §4.3)
``dream``             :class:`DreamSampler`        Dream's diffusion_generate (llada-dream §4.2)
``rescore``           :class:`Rescore`             draft, then re-score and rewrite the worst of each window
``p2``                :class:`P2`                  path planning, the model as its own planner
``rcr``               :class:`RCR`                 running confidence remasking (MDPO)
``wino``              :class:`WINO`                draft wide, verify narrow
``fire``              :class:`FiRe`                fill, then refine (Tolerator)
``saber``             :class:`Saber`               adaptive acceleration + backtracking
``llada21-swap``      :class:`TokenSwap`           LLaDA 2.1 token editing (needs a model trained for it)
===================== ============================ =============================================

Adding a strategy
-----------------
A new rule is one file here plus its registry line below; the engine does not change.

1. Write ``explorer/samplers/mine.py`` with a dataclass ``Mine(Sampler)``: its fields are its
   settings (they serialize as ``.config``), ``name = "mine"``, ``remasks = True`` if it may take
   tokens back, and ``validate()`` raising a ``ValueError`` that names the fix for a bad setting.
   Declare a threshold or a share in (0, 1) with ``settings.open_unit(default, what)`` (checked
   for you; ``what`` ends its error and is the chat panel's tooltip), and a setting that takes one
   of a few words with ``settings.choice`` (a list in the chat panel; ``validate()`` says what
   each word means).
2. ``grid(steps)`` lists its steps (default: the linear grid of §1.3); ``expected_calls(steps, L)``
   bounds its model calls per sequence if it spends more than one per step (re-scoring passes): the
   strategy lab (:mod:`explorer.studies.strategies`) gives every strategy the same budget with it.
3. ``step(ctx)`` returns a :class:`~explorer.samplers.step.Decision`.  Ask the context for what you
   need: ``ctx.uniforms(purpose)`` for coins, ``self.draw_at(ctx, b, pos)`` for tokens drawn from
   p(x0) at the rows you write (``ctx.draw(b, pos, fn)`` for anything else at those rows),
   ``ctx.rescore(ask, groups)`` for the model's opinion of decoded tokens (never the raw logits at
   a decoded position: MDLM and LLaDA are trained only where the input is masked).
   Take back only ``self.remaskable_in(ctx, window)`` (decoded, not prompt, allowed by
   ``remaskable``); give each remask its score (``remask_score``) and reason.
4. Add it to ``REGISTRY`` below; test its rule on a model whose right answer is known
   (``tests/test_strategy_rules.py``, ``tests/test_strategies.py``).

``Rescore`` (:mod:`explorer.samplers.rescore`) is a short example of a draft plus correction
rounds; :class:`~explorer.samplers.base.Sampler.step` of the rates family and
:class:`~explorer.samplers.ranked.RankedSampler.step` of the LLaDA family are the other two shapes.
Shared pieces to build on rather than copy: :class:`~explorer.samplers.draft.DraftThenCorrect`
(a draft sampler's steps, then your ``correct(ctx, k)`` rounds), the block schedules of
:mod:`explorer.samplers.blocks` (``FixedBlocks`` as LLaDA: ``self.block(ctx)`` is the step's block;
``AdaptiveBlocks`` as WINO / Saber: your ``block_step(ctx, blocks)`` gets the masked positions of
each row's current block; both declare ``block_length`` and ``temperature``),
:class:`~explorer.samplers.remdm_eta.ReMDMEta` (a ReMDM variant is its ``sigma_t``), the setting
checks of :mod:`explorer.samplers.settings`, and the SUBS / nucleus / float64 draws of
:mod:`explorer.samplers.categorical`.
"""
from __future__ import annotations

from .base import MAX_STEPS, Rates, Sampler, SamplerState, StepTimes, linear_grid, sigma_max
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
REGISTRY.update({cls.name: cls for cls in (Rescore, P2, RCR, WINO, FiRe, Saber, TokenSwap)})


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


__all__ = ["MAX_STEPS", "Sampler", "SamplerState", "StepTimes", "Rates", "linear_grid", "sigma_max", "by_name",
           "from_config", "REGISTRY", "MDLM", "ReMDMCap", "ReMDMRescale", "ReMDMConf", "ReMDMLoop",
           "ReMDMSwitch", "ReMDMRefine", "ForwardBackward", "DFMCorrector", "ConfidenceOrdered"]
__all__ += ["LLaDALowConfidence", "ReMDMLLaDA", "DreamSampler", "Rescore"]
__all__ += ["P2", "RCR", "WINO", "FiRe", "Saber", "TokenSwap"]
