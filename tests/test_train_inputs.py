"""``explorer train`` and ``judge train`` refuse what they cannot use, in the command line's terms:
a damaged checkpoint (it was a traceback or 'invalid literal for int()'). Each refusal leaves the
folders as they were."""
from __future__ import annotations

import pytest
import torch

from explorer import cli, judge
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
