"""LLaDA's low-confidence sampler (reference §4.1) and ReMDM-LLaDA, the sampler of Table 3 (§4.3).

Both decode the generated part in semi-autoregressive blocks of ``block_length`` tokens, left to
right; nothing is decoded beyond the current block.  The shared shape (plan, draw, select) is in
:mod:`explorer.samplers.ranked`; the engine runs the loop.

Deliberate choices where upstream has a quirk (§4.5, §4.1) -- each is tested in
``tests/test_llada_sampling.py``:

* **the mask token is never drawn.**  Upstream draws from the softmax over the full vocabulary,
  mask id included (§4.5 item 6), and a drawn mask id silently stays masked.  Here its weight is
  zero in the draw (as the engine's SUBS rule everywhere else); the confidence is still the
  upstream p[x0] with the full-vocabulary normaliser.  With a trained LLaDA p(mask) is ~0, so the
  samples are the same in practice, and every decode now decodes something.
* **batches are per row** (§4.5 item 2): every row ranks, remasks and decodes on its own, and its
  random numbers depend only on (seed, sample index), so a row is the same alone or in a batch.
* **no early stop at EOS** (§4.5 item 4): upstream returns after a block whose row holds EOS
  anywhere (prompt included).  Later blocks never change earlier ones (the remasking pool is the
  current block), so the text up to the first EOS / end-of-turn -- what ``trace.texts`` shows --
  is the same; only the compute differs: every sample here costs the full, fixed number of model
  calls (64 at the Table-3 setting), which is what Table 3's runs cost with one block.
* **model calls**: upstream calls the model at every iteration; here a step with nothing to
  decode (more steps in a block than tokens) leaves the canvas unchanged and the next step is
  answered from the engine's cache (§1.7 of the ReMDM notes), so such runs cost fewer calls than
  ``expected_calls`` (upstream's count, an upper bound) with the same tokens.
* **on a fixed-length model** (orders, stories) there is no separate prompt: a prompt is fixed
  tokens at the start of the canvas, and the blocks span the whole canvas from position 0, so a
  block holding prompt tokens decodes fewer (a block of prompt only, none).  On a prompted model
  (LLaDA, Dream) the blocks start after the prompt, as upstream's.
* LLaDA's optional end-of-text switches (off by default upstream) are settings of
  :class:`LLaDALowConfidence`: ``logits_eos_inf`` (§4.1 item 2: EOS can never be drawn) and
  ``confidence_eos_eot_inf`` with upstream's quirk L98 kept -- only the end-of-turn change reaches
  the confidence, so a drawn end-of-turn token has confidence 0 while EOS keeps its own.  The ids
  are LLaDA's published ones (``eos_id=126081``, ``eot_id=126348``); set them for another vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import rng
from . import ranked
from .base import StepTimes, _check_unit, linear_grid
from .ranked import RankedSampler, StepPlan
from .settings import check_positive_int, check_temperature, choice

REMASKING = ("low_confidence", "random")        # which masked draws a step decodes
CONFIDENCE_DTYPES = ("logits", "float64")       # the dtype of the softmax that ranks them


def _check_nucleus(sampler) -> None:
    if sampler.nucleus_p != 1.0:
        raise ValueError(f"{sampler.name} draws from the full softmax as upstream; nucleus_p must stay 1.0 "
                         "(use DreamSampler(top_p=...) for a nucleus).")


@dataclass
class LLaDALowConfidence(RankedSampler):
    """LLaDA ``generate`` (§4.1): per block, ``get_num_transfer_tokens`` tokens per step, the most
    confident first.

    * Step counts: a block with M masked tokens and s steps decodes floor(M / s) tokens per step
      and one more in the first M mod s steps.  Counted as ceil(masked left / steps left), which is
      the same sequence (M = qs + r: the first step takes q + 1 while r > 0, leaving the same
      problem with s - 1 steps and r - 1).
    * Draw: float64 Gumbel noise at ``temperature``: x0 = argmax exp(l) / (-log U)^T; T = 0 is
      greedy, T = 1 an exact draw from softmax(l).
    * Confidence (``remasking="low_confidence"``): p[x0] of softmax(l) in the logits' own dtype
      (bf16 on a GPU, as upstream, §4.1 item 4); ``"random"``: a uniform number.
      ``confidence_dtype="float64"`` takes the softmax in float64 instead, as the Table-3 baseline
      ``llada_conf_sample`` does (§4.3): with one token per step (``gen_length == steps``) and
      ``temperature=1`` this sampler is then that baseline (bf16 probabilities tie often; float64
      ones do not, so the two rankings differ on a GPU).
    * ``cfg_scale > 0``: a second forward pass with every prompt position masked;
      l = l_uncond + (cfg_scale + 1)(l_cond - l_uncond) (§4.1 item 1).  Each step then costs two calls.
    * ``logits_eos_inf``: l[eos_id] = -inf before the draw and the confidence (§4.1 item 2);
      ``confidence_eos_eot_inf``: after the draw, l[eot_id] = -inf for the confidence only
      (upstream also clears EOS in the noisy logits, which no longer matters then: quirk L98).
    """
    block_length: int | None = None
    temperature: float = 0.0
    cfg_scale: float = 0.0
    remasking: str = choice("low_confidence", REMASKING)
    confidence_dtype: str = choice("logits", CONFIDENCE_DTYPES)
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False
    eos_id: int = 126081
    eot_id: int = 126348
    name = "llada"

    def validate(self):
        ranked.check_block_length(self.block_length)
        check_temperature(self.temperature)
        _check_unit("cfg_scale", self.cfg_scale, high=math.inf)
        if self.remasking not in REMASKING:
            raise ValueError(f"remasking must be 'low_confidence' (decode the most confident draws) or 'random' "
                             f"(decode random positions), got {self.remasking!r}.")
        if self.confidence_dtype not in CONFIDENCE_DTYPES:
            raise ValueError(f"confidence_dtype must be 'logits' (LLaDA generate.py) or 'float64' (the Table-3 "
                             f"baseline llada_conf_sample), got {self.confidence_dtype!r}.")
        for k in ("logits_eos_inf", "confidence_eos_eot_inf"):
            if not isinstance(getattr(self, k), bool):
                raise ValueError(f"{k} must be True or False, got {getattr(self, k)!r}.")
        check_positive_int("eos_id", self.eos_id, allow_zero=True)
        check_positive_int("eot_id", self.eot_id, allow_zero=True)
        _check_nucleus(self)

    def check_shape(self, gen_length: int, steps: int) -> None:
        ranked.check_blocks(self.name, self.block_length, gen_length, steps)

    def steps_per_block(self, gen_length: int, steps: int) -> int:
        return steps // ranked.check_blocks(self.name, self.block_length, gen_length, steps)

    def grid(self, steps: int) -> list[StepTimes]:
        return [StepTimes(i, t, s, 1.0 - t, 1.0 - s, "llada") for i, t, s in linear_grid(steps)]

    def plan(self, st, masked, gen_start, gen_length, steps) -> StepPlan:
        per_block = self.steps_per_block(gen_length, steps)
        start, end, i = ranked.block_plan(st.step, steps, gen_start, gen_length, self.block_length, per_block)
        left = per_block - i
        n_masked = masked[:, start:end].sum(-1)
        return StepPlan(start, end, torch.div(n_masked + left - 1, left, rounding_mode="floor"))

    def _token_id(self, key: str, width: int) -> int:
        i = getattr(self, key)
        if i >= width:
            raise ValueError(f"{key}={i} is outside this model's {width} logits; LLaDA's ids are the defaults, "
                             f"set {key}= to the model's own id (e.g. model.{key}).")
        return i

    def draw(self, logits, mask_id, uniforms):
        u = uniforms.race(logits.shape[-1]) if self.temperature > 0 else None
        if self.logits_eos_inf:                  # §4.1 item 2: before the draw and the confidence
            logits = logits.clone()
            logits[:, self._token_id("eos_id", logits.shape[-1])] = -torch.inf
        noisy = logits.to(torch.float64, copy=True)
        noisy[:, mask_id] = -torch.inf
        token = ranked.gumbel_argmax(noisy, u, self.temperature)
        if self.remasking == "random":
            return token, uniforms.one(rng.RANK)
        if self.confidence_eos_eot_inf:          # quirk L98: only the end-of-turn change reaches p
            logits = logits.clone()
            logits[:, self._token_id("eot_id", logits.shape[-1])] = -torch.inf
        p = torch.softmax(logits if self.confidence_dtype == "logits" else logits.double(), dim=-1)
        return token, p.gather(-1, token[:, None]).squeeze(-1).double()


@dataclass
class ReMDMLLaDA(RankedSampler):
    """ReMDM-LLaDA (``llada_remdm_sample``, §4.3): the sampler behind Table 3.

    Per block, with s = steps per block and k = block_length / s tokens per plain step, it runs
    2s iterations (so 2s model calls per block, 64 at the Table-3 setting of 32 tokens, 32 steps,
    block 32):

    * iterations i < R and i >= R + s decode the k most confident masked tokens of the block;
    * in the window R <= i < R + s, each iteration first remasks the ``remdm_number`` tokens of the
      block with the lowest confidence cached when they were decoded, then decodes the
      ``remdm_number`` most confident masked tokens of the block -- not necessarily the ones just
      remasked; never-decoded positions compete too.

    x0 is an exact draw at temperature 1 from the float64 softmax (the exponential race of
    ``_sample_categorical``) and its confidence is p[x0] (float64), cached until the token is
    remasked; the trace's ``prob`` holds it, and a remask event carries the cached value.

    Choices where upstream has a quirk (§4.5):

    * **window start** (item 1): upstream computes R = int(block_length / 8 * 7) and compares it
      with the *iteration* index, right only when s == block_length (Table 3: R = 28).  Here
      R = int(s / 8 * 7), i.e. R scales with the steps per block: the same 28 at the Table-3
      setting, and the window always opens after 7/8 of the block's plain steps.
    * **candidate pool** (item 3): only tokens decoded in the current block (the confidence cache
      is reset per block; prompt and earlier blocks are never remasked).  ``remdm_number`` may not
      exceed the R * k tokens decoded before the window opens, so the pool is never short.
    * batches per row, no mask draws, no EOS early stop: see the module docstring.
    """
    remdm_number: int = 1
    block_length: int | None = None
    name = "remdm-llada"
    remasks = True
    ranks_written_confidence = True     # a token with unknown confidence is left out of the remask pool

    def validate(self):
        ranked.check_block_length(self.block_length)
        if isinstance(self.remdm_number, bool) or not isinstance(self.remdm_number, int) or self.remdm_number < 1:
            raise ValueError(f"remdm_number must be a positive integer (tokens remasked per window iteration; "
                             f"the paper uses 1 for Countdown, 4 for TruthfulQA), got {self.remdm_number!r}.")
        _check_nucleus(self)

    def window(self, steps_per_block: int) -> tuple[int, int]:
        """[R, R + s): the remasking iterations of a block (R = int(s / 8 * 7), see the docstring)."""
        r = int(steps_per_block / 8 * 7)
        return r, r + steps_per_block

    def check_shape(self, gen_length: int, steps: int) -> None:
        blocks = ranked.check_blocks(self.name, self.block_length, gen_length, steps)
        bl, s = gen_length // blocks, steps // blocks
        if bl % s:
            raise ValueError(f"{self.name}: block_length={bl} is not a multiple of the steps per block ({s}); "
                             f"each plain step decodes block_length / steps_per_block tokens (§4.3), so use "
                             f"steps={blocks * bl} or another divisor of the block length times {blocks}.")
        r, _ = self.window(s)
        pool = r * (bl // s)
        if self.remdm_number > pool:
            raise ValueError(f"{self.name}: remdm_number={self.remdm_number} is too large for the window: only "
                             f"{pool} tokens of a block are decoded before it opens (R = int(7/8 * {s} steps "
                             f"per block) = {r} steps of {bl // s}); use remdm_number <= {pool}"
                             + (" or more steps per block." if pool == 0 or s < bl else "."))

    def grid(self, steps: int) -> list[StepTimes]:
        # the window needs the steps per block, which the grid cannot know: the engine labels the
        # steps whose plan remasks as phase "remask"
        return [StepTimes(i, t, s, 1.0 - t, 1.0 - s, "decode") for i, t, s in linear_grid(2 * steps)]

    def plan(self, st, masked, gen_start, gen_length, steps) -> StepPlan:
        blocks = gen_length // (gen_length if self.block_length is None else self.block_length)
        s = steps // blocks
        start, end, i = ranked.block_plan(st.step, steps, gen_start, gen_length, self.block_length, 2 * s)
        r, r_end = self.window(s)
        n_masked = masked[:, start:end].sum(-1)
        if r <= i < r_end:
            return StepPlan(start, end, torch.full_like(n_masked, self.remdm_number), self.remdm_number)
        k = (end - start) // s
        return StepPlan(start, end, torch.clamp(n_masked, max=k))

    def draw(self, logits, mask_id, uniforms):
        p = torch.softmax(logits.double(), dim=-1)   # full vocabulary, float64 (§4.3)
        w = p.clone()
        w[:, mask_id] = 0.0
        token = ranked.exponential_race(w, uniforms.race(logits.shape[-1]))
        return token, p.gather(-1, token[:, None]).squeeze(-1)
