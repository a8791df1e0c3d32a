"""A perfect denoiser for the orders task: the exact posterior p(x0 | z) of its generator.

Why it exists: it separates what a *sampler* can do on this task from what a *trained model* does.
Run any sampler with ``OrdersOracle`` in place of a network and the validity you measure is the
ceiling of that sampler at that number of steps (``explorer.metrics.validity.validity_ceiling``
measures it): no model, however well trained, does better in expectation. For MDLM that ceiling is
set by the schedule alone. Two coupled fields of one record unmasked in the same step are drawn
independently from their marginals (reference §1.2, the factorised reverse step), and under the
log-linear schedule every token's unmask step is uniform over the T steps, so each coupled pair
clashes with probability 1/T. Hence the validity of MDLM at T = 4L depends on the sequence length
L, and it is why the task packs 16 records into a sequence (see ``explorer.tasks.orders``).

How: the generator draws each record's free variables independently and uniformly (country; item
and quantity; order day and shipping delay), and every other field is a function of them, so a
record is a uniform draw from the rows of three small tables (``GROUPS``: 10, 80 and 147 rows).
Given the decoded tokens of a record, the posterior of a masked field is the share of the rows
that agree with everything decoded and carry that value. Records are independent, so this is
the posterior of the whole sequence. Keywords are certain.

A record that already breaks a rule has no agreeing rows; the oracle then answers with the prior
(all rows of that group), which only the remasking samplers can ever meet.
"""
from __future__ import annotations

import hashlib

import torch

from explorer.tasks import orders as task

def _group_tables() -> dict[str, tuple[tuple[str, ...], torch.Tensor]]:
    """``{group: (fields, rows)}``: ``rows[i, j]`` is the token id of ``fields[j]`` in row ``i``."""
    tid = task.TOKEN_ID
    country = [(c, cur, tax) for c, (cur, tax) in task.COUNTRIES.items()]
    item = [(it, cat, str(p), str(q), str(p * q)) for it, (cat, p) in task.ITEMS.items()
            for q in range(1, task.QTY_MAX + 1)]
    days = [(task._day(d), task._day(d + k)) for d in range(1, task.LAST_ORDER_DAY + 1)
            for k in range(1, task.MAX_SHIP_DELAY + 1)]
    ids = lambda rows: torch.tensor([[tid[w] for w in r] for r in rows], dtype=torch.long)  # noqa: E731
    return {
        "country": (("country", "currency", "tax"), ids(country)),
        "item": (("item", "category", "price", "qty", "total"), ids(item)),
        "days": (("order_day", "ship_day"), ids(days)),
    }


GROUPS = _group_tables()
assert sorted(f for fields, _ in GROUPS.values() for f in fields) == sorted(task.FIELDS)
# per group: the record positions of its fields, and each field's rows as one-hot [n_rows, V]
# (the posterior of field j is agree @ onehot[j]); built once, used at every model call
_GROUP_PLAN = [([task.FIELD_POS[f] for f in fields], rows,
                [torch.nn.functional.one_hot(rows[:, j], task.VOCAB_SIZE).double() for j in range(len(fields))])
               for fields, rows in GROUPS.values()]


class OrdersOracle:
    """The exact posterior of ``explorer.tasks.orders`` behind the denoiser protocol.

    ``records_per_seq`` sets the length (``records_per_seq * RECORD_LEN``; the task's default
    when None), so the same oracle measures how the ceiling moves with L.
    """

    def __init__(self, records_per_seq: int | None = None):
        self.records = int(records_per_seq or task.RECORDS_PER_SEQ)
        if self.records < 1:
            raise ValueError(f"records_per_seq must be >= 1, got {records_per_seq!r}")
        self.seq_len = self.records * task.RECORD_LEN
        self.vocab_size = task.VOCAB_SIZE
        self.mask_id = task.MASK_ID
        from transformers import PreTrainedTokenizerFast

        self.tokenizer = PreTrainedTokenizerFast(tokenizer_object=task.build_tokenizer(),
                                                 unk_token=task.UNK, mask_token=task.MASK)
        self.fixed_tokens = {r * task.RECORD_LEN: task.TOKEN_ID["order"] for r in range(self.records)}
        self.device = torch.device("cpu")
        self.calls = 0
        digest = hashlib.sha256(repr(sorted(task.VOCAB)).encode() + repr(task.TEMPLATE).encode())
        self.identity = {"name": f"orders-oracle-{self.records}", "sha256": digest.hexdigest()}
        # keywords: certain, the template's word at each keyword position
        self._keyword = torch.full((task.RECORD_LEN,), -1, dtype=torch.long)
        for pos, slot in enumerate(task.TEMPLATE):
            if not slot.startswith("<"):
                self._keyword[pos] = task.TOKEN_ID[slot]

    def to(self, device) -> "OrdersOracle":
        self.device = torch.device(device)
        return self

    def probs(self, z: torch.Tensor) -> torch.Tensor:
        """``p(x0 | z)`` as probabilities, ``[B, L, V]`` (float64)."""
        if z.dim() != 2 or z.shape[1] != self.seq_len:
            raise ValueError(f"z must be [B, {self.seq_len}], got {tuple(z.shape)}")
        b = z.shape[0]
        rec = z.cpu().reshape(b, self.records, task.RECORD_LEN)
        out = torch.zeros(b, self.records, task.RECORD_LEN, self.vocab_size, dtype=torch.float64)
        kw = self._keyword >= 0
        out[:, :, kw, self._keyword[kw]] = 1.0
        for cols, rows, onehots in _GROUP_PLAN:
            seen = rec[:, :, cols].unsqueeze(2)  # [B, R, 1, F]
            agree = ((seen == rows) | (seen == self.mask_id)).all(-1).double()  # [B, R, n]
            none = agree.sum(-1, keepdim=True) == 0
            agree = torch.where(none, torch.ones_like(agree), agree)  # broken record: the prior
            for col, onehot in zip(cols, onehots):
                out[:, :, col] = agree @ onehot
        out = out / out.sum(-1, keepdim=True)
        return out.reshape(b, self.seq_len, self.vocab_size).to(z.device)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.log(self.probs(z)).float()  # -inf where the posterior is zero (and on [MASK])

    def __repr__(self) -> str:
        return f"OrdersOracle(records_per_seq={self.records}, seq_len={self.seq_len})"

