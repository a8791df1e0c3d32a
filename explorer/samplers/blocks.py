"""The two block-by-block shapes that strategies share, so a strategy's file states only its step rule.

* :class:`FixedBlocks` (RCR, the LLaDA 2.1 swap): LLaDA's semi-autoregressive schedule (reference
  §4.1): the generated part in blocks of ``block_length``, T / blocks steps per block, on the
  linear grid;
* :class:`AdaptiveBlocks` (WINO, Saber): a row's current block is its first with a masked
  position, ``steps=T`` caps the iterations (a full row calls nothing), and decoded tokens are
  judged by ``ctx.rescore`` in ``groups`` groups.

Both take their blocks and their draws (:meth:`Sampler.draw_at`) from the settings of
:class:`Blocks`, ``block_length`` (None: one block) and ``temperature`` (1: draw from p_theta; 0:
the argmax), and :class:`AdaptiveBlocks` adds ``groups``; these are declared and checked here,
once, as keyword-only fields, so a subclass's own settings keep their positions.  A subclass is a
dataclass that declares only its own settings, names the phase of its steps in ``phase`` and calls
``super().validate()`` after checking its own settings.  A fixed-block step reads its block from
:meth:`FixedBlocks.block`; an adaptive one defines :meth:`AdaptiveBlocks.block_step`, which is
given the masked positions of each row's current block.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch

from . import ranked
from .base import Sampler, StepTimes, check_steps, linear_grid
from .settings import check_groups, check_positive_int, check_temperature, rescore_groups
from .step import Decision


class ScheduledBlock(NamedTuple):
    """A step of :class:`FixedBlocks`: the block [start, end) as a mask, its length, the step's index
    ``i`` in it (0 .. s-1) and ``s``, the steps per block."""
    window: torch.Tensor        # BoolTensor[L]
    length: int
    i: int
    s: int


class CurrentBlocks(NamedTuple):
    """A step of :class:`AdaptiveBlocks`: each row's current block, its index, its masked positions and
    their coordinates (``masked.nonzero``; at least one, or the step is not taken)."""
    window: torch.Tensor        # BoolTensor[B, L]
    index: torch.Tensor         # LongTensor[B]; the number of blocks for a full row
    masked: torch.Tensor        # BoolTensor[B, L]
    b: torch.Tensor
    pos: torch.Tensor


@dataclass
class Blocks(Sampler):
    """The settings every block sampler has: the block length and the temperature of its draws."""
    block_length: int | None = field(default=None, kw_only=True)
    temperature: float = field(default=1.0, kw_only=True)
    phase: ClassVar[str]

    def validate(self):
        ranked.check_block_length(self.block_length)
        check_temperature(self.temperature)


class FixedBlocks(Blocks):
    """LLaDA's block schedule: T / blocks steps per block, on the linear grid."""

    def check_shape(self, gen_length: int, steps: int) -> None:
        ranked.check_blocks(self.name, self.block_length, gen_length, steps)

    def grid(self, steps: int) -> list[StepTimes]:
        return [StepTimes(i, t, s, 1.0 - t, 1.0 - s, self.phase) for i, t, s in linear_grid(steps)]

    def block(self, ctx) -> ScheduledBlock:
        """This step's block: its positions, the step's index i in it and the s steps per block."""
        blocks = ranked.check_blocks(self.name, self.block_length, ctx.gen_length, ctx.num_steps)
        s = ctx.num_steps // blocks
        start, end, i = ranked.block_plan(ctx.st.step, ctx.num_steps, ctx.gen_start, ctx.gen_length,
                                          self.block_length, s)
        return ScheduledBlock((ctx.positions >= start) & (ctx.positions < end), end - start, i, s)


@dataclass
class AdaptiveBlocks(Blocks):
    """Blocks taken as they fill, with re-scoring in ``groups`` groups (None: gen_length / 64, at least 1)."""
    groups: int | None = field(default=None, kw_only=True)

    def validate(self):
        check_positive_int("groups", self.groups, allow_none=True)
        super().validate()

    def groups_for(self, gen_length: int) -> int:
        return rescore_groups(self.groups, gen_length, 64)

    def check_shape(self, gen_length: int, steps: int) -> None:
        bl = gen_length if self.block_length is None else self.block_length
        if gen_length % bl:
            raise ValueError(f"{self.name}: gen_length={gen_length} is not a multiple of block_length={bl}; use "
                             f"a block_length that divides it.")
        check_groups(self.groups, gen_length, 64)

    def expected_calls(self, steps: int, gen_length: int) -> float:
        """At most: a draw and G re-scoring passes per step, and the final argmax pass."""
        return steps * (1 + self.groups_for(gen_length)) + 1

    def grid(self, steps: int) -> list[StepTimes]:
        check_steps(steps)
        return [StepTimes(i, 1.0, 1.0, 0.0, 0.0, self.phase) for i in range(1, steps + 1)]

    def step(self, ctx) -> Decision:
        """Find each row's current block and pass its masked positions to :meth:`block_step`; once
        every row is full there is nothing to do (and no model call)."""
        window, index = self.current_block(ctx)
        masked = ctx.masked & window
        b, pos = masked.nonzero(as_tuple=True)
        if not b.numel():
            return Decision()
        return self.block_step(ctx, CurrentBlocks(window, index, masked, b, pos))

    def block_step(self, ctx, blocks: CurrentBlocks) -> Decision:
        raise NotImplementedError(f"{type(self).__name__} must define block_step(ctx, blocks).")

    def current_block(self, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        """(BoolTensor[B, L] the row's current block -- its first with a masked position --, block index)."""
        B, L = ctx.x.shape
        bl = ctx.gen_length if self.block_length is None else self.block_length
        nb = ctx.gen_length // bl
        per_block = ctx.masked[:, ctx.gen_start:].reshape(B, nb, bl).any(-1)
        block = torch.where(per_block.any(-1), per_block.long().argmax(-1), torch.full((B,), nb, device=ctx.x.device))
        start = ctx.gen_start + block * bl
        p = ctx.positions[None, :]
        return (p >= start[:, None]) & (p < start[:, None] + bl), block
