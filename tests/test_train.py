"""Training: run directory, resume equivalence, Ctrl-C, torchrun, divergence, bad input."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import mgiad
from mgiad.models import _registry as registry
from mgiad.training import trainer as train_mod
from mgiad.utils.checkpoint import load_checkpoint
from mgiad.cli import main
from mgiad.training import TrainConfig, TrainingDiverged, learning_rate, resolve_config, train
from train_helpers import TINY, quiet, tiny_config

REPO = Path(__file__).resolve().parents[1]


def final_weights(run_dir):
    return load_checkpoint(Path(run_dir) / "last.pt")["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reference"
    summary = train(tiny_config(out), log=quiet)
    return out, summary


def test_run_directory_holds_everything(reference_run):
    out, summary = reference_run
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "mgiad" and config["model_args"]["widths"] == [8, 16]
    assert config["model_args"]["in_chans"] == 1 and config["train"]["epochs"] == 3
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3]
    assert {"train_loss", "train_running_acc", "test_loss", "test_acc", "lr", "seconds",
            "images_per_s"} <= set(lines[0])
    assert all(m["device"] == "cpu" for m in lines)  # where each epoch ran
    assert lines[0]["lr"] == pytest.approx(0.05) and lines[1]["lr"] < lines[0]["lr"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["best_test_acc"] == max(m["test_acc"] for m in lines)
    assert saved["final_test_acc"] == lines[-1]["test_acc"]
    assert saved["weights"] == mgiad.count_parameters(mgiad.create_model("mgiad", in_chans=1, **TINY))
    assert saved["flops"] > 0 and saved["wall_seconds"] > 0
    best = load_checkpoint(out / "best.pt")
    assert best["history"][-1]["test_acc"] == saved["best_test_acc"]
    assert lines[-1]["train_running_acc"] > 30  # it learns (10 classes: chance is 10%)
    assert saved["final_train_running_acc"] == lines[-1]["train_running_acc"]


def test_a_run_records_mgiad_and_its_arguments_not_a_path(reference_run):
    from mgiad.training.record import command_line
    out, _ = reference_run
    assert json.loads((out / "config.json").read_text())["command"][0] == "mgiad"
    assert command_line(["/home/u/.venv/bin/mgiad", "train", "--epochs", "3"]) == [
        "mgiad", "train", "--epochs", "3"]
    assert command_line(["/src/mgiad/__main__.py", "eval"]) == ["mgiad", "eval"]


def test_train_acc_is_the_final_model_in_eval_mode_on_the_plain_training_set(reference_run):
    """The paper's train column: not the running accuracy over augmented batches in train mode."""
    from mgiad.data import build_loaders
    from mgiad.train import Runtime, evaluate
    out, summary = reference_run
    model = mgiad.create_model("mgiad", in_chans=1, **TINY)
    model.load_state_dict(final_weights(out))
    train_loader, _ = build_loaders("digits", batch_size=32)
    plain = train_loader.evaluation()
    assert plain.augment is None and len(plain.indices()) == train_loader.dataset_size
    expected = evaluate(model, plain, Runtime(torch.device("cpu")))
    saved = json.loads((out / "summary.json").read_text())
    assert saved["train_acc"] == saved["final_train_acc"] == pytest.approx(expected["acc"])
    assert saved["train_loss"] == pytest.approx(expected["loss"])
    assert saved["train_acc"] != saved["final_train_running_acc"]
    assert saved["augment"] is True  # digits: pad-4 crops by default


def test_same_seed_same_metrics(reference_run, tmp_path):
    out, _ = reference_run
    train(tiny_config(tmp_path / "again"), log=quiet)
    strip = lambda path: [{k: v for k, v in json.loads(l).items() if k not in ("seconds", "images_per_s", "elapsed")}
                          for l in Path(path).read_text().splitlines()]
    assert strip(out / "metrics.jsonl") == strip(tmp_path / "again" / "metrics.jsonl")
    assert_same_weights(final_weights(out), final_weights(tmp_path / "again"))


def test_resume_after_interrupt_gives_the_same_weights(reference_run, tmp_path, monkeypatch):
    out, _ = reference_run
    calls = {"n": 0}
    real = train_mod.stop_requested

    def stop_in_epoch_two(stop, runtime):  # as if Ctrl-C arrived during the second epoch
        calls["n"] += 1
        return calls["n"] == 60 or real(stop, runtime)  # checked after every step: 45 per epoch
    monkeypatch.setattr(train_mod, "stop_requested", stop_in_epoch_two)
    run = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(run), log=quiet)
    saved = load_checkpoint(run / "last.pt")
    assert saved["batch"] > 0 and saved["partial"]["seen"] > 0  # mid-epoch state, nothing lost
    monkeypatch.setattr(train_mod, "stop_requested", real)
    summary = train(TrainConfig(), resume=run, log=quiet)
    assert summary["epochs"] == 3
    assert_same_weights(final_weights(out), final_weights(run))
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_ctrl_c_saves_and_resume_finishes(reference_run, tmp_path):
    out, _ = reference_run
    run = tmp_path / "sigint"
    cmd = [sys.executable, "-m", "mgiad", "train", "--dataset", "digits", "--epochs", "3",
           "--batch-size", "32", "--lr", "0.05", "--widths", "8", "16", "--coarse-channels", "4",
           "--group-size", "2", "--out", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not (run / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    output = f"--- stdout:\n{stdout}\n--- stderr:\n{stderr}"  # for a failure's diagnosis
    assert proc.returncode == 130, output
    assert "--resume" in stdout and "Traceback" not in stderr, output
    saved = load_checkpoint(run / "last.pt")
    assert saved["epoch"] >= 1 or saved["batch"] > 0, output  # the interrupted epoch's progress
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert_same_weights(final_weights(out), final_weights(run))


def test_eval_reports_the_checkpoint_accuracy(reference_run, capsys):
    out, summary = reference_run
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_acc"] == pytest.approx(summary["final_test_acc"])
    assert result["images"] == 360


def test_eval_rejects_a_checkpoint_of_another_architecture(reference_run, capsys):
    out, _ = reference_run
    assert main(["eval", "--checkpoint", str(out), "--model", "resnet20"]) == 2
    err = capsys.readouterr().err
    assert "another architecture" in err and "missing" in err


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, reference_run, capsys):
    out, _ = reference_run
    broken = tmp_path / "broken.pt"
    broken.write_bytes((out / "last.pt").read_bytes()[:1000])
    assert main(["eval", "--checkpoint", str(broken)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": nn.Linear(2, 2)}, evil)  # needs pickle code
    assert main(["eval", "--checkpoint", str(evil)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_existing_run_is_never_overwritten(reference_run, capsys):
    out, _ = reference_run
    before = (out / "last.pt").read_bytes()
    assert main(["train", "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "mnist"], "invalid choice"),
    (["train", "--batch-size", "0"], "batch_size must be a positive integer"),
    (["train", "--epochs", "-1"], "epochs must be a positive integer"),
    (["train", "--lr", "0"], "lr must be a positive number"),
    (["train", "--group-size", "5"], "group_size=5 does not divide"),
    (["train", "--model", "resnet20", "--coarse-channels", "8"], "does not take --coarse-channels"),
    (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent/data"], "cifar"),
    (["train", "--resume", "/nonexistent/run"], "does not exist"),
])
def test_bad_input_is_a_one_line_error(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) if message == "invalid choice" else _no_exit():
        code = main(argv + ["--out", str(tmp_path / "run")] if "--resume" not in argv else argv)
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_calls = {"n": 0}


class _Diverging(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.fc = nn.Linear(in_chans, num_classes)

    def forward(self, x):
        if self.training:
            _calls["n"] += 1
        out = self.fc(x.mean((2, 3)))
        return out * float("nan") if _calls["n"] > 20 else out


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._MODELS, "test-nan-after-20-steps", _Diverging)
    run = tmp_path / "nan"
    config = TrainConfig(model="test-nan-after-20-steps", dataset="digits", epochs=5,
                         batch_size=128, out=str(run), progress=False)
    with pytest.raises(TrainingDiverged, match="last.pt"):
        train(config, log=quiet)
    saved = load_checkpoint(run / "last.pt")
    assert saved["epoch"] == 1  # 11 steps per epoch: epoch 2 diverged, epoch 1 stays
    assert all(torch.isfinite(t).all() for t in saved["model"].values())
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_learning_rate_schedules():
    cos = resolve_config(TrainConfig(epochs=10, lr=0.1, schedule="cosine"))
    assert learning_rate(cos, 0) == pytest.approx(0.1) and learning_rate(cos, 5) == pytest.approx(0.05)
    step = resolve_config(TrainConfig(dataset="fashion-mnist"))
    assert step.schedule == "step" and step.epochs == 400 and step.batch_size == 128
    assert learning_rate(step, 24) == pytest.approx(0.05) and learning_rate(step, 25) == pytest.approx(0.005)
    assert resolve_config(TrainConfig(dataset="imagenet")).batch_size == 512
    digits = resolve_config(TrainConfig())
    assert digits.model_args["widths"] == (16, 32, 64) and digits.model_args["in_chans"] == 1


WORKER = """
import sys, torch, torch.distributed as dist
from mgiad.train import TrainConfig, train
out = sys.argv[1]
summary, model = train(TrainConfig(model="mgiad", dataset="digits", epochs=2, batch_size=64,
                                   model_args=dict(widths=(8, 16), coarse_channels=4, group_size=2),
                                   out=out, progress=False), return_model=True)
# every rank saves the weights it holds in memory after training; the test compares them
torch.save(model.state_dict(), f"{out}/rank{dist.get_rank()}.pt")
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_mgiad_train_entry_point_exits_cleanly_every_time(tmp_path):
    """The real entry point, several times in a row: a process group left to the interpreter's
    exit aborted a rank now and then, failing finished jobs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
             "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "mgiad",
             "train", "--epochs", "1", "--batch-size", "64", "--widths", "8", "16",
             "--coarse-channels", "4", "--group-size", "2", "--out", str(out), "--no-progress"],
            capture_output=True, text=True, env=env, timeout=300)
        output = f"attempt {attempt}: stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
        assert proc.returncode == 0, output
        assert "terminate called" not in proc.stderr, output
        assert json.loads((out / "summary.json").read_text())["world_size"] == 2, output


def test_torchrun_two_cpu_processes_end_with_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(port), str(script), str(run)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = torch.load(run / "rank0.pt"), torch.load(run / "rank1.pt")
    assert_same_weights(rank0, rank1)
    assert_same_weights(rank0, final_weights(run))  # rank 0 checkpointed what it held
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # rank 0 alone writes


def test_warm_up_ramps_the_first_epochs_and_only_the_digits_default_has_one():
    from mgiad.train import warmup_factor
    digits = resolve_config(TrainConfig())
    assert digits.warmup_epochs == 1 and digits.batch_size == 32
    assert resolve_config(TrainConfig(dataset="fashion-mnist")).warmup_epochs == 0  # the paper's
    assert resolve_config(TrainConfig(epochs=1, warmup_epochs=None)).warmup_epochs == 1
    two = resolve_config(TrainConfig(epochs=5, warmup_epochs=2))
    assert [warmup_factor(two, 0, b, 10) for b in (0, 4, 9)] == [0.05, 0.25, 0.5]
    assert warmup_factor(two, 1, 9, 10) == 1.0 and warmup_factor(two, 2, 0, 10) == 1.0
    with pytest.raises(ValueError, match="warmup_epochs"):
        resolve_config(TrainConfig(epochs=2, warmup_epochs=3))


def test_a_run_says_its_plan_an_estimate_and_progress_when_not_on_a_terminal(tmp_path, monkeypatch):
    from mgiad import progress
    monkeypatch.setattr(progress.ProgressReporter, "due", lambda self: self.steps % 20 == 0)
    lines = []
    train(tiny_config(tmp_path / "run", epochs=1), log=lines.append)
    text = "\n".join(lines)
    assert "1 epoch, batch 32" in text  # singular
    assert "plan: 1 epoch x 44 steps of batch 32 = 44 steps" in text
    assert "estimated:" in text and "s/step" in text
    progress_lines = [l for l in lines if l.startswith("epoch 1/1 step ")]
    assert progress_lines and all("ETA" in l for l in progress_lines), lines


def test_format_duration():
    from mgiad.progress import format_duration
    assert [format_duration(s) for s in (5, 425, 3 * 3600 + 720, 50 * 3600)] == \
        ["5s", "7m 05s", "3h 12m", "2d 02h"]
