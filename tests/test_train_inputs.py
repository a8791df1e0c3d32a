"""``explorer train`` and ``judge train`` refuse what they cannot use, in the command line's terms:
a damaged checkpoint (it was a traceback or 'invalid literal for int()'), an infinite learning rate
or weight decay (the run trained to NaN and exited 0), settings named as Python fields (``n_heads``
for ``--n-heads``), ``--init-from`` errors without a fix, and a resume already past ``--steps``
(which finished in silence). Each refusal leaves the folders as they were."""
from __future__ import annotations

import math

import pytest
import torch

from explorer import cli, judge
from explorer.models.dit import MDLM, MDLMConfig
from explorer.tasks import orders
from explorer.train import RunFolderError, TrainConfig, train

TINY = ["train", "--task", "orders", "--steps", "2", "--batch-size", "2", "--hidden-dim", "16", "--n-blocks", "1",
        "--n-heads", "2", "--cond-dim", "8", "--eval-n", "2", "--threads", "1", "--no-progress", "--device", "cpu"]
JUDGE_TINY = ["judge", "train", "--steps", "2", "--batch-size", "2", "--n-layer", "1", "--n-embd", "16",
              "--n-head", "2", "--eval-every", "0"]


def folder_bytes(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, argv, *named, folder):
    """The CLI exits 2 with at most two lines naming each of ``named``, no traceback, ``folder`` as it was."""
    before = folder_bytes(folder)
    capsys.readouterr()
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err, err
    for word in named:
        assert word in err, err
    assert folder_bytes(folder) == before, "a file was written or changed"
    return err


def truncated_checkpoint(path):
    """A torch checkpoint cut short (an interrupted copy): torch's 'failed finding central directory'."""
    torch.save({"step": 3, "model": {"w": torch.zeros(64)}}, path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize("damage", ["truncated", "text", "no model"])
def test_train_resume_refuses_a_damaged_checkpoint(capsys, tmp_path, damage):
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "checkpoint.pt"
    if damage == "truncated":
        truncated_checkpoint(ckpt)
    elif damage == "text":
        ckpt.write_text("garbage\n")  # torch read it as a pickle: "invalid literal for int()"
    else:
        torch.save({"step": 1, "config": {}}, ckpt)
    err = refused(capsys, [*TINY, "--out", str(run), "--resume"], str(ckpt), "damaged", "fix: delete it",
                  "--out", folder=tmp_path)
    assert "invalid literal" not in err.splitlines()[1]
    with pytest.raises(RunFolderError, match="is damaged or not a checkpoint"):  # the same from Python
        train(TrainConfig(task="orders", out=run, steps=2, batch_size=2, hidden_dim=16, n_blocks=1, n_heads=2,
                          cond_dim=8, eval_n=2, threads=1, progress=False, device="cpu", resume=True))


@pytest.mark.parametrize("option, field", [("--lr", "lr"), ("--weight-decay", "weight_decay")])
def test_train_refuses_an_infinite_rate(capsys, tmp_path, option, field):
    """An infinite learning rate or decay trained to NaN and exited 0."""
    refused(capsys, [*TINY, "--out", str(tmp_path / "run"), option, "inf"], f"{option} must be a finite number",
            f"fix: give {option}", folder=tmp_path)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=f"{field} must be a finite number"):
        TrainConfig(task="orders", out=tmp_path / "run", **{field: math.inf})


@pytest.mark.parametrize("argv, problem, fix", [
    (["--n-heads", "3"], "--n-heads 3 does not divide --hidden-dim 16.", "fix: choose a head count"),
    (["--ema", "1"], "--ema 1.0 is outside [0, 1).", "fix: give --ema a value in [0, 1)."),
    (["--dropout", "nan"], "--dropout nan is outside [0, 1).", "fix: give --dropout a value in [0, 1)."),
])
def test_train_names_settings_as_options(capsys, tmp_path, argv, problem, fix):
    refused(capsys, [*TINY, "--out", str(tmp_path / "run"), *argv], problem, fix, folder=tmp_path)


def test_init_from_errors_have_a_fix(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, [*TINY, "--out", str(tmp_path / "a"), "--init-from", str(empty)], "no model.safetensors",
            "fix: pass a folder written by `explorer train --export`", folder=tmp_path)
    wider = MDLMConfig(vocab_size=orders.VOCAB_SIZE, model_length=orders.SEQ_LEN, hidden_dim=32, cond_dim=8,
                       n_blocks=1, n_heads=2)
    MDLM(wider).save_pretrained(tmp_path / "wider")
    refused(capsys, [*TINY, "--out", str(tmp_path / "b"), "--init-from", str(tmp_path / "wider")],
            "do not fit this architecture", "fix: use that model's --hidden-dim", folder=tmp_path)


def test_resume_past_steps_says_there_is_nothing_to_train(capsys, tmp_path):
    run = tmp_path / "run"
    assert cli.main([*TINY, "--out", str(run)]) == 0
    checkpoint = (run / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert cli.main([*TINY, "--out", str(run), "--resume", "--steps", "1"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"--resume: {run / 'checkpoint.pt'} is already at step 2, past --steps 1: nothing to train."]
    assert (run / "checkpoint.pt").read_bytes() == checkpoint


def test_judge_train_refuses_a_damaged_checkpoint(capsys, tmp_path):
    run = tmp_path / "j"
    run.mkdir()
    truncated_checkpoint(run / "ckpt.pt")
    refused(capsys, [*JUDGE_TINY, "--out", str(run)], str(run / "ckpt.pt"), "damaged", "delete it",
            "another --out", folder=tmp_path)
    with pytest.raises(RunFolderError) as raised:
        judge.train(run, 2, config=judge.judge_config(n_layer=1, n_embd=16, n_head=2), eval_every=0,
                    data=iter([]), progress=False)
    assert raised.value.fix.startswith("delete it")


@pytest.mark.parametrize("setting", ["lr", "weight_decay"])
def test_judge_train_refuses_an_infinite_rate_before_making_its_folder(tmp_path, setting):
    blocks = iter([torch.zeros(2, 8, dtype=torch.long)] * 2)
    with pytest.raises(ValueError, match=f"{setting} must be a finite number"):
        judge.train(tmp_path / "j", 1, config=judge.judge_config(n_layer=1, n_embd=16, n_head=2), eval_every=0,
                    data=blocks, progress=False, **{setting: math.inf})
    assert not (tmp_path / "j").exists()


def test_judge_train_says_its_refusals_as_options_with_a_fix_line(capsys, tmp_path):
    """judge train printed judge.train's errors as one line with Python's names (lr) and the --debug hint."""
    err = refused(capsys, [*JUDGE_TINY, "--out", str(tmp_path / "j"), "--lr", "inf"], "--lr must be a finite",
                  "fix: give --lr", folder=tmp_path)
    assert "--debug" not in err and not (tmp_path / "j").exists()
    run = tmp_path / "k"
    run.mkdir()
    truncated_checkpoint(run / "ckpt.pt")
    err = refused(capsys, [*JUDGE_TINY, "--out", str(run)], "damaged", "fix: delete it", folder=tmp_path)
    assert "--debug" not in err
