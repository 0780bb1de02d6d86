"""``optimize_for_inference(model)``: a trained model as fast as this library runs it, same outputs.

1. An eval-mode copy with BatchNorm folded (:func:`mgiad.layers.fold.fuse_bn`): each smoothing step
   becomes two convolutions whose epilogues do its element-wise work, and each transfer one
   (:mod:`mgiad.layers.inference`, on the C++ kernels of :mod:`mgiad.kernels.epilogue`).
2. On the CPU, weights in channels_last (NHWC), the kernels' layout.
3. On the CPU, an executor: ``torch.jit.trace`` records the folded model's operators as they run
   here, kernels included (:func:`mgiad.kernels.runtime.trace_kernels`), and ``torch.jit.freeze``
   makes the weights constants. A forward is then one call into C++, with no Python per operator:
   at batch 1 that is most of the time of a small network. The trace holds no shapes: any batch
   size and image size run, in either memory format.

The result is checked against ``model`` in eval mode on an example input before it is returned.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from ..kernels import runtime
from ..layers.fold import fuse_bn
from ..layers.conv import use_inference_convs

__all__ = ["optimize_for_inference", "InferenceModel", "EXECUTORS"]

EXECUTORS = ("auto", "trace", "eager")


class InferenceModel(nn.Module):
    """A model prepared by :func:`optimize_for_inference`: call it like the model (logits out, no
    gradients; it runs under ``torch.inference_mode``). ``folded`` is the BatchNorm-folded module,
    ``executor`` says what runs it (``"trace"``: a frozen TorchScript graph; ``"eager"``: Python)."""

    def __init__(self, folded: nn.Module, runner: nn.Module, executor: str):
        super().__init__()
        self.folded = folded
        self.runner = runner if runner is not folded else None
        self.executor = executor
        for name in ("config", "num_classes", "in_chans", "pretrained_cfg"):
            if hasattr(folded, name):
                setattr(self, name, getattr(folded, name))

    def forward(self, x: Tensor) -> Tensor:
        # an empty batch runs in Python: frozen graphs of oneDNN's convolutions crash on it
        eager = self.runner is None or x.numel() == 0
        with torch.inference_mode():
            return (self.folded if eager else self.runner)(x)

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("an InferenceModel cannot be trained: its BatchNorms are folded; "
                               "train the original model")
        return super().train(False)


def _example(model: nn.Module, input_size, device) -> Tensor:
    in_chans = getattr(model, "in_chans", 3)
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, in_chans, h, w, generator=generator).to(device)  # NCHW: see _trace


def _trace(folded: nn.Module, example: Tensor) -> nn.Module:
    """The frozen trace of ``folded`` with the kernels recorded. Traced on an NCHW example, so that
    the conversion of the input to NHWC is part of the graph (a no-op copy for NHWC inputs)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        with runtime.trace_kernels(), torch.inference_mode():
            traced = torch.jit.trace(folded, example, check_trace=False)
        return torch.jit.freeze(traced.eval())


def optimize_for_inference(model: nn.Module, *, input_size: int | tuple[int, int] = 32,
                           executor: str = "auto", check: bool = True,
                           atol: float = 1e-4) -> InferenceModel:
    """``model`` (not modified) prepared for inference: BatchNorm folded, NHWC and the C++ kernels
    on the CPU, run by a traced executor (``executor="auto"`` or ``"trace"``; ``"eager"``: the
    folded module in Python; ``"auto"`` traces on the CPU only, and falls back to eager with a
    warning if tracing fails). ``input_size``: the example image size used to trace and check;
    other sizes run too. With ``check``, the result must match ``model`` in eval mode on the
    example within ``atol`` (relative to the logits' scale), else ``RuntimeError``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if isinstance(model, InferenceModel):
        return model
    reference = copy.deepcopy(model).eval()
    device = next(reference.parameters()).device
    folded = copy.deepcopy(reference) if getattr(reference, "bn_fused", False) else fuse_bn(reference)
    if device.type == "cpu":
        folded = use_inference_convs(folded).to(memory_format=torch.channels_last)
    example = _example(model, input_size, device)
    runner, used = folded, "eager"
    if executor == "trace" or (executor == "auto" and device.type == "cpu"):
        try:
            runner, used = _trace(folded, example), "trace"
        except Exception as error:  # an unusual model: tracing is an optimisation, not a must
            if executor == "trace":
                raise
            warnings.warn(f"optimize_for_inference: tracing failed ({type(error).__name__}: "
                          f"{error}); running the folded model in Python", RuntimeWarning)
    result = InferenceModel(folded, runner, used)
    if check:
        with torch.inference_mode():
            expected, got = reference(example), result(example)
        err = (expected - got).abs().max().item()
        if not err <= atol * (1.0 + expected.abs().max().item()):
            raise RuntimeError(f"optimize_for_inference: the optimised model differs from the "
                               f"original by {err:.3g} (tolerance {atol:g})")
    return result
