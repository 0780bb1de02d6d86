"""BatchNorm folded into the convolutions before it, for inference.

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
"""
from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import Tensor, nn

from .smoothing import SmoothingStep

__all__ = ["fuse_bn", "fold_conv_bn", "FoldedSmoothingStep", "count_batchnorms"]


_BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)


def _is_conv(m: nn.Module) -> bool:
    """An ``nn.Conv2d`` (or a subclass that only changes how it is computed)."""
    return type(m) is nn.Conv2d or getattr(type(m), "computes_conv2d", False)


def _foldable_bn(bn: nn.Module, channels: int) -> bool:
    return (isinstance(bn, _BN_TYPES) and bn.running_mean is not None
            and bn.num_features == channels)


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn`` in eval mode as ``x * scale + shift`` per channel (float64)."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics)."""
    if not _foldable_bn(bn, conv.out_channels):
        raise ValueError("only a BatchNorm with running statistics over the convolution's "
                         "output channels can be folded")
    cls = type(conv) if _is_conv(conv) else nn.Conv2d  # keeps a KernelConv2d on the kernels
    fused = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    if "use_kernels" in vars(conv):
        fused.use_kernels = conv.use_kernels
    with torch.no_grad():
        scale, shift = _affine(bn)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bias * scale + shift)
    return fused.eval()


class FoldedSmoothingStep(nn.Module):
    """A :class:`~mgiad.layers.SmoothingStep` whose second BN is folded into its own copy of ``B``:
    ``u + relu(B_bn(relu(bn(f - A_u))))``. The ``B`` passed by the caller is ignored.

    ``folded``: the first BN and its ReLU are also held as the affine map ``residual_scale``,
    ``residual_shift`` (``s1``, ``t1``; not saved in the ``state_dict``), so that
    :mod:`mgiad.layers.inference` can run the step as two convolutions with epilogues.
    """

    def __init__(self, norm_residual: nn.Module, B: nn.Conv2d, activation: nn.Module):
        super().__init__()
        self.norm_residual = norm_residual
        self.B = B
        self.activation = activation
        self.impl = "fast"  # "reference": eq. (5) as written, not mgiad.layers.inference
        parts = list(norm_residual.children())
        self.folded = (len(parts) == 2 and _foldable_bn(parts[0], B.in_channels)
                       and isinstance(parts[1], nn.ReLU) and isinstance(activation, nn.ReLU))
        if self.folded:
            with torch.no_grad():
                scale, shift = _affine(parts[0])
            self.register_buffer("residual_scale", scale.to(B.weight.dtype), persistent=False)
            self.register_buffer("residual_shift", shift.to(B.weight.dtype), persistent=False)

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
                steps[i].impl = getattr(step, "impl", "fast")
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
