"""The loader factory :func:`build_loaders` and the two loader kinds it returns.

Sharding (``world_size > 1``): every rank draws the same per-epoch permutation (seeded by
``seed`` and the epoch) and takes every ``world_size``-th index from position ``rank``.
Training: with ``drop_last`` the permutation is first cut to a multiple of ``world_size`` (shards
are disjoint; up to ``world_size - 1`` images, different each epoch, are skipped); without it, it
is padded by repeating its start (so up to ``world_size - 1`` images appear on two ranks). Either
way every rank yields the same number of batches. Test: never shuffled, never padded or dropped:
rank ``r`` gets images ``r, r + W, r + 2W, ...``, so the shards cover the test set exactly once but
may differ by one image (and hence by one batch) between ranks; reduce metric *sums and counts*
across ranks, not per-rank means.
"""
from __future__ import annotations

import hashlib
import math
import operator
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from .info import DatasetError, DatasetInfo, canonical_name, dataset_info, default_data_dir
from .transforms import Normalize, train_augment
from .verify import verification_enabled, verify_splits

__all__ = ["build_loaders", "shard_indices", "InMemoryLoader", "StreamingLoader"]


def mix_seed(*values: int) -> int:
    """A 63-bit seed derived from any integers (stable across runs, platforms and versions)."""
    digest = hashlib.blake2b(repr(tuple(int(v) for v in values)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def shard_indices(n: int, *, epoch: int, seed: int, rank: int, world_size: int, shuffle: bool,
                  even: bool, drop_last: bool) -> torch.Tensor:
    """This rank's indices into a dataset of ``n`` items for ``epoch`` (see the module docstring).

    ``even=True`` (training) makes all shards the same length by cutting (``drop_last``) or
    padding; ``even=False`` (test) keeps every index exactly once.
    """
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch, 0)))
    else:
        order = torch.arange(n)
    if even and world_size > 1:
        if drop_last:
            order = order[: n - n % world_size]
        elif n % world_size:
            reps = math.ceil(world_size / n) if n else 0
            order = torch.cat([order, order.repeat(reps)[: world_size - n % world_size]])
    return order[rank::world_size]


class _Loader:
    """Shared bookkeeping: epoch, sizes, ``len()`` in batches, normalisation on ``device``."""

    def __init__(self, info: DatasetInfo, dataset_size: int, *, batch_size: int, device, train: bool,
                 seed: int, rank: int, world_size: int, drop_last: bool):
        self.info, self.dataset_size, self.batch_size = info, dataset_size, batch_size
        self.device, self.train, self.seed = torch.device(device), train, seed
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last and train
        self.epoch = 0
        self.normalize = Normalize(info.mean, info.std, self.device)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle/augmentation stream: same seed and epoch -> same batches."""
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's dataset indices for ``epoch`` (default: the current one), in batch order."""
        return shard_indices(self.dataset_size, epoch=self.epoch if epoch is None else epoch, seed=self.seed,
                             rank=self.rank, world_size=self.world_size, shuffle=self.train,
                             even=self.train, drop_last=self.drop_last)

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch (before dropping a last partial batch)."""
        n, w = self.dataset_size, self.world_size
        if not self.train:
            return len(range(self.rank, n, w))
        return n // w if self.drop_last else math.ceil(n / w)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _check_nonempty(self) -> None:
        if len(self) == 0 and self.train:  # raised on iteration, so eval-only callers are unaffected
            raise DatasetError(
                f"batch_size={self.batch_size} gives no training batch: each of the {self.world_size} "
                f"rank(s) has {self.num_samples} of the {self.dataset_size} {self.info.name} training "
                f"images and drop_last=True drops the partial batch. Use a smaller batch_size or "
                f"drop_last=False.")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.info.name!r}, {'train' if self.train else 'test'}, "
                f"images={self.dataset_size}, batch_size={self.batch_size}, batches={len(self)}, "
                f"rank={self.rank}/{self.world_size}, device={self.device})")


class InMemoryLoader(_Loader):
    """Batches from uint8 tensors held on ``device``; augmentation runs there on whole batches,
    with parameters drawn from a CPU generator seeded by (seed, epoch, rank)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo, *, augment=None, **kw):
        super().__init__(info, len(x), **kw)
        self.x, self.y = x.to(self.device), y.to(self.device, torch.int64)
        self.augment = augment

    def evaluation(self) -> "InMemoryLoader":
        """The same images in evaluation order: no augmentation, shuffling or dropping."""
        return InMemoryLoader(self.x, self.y, self.info, batch_size=self.batch_size,
                              device=self.device, train=False, seed=self.seed, rank=self.rank,
                              world_size=self.world_size, drop_last=False)

    def __iter__(self):
        self._check_nonempty()
        idx = self.indices().to(self.device)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, self.rank, 1))
        for b in range(len(self)):
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            xb = self.x[sel]
            if self.augment is not None:
                xb = self.augment(xb, gen)
            yield self.normalize(xb), self.y[sel]


class _ShardSampler(Sampler):
    """Yields this rank's indices; in training as ``(index, stream_seed)`` pairs for the dataset."""

    def __init__(self, loader: _Loader):
        self.loader = loader

    def __iter__(self):
        ld = self.loader
        stream = mix_seed(ld.seed, ld.epoch, 2)
        for i in ld.indices().tolist():
            yield (i, stream) if ld.train else i

    def __len__(self) -> int:
        return self.loader.num_samples


class StreamingLoader(_Loader):
    """A ``torch.utils.data.DataLoader`` over an :class:`~mgiad.data.folder.ImageFolderDataset`
    (Pillow decoding in ``workers`` processes, pinned memory on CUDA); uint8 batches are moved to
    ``device`` and normalised there."""

    def __init__(self, dataset, info: DatasetInfo, *, workers: int, **kw):
        super().__init__(info, len(dataset), **kw)
        self.dataset, self.workers = dataset, workers
        self.dataloader = DataLoader(
            dataset, batch_size=self.batch_size, sampler=_ShardSampler(self), num_workers=workers,
            pin_memory=self.device.type == "cuda", drop_last=self.drop_last,
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.seed))

    def evaluation(self) -> "StreamingLoader":
        """The same images in evaluation order, with the test split's resize and center crop."""
        d = self.dataset
        dataset = type(d)(d.samples, train=False, size=d.size, resize=d.resize)
        return StreamingLoader(dataset, self.info, workers=self.workers, batch_size=self.batch_size,
                               device=self.device, train=False, seed=self.seed, rank=self.rank,
                               world_size=self.world_size, drop_last=False)

    def __iter__(self):
        self._check_nonempty()
        try:
            for xb, yb in self.dataloader:
                yield (self.normalize(xb.to(self.device, non_blocking=True)),
                       yb.to(self.device, torch.int64, non_blocking=True))
        except DatasetError as exc:  # from a worker: its message holds the worker's traceback
            lines = [line for line in str(exc).splitlines() if line.strip()]
            if len(lines) > 1 and "Original Traceback" in str(exc):
                raise DatasetError(lines[-1].split(": ", 1)[-1]) from None
            raise


def _load_in_memory(name: str, data_dir: Path, download: bool, workers: int | None) -> dict:
    if name == "digits":
        from .digits import load_digits_split
        return load_digits_split()
    if name == "fashion-mnist":
        from .idx import load_fashion_mnist
        return load_fashion_mnist(data_dir, download)
    if name in ("cifar10", "cifar100"):
        from .cifar import load_cifar
        return load_cifar(name, data_dir, download)
    if name == "folder":
        from .folder import load_image_folder
        return load_image_folder(data_dir, workers, log=print)
    from .folder import load_tiny_imagenet
    return load_tiny_imagenet(data_dir, download, workers)


def _check_int(value, name: str, low: int) -> int:
    try:
        ok = not isinstance(value, bool) and operator.index(value) >= low
    except TypeError:
        ok = False
    if not ok:
        raise DatasetError(f"{name} must be an integer >= {low}, got {value!r}.")
    return operator.index(value)


def build_loaders(name: str, data_dir=None, *, batch_size: int, device="cpu", download: bool = False,
                  augment: bool | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                  workers: int | None = None, drop_last: bool = True, verify: bool | None = None):
    """``(train_loader, test_loader)`` for dataset ``name`` (see :data:`~mgiad.data.DATASETS`).

    Both yield ``(x, y)``: x float32 ``(N, C, H, W)`` normalised with the dataset's mean/std, y
    int64, both on ``device``. Both have ``len()`` (batches on this rank), ``set_epoch(epoch)``,
    ``dataset_size`` (images in the whole split), ``batch_size`` and ``evaluation()`` (the same
    split as the test loader reads one: e.g. to measure training-set accuracy). The test loader
    never augments, shuffles or drops. ``augment`` (training batches; ``None``: the dataset's
    default, :attr:`DatasetInfo.augment`: crops and flips, none for Fashion-MNIST). ``verify``
    checks split sizes and known checksums (:mod:`mgiad.data.verify`; ``None``: on unless
    ``MGIAD_VERIFY_DATA=0``). ``data_dir`` defaults to ``$MGIAD_DATA_DIR`` or ``./.data``
    (ignored by ``digits``); ``download`` fetches missing files. ``workers`` is the number of
    DataLoader processes for ImageNet (default ``min(8, cpu_count)``) and of decoding threads
    for the first Tiny ImageNet load; other datasets live in memory and need none.
    Sharding across ``world_size`` ranks is described in :mod:`mgiad.data.loaders`; when
    downloading for several ranks, call this with ``download=True`` on rank 0 first, then a
    barrier, then on the other ranks (concurrent calls are safe but fetch the files repeatedly).
    """
    key = canonical_name(name)
    data_dir = default_data_dir() if data_dir is None else Path(data_dir)
    info = dataset_info(key, data_dir)
    batch_size = _check_int(batch_size, "batch_size", 1)
    world_size = _check_int(world_size, "world_size", 1)
    rank = _check_int(rank, "rank", 0)
    seed = _check_int(seed, "seed", -(2 ** 63))
    if rank >= world_size:
        raise DatasetError(f"rank must be in 0..world_size-1 = 0..{world_size - 1}, got {rank}.")
    if workers is not None:
        workers = _check_int(workers, "workers", 0)
    augment = info.augment if augment is None else bool(augment)
    common = dict(batch_size=batch_size, device=device, seed=seed, rank=rank, world_size=world_size)
    if info.in_memory:
        splits = _load_in_memory(key, data_dir, download, workers)
        if verification_enabled(verify):
            verify_splits(info, splits, data_dir)
        train = InMemoryLoader(*splits["train"], info, augment=train_augment(key) if augment else None,
                               train=True, drop_last=drop_last, **common)
        test = InMemoryLoader(*splits["test"], info, train=False, drop_last=False, **common)
    else:
        from .folder import ImageFolderDataset, scan_imagenet
        classes, samples = scan_imagenet(data_dir)
        if verification_enabled(verify):  # as for the in-memory datasets: sizes, classes
            verify_splits(info, {s: (samples[s],) for s in ("train", "test")}, data_dir,
                          classes=len(classes))
        workers = min(8, os.cpu_count() or 1) if workers is None else workers
        train = StreamingLoader(ImageFolderDataset(samples["train"], train=augment), info,
                                workers=workers, train=True, drop_last=drop_last, **common)
        test = StreamingLoader(ImageFolderDataset(samples["test"], train=False), info,
                               workers=workers, train=False, drop_last=False, **common)
    return train, test
