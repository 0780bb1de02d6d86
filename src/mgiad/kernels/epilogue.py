"""Inference convolutions with an element-wise epilogue (no autograd), for BatchNorm-folded models:

    y = conv(x);   v = alpha * y + beta + add_scale * add;   v = relu(v) if relu;   v + residual

``alpha``, ``beta``, ``add_scale`` are per-channel vectors, ``add`` and ``residual`` maps of the
output's shape; each is optional. The grouped 3x3 kernel and the dense 3x3 one (:mod:`.winograd`)
apply the epilogue to their accumulators before storing them, the transfer kernels to each block of output rows right after computing it
(still in cache), so a smoothing step with BatchNorm folded (eq. 5) costs two passes over memory
instead of seven. Where no kernel computes the convolution,
PyTorch's does and the epilogue runs as one in-place pass (``epilogue_``), or as PyTorch operations
where the kernels are off. Every function computes exactly :func:`reference`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import grouped_conv, runtime, winograd
from .autograd import may_run, operators
from .functional import kernels_for

__all__ = ["conv2d", "apply", "apply_", "reference", "smoothing_step"]

_KEYS = ("alpha", "beta", "add", "add_scale", "relu", "residual")


def reference(y: Tensor, alpha=None, beta=None, add=None, add_scale=None, relu=False,
              residual=None) -> Tensor:
    """The epilogue in PyTorch operations (a new tensor; ``y`` is not changed)."""
    shape = (1, -1, 1, 1)
    v = y if alpha is None else y * alpha.view(shape)
    if beta is not None:
        v = v + beta.view(shape)
    if add is not None:
        v = v + (add if add_scale is None else add * add_scale.view(shape))
    if relu:
        v = F.relu(v)
    return v if residual is None else v + residual


def _inference_tensors(*tensors: Tensor | None) -> bool:
    """Nothing needs a gradient, and every tensor given is a float32 CPU tensor (whether the
    kernels may run now is :func:`~.autograd.may_run`'s)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    return all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in tensors)


def _nhwc(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous(memory_format=torch.channels_last)


def _args(epilogue: dict) -> list:
    unknown = set(epilogue) - set(_KEYS)
    if unknown:
        raise TypeError(f"unknown epilogue arguments {sorted(unknown)}; expected {list(_KEYS)}")
    a = [epilogue.get(k) for k in _KEYS]
    a[4] = bool(a[4])
    a[2], a[5] = _nhwc(a[2]), _nhwc(a[5])
    return a


def _on_kernels(y: Tensor, args: list) -> bool:
    return y.dim() == 4 and _inference_tensors(y, *args[:4], args[5]) and may_run()


def apply(y: Tensor, **epilogue) -> Tensor:
    """The epilogue of ``y`` as a new tensor (one pass on the kernels where they run)."""
    args = _args(epilogue)
    if _on_kernels(y, args):
        return operators().epilogue(_nhwc(y), *args)
    return reference(y, **epilogue)


def apply_(y: Tensor, **epilogue) -> Tensor:
    """The epilogue on ``y``: in place (one pass, on the kernels) where they run and ``y`` is
    NHWC, else into a new tensor; use the returned tensor."""
    args = _args(epilogue)
    if _on_kernels(y, args):  # the layout is converted in the call, so that a trace records it
        return operators().epilogue_(_nhwc(y), *args)
    return reference(y, **epilogue)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1, **epilogue) -> Tensor:
    """``F.conv2d(x, weight, bias, ...)`` followed by the epilogue; ``bias`` folds into ``beta``
    (only one of them may be given). The output is channels_last where the kernels compute it."""
    if bias is not None:
        if epilogue.get("beta") is not None:
            raise TypeError("give bias or beta, not both")
        alpha = epilogue.get("alpha")  # alpha * (y + b) = alpha * y + alpha * b
        epilogue = dict(epilogue, beta=bias if alpha is None else alpha * bias)
    args = _args(epilogue)
    if _inference_tensors(x, weight, *args[:4], args[5]):
        ops = kernels_for(x, weight, stride, padding, dilation, groups)  # None unless they may run
        if ops is not None:
            return ops.epilogue(_nhwc(x), weight.contiguous(), *args, runtime.isa())
        if winograd.takes(x, weight, stride, padding, dilation, groups) and may_run():
            return winograd.conv2d(_nhwc(x), weight, *args)
    if epilogue.get("alpha") is None:  # a bias the convolution can add itself
        bias, epilogue = epilogue.get("beta"), dict(epilogue, beta=None)
    else:
        bias = None
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if all(epilogue.get(k) is None for k in ("alpha", "beta", "add", "residual")):
        return F.relu(y, inplace=True) if epilogue.get("relu") else y
    return apply_(y, **epilogue)


def smoothing_step(u: Tensor | None, f: Tensor, A: Tensor | None, A_u: Tensor | None, s1: Tensor,
                   t1: Tensor, B: Tensor, b2: Tensor) -> Tensor | None:
    """Eq. (5) with BatchNorm folded, ``u + relu(B * relu(s1 (f - A u) + t1) + b2)``, in one call of
    the grouped kernel, ``B`` (and ``A``) the weights of grouped 3x3 convolutions (stride 1, zero
    padding 1). ``A u`` is computed (``A``), given (``A_u``), or zero (``u`` None: the first step,
    ``relu(B * relu(s1 f + t1) + b2)``). Each thread takes whole images and keeps an image's ``z``
    in its cache, so ``z`` never goes to memory and back (with fewer images than threads the
    kernel parallelises over rows). None where that kernel does not take the convolutions."""
    if f.dim() != 4 or not may_run():
        return None
    groups = f.shape[1] // B.shape[1]
    if not (_inference_tensors(u, f, A, A_u, s1, t1, B, b2) and grouped_conv.takes(f, B, 1, 1, 1, groups)
            and (A is None or A.shape == B.shape)):
        return None
    alpha = s1 if u is None else -s1  # the scale of A u (or of f where u = 0)
    return operators().conv3x3_smoothing_step(_nhwc(u), _nhwc(f), None if A is None else A.contiguous(),
                                              _nhwc(A_u), alpha, s1, t1, B.contiguous(), b2, runtime.isa())
