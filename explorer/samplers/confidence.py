"""Confidence-ordered decoding in the style of MaskGIT / LLaDA ("low_confidence" remasking).

Not a remasking sampler: it decides *which masked positions to commit* at each step.  At every
step it draws a candidate token at each masked position of the current block (from
softmax(logits / temperature), nucleus-filtered; temperature 0 = argmax), scores it by its
probability under p(x0), and commits the ``k`` most confident.  ``k`` spreads the block's masked
tokens evenly over the block's steps (the first steps take one more when they do not divide,
as LLaDA's ``get_num_transfer_tokens``).  Committed tokens are never revisited.

With ``block_length`` set, the sequence is decoded in semi-autoregressive blocks, left to right,
with ``steps / num_blocks`` steps each.

``order="random"`` commits ``k`` masked positions chosen uniformly at random instead of the most
confident ones (MaskGIT's ordering with random scores). With one position per step
(``steps`` = the number of free positions) it is any-order autoregressive sampling: every token is
drawn from p(x0 | everything decoded so far), and no two tokens are ever drawn in the same step.
That measures what the model knows when it decodes one token at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import rng
from .base import Sampler, StepTimes, linear_grid
from .categorical import draw_tokens
from .ranked import check_block_length
from .settings import check_temperature, choice
from .step import CONFIDENCE, Decision, Write

ORDERS = ("confidence", "random")


@dataclass
class ConfidenceOrdered(Sampler):
    block_length: int | None = None
    temperature: float = 1.0
    order: str = choice("confidence", ORDERS)
    name = "confidence"

    def validate(self):
        if self.order not in ORDERS:
            raise ValueError(f"order must be 'confidence' (commit the most probable draws) or 'random' "
                             f"(commit uniformly chosen positions), got {self.order!r}.")
        check_block_length(self.block_length)
        check_temperature(self.temperature)

    def check_shape(self, seq_len: int, steps: int) -> None:
        blocks = self.num_blocks(seq_len)
        if self.block_length is not None and seq_len % self.block_length:
            raise ValueError(f"block_length={self.block_length} must divide the sequence length {seq_len}.")
        if steps % blocks:
            raise ValueError(f"steps={steps} must be a multiple of the number of blocks ({blocks}); "
                             f"try steps={blocks * max(1, round(steps / blocks))}.")

    def num_blocks(self, seq_len: int) -> int:
        return 1 if self.block_length is None else seq_len // self.block_length

    def grid(self, steps: int) -> list[StepTimes]:
        return [StepTimes(i, t, s, 1.0 - t, 1.0 - s, "ordered") for i, t, s in linear_grid(steps)]

    def block_of_step(self, step: int, steps: int, seq_len: int) -> tuple[int, int, int]:
        """(first position, end position, steps left in the block including this one)."""
        blocks = self.num_blocks(seq_len)
        per_block = steps // blocks
        j, r = divmod(step - 1, per_block)
        length = seq_len if self.block_length is None else self.block_length
        return j * length, (j + 1) * length, per_block - r

    def commit(self, confidence: torch.Tensor, eligible: torch.Tensor, steps_left: int) -> torch.Tensor:
        """Choose, per row, the ceil(n / steps_left) most confident eligible positions."""
        n = eligible.sum(-1)
        k = torch.div(n + steps_left - 1, steps_left, rounding_mode="floor")
        score = torch.where(eligible, confidence.double(), torch.full_like(confidence, -torch.inf, dtype=torch.float64))
        order = torch.argsort(score, dim=-1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
        return eligible & (rank < k.unsqueeze(-1))

    def step(self, ctx) -> Decision:
        """Draw a candidate at every masked position of the block, commit the most confident."""
        start, end, left = self.block_of_step(ctx.st.step, ctx.num_steps, ctx.gen_length)
        start, end = start + ctx.gen_start, end + ctx.gen_start
        eligible = ctx.masked & (ctx.positions >= start) & (ctx.positions < end)
        b, pos = eligible.nonzero(as_tuple=True)
        if not b.numel():
            return Decision()
        u = ctx.uniforms_at(rng.ORDER, b, pos)
        tok, prob, ci, cp = ctx.draw(b, pos, lambda logits, rows: draw_tokens(
            logits, ctx.mask_id, self.nucleus_p, u[rows], ctx.topk, temperature=self.temperature))
        score = prob.double() if self.order == "confidence" else ctx.uniforms_at(rng.RANK, b, pos)
        conf = torch.zeros(ctx.x.shape, dtype=torch.float64, device=ctx.x.device)
        conf[b, pos] = score
        keep = self.commit(conf, eligible, left)[b, pos]
        return Decision(write=Write(b, pos, tok, prob, 1.0, 0.0, CONFIDENCE, ci, cp).keep(keep))
