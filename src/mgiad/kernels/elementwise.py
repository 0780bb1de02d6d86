"""The multigrid transfers as element-wise arithmetic, for GPUs (``MGIAD_GPU_TRANSFERS=elementwise``).

``R``, ``Pi`` (3x3 stride 2, depthwise, 1 -> 2 channels per group) and ``R-hat``, ``Pi-hat``,
``P-hat`` (1x1, 2 -> 1 or 1 -> 2 channels per group) have at most 9 taps per output. cuDNN runs
them as grouped convolutions at 70-230 GB/s in bf16 channels-last on an H200, a 16-32x gap to the
memory bandwidth (``benchmarks/gpu_suite.py``, section ``conv``); written as a sum of shifted,
strided views times per-channel weights they are plain element-wise work that ``torch.compile``
can fuse into one kernel each way (and with the BatchNorm/ReLU beside them). Same map, same
weights, same gradients (autograd differentiates the arithmetic).

Measured on one NVIDIA H200 (``docs/performance.md``): in eager PyTorch and in a CUDA graph the
formulation is no faster than cuDNN (MGiaD(3, g_s=4) training step in a graph 61.6 ms either way;
table 2's 16-32-64 MGiaD 7.9 ms against 7.0 ms): each tap is its own pass over memory there.
Under ``torch.compile``, where it would fuse, it has not been measured yet (:mod:`.gpu` chooses).

``conv2d(x, weight, stride, padding, groups)`` is ``F.conv2d(x, weight, None, stride, padding, 1,
groups)`` for such weights; it accumulates in float32 and, under autocast, returns the autocast
dtype, as the convolution would. The output keeps the input's memory format (channels-last in,
channels-last out).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["conv2d"]


def autocast_dtype(device_type: str):
    """The autocast dtype on ``device_type`` now, or None where autocast is off."""
    if not torch.is_autocast_enabled(device_type):
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_gpu_dtype() if device_type == "cuda" else torch.bfloat16


def conv2d(x: Tensor, weight: Tensor, stride=(1, 1), padding=(0, 0), groups: int = 1) -> Tensor:
    """``F.conv2d(x, weight, None, stride, padding, 1, groups)`` as a sum over the taps."""
    s_h, s_w = (stride, stride) if isinstance(stride, int) else stride
    p_h, p_w = (padding, padding) if isinstance(padding, int) else padding
    n, c, h, w = x.shape
    c_out, per_in, k_h, k_w = weight.shape
    if c != per_in * groups or c_out % groups:
        raise ValueError(f"weight {tuple(weight.shape)} with groups={groups} does not fit an input "
                         f"of {c} channels")
    per_out = c_out // groups
    h_out, w_out = (h + 2 * p_h - k_h) // s_h + 1, (w + 2 * p_w - k_w) // s_w + 1
    out_dtype = autocast_dtype(x.device.type) or torch.promote_types(x.dtype, weight.dtype)
    compute = torch.promote_types(out_dtype, torch.float32)  # accumulate in float32 at least
    nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    with torch.autocast(x.device.type, enabled=False):
        if p_h or p_w:
            x = torch.nn.functional.pad(x, (p_w, p_w, p_h, p_h))
        wg = weight.to(compute).view(groups, per_out, per_in, k_h, k_w)
        # channels-last: work on the (N, H, W, C) view, so that the output is channels-last too
        xg = (x.permute(0, 2, 3, 1).unflatten(3, (groups, per_in)) if nhwc
              else x.unflatten(1, (groups, per_in)).permute(0, 3, 4, 1, 2))  # (N, H, W, G, per_in)
        out = None
        for i in range(per_in):
            for a in range(k_h):
                for b in range(k_w):
                    tap = xg[:, a:a + s_h * (h_out - 1) + 1:s_h, b:b + s_w * (w_out - 1) + 1:s_w, :, i]
                    term = tap.unsqueeze(-1) * wg[:, :, i, a, b]  # (N, Ho, Wo, G, per_out)
                    out = term if out is None else out + term
        out = out.flatten(3, 4)                                   # (N, Ho, Wo, C_out)
        out = out.permute(0, 3, 1, 2) if nhwc else out.permute(0, 3, 1, 2).contiguous()
    return out.to(out_dtype)
