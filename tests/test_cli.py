"""`mgiad count` from the shell."""
import json
import subprocess
import sys

import pytest

from mgiad import paper
from mgiad.cli import main


def test_count_prints_weights_macs_and_flops(capsys):
    assert main(["count", "--model", "mgiad", "--width-mult", "3", "--group-size", "8",
                 "--dataset", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "1,264,714" in out and "mult-adds" in out and "FLOPs" in out


def test_count_json_uses_the_dataset_settings(capsys):
    assert main(["count", "--model", "mgiad", "--dataset", "imagenet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["num_classes"] == 1000 and result["config"]["stem"] == "imagenet"
    assert result["config"]["prolong_norm"] is True and result["input_size"] == [3, 224, 224]
    assert result["flops"] == 2 * result["multiply_adds"]


def test_count_paper_prints_every_row_and_marks_anomalies(capsys):
    assert main(["count", "--paper", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(paper.PAPER_ROWS)
    assert sum(r["anomaly"] is not None for r in rows) == sum(
        r.anomaly is not None for r in paper.PAPER_ROWS) >= 8
    assert main(["count", "--paper", "--table", "1"]) == 0
    text = capsys.readouterr().out
    assert "ANOMALY" in text and "GFLOPs" in text and "11,170k" in text


def test_sequence_flags(capsys):
    assert main(["count", "--model", "mgnet", "--widths", "16", "32", "64",
                 "--smoothing-steps", "3", "--dataset", "cifar10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == 101_338


@pytest.mark.parametrize("argv, message", [
    (["count", "--model", "resnet18", "--group-size", "4"], "does not take --group-size"),
    (["count", "--model", "mgiad", "--group-size", "48"], "group_size=48"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "mgiad", "count", "--model", "resnet20",
                          "--dataset", "cifar10"],
                         capture_output=True, text=True, check=True).stdout
    assert "269,722" in out  # option-A shortcuts, the paper's 270k
    help_text = subprocess.run([sys.executable, "-m", "mgiad", "count", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--coarse-channels" in help_text and "c_K" in help_text


def test_count_describes_what_train_trains_and_accepts_digits(capsys):
    from mgiad.cli import main
    assert main(["count"]) == 0
    default = capsys.readouterr().out
    assert main(["count", "--dataset", "digits"]) == 0
    assert capsys.readouterr().out == default
    assert "widths=(16, 32, 64) coarse_channels=16 group_size=4" in default and "28,026" in default
    assert "(digits)" in default and "1x32x32" in default


def test_flop_count_prints_readably():
    import mgiad
    flops = mgiad.count_flops(mgiad.create_model("mgiad", width_mult=3, group_size=8), 32)
    assert repr(flops) == "FlopCount(macs=633.9M, flops=1.268G)"


def test_bench_help_is_plain_text():
    out = subprocess.run([sys.executable, "-m", "mgiad", "bench", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "``" not in out and ":func:" not in out and "**" not in out
    assert "mgiad.optimize_for_inference" in out
