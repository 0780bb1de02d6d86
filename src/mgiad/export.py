"""Deployment: fold BatchNorm into convolutions, export to ONNX / TorchScript / torch.export, check.

``fuse_bn(model)`` returns an eval-mode copy in which every convolution followed by a BatchNorm
becomes one convolution with a bias (``W' = W * s``, ``b' = beta - mean * s``,
``s = gamma / sqrt(var + eps)``, computed in float64). What is folded in our models:

* ``conv -> BN`` in an ``nn.Sequential``: every ``ConvBNReLU`` (stems, the FAS transfers ``R``,
  ``Pi``, ``R-hat``, ``Pi-hat``, ResNet and MGIC convolutions, MGIC poolings) and ``P-hat`` with
  ``prolong_norm`` (``Sequential(conv, BN)``).
* The BN that follows ``B`` in a smoothing step, ``u + relu(bn(B(relu(bn(f - A(u))))))``. ``B`` is
  shared by several steps that each have their own BN (MgNet^{A,B}: all ``nu`` steps of a level;
  MGiaD: pre- and post-smoothing of a channel level), so each step gets its own folded copy of
  ``B``: fewer operations, more stored weights. ``fold_shared=False`` keeps shared ``B`` shared
  and leaves their BNs as they are (a ``B`` used by one step only is folded either way).

What is left: the first BN of a smoothing step acts on the residual ``f - A(u)``, not on the output
of a convolution (``A`` is also used for the FAS residual of the next level), so it stays an
eval-mode BatchNorm (an affine map per channel; exporters emit it as BatchNormalization).

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
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .hub import MissingDependencyError
from .layers import SmoothingStep

__all__ = ["fuse_bn", "fold_conv_bn", "FoldedSmoothingStep", "export_model", "ExportResult",
           "ExportCheckError", "FORMATS", "count_batchnorms"]

FORMATS = ("onnx", "torchscript", "pt2")
_BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)


class ExportCheckError(ValueError):
    """The exported model does not reproduce the PyTorch model within the tolerance."""


# ------------------------------------------------------------------------------ BN folding
def _is_conv(m: nn.Module) -> bool:
    """An ``nn.Conv2d`` (or a subclass that only changes how it is computed)."""
    return type(m) is nn.Conv2d or getattr(type(m), "computes_conv2d", False)


def _foldable_bn(bn: nn.Module, channels: int) -> bool:
    return (isinstance(bn, _BN_TYPES) and bn.running_mean is not None
            and bn.num_features == channels)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics)."""
    if not _foldable_bn(bn, conv.out_channels):
        raise ValueError("only a BatchNorm with running statistics over the convolution's "
                         "output channels can be folded")
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device=conv.weight.device,
                      dtype=conv.weight.dtype)
    with torch.no_grad():
        var, mean = bn.running_var.double(), bn.running_mean.double()
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
        scale = gamma / torch.sqrt(var + bn.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
        fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - mean) * scale + beta)
    return fused.eval()


class FoldedSmoothingStep(nn.Module):
    """A :class:`~mgiad.layers.SmoothingStep` whose second BN is folded into its own copy of ``B``:
    ``u + relu(B_bn(relu(bn(f - A_u))))``. The ``B`` passed by the caller is ignored."""

    def __init__(self, norm_residual: nn.Module, B: nn.Conv2d, activation: nn.Module):
        super().__init__()
        self.norm_residual = norm_residual
        self.B = B
        self.activation = activation

    def forward(self, u: Tensor, f: Tensor, A_u: Tensor, B: nn.Module | None = None) -> Tensor:
        return u + self.activation(self.B(self.norm_residual(f - A_u)))


def _use_counts(model: nn.Module) -> Counter:
    """How often each module object occurs in the module tree (shared modules occur repeatedly)."""
    return Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))


def _fold_sequentials(model: nn.Module) -> None:
    uses = _use_counts(model)
    for seq in list(model.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = seq._modules[first], seq._modules[second]
            if (_is_conv(conv) and uses[id(conv)] == 1 and uses[id(bn)] == 1
                    and _foldable_bn(bn, conv.out_channels)):
                seq._modules[first] = fold_conv_bn(conv, bn)
                seq._modules[second] = nn.Identity()


def _fold_smoothing_steps(model: nn.Module, fold_shared: bool) -> None:
    uses = _use_counts(model)
    for owner in list(model.modules()):
        B = owner._modules.get("B")
        if B is None:
            continue
        step_lists = [child for child in owner.children() if isinstance(child, nn.ModuleList)
                      and len(child) and all(isinstance(s, SmoothingStep) for s in child)]
        if not step_lists:
            continue
        # which B each step uses: as in mgiad.layers.smooth
        plan = [(steps, i, B[i] if isinstance(B, nn.ModuleList) else B)
                for steps in step_lists for i in range(len(steps))]
        steps_per_B = Counter(id(B_i) for _, _, B_i in plan)
        folded_all = True
        for steps, i, B_i in plan:
            step = steps[i]
            bn, *rest = list(step.norm_correction.children())
            act = rest[0] if len(rest) == 1 else nn.Sequential(*rest)
            # B_i must be used by this owner's steps only (its single registration), else leave it
            ok = (_is_conv(B_i) and _foldable_bn(bn, B_i.out_channels)
                  and uses[id(B_i)] == 1 and uses[id(step)] == 1
                  and (fold_shared or steps_per_B[id(B_i)] == 1))
            if ok:
                steps[i] = FoldedSmoothingStep(step.norm_residual, fold_conv_bn(B_i, bn), act)
            else:
                folded_all = False
        if folded_all:  # no step uses the original B any more: drop the dead weights
            owner.B = None


def fuse_bn(model: nn.Module, fold_shared: bool = True) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every conv -> BatchNorm pair folded into one
    convolution with a bias (see the module docstring for what is and is not folded).

    ``model`` itself is not changed. The copy keeps ``config``; ``bn_fused`` is set to True so that
    it is not mistaken for a model of its configuration (``save_pretrained`` refuses it).
    """
    fused = copy.deepcopy(model).eval()
    _fold_sequentials(fused)
    _fold_smoothing_steps(fused, fold_shared)
    fused.bn_fused = True
    return fused.eval()


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, _BN_TYPES) for m in model.modules())


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
            "install them with `pip install onnx onnxscript`") from None
    with _quiet():
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, verbose=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: _batch_dim()},))


def _run_onnx(path: Path):
    try:
        import onnxruntime as ort
    except Exception as exc:
        raise MissingDependencyError(
            f"checking the ONNX file needs onnxruntime ({type(exc).__name__}: {exc}); install it "
            "with `pip install onnxruntime`, or skip the check (--no-check)") from None
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
