"""A run directory is never lost, a checkpoint is never stale, no user error is a traceback."""
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mgiad
from mgiad.utils import checkpoint as ckpt
from mgiad.training import trainer as train_mod
from mgiad.utils.checkpoint import load_checkpoint
from mgiad.cli import main
from mgiad.training import TrainConfig, TrainingDiverged, train
from train_helpers import TINY, quiet, tiny_config

CLI_TINY = ["--dataset", "digits", "--batch-size", "32", "--widths", "8", "16",
            "--coarse-channels", "4", "--group-size", "2", "--no-progress"]


def spawn(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "mgiad", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for(path: Path, proc, seconds=300):
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)


# ------------------------------------------------------------------ 1. best.pt is never stale
def test_best_checkpoint_is_written_before_last_so_the_set_stays_consistent(tmp_path, monkeypatch):
    """A crash while writing best.pt must not leave a last.pt that records a better accuracy than
    best.pt holds (today's order wrote last.pt first)."""
    real = ckpt.save_checkpoint
    writes = []

    def crash_on_second_best(state, path):
        writes.append(Path(path).name)
        if Path(path).name == "best.pt" and writes.count("best.pt") == 2:
            raise OSError(errno.EIO, "simulated crash", str(path))
        real(state, path)
    monkeypatch.setattr(train_mod, "save_checkpoint", crash_on_second_best)
    run = tmp_path / "run"
    with pytest.raises(OSError):
        train(tiny_config(run), log=quiet)
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert last["best_acc"] == best["best_acc"] == best["history"][-1]["test_acc"]
    monkeypatch.setattr(train_mod, "save_checkpoint", real)
    summary = train(TrainConfig(), resume=run, log=quiet)
    best = load_checkpoint(run / "best.pt")
    assert summary["best_test_acc"] == best["best_acc"] == max(
        h["test_acc"] for h in load_checkpoint(run / "last.pt")["history"])


# ------------------------------------------------------------- 2. one process per run folder
def test_a_second_trainer_on_the_same_run_is_refused_and_the_first_is_intact(tmp_path):
    run = tmp_path / "run"
    first = spawn(["train", *CLI_TINY, "--epochs", "50", "--out", str(run)])
    try:
        wait_for(run / "config.json", first)
        second = subprocess.run([sys.executable, "-m", "mgiad", "train", *CLI_TINY, "--epochs", "2",
                                 "--out", str(run)], capture_output=True, text=True, timeout=300)
        resumed = subprocess.run([sys.executable, "-m", "mgiad", "train", "--resume", str(run)],
                                 capture_output=True, text=True, timeout=300)
        assert first.poll() is None, first.communicate()
        for proc in (second, resumed):
            assert proc.returncode == 2, proc.stderr
            assert "in use by another process (pid " in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr, proc.stderr
        config = json.loads((run / "config.json").read_text())
        assert config["train"]["epochs"] == 50  # the first run's config was not replaced
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # a killed holder does not leave the folder stuck, and its half-written files are removed
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    from mgiad import rundir
    rundir.claim(run)
    try:
        assert not list(run.glob(".*.tmp"))
    finally:
        rundir.release(run)


def test_out_refuses_a_file_and_a_folder_of_someone_elses_files(tmp_path, capsys):
    folder = tmp_path / "pretrained"
    mgiad.create_model("mgiad", in_chans=1, **TINY).save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["train", *CLI_TINY, "--epochs", "1", "--out", str(folder)]) == 2
    assert "not empty and not an mgiad run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert main(["train", *CLI_TINY, "--epochs", "1", "--out", str(file)]) == 2
    assert "is a file" in capsys.readouterr().err and file.read_text() == "mine"


def test_two_reproduce_processes_share_a_grid_instead_of_training_one_run_twice(tmp_path):
    from mgiad import experiments as ex
    from mgiad import rundir
    entry = ex.Entry("MGiaD tiny", "mgiad", dict(TINY), "digits")
    spec = ex.plan(ex.Experiment("tiny", "", (entry,)), seeds=1,
                   budget=ex.Budget(epochs=1, batch_size=32))[0]
    directory = spec.directory(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mgiad import rundir; "
                               f"rundir.claim({str(directory)!r}); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lines = []
        results = ex.run_grid([spec], tmp_path, dict(progress=False), log=lines.append)
        assert [r.status for r in results] == ["busy"], lines
        assert not (directory / "error.log").exists() and not (directory / "train.log").exists()
    finally:
        holder.kill()
        holder.wait()
    assert [r.status for r in ex.run_grid([spec], tmp_path, dict(progress=False), log=quiet)] \
        == ["trained"]


# ----------------------------------------------------------------------- 3. non-finite runs
def test_nan_test_loss_is_divergence_and_nothing_non_finite_is_saved(tmp_path, monkeypatch):
    real = train_mod.evaluate

    def nan_in_epoch_two(model, loader, *args, **kw):
        result = real(model, loader, *args, **kw)
        if nan_in_epoch_two.calls == 1:
            result["loss"] = float("nan")
        nan_in_epoch_two.calls += 1
        return result
    nan_in_epoch_two.calls = 0
    monkeypatch.setattr(train_mod, "evaluate", nan_in_epoch_two)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="test loss after epoch 2 is not finite"):
        train(tiny_config(run), log=quiet)
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and not (run / "summary.json").exists()


def test_divergence_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(TrainingDiverged, match="no checkpoint had been written yet"):
        train(tiny_config(tmp_path / "run", lr=1e30), log=quiet)


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    lines = []
    trainer = train_mod.Trainer(tiny_config(tmp_path / "run"), log=lines.append)
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("inf")
    assert trainer._save("last.pt") is False
    assert not (tmp_path / "run" / "last.pt").exists() and "not saving last.pt" in lines[-1]
    trainer.close()


@pytest.mark.parametrize("flag, value, message", [
    ("--gamma", "nan", "gamma"), ("--gamma", "-1", "gamma"), ("--momentum", "1.5", "momentum"),
    ("--weight-decay", "inf", "weight_decay"), ("--label-smoothing", "nan", "label_smoothing"),
    ("--lr", "nan", "lr")])
def test_every_numeric_option_is_validated(flag, value, message, tmp_path, capsys):
    assert main(["train", *CLI_TINY, flag, value, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_resumed_run_may_lower_its_learning_rate_and_it_is_recorded(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *CLI_TINY, "--epochs", "1", "--lr", "0.05", "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--lr", "0.01",
                 "--momentum", "0.8"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 0.01 and config["train"]["momentum"] == 0.8
    assert config["changes_on_resume"][0]["from"] == {"epochs": 1, "lr": 0.05, "momentum": 0.9}
    last = load_checkpoint(run / "last.pt")
    assert last["history"][1]["lr"] == pytest.approx(0.01 * 0.5 * (1 + torch.cos(
        torch.tensor(torch.pi / 2)).item()))  # the cosine schedule from the new base lr
    assert all(g["momentum"] == 0.8 for g in last["optimizer"]["param_groups"])
    assert main(["train", "--resume", str(run), "--batch-size", "16"]) == 2
    assert "only --epochs, --lr" in capsys.readouterr().err


# -------------------------------------------------------------- 4. errors are one paragraph
def _cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err, err
    return err


def test_empty_truncated_and_field_less_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(run, epochs=1), log=quiet)
    good = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(b"")
    assert "is empty" in _cli(["train", "--resume", str(run)], capsys)
    (run / "last.pt").write_bytes(good[: len(good) // 2])
    assert "truncated or not a checkpoint" in _cli(["eval", "--checkpoint", str(run / "last.pt")],
                                                   capsys)
    state = torch.load(__import__("io").BytesIO(good), weights_only=True)
    del state["optimizer"], state["config"]["model_args"]
    torch.save(state, run / "last.pt")
    assert "lacks or has malformed optimizer" in _cli(["train", "--resume", str(run)], capsys)
    assert "does not record its model" in _cli(["export", "--checkpoint", str(run / "last.pt"),
                                                "--out", str(tmp_path / "m.onnx")], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no last.pt" in _cli(["train", "--resume", str(empty)], capsys)
    assert "folder without a checkpoint" in _cli(["eval", "--checkpoint", str(empty)], capsys)


def test_a_checkpoint_that_would_run_code_is_refused_without_advice_to_allow_it(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    torch.save({"model": {}, "config": {}, "x": Payload()}, tmp_path / "evil.pt")
    err = _cli(["eval", "--checkpoint", str(tmp_path / "evil.pt")], capsys)
    assert "will not unpickle" in err and "weights_only=False" not in err


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    assert "unknown device 'tpu0'" in _cli(["train", *CLI_TINY, "--device", "tpu0",
                                            "--out", str(tmp_path / "a")], capsys)
    assert "digits has 10 classes" in _cli(["train", *CLI_TINY, "--num-classes", "5",
                                            "--out", str(tmp_path / "b")], capsys)


def test_full_disk_is_a_clear_error_and_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    ckpt.write_json_atomic({"old": 1}, target)

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt.os, "fsync", no_space)
    with pytest.raises(OSError):
        ckpt.write_json_atomic({"new": 2}, target)
    assert json.loads(target.read_text()) == {"old": 1} and not list(tmp_path.glob(".*.tmp"))
    from mgiad.cli.main import _describe_error
    message = _describe_error(OSError(errno.ENOSPC, "No space left on device", str(target)))
    assert "no space left" in message and "intact" in message


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    proc = subprocess.run(f"{sys.executable} -m mgiad reproduce --table 3 --dry-run --runs "
                          f"{tmp_path} | head -1", shell=True, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.startswith("status") and "Traceback" not in proc.stderr, proc.stderr
    assert "BrokenPipe" not in proc.stderr, proc.stderr


def test_export_refuses_to_overwrite_its_source(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(run, epochs=1), log=quiet)
    before = (run / "last.pt").read_bytes()
    err = _cli(["export", "--checkpoint", str(run / "last.pt"), "--format", "torchscript",
                "--out", str(run / "last.pt")], capsys)
    assert "would overwrite the model being exported" in err
    assert (run / "last.pt").read_bytes() == before


# ------------------------------------------------------------------ 5. untrusted sizes
def test_absurd_sizes_in_an_untrusted_config_are_refused_before_allocating(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    mgiad.create_model("mgiad", **TINY).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["widths"] = [8, 4_000_000]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="beyond the limit.*MGIAD_ALLOW_LARGE_MODELS"):
        mgiad.from_pretrained(folder)
    with pytest.raises(ValueError, match="smoothing_steps=100000 is beyond the limit 1,000"):
        mgiad.create_model("mgnet", smoothing_steps=100_000)
    with pytest.raises(ValueError, match="weights \\(limit"):  # caught on the meta device
        mgiad.create_model("mgnet", widths=(60000,), smoothing_steps=1)
    monkeypatch.setenv("MGIAD_ALLOW_LARGE_MODELS", "1")
    assert mgiad.create_model("mgnet", widths=(8,), smoothing_steps=1001) is not None


# ------------------------------------------------------------------------ 6. the umask
def test_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        train(tiny_config(run, epochs=1), log=quiet)
        mgiad.from_pretrained(run).save_pretrained(tmp_path / "shared")
    finally:
        os.umask(old)
    for path in [*run.glob("*.pt"), *run.glob("*.json*"), *(tmp_path / "shared").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# --------------------------------------------------------------- 8. signals act at once
def test_sigterm_acts_within_one_step_and_during_evaluation(tmp_path, monkeypatch):
    """SIGTERM raised while step k runs: last.pt holds k + 1 steps; raised during evaluation:
    the epoch's training is kept, and resuming gives the uninterrupted run's weights."""
    reference = tmp_path / "reference"
    train(tiny_config(reference, epochs=2), log=quiet)
    real_forward = train_mod.F.cross_entropy
    calls = {"n": 0}

    def signal_at_step_7(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_forward(*args, **kw)
    monkeypatch.setattr(train_mod.F, "cross_entropy", signal_at_step_7)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(run, epochs=2), log=quiet)
    assert load_checkpoint(run / "last.pt")["batch"] == 7
    monkeypatch.setattr(train_mod.F, "cross_entropy", real_forward)

    real_evaluate = train_mod.evaluate

    def signal_in_evaluation(model, loader, runtime, *args, stop=None, **kw):
        if stop is not None:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(model, loader, runtime, *args, stop=stop, **kw)
    monkeypatch.setattr(train_mod, "evaluate", signal_in_evaluation)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(), resume=run, log=quiet)
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 0 and state["batch"] == 44 and state["history"] == []
    monkeypatch.setattr(train_mod, "evaluate", real_evaluate)
    train(TrainConfig(), resume=run, log=quiet)
    ours, theirs = load_checkpoint(run / "last.pt")["model"], load_checkpoint(reference / "last.pt")["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_report_names_a_corrupt_metrics_file(tmp_path):
    from mgiad.report import write_report
    run = tmp_path / "runs" / "one"
    train(tiny_config(run, epochs=1), log=quiet)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "test_a\n')
    lines = []
    write_report([tmp_path / "runs"], tmp_path / "report", figures=False, log=lines.append)
    where = f"{run / 'metrics.jsonl'}: line 2"
    assert any(where in line for line in lines), lines
    assert where in (tmp_path / "report" / "report.md").read_text()
