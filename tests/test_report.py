"""Report: tables with the right mean and std, budgets kept apart, the paper beside ours, figures."""
import csv
import json
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
        # one epoch of digits' 15, batch 32 instead of 64: labelled as a reduced budget
        assert row["budget"] == "1 of 15 ep, batch 32" and row["reduced_budget"] == "True"
    assert "**1 of 15 ep, batch 32**" in md and "ddof=1" in md


def test_report_figure_is_a_real_picture(grid, tmp_path):
    from PIL import Image, ImageStat
    root, _, _ = grid
    written = report.write_report([root], tmp_path, log=lambda *a: None)
    png = tmp_path / "tiny-digits.png"
    assert png in written["figures"]
    image = Image.open(png).convert("L")
    assert image.size == (1950, 780)  # 13 x 5.2 inches at 150 dpi
    pixels = np.asarray(image)
    non_white = float((pixels < 245).mean())
    assert 0.02 < non_white < 0.6, non_white      # axes, text, markers; not blank, not a blob
    assert ImageStat.Stat(image).stddev[0] > 20
    colourful = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colourful) > 50                    # coloured series, antialiased text
    svg = (tmp_path / "tiny-digits.svg").read_text()
    assert "<svg" in svg and "accuracy vs weights" in svg


def _fake_run(root, name, experiment, dataset, model, model_args, epochs, test, train, budget,
              paper_row=None, seed=0):
    """A finished run as the report sees it (only its JSON files)."""
    d = root / experiment / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "model": model, "model_args": model_args, "dataset": dataset,
        "train": {"seed": seed, "epochs": epochs, "model_args": model_args}}))
    (d / "summary.json").write_text(json.dumps({
        "model": model, "dataset": dataset, "weights": 1, "flops": 2e7, "epochs": epochs,
        "best_test_acc": test + 0.1, "final_test_acc": test, "final_train_acc": train,
        "wall_seconds": 10.0, "images_per_s": 500.0 + seed, "device": "cpu"}))
    (d / "experiment.json").write_text(json.dumps({
        "experiment": experiment, "key": name.rsplit("-", 2)[0], "label": paper_row or model,
        "model": model, "model_args": model_args, "dataset": dataset, "seed": seed,
        "budget": budget, "paper_row": paper_row and {"table": "2", "label": paper_row},
        "note": ""}))
    return d


def test_budgets_are_never_mixed_and_the_paper_is_beside_ours(tmp_path):
    runs = tmp_path / "runs"
    args = {"num_classes": 10, "in_chans": 1, "widths": [16, 32, 64], "coarse_channels": 16,
            "group_size": 8}
    label = "MGiaD 16-32-64 c_K=16 g_s=8"   # paper: 37k weights, 93.35 (0.09), train 97.63
    full = {"tag": "paper", "overrides": {}}
    short = {"tag": "e5", "overrides": {"epochs": 5}}
    for seed, acc in enumerate((93.0, 93.5, 94.0)):
        _fake_run(runs, f"fm-gs8-paper-s{seed}", "table2", "fashion-mnist", "mgiad", args, 400,
                  acc, 97.0, full, label, seed)
    _fake_run(runs, "fm-gs8-e5-s0", "table2", "fashion-mnist", "mgiad", args, 5, 90.0, 91.0,
              short, label)
    (runs / "table2" / "unfinished").mkdir()
    (runs / "table2" / "unfinished" / "config.json").write_text("{}")
    (runs / "table2" / "unfinished" / "last.pt").write_bytes(b"")
    out = tmp_path / "report"
    report.write_report(runs, out, figures=False, log=lambda *a: None)
    rows = _csv(out / "table2-fashion-mnist.csv")
    assert [(r["budget"], r["seeds"]) for r in rows] == [("paper (400 ep)", "3"),
                                                         ("5 of 400 ep", "1")]
    full_row, short_row = rows
    assert float(full_row["test_acc"]) == pytest.approx(93.5)
    assert float(full_row["test_acc_std"]) == pytest.approx(0.5)
    assert float(full_row["paper_test_acc"]) == 93.35
    assert float(full_row["test_acc_diff"]) == pytest.approx(93.5 - 93.35)
    assert float(full_row["paper_train_acc"]) == 97.63
    assert float(full_row["train_acc_diff"]) == pytest.approx(97.0 - 97.63)
    assert full_row["paper_weights_k"] == "37" and full_row["c_K"] == "16" and full_row["g_s"] == "8"
    # table 2 counts MGiaD without its classifier, as the paper does: 36.6k
    assert full_row["weights_counted_without_classifier"] == "True"
    assert 36_000 < int(full_row["weights"]) < 37_000
    assert short_row["test_acc_std"] == "" and short_row["reduced_budget"] == "True"
    md = (out / "table2-fashion-mnist.md").read_text()
    assert "| MGiaD 16-32-64 | 16 | 8 | paper (400 ep) | 3 |" in md
    assert "93.50 (0.50) | 93.35 (0.09) | +0.15" in md
    assert "**5 of 400 ep**" in md and "90.00 | 93.35 (0.09) | -3.35" in md
    assert "1 unfinished" in (out / "report.md").read_text()


def test_report_without_matplotlib_or_runs(grid, tmp_path, monkeypatch, capsys):
    root, _, _ = grid
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    lines = []
    written = report.write_report(root, tmp_path / "r", log=lines.append)
    assert written["figures"] == [] and (tmp_path / "r" / "tiny-digits.md").is_file()
    assert any("mgiad[plot]" in line for line in lines)
    monkeypatch.undo()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "r2")]) == 1
    assert "no finished runs" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
