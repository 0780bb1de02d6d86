"""The one place that decides how a layer computes: C++ kernels, the fast path, recomputation, or
the reference code. Every other module states *what* it computes (the paper's algorithms) and
calls here; the implementations live in :mod:`.fast` (memory-lean autograd functions, fused
BatchNorm passes), :mod:`.recompute` (run parts of the forward again in backward) and
:mod:`mgiad.kernels` (C++ convolutions). Each implementation computes the same values as the
reference code, and each is used only where it does exactly that (tests hold this).

The switches a model sets on its modules (configuration, not decisions):

* ``impl`` (``"fast"`` / ``"reference"``) on smoothing steps, and ``use_kernels`` on convolutions
  and conv-BN-ReLU blocks (``impl="fast"`` sets it);
* ``recompute`` on the model (``False``, ``"level"``, ``"step"``) and ``"step"`` / ``False`` on
  its smoothing steps, channel levels and conv-BN-ReLU blocks.

The decisions, per call: kernels only where they apply and nothing traces; the fast path only
when training with gradients (:func:`mgiad.layers.fast.applies`); recomputation only when
training with gradients and not tracing or compiling (:func:`mgiad.layers.recompute.recomputes`).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor, nn

from ..kernels import gpu
from . import fast, inference, recompute
from .checks import is_tracing

__all__ = ["conv2d", "conv_bn_relu", "plus", "residual", "smoothing_step", "smooth_step", "segment",
           "zero_features", "input_layout", "output_layout", "run_blocks", "recompute_mode",
           "gradients_in_parameter_layout"]

_SCOPES = {"level": ("level", "step"), "step": ("step",)}


# -------------------------------------------------------------------------------- layers
def conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A :class:`~mgiad.layers.conv.KernelConv2d`: a transfer on a GPU by the implementation
    :mod:`mgiad.kernels.gpu` chooses (``MGIAD_GPU_TRANSFERS``); the C++ kernels where they are on
    and apply (they also step aside under compile, autocast and dispatch modes); else PyTorch's."""
    plain = conv.bias is None and conv.padding_mode == "zeros" and not is_tracing()
    if plain and conv.gpu_transfer and x.is_cuda:
        out = gpu.transfer_conv2d(x, conv.weight, conv.stride, conv.padding, conv.dilation,
                                  conv.groups)
        if out is not None:
            return out
    if conv.use_kernels and conv.padding_mode == "zeros" and not is_tracing():
        if conv.bias is None:
            return conv.kernel_forward(x)
        return inference.conv2d(conv, x)  # BatchNorm folded into it
    return conv.reference_forward(x)


def conv_bn_relu(block: nn.Sequential, x: Tensor) -> Tensor:
    """conv -> BN -> ReLU: recomputed in backward (input stored only), the fused BatchNorm-ReLU
    passes, or the three modules one after the other."""
    if block.recompute and recompute.recomputes(block):
        out = recompute.conv_bn_relu(block, x)
        if out is not None:
            return out
    if block.use_kernels and len(block) == 3 and not is_tracing():
        if isinstance(block[1], nn.Identity) and block[0].bias is not None:  # BatchNorm folded
            return inference.conv_relu(block[0], x)
        y = block[0](x)
        out = fast.batch_norm_relu(block[1], y)
        return block[2](block[1](y)) if out is None else out
    return block.reference_forward(x)


def plus(module: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """``module(x) + y`` (``module(x)`` if ``y`` is None): in inference one convolution whose
    epilogue adds ``y`` where ``module`` is a transfer on the kernels (:mod:`.inference`)."""
    if y is None:
        return module(x)
    if not torch.is_grad_enabled() and not is_tracing():
        out = inference.conv_plus(module, x, y)
        if out is not None:
            return out
    return module(x) + y


def smoothing_step(step: nn.Module, u: Tensor, f: Tensor, A_u: Tensor, B: nn.Module) -> Tensor:
    """One smoothing step (eq. 5) with ``A(u)`` given: the fast path (``impl="fast"``, training)
    or the reference code (also while a step's correction may be dropped: ``drop_path``)."""
    if step.impl == "fast" and not _drops(step) and not is_tracing() and fast.applies(step, B, u):
        return fast.smoothing_step(step, u, f, A_u, B)
    return step.reference_forward(u, f, A_u, B)


def smooth_step(step: nn.Module, u: Tensor, f: Tensor, A: nn.Module, B: nn.Module,
                A_u: Tensor | None = None) -> Tensor:
    """One smoothing step with smoother ``A``, ``B``; ``A_u`` is ``A(u)`` if the caller has it.
    Under ``recompute="step"`` only ``u``, ``f`` are stored (folded steps never recompute); a step
    with its BatchNorms folded runs as two convolutions with epilogues (:mod:`.inference`)."""
    if getattr(step, "folded", False) and step.impl == "fast" and not is_tracing():
        return inference.smoothing_step(step, u, f, A, A_u)
    if getattr(step, "recompute", False) and recompute.recomputes(step):
        if step.impl == "fast" and not _drops(step) and fast.plain_conv(A) and fast.applies(step, B, u):
            return recompute.smoothing_step(step, u, f, A, B, A_u)
        return recompute.recomputed(step, u, f, fn=functools.partial(_step_with_A, step, A, B))
    return step(u, f, A(u) if A_u is None else A_u, B)


def residual(f: Tensor, u: Tensor, A: nn.Module, A_u: Tensor | None = None) -> Tensor:
    """``f - A(u)``: one convolution with an epilogue in inference (no gradient wanted, kernels on
    ``A``), else ``A(u)`` overwritten with the residual (one feature map fewer at once; autograd
    allows it, since a convolution's backward does not need its output)."""
    if A_u is not None:
        return f - A_u
    if (not is_tracing() and getattr(A, "use_kernels", False) and A.bias is None
            and u.device.type == "cpu" and not torch.is_grad_enabled()):  # fx: no device check
        return inference.residual(A, u, f)
    return A(u).neg_().add_(f)


def _drops(step: nn.Module) -> bool:
    """Whether the step's correction may be dropped now (stochastic depth, training only)."""
    return bool(getattr(step, "drop_path", 0.0)) and step.training


def _step_with_A(step: nn.Module, A: nn.Module, B: nn.Module, u: Tensor, f: Tensor) -> Tensor:
    return step(u, f, A(u), B)


# -------------------------------------------------------------------------------- segments
def recompute_mode(module: nn.Module) -> str | bool:
    """``"level"``, ``"step"`` or ``False``: what ``module`` recomputes in this call (``False``
    unless training with gradients, outside tracing and compiling)."""
    mode = getattr(module, "recompute", False)
    if not mode or not recompute.recomputes(module):
        return False
    return "step" if mode is True else mode


def segment(scope: str, owner: Callable[..., nn.Module] | None = None, keep: int | None = None):
    """Decorate a method computing one part of an algorithm: under ``recompute`` of ``scope`` or
    finer (``"level"``, ``"step"``) the part stores only its inputs and runs again in backward.

    ``owner(self, *args)``: the module whose BatchNorms the part runs (default ``self``);
    ``keep``: only the first ``keep`` outputs are kept when recomputing, the others are ``None``
    (an output that would cost memory to hold, such as ``A(u)`` of the coarse level).
    """
    modes = _SCOPES[scope]

    def wrap(method):
        @functools.wraps(method)
        def run(self, *args):
            if recompute_mode(self) not in modes:
                return method(self, *args)
            module = self if owner is None else owner(self, *args)
            tensors = [a for a in args if isinstance(a, Tensor) or a is None]
            fixed = args[:len(args) - len(tensors)]  # leading non-tensor arguments (a level)
            out = recompute.recomputed(module, *tensors,
                                       fn=functools.partial(method, self, *fixed))
            return out if keep is None else tuple(out[:keep]) + (None,) * (len(out) - keep)
        return run
    return wrap


def zero_features(model: nn.Module, f: Tensor) -> Tensor:
    """``u = 0`` shaped like ``f``; under ``recompute="step"`` (a whole map of zeros would otherwise
    be kept for backward) and without gradients (nothing to write: :mod:`.inference` knows a
    broadcast zero) one zero expanded to the feature map."""
    if recompute_mode(model) == "step" or not (torch.is_grad_enabled() or is_tracing()):
        return f.new_zeros(()).expand_as(f)
    return torch.zeros_like(f)


def input_layout(model: nn.Module, x: Tensor) -> Tensor:
    """The input in the layout the implementation wants: NHWC for the fast path on the CPU, where
    oneDNN's grouped and strided depthwise convolutions and the C++ kernels run much faster. A
    one-channel image is "contiguous" in both formats, and only NHWC strides make the stem's
    output NHWC: hence the explicit copy."""
    if model.impl == "fast" and not is_tracing() and x.device.type == "cpu" and x.dim() == 4:
        if not (x.stride(1) == 1 and x.is_contiguous(memory_format=torch.channels_last)):
            x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
    return x


def output_layout(x_in: Tensor, x: Tensor, u: Tensor) -> Tensor:
    """``u`` in the memory format the caller gave: contiguous NCHW when :func:`input_layout`
    made an NHWC copy ``x`` of the input ``x_in`` (a feature map for ``.view`` and friends)."""
    return u.contiguous() if x is not x_in else u


def run_blocks(model: nn.Module, blocks: nn.Sequential, x: Tensor,
               ends: tuple[int, ...] = ()) -> tuple[Tensor, list[Tensor]]:
    """``blocks`` one after the other; each is a recomputed segment (its input stored only)
    under ``model.grad_checkpointing`` while recomputation applies. Returns the output and the
    outputs of the blocks with the indices ``ends``; stops after the last of them, if any."""
    segments = model.grad_checkpointing and recompute.recomputes(model)
    kept = []
    for i, block in enumerate(blocks):
        x = recompute.recomputed(block, x) if segments else block(x)
        if i in ends:
            kept.append(x)
            if len(kept) == len(ends):
                break
    return x, kept


# -------------------------------------------------------------------------------- gradients
def gradients_in_parameter_layout(model: nn.Module) -> None:
    """Make every parameter's gradient arrive in the parameter's own strides.

    oneDNN (a convolution with an NHWC input, as the fast path feeds it on the CPU) and the C++
    kernels give some weight gradients other strides than their weight in dimensions of size 1:
    a (C, 1, 3, 3) stem weight gets channels-last strides, a (C, 2, 1, 1) transfer weight
    arbitrary ones. Autograd keeps them (its layout contract ignores size-1 dimensions), but
    DistributedDataParallel compares every stride with its bucket views, warns "Grad strides do
    not match bucket view strides" on every rank and copies instead of viewing. Such a gradient
    describes the same memory with the parameter's strides, so re-striding it is free."""
    for p in model.parameters():
        if p.requires_grad:
            p.register_hook(functools.partial(_in_layout_of, p))


def _in_layout_of(param: Tensor, grad: Tensor) -> Tensor | None:
    if grad.stride() == param.stride() or grad.shape != param.shape or grad.layout != torch.strided:
        return None  # keep the gradient as it is
    if all(a == b for n, a, b in zip(grad.shape, grad.stride(), param.stride()) if n > 1):
        return grad.as_strided(grad.shape, param.stride(), grad.storage_offset())
    return None
