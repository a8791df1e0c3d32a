"""What every sampler shares: settings that serialize, the time grid, and -- for the ReMDM family --
the step's rates.

A sampler never calls the model (diffusers-scheduler style): ``step(ctx)`` returns a
:class:`~explorer.samplers.step.Decision` (the one step protocol, :mod:`explorer.samplers.step`).
The samplers of the ReMDM family (MDLM, ReMDM-*, forward-backward, DFM) answer it through one
question, :meth:`Sampler.rates`: *with what probability does each position change?*

* a masked position unmasks with probability ``unmask`` and then draws its token from p(x0)
  (post-nucleus);
* an unmasked position is put back to [MASK] with probability ``remask`` (sigma_t) and
  otherwise keeps its token (carry-over, reference §1.2 and §2.1).

This is exactly the posterior of reference §2.1: the single categorical draw of upstream over
``V + 1`` classes (tokens and mask) has the same law as "decide unmask, then draw the token",
because the token weights are ``unmask * p(x0)`` and the mask weight is ``1 - unmask``.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Union

import torch

from .. import rng
from .categorical import draw_tokens
from .step import POSTERIOR, Decision, Write

EPS_S = 1e-5  # the sampler's final time, reference §1.3

Remaskable = Union[None, torch.Tensor, Callable[["SamplerState"], torch.Tensor]]


@dataclass(frozen=True)
class StepTimes:
    """One step of the time grid: from time ``t`` to time ``s < t``.

    ``alpha_t`` / ``alpha_s`` are the schedule the sampler uses at this step (1 - t on the plain
    linear grid of §1.3; re-mapped in ReMDM-loop's phases, §2.5).
    """
    step: int          # 1-based
    t: float
    s: float
    alpha_t: float
    alpha_s: float
    phase: str = "mdlm"


@dataclass
class SamplerState:
    """What a sampler may look at (read only) when it sets a step's rates."""
    x: torch.Tensor            # LongTensor[B, L], current tokens (mask id where masked)
    masked: torch.Tensor       # BoolTensor[B, L]
    token_prob: torch.Tensor   # FloatTensor[B, L]: p(x0) of each token when it was decoded; nan if masked
    fixed: torch.Tensor        # BoolTensor[B, L]: prompt / pinned positions, never changed
    step: StepTimes | None = None


@dataclass
class Rates:
    """Per-step probabilities; each a Python float (same for all positions) or a [B, L] tensor."""
    unmask: float | torch.Tensor
    remask: float | torch.Tensor
    sigma: float            # the step's sigma_t for the record (nan where it has no meaning)


def _at(v, b: torch.Tensor, pos: torch.Tensor):
    """``v[b, pos]`` for a [B, L] tensor; a number stays a number."""
    return v[b, pos] if isinstance(v, torch.Tensor) and v.dim() == 2 else float(v)


def linear_grid(steps: int, eps: float = EPS_S) -> list[tuple[int, float, float]]:
    """The upstream grid (§1.3): t_i = linspace(1, eps, T+1)[i] in float32, s = t - (1 - eps)/T."""
    check_steps(steps)
    ts = torch.linspace(1.0, eps, steps + 1, dtype=torch.float32).double().tolist()
    dt = (1.0 - eps) / steps
    return [(i + 1, ts[i], ts[i] - dt) for i in range(steps)]


def as_int(name: str, value: Any, low: int = 1, must: str = "") -> int:
    """``value`` as a Python int: any integral number >= ``low`` (numpy's integers too, as a sweep
    table gives them), never a bool; else a ValueError saying what ``name`` must be."""
    try:
        n = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        n = None
    if n is None or n < low:
        must = must or ("a positive integer" if low == 1 else f"an integer >= {low}")
        raise ValueError(f"{name} must be {must}, got {value!r}.")
    return n


#: The most sampling steps a run accepts: far above any use (the paper's largest T is 4096), and low
#: enough that the time grid of a mistyped T is refused instead of filling the memory.
MAX_STEPS = 1_000_000


def check_steps(steps: Any) -> int:
    """``steps`` as a Python int (see :func:`as_int`), at most :data:`MAX_STEPS`."""
    steps = as_int("steps", steps)
    if steps > MAX_STEPS:
        raise ValueError(f"steps={steps:,} is above the limit of {MAX_STEPS:,} steps (the paper's largest T is "
                         "4096); give fewer steps.")
    return steps


def mdlm_unmask(alpha_t: float, alpha_s: float) -> float:
    """Probability that a masked token unmasks in an MDLM step: (alpha_s - alpha_t) / (1 - alpha_t)."""
    return min(1.0, max(0.0, (alpha_s - alpha_t) / (1.0 - alpha_t)))


def remdm_unmask(alpha_t: float, alpha_s: float, sigma):
    """Unmask probability of a masked token under ReMDM (§2.1): [alpha_s - (1 - sigma) alpha_t] / (1 - alpha_t).

    Clamped to [0, 1]: where sigma leaves the validity bound the upstream mask weight is negative
    and its argmax never picks the mask (§2.6), which is the same as probability 1.
    """
    u = (alpha_s - (1.0 - sigma) * alpha_t) / (1.0 - alpha_t)
    if isinstance(u, torch.Tensor):
        return u.clamp(0.0, 1.0)
    return min(1.0, max(0.0, u))


def mdlm_rates(st: StepTimes) -> Rates:
    """The MDLM step (§1.4): masked tokens unmask with (alpha_s - alpha_t) / (1 - alpha_t), none is remasked."""
    return Rates(unmask=mdlm_unmask(st.alpha_t, st.alpha_s), remask=0.0, sigma=0.0)


def remdm_rates(st: StepTimes, sigma: float) -> Rates:
    """The ReMDM step (§2.1) at sigma_t = ``sigma``: a decoded token is remasked with probability
    sigma, a masked one unmasks with :func:`remdm_unmask`."""
    return Rates(unmask=remdm_unmask(st.alpha_t, st.alpha_s, sigma), remask=sigma, sigma=sigma)


def sigma_max(alpha_t: float, alpha_s: float) -> float:
    """The validity bound min{1, (1 - alpha_s) / alpha_t} (§2.1); 1 at the first step where alpha_t = 0."""
    if alpha_t <= 0.0:
        return 1.0
    return min(1.0, (1.0 - alpha_s) / alpha_t)


def _check_unit(name: str, value: float, low_open=False, high=1.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    if value < 0 or (low_open and value == 0) or value > high:
        lo = "(0" if low_open else "[0"
        raise ValueError(f"{name}={value} is outside {lo}, {high}].")


def check_open_unit(name: str, v, what: str) -> None:
    """A number in the open interval (0, 1), e.g. a probability threshold; ``what`` says what it is."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise ValueError(f"{name} must be a number in (0, 1), got {v!r}: {what}")
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name}={v} must be in (0, 1): {what}")


@dataclass
class Sampler:
    """Base class. Subclasses are dataclasses whose fields are their settings."""
    nucleus_p: float = dataclasses.field(default=1.0, kw_only=True)
    remaskable: Remaskable = dataclasses.field(default=None, repr=False, kw_only=True)

    name: ClassVar[str] = "base"
    remasks: ClassVar[bool] = False     # may put decoded tokens back to [MASK]
    needs_prompt: ClassVar[bool] = False   # only for prompted (variable-length) models
    # picks the tokens to remask by the confidence each was written with (``token_prob``); a token
    # it did not write (refine's input, resume's replace=) has none (nan)
    ranks_written_confidence: ClassVar[bool] = False

    def __post_init__(self):
        if isinstance(self.nucleus_p, bool) or not isinstance(self.nucleus_p, (int, float)) \
                or not 0.0 < self.nucleus_p <= 1.0:
            raise ValueError(f"nucleus_p={self.nucleus_p!r} must be in (0, 1]; use 1.0 for no nucleus "
                             "filtering and 0.9 for the paper's setting.")
        r = self.remaskable
        if r is not None and not callable(r):
            r = torch.as_tensor(r)
            if r.dtype != torch.bool or r.dim() not in (1, 2):
                raise ValueError("remaskable must be a boolean mask [L] or [B, L], or a function "
                                 "state -> BoolTensor[B, L].")
            self.remaskable = r
        if r is not None and not self.remasks:
            raise ValueError(f"{self.name} never remasks, so a remaskable restriction has no meaning.")
        for f in dataclasses.fields(self):     # settings declared with samplers.settings.open_unit
            if "open_unit" in f.metadata:
                check_open_unit(f.name, getattr(self, f.name), f.metadata["open_unit"])
        self.validate()

    def validate(self) -> None:
        """Raise a clear ValueError for out-of-range settings (those declared with
        :func:`~explorer.samplers.settings.open_unit` are checked before this is called)."""

    # --- time grid -----------------------------------------------------------------------------
    def grid(self, steps: int) -> list[StepTimes]:
        return [StepTimes(i, t, s, 1.0 - t, 1.0 - s) for i, t, s in linear_grid(steps)]

    def expected_calls(self, steps: int, gen_length: int) -> float:
        """Model calls per sequence of a ``steps``-step run (the lab's starting budget): one per grid
        step (a step that draws calls the model once; one that draws nothing may not), two with
        classifier-free guidance.  The final argmax pass (§1.8), run only when masks are left after
        the last step (forward-backward, a short DFM grid), adds one call beyond this; the lab's
        calibration measures the real count.  Samplers that also re-score say so by overriding this."""
        return len(self.grid(steps)) * (2 if getattr(self, "cfg_scale", 0) else 1)

    @property
    def draws_by_rates(self) -> bool:
        """True for the ReMDM family: its step is :meth:`step` from :meth:`rates` (§2.1)."""
        return type(self).rates is not Sampler.rates and type(self).step is Sampler.step

    def check_shape(self, gen_length: int, steps: int) -> None:
        """Raise a clear error when the canvas / step count do not fit the sampler (blocks...)."""

    def check_remaskable(self, length: int, batch_rows: set[int]) -> None:
        """Raise a clear error when a ``remaskable`` mask does not fit a canvas of ``length`` positions
        run in batches of ``batch_rows`` rows (it would fail only at the first step that remasks)."""
        r = self.remaskable
        if not isinstance(r, torch.Tensor):
            return
        if r.shape[-1] != length:
            raise ValueError(f"remaskable is a mask over {r.shape[-1]} positions but the canvas has {length}; "
                             f"pass a boolean mask [{length}] (the same positions in every sample) or "
                             f"[B, {length}] (one row per sample of a batch).")
        if r.dim() == 2 and r.shape[0] != 1 and batch_rows != {r.shape[0]}:
            raise ValueError(f"remaskable has {r.shape[0]} rows but this run's batches have "
                             f"{' and '.join(map(str, sorted(batch_rows)))} rows; give one row per sample of every "
                             f"batch, or a mask [{length}] for all of them.")

    # --- one step ------------------------------------------------------------------------------
    def rates(self, st: StepTimes, state: SamplerState) -> Rates:
        raise NotImplementedError(f"{type(self).__name__} must define step(ctx) or rates(st, state).")

    def step(self, ctx) -> Decision:
        """§2.1 from the step's rates: decide remask / unmask per position by a coin, then draw the
        tokens of the positions that unmask (SUBS, nucleus, float64 inverse CDF; §1.5-§1.6).

        Positions outside ``remaskable`` behave as in MDLM on the same schedule (never remasked,
        unmask with (alpha_s - alpha_t) / (1 - alpha_t)).
        """
        st = ctx.st
        r = self.rates(st, ctx)
        unmask_p, remask_p = r.unmask, r.remask
        allowed = self.remaskable_mask(ctx)
        if allowed is not None:
            unmask_p = torch.where(allowed, torch.as_tensor(unmask_p, dtype=torch.float64, device=ctx.x.device),
                                   mdlm_unmask(st.alpha_t, st.alpha_s))
            remask_p = torch.where(allowed, torch.as_tensor(remask_p, dtype=torch.float64, device=ctx.x.device), 0.0)
        if isinstance(remask_p, torch.Tensor):
            remask_p = remask_p.to(torch.float64).masked_fill(ctx.fixed, 0.0)
        masked = ctx.masked
        remask = None
        if isinstance(remask_p, float) and remask_p <= 0.0:
            u_unmask, _ = ctx.uniforms(rng.UNMASK, rng.TOKEN)
        else:
            u_unmask, u_remask, _ = ctx.uniforms(rng.UNMASK, rng.REMASK, rng.TOKEN)
            remask = ctx.decoded & (u_remask < remask_p)
        unmask = masked & (u_unmask < unmask_p)
        write = None
        b, pos = unmask.nonzero(as_tuple=True)
        if b.numel():
            tok, prob, ci, cp = self.draw_at(ctx, b, pos)
            write = Write(b, pos, tok, prob, _at(unmask_p, b, pos), _at(remask_p, b, pos), POSTERIOR, ci, cp)
        return Decision(remask=remask, remask_p=remask_p, remask_sigma=remask_p, remask_reason=POSTERIOR,
                        write=write, sigma=r.sigma, valid_by_construction=True)

    # --- serialization -------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        cfg = {"name": self.name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "remaskable":
                if v is None:
                    continue
                if callable(v) and not isinstance(v, torch.Tensor):
                    v = {"callable": getattr(v, "__qualname__", repr(v))}
                else:
                    v = v.tolist()
            cfg[f.name] = v
        return cfg

    def remaskable_mask(self, state: SamplerState) -> torch.Tensor | None:
        r = self.remaskable
        if r is None:
            return None
        m = r(state) if callable(r) and not isinstance(r, torch.Tensor) else r
        m = torch.as_tensor(m, device=state.x.device)
        if m.dtype != torch.bool:
            raise ValueError("remaskable(state) must return a boolean tensor.")
        return m.expand_as(state.x)

    def draw_at(self, ctx, b: torch.Tensor, pos: torch.Tensor, temperature: float = 1.0,
                remasked: torch.Tensor | None = None):
        """x0_l ~ p_theta(. | x_t) at the positions (b, pos) with the step's token coins, ``nucleus_p``
        and ``temperature`` (SUBS, nucleus, float64 inverse CDF; §1.5-§1.6); ``remasked``: draw from
        the state with those positions masked.  ``ctx.draw``'s (tokens, their probabilities, candidate
        ids, candidate probabilities)."""
        u = ctx.uniforms_at(rng.TOKEN, b, pos)
        return ctx.draw(b, pos, lambda logits, rows: draw_tokens(
            logits, ctx.mask_id, self.nucleus_p, u[rows], ctx.topk, temperature=temperature, scratch=True),
            remasked=remasked)

    def remaskable_in(self, ctx, within: torch.Tensor | None = None) -> torch.Tensor:
        """BoolTensor[B, L]: what a step may take back -- the decoded positions (``ctx.decoded``:
        neither masked nor prompt) inside ``within`` (a window; None: anywhere) that ``remaskable``
        allows."""
        decoded = ctx.decoded if within is None else ctx.decoded & within
        allowed = self.remaskable_mask(ctx)
        return decoded if allowed is None else decoded & allowed


def sampler_from_config(config: dict) -> Sampler:
    """A sampler from its ``.config``, found among :class:`Sampler`'s subclasses by ``name``.

    For samplers that hold another sampler (``Rescore(draft=...)``): ``explorer.samplers`` imports
    their modules, so they cannot import its registry back.
    """
    def subclasses(cls):
        for c in cls.__subclasses__():
            yield c
            yield from subclasses(c)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("a sampler config is a dict with a 'name' key, as written by sampler.config.")
    cfg = dict(config)
    name = cfg.pop("name")
    cls = next((c for c in subclasses(Sampler) if c.name == name), None)
    if cls is None:
        raise ValueError(f"no sampler is named {name!r}; build it from the registry: explorer.samplers.by_name().")
    return cls(**cfg)

