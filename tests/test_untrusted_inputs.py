"""Values from outside (command lines, manifests, run records) are checked before they allocate
or answer: one size check for every entry point, non-finite weights refused, user errors in one
line, settings never silently misread."""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import torch

import mgiad
from mgiad.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mgiad.cli import main
from mgiad.models._hub import safetensors_bytes
from mgiad.models._pretrained import ENV_VAR, MANIFEST_NAME, weights_dir
from interop_helpers import one_thread, write_run  # noqa: F401  (one_thread: autouse)

SHIPPED = "mgiad_16_32_64_ck16_gs8.fmnist_paper_e30"
TINY = dict(widths=(8, 16), coarse_channels=4, group_size=4)


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(n in err for n in needles), err
    return err


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    return write_run(tmp_path / "run", mgiad.create_model("mgiad", in_chans=1, **TINY), "digits")


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """A copy of the shipped weights folder whose manifest a test may damage."""
    folder = tmp_path / "weights"
    shutil.copytree(weights_dir(), folder)
    monkeypatch.setenv(ENV_VAR, str(folder))
    return folder


def _edit_entry(folder, edit):
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    entry = next(e for e in manifest["models"] if e["name"] == SHIPPED)
    edit(entry)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return entry


# ------------------------------------------------------------------------------------- sizes
def test_a_pretrained_model_with_a_huge_classifier_is_refused_before_allocating():
    with pytest.raises(ValueError, match="num_classes=10000000 is beyond the limit"):
        mgiad.create_model(SHIPPED, pretrained=True, num_classes=10 ** 7)
    model = mgiad.create_model(SHIPPED, pretrained=True, num_classes=7)  # a new classifier is fine
    assert model.num_classes == 7


def test_eval_with_a_huge_num_classes_is_one_line(capsys):
    assert main(["eval", "--model", SHIPPED, "--num-classes", "100000000", "--device", "cpu"]) == 2
    one_line_error(capsys, "num_classes=100000000 is beyond the limit")


def test_export_with_a_huge_input_size_is_one_line(run, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "m.ts"),
                 "--input-size", "100000"]) == 2
    one_line_error(capsys, "--input-size=100,000 is beyond the limit", "MGIAD_ALLOW_LARGE_MODELS")
    assert not (tmp_path / "m.ts").exists()


def test_a_huge_image_size_in_a_manifest_is_refused(weights_copy, tmp_path, capsys):
    _edit_entry(weights_copy, lambda e: e["preprocessing"].update(image_size=1_000_000))
    image = tmp_path / "x.png"
    pytest.importorskip("PIL.Image").new("L", (28, 28)).save(image)
    assert main(["predict", "--model", SHIPPED, str(image), "--device", "cpu"]) == 2
    one_line_error(capsys, "image_size=1,000,000 is beyond the limit")


def test_bench_refuses_a_huge_batch_before_building_anything(capsys):
    assert main(["bench", "--model", "resnet20", "--batch-size", "200000", "--device", "cpu"]) == 2
    one_line_error(capsys, "batch size=200,000 is beyond the limit")


# ------------------------------------------------------------------------------ non-finite
def test_nan_weights_in_a_manifest_whose_sha256_matches_are_refused(weights_copy):
    entry = mgiad.models.pretrained_cfg(SHIPPED)
    path = weights_copy / entry["file"]
    state = mgiad.models._hub.load_safetensors_bytes(path.read_bytes(), str(path))
    first = next(k for k, t in state.items() if t.is_floating_point())
    state[first] = state[first].clone().fill_(float("nan"))
    data = safetensors_bytes(state)
    path.write_bytes(data)
    _edit_entry(weights_copy, lambda e: e.update(sha256=hashlib.sha256(data).hexdigest(),
                                                 bytes=len(data)))
    with pytest.raises(CheckpointError, match=f"non-finite values .* in {first}"):
        mgiad.create_model(SHIPPED, pretrained=True)


def test_a_checkpoint_with_nan_weights_is_refused_on_load(run):
    state = load_checkpoint(run / "best.pt")
    key = next(k for k, t in state["model"].items() if t.is_floating_point())
    state["model"][key][...] = float("inf")
    save_checkpoint(state, run / "best.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        mgiad.load_model(run / "best.pt")


def test_width_mult_nan_names_the_argument():
    with pytest.raises(ValueError, match="width_mult must be a positive finite number, got nan"):
        mgiad.create_model("mgiad", width_mult=float("nan"))


# ------------------------------------------------------------------------------ user errors
def test_eval_of_a_checkpoint_that_records_no_dataset_is_one_line(run, capsys):
    state = load_checkpoint(run / "best.pt")
    del state["config"]["dataset"]
    save_checkpoint(state, run / "best.pt")
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--device", "cpu"]) == 2
    one_line_error(capsys, "does not record its dataset", "--dataset")


@pytest.mark.parametrize("argv, message", [
    (["--model", "mgiad:num_classes=5"], "give the classes with --num-classes"),
    (["--model", "mgiad:widths=[16,32,64"], "unbalanced brackets"),
    (["--model", "mgiad:widths=[16,32,"], "unbalanced brackets"),
    (["--model", "mgiad:widths=[16,,32]"], "widths=[16,,32]: not a valid value"),
    (["--threads", "-1"], "--threads must be a positive integer"),
])
def test_bench_arguments_that_were_tracebacks_or_misread(argv, message, capsys):
    assert main(["bench", "--device", "cpu", "--measure", "infer", "--repeats", "1"] + argv) == 2
    one_line_error(capsys, message)


def test_bench_spec_reads_python_booleans_and_feeds_the_model_its_channels():
    from mgiad.perf.specs import parse_spec
    from mgiad.perf.timing import _setup
    assert parse_spec("mgiad:recompute=True").kwargs == {"recompute": True}
    assert parse_spec("mgiad:recompute=true,impl=reference").kwargs == {"recompute": True,
                                                                       "impl": "reference"}
    model, x, _ = _setup(parse_spec("mgiad:in_chans=1,widths=[8,16],coarse_channels=4,group_size=4"),
                         2, 8, 10, torch.device("cpu"), False)
    assert x.shape == (2, 1, 8, 8) and model(x).shape == (2, 10)


# ------------------------------------------------------------------------------------ export
def test_export_honours_the_umask(run, tmp_path):
    code = ("import os, sys; os.umask(0o022); from mgiad.cli import main; "
            f"sys.exit(main(['export', '--checkpoint', {str(run)!r}, '--out', "
            f"{str(tmp_path / 'm.ts')!r}, '--no-check']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE((tmp_path / "m.ts").stat().st_mode) == 0o644
