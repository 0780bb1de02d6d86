"""The largest batch within a memory budget (mgiad.max_batch, `mgiad bench --max-batch`)."""
import json

import pytest

from mgiad.cli import main as cli_main
from mgiad.perf.max_batch import fit_largest_batch, parse_size

MiB = 2**20


def test_parse_size():
    assert parse_size("16GiB") == 16 * 2**30
    assert parse_size("80GB") == 80 * 10**9
    assert parse_size("1.5 MiB") == int(1.5 * MiB)
    assert parse_size("4096") == 4096
    for bad in ("", "lots", "16 GiBs", "-1GB", "0GB", "1e9"):
        with pytest.raises(ValueError, match="not a size such as 16GiB"):
            parse_size(bad)


def test_fit_finds_where_the_line_meets_the_budget():
    calls = []

    def measure(batch):
        calls.append(batch)
        return 100 * MiB + 3 * MiB * batch
    fit = fit_largest_batch(measure, 1024 * MiB, batch_size=64)
    assert calls == [16, 64]  # a quarter of the batch, then the batch
    assert fit.max_batch == (1024 - 100) // 3 and not fit.checked
    assert fit.per_image == pytest.approx(3 * MiB) and fit.fixed == pytest.approx(100 * MiB)
    assert "308 images within 1.00 GiB (extrapolated" in fit.describe()


def test_checked_fit_steps_down_until_a_run_fits():
    def measure(batch):  # grows faster than linearly past 200: the line overestimates
        return 100 * MiB + 3 * MiB * batch + (MiB * (batch - 200) ** 2 / 100 if batch > 200 else 0)
    fit = fit_largest_batch(measure, 1024 * MiB, batch_size=64, check=True)
    assert fit.checked and fit.max_batch < 308
    assert measure(fit.max_batch) <= 1024 * MiB
    assert fit.max_batch in fit.measured


def test_budget_below_the_fixed_part_gives_zero_and_tiny_batches_are_refused():
    assert fit_largest_batch(lambda b: 2e9 + b, 10**9, batch_size=8).max_batch == 0
    with pytest.raises(ValueError, match="at least 2"):
        fit_largest_batch(lambda b: b, 10**9, batch_size=1)


def test_bench_reports_the_largest_batch(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "--measure", "memory", "--max-batch", "1GiB", "--model",
                   "mgnet:widths=[8,16],smoothing_steps=1", "--batch-size", "8",
                   "--image-size", "8", "--json", str(out)])
    assert rc == 0
    model = json.loads(out.read_text())["models"][0]
    assert model["max_batch"] > 8  # a tiny network: far more than 8 images in 1 GiB
    assert "largest training batch within 1GiB" in capsys.readouterr().out
    assert cli_main(["bench", "--max-batch", "lots"]) == 2
    assert "not a size such as 16GiB" in capsys.readouterr().err


def test_a_check_that_never_fits_is_reported_as_not_confirmed():
    fit = fit_largest_batch(lambda b: 100 * MiB + 3 * MiB * b + (10**9 if b > 64 else 0),
                            1024 * MiB, batch_size=64, check=True, max_checks=2)
    assert not fit.checked and fit.tried
    assert "not confirmed" in fit.describe()
