"""BatchNorm folding and export to ONNX (checked with onnxruntime), TorchScript and torch.export."""
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mgiad
from mgiad.deploy import export as export_mod
from mgiad.cli import main
from mgiad.deploy.export import ExportCheckError, export_model, fuse_bn
from mgiad.utils.errors import MissingDependencyError
from interop_helpers import one_thread, randomize_bn, write_run  # noqa: F401  (one_thread: autouse)

CONFIGS = {
    "mgiad": ("mgiad", dict(widths=(16, 32), coarse_channels=8, group_size=4)),
    "mgiad-prolong-norm-3-levels": ("mgiad", dict(widths=(16, 32, 32), coarse_channels=4,
                                                   group_size=4, prolong_norm=True, pre_smooth=2)),
    "mgiad-imagenet-stem": ("mgiad", dict(widths=(8, 16), coarse_channels=4, group_size=4,
                                          stem="imagenet")),
    "mgnet": ("mgnet", dict(widths=(8, 16), smoothing_steps=2)),
    "mgnet-share-A": ("mgnet", dict(widths=(8, 16), smoothing_steps=(1, 3), share="A")),
    "mgic": ("mgic", dict(widths=(16, 32), coarse_channels=8, group_size=4, blocks=1)),
    "resnet18": ("resnet18", dict(width_mult=0.125)),
    "resnet20": ("resnet20", dict(width_mult=0.5)),
}
ONNX_MISSING = None
for _name in ("onnx", "onnxscript", "onnxruntime"):
    try:
        __import__(_name)
    except Exception as _exc:  # pragma: no cover - depends on the environment
        ONNX_MISSING = f"{_name} is not installed (pip install onnx onnxscript onnxruntime): {_exc}"
needs_onnx = pytest.mark.skipif(ONNX_MISSING is not None, reason=ONNX_MISSING or "")


def small(key, **extra):
    family, kwargs = CONFIGS[key]
    return randomize_bn(mgiad.create_model(family, **kwargs, **extra))


def images(model, n=3, size=32, seed=0):
    return torch.randn(n, model.in_chans, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------- fuse_bn
@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_fuse_bn_matches_the_unfused_model(key):
    model = small(key)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_bn(model)
    size = 64 if "imagenet" in key else 32
    x = images(model, size=size)
    with torch.no_grad():
        expected, got = model.eval()(x), fused(x)
    diff = (got - expected).abs().max().item()
    assert diff <= 1e-5 * max(1.0, expected.abs().max().item()), diff
    assert not fused.training and fused.bn_fused and fused.config == model.config
    # every conv -> BN pair is folded; the BNs left act on the residual f - A(u)
    for name, m in fused.named_modules():
        if isinstance(m, nn.Sequential):
            kids = list(m.children())
            assert not any(isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)
                           for a, b in zip(kids, kids[1:])), name
    left = [n for n, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(".norm_residual." in n for n in left), left
    if family_has_smoothers(key):
        assert left
    else:
        assert not left  # ResNet, MGIC: every BN follows a convolution
    # the original is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def family_has_smoothers(key):
    return CONFIGS[key][0] in ("mgiad", "mgnet")


def test_shared_smoothers_are_copied_per_step_or_kept_shared():
    model = small("mgnet")  # MgNet^{A,B}: one B per level shared by its 2 smoothing steps
    fused = fuse_bn(model)
    assert all(s.B is None for s in fused.smoothers)  # each step holds its own folded copy
    assert all(isinstance(step, export_mod.FoldedSmoothingStep)
               for s in fused.smoothers for step in s.steps)
    kept = fuse_bn(model, fold_shared=False)
    assert all(isinstance(s.B, nn.Conv2d) for s in kept.smoothers)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in kept.modules())
    assert n_bn == 2 * 2 * 2  # both BNs of each of the 2 x 2 steps stay
    x = images(model)
    with torch.no_grad():
        assert torch.allclose(kept(x), model.eval()(x), atol=1e-5)
    # a B used by one step only (MgNet^A) is folded even with fold_shared=False
    share_a = fuse_bn(small("mgnet-share-A"), fold_shared=False)
    assert all(s.B is None for s in share_a.smoothers)


def test_fused_model_keeps_the_training_mode_of_the_original():
    model = small("resnet20").train()
    fuse_bn(model)
    assert model.training


# ---------------------------------------------------------------------------------- export
def _load_back(path, fmt):
    if fmt == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    if fmt == "torchscript":
        return torch.jit.load(str(path))
    return torch.export.load(str(path)).module()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=needs_onnx), "torchscript", "pt2"])
@pytest.mark.parametrize("key", ["mgiad", "mgnet", "resnet18"])
def test_export_is_loaded_back_and_matches_pytorch(key, fmt, tmp_path):
    model = small(key)
    out = tmp_path / f"model.{fmt}"
    result = export_model(model, out, fmt)
    print(f"{key} {fmt}: max abs difference {result.max_abs_diff:.3g}")
    assert out.is_file() and result.bytes == out.stat().st_size and result.checked
    assert result.max_abs_diff <= 1e-4 and result.fuse_max_abs_diff <= 1e-4
    assert result.batchnorms_folded > 0
    # independently: the saved file, another batch size (the batch dimension is dynamic)
    run = _load_back(out, fmt)
    x = images(model, n=5, seed=7)
    with torch.no_grad():
        assert (run(x) - model.eval()(x)).abs().max().item() <= 1e-4
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    export, load = export_mod._EXPORTERS["torchscript"]
    broken = lambda path: (lambda m: (lambda x: m(x) + 1e-3))(load(path))  # noqa: E731
    monkeypatch.setitem(export_mod._EXPORTERS, "torchscript", (export, broken))
    with pytest.raises(ExportCheckError, match="differs from the PyTorch model by up to 0.001"):
        export_model(small("resnet20"), tmp_path / "m.ts", "torchscript")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="constraints.txt onnxruntime"):
        export_mod._run_onnx(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependencyError, match="constraints.txt onnx onnxscript"):
        export_model(small("resnet20"), tmp_path / "m.onnx", "onnx")


# --------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run") / "digits",
                     small("mgiad", in_chans=1), "digits")


@needs_onnx
def test_cli_export_onnx_prints_the_difference(digits_run, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(digits_run / "best.pt"), "--format", "onnx",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    measured = float(re.search(r"onnxruntime vs PyTorch .* max abs difference ([0-9.e+-]+)", text)[1])
    assert measured <= 1e-4 and "BatchNorm folded" in text and "1x32x32" in text
    import onnxruntime as ort
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [1, 32, 32]


def test_cli_export_pt2_json_takes_the_format_from_the_suffix(digits_run, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert main(["export", "--checkpoint", str(digits_run), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "pt2" and result["max_abs_diff"] <= 1e-4
    assert result["dataset"] == "digits" and result["input_shape"] == [2, 1, 32, 32]
    assert torch.export.load(str(out)).module()(torch.zeros(4, 1, 32, 32)).shape == (4, 10)


@pytest.mark.parametrize("argv, message", [
    (["--out", "model.bin"], "pass --format"),
    (["--out", "{tmp}", "--format", "pt2"], "is a directory"),
    (["--out", "m.pt2", "--atol", "0"], "--atol must be positive"),
])
def test_cli_export_bad_input_is_a_one_line_error(argv, message, digits_run, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["export", "--checkpoint", str(digits_run)] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_export_of_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "m.pt2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not Path(tmp_path / "m.pt2").exists()
