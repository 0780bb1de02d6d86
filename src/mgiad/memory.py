"""Peak memory of live tensors, on any device and without allocator noise.

``with LiveTensorPeak() as peak: ...`` counts every tensor storage created inside the block (forward
and backward alike: autograd runs under the same dispatch mode) until it is freed, and keeps the
highest total in ``peak.peak`` (bytes). Unlike malloc's or CUDA's counters it sees tensors only, so
it shows what a change to the model itself costs; ``mgiad bench`` reports the allocator's peak.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the block and still alive."""

    def __init__(self):
        super().__init__()
        self.live: set[int] = set()
        self.now = self.peak = 0

    def _free(self, key: int, nbytes: int) -> None:
        self.live.discard(key)
        self.now -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live.add(key)
                    self.now += storage.nbytes()
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.now)
        return out
