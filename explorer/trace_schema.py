"""What a trace holds, in words: the columns of its two tables and the typed record of its run.

Imported by both :mod:`explorer.trace` (the data model) and :mod:`explorer.trace_files` (the file
formats), so neither has to import the other's module to know the schema.
"""
from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Iterator

KINDS = ("unmask", "remask")            # event kind codes 0 and 1
REASONS = ("posterior", "confidence", "final_argmax", "rescore")   # codes 0..3 (EVENT_COLUMNS["reason"] says each)

STEP_COLUMNS = {
    "step": ("first_step + 1 .. first_step + grid_steps (the run record's: T, or more for DFM's adaptive grid, "
             "ReMDM-LLaDA (2T), Rescore and FiRe (T + rounds)); the next is the final argmax pass"),
    "t": ("time at the start of the step (steps that follow no schedule -- WINO's and Saber's, the correction "
          "rounds of Rescore and FiRe -- hold 1 or 0 here and in s, alpha_t, alpha_s)"),
    "s": "time at the end of the step",
    "alpha_t": "schedule alpha at t as the sampler uses it",
    "alpha_s": "schedule alpha at s",
    "sigma": ("the step's remasking probability sigma_t (ReMDM-conf: sigma_max; nan for ordering samplers; 0 in "
              "the final argmax pass)"),
    "phase": "sampler phase (e.g. ReMDM-loop: unmask / loop / finish)",
    "model_called": "whether the denoiser ran in this step (False: exact p(x0) cache hit or nothing to draw)",
    "n_masked": "masked tokens after the step, summed over samples",
    "n_unmasked": "tokens unmasked in the step, summed over samples",
    "n_remasked": "tokens remasked in the step, summed over samples",
    "seconds": "wall-clock seconds spent in the step",
}
# the steps table's column types (the engine builds it with them; a file is read back to them)
STEP_DTYPES = {"step": "int64", "t": "float64", "s": "float64", "alpha_t": "float64", "alpha_s": "float64",
               "sigma": "float64", "phase": "str", "model_called": "bool", "n_masked": "int64",
               "n_unmasked": "int64", "n_remasked": "int64", "seconds": "float64"}

EVENT_COLUMNS = {
    "sample": ("row of the run: sample index s, depending only on the seed and s (with several prompts, row "
               "p * num_samples + s is prompt p's sample s, drawn from sample s's streams)"),
    "step": "step at which the change happened (the steps table's step)",
    "position": "token position",
    "kind": "unmask (mask -> token) or remask (token -> mask)",
    "token_id": "unmask: the decoded token; remask: the token that was removed",
    "token": "text of token_id",
    "prob": ("unmask: p(x0) of the token after nucleus filtering at this step, or, for samplers that rank by "
             "another score, that score (LLaDA: its softmax, a uniform with remasking='random'; Dream: its alg's "
             "confidence, exp(-entropy) or top-1 margin); final_argmax: p(x0) before nucleus filtering. remask: "
             "the score that chose it -- the prob the token had when decoded, or, where the sampler re-judged it "
             "this step (reason rescore; P2 and the LLaDA 2.1 swap too), the score it re-judged it with (P2: "
             "p^eta; the swap: the new token's confidence; the sampler's docstring says which)"),
    "p_transition": "probability the sampler gave this change (unmask prob of a masked position, or sigma; "
                    "1 for a change the sampler chose outright)",
    "sigma": ("remasking probability at this position at this step (samplers without one: 0 at unmask events, "
              "nan at remask events)"),
    "reason": ("posterior (ancestral/ReMDM draw), confidence (chosen by a ranking score: the model's confidence, "
               "or a random order with order='random' / remasking='random'), final_argmax (§1.8), rescore (a "
               "re-scoring sampler's change, recorded with the token's p with its position or group masked; "
               "FiRe remasks a random group)"),
}


def cand_columns(k: int) -> list[str]:
    """The top-k candidate columns of the events table: cand1_id, cand1_token, cand1_prob, ..."""
    return [f"cand{i}_{what}" for i in range(1, k + 1) for what in ("id", "token", "prob")]


@dataclass(eq=False)
class RunRecord(MutableMapping):
    """How a run was made and what it cost: ``trace.meta``.  Fields are in the order the engine writes them.

    Typed fields for every key the engine, :func:`explorer.resume`, :func:`explorer.refine` and
    ``Trace.read`` write; any other key is kept in ``extra``.  It is also a mapping, so
    ``trace.meta["seed"]``, ``"gen_start" in trace.meta`` and ``dict(trace.meta)`` read as the dict
    did.  A field is *present* (a key) when it holds a value, or holds None that was given as a
    key: ``RunRecord.from_dict(d).to_dict() == d`` for every dict ``d`` of string keys.
    """

    run_id: str | None = None
    created: str | None = None                  # ISO 8601, UTC
    sampler: dict | None = None                 # sampler.config (samplers.from_config rebuilds it)
    steps: int | None = None                    # T as asked for
    grid_steps: int | None = None               # steps of this run's grid (more than T for DFM, ReMDM-LLaDA,
    #                                             Rescore, FiRe; a resumed branch counts only its own)
    seed: int | None = None
    num_samples: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    vocab_size: int | None = None
    mask_id: int | None = None
    model: dict | None = None                   # model identity: name, family, weights sha256
    device: str | None = None
    versions: dict | None = None                # python, torch, numpy, pandas, this package
    record: bool | None = None                  # False: only the initial and final states were kept
    topk: int | None = None                     # candidates kept per unmask event
    fast: bool | None = None                    # split body/head model calls
    first_step: int | None = None               # > 0 for a branch resumed mid-run
    last_step: int | None = None
    model_calls: int | None = None              # batched denoiser calls
    nfe: list[int] | None = None                # calls each sample would need alone
    complete: bool | None = None                # False: interrupted, or a damaged file loaded anyway
    wall_seconds: float | None = None
    parent: dict | None = None                  # a branch: {run_id, step, edit}
    prompt: list | None = None                  # prompt token ids (None: none)
    refine: bool | None = None                  # made by explorer.refine
    # a prompted canvas (LLaDA / Dream): prompt-major rows, left padding, where generation starts
    num_prompts: int | None = None
    samples_per_prompt: int | None = None
    gen_start: int | None = None
    gen_length: int | None = None
    prompt_lengths: list[int] | None = None
    pad_lengths: list[int] | None = None
    stop_ids: list[int] | None = None
    # read from a file
    texts: list[str] | None = None              # decoded samples, for reading without a tokenizer
    incomplete_reason: str | None = None        # why a file loaded with verify=False is incomplete
    extra: dict = field(default_factory=dict)
    # fields that are keys although they hold None (the engine always writes parent and prompt)
    _none_keys: set = field(default_factory=lambda: {"parent", "prompt"}, repr=False)

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        known = {k: v for k, v in d.items() if k in _FIELDS}
        return cls(**known, extra={k: v for k, v in d.items() if k not in _FIELDS},
                   _none_keys={k for k, v in known.items() if v is None})

    def to_dict(self) -> dict:
        return dict(self.items())

    # -- the mapping view ----------------------------------------------------------------------
    def _present(self, name: str) -> bool:
        return getattr(self, name) is not None or name in self._none_keys

    def __getitem__(self, key: str) -> Any:
        if key in _FIELDS:
            if not self._present(key):
                raise KeyError(key)
            return getattr(self, key)
        return self.extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _FIELDS:
            self.extra[key] = value
            return
        setattr(self, key, value)
        if value is None:
            self._none_keys.add(key)

    def __delitem__(self, key: str) -> None:
        if key not in _FIELDS:
            del self.extra[key]
            return
        if not self._present(key):
            raise KeyError(key)
        setattr(self, key, None)
        self._none_keys.discard(key)

    def __iter__(self) -> Iterator[str]:
        yield from (name for name in _FIELDS if self._present(name))
        yield from self.extra

    def __len__(self) -> int:
        return sum(1 for _ in self)


_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name not in ("extra", "_none_keys"))
