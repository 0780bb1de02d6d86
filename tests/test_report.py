"""Report: tables with the right mean and std, budgets kept apart, the paper beside ours, figures."""
import csv
import json
import re
import shutil
import statistics
import sys

import numpy as np
import pytest

from mgiad import report
from mgiad.cli import main

from test_experiments import single_thread, tiny_grid  # noqa: F401 (fixture)


@pytest.fixture
def grid(tmp_path_factory):
    return tiny_grid(tmp_path_factory)


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_tables_have_the_mean_and_sample_std_of_the_seeds(grid, tmp_path):
    root, specs, _ = grid
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    for name in ("tiny-digits.md", "tiny-digits.csv", "tiny-digits.png", "tiny-digits.svg",
                 "report.md"):
        assert (out / name).is_file(), name
    rows = {r["label"]: r for r in _csv(out / "tiny-digits.csv")}
    assert set(rows) == {"MGiaD tiny", "ResNet20 x0.5"}
    md = (out / "tiny-digits.md").read_text()
    for label, row in rows.items():
        summaries = [json.loads((s.directory(root) / "summary.json").read_text())
                     for s in specs if s.entry.label == label]
        test = [s["final_test_acc"] for s in summaries]
        train = [s["final_train_acc"] for s in summaries]
        assert int(row["seeds"]) == 2 and row["seed_list"] == "0 1"
        assert float(row["test_acc"]) == pytest.approx(statistics.mean(test))
        assert float(row["test_acc_std"]) == pytest.approx(statistics.stdev(test))  # ddof=1
        assert float(row["train_acc"]) == pytest.approx(statistics.mean(train))
        assert float(row["best_test_acc"]) == pytest.approx(
            statistics.mean(s["best_test_acc"] for s in summaries))
        assert int(row["weights"]) == summaries[0]["weights"]  # no paper row: the whole model
        assert f"{statistics.mean(test):.2f} ({statistics.stdev(test):.2f})" in md
        assert row["train_acc_kind"] == "eval" and row["status"] == "finished"
        # one epoch of digits' 15, batch 64 instead of 32, and digits is not the paper's
        assert row["budget"] == "digits, 1 of 15 ep, batch 64 (not a paper recipe)"
        assert row["reduced_budget"] == "True" and row["comparable"] == "False"
    assert "**digits, 1 of 15 ep, batch 64 (not a paper recipe)**" in md and "ddof=1" in md
    assert "paper recipe," not in md and not re.search(r"paper \(\d+ ep\)", md)
    # the grid's runs have one epoch each: a learning-curve figure too
    assert (out / "tiny-digits-curves.png").is_file()


def test_report_figure_is_a_real_picture(grid, tmp_path):
    from PIL import Image, ImageStat
    root, _, _ = grid
    written = report.write_report([root], tmp_path, log=lambda *a: None)
    png = tmp_path / "tiny-digits.png"
    assert png in written["figures"]
    image = Image.open(png).convert("L")
    assert image.size == (1950, 960)  # 13 x 6.4 inches at 150 dpi
    pixels = np.asarray(image)
    non_white = float((pixels < 245).mean())
    assert 0.02 < non_white < 0.6, non_white      # axes, text, markers; not blank, not a blob
    assert ImageStat.Stat(image).stddev[0] > 20
    colourful = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colourful) > 50                    # coloured series, antialiased text
    svg = (tmp_path / "tiny-digits.svg").read_text()
    assert "<svg" in svg and "accuracy vs weights" in svg
    assert tmp_path / "tiny-digits-curves.png" in written["figures"]


def _curve(epochs, final, seed=0):
    """metrics.jsonl entries rising towards ``final`` (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    return [{"epoch": e, "lr": 0.05, "train_loss": 1.0 / e, "train_running_acc": final + 3 - 8 / e,
             "test_loss": 0.3, "test_acc": round(float(final - 6 / e + rng.uniform(-0.1, 0.1)), 3),
             "seconds": 10.0, "images_per_s": 300.0 + seed, "elapsed": 11.0 * e}
            for e in range(1, epochs + 1)]


def _fake_run(root, name, experiment, dataset, model, model_args, epochs, test, train, budget,
              paper_row=None, seed=0, summary=None, metrics=None, train_config=None):
    """A run as the report sees it (only its files). ``test`` None: in progress (no summary.json;
    ``metrics`` so far); ``experiment`` None: a plain ``mgiad train`` run (no experiment.json)."""
    d = root / (experiment or "plain") / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "model": model, "model_args": model_args, "dataset": dataset, "device": "cpu",
        "train": {"seed": seed, "epochs": epochs, "model_args": model_args,
                  **(train_config or {})}}))
    if metrics is not None:
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if test is None:
        (d / "last.pt").write_bytes(b"")
    else:
        (d / "summary.json").write_text(json.dumps({
            "model": model, "dataset": dataset, "weights": 1, "flops": 2e7, "epochs": epochs,
            "best_test_acc": test + 0.1, "final_test_acc": test, "train_acc": train,
            "final_train_acc": train, "final_train_running_acc": (train or 0.0) - 1.0,
            "wall_seconds": 10.0, "images_per_s": 500.0 + seed, "device": "cpu",
            **(summary or {})}))
    if experiment:
        (d / "experiment.json").write_text(json.dumps({
            "experiment": experiment, "key": name.rsplit("-", 2)[0], "label": paper_row or model,
            "model": model, "model_args": model_args, "dataset": dataset, "seed": seed,
            "budget": budget, "paper_row": paper_row and {"table": "2", "label": paper_row},
            "note": ""}))
    return d


FM3_GS8 = {"num_classes": 10, "in_chans": 1, "widths": [16, 32, 64], "coarse_channels": 16,
           "group_size": 8}
GS8 = "MGiaD 16-32-64 c_K=16 g_s=8"   # paper: 37k weights, 93.35 (0.09), train 97.63
RESNET20 = {"num_classes": 10, "in_chans": 1, "stem": "cifar", "width_mult": 1, "shortcut": "A"}
MGNET = {"num_classes": 10, "in_chans": 1, "widths": [16, 32, 64], "smoothing_steps": 3,
         "transfer_norm": False}
DIGITS_TRAIN = {"batch_size": 64, "lr": 0.05, "schedule": "cosine", "step_size": 25}
DIGITS_ARGS = {"num_classes": 10, "in_chans": 1, "widths": [16, 32, 64], "coarse_channels": 16,
               "group_size": 4}


def test_budgets_are_never_mixed_and_the_paper_is_beside_ours(tmp_path):
    runs = tmp_path / "runs"
    full = {"tag": "paper", "overrides": {}}
    short = {"tag": "e5", "overrides": {"epochs": 5}}
    for seed, acc in enumerate((93.0, 93.5, 94.0)):
        _fake_run(runs, f"fm-gs8-paper-s{seed}", "table2", "fashion-mnist", "mgiad", FM3_GS8, 400,
                  acc, 97.0, full, GS8, seed)
    _fake_run(runs, "fm-gs8-e5-s0", "table2", "fashion-mnist", "mgiad", FM3_GS8, 5, 90.0, 91.0,
              short, GS8)
    (runs / "table2" / "unreadable").mkdir()
    (runs / "table2" / "unreadable" / "config.json").write_text("{}")
    (runs / "table2" / "unreadable" / "last.pt").write_bytes(b"")
    out = tmp_path / "report"
    report.write_report(runs, out, figures=False, log=lambda *a: None)
    rows = _csv(out / "table2-fashion-mnist.csv")
    assert [(r["budget"], r["seeds"]) for r in rows] == [("paper recipe, 400 ep", "3"),
                                                         ("5 of 400 ep", "1")]
    full_row, short_row = rows
    assert full_row["comparable"] == "True" and full_row["reduced_budget"] == "False"
    assert float(full_row["test_acc"]) == pytest.approx(93.5)
    assert float(full_row["test_acc_std"]) == pytest.approx(0.5)
    assert float(full_row["paper_test_acc"]) == 93.35
    assert float(full_row["test_acc_diff"]) == pytest.approx(93.5 - 93.35)
    assert float(full_row["paper_train_acc"]) == 97.63
    assert float(full_row["train_acc_diff"]) == pytest.approx(97.0 - 97.63)
    assert float(full_row["train_running_acc"]) == pytest.approx(96.0)
    assert full_row["paper_weights_k"] == "37" and full_row["c_K"] == "16" and full_row["g_s"] == "8"
    # table 2 counts MGiaD without its classifier, as the paper does: 36.6k
    assert full_row["weights_counted_without_classifier"] == "True"
    assert 36_000 < int(full_row["weights"]) < 37_000
    assert short_row["test_acc_std"] == "" and short_row["reduced_budget"] == "True"
    md = (out / "table2-fashion-mnist.md").read_text()
    assert "| MGiaD 16-32-64 | 16 | 8 | paper recipe, 400 ep | 3 |" in md
    assert "93.50 (0.50) | 93.35 (0.09) | +0.15" in md
    assert "**5 of 400 ep**" in md and "90.00 | 93.35 (0.09) | -3.35" in md
    text = (out / "report.md").read_text()
    assert "1 directory naming no known model or dataset skipped" in text and "unreadable" in text


def test_speeds_of_seeds_on_different_devices_are_never_averaged(tmp_path):
    runs = tmp_path / "runs"
    full = {"tag": "paper", "overrides": {}}
    _fake_run(runs, "fm-gs8-paper-s0", "table2", "fashion-mnist", "mgiad", FM3_GS8, 400, 93.0,
              97.0, full, GS8, 0, summary={"images_per_s": 400.0})
    for seed, speed in ((1, 9000.0), (2, 11000.0)):
        _fake_run(runs, f"fm-gs8-paper-s{seed}", "table2", "fashion-mnist", "mgiad", FM3_GS8, 400,
                  93.5, 97.0, full, GS8, seed, summary={
                      "images_per_s": speed, "device": "cuda", "device_name": "NVIDIA H200"})
    _fake_run(runs, "fm-gs4-paper-s0", "table2", "fashion-mnist", "mgiad",
              {**FM3_GS8, "group_size": 4}, 400, 92.8, 97.0, full, "MGiaD 16-32-64 c_K=16 g_s=4",
              summary={"images_per_s": 300.0})
    out = tmp_path / "report"
    report.write_report(runs, out, figures=False, log=lambda *a: None)
    rows = {r["g_s"]: r for r in _csv(out / "table2-fashion-mnist.csv")}
    assert rows["8"]["images_per_s"] == ""           # no mean over a CPU and a GPU
    assert rows["8"]["images_per_s_by_device"] == "NVIDIA H200 10000; cpu 400"
    assert rows["8"]["device"] == "NVIDIA H200,cpu" and rows["8"]["seeds"] == "3"
    assert float(rows["4"]["images_per_s"]) == 300.0 and rows["4"]["device"] == "cpu"
    md = (out / "table2-fashion-mnist.md").read_text()
    assert "| NVIDIA H200 10000; cpu 400 |" in md and "| 300 |" in md
    # the figure's speed axis holds one device: the one every row has (g_s=4 ran on the CPU only)
    from mgiad.report_figures import _throughput
    table = [report.summarize_group(g) for g in report.group_runs(report.load_runs([runs])[0])]
    by_gs = {r["g_s"]: r for r in table}
    speeds, device = _throughput([by_gs[8], by_gs[4]])
    assert (speeds, device) == ([400.0, 300.0], "cpu")
    gpu = {**by_gs[4], "speeds": {"NVIDIA H200": 8000.0, "cpu": 300.0},
           "speed_runs": {"NVIDIA H200": 1, "cpu": 1}}
    assert _throughput([by_gs[8], gpu]) == ([10000.0, 8000.0], "NVIDIA H200")  # 3 runs vs 2


@pytest.fixture
def mixed_runs(tmp_path):
    """Runs as they pile up: a truncated "paper" run of 30 epochs with a duplicate of a seed, a
    run in progress, an old run whose summary holds only the running train accuracy, and plain
    digits runs (two directories with the same seed)."""
    import os
    runs = tmp_path / "runs"
    prefix = {"tag": "paper", "overrides": {"epochs": 30}}
    kept = {}
    for seed, acc in enumerate((92.0, 92.4, 92.2)):
        kept[seed] = _fake_run(runs, f"fashion-mnist-gs8-paper-s{seed}", "table2", "fashion-mnist",
                               "mgiad", FM3_GS8, 30, acc, 96.5, prefix, GS8, seed,
                               metrics=_curve(30, acc, seed))
    # the same run (configuration, budget, epochs, seed 0) in a second folder, older: one seed
    stale = _fake_run(tmp_path / "old-copy", "fashion-mnist-gs8-paper-s0", "table2",
                      "fashion-mnist", "mgiad", FM3_GS8, 30, 50.0, 60.0, prefix, GS8, 0,
                      metrics=_curve(30, 50.0))
    for f in stale.iterdir():
        os.utime(f, (1_000_000_000, 1_000_000_000))
    progress = _fake_run(runs, "fashion-mnist-resnet20-paper-s0", "table2", "fashion-mnist",
                         "resnet20", RESNET20, 30, None, None, prefix, "ResNet20", 0,
                         metrics=_curve(12, 91.0, 7))
    old_metrics = [{k: v for k, v in m.items() if k != "train_running_acc"} |
                   {"train_acc": m["train_running_acc"]} for m in _curve(5, 91.3, 3)]
    old = _fake_run(runs, "fashion-mnist-mgnet-w16.32.64-nu3-tn0-e5-ss2-s0", "table2",
                    "fashion-mnist", "mgnet", MGNET, 5, 91.34, None,
                    {"tag": "e5-ss2", "overrides": {"epochs": 5, "step_size": 2}},
                    "MgNet^{A,B} 16-32-64 nu=3", 0, metrics=old_metrics)
    summary = json.loads((old / "summary.json").read_text())
    for key in ("train_acc", "final_train_running_acc"):   # as written before eval-mode train_acc
        del summary[key]
    summary["final_train_acc"] = 90.84
    (old / "summary.json").write_text(json.dumps(summary))
    digits = {}
    for name, seed, acc, stamp in (("mgiad-digits-20250101-000000", 0, 97.0, 1_100_000_000),
                                   ("mgiad-digits-20250102-000000", 0, 98.0, 1_200_000_000),
                                   ("mgiad-digits-20250103-000000", 1, 97.6, 1_300_000_000)):
        d = _fake_run(runs, name, None, "digits", "mgiad", DIGITS_ARGS, 15, acc, 99.0, None,
                      seed=seed, metrics=_curve(15, acc, seed), train_config=DIGITS_TRAIN)
        for f in d.iterdir():
            os.utime(f, (stamp, stamp))
        digits[name] = d
    return tmp_path, [runs, tmp_path / "old-copy"], kept, stale, progress, old, digits


def test_same_seed_twice_is_one_seed_and_labels_say_whose_recipe(mixed_runs):
    tmp_path, roots, kept, stale, _, _, digits = mixed_runs
    out = tmp_path / "report"
    report.write_report(roots, out, figures=False, log=lambda *a: None)
    rows = [r for r in _csv(out / "table2-fashion-mnist.csv") if r["status"] == "finished"]
    gs8 = next(r for r in rows if r["label"] == GS8)
    # three seeds (not four): the stale copy of seed 0 is dropped, the newer one kept
    assert gs8["seeds"] == "3" and gs8["seed_list"] == "0 1 2"
    assert float(gs8["test_acc"]) == pytest.approx(statistics.mean((92.0, 92.4, 92.2)))
    assert float(gs8["test_acc_std"]) == pytest.approx(statistics.stdev((92.0, 92.4, 92.2)))
    assert gs8["duplicates"] == str(stale) and str(stale) not in gs8["runs"]
    # the paper's recipe stopped after 30 of its 400 epochs: reduced, labelled so
    assert gs8["budget"] == "paper recipe, 30 of 400 ep" and gs8["budget_tag"] == "paper"
    assert gs8["reduced_budget"] == "True" and gs8["comparable"] == "False"
    assert gs8["epochs"] == "30" and gs8["paper_epochs"] == "400"
    # digits: two directories of seed 0 are one seed (the newest); not the paper's recipe
    (plain,) = _csv(out / "runs-digits.csv")
    assert plain["budget"] == "digits, 15 ep, batch 64 (not a paper recipe)"
    assert plain["seeds"] == "2" and plain["seed_list"] == "0 1"
    assert float(plain["test_acc"]) == pytest.approx(statistics.mean((98.0, 97.6)))
    assert float(plain["test_acc_std"]) == pytest.approx(statistics.stdev((98.0, 97.6)))
    assert plain["duplicates"] == str(digits["mgiad-digits-20250101-000000"])
    assert plain["reduced_budget"] == "True" and plain["comparable"] == "False"  # batch 64, not 32
    text = (out / "report.md").read_text()
    assert not re.search(r"paper \(\d+ ep\)", text)
    assert "digits, 15 ep, batch 64 (not a paper recipe)" in text
    assert "2 duplicate run directories dropped" in text
    assert f"`{stale}` (finished): kept `{kept[0]}` (finished)" in text
    assert f"`{digits['mgiad-digits-20250101-000000']}` (finished): kept " \
           f"`{digits['mgiad-digits-20250102-000000']}`" in text


def test_old_runs_train_accuracy_is_marked_running(mixed_runs):
    tmp_path, roots, *_ = mixed_runs
    out = tmp_path / "report"
    report.write_report(roots, out, figures=False, log=lambda *a: None)
    rows = {r["label"]: r for r in _csv(out / "table2-fashion-mnist.csv")
            if r["status"] == "finished"}
    old, new = rows["MgNet^{A,B} 16-32-64 nu=3"], rows[GS8]
    assert old["budget"] == "5 of 400 ep, lr step every 2 ep"
    assert old["train_acc_kind"] == "running" and float(old["train_acc"]) == 90.84
    assert float(old["train_running_acc"]) == 90.84
    assert old["train_acc_diff"] == "" and old["paper_train_acc"] == "100.0"  # not comparable
    assert new["train_acc_kind"] == "eval" and float(new["train_acc"]) == 96.5
    assert float(new["train_acc_diff"]) == pytest.approx(96.5 - 97.63)
    md = (out / "table2-fashion-mnist.md").read_text()
    assert "| 90.84 (running) | 100.00 | – |" in md
    assert "MgNet<sup>A,B</sup> 16-32-64 nu=3" in md and "MgNet^{A,B}" not in md
    assert report.train_accuracy({"final_train_acc": 91.0}) == (91.0, "running")
    assert report.train_accuracy({"final_train_acc": 91.0, "final_train_running_acc": 90.0}) == \
        (91.0, "eval")
    assert report.train_accuracy({"train_acc": 99.5, "final_train_acc": 99.5}) == (99.5, "eval")


def test_runs_in_progress_are_listed_not_counted(mixed_runs):
    tmp_path, roots, _, _, progress, _, _ = mixed_runs
    out = tmp_path / "report"
    written = report.write_report(roots, out, log=lambda *a: None)
    rows = _csv(out / "table2-fashion-mnist.csv")
    (running,) = [r for r in rows if r["status"] != "finished"]
    last = _curve(12, 91.0, 7)[-1]
    assert running["status"] == "in progress, epoch 12 of 30" and running["epochs_done"] == "12"
    assert running["label"] == "ResNet20" and running["budget"] == "paper recipe, 30 of 400 ep"
    assert float(running["test_acc"]) == pytest.approx(last["test_acc"])
    assert float(running["train_running_acc"]) == pytest.approx(last["train_running_acc"])
    assert float(running["test_acc_diff"]) == pytest.approx(last["test_acc"] - 93.02)
    assert running["train_acc"] == "" and running["runs"] == str(progress)
    # it is in no finished row's statistics: ResNet20 has no finished row
    assert sorted(r["label"] for r in rows if r["status"] == "finished") == [
        GS8, "MgNet^{A,B} 16-32-64 nu=3"]
    md = (out / "table2-fashion-mnist.md").read_text()
    assert "### Runs in progress" in md
    row = next(line for line in md.splitlines() if "in progress, epoch 12 of 30" in line)
    assert f"| {last['test_acc']:.2f} | 93.02 (0.31) |" in row
    assert f"| {last['train_running_acc']:.2f} |" in row
    text = (out / "report.md").read_text()
    assert "6 finished runs (3 configurations) and 1 in progress" in text
    # budget statement per table: epochs trained against the recipe's, seeds, the paper's 400
    assert "**Budget: paper recipe, 30 of 400 ep** — 30 epochs trained (the paper's recipe: " \
           "400); 1 configuration finished, 3 seeds per configuration (seeds 0, 1, 2); 1 run in " \
           "progress." in text
    assert "**Budget: 5 of 400 ep, lr step every 2 ep** — 5 epochs trained (the paper's " \
           "recipe: 400)" in text
    assert "15 epochs trained (the digits preset: 15)" in text
    assert "The paper's values are after its full recipe (400 epochs), mean (std) of 3 seeds. " \
           "Ours stop after 30 of those 400 epochs" in text
    # the learning curves: one figure per experiment and dataset, finished and in progress
    for name in ("table2-fashion-mnist-curves.png", "runs-digits-curves.png",
                 "table2-fashion-mnist.png"):
        assert out / name in written["figures"] and (out / name).stat().st_size > 10_000
    assert "(table2-fashion-mnist-curves.png)" in text


def test_only_runs_in_progress_still_make_a_report(tmp_path):
    runs = tmp_path / "runs"
    prefix = {"tag": "paper", "overrides": {"epochs": 30}}
    started = _fake_run(runs, "fashion-mnist-resnet20-paper-s0", "table2", "fashion-mnist",
                        "resnet20", RESNET20, 30, None, None, prefix, "ResNet20", 0)
    (started / "last.pt").unlink()  # just starting: experiment.json only
    (started / "config.json").unlink()
    info = json.loads((started / "experiment.json").read_text())
    info["model_args"] = {"stem": "cifar", "width_mult": 1, "shortcut": "A"}  # as reproduce has it
    (started / "experiment.json").write_text(json.dumps(info))
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    (row,) = _csv(out / "table2-fashion-mnist.csv")
    assert row["status"] == "in progress, epoch 0 of 30" and row["test_acc"] == ""
    # weights of ResNet20 for the dataset's 1 channel and 10 classes (not the model's defaults)
    assert int(row["weights"]) == report.comparable_weights("resnet20", RESNET20, False)
    assert int(row["weights"]) != report.comparable_weights("resnet20", info["model_args"], False)
    md = (out / "table2-fashion-mnist.md").read_text()
    assert "No finished runs yet." in md and "in progress, epoch 0 of 30" in md
    assert (out / "table2-fashion-mnist-curves.png").is_file()
    assert not (out / "table2-fashion-mnist.png").exists()   # nothing finished to place


def test_report_without_matplotlib_or_runs(grid, tmp_path, monkeypatch, capsys):
    root, _, _ = grid
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    lines = []
    written = report.write_report(root, tmp_path / "r", log=lines.append)
    assert written["figures"] == [] and (tmp_path / "r" / "tiny-digits.md").is_file()
    assert any('pip install -c constraints.txt -e ".[plot]"' in line for line in lines)
    assert not any("mgiad[plot]" in line for line in lines)  # mgiad is not on the index
    monkeypatch.undo()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "r2")]) == 1
    assert "no runs (finished or in progress)" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ figures
def test_log_ticks_label_several_values_that_never_crowd():
    from mgiad.report_figures import human, log_ticks
    # table 2's 3-level weights (28k-270k): several labelled ticks, not one "100k"
    ticks = log_ticks(20e3, 400e3)
    assert [human(t) for t in ticks] == ["20k", "30k", "50k", "100k", "200k", "300k"]
    for low, high, most in ((20e3, 400e3, 6), (85, 330, 6), (90, 110, 5), (1e3, 1e9, 4),
                            (2.5e4, 6e4, 6), (0.5, 3, 4), (140, 175, 3)):
        ticks = log_ticks(low, high, max_ticks=most, min_gap=0.1)
        assert 2 <= len(ticks) <= most, (low, high, ticks)
        assert all(low <= t <= high for t in ticks) and ticks == sorted(ticks)
        span = np.log10(high / low)
        assert min(np.diff(np.log10(ticks))) / span >= 0.1 - 1e-9, (low, high, ticks)
    with pytest.raises(ValueError):
        log_ticks(0, 10)


def test_accuracy_axis_never_goes_above_100_and_names_render_as_math():
    from mgiad.report_figures import accuracy_limits, mathtext
    low, high = accuracy_limits([97.5, 99.1], [99.0, 100.4])   # an error bar past 100
    assert high == 100.0 and low < 97.5
    low, high = accuracy_limits([91.0], [91.0])                 # one point: a visible span
    assert low < 91.0 < high <= 100.0
    assert mathtext("MgNet^{A,B} 16-32-64 nu=3") == r"MgNet$^{A,B}$ 16-32-64 $\nu$=3"
    assert mathtext("MGiaD c_K=16 g_s=4") == "MGiaD $c_K$=16 $g_s$=4"
    assert mathtext("costs $5") == r"costs \$5"
    assert mathtext("MgNet^A lambda=2") == r"MgNet$^{A}$ $\lambda$=2"


def _finished_row(model, family, weights, speed, test, std, budget, paper=None, comparable=False):
    row = {"model": model, "family": family, "weights": weights, "images_per_s": speed,
           "test_acc": test, "test_acc_std": std, "budget": budget, "comparable": comparable,
           "lambda": None, "c_K": None, "g_s": None, "device": "cpu", "paper_row": None,
           "paper_weights_k": None, "paper_test_acc": None, "paper_test_acc_std": None}
    if paper:
        row.update(paper_row=model, paper_weights_k=paper[0], paper_test_acc=paper[1],
                   paper_test_acc_std=paper[2])
    return row


def _no_overlap(fig, ax):
    """The x tick labels of ``ax`` as drawn: their boxes, left to right, never overlap."""
    renderer = fig.canvas.get_renderer()
    low, high = ax.get_xlim()
    labels = [t for t in ax.get_xticklabels(which="both") if t.get_text() and t.get_visible()
              and low <= t.get_position()[0] <= high]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [t.get_text() for t in labels]
    return [t.get_text() for t in labels]


def test_accuracy_figure_keeps_budgets_apart_and_is_readable():
    from mgiad.report_figures import _family_colours, accuracy_figure
    truncated, short = "paper recipe, 30 of 400 ep", "5 of 400 ep, lr step every 2 ep"
    rows = [_finished_row("ResNet20", "ResNet", 272e3, 137, 91.56, 0.2, truncated,
                          (270, 93.02, 0.31)),
            _finished_row("MgNet^{A,B} 16-32-64 nu=3", "MgNet", 100e3, 100, 91.34, None, short,
                          (101, 93.29, 0.15)),
            _finished_row("MGiaD 16-32-64", "MGiaD g_s=4", 27.4e3, 186, 99.9, 0.4, truncated),
            _finished_row("MGiaD 16-32-64", "MGiaD g_s=4", 27.4e3, 90, 90.04, None, short)]
    fig = accuracy_figure("Table 2 — fashion-mnist", "ours: 30 of 400 ep, 3 seeds", rows)
    fig.canvas.draw()
    ax_w, ax_t = fig.axes[:2]
    assert ax_w.get_ylim()[1] <= 100.0 and ax_t.get_ylim()[1] <= 100.0
    weights = _no_overlap(fig, ax_w)
    assert len(weights) >= 3 and {"30k", "50k", "100k", "200k"} <= set(weights)
    assert len(_no_overlap(fig, ax_t)) >= 3                   # 90..186 img/s: no "90100"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"ours: {truncated}" in legend and f"ours: {short}" in legend
    handles = dict(zip(legend, fig.legends[0].legend_handles))
    assert handles[f"ours: {truncated}"].get_marker() != handles[f"ours: {short}"].get_marker()
    # the same family at two budgets: two series of its colour with different markers
    colour = _family_colours(["MGiaD g_s=4", "MgNet", "ResNet"])["MGiaD g_s=4"]
    markers = {line.get_marker() for line in ax_w.get_lines()
               if line.get_color() == colour and line.get_marker() not in ("None", "", "_")}
    assert len(markers) == 2, markers
    title = fig._suptitle.get_text()
    assert "30 of 400 ep" in title and "3 seeds" in title
    texts = [t.get_text() for t in ax_w.texts]
    assert r"MgNet$^{A,B}$" in texts and not any("^{" in t and "$" not in t for t in texts)


def test_learning_curves_show_the_paper_and_where_runs_stand():
    from mgiad.experiments.report.curves import learning_curves_figure
    epochs = list(range(1, 31))

    def run(seed, n, finished, final):
        return {"seed": seed, "finished": finished, "target": 30, "epoch": epochs[:n],
                "test_acc": [final - 5 / e for e in epochs[:n]],
                "train_running_acc": [final + 2 - 5 / e for e in epochs[:n]]}
    curves = [{"label": "MGiaD 16-32-64 c_K=16 g_s=8", "budget": "paper recipe, 30 of 400 ep",
               "paper_test_acc": 93.35, "paper_epochs": 400,
               "runs": [run(0, 30, True, 92.0), run(1, 30, True, 92.4)]},
              {"label": "ResNet20", "budget": "paper recipe, 30 of 400 ep",
               "paper_test_acc": 93.02, "paper_epochs": 400, "runs": [run(0, 12, False, 91.0)]}]
    fig = learning_curves_figure("Table 2", "ours: paper recipe, 30 of 400 ep", curves)
    fig.canvas.draw()
    ax_test = fig.axes[0]
    flat = {round(float(line.get_ydata()[0]), 2) for line in ax_test.get_lines()
            if len(set(line.get_ydata())) == 1 and line.get_linestyle() == "--"}
    assert flat == {93.35, 93.02}                     # the paper's final test accuracies
    assert ax_test.get_xlim()[1] >= 30 and ax_test.get_ylim()[1] <= 100.0
    assert ax_test.get_ylim()[1] > 93.35              # the references are in view
    # mean of two seeds (thick) and each seed (thin) for g_s=8; the run in progress is marked
    widths = sorted({line.get_linewidth() for line in ax_test.get_lines()})
    assert len(widths) >= 2
    assert "s0: ep 12/30" in [t.get_text() for t in ax_test.texts]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("ResNet20 (1 in progress; paper 93.02)" == t for t in legend)
    assert any(t.startswith("MGiaD 16-32-64 $c_K$=16 $g_s$=8 (2 seeds") for t in legend)
    assert any("after 400 epochs" in t for t in legend)


def test_learning_curves_focus_on_the_band_the_runs_settle_in():
    from mgiad.experiments.report.curves import learning_curves_figure
    epochs = list(range(1, 31))

    def run(seed, dip):
        test = [92.0 + 0.04 * e - (4.0 if e < 4 else 0.0) for e in epochs]
        if dip:
            test[1] = 47.0  # one seed collapses in epoch 2
        return {"seed": seed, "finished": True, "target": 30, "epoch": epochs, "test_acc": test,
                "train_running_acc": [95.0 + 0.1 * e for e in epochs]}
    curves = [{"label": "MGiaD", "budget": "30 ep", "paper_test_acc": 93.35, "paper_epochs": 400,
               "runs": [run(0, True), run(1, False), run(2, False)]}]
    fig = learning_curves_figure("Table 2", "30 ep", curves)
    fig.canvas.draw()
    low, high = fig.axes[0].get_ylim()
    assert 85.0 < low < 92.0 and 93.35 < high <= 100.0  # not down to the dip at 47
    assert (high - low) < 10.0                           # the band where the runs differ is legible
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert any("below the axis (lowest 47.0%, epoch 2)" in t for t in notes), notes


def test_speed_axis_labels_a_tick_beyond_both_ends_and_says_it_is_no_benchmark():
    from mgiad.report_figures import accuracy_figure
    rows = [_finished_row(f"m{i}", "MGiaD g_s=4", w, speed, 92.9 + 0.05 * i, 0.1, "30 ep")
            for i, (w, speed) in enumerate(((27e3, 3210), (37e3, 3300), (100e3, 3920),
                                            (272e3, 4960)))]
    fig = accuracy_figure("Table 2", "30 ep", rows)
    fig.canvas.draw()
    for ax, values in ((fig.axes[0], [r["weights"] for r in rows]),
                       (fig.axes[1], [r["images_per_s"] for r in rows])):
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert min(ticks) <= min(values) and max(ticks) >= max(values), (ticks, values)
        _no_overlap(fig, ax)
    assert "not a benchmark" in fig.axes[1].get_title()
    from mgiad.experiments.report.tables import SPEED_CAVEAT
    assert "not a benchmark" in SPEED_CAVEAT


@pytest.mark.parametrize("summary, metrics, why", [
    ({"final_test_acc": float("nan")}, None, "summary.json: final_test_acc must be a finite number"),
    ({"final_test_acc": "93.1"}, None, "summary.json: final_test_acc must be a number"),
    ({"best_test_acc": float("inf")}, None, "best_test_acc must be a finite number, got inf"),
    ({"epochs": 400.5}, None, "summary.json: epochs must be a whole number"),
    ({"final_test_acc": None}, None, "records no final_test_acc"),
    ({}, [{"epoch": 1, "test_acc": float("nan")}], "metrics.jsonl line 1: test_acc")])
def test_one_malformed_run_is_skipped_with_a_warning_naming_it(tmp_path, summary, metrics, why):
    runs = tmp_path / "runs"
    full = {"tag": "paper", "overrides": {}}
    for seed in (0, 1):
        _fake_run(runs, f"fm-gs8-paper-s{seed}", "table2", "fashion-mnist", "mgiad", FM3_GS8, 400,
                  93.0 + seed, 97.0, full, GS8, seed)
    bad = _fake_run(runs, "fm-gs8-paper-s2", "table2", "fashion-mnist", "mgiad", FM3_GS8, 400,
                    95.0, 97.0, full, GS8, 2, summary=summary, metrics=metrics)
    lines = []
    report.write_report(runs, tmp_path / "report", figures=False, log=lines.append)
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1 and str(bad) in warnings[0] and why in warnings[0], lines
    (row,) = _csv(tmp_path / "report" / "table2-fashion-mnist.csv")
    assert row["seeds"] == "2" and float(row["test_acc"]) == pytest.approx(93.5)
    assert not re.search(r"\binf\b|\bnan\b", (tmp_path / "report" / "table2-fashion-mnist.md").read_text())
    assert why in (tmp_path / "report" / "report.md").read_text()
