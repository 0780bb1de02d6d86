"""Experiment grids: naming, selection, shards, idempotent and resumable execution, slurm jobs."""
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from mgiad import experiments as ex
from mgiad import paper
from mgiad import training as train_mod
from mgiad.training import trainer as trainer_mod
from mgiad.checkpoint import load_checkpoint
from mgiad.cli import main

# a tiny grid on the bundled digits: 2 models x 2 seeds x 1 epoch
TINY = ex.Experiment("tiny", "Tiny grid on digits", (
    ex.Entry("MGiaD tiny", "mgiad", dict(widths=(8, 16), coarse_channels=4, group_size=2), "digits"),
    ex.Entry("ResNet20 x0.5", "resnet20", dict(width_mult=0.5), "digits"),
))
BUDGET = ex.Budget(epochs=1, batch_size=64)
OPTIONS = dict(progress=False)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: these tiny models gain nothing from two, and on a shared 2-core
    machine two spinning OpenMP threads per process slow the steps down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quiet(*args, **kwargs):
    pass


_CACHE: dict = {}


def tiny_grid(tmp_path_factory):
    """The tiny grid, run once per test session (test_report.py reads the same runs)."""
    if "grid" not in _CACHE:
        root = tmp_path_factory.mktemp("grid")
        specs = ex.plan(TINY, seeds=2, budget=BUDGET)
        results = ex.run_grid(specs, root, OPTIONS, log=quiet)
        _CACHE["grid"] = (root, specs, results)
    return _CACHE["grid"]


@pytest.fixture
def grid(tmp_path_factory):
    return tiny_grid(tmp_path_factory)


def test_grid_creates_every_run(grid):
    root, specs, results = grid
    assert [r.status for r in results] == ["trained"] * 4
    names = sorted(p.name for p in (root / "tiny").iterdir())
    assert names == sorted(s.name for s in specs) == [
        "digits-mgiad-w8.16-ck4-gs2-e1-b64-s0", "digits-mgiad-w8.16-ck4-gs2-e1-b64-s1",
        "digits-resnet20-x0.5-e1-b64-s0", "digits-resnet20-x0.5-e1-b64-s1"]
    for spec in specs:
        d = spec.directory(root)
        assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json",
                "experiment.json", "train.log"} <= {p.name for p in d.iterdir()}
        info = json.loads((d / "experiment.json").read_text())
        config = json.loads((d / "config.json").read_text())
        assert info["seed"] == config["train"]["seed"] == spec.seed
        assert info["budget"] == {"tag": "e1-b64", "overrides": {"epochs": 1, "batch_size": 64}}
        assert config["train"]["epochs"] == 1 and config["train"]["batch_size"] == 64
    # the seeds differ: different initialisations, different results
    a, b = (json.loads((s.directory(root) / "metrics.jsonl").read_text().splitlines()[0])
            for s in specs if s.entry.model == "mgiad")
    assert a["train_loss"] != b["train_loss"]


def test_rerun_skips_finished_runs(grid, monkeypatch):
    root, specs, _ = grid
    stamps = {s.name: (s.directory(root) / "summary.json").stat().st_mtime_ns for s in specs}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(train_mod, "train", no_training)
    results = ex.run_grid(ex.plan(TINY, seeds=2, budget=BUDGET), root, OPTIONS, log=quiet)
    assert [r.status for r in results] == ["skipped"] * 4
    assert stamps == {s.name: (s.directory(root) / "summary.json").stat().st_mtime_ns for s in specs}


def test_killed_run_resumes_and_failure_does_not_stop_the_grid(tmp_path, monkeypatch, grid):
    reference = grid[1][0].directory(grid[0])  # the grid's uninterrupted MGiaD run, seed 0
    one = ex.Experiment("tiny", "", TINY.entries[:1])
    broken = ex.Entry("broken", "mgiad", dict(widths=(8, 16), coarse_channels=4, group_size=3),
                      "digits")  # group_size 3 does not divide 8: this run fails
    specs = ex.plan(one, seeds=1, budget=BUDGET) + ex.plan(
        ex.Experiment("tiny", "", (broken,)), seeds=1, budget=BUDGET)
    calls = {"n": 0}
    real = trainer_mod.stop_requested

    def stop_once(stop, runtime):  # Ctrl-C in the middle of the first run's epoch
        calls["n"] += 1
        return calls["n"] == 11 or real(stop, runtime)  # checked after every step
    monkeypatch.setattr(trainer_mod, "stop_requested", stop_once)
    with pytest.raises(KeyboardInterrupt):
        ex.run_grid(specs, tmp_path, OPTIONS, log=quiet)
    first = specs[0].directory(tmp_path)
    assert ex.run_status(first) == "partial" and ex.run_status(specs[1].directory(tmp_path)) == "new"
    assert load_checkpoint(first / "last.pt")["batch"] == 11  # mid-epoch: 11 of 22 batches
    monkeypatch.setattr(trainer_mod, "stop_requested", real)

    lines = []
    results = ex.run_grid(specs, tmp_path, OPTIONS, log=lines.append)
    assert [r.status for r in results] == ["resumed", "failed"]
    assert "group_size" in results[1].error and (results[1].directory / "error.log").is_file()
    assert any("FAILED" in line for line in lines) and any("resuming" in line for line in lines)
    assert json.loads((first / "summary.json").read_text())["epochs"] == 1
    # resuming gives exactly the weights of the uninterrupted run
    ours, theirs = load_checkpoint(first / "last.pt")["model"], load_checkpoint(reference / "last.pt")["model"]
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # a re-run retries only the failed run
    results = ex.run_grid(specs, tmp_path, OPTIONS, log=quiet)
    assert [r.status for r in results] == ["skipped", "failed"]


def test_cli_exit_status_and_dry_run(tmp_path, monkeypatch, capsys):
    broken = ex.Entry("broken", "mgiad", dict(widths=(8, 16), coarse_channels=4, group_size=3),
                      "digits")
    monkeypatch.setitem(ex.EXPERIMENTS, "broken", ex.Experiment("broken", "", (broken,)))
    argv = ["reproduce", "--experiment", "broken", "--seeds", "1", "--epochs", "1",
            "--runs", str(tmp_path), "--no-progress"]
    assert main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "new" in out and "digits-mgiad-w8.16-ck4-gs3-e1-s0" in out and "1 runs" in out
    assert "budget on digits: e1 (epochs=1, batch_size=32" in out
    assert not (tmp_path / "broken").exists()  # a dry run creates nothing
    assert main(argv + ["--dry-run", "--shard", "1/2"]) == 0
    assert "shard 1/2: 0 of 1 runs" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(argv + ["--launcher", "slurm"]) == 2
    err = capsys.readouterr().err
    assert 'pip install -c constraints.txt -e ".[slurm]"' in err and "submitit" in err
    assert main(argv + ["--shard", "2/2"]) == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out


def test_a_prefix_run_extends_to_the_same_weights_as_a_longer_run(tmp_path):
    """Step schedule: asking for more epochs continues the finished run, and the result is the
    run that had been planned that long from the start."""
    one = ex.Experiment("tiny", "", TINY.entries[:1])
    short = ex.plan(one, seeds=1, budget=ex.Budget(epochs=1, batch_size=64, schedule="step"))
    assert short[0].budget.prefix and short[0].budget.tag == "b64-step"
    assert [r.status for r in ex.run_grid(short, tmp_path / "a", OPTIONS, log=quiet)] == ["trained"]
    longer = ex.plan(one, seeds=1, budget=ex.Budget(epochs=2, batch_size=64, schedule="step"))
    assert longer[0].name == short[0].name
    assert ex.spec_status(longer[0], tmp_path / "a") == "shorter"
    assert ex.spec_status(short[0], tmp_path / "a") == "done"
    results = ex.run_grid(longer, tmp_path / "a", OPTIONS, log=quiet)
    assert [r.status for r in results] == ["resumed"] and results[0].summary["epochs"] == 2
    run = longer[0].directory(tmp_path / "a")
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2
    assert config["changes_on_resume"] == [
        {"at_epoch": 1, "from": {"epochs": 1}, "to": {"epochs": 2}, "note": ""}]
    direct = ex.run_grid(longer, tmp_path / "b", OPTIONS, log=quiet)
    assert direct[0].status == "trained"
    extended = load_checkpoint(run / "last.pt")["model"]
    planned = load_checkpoint(longer[0].directory(tmp_path / "b") / "last.pt")["model"]
    assert all(torch.equal(extended[k], planned[k]) for k in planned)
    assert [r.status for r in ex.run_grid(short, tmp_path / "a", OPTIONS, log=quiet)] == ["skipped"]


def test_paper_runs_train_in_float32_unless_amp_is_asked_for(tmp_path):
    spec = ex.plan(ex.get_experiment("table2"), seeds=1, levels=3)[0]
    assert spec.train_config(tmp_path).amp is False
    assert spec.train_config(tmp_path, {"amp": True}).amp is True
    assert spec.train_config(tmp_path, {"amp": None}).amp is False


def test_run_names_are_deterministic_and_budget_normalised():
    table2 = ex.get_experiment("table2")
    a = ex.plan(table2, seeds=1, budget=ex.Budget(epochs=5), levels=3)
    b = ex.plan(table2, seeds=1, budget=ex.Budget(epochs=5, schedule="step", lr=0.05), levels=3)
    assert [s.name for s in a] == [s.name for s in b]  # overrides equal to the recipe: same runs
    # the step schedule does not depend on the number of epochs: a 5-epoch run is a prefix of
    # the paper's, and its directory is the paper's run
    assert a[0].name == "fashion-mnist-resnet20-paper-s0" and a[0].budget.prefix
    assert a[0].epochs == 5 and ex.plan(table2, seeds=1, levels=3)[0].epochs == 400
    full = ex.plan(table2, seeds=1, budget=ex.Budget(epochs=400))
    assert all(s.budget.tag == "paper" for s in full)


def test_table2_three_level_slice_and_mislabelled_rows():
    table2 = ex.get_experiment("2")
    slice3 = table2.select(levels=3)
    assert [e.label for e in slice3] == [
        "ResNet20", "MgNet^{A,B} 16-32-64 nu=3", "MGiaD 16-32-64 c_K=16 g_s=4",
        "MGiaD 16-32-64 c_K=16 g_s=8", "MGiaD 16-32-64 c_K=16 g_s=16"]
    # counting-only anomalies (3-channel counts) never change the trained network
    assert all("in_chans" not in e.kwargs for e in slice3)
    by_label = {e.label: e for e in table2.entries}
    assert by_label["MGiaD c_K=64 g_s=8"].kwargs["group_size"] == 64
    assert by_label["MGiaD c_K=32 g_s=32"].kwargs["group_size"] == 16
    assert by_label["MGiaD c_K=16 g_s=4"].kwargs["group_size"] == 16
    assert by_label["MGiaD c_K=16 g_s=16"].kwargs["group_size"] == 4
    assert "wrong" in by_label["MGiaD c_K=16 g_s=4"].note
    assert len({e.key for e in table2.entries}) == len(table2.entries) == 13


def test_named_experiments_cover_the_paper():
    assert set(ex.EXPERIMENTS) == {"table1", "table2", "table3", "fig7"}
    assert len(ex.get_experiment("table3").entries) == len(paper.rows("3")) == 24
    assert ex.get_experiment("table3").datasets == ["cifar100", "tiny-imagenet", "imagenet"]
    fig7 = ex.get_experiment("figure7")
    assert fig7.datasets == ["cifar10"]
    assert {e.paper.label for e in fig7.entries if e.paper} == {
        "ResNet18", "ResNet20", "MgNet^{A,B}", "MgNet^{A,B} 16-32-64 nu=3",
        "MGiaD lambda=3 g_s=4", "MGiaD lambda=3 g_s=8"}
    imagenet = ex.plan(ex.get_experiment("table3"), seeds=1, dataset="imagenet")
    assert all(s.entry.model_kwargs()["stem"] == "imagenet" for s in imagenet)
    with pytest.raises(ValueError, match="no configurations"):
        ex.plan(ex.get_experiment("table1"), dataset="imagenet")
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.get_experiment("table9")


def test_shards_partition_the_plan():
    specs = ex.plan(ex.get_experiment("fig7"), seeds=3)
    parts = [ex.shard(specs, i, 4) for i in range(4)]
    names = [s.name for p in parts for s in p]
    assert sorted(names) == sorted(s.name for s in specs) and len(set(names)) == len(specs)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert ex.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            ex.parse_shard(bad)


def test_slurm_builds_one_job_per_unfinished_run(grid, tmp_path, monkeypatch):
    root, specs, _ = grid
    pending = ex.plan(TINY, seeds=3, budget=BUDGET)  # seed 2 is not run yet
    jobs = ex.slurm_jobs(pending, root, OPTIONS)
    assert [j.spec.name for j in jobs] == [s.name for s in pending if s.seed == 2]

    submitted, params = [], {}

    class FakeExecutor:
        def __init__(self, folder):
            params["folder"] = folder

        def update_parameters(self, **kw):
            params.update(kw)

        def batch(self):
            import contextlib
            return contextlib.nullcontext()

        def submit(self, fn, *args):
            submitted.append(fn)
            return types.SimpleNamespace(job_id=str(len(submitted)))

    fake = types.ModuleType("submitit")
    fake.AutoExecutor = FakeExecutor
    monkeypatch.setitem(sys.modules, "submitit", fake)
    handles = ex.submit_slurm(pending, root, OPTIONS, {"timeout_min": 60, "slurm_partition": "gpu",
                                                      "mem_gb": None}, log=quiet)
    assert [h.job_id for h in handles] == ["1", "2"]
    assert [j.spec.name for j in submitted] == [j.spec.name for j in jobs]
    assert params["timeout_min"] == 60 and params["slurm_partition"] == "gpu"
    assert "mem_gb" not in params and params["folder"].startswith(str(root))
    import pickle
    assert pickle.loads(pickle.dumps(submitted[0])).spec == submitted[0].spec

    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed: a clear error
    with pytest.raises(ValueError, match=r'-c constraints.txt -e "\.\[slurm\]"'):
        ex.submit_slurm(pending, root, OPTIONS)


def test_a_run_directory_holding_another_configuration_is_refused_naming_both(grid, tmp_path,
                                                                               monkeypatch):
    """A folder under the plan's name that holds another network (or seed) is neither skipped
    nor resumed: the report would file it under this run's paper row."""
    import shutil
    root, specs, _ = grid
    by = {(s.entry.model, s.seed): s for s in specs}
    mgiad0, mgiad1, resnet0 = by["mgiad", 0], by["mgiad", 1], by["resnet20", 0]
    shutil.copytree(resnet0.directory(root), mgiad0.directory(tmp_path))  # another network
    shutil.copytree(mgiad0.directory(root), mgiad1.directory(tmp_path))   # another seed
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: pytest.fail("trained"))
    results = ex.run_grid([mgiad0, mgiad1], tmp_path, OPTIONS, log=quiet)
    assert [r.status for r in results] == ["failed", "failed"]
    assert "resnet20_x0p5" in results[0].error and "mgiad_8_16_ck4_gs2" in results[0].error
    assert "mgiad_8_16_ck4_gs2 with seed=0; the plan's is mgiad_8_16_ck4_gs2 with seed=1" in results[1].error
    # the record of the run that was there is untouched
    assert json.loads((mgiad0.directory(tmp_path) / "experiment.json").read_text())["model"] == "resnet20"
    # the grid's own runs still pass the check (and are skipped)
    assert [r.status for r in ex.run_grid(specs, root, OPTIONS, log=quiet)] == ["skipped"] * 4


def test_an_empty_shard_is_an_error_not_the_whole_grid(capsys):
    assert main(["reproduce", "--table", "2", "--shard", "", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--shard takes i/n" in err and "Traceback" not in err
