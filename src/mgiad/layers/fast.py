"""The fast path of the smoothing step (eq. 5), for training: same mathematics, less memory.

    u' = u + relu(bn2(B(relu(bn1(f - A_u)))))

Autograd on the readable version (:class:`mgiad.layers.SmoothingStep`) keeps four activations per
step alive until backward: ``r = f - A_u`` (input of ``bn1``), ``a = relu(bn1(r))`` (input of
``B``), ``z = B(a)`` (input of ``bn2``) and ``relu(bn2(z))``. This autograd function keeps only
``r`` and ``z`` (plus the per-channel batch statistics) and recomputes ``a`` and the ReLU masks in
backward from them: two element-wise passes instead of two stored feature maps. MGiaD and MgNet
run many smoothing steps on wide feature maps, so this roughly halves their activation memory.

BatchNorm follows ``nn.BatchNorm2d`` exactly in training mode (batch statistics, running-stat
update with ``momentum`` or the cumulative average, ``num_batches_tracked``). Outside training
with gradients, the readable path runs (it is as cheap there, and it is what exporters trace).

On channels_last CPU maps the element-wise work runs in :mod:`mgiad.kernels.batchnorm`'s fused
passes (about half the memory traffic): ``r`` with its statistics in one pass, ``relu(bn1(r))`` in
one, the statistics of ``z`` in one, ``u + relu(bn2(z))`` in one; in backward each BatchNorm-ReLU
takes two passes, and the gradient of ``A_u`` (``-g_r``) is written with ``g_r``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import kernels
from ..kernels import batchnorm as fused

__all__ = ["applies", "smoothing_step", "SmoothingStepFunction", "batch_norm_relu",
           "BatchNormReLUFunction"]


def _bn_factor(bn: nn.BatchNorm2d) -> float:
    """The running-average factor ``nn.BatchNorm2d.forward`` uses in training (and its counter)."""
    if not bn.track_running_stats:
        return 0.0
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            return 1.0 / float(bn.num_batches_tracked)
    return bn.momentum


class SmoothingStepFunction(torch.autograd.Function):
    """``u + relu(bn2(B(relu(bn1(f - A_u)))))`` with training-mode BatchNorms; see the module
    docstring for what is stored."""

    @staticmethod
    def forward(ctx, u, f, A_u, weight_B, gamma1, beta1, gamma2, beta2, running1, running2,
                factors, eps, conv_args):
        (eps1, eps2), conv_B = eps, (weight_B, *conv_args)
        ctx.fused = fused.applies(u, f, A_u)
        if ctx.fused:
            r, m1, var1 = fused.residual_stats(f, A_u)                  # residual f - A(u)
            s1 = _invstd_and_running_update(r, m1, var1, running1, factors[0], eps1)
            a = fused.affine_relu(r, *_scale_shift(m1, s1, gamma1, beta1))
            z = kernels.conv2d(a, *conv_B).contiguous(memory_format=torch.channels_last)  # B(...)
            del a
            m2, var2 = fused.batch_stats(z)
            s2 = _invstd_and_running_update(z, m2, var2, running2, factors[1], eps2)
            out = fused.affine_relu(z, *_scale_shift(m2, s2, gamma2, beta2), u=u)
        else:
            r = f - A_u                                                 # residual f - A(u)
            n1, m1, s1 = torch.native_batch_norm(r, gamma1, beta1, *running1, True, factors[0], eps1)
            z = kernels.conv2d(n1.relu_(), *conv_B)                     # B(...)
            n2, m2, s2 = torch.native_batch_norm(z, gamma2, beta2, *running2, True, factors[1], eps2)
            out = torch.add(u, n2.relu_())
        ctx.save_for_backward(r, z, weight_B, gamma1, beta1, gamma2, beta2, m1, s1, m2, s2)
        ctx.eps, ctx.conv_args = eps, conv_args
        return out

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors  # unpacked once (checkpointing allows no second time)
        r, z, weight_B, gamma1, beta1, gamma2, beta2, m1, s1, m2, s2 = saved
        stride, padding, dilation, groups = ctx.conv_args
        eps1, eps2 = ctx.eps
        need = ctx.needs_input_grad
        grad_out = grad_out.contiguous(memory_format=_memory_format(r))  # one layout throughout
        if ctx.fused:
            return SmoothingStepFunction._backward_fused(ctx, grad_out, saved)
        batch_norm_backward = torch.ops.aten.native_batch_norm_backward
        # relu(bn2(z)): the mask is recomputed from z and the batch statistics
        g_n2 = torch.ops.aten.threshold_backward(grad_out, _affine_bn(z, m2, s2, gamma2, beta2), 0)
        g_z, g_gamma2, g_beta2 = batch_norm_backward(
            g_n2, z, gamma2, None, None, m2, s2, True, eps2, [True, need[6], need[7]])
        del g_n2
        a = _affine_bn(r, m1, s1, gamma1, beta1).relu_()              # recomputed input of B
        g_a, g_B = kernels.conv2d_backward(g_z, a, weight_B, stride, padding, dilation, groups,
                                           [True, need[3]])
        del g_z
        g_n1 = torch.ops.aten.threshold_backward(g_a, a, 0)
        del a, g_a
        g_r, g_gamma1, g_beta1 = batch_norm_backward(
            g_n1, r, gamma1, None, None, m1, s1, True, eps1, [True, need[4], need[5]])
        return (grad_out if need[0] else None, g_r if need[1] else None,
                g_r.neg() if need[2] else None, g_B, g_gamma1, g_beta1, g_gamma2, g_beta2,
                None, None, None, None, None)

    @staticmethod
    def _backward_fused(ctx, grad_out, saved):
        """The backward above in the fused passes of :mod:`mgiad.kernels.batchnorm`."""
        r, z, weight_B, gamma1, beta1, gamma2, beta2, m1, s1, m2, s2 = saved
        need = ctx.needs_input_grad
        g_z, _, g_gamma2, g_beta2 = fused.relu_bn_backward(grad_out, z, m2, s2, gamma2, beta2)
        a = fused.affine_relu(r, *_scale_shift(m1, s1, gamma1, beta1))   # recomputed input of B
        g_a, g_B = kernels.conv2d_backward(g_z, a, weight_B, *ctx.conv_args, [True, need[3]])
        del g_z, a
        g_r, neg_g_r, g_gamma1, g_beta1 = fused.relu_bn_backward(
            g_a.contiguous(memory_format=torch.channels_last), r, m1, s1, gamma1, beta1,
            negated=need[2])
        return (grad_out if need[0] else None, g_r if need[1] else None, neg_g_r, g_B,
                g_gamma1, g_beta1, g_gamma2, g_beta2, None, None, None, None, None)


def _invstd_and_running_update(x: Tensor, mean: Tensor, var: Tensor, running, factor: float,
                               eps: float) -> Tensor:
    """Training-mode BatchNorm's bookkeeping from the batch mean and biased variance of ``x``:
    the running averages (unbiased variance, as ``nn.BatchNorm2d``); returns ``1/sqrt(var+eps)``."""
    running_mean, running_var = running
    if running_mean is not None:
        count = x.numel() // x.shape[1]
        running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        running_var.mul_(1 - factor).add_(var, alpha=factor * count / (count - 1))
    return (var + eps).rsqrt()


def _scale_shift(mean: Tensor, invstd: Tensor, gamma: Tensor, beta: Tensor):
    """BatchNorm with given statistics as ``x * scale + shift`` per channel."""
    scale = invstd * gamma
    return scale, torch.addcmul(beta, mean, scale, value=-1)


def _memory_format(x: Tensor) -> torch.memory_format:
    """channels_last where ``x`` is NHWC; mixing formats makes element-wise ops strided and slow."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _affine_bn(x: Tensor, mean: Tensor, invstd: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """``(x - mean) * invstd * gamma + beta`` per channel (BatchNorm with given statistics)."""
    scale = invstd * gamma
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul((beta - mean * scale).view(shape), x, scale.view(shape))


def plain_conv(conv: nn.Module) -> bool:
    """A bias-free, zero-padded ``nn.Conv2d`` (or a subclass marked ``computes_conv2d``, such as
    :class:`~mgiad.layers.GroupedConv3x3`, which only changes how the same map is computed)."""
    return ((type(conv) is nn.Conv2d or getattr(type(conv), "computes_conv2d", False))
            and conv.bias is None and conv.padding_mode == "zeros")


def applies(step: nn.Module, B: nn.Module, x: Tensor) -> bool:
    """Whether the fast path computes exactly what ``step`` would: training with gradients, no
    autocast, affine BatchNorms, a bias-free zero-padded ``B``, not under ``torch.compile`` (the
    caller rules out jit/fx tracing)."""
    bn1, bn2 = step.norm_residual[0], step.norm_correction[0]
    return (step.training and torch.is_grad_enabled()
            and plain_conv(B)
            and type(bn1) is nn.BatchNorm2d and type(bn2) is nn.BatchNorm2d
            and bn1.affine and bn2.affine
            and not torch.is_autocast_enabled(x.device.type)
            and not torch.compiler.is_compiling())


def smoothing_step(step: nn.Module, u: Tensor, f: Tensor, A_u: Tensor, B: nn.Conv2d) -> Tensor:
    """Run :class:`~mgiad.layers.SmoothingStep` ``step`` through :class:`SmoothingStepFunction`
    (call only where :func:`applies`)."""
    bn1, bn2 = step.norm_residual[0], step.norm_correction[0]
    factors = (_bn_factor(bn1), _bn_factor(bn2))
    return SmoothingStepFunction.apply(
        u, f, A_u, B.weight, bn1.weight, bn1.bias, bn2.weight, bn2.bias,
        (bn1.running_mean, bn1.running_var), (bn2.running_mean, bn2.running_var), factors,
        (bn1.eps, bn2.eps), (B.stride, B.padding, B.dilation, B.groups))


class BatchNormReLUFunction(torch.autograd.Function):
    """``relu(bn(x))`` with a training-mode BatchNorm in :mod:`mgiad.kernels.batchnorm`'s fused
    passes (statistics, then normalisation and ReLU; backward in two), storing only ``x``."""

    @staticmethod
    def forward(ctx, x, gamma, beta, running, factor, eps):
        mean, var = fused.batch_stats(x)
        invstd = _invstd_and_running_update(x, mean, var, running, factor, eps)
        ctx.save_for_backward(x, mean, invstd, gamma, beta)
        return fused.affine_relu(x, *_scale_shift(mean, invstd, gamma, beta))

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, gamma, beta = ctx.saved_tensors
        g_x, _, g_gamma, g_beta = fused.relu_bn_backward(
            grad.contiguous(memory_format=torch.channels_last), x, mean, invstd, gamma, beta)
        return g_x, g_gamma, g_beta, None, None, None


def batch_norm_relu(bn: nn.BatchNorm2d, x: Tensor) -> Tensor | None:
    """``relu(bn(x))`` through :class:`BatchNormReLUFunction` (the conv-BN-ReLU blocks of the
    transfers), or ``None`` where that would not compute exactly what ``bn`` and ReLU do."""
    if not (bn.training and torch.is_grad_enabled() and type(bn) is nn.BatchNorm2d and bn.affine
            and not torch.is_autocast_enabled(x.device.type) and not torch.compiler.is_compiling()
            and fused.applies(x)):
        return None
    return BatchNormReLUFunction.apply(x, bn.weight, bn.bias, (bn.running_mean, bn.running_var),
                                       _bn_factor(bn), bn.eps)
