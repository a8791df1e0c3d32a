"""sweep, strategies and judge eval check what they are given before any sampling or folder: the
MAUVE references' contents, that a judge is a causal LM, options no metric reads, and the budgets
the strategies' own defaults need. Refusals are exit 2 with the option named and a fix."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import explorer
from explorer import cli

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


@pytest.fixture
def no_model_loaded(monkeypatch):
    """Fails the test if a model is loaded: the argument checks must come first."""
    monkeypatch.setattr(explorer, "load_model", lambda *a, **k: pytest.fail("model loaded"))


def refused(capsys, argv, fix: str, folder: Path) -> str:
    """Run the CLI; assert exit 2, a short message naming ``fix``, no traceback, nothing made in ``folder``."""
    before = set(folder.rglob("*"))
    capsys.readouterr()
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert 1 <= len(err.strip().splitlines()) <= 3, err
    assert "Traceback" not in err and fix in err, err
    assert set(folder.rglob("*")) == before, "a file was left behind"
    return err


def _write(path: Path, what: str) -> Path:
    if what == "empty":
        path.write_bytes(b"")
    elif what == "blank lines":
        path.write_text("\n   \n")
    elif what == "1-D":
        np.save(path, np.zeros(3, dtype=np.float32))
    elif what == "pickled":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif what == "not npy":
        path.write_text("garbage\n")
    return path


@pytest.mark.parametrize("name, what, said", [
    ("refs.txt", "empty", "is empty"),
    ("refs.txt", "blank lines", "no text"),
    ("refs.npy", "empty", "is empty"),
    ("refs.npy", "1-D", "shape (3,)"),
    ("refs.npy", "pickled", "Python objects"),
    ("refs.npy", "not npy", "not a .npy file"),
])
def test_mauve_references_are_read_before_the_model_loads(capsys, tmp_path, no_model_loaded, name, what, said):
    """An empty .txt was a transformers IndexError after the whole sweep, a 1-D .npy a late
    'features must be [N, D]', a pickled one numpy's allow_pickle= advice: each left OUT/cache."""
    refs = _write(tmp_path / name, what)
    err = refused(capsys, ["sweep", "--model", "stories", "--metrics", "mauve", "--steps", "4",
                           "--mauve-references", str(refs), "--out", str(tmp_path / "o")], "a .npy of judge features",
                  tmp_path)
    assert "--mauve-references" in err and said in err and "allow_pickle" not in err


def test_a_diffusion_model_is_not_a_judge():
    """check_judge looked only for the folder: `orders` passed and failed after sampling."""
    from explorer.metrics._judge import check_judge

    with pytest.raises(FileNotFoundError, match="orders is a diffusion model.*'mdlm'.*stories-judge"):
        check_judge("orders")
    check_judge("stories-judge")


def test_sweep_refuses_a_judge_that_is_a_diffusion_model_before_any_work(capsys, tmp_path, no_model_loaded):
    err = refused(capsys, ["sweep", "--model", "stories", "--metrics", "gen_ppl", "--steps", "4", "--judge", "orders",
                           "--out", str(tmp_path / "o")], "stories-judge", tmp_path)
    assert "--judge" in err and "diffusion model" in err and "transformers" not in err


def test_the_lab_refuses_a_judge_that_is_a_diffusion_model_before_any_folder(capsys, tmp_path):
    err = refused(capsys, ["strategies", "--model", "stories", "--strategies", "mdlm", "--budgets", "2",
                           "--num-samples", "1", "--no-progress", "--judge", "orders", "--out", str(tmp_path / "o")],
                  "stories-judge", tmp_path)
    assert "--judge" in err and "diffusion model" in err


@pytest.mark.parametrize("path", ["orders", "stories", ""])
def test_judge_eval_of_a_diffusion_model_names_the_judge_to_pass(capsys, tmp_path, path):
    """It was transformers' 'does not recognize this architecture ... pip install --upgrade
    transformers' (three lines); "" was read as the current folder."""
    err = refused(capsys, ["judge", "eval", path], "stories-judge", tmp_path)
    assert "upgrade transformers" not in err and "Unrecognized" not in err


def test_sweep_refuses_a_judge_no_metric_reads(capsys, tmp_path, no_model_loaded):
    """--judge with --metrics entropy was never checked nor used (exit 0)."""
    err = refused(capsys, ["sweep", "--model", "orders", "--metrics", "entropy", "--steps", "4",
                           "--judge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], "drop --judge", tmp_path)
    assert "--judge" in err


def test_sweep_refuses_empty_metrics(capsys, tmp_path, no_model_loaded):
    """--metrics "" ran the default metrics."""
    err = refused(capsys, ["sweep", "--model", "orders", "--metrics", "", "--steps", "4", "--out", str(tmp_path / "o")],
                  "--metrics", tmp_path)
    assert "names no metric" in err


def test_default_metrics_come_from_the_model_not_its_path():
    from explorer.cli.sweep import default_metrics
    from explorer.tasks import orders, stories

    assert default_metrics(SimpleNamespace(seq_len=orders.SEQ_LEN, vocab_size=orders.VOCAB_SIZE)) == ["validity", "entropy"]
    assert default_metrics(SimpleNamespace(seq_len=stories.SEQ_LEN, vocab_size=stories.VOCAB_SIZE)) == ["gen_ppl", "entropy"]
    assert default_metrics(SimpleNamespace(seq_len=8, vocab_size=12)) == ["entropy"]


def test_a_folder_named_mystories_gets_the_metrics_of_the_model_in_it(capsys, tmp_path, monkeypatch):
    """An orders model under the path 'mystories' got gen_ppl (refused as a metric the user never asked for); a path
    without 'orders' gave entropy only."""
    folder = tmp_path / "mystories"
    os.symlink(MODELS / "orders", folder)
    seen = {}

    def stop(model, samplers, steps, **kw):
        seen["metrics"] = kw["metrics"]
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("explorer.sweep"), "sweep", stop)
    cli.main(["sweep", "--model", str(folder), "--steps", "4", "--samplers", "mdlm", "--no-progress",
              "--out", str(tmp_path / "o")])
    assert seen.get("metrics") == ["validity", "entropy"], capsys.readouterr().err


def test_the_labs_default_strategies_and_budgets_plan_on_orders_and_stories():
    """rescore needs 69 calls per sequence at one step on orders: the default budgets 64,128 refused
    the command's own defaults on every orders model."""
    from explorer.cli._options import sampler_defaults
    from explorer.cli.common import samplers_from_cli
    from explorer.cli.strategies import parser
    from explorer.studies.strategies import plan_cells
    from explorer.tasks import orders, stories

    a = parser().parse_args(["--model", "orders", "--out", "o"])
    strategies = samplers_from_cli(a.strategies, "--strategies", "", **sampler_defaults(a))
    budgets = [int(b) for b in a.budgets.split(",")]
    for length in (orders.SEQ_LEN, stories.SEQ_LEN):
        assert len(plan_cells(strategies, budgets, length)) == len(strategies) * len(budgets)


def test_a_budget_a_strategy_cannot_meet_names_the_option_and_the_fix(capsys, tmp_path):
    err = refused(capsys, ["strategies", "--model", "orders-oracle", "--budgets", "64", "--out", str(tmp_path / "o")],
                  "--budgets", tmp_path)
    assert "rescore needs 69" in err and "at least 69" in err and "drop rescore" in err


def test_the_lab_refuses_gen_length_on_a_fixed_length_model_before_any_folder(capsys, tmp_path):
    """It was generate's 'drop gen_length=' (Python terms) after OUT was made."""
    err = refused(capsys, ["strategies", "--model", "orders-oracle", "--strategies", "mdlm", "--budgets", "2",
                           "--prompt", "order japan", "--gen-length", "8", "--out", str(tmp_path / "o")],
                  "drop --prompt and --gen-length", tmp_path)
    assert "256 tokens" in err and "gen_length=" not in err


def test_the_lab_refuses_a_judge_on_orders(capsys, tmp_path):
    """--judge on an orders model was silently ignored (exit 0), even a missing one."""
    refused(capsys, ["strategies", "--model", "orders-oracle", "--strategies", "mdlm", "--budgets", "2",
                     "--num-samples", "1", "--no-progress", "--judge", str(tmp_path / "nowhere"),
                     "--out", str(tmp_path / "o")], "drop --judge", tmp_path)


def test_the_lab_says_when_a_cell_spent_more_than_its_budget(capsys, tmp_path, monkeypatch):
    """remdm-loop at budget 128 spent 129 calls per sequence on stories, with nothing said: T is fitted
    on a 4-sequence probe, so the note tells the reader which comparison is not at equal cost."""
    from explorer.studies import strategies as lab

    def fake(model, strategies, budgets, **kw):
        table = pd.DataFrame([{"strategy": "mdlm", "budget": 8, "steps": 8, "model_calls": 8.0},
                              {"strategy": "remdm-loop", "budget": 8, "steps": 9, "model_calls": 8.5}])
        return lab.LabResult(table=table.reindex(columns=lab.TABLE_COLUMNS), ledger=pd.DataFrame(),
                             texts=pd.DataFrame({"text": ["a"]}))

    monkeypatch.setattr(lab, "compare", fake)
    assert cli.main(["strategies", "--model", "orders-oracle", "--strategies", "mdlm,remdm-loop", "--budgets", "8",
                     "--no-progress", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "note: remdm-loop at budget 8 spent 8.5" in out and "note: mdlm" not in out


def test_no_progress_quiets_the_libraries_bars(tmp_path):
    """--no-progress left transformers' 'Loading weights' bar (the judge) on stderr. In fresh processes:
    transformers draws that bar only at a process's first load."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "explorer", "sweep", "--model", "stories", "--samplers", "mdlm", "--steps", "4",
            "--num-samples", "2", "--metrics", "gen_ppl"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = subprocess.run([*argv, "--no-progress", "--out", str(tmp_path / "quiet")], capture_output=True, text=True,
                           env=env, timeout=300)
    loud = subprocess.run([*argv, "--out", str(tmp_path / "loud")], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr[-2000:] + loud.stderr[-2000:]
    assert "Loading weights" in loud.stderr and "Loading weights" not in quiet.stderr
    assert "%|" not in quiet.stderr         # no bar of any kind


def test_library_bars_are_restored_after_the_block():
    from transformers.utils import logging as tf

    from explorer.cli._options import library_bars

    assert tf.is_progress_bar_enabled()
    with library_bars(False):
        assert not tf.is_progress_bar_enabled()
    assert tf.is_progress_bar_enabled()
