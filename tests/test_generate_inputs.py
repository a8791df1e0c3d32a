"""generate / resume / refine refuse bad inputs up front, with an error naming the fix, and leave the
caller's model where it was (the API audit's F1-F5 and F12)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import explorer
from stub_models import ContextModel
from explorer.samplers import MDLM, ReMDMCap


class MoveRecorder(ContextModel):
    """A ContextModel that records every ``to(device)`` asked of it (and never moves)."""

    def __init__(self):
        super().__init__()
        self.device, self.moves = torch.device("cpu"), []

    def to(self, device):
        self.moves.append(device)
        return self


def run(model=None, sampler=None, steps=4, **kw):
    return explorer.generate(model or ContextModel(), sampler or MDLM(), steps, progress=False, **kw)


# ---------------------------------------------------------------------------- F1: device
@pytest.mark.parametrize("device", ["meta", "bogus", 3, "cuda:99", object()])
def test_a_device_no_model_runs_on_is_refused_before_the_model_moves(device):
    m = MoveRecorder()
    with pytest.raises(ValueError, match="device="):
        run(m, device=device)
    assert m.moves == []


def test_meta_leaves_a_real_model_usable():
    m = explorer.StubDenoiser(torch.tensor([0.5, 0.3, 0.2, 0.0]), seq_len=6)
    with pytest.raises(ValueError, match="'meta' is not a device.*device='cpu'"):
        run(m, device="meta")
    assert m.device.type == "cpu" and run(m).final.shape == (1, 6)


@pytest.mark.parametrize("bad", [{"prompt": [99]}, {"on_step": 5}, {"topk": 99},
                                 {"sampler": ReMDMCap(0.5, remaskable=torch.ones(3, dtype=torch.bool))}])
def test_a_call_refused_for_another_input_never_moves_the_model(bad):
    m = MoveRecorder()
    with pytest.raises((ValueError, TypeError)):
        run(m, device="cpu", **bad)
    assert m.moves == []


def test_resume_and_refine_check_the_device_first():
    m = MoveRecorder()
    trace = run(m, num_samples=2)
    with pytest.raises(ValueError, match="'meta' is not a device"):
        explorer.resume(m, trace, 2, device="meta", progress=False)
    with pytest.raises(ValueError, match="'meta' is not a device"):
        explorer.refine(m, trace.final, ReMDMCap(0.5), steps=2, device="meta", progress=False)
    assert m.moves == []


# ---------------------------------------------------------------------------- F2: topk
def test_topk_above_the_vocabulary_is_refused_before_anything_runs():
    m = ContextModel()
    with pytest.raises(ValueError, match=f"topk=8 .*vocabulary has \\({m.vocab_size} tokens\\).*topk <= 7"):
        run(m, topk=m.vocab_size + 1)
    assert m.calls == 0
    assert f"cand{m.vocab_size}_id" in run(m, topk=m.vocab_size).events


# ---------------------------------------------------------------------------- F3: numpy integers
def test_numpy_integers_are_accepted_as_the_python_ints_they_equal():
    plain = run(steps=6, num_samples=3, seed=3, batch_size=2, topk=2)
    numpy = run(steps=np.int64(6), num_samples=np.int32(3), seed=np.int64(3), batch_size=np.int64(2),
                topk=np.uint8(2))
    assert numpy.same_as(plain) and torch.equal(numpy.final, plain.final)
    assert all(type(numpy.meta[k]) is int for k in ("steps", "num_samples", "seed", "batch_size", "topk"))


@pytest.mark.parametrize("name", ["steps", "num_samples", "seed", "batch_size", "topk"])
def test_bools_stay_refused(name):
    with pytest.raises(ValueError, match=f"{name} must be"):
        run(**{name: True})


# ---------------------------------------------------------------------------- F4: prompts, fixed length
@pytest.mark.parametrize("prompt, error, says", [
    (torch.tensor([[1, 2], [3, 4]]), ValueError, r"shape \[2, 2\], a batch of prompts"),
    (torch.tensor([1.7, 2.2]), TypeError, "must be integers, got torch.float32"),
    ([1.5, 2.0], TypeError, "must be integers"),
    ([True, False], TypeError, "must be integers, got torch.bool"),
    (["order", "germany"], TypeError, "is not a prompt"),
    (object(), TypeError, "is not a prompt"),
])
def test_a_prompt_in_no_accepted_form_is_refused_saying_what_is(prompt, error, says):
    with pytest.raises(error, match=f"{says}.*text, token ids .a prefix., {{position: token}} or a length-10"):
        run(prompt=prompt)


@pytest.mark.parametrize("same", [np.array([1, 2]), torch.tensor([1, 2]), torch.tensor([[1, 2]]), (1, 2)])
def test_the_accepted_forms_of_ids_still_mean_the_same_prefix(same):
    assert run(prompt=same, seed=1).same_as(run(prompt=[1, 2], seed=1))


# ---------------------------------------------------------------------------- F5: remaskable shape
@pytest.mark.parametrize("mask, says", [
    (torch.ones(3, dtype=torch.bool), "over 3 positions but the canvas has 10"),
    (torch.ones(2, 10, dtype=torch.bool), "2 rows but this run's batches have 3 rows"),
])
def test_a_remaskable_mask_that_does_not_fit_is_refused_before_the_first_step(mask, says):
    m = ContextModel()
    with pytest.raises(ValueError, match=says):
        run(m, ReMDMCap(0.5, remaskable=mask), num_samples=3)
    assert m.calls == 0


def test_a_remaskable_mask_per_row_fits_batches_of_that_many_rows():
    mask = torch.rand(2, 10, generator=torch.Generator().manual_seed(0)) < 0.5
    a = run(sampler=ReMDMCap(0.5, remaskable=mask), num_samples=4, batch_size=2)
    assert a.complete
    with pytest.raises(ValueError, match="batches have 1 and 2 rows"):
        run(sampler=ReMDMCap(0.5, remaskable=mask), num_samples=3, batch_size=2)


# ---------------------------------------------------------------------------- F12: refine, variable length
@pytest.mark.parametrize("steps", [None, 2])
def test_refine_says_it_needs_a_fixed_length_model(steps):
    m = ContextModel()
    m.seq_len, m.max_length = None, 64          # a LLaDA / Dream-like model: no fixed length
    with pytest.raises(ValueError, match="fixed-length model.*explorer.resume"):
        explorer.refine(m, torch.zeros(2, 10, dtype=torch.long), steps=steps, progress=False)


@pytest.mark.parametrize("kw, said", [({"device": "meta"}, "not a device a model can run on"),
                                      ({"device": "bogus"}, "not a device a model can run on"),
                                      ({"dtype": "int8"}, "not a floating torch dtype"),
                                      ({"dtype": torch.int64}, "not a floating torch dtype")])
def test_load_model_checks_device_and_dtype_before_reading_files(kw, said):
    """load_model(dir, device='cuda') without a GPU was torch's bare AssertionError; dtype='bfloat16'
    a TypeError: the same check as generate's, before any file is read."""
    with pytest.raises(ValueError, match=said):
        explorer.load_model("stories", **kw)


def test_load_model_takes_a_dtype_by_name():
    weights = explorer.load_model("orders", dtype="float16").model.parameters()
    assert {p.dtype for p in weights} == {torch.float16}


def test_gen_length_takes_numpy_integers_like_steps(tmp_path):
    """gen_length=np.int64(8) was refused as 'not a positive integer' while steps took numpy ints."""
    from explorer.models import write_random_checkpoint

    model = explorer.load_model(write_random_checkpoint(tmp_path, "llada"))
    run = lambda n: explorer.generate(model, explorer.samplers.by_name("llada"), 4, prompt="Hi", gen_length=n,  # noqa: E731
                                      progress=False)
    assert torch.equal(run(np.int64(8)).final, run(8).final)
    with pytest.raises(ValueError, match="gen_length must be a positive integer, got 8.5"):
        run(8.5)


def test_cuda_without_an_index_is_the_current_gpu(monkeypatch):
    """On an H200, generate(device='cuda') recorded 'cuda' and a model loaded there 'cuda:0': two names
    for one GPU in the traces."""
    from explorer.protocol import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert check_device("cuda") == torch.device("cuda", 1) and check_device("cuda:0") == torch.device("cuda", 0)


# ---------------------------------------------------------------------------- the step limit
def test_a_step_count_above_the_limit_is_refused_at_once_by_every_entry_point():
    """A mistyped T (10**12) used to build its time grid until the memory ran out; generate and
    refine refuse anything above MAX_STEPS at once, and accept the limit itself as a setting (resume
    continues the trace's own grid)."""
    from explorer.samplers import MAX_STEPS
    from explorer.samplers.base import check_steps
    assert check_steps(MAX_STEPS) == MAX_STEPS
    m = ContextModel()
    trace = run(m, num_samples=1)
    for call in (lambda T: run(m, steps=T),
                 lambda T: explorer.refine(m, trace.final, steps=T, progress=False)):
        for T in (MAX_STEPS + 1, 10**12, np.int64(10**12)):
            with pytest.raises(ValueError, match=f"steps={int(T):,} is above the limit of {MAX_STEPS:,} steps"):
                call(T)
