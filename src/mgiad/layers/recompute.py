"""Recomputation: train with less memory by running parts of the forward again in backward.

``recompute`` of MgNet and MGiaD (:data:`RECOMPUTE`):

* ``"level"``: each resolution level's smoother is one ``torch.utils.checkpoint`` segment that
  stores only the level's inputs ``f_l``, ``u_l``; backward runs the level again.
* ``"step"``: as ``"level"``, and inside a level (nested segments, so that only one level's
  boundaries are alive at a time):

  - every smoothing step (eq. 5) is :class:`RecomputedSmoothingStep`, which stores only ``u``
    and ``f``; its backward runs ``A(u)`` and ``B(...)`` again and works in place, a slice of
    the batch at a time, so that it needs about two feature maps besides its inputs and their
    gradients;
  - every channel-level correction (algorithm 2 lines 4-7) is a segment storing ``f``, ``u``,
    and so is each restriction (lines 4-5, eq. 8-9) and the stem;
  - the transfers' conv-BN-ReLU blocks are :class:`RecomputedConvBNReLU` (input only);
  - the initial ``u_1 = 0`` is one stored zero.

  The segmentation was chosen by measurement (docs/performance.md): each part removes feature
  maps from the peak, and each costs forward work again.

Outputs, gradients and BatchNorm running statistics (updated once, as in a plain step) equal the
plain model's.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import kernels
from .fast import _affine_bn, _bn_factor, _memory_format, plain_conv
from .checks import is_tracing

__all__ = ["RECOMPUTE", "check_recompute", "recomputes", "recomputed", "smoothing_step",
           "RecomputedSmoothingStep", "conv_bn_relu", "RecomputedConvBNReLU"]

RECOMPUTE = {
    False: "store every activation for backward (fastest)",
    "level": "store each resolution level's inputs; backward runs the level again",
    "step": "as 'level', and inside a level store only each smoothing step's and channel "
            "level's u, f; backward runs them again (least memory)",
}


def check_recompute(mode) -> str | bool:
    """Normalise ``recompute``: ``True`` is the older spelling of ``"level"``."""
    if mode is True:
        return "level"
    if mode is False or mode is None:
        return False
    if mode not in RECOMPUTE:
        raise ValueError(f"recompute must be one of False, 'level', 'step' (True means 'level'), "
                         f"got {mode!r}")
    return mode


def recomputes(module: nn.Module) -> bool:
    """Whether recomputation applies now: training with gradients, not while tracing or under
    ``torch.compile`` (where the readable code runs)."""
    return (module.training and torch.is_grad_enabled() and not is_tracing()
            and not torch.compiler.is_compiling())


@contextlib.contextmanager
def _batchnorm_statistics_frozen(module: nn.Module):
    """While recomputing a forward for backward, BatchNorms must not update their running
    statistics a second time: momentum 0 keeps them, and the batch counter is restored."""
    norms = [m for m in module.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def recomputed(module: nn.Module, *inputs: Tensor | None, fn=None):
    """``module(*inputs)`` (or ``fn(*inputs)``, a computation with ``module``'s parameters) without
    storing its activations: backward runs it again (``torch.utils.checkpoint``, non-reentrant,
    nestable). Outputs, gradients and BatchNorm running statistics are those of a plain call."""
    from torch.utils.checkpoint import checkpoint
    return checkpoint(fn or module, *inputs, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(),
                                          _batchnorm_statistics_frozen(module)))


# ----------------------------------------------------------------------- the recomputed step
def smoothing_step(step: nn.Module, u: Tensor, f: Tensor, A: nn.Conv2d, B: nn.Conv2d,
                   A_u: Tensor | None = None) -> Tensor:
    """Smoothing step ``step`` with ``A``, ``B`` through :class:`RecomputedSmoothingStep`,
    storing only ``u``, ``f`` (call only where the fast path applies: ``impl="fast"``, plain
    convolutions and BatchNorms; :mod:`.dispatch` decides)."""
    bn1, bn2 = step.norm_residual[0], step.norm_correction[0]
    factors = (_bn_factor(bn1), _bn_factor(bn2))
    return RecomputedSmoothingStep.apply(
        u, f, A.weight, B.weight, bn1.weight, bn1.bias, bn2.weight, bn2.bias,
        None if A_u is None else A_u.detach(),
        (bn1.running_mean, bn1.running_var), (bn2.running_mean, bn2.running_var), factors,
        (bn1.eps, bn2.eps), _conv_args(A), _conv_args(B))


def _conv_args(conv: nn.Conv2d):
    return conv.stride, conv.padding, conv.dilation, conv.groups


SLICE_BYTES = 6 * 2**20  # scratch maps of backward: slices of the batch of about this size


def _slices(x: Tensor) -> list[slice]:
    """Slices of ``x``'s batch of about :data:`SLICE_BYTES` each: the scratch memory of the
    backward passes stays small on wide levels, and small levels are not cut up for nothing."""
    n = x.shape[0]
    size = max(1, n * SLICE_BYTES // max(1, x.numel() * x.element_size()))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _per_channel(v: Tensor, x: Tensor) -> Tensor:
    return v.view((1, -1) + (1,) * (x.dim() - 2))


def _bn_backward_coefficients(sum_g: Tensor, sum_g_xc: Tensor, count: int, mean: Tensor,
                              invstd: Tensor, gamma: Tensor):
    """Training-mode BatchNorm's input gradient is ``scale * g + coef_x * x + shift`` per
    channel, from ``sum(g)`` and ``sum(g * (x - mean))``; also returns ``sum(g * xhat)``, the
    gradient of ``gamma``."""
    g_gamma = sum_g_xc * invstd                                   # sum(g * xhat)
    scale = gamma * invstd                                        # d bn / d x, without the mean
    coef_x = -scale * invstd * g_gamma / count                    # multiplies x
    shift = -scale * sum_g / count - coef_x * mean
    return scale, coef_x, shift, g_gamma


def _batch_norm_backward_(g: Tensor, x: Tensor, mean: Tensor, invstd: Tensor, gamma: Tensor):
    """Training-mode BatchNorm backward, in place: ``g`` (gradient of ``bn(x)``) becomes the
    gradient of ``x``. Returns the gradients of ``gamma`` and ``beta``. Scratch: one slice."""
    dims = [0] + list(range(2, x.dim()))
    count = x.numel() // x.shape[1]
    sum_g = g.sum(dims)
    sum_g_xc = sum(((g[s] * (x[s] - _per_channel(mean, x))).sum(dims)
                    for s in _slices(x)), torch.zeros_like(sum_g))
    scale, coef_x, shift, g_gamma = _bn_backward_coefficients(sum_g, sum_g_xc, count, mean,
                                                              invstd, gamma)
    g.mul_(_per_channel(scale, x)).addcmul_(x, _per_channel(coef_x, x)).add_(_per_channel(shift, x))
    return g_gamma, sum_g


class RecomputedConvBNReLU(torch.autograd.Function):
    """``relu(bn(conv(x)))`` (training-mode BatchNorm) storing only ``x``, the weights and the
    batch statistics; backward runs the convolution again (the FAS transfers ``R``, ``Pi``).
    ``use_kernels``: the convolutions go through :mod:`mgiad.kernels`' transfer kernels where they
    apply (the conv's own ``use_kernels``, set by ``impl="fast"``)."""

    @staticmethod
    def forward(ctx, x, weight, gamma, beta, running, factor, eps, conv_args, use_kernels=False):
        y = _conv(use_kernels, x, weight, conv_args)
        n, mean, invstd = torch.native_batch_norm(y, gamma, beta, running[0], running[1], True,
                                                  factor, eps)
        ctx.save_for_backward(x, weight, gamma, beta, mean, invstd)
        ctx.conv_args, ctx.use_kernels = conv_args, use_kernels
        return n.relu_()

    @staticmethod
    def backward(ctx, g_out):
        x, weight, gamma, beta, mean, invstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        y = _conv(ctx.use_kernels, x, weight, ctx.conv_args)
        g_out = g_out.contiguous(memory_format=_memory_format(y))
        g_gamma, g_beta = _relu_batch_norm_backward_(y, g_out, mean, invstd, gamma, beta)
        if ctx.use_kernels:
            g_x, g_w = kernels.conv2d_backward(y, x, weight, *ctx.conv_args, [need[0], need[1]])
        else:
            stride, padding, dilation, groups = ctx.conv_args
            g_x, g_w, _ = torch.ops.aten.convolution_backward(
                y, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
                [need[0], need[1], False])
        return g_x, g_w, g_gamma, g_beta, None, None, None, None, None


def _conv(use_kernels: bool, x: Tensor, weight: Tensor, conv_args) -> Tensor:
    if use_kernels:
        return kernels.conv2d(x, weight, *conv_args)
    return F.conv2d(x, weight, None, *conv_args)


def conv_bn_relu(block: nn.Sequential, x: Tensor) -> Tensor | None:
    """``block`` (conv, BatchNorm, ReLU) through :class:`RecomputedConvBNReLU`, or ``None`` where
    that would not compute exactly what the block does."""
    conv, bn = block[0], block[1]
    if not (len(block) == 3 and plain_conv(conv) and type(bn) is nn.BatchNorm2d and bn.affine
            and block.training and torch.is_grad_enabled()
            and not torch.is_autocast_enabled(x.device.type)):
        return None
    return RecomputedConvBNReLU.apply(x, conv.weight, bn.weight, bn.bias,
                                      (bn.running_mean, bn.running_var), _bn_factor(bn), bn.eps,
                                      _conv_args(conv), bool(getattr(conv, "use_kernels", False)))


def _is_zero(u: Tensor) -> bool:
    """``u`` is a zero expanded to a feature map (the initial ``u_1``: nothing to store)."""
    return all(st == 0 for st in u.stride()) and u.as_strided((1,), (1,)).item() == 0


def _relu_batch_norm_backward_(x: Tensor, g_out: Tensor, mean: Tensor, invstd: Tensor,
                               gamma: Tensor, beta: Tensor):
    """Backward of ``relu(bn(x))`` (training mode), in place: ``x`` becomes the gradient of ``x``
    for the gradient ``g_out`` of the output. Two passes of slices: sums, then the update.
    Returns the gradients of ``gamma`` and ``beta``."""
    dims = [0] + list(range(2, x.dim()))
    count = x.numel() // x.shape[1]
    sum_g = x.new_zeros(x.shape[1])
    sum_g_xc = x.new_zeros(x.shape[1])
    for s in _slices(x):
        g = _affine_bn(x[s], mean, invstd, gamma, beta).gt_(0).mul_(g_out[s])
        sum_g += g.sum(dims)
        sum_g_xc += (g * (x[s] - _per_channel(mean, x))).sum(dims)
    scale, coef_x, shift, g_gamma = _bn_backward_coefficients(sum_g, sum_g_xc, count, mean,
                                                              invstd, gamma)
    for s in _slices(x):
        g = _affine_bn(x[s], mean, invstd, gamma, beta).gt_(0).mul_(g_out[s])
        x[s] = g.mul_(_per_channel(scale, x)).addcmul_(x[s], _per_channel(coef_x, x)).add_(
            _per_channel(shift, x))
    return g_gamma, sum_g


class RecomputedSmoothingStep(torch.autograd.Function):
    """``u + relu(bn2(B(relu(bn1(f - A u)))))`` (eq. 5) storing only ``u``, ``f``, the weights and
    the per-channel batch statistics. ``A_u``, if given, is ``A(u)`` already computed by the caller
    (forward uses it; backward computes it again)."""

    @staticmethod
    def forward(ctx, u, f, weight_A, weight_B, gamma1, beta1, gamma2, beta2, A_u, running1,
                running2, factors, eps, conv_A, conv_B):
        (mean1, var1), (mean2, var2), (eps1, eps2) = running1, running2, eps
        if A_u is None:
            A_u = kernels.conv2d(u, weight_A, *conv_A)
        r = f - A_u
        del A_u
        n1, m1, s1 = torch.native_batch_norm(r, gamma1, beta1, mean1, var1, True, factors[0], eps1)
        del r
        z = kernels.conv2d(n1.relu_(), weight_B, *conv_B)
        del n1
        n2, m2, s2 = torch.native_batch_norm(z, gamma2, beta2, mean2, var2, True, factors[1], eps2)
        del z
        out = torch.add(u, n2.relu_())
        ctx.save_for_backward(u, f, weight_A, weight_B, gamma1, beta1, gamma2, beta2, m1, s1, m2,
                              s2)
        ctx.conv_A, ctx.conv_B, ctx.u_is_zero = conv_A, conv_B, _is_zero(u)
        return out

    @staticmethod
    def backward(ctx, g_out):
        u, f, weight_A, weight_B, gamma1, beta1, gamma2, beta2, m1, s1, m2, s2 = ctx.saved_tensors
        need = ctx.needs_input_grad
        (sA, pA, dA, gA), (sB, pB, dB, gB) = ctx.conv_A, ctx.conv_B
        g_out = g_out.contiguous(memory_format=_memory_format(f))
        # forward again: r = f - A u, z = B(relu(bn1(r))); scratch a = relu(bn1(r)) is dropped
        if ctx.u_is_zero:  # algorithm 1/3 line 1: u_1 = 0
            r = f
        else:
            r = kernels.conv2d(u, weight_A, sA, pA, dA, gA)
            torch.sub(f, r, out=r)
        z = torch.empty_like(r)
        for s in _slices(r):
            z[s] = kernels.conv2d(_affine_bn(r[s], m1, s1, gamma1, beta1).relu_(), weight_B, sB,
                                  pB, dB, gB)
        # relu(bn2(z)): z becomes the gradient of z, a slice at a time (no full-size scratch)
        g_gamma2, g_beta2 = _relu_batch_norm_backward_(z, g_out, m2, s2, gamma2, beta2)
        g = z
        del z
        # B: a slice of the batch at a time (a = relu(bn1(r)) recomputed); g becomes grad of bn1
        g_B = torch.zeros_like(weight_B) if need[3] else None
        for s in _slices(g):
            a = _affine_bn(r[s], m1, s1, gamma1, beta1).relu_()
            g_a, g_B_s = kernels.conv2d_backward(g[s], a, weight_B, sB, pB, dB, gB, [True, need[3]])
            if g_B is not None:
                g_B += g_B_s
            g[s] = g_a.mul_(a > 0)
        del a, g_a
        g_gamma1, g_beta1 = _batch_norm_backward_(g, r, m1, s1, gamma1)   # g = d loss / d r
        del r
        # r = f - A u: f gets g, u gets g_out - A^T g, A's weight -grad(g)
        if ctx.u_is_zero and not need[0]:
            g_u, g_A = None, torch.zeros_like(weight_A) if need[2] else None
        else:
            g_u, g_A = kernels.conv2d_backward(g, u, weight_A, sA, pA, dA, gA, [need[0], need[2]])
        if g_u is not None:
            g_u = torch.sub(g_out, g_u, out=g_u)
        return (g_u, g if need[1] else None, None if g_A is None else g_A.neg_(), g_B,
                g_gamma1, g_beta1, g_gamma2, g_beta2, None, None, None, None, None, None, None)
