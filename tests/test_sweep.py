"""Sweeps: caching/resume recomputes nothing, return on compute on hand-made numbers, CLI report."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import importlib

import explorer
from explorer.protocol import StubDenoiser
from explorer.samplers import MDLM, ReMDMCap
from explorer.cli.sweep import main
from explorer.sweep import return_on_compute, summary, sweep

sweep_module = importlib.import_module("explorer.sweep")  # `explorer.sweep` itself is the function


def stub(seed=0, L=6, V=5):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(L, V, generator=g)
    probs[:, -1] = 0
    return StubDenoiser(probs)


SAMPLERS = {"mdlm": MDLM(), "remdm-cap": ReMDMCap(eta=0.1)}


@pytest.fixture
def count_generate(monkeypatch):
    """Counts the cells the sweep generates (not its untimed warm-up runs);
    ``calls["fail_at"] = k`` interrupts the k-th cell."""
    real = sweep_module._generate_cell
    calls = {"n": 0, "fail_at": None}

    def wrapped(*a, **kw):
        calls["n"] += 1
        if calls["fail_at"] == calls["n"]:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(sweep_module, "_generate_cell", wrapped)
    return calls


def run(model, cache, metrics=("entropy",), steps=(2, 4)):
    return sweep(model, SAMPLERS, steps=list(steps), num_samples=4, seeds=[0, 1], metrics=list(metrics),
                 cache_dir=cache, progress=False)


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, count_generate):
    model = stub()
    count_generate["fail_at"] = 4  # 2 samplers x 2 steps x 2 seeds = 8 cells; stop in the 4th
    with pytest.raises(KeyboardInterrupt):
        run(model, tmp_path)
    assert count_generate["n"] == 4
    count_generate.update(n=0, fail_at=None)
    df = run(model, tmp_path)
    assert count_generate["n"] == 8 - 3  # the 3 finished cells are not generated again
    assert len(df) == 8 and set(df.columns) >= {"sampler", "steps", "seed", "metric", "value", "stderr",
                                                "model_calls", "seconds", "tokens_per_second"}
    count_generate["n"] = 0
    again = run(model, tmp_path)
    assert count_generate["n"] == 0 and again["cached"].all()
    pd.testing.assert_frame_equal(df.drop(columns="cached"), again.drop(columns="cached"))
    # same numbers as a sweep without any cache
    fresh = sweep(model, SAMPLERS, steps=[2, 4], num_samples=4, seeds=[0, 1], progress=False)
    assert np.allclose(fresh["value"], df["value"])


def test_new_metric_scores_cached_samples_and_new_model_recomputes(tmp_path, count_generate):
    model = stub()
    run(model, tmp_path)
    count_generate["n"] = 0
    seen = []

    def first_token(ids, texts):
        seen.append(ids.shape)
        return float(ids[:, 0].float().mean())

    df = run(model, tmp_path, metrics=["entropy", ("first_token", first_token)])
    assert count_generate["n"] == 0 and len(seen) == 8 and seen[0] == (4, 6)
    assert set(df["metric"]) == {"entropy", "first_token"}
    run(stub(seed=1), tmp_path)  # other weights, other sha256: nothing shared
    assert count_generate["n"] == 8


def hand_sweep() -> pd.DataFrame:
    """Validity of two samplers at T = 8, 16, 32, 64; one seed; stderr 0.01 everywhere."""
    rows = []
    table = {"mdlm": ([0.50, 0.60, 0.62, 0.62], [8, 16, 20, 22]),
             "remdm": ([0.55, 0.75, 0.90, 0.91], [8, 16, 32, 64])}
    for s, (vals, calls) in table.items():
        for T, v, c in zip([8, 16, 32, 64], vals, calls):
            rows.append({"sampler": s, "steps": T, "seed": 0, "metric": "validity", "value": v,
                         "stderr": 0.01, "model_calls": c, "seconds": c / 10, "tokens_per_second": 1.0})
    return pd.DataFrame(rows)


def test_return_on_compute_by_hand():
    roc = return_on_compute(hand_sweep(), baseline="mdlm", metric="validity").set_index(["sampler", "steps"])
    r = roc.loc[("remdm", 32)]
    assert r["gain"] == pytest.approx(0.90 - 0.62)
    assert r["gain_stderr"] == pytest.approx(math.sqrt(2) * 0.01)
    assert r["extra_calls"] == 12 and r["gain_per_call"] == pytest.approx(0.28 / 12)
    assert r["gain_per_second"] == pytest.approx(0.28 / 1.2)
    assert r["marginal_gain"] == pytest.approx(0.15) and r["marginal_calls"] == 16
    assert r["marginal_gain_per_call"] == pytest.approx(0.15 / 16)
    assert np.isnan(roc.loc[("remdm", 16), "gain_per_call"])  # same cost as the baseline: free gain
    # knee: the cheapest setting nothing costlier beats by > 2 * sqrt(2) * 0.01 = 0.028
    knees = roc[roc["is_knee"]].index.tolist()
    assert knees == [("mdlm", 16), ("remdm", 32)]
    # lower-is-better metrics are flipped: a lower Gen PPL is a positive gain
    ppl = hand_sweep().assign(metric="gen_ppl")
    ppl.loc[ppl.sampler == "remdm", "value"] = 0.4
    roc = return_on_compute(ppl, baseline="mdlm", metric="gen_ppl")
    assert (roc.loc[roc.sampler == "remdm", "gain"] > 0).all()


def test_summary_is_one_plain_line():
    line = summary(hand_sweep())
    assert "\n" not in line
    assert "at T=64 remdm scores 0.910" in line and "a clear gain" in line
    assert "remdm stops paying beyond T = 32 (0.900 ± 0.010)" in line
    assert "mdlm stops paying beyond T = 16 (0.600 ± 0.010)" in line


def test_summary_does_not_call_the_last_step_measured_a_plateau():
    df = hand_sweep()
    line = summary(df[df["steps"] <= 32])          # remdm's knee (T = 32) is now the largest T
    assert "remdm is still improving at T = 32, the most steps measured" in line
    assert "stops paying beyond T = 32" not in line


def test_cli_writes_parquet_and_standalone_report(tmp_path, monkeypatch):
    model = stub()
    monkeypatch.setattr(explorer, "load_model", lambda *a, **k: model)
    out = tmp_path / "sweep"
    rc = main(["--model", "toy", "--samplers", "mdlm,remdm-cap", "--steps", "L/2,L", "--num-samples", "4",
               "--metrics", "entropy", "--out", str(out), "--no-progress"])
    assert rc == 0
    df = pd.read_parquet(out / "sweep.parquet")
    assert sorted(set(df["steps"])) == [3, 6]
    page = (out / "report.html").read_text()
    assert "<script src=" not in page and "Plotly.newPlot" in page and "entropy vs steps" in page


def test_distributed_path_gathers_on_rank_zero(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        df = sweep(stub(), SAMPLERS, steps=[2], num_samples=3, seeds=[0], progress=False)
    finally:
        dist.destroy_process_group()
    plain = sweep(stub(), SAMPLERS, steps=[2], num_samples=3, seeds=[0], progress=False)
    assert np.allclose(df["value"], plain["value"]) and list(df["sampler"]) == ["mdlm", "remdm-cap"]


def test_per_sample_nfe_is_what_batch_size_one_runs_call():
    from explorer.sweep import per_sample_nfe

    model = stub()
    nfe = {}
    for name, sampler in SAMPLERS.items():
        batched = explorer.generate(model, sampler, 24, num_samples=5, seed=3, progress=False, topk=0)
        alone = explorer.generate(model, sampler, 24, num_samples=5, seed=3, batch_size=1, progress=False)
        nfe[name] = per_sample_nfe(batched)
        assert nfe[name].sum() == alone.model_calls
        assert nfe[name].max() <= batched.model_calls
    assert nfe["mdlm"].max() <= 6 + 1  # T = 4L: MDLM decodes each of L=6 positions once (+ final pass)


def test_summary_does_not_call_a_gain_clear_without_a_standard_error():
    df = hand_sweep()
    df["stderr"] = float("nan")  # e.g. MAUVE from one seed
    line = summary(df)
    assert "clear" not in line and "unknown noise" in line


def test_sweeps_sharing_a_cache_each_describe_their_cells(tmp_path):
    """Two sweeps over disjoint samplers into one cache (as two processes would): every cell
    folder says what it holds in its own cell.json, and the index keeps both sweeps' cells."""
    import json

    model = stub()
    names = list(SAMPLERS)
    for name in names:
        sweep(model, {name: SAMPLERS[name]}, steps=[2], num_samples=2, seeds=[0], cache_dir=tmp_path,
              progress=False)
    cells = {json.loads(p.read_text())["sampler"]: p.parent.name for p in tmp_path.glob("*/cell.json")}
    assert set(cells) == set(names)
    index = json.loads((tmp_path / "sweep.json").read_text())["cells"]
    assert set(index) == set(cells.values())
    assert all((tmp_path / key / "samples.parquet").exists() for key in cells.values())


RANK_SCRIPT = '''
import json, os, sys
import pandas as pd
sys.path.insert(0, {tests!r})
from test_sweep import SAMPLERS, stub
import importlib
from explorer.sweep import sweep
sweep_module = importlib.import_module("explorer.sweep")

generated = []
real = sweep_module._generate_cell
def counting(model, cell, *a, **kw):
    generated.append([cell.sampler.config["name"], int(cell.steps)])
    return real(model, cell, *a, **kw)
sweep_module._generate_cell = counting
df = sweep(stub(), SAMPLERS, steps=[2, 3], num_samples=3, seeds=[0], cache_dir={cache!r}, progress=False)
rank = int(os.environ["RANK"])
json.dump(generated, open(os.path.join({out!r}, f"rank{{rank}}.json"), "w"))
if rank == 0:
    df.to_parquet(os.path.join({out!r}, "rows.parquet"))
'''


def test_torchrun_spreads_the_grid_over_ranks_and_gathers_on_rank_zero(tmp_path):
    """`torchrun --nproc_per_node=2` on CPU (gloo, initialised by the sweep itself): each rank
    generates only its own cells, and rank 0 returns every row, equal to a one-process sweep."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:  # a free local port for the rendezvous (loopback only)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT.format(tests=str(Path(__file__).parent), cache=str(tmp_path / "cache"),
                                         out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={port}", str(script)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    per_rank = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 2  # 4 cells, two each, none twice
    assert sorted(map(tuple, per_rank[0] + per_rank[1])) == sorted(
        (smp.config["name"], T) for smp in SAMPLERS.values() for T in (2, 3))
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    plain = sweep(stub(), SAMPLERS, steps=[2, 3], num_samples=3, seeds=[0], progress=False)
    key = ["sampler", "steps", "seed", "metric"]
    a = rows.sort_values(key).reset_index(drop=True)
    b = plain.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key]) and np.allclose(a["value"], b["value"])


def test_a_repeated_step_or_seed_is_refused(tmp_path):
    """A repeat would run a cell twice and count it twice in the means (a too-small stderr)."""
    with pytest.raises(ValueError, match="steps .* repeat 2"):
        sweep(stub(), SAMPLERS, steps=[2, 4, 2], num_samples=2, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="seeds .* repeat 0"):
        sweep(stub(), SAMPLERS, steps=[2], seeds=[0, 0], num_samples=2, cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_cli_baseline_must_be_a_sampler_and_a_stale_table_goes(tmp_path, monkeypatch, capsys):
    """A misspelled --baseline is refused, naming the samplers; a run without a return-on-compute
    table removes an earlier run's, which would otherwise pass for this one's."""
    model = stub()
    monkeypatch.setattr(explorer, "load_model", lambda *a, **k: model)
    out = tmp_path / "sweep"
    grid = ["--model", "toy", "--steps", "L", "--num-samples", "2", "--out", str(out), "--no-progress"]
    assert explorer.cli.main(["sweep", *grid, "--samplers", "mdlm,remdm-cap", "--baseline", "mdl"]) == 2
    err = capsys.readouterr().err
    assert "--baseline 'mdl' is not one of the samplers (mdlm, remdm-cap)" in err and not out.exists()
    metric = lambda ids, texts: pd.DataFrame({"metric": ["gen_ppl"], "value": [1.0], "stderr": [0.1]})  # noqa: E731
    monkeypatch.setattr(sweep_module, "get_metric", lambda m, **k: sweep_module.Metric("gen_ppl", metric))
    monkeypatch.setattr("explorer.cli.sweep.judge_from_cli", lambda *a, **k: None)
    assert main([*grid, "--samplers", "mdlm,remdm-cap", "--metrics", "gen_ppl"]) == 0
    assert (out / "return_on_compute.parquet").exists()
    assert main([*grid, "--samplers", "remdm-cap", "--metrics", "gen_ppl"]) == 0
    assert not (out / "return_on_compute.parquet").exists()


def test_cli_cache_dir_under_a_missing_folder_is_refused(tmp_path, capsys):
    rc = explorer.cli.main(["sweep", "--model", "orders", "--out", str(tmp_path / "o"),
                            "--cache-dir", str(tmp_path / "no" / "deep" / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "--cache-dir" in err and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_a_fixed_length_is_refused_before_any_work(tmp_path):
    """A prompted model (LLaDA, Dream: seq_len None) has no canvas a sweep can fill; it is refused
    with the command that compares samplers on it, before any folder is made."""
    from types import SimpleNamespace
    from explorer.sweep import sweep
    with pytest.raises(ValueError, match="fixed-length model.*explorer strategies"):
        sweep(SimpleNamespace(seq_len=None), "mdlm", [4], cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_cli_mauve_references_are_checked_before_any_work(tmp_path, capsys):
    """A missing references file fails before the model loads and leaves no output folder; references
    given without the mauve metric are refused rather than silently unused."""
    out = tmp_path / "o"
    rc = explorer.cli.main(["sweep", "--model", "orders", "--metrics", "mauve", "--out", str(out),
                            "--mauve-references", str(tmp_path / "missing.txt")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.txt" in err and not out.exists()
    rc = explorer.cli.main(["sweep", "--model", "orders", "--metrics", "validity", "--out", str(out),
                            "--mauve-references", "heldout"])
    err = capsys.readouterr().err
    assert rc == 2 and "mauve is not among the metrics" in err and "add mauve to --metrics" in err
    assert not out.exists()


def test_a_metric_that_cannot_read_the_model_is_refused_by_the_library_before_any_work(tmp_path):
    """validity on a model that does not write orders records would score every sample 0, and the
    shipped stories judge on orders records would score word salad: both refused up front, naming
    the metric and the fix; a judge of the user's choice is theirs to pick."""
    with pytest.raises(ValueError, match="metric 'validity' does not fit.*does not write them.*entropy"):
        sweep(stub(), SAMPLERS, steps=[2], num_samples=2, metrics=["validity"], cache_dir=tmp_path / "c",
              progress=False)
    orders = explorer.load_model("orders")
    for name in ("gen_ppl", "mauve"):
        with pytest.raises(ValueError, match=f"metric '{name}' does not fit.*stories-judge.*orders records"):
            sweep(orders, SAMPLERS, steps=[2], num_samples=2, metrics=[name], cache_dir=tmp_path / "c",
                  progress=False)
    assert not (tmp_path / "c").exists()
    from explorer.metrics.registry import get_metric
    assert get_metric("validity").unfit(orders) is None and get_metric("entropy").unfit(stub()) is None
    assert get_metric("gen_ppl", judge="some-judge").unfit(orders) is None
