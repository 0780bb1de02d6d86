"""Deployment: export to ONNX / TorchScript / torch.export, with BatchNorm folded, and check.

``fuse_bn(model)`` (:mod:`mgiad.layers.fold`) returns an eval-mode copy with every BatchNorm that
follows a convolution folded into it; the first BatchNorm of a smoothing step stays.

``export_model(model, path, format)`` fuses, exports (``onnx``: ``torch.onnx.export`` via
torch.export, needs onnx + onnxscript; ``torchscript``: ``torch.jit.trace``; ``pt2``:
``torch.export.export`` + ``torch.export.save``) with a dynamic batch dimension, loads the file
back (ONNX with onnxruntime), runs it and the original PyTorch model on the same random inputs
and reports the max abs difference; the file is only written when it is within ``atol``.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..utils.errors import MissingDependencyError, install_hint
from ..utils.io import plain_file_mode
from ..utils.limits import check_input
from ..layers.fold import FoldedSmoothingStep, count_batchnorms, fold_conv_bn, fuse_bn

__all__ = ["fuse_bn", "fold_conv_bn", "FoldedSmoothingStep", "export_model", "ExportResult",
           "ExportCheckError", "FORMATS", "count_batchnorms"]

FORMATS = ("onnx", "torchscript", "pt2")


class ExportCheckError(ValueError):
    """The exported model does not reproduce the PyTorch model within the tolerance."""


# ---------------------------------------------------------------------------------- export
@dataclass
class ExportResult:
    path: str
    format: str
    input_shape: list            # example input; the batch dimension is dynamic
    checked: bool
    max_abs_diff: float | None   # exported file vs. the original (unfused) PyTorch model
    fuse_max_abs_diff: float     # fused vs. original PyTorch model
    atol: float
    check_batch_sizes: list
    batchnorms: int              # in the original model
    batchnorms_folded: int
    weights: int                 # parameters of the original model
    exported_weights: int        # parameters of the exported (fused) model
    bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' chatter (deprecation notes, progress lines, missing torchvision)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                               "onnxscript", "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=65536)


def _export_onnx(model: nn.Module, x: Tensor, path: Path):
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except Exception as exc:
        raise MissingDependencyError(
            f"ONNX export needs the onnx and onnxscript packages ({type(exc).__name__}: {exc}); "
            "install them: " + install_hint("export", "onnx", "onnxscript")) from None
    with _quiet():
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, verbose=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: _batch_dim()},))


def _run_onnx(path: Path):
    try:
        import onnxruntime as ort
    except Exception as exc:
        raise MissingDependencyError(
            f"checking the ONNX file needs onnxruntime ({type(exc).__name__}: {exc}); install it ("
            + install_hint("export", "onnxruntime") + "), or skip the check (--no-check)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _export_torchscript(model: nn.Module, x: Tensor, path: Path):
    with _quiet():
        traced = torch.jit.trace(model, (x,), check_trace=False)
        torch.jit.save(traced, str(path))


def _run_torchscript(path: Path):
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu")
    return loaded


def _export_pt2(model: nn.Module, x: Tensor, path: Path):
    with _quiet():
        program = torch.export.export(model, (x,), dynamic_shapes=({0: _batch_dim()},))
        torch.export.save(program, str(path))


def _run_pt2(path: Path):
    with _quiet():
        return torch.export.load(str(path)).module()


_EXPORTERS = {"onnx": (_export_onnx, _run_onnx), "torchscript": (_export_torchscript, _run_torchscript),
              "pt2": (_export_pt2, _run_pt2)}


def _max_abs_diff(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def export_model(model: nn.Module, path: str | os.PathLike, format: str, *, input_size: int = 32,
                 fuse: bool = True, fold_shared: bool = True, check: bool = True,
                 atol: float = 1e-4, check_batch_sizes=(1, 3), seed: int = 0) -> ExportResult:
    """Fold BatchNorm (``fuse``), export ``model`` to ``path`` in ``format`` and check it.

    The example input is ``(2, in_chans, input_size, input_size)`` with a dynamic batch dimension.
    With ``check``, the saved file is loaded back (ONNX: onnxruntime) and run on random inputs of
    each batch size in ``check_batch_sizes``; its outputs are compared with those of the original
    PyTorch model and :class:`ExportCheckError` is raised (and nothing written) if the max abs
    difference exceeds ``atol``. ``model`` is not modified.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name")
    reference = copy.deepcopy(model).cpu().eval()
    deployed = fuse_bn(reference, fold_shared) if fuse else copy.deepcopy(reference)
    if not fuse:
        deployed.bn_fused = False
    in_chans = getattr(model, "in_chans", 3)
    check_input(max(2, *check_batch_sizes), in_chans, input_size, "the example input")
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(2, in_chans, input_size, input_size, generator=generator)
    inputs = [torch.randn(n, in_chans, input_size, input_size, generator=generator)
              for n in check_batch_sizes]
    with torch.no_grad():
        expected = [reference(x) for x in inputs]
        fuse_diff = max(_max_abs_diff(deployed(x), y) for x, y in zip(inputs, expected))

    export, load = _EXPORTERS[format]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        export(deployed, example, tmp)
        diff = None
        if check:
            run = load(tmp)
            with torch.no_grad():
                diff = max(_max_abs_diff(run(x), y) for x, y in zip(inputs, expected))
            if not diff <= atol:
                raise ExportCheckError(
                    f"the exported {format} model differs from the PyTorch model by up to "
                    f"{diff:.3g} (tolerance {atol:g}; BatchNorm folding alone: {fuse_diff:.3g}); "
                    f"{path} was not written")
        os.chmod(tmp, plain_file_mode())  # mkstemp made it 0600; honour the umask
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    bns = count_batchnorms(reference)
    return ExportResult(
        path=str(path), format=format, input_shape=list(example.shape), checked=check,
        max_abs_diff=diff, fuse_max_abs_diff=fuse_diff, atol=atol,
        check_batch_sizes=list(check_batch_sizes), batchnorms=bns,
        batchnorms_folded=bns - count_batchnorms(deployed),
        weights=sum(p.numel() for p in reference.parameters()),
        exported_weights=sum(p.numel() for p in deployed.parameters()),
        bytes=path.stat().st_size)
