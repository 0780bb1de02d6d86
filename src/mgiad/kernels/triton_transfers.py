"""The multigrid transfers as Triton kernels, for GPUs (``MGIAD_GPU_TRANSFERS=triton``).

One kernel family covers every transfer: a grouped convolution over channels-last (NHWC) maps
with ``I`` input and ``M`` output channels per group, a ``K x K`` window, stride ``S`` and padding
``K // 2``: ``R``, ``Pi`` (I=1, M=2, K=3, S=2), ``R-hat``, ``Pi-hat`` (I=2, M=1, K=1) and ``P-hat``
(I=1, M=2, K=1). Each direction is one pass over memory: the forward reads each input pixel's
taps and writes the output once; the input gradient gathers, for each input pixel, the output
gradients its taps reached; the weight gradient sums ``grad_out * x`` per tap over a block of
pixels and the blocks' partial sums are added in float32 (deterministic, no atomics).
Accumulation is float32 in every direction; inputs and outputs keep their dtype (bf16 under
autocast, as the convolution would return).

Tests run these kernels on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``) against
``F.conv2d``; where Triton is not installed they skip. Speed on a GPU: not yet measured
(``benchmarks/gpu_suite.py --plan transfers`` compares them with cuDNN and the element-wise form).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .elementwise import autocast_dtype

try:
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001  (absent, or broken against this torch)
    triton = tl = None

__all__ = ["available", "conv2d"]

BLOCK_P, BLOCK_C = 64, 32  # pixels x channels per program


def available() -> bool:
    return triton is not None


if triton is not None:
    @triton.jit
    def _output_pixels(block, N, HO, WO, BP: tl.constexpr):
        """A block of output pixels: flat index, in range, and (n, ho, wo)."""
        p = block * BP + tl.arange(0, BP)
        n, r = p // (HO * WO), p % (HO * WO)
        return p, p < N * HO * WO, n, r // WO, r % WO

    @triton.jit
    def _tap(x, n, ho, wo, pm, channel, cm, H, W, CIN, a, b, S: tl.constexpr, P: tl.constexpr):
        """The input under tap (a, b) of each output pixel, in float32 (0 in the padding)."""
        h, v = ho * S + a - P, wo * S + b - P
        ok = pm & (h >= 0) & (h < H) & (v >= 0) & (v < W)
        pix = ((n * H + h) * W + v) * CIN
        return tl.load(x + pix[:, None] + channel[None, :], mask=ok[:, None] & cm[None, :],
                       other=0.0).to(tl.float32)

    @triton.jit
    def _forward(x, w, out, N, H, W, HO, WO, CIN, COUT,
                 I: tl.constexpr, M: tl.constexpr, K: tl.constexpr, S: tl.constexpr,
                 P: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
        p, pm, n, ho, wo = _output_pixels(tl.program_id(0), N, HO, WO, BP)
        oc = tl.program_id(1) * BC + tl.arange(0, BC)     # output channels
        cm = oc < COUT
        acc = tl.zeros((BP, BC), dtype=tl.float32)
        for ci in tl.static_range(I):
            for a in tl.static_range(K):
                for b in tl.static_range(K):
                    xv = _tap(x, n, ho, wo, pm, (oc // M) * I + ci, cm, H, W, CIN, a, b, S, P)
                    wv = tl.load(w + ((oc * I + ci) * K + a) * K + b, mask=cm, other=0.0)
                    acc += xv * wv.to(tl.float32)[None, :]
        tl.store(out + (p * COUT)[:, None] + oc[None, :], acc.to(out.dtype.element_ty),
                 mask=pm[:, None] & cm[None, :])

    @triton.jit
    def _grad_input(g, w, gx, N, H, W, HO, WO, CIN, COUT,
                    I: tl.constexpr, M: tl.constexpr, K: tl.constexpr, S: tl.constexpr,
                    P: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
        q = tl.program_id(0) * BP + tl.arange(0, BP)      # input pixels (n, h, v)
        c = tl.program_id(1) * BC + tl.arange(0, BC)      # input channels
        qm, cm = q < N * H * W, c < CIN
        n, r = q // (H * W), q % (H * W)
        h, v = r // W, r % W
        group, ci = c // I, c % I
        acc = tl.zeros((BP, BC), dtype=tl.float32)
        for k in tl.static_range(M):
            oc = group * M + k
            for a in tl.static_range(K):
                for b in tl.static_range(K):
                    th, tv = h + P - a, v + P - b         # = S * (ho, wo) where a tap reached
                    ok = qm & (th >= 0) & (tv >= 0) & (th % S == 0) & (tv % S == 0)
                    ho, wo = th // S, tv // S
                    ok = ok & (ho < HO) & (wo < WO)
                    pix = ((n * HO + ho) * WO + wo) * COUT
                    gv = tl.load(g + pix[:, None] + oc[None, :], mask=ok[:, None] & cm[None, :],
                                 other=0.0)
                    wv = tl.load(w + ((oc * I + ci) * K + a) * K + b, mask=cm, other=0.0)
                    acc += gv.to(tl.float32) * wv.to(tl.float32)[None, :]
        tl.store(gx + (q * CIN)[:, None] + c[None, :], acc.to(gx.dtype.element_ty),
                 mask=qm[:, None] & cm[None, :])

    @triton.jit
    def _grad_weight(x, g, partial, N, H, W, HO, WO, CIN, COUT,
                     I: tl.constexpr, M: tl.constexpr, K: tl.constexpr, S: tl.constexpr,
                     P: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
        p, pm, n, ho, wo = _output_pixels(tl.program_id(0), N, HO, WO, BP)
        oc = tl.program_id(1) * BC + tl.arange(0, BC)
        cm = oc < COUT
        gv = tl.load(g + (p * COUT)[:, None] + oc[None, :], mask=pm[:, None] & cm[None, :],
                     other=0.0).to(tl.float32)
        row = (tl.program_id(0) * COUT + oc) * (I * K * K)
        for ci in tl.static_range(I):
            for a in tl.static_range(K):
                for b in tl.static_range(K):
                    xv = _tap(x, n, ho, wo, pm, (oc // M) * I + ci, cm, H, W, CIN, a, b, S, P)
                    tl.store(partial + row + (ci * K + a) * K + b, tl.sum(xv * gv, axis=0),
                             mask=cm)

def _geometry(x: Tensor, weight: Tensor, stride: int, groups: int):
    n, c_in, h, w = x.shape
    c_out, per_in, k, _ = weight.shape
    pad = k // 2
    h_out, w_out = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    return dict(N=n, H=h, W=w, HO=h_out, WO=w_out, CIN=c_in, COUT=c_out, I=per_in,
                M=c_out // groups, K=k, S=stride, P=pad, BP=BLOCK_P, BC=BLOCK_C)


def _nhwc(t: Tensor) -> Tensor:
    """The (N, H, W, C) contiguous view of a channels-last NCHW tensor (copied if it is not)."""
    return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)


class TransferFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: int, groups: int) -> Tensor:
        geo = _geometry(x, weight, stride, groups)
        xh, w = _nhwc(x), weight.contiguous()
        out = torch.empty(geo["N"], geo["HO"], geo["WO"], geo["COUT"], device=x.device, dtype=x.dtype)
        grid = (triton.cdiv(geo["N"] * geo["HO"] * geo["WO"], BLOCK_P), triton.cdiv(geo["COUT"], BLOCK_C))
        _forward[grid](xh, w, out, **geo)
        ctx.save_for_backward(x, weight)
        ctx.geo = geo
        return out.permute(0, 3, 1, 2)  # channels-last NCHW

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        geo = ctx.geo
        xh, gh, w = _nhwc(x), _nhwc(grad.to(x.dtype)), weight.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            gx = torch.empty(geo["N"], geo["H"], geo["W"], geo["CIN"], device=x.device, dtype=x.dtype)
            grid = (triton.cdiv(geo["N"] * geo["H"] * geo["W"], BLOCK_P), triton.cdiv(geo["CIN"], BLOCK_C))
            _grad_input[grid](gh, w, gx, **geo)
            grad_x = gx.permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            blocks = triton.cdiv(geo["N"] * geo["HO"] * geo["WO"], BLOCK_P)
            partial = torch.empty(blocks, geo["COUT"], geo["I"] * geo["K"] ** 2, device=x.device,
                                  dtype=torch.float32)
            _grad_weight[(blocks, triton.cdiv(geo["COUT"], BLOCK_C))](xh, gh, partial, **geo)
            grad_w = partial.sum(0).view_as(weight).to(weight.dtype)
        return grad_x, grad_w, None, None


def conv2d(x: Tensor, weight: Tensor, stride: int = 1, groups: int = 1) -> Tensor:
    """``F.conv2d(x, weight, None, stride, weight.shape[-1] // 2, 1, groups)`` for a transfer;
    under autocast in the autocast dtype, as the convolution."""
    dtype = autocast_dtype(x.device.type)
    if dtype is not None:
        x, weight = x.to(dtype), weight.to(dtype)
    elif weight.dtype != x.dtype:
        raise TypeError(f"input {x.dtype} and weight {weight.dtype} differ")
    with torch.autocast(x.device.type, enabled=False):
        return TransferFunction.apply(x, weight, int(stride), int(groups))
